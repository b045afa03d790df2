"""The wavefront kernel of lexicographic SOR/SSOR: sweeps by levels of the dependency graph.

Unknown ``i`` of a forward Gauss–Seidel sweep depends on the earlier unknowns ``j`` with
``a_ij != 0``; grouping the unknowns into levels (:func:`sweep_levels`, the anti-diagonals of a
5-point grid) lets one level of every system of a batch be updated at once with gathers, and
converged systems are dropped from the working batch as the solve goes on. The iterates are
those of the sparse triangular solves of :mod:`pdesurrogates.linalg.relaxation` up to the order
of floating-point sums; that module chooses between the two (``kernel=``).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from pdesurrogates.linalg._iteration import (
    Monitor,
    check_tolerances,
    default_check_every,
    user_iterate,
)
from pdesurrogates.linalg.operators import System, TorchOperator
from pdesurrogates.linalg.result import SolveResult

__all__ = ["WavefrontSOR", "stationary_wavefront", "sweep_levels"]


def _pattern(op: TorchOperator) -> tuple[sp.csr_matrix, torch.Tensor]:
    """Sparsity pattern (CSR, sorted, union over a batch) and values ``(1 or B, nnz)``."""
    if op.kind == "batched":
        P = sp.csr_matrix(op.pattern_scipy())
        P.sort_indices()
        coo = P.tocoo()
        rows = torch.as_tensor(coo.row, dtype=torch.long, device=op.device)
        cols = torch.as_tensor(coo.col, dtype=torch.long, device=op.device)
        return P, op.matrix[:, rows, cols]
    S = sp.csr_matrix(op.to_scipy(), dtype=np.float64)
    S.sum_duplicates()
    S.sort_indices()
    vals = torch.as_tensor(S.data).to(dtype=op.dtype, device=op.device).unsqueeze(0)
    return S, vals


def sweep_levels(S: sp.csr_matrix, lower: bool = True) -> np.ndarray:
    """Level of every unknown in a forward (``lower``) or backward Gauss–Seidel sweep.

    Unknown ``i`` has level ``1 + max(level[j])`` over the ``j`` it depends on (``j < i`` with
    ``a_ij != 0`` forward, ``j > i`` backward), 0 when it depends on none; the unknowns of one
    level can be updated at once. On a 5-point grid the levels are the anti-diagonals.

    >>> from pdesurrogates.linalg import gallery
    >>> sweep_levels(gallery.poisson2d(3, format="scipy")).reshape(3, 3)
    array([[0, 1, 2],
           [1, 2, 3],
           [2, 3, 4]])
    """
    S = sp.csr_matrix(S)
    n = S.shape[0]
    indptr, indices = S.indptr.tolist(), S.indices.tolist()
    level = [0] * n
    for i in range(n) if lower else range(n - 1, -1, -1):
        top = 0
        for j in indices[indptr[i]:indptr[i + 1]]:
            if (j < i) if lower else (j > i):
                top = max(top, level[j] + 1)
        level[i] = top
    return np.asarray(level, dtype=np.int64)


def _padded_rows(rows, cols, pos, n_rows: int, fill_col: int, fill_pos: int):
    """Entries ``(row, col, pos)`` (sorted by row) as padded ``(n_rows, k)`` col/pos arrays."""
    counts = np.bincount(rows, minlength=n_rows)
    k = int(counts.max()) if counts.size else 0
    C = np.full((n_rows, k), fill_col, dtype=np.int64)
    Pp = np.full((n_rows, k), fill_pos, dtype=np.int64)
    if rows.size:
        start = np.concatenate([[0], np.cumsum(counts)[:-1]])
        slot = np.arange(rows.size) - start[rows]
        C[rows, slot] = cols
        Pp[rows, slot] = pos
    return C, Pp, counts


class WavefrontSOR:
    """Lexicographic SOR/SSOR sweeps by levels, on a working batch that sheds converged systems.

    Storage is "systems last" and in the order of the forward levels: a vector of the batch is
    ``(n + 1, B)`` with a zero row at the end (the target of padded neighbour indices), so a
    forward level is a contiguous slice. Matrix values are ``(1, nnz)`` for one matrix or
    ``(B, nnz)`` for a batch, followed by a zero column for the padding.
    """

    def __init__(self, op: TorchOperator, d: torch.Tensor, omega: torch.Tensor, symmetric: bool):
        S, vals = _pattern(op)
        n, dev = op.n, omega.device
        self.n = n
        lv = sweep_levels(S, lower=True)
        self.order = np.argsort(lv, kind="stable")  # position p holds unknown order[p]
        inv = np.empty(n, dtype=np.int64)
        inv[self.order] = np.arange(n)
        self.inv = torch.as_tensor(inv, device=dev)
        self.n_levels = int(lv.max()) + 1 if n else 0
        coo = S.tocoo()
        r, c = coo.row.astype(np.int64), coo.col.astype(np.int64)
        p = np.arange(r.size, dtype=np.int64)
        nnz = r.size
        # values: (nnz + 1, Bv) with a zero last row (padding), systems last
        V = torch.cat([vals, torch.zeros_like(vals[:, :1])], dim=1).T.contiguous()
        pr, pc = inv[r], inv[c]

        def padded(mask):
            key = np.argsort(pr[mask], kind="stable")
            return _padded_rows(pr[mask][key], pc[mask][key], p[mask][key], n, n, nnz)

        cols, pos, _ = padded(np.ones(nnz, dtype=bool))
        self.ell_cols = torch.as_tensor(cols, device=dev)
        self.ell_vals = V[torch.as_tensor(pos, device=dev)]  # (n, k, Bv)
        order_t = torch.as_tensor(self.order, device=dev)
        dvec = d if d.ndim == 2 else d.unsqueeze(0)  # (Bv, n)
        self.dw = (dvec[:, order_t].T / omega.unsqueeze(0)).contiguous()  # (n, B) = (d / omega)
        self.per_system = V.shape[1] > 1
        self.forward = self._levels(pr, pc, p, c < r, lv[self.order], n, nnz, V, dev)
        self.backward = None
        if symmetric:
            lu = sweep_levels(S, lower=False)[self.order]  # in storage order
            self.backward = self._levels(pr, pc, p, c > r, lu, n, nnz, V, dev)

    @staticmethod
    def _levels(pr, pc, p, mask, level_of, n, nnz, V, dev):
        """Per level: (rows as a slice or index tensor, neighbour cols (m, k), values (m, k, Bv))."""
        key = np.argsort(pr[mask], kind="stable")
        cols, pos, counts = _padded_rows(pr[mask][key], pc[mask][key], p[mask][key], n, n, nnz)
        out = []
        for lev in range(int(level_of.max()) + 1 if n else 0):
            idx = np.flatnonzero(level_of == lev)
            k = int(counts[idx].max()) if idx.size else 0
            if idx.size and idx[-1] - idx[0] + 1 == idx.size:
                rows = slice(int(idx[0]), int(idx[-1]) + 1)
            else:
                rows = torch.as_tensor(idx, device=dev)
            nb = torch.as_tensor(cols[idx, :k], device=dev)
            out.append([rows, nb, V[torch.as_tensor(pos[idx, :k], device=dev)]])
        return out

    # -- layout -------------------------------------------------------------------------------
    def to_storage(self, X: torch.Tensor) -> torch.Tensor:
        """``(B, n)`` -> ``(n + 1, B)`` in level order with a zero last row."""
        out = X.new_zeros(self.n + 1, X.shape[0])
        out[: self.n] = X[:, torch.as_tensor(self.order, device=X.device)].T
        return out

    def from_storage(self, Y: torch.Tensor) -> torch.Tensor:
        return Y[self.inv].T.contiguous()

    def select(self, keep: torch.Tensor) -> None:
        """Keep only the systems ``keep`` (indices into the working batch)."""
        self.dw = self.dw[:, keep]
        if self.per_system:
            self.ell_vals = self.ell_vals[:, :, keep]
            for levels in (self.forward, self.backward or []):
                for entry in levels:
                    entry[2] = entry[2][:, :, keep]

    # -- kernels ------------------------------------------------------------------------------
    def matvec(self, X: torch.Tensor) -> torch.Tensor:
        """``A x`` for storage ``X`` ``(n + 1, B)``; returns ``(n, B)``."""
        G = X.index_select(0, self.ell_cols.reshape(-1)).view(*self.ell_cols.shape, X.shape[1])
        return (G * self.ell_vals).sum(dim=1)

    def solve(self, R: torch.Tensor, levels) -> torch.Tensor:
        """``(D / omega + L)^{-1} R`` (or with ``U``) level by level; ``R`` ``(n, B)``."""
        B = R.shape[1]
        delta = R.new_zeros(self.n + 1, B)
        for rows, nb, vals in levels:
            if nb.shape[1]:
                G = delta.index_select(0, nb.reshape(-1)).view(*nb.shape, B)
                delta[rows] = (R[rows] - (G * vals).sum(dim=1)) / self.dw[rows]
            else:
                delta[rows] = R[rows] / self.dw[rows]
        return delta


def stationary_wavefront(system: System, kern: WavefrontSOR, rtol, atol, maxiter, callback,
                          check_every, name) -> SolveResult:
    """The loop of :func:`_stationary` on a :class:`WavefrontSOR`, shedding converged systems."""
    op = system.op
    maxiter = check_tolerances(rtol, atol, maxiter, op.n, name)
    mon = Monitor(system.b, rtol, atol, default_check_every(system.b.device, check_every))
    X_all = kern.to_storage(system.x0)  # every system, level order
    Xw, Bw = X_all.clone(), kern.to_storage(system.b)[: kern.n]
    idx = torch.arange(system.b.shape[0], device=system.b.device)  # working systems
    R = Bw - kern.matvec(Xw)
    mon.start(torch.linalg.vector_norm(R, dim=0))
    for k in range(maxiter):
        if mon.done(k):
            break
        if k and k % mon.check_every == 0:
            act = mon.active[idx]
            n_act = int(act.sum())
            if n_act <= 0.8 * idx.numel():
                X_all[:, idx] = Xw  # the finished ones are final
                keep = torch.nonzero(act).reshape(-1)
                idx, Xw, Bw, R = idx[keep], Xw[:, keep], Bw[:, keep], R[:, keep]
                kern.select(keep)
        X_new = Xw + kern.solve(R, kern.forward)
        R = Bw - kern.matvec(X_new)
        if kern.backward is not None:
            X_new = X_new + kern.solve(R, kern.backward)
            R = Bw - kern.matvec(X_new)
        Xw = torch.where(mon.active[idx].unsqueeze(0), X_new, Xw)
        rnorm = mon.last.clone()
        rnorm[idx] = torch.linalg.vector_norm(R, dim=0)
        mon.record(rnorm)
        if callback is not None:
            X_all[:, idx] = Xw
            callback(user_iterate(system, kern.from_storage(X_all)))
    X_all[:, idx] = Xw
    return mon.result(system, kern.from_storage(X_all))
