"""Smoothed-aggregation hierarchies whose prolongation smoothing is given per matrix entry.

Smoothed aggregation (Vaněk, Mandel, Brezina, Computing 1996) builds each level from the matrix alone:
a strength-of-connection graph, aggregates of strongly connected unknowns, a tentative prolongator
``T`` that reproduces the near-nullspace ``B`` exactly (``T B_c = B``), one Jacobi step on ``T``
and the Galerkin coarse operator ``A_c = P^T A P``. Classical SA smooths with one number,

    ``P = T - omega D^-1 A T``,  ``omega = 4 / (3 rho(D^-1 A))``.

Here every stored entry ``a_ik`` of ``A`` gets its own weight ``w_ik`` and every row a weight
``v_i``:

    ``U = omega D^-1 (A o W) T``, rows of ``U`` corrected (least change) so that
    ``U B_c = omega diag(v) D^-1 A T B_c``,  ``P = T - U``.

With ``W = 1, v = 1`` the correction is zero and ``P`` is exactly SA's (pyamg's
``jacobi_prolongation_smoother`` with its default diagonal weighting). The row correction keeps the
property that makes SA work, ``P B_c = T B_c - omega diag(v) D^-1 A T B_c`` (``T B_c = B`` on
aggregated unknowns: the near-nullspace is interpolated exactly where ``A B = 0``), whatever the
weights. ``P`` has the sparsity of ``|A| |T|`` (SA's), so
the cycle costs what SA's costs.

Everything that does not depend on the weights (strength, aggregates, ``T``, ``B_c``, ``omega``,
the index maps) is computed once per level by pyamg's C++ kernels and array operations: no Python
loop over rows, nodes or aggregates. :func:`prolongator` evaluates ``P`` with SciPy (setup);
:func:`prolongator_values_torch` evaluates the same numbers differentiably in torch (training).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.sparse as sp
import torch

__all__ = [
    "MIN_AGGREGATED",
    "SMOOTHER",
    "AggregationLevel",
    "build_levels",
    "largest_eigenvalue",
    "multilevel_solver",
    "prolongator",
    "prolongator_values_torch",
]

SMOOTHER = ("block_gauss_seidel", {"sweep": "symmetric"})
"""Pre- and post-smoother of every level: pyamg's default for smoothed aggregation (one symmetric
Gauss–Seidel sweep, forward then backward; block sweeps for BSR matrices), so the V-cycle is symmetric."""


MIN_AGGREGATED = 0.1
"""Below this fraction of aggregated nodes a level is aggregated with ``theta = 0`` instead.

Nodes without a strong connection are left out of the coarse space and handled by the smoother
alone, which is right where they are weakly coupled to everything (on the first Galerkin level of a
3D two-phase medium of contrast 1e6, pyamg's ``theta = 0.1`` leaves 81% of the nodes unaggregated
and converges in 21 iterations at 50^3; re-aggregating that level with ``theta = 0`` takes 70). Only
when almost no node keeps a strong connection does coarsening stall (the 27-point Q1 stencil has
none above ``theta = 0.1`` and would leave a direct solve of the whole matrix)."""


def largest_eigenvalue(A: sp.csr_matrix, scale: np.ndarray, steps: int = 15) -> float:
    """Largest eigenvalue of ``diag(scale) A diag(scale)`` (SPD ``A``): the largest Ritz value of
    ``steps`` Lanczos steps from a fixed start vector (reproducible; slightly below the true value,
    as pyamg's estimate)."""
    n = A.shape[0]
    v = np.random.default_rng(0).uniform(0.5, 1.5, size=n)
    v /= np.linalg.norm(v)
    v_prev = np.zeros(n)
    alphas, betas = [], []
    beta = 0.0
    for _ in range(min(steps, n)):
        w = scale * (A @ (scale * v)) - beta * v_prev
        alpha = float(v @ w)
        w -= alpha * v
        alphas.append(alpha)
        beta = float(np.linalg.norm(w))
        if beta <= 1e-12 * abs(alpha):
            break
        betas.append(beta)
        v_prev, v = v, w / beta
    k = len(alphas)
    T = np.diag(alphas) + np.diag(betas[: k - 1], 1) + np.diag(betas[: k - 1], -1)
    return float(np.linalg.eigvalsh(T)[-1])


class AggregationLevel:
    """What a level's prolongator needs besides the weights.

    Parameters
    ----------
    A : scipy CSR or BSR ``(n, n)``, SPD with sorted, duplicate-free indices and no stored zeros.
    B : ``(n, nb)`` near-nullspace vectors.
    blocksize : int
        Unknowns per node (strength and aggregates are computed on nodes, as pyamg does for BSR).
    theta : float
        Symmetric strength threshold: ``i``-``j`` is strong when ``|a_ij| >= theta sqrt(a_ii a_jj)``
        (pyamg's ``symmetric_strength_of_connection``; ``theta = 0``: every connection). When it
        leaves fewer than :data:`MIN_AGGREGATED` of the nodes in aggregates, the level is aggregated
        with ``theta = 0`` (``self.theta`` is the value used).
    improve_sweeps : int
        Symmetric Gauss–Seidel sweeps on ``A B = 0`` applied to ``B`` first (pyamg's
        ``improve_candidates``; it does 4 on the finest level).

    Attributes
    ----------
    A : CSR (the matrix, scalar entries); ``rows``, ``cols``, ``values``: its stored entries (int64,
        float64), row-major; ``diagonal``; ``omega = 4 / (3 rho(D^-1 A))``.
    B, Bc : near-nullspace on this level and on the next (``T Bc = B``).
    T : CSR ``(n, nc)`` tentative prolongator; ``aggregate``: each unknown's aggregate (``-1``:
        none, then its row of ``T`` is zero); ``aggregate_size``.
    pattern : CSR ``(n, nc)`` with the sparsity of ``|A| |T|`` (values 0), the pattern of ``P``
        (computed on first use, as the index maps of the general prolongator and of training).
    """

    def __init__(self, A, B: np.ndarray, *, blocksize: int = 1, theta: float = 0.0,
                 improve_sweeps: int = 0) -> None:
        from pyamg.aggregation.aggregate import standard_aggregation
        from pyamg.aggregation.tentative import fit_candidates
        from pyamg.relaxation.utils import relaxation_as_linear_operator
        from pyamg.strength import symmetric_strength_of_connection

        csr = sp.csr_matrix(A)
        n = csr.shape[0]
        self.blocksize = int(blocksize)
        structured = csr.tobsr(blocksize=(blocksize, blocksize)) if blocksize > 1 else csr
        if improve_sweeps > 0:
            relax = relaxation_as_linear_operator(
                ("block_gauss_seidel", {"sweep": "symmetric", "iterations": improve_sweeps}),
                structured, np.zeros((n, 1)))
            B = relax @ B
        self.B = np.ascontiguousarray(B, dtype=np.float64)
        strength = symmetric_strength_of_connection(structured, theta=theta)
        aggregates, _ = standard_aggregation(strength)
        aggregates = sp.csr_matrix(aggregates)
        self.theta = theta
        if theta > 0 and aggregates.nnz < MIN_AGGREGATED * aggregates.shape[0]:
            # the threshold leaves (nearly) every node without a strong connection (e.g. the weak
            # couplings of a 27-point stencil): aggregate this level with every connection, as pyamg's default
            strength = symmetric_strength_of_connection(structured, theta=0.0)
            aggregates = sp.csr_matrix(standard_aggregation(strength)[0])
            self.theta = 0.0
        T, Bc = fit_candidates(aggregates, self.B)
        self.T = sp.csr_matrix(T)
        self.T.sort_indices()
        self.Bc = np.ascontiguousarray(Bc, dtype=np.float64)
        self.TB = self.T @ self.Bc  # = B on aggregated unknowns, 0 on the others
        self.A = csr
        coo = csr.tocoo()
        self.rows, self.cols = coo.row.astype(np.int64), coo.col.astype(np.int64)
        self.values = coo.data.astype(np.float64)
        self.diagonal = csr.diagonal().astype(np.float64)
        node_of_row = np.repeat(np.arange(aggregates.shape[0]), np.diff(aggregates.indptr))
        node_aggregate = np.full(aggregates.shape[0], -1, dtype=np.int64)
        node_aggregate[node_of_row] = aggregates.indices
        self.aggregate = node_aggregate[np.arange(n) // self.blocksize]
        sizes = np.bincount(aggregates.indices, minlength=aggregates.shape[1])
        self.aggregate_size = np.where(self.aggregate >= 0, sizes[np.maximum(self.aggregate, 0)], 1)
        self.omega = (4.0 / 3.0) / largest_eigenvalue(csr, 1.0 / np.sqrt(self.diagonal))
        self._contrib: tuple | None = None
        self._pattern_matrix: sp.csr_matrix | None = None
        self._torch_maps: dict | None = None
        self.kept_columns: np.ndarray | None = None  # set by build_levels when zero columns of P are dropped

    @property
    def n(self) -> int:
        return self.A.shape[0]

    @property
    def n_coarse(self) -> int:
        return self.T.shape[1]

    # ---- sparse index maps (no loops: repeats and cumulative sums over stored entries)
    @property
    def pattern(self) -> sp.csr_matrix:
        """CSR ``(n, nc)`` with the sparsity of ``|A| |T|`` (values 0): the pattern of ``P``."""
        if self._pattern_matrix is None:
            self._pattern_matrix = self._pattern()
        return self._pattern_matrix

    def _contributions(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """For every stored ``a_ik`` and every stored ``T_kJ``: (entry index, i, J, T_kJ)."""
        if self._contrib is None:
            self._contrib = self._compute_contributions()
        return self._contrib

    def _compute_contributions(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        T = self.T
        counts = np.diff(T.indptr)
        if counts.max(initial=0) <= 1:  # scalar problems: at most one aggregate per unknown
            entry = np.nonzero(counts[self.cols] == 1)[0]
            where = T.indptr[self.cols[entry]]
            return entry, self.rows[entry], T.indices[where].astype(np.int64), T.data[where]
        per_row = counts[self.cols]
        entry = np.repeat(np.arange(self.rows.size), per_row)
        first = np.repeat(T.indptr[self.cols], per_row)
        offset = np.arange(entry.size) - np.repeat(np.cumsum(per_row) - per_row, per_row)
        where = first + offset
        return entry, self.rows[entry], T.indices[where].astype(np.int64), T.data[where]

    def _pattern(self) -> sp.csr_matrix:
        entry, i, J, _ = self._contributions()
        pattern = sp.coo_matrix((np.zeros(entry.size), (i, J)), shape=(self.n, self.n_coarse)).tocsr()
        pattern.sum_duplicates()
        return pattern

    def torch_maps(self) -> dict:
        """Index maps of the torch evaluation (computed once, on first use)."""
        if self._torch_maps is None:
            entry, i, J, tvals = self._contributions()
            nc = self.n_coarse
            prow = np.repeat(np.arange(self.n), np.diff(self.pattern.indptr))
            keys = prow * nc + self.pattern.indices
            T = self.T.tocoo()
            self._torch_maps = {
                "entry": torch.as_tensor(entry),
                "position": torch.as_tensor(np.searchsorted(keys, i * nc + J)),
                "t_of_entry": torch.as_tensor(tvals),
                "t_position": torch.as_tensor(np.searchsorted(keys, T.row.astype(np.int64) * nc + T.col)),
                "t_values": torch.as_tensor(T.data.astype(np.float64)),
                "pattern_row": torch.as_tensor(prow),
                "pattern_col": torch.as_tensor(self.pattern.indices.astype(np.int64)),
                "rows": torch.as_tensor(self.rows),
                "cols": torch.as_tensor(self.cols),
                "is_diagonal": torch.as_tensor(self.rows == self.cols),
            }
        return self._torch_maps


def _row_correction(U_rows: np.ndarray, U_cols: np.ndarray, U_vals: np.ndarray, n: int, Bc: np.ndarray,
                    target: np.ndarray) -> np.ndarray:
    """Least change of each row of ``U`` (on its pattern) such that ``U Bc = target`` (numpy)."""
    nb = Bc.shape[1]
    BJ = Bc[U_cols]  # (nnz, nb)

    def rowsum(w):
        return np.bincount(U_rows, weights=w, minlength=n)

    resid = np.stack([rowsum(U_vals * BJ[:, b]) for b in range(nb)], 1) - target
    if nb == 1:
        gram = rowsum(BJ[:, 0] ** 2)
        lam = resid[:, 0] / np.where(gram > 0, gram, 1.0)
        return U_vals - BJ[:, 0] * lam[U_rows]
    gram = np.stack([np.stack([rowsum(BJ[:, a] * BJ[:, b]) for b in range(nb)], 1) for a in range(nb)], 1)
    eye = np.eye(nb)
    gram = gram + 1e-12 * np.trace(gram, axis1=1, axis2=2)[:, None, None] * eye + 1e-300 * eye
    lam = np.linalg.solve(gram, resid[:, :, None])[..., 0]
    return U_vals - (BJ * lam[U_rows]).sum(1)


def prolongator(level: AggregationLevel, entry_weight: np.ndarray, row_weight: np.ndarray) -> sp.csr_matrix:
    """``P`` (CSR ``(n, nc)``) for per-entry weights ``(nnz(A),)`` and per-row weights ``(n,)`` (numpy)."""
    if (entry_weight == 1.0).all() and (row_weight == 1.0).all():  # SA: U B_c = target already
        P = (level.T - sp.diags(level.omega / level.diagonal) @ (level.A @ level.T)).tocsr()
        P.sort_indices()
        return P
    entry, i, J, tvals = level._contributions()
    scale = level.omega / level.diagonal
    contrib = (level.values * entry_weight)[entry] * scale[i] * tvals
    U = sp.coo_matrix((contrib, (i, J)), shape=(level.n, level.n_coarse)).tocsr()
    U.sum_duplicates()
    target = (level.A @ level.TB) * (scale * row_weight)[:, None]
    U_rows = np.repeat(np.arange(level.n), np.diff(U.indptr))
    U.data = _row_correction(U_rows, U.indices.astype(np.int64), U.data, level.n, level.Bc, target)
    P = (level.T - U).tocsr()
    P.sort_indices()
    return P


def prolongator_values_torch(level: AggregationLevel, values: torch.Tensor, entry_weight: torch.Tensor,
                             row_weight: torch.Tensor) -> torch.Tensor:
    """The values of :func:`prolongator` on ``level.pattern``, differentiable in ``values`` (the
    stored entries of ``A``, e.g. of a Galerkin operator that depends on earlier weights) and in the
    weights. ``omega`` stays the level's (a constant)."""
    m = level.torch_maps()
    dtype = values.dtype
    n, npat = level.n, level.pattern.nnz
    diag = torch.zeros(n, dtype=dtype).index_add(0, m["rows"][m["is_diagonal"]], values[m["is_diagonal"]])
    scale = level.omega / diag
    coef = values * entry_weight * scale[m["rows"]]
    contrib = coef[m["entry"]] * m["t_of_entry"].to(dtype)
    U = torch.zeros(npat, dtype=dtype).index_add(0, m["position"], contrib)
    Bc = torch.as_tensor(level.Bc, dtype=dtype)
    TB = torch.as_tensor(level.TB, dtype=dtype)
    nb = Bc.shape[1]
    AB = torch.zeros(n, nb, dtype=dtype).index_add(0, m["rows"], values[:, None] * TB[m["cols"]])
    target = AB * (scale * row_weight)[:, None]
    BJ = Bc[m["pattern_col"]]
    prow = m["pattern_row"]
    resid = torch.zeros(n, nb, dtype=dtype).index_add(0, prow, U[:, None] * BJ) - target
    gram = torch.zeros(n, nb, nb, dtype=dtype).index_add(0, prow, BJ[:, :, None] * BJ[:, None, :])
    if nb == 1:
        g = gram[:, 0, 0]
        lam = resid / torch.where(g > 0, g, torch.ones_like(g))[:, None]
    else:
        eye = torch.eye(nb, dtype=dtype)
        reg = 1e-12 * gram.diagonal(dim1=1, dim2=2).sum(1)[:, None, None] * eye + 1e-300 * eye
        lam = torch.linalg.solve(gram + reg, resid[:, :, None])[..., 0]
    U = U - (BJ * lam[prow]).sum(1)
    T = torch.zeros(npat, dtype=dtype).index_add(0, m["t_position"], m["t_values"].to(dtype))
    return T - U


WeightFn = Callable[[AggregationLevel, int], tuple[np.ndarray, np.ndarray]]


def build_levels(A: sp.csr_matrix, B: np.ndarray, weights: WeightFn, *, blocksize: int = 1,
                 theta: float = 0.0, max_levels: int = 10, max_coarse: int = 10,
                 improve_sweeps: int = 4) -> tuple[list[AggregationLevel], list[sp.csr_matrix], sp.csr_matrix]:
    """The hierarchy of ``A``: ``(levels, prolongators, coarsest matrix)``.

    ``weights(level, depth) -> (entry_weight (nnz,), row_weight (n,))`` gives each level's weights
    (``depth`` 0 is the finest). Coarsening stops after ``max_levels`` levels, when a level has at
    most ``max_coarse`` nodes (pyamg's rules) or when it has no aggregates (no strong connections).
    Coarse levels have ``B.shape[1]`` unknowns per node.
    """
    levels, prolongators = [], []
    current, Bcur, bs = sp.csr_matrix(A), B, blocksize
    while len(levels) < max_levels - 1 and current.shape[0] // bs > max_coarse:
        level = AggregationLevel(current, Bcur, blocksize=bs, theta=theta,
                                 improve_sweeps=improve_sweeps if not levels else 0)
        if level.n_coarse == 0:  # no strong connections left: this level is the coarsest
            break
        entry_weight, row_weight = weights(level, len(levels))
        P = prolongator(level, np.asarray(entry_weight, dtype=np.float64), np.asarray(row_weight, dtype=np.float64))
        Bc = level.Bc
        # an aggregate on which B vanishes gets zero columns (pyamg's fit_candidates): drop them
        nb = Bc.shape[1]
        norms = np.sqrt(np.asarray(P.multiply(P).sum(axis=0)).ravel())
        empty = (norms <= 1e-14 * norms.max(initial=0.0)).reshape(-1, nb).all(axis=1)
        if empty.all():
            break
        if empty.any():
            keep = np.repeat(~empty, nb)
            P, Bc = P[:, keep].tocsr(), Bc[keep]
            level.kept_columns = keep
        levels.append(level)
        prolongators.append(P)
        current = sp.csr_matrix(P.T @ level.A @ P)
        current.eliminate_zeros()
        diagonal = current.diagonal()
        if not (diagonal > 0).all():  # a Galerkin operator of an SPD matrix has a positive diagonal
            i = int(np.nonzero(~(diagonal > 0))[0][0])
            if diagonal[i] < 0:
                raise ValueError(f"A is not positive definite: its Galerkin coarse operator on level {len(levels)} "
                                 f"has the diagonal entry {diagonal[i]:.3e} < 0 (row {i})")
            raise ValueError(f"cannot coarsen: the near-nullspace B vanishes on part of aggregate {i // nb} of "
                             f"level {len(levels) - 1} (check B's columns)")
        current.sort_indices()
        Bcur, bs = Bc, Bc.shape[1]
    return levels, prolongators, current


def multilevel_solver(levels: list[AggregationLevel], prolongators: list[sp.csr_matrix], coarsest: sp.csr_matrix):
    """A :class:`pyamg.multilevel.MultilevelSolver` from the levels (BSR where a level has blocks),
    with ``R = P^T``, pyamg's smoothers (:data:`SMOOTHER`) and its pseudo-inverse coarsest solve
    (sparse LU above 2000 unknowns, when no strong connections were left to coarsen)."""
    from pyamg.multilevel import MultilevelSolver
    from pyamg.relaxation.smoothing import change_smoothers

    out = []
    for level, P in zip(levels, prolongators):
        lv = MultilevelSolver.Level()
        bs, nb = level.blocksize, level.Bc.shape[1]
        lv.A = level.A.tobsr(blocksize=(bs, bs)) if bs > 1 else level.A
        lv.P = P.tobsr(blocksize=(bs, nb)) if (bs > 1 or nb > 1) else P
        lv.R = lv.P.T.tobsr(blocksize=(nb, bs)) if (bs > 1 or nb > 1) else P.T.tocsr()
        lv.B = level.B
        out.append(lv)
    last = MultilevelSolver.Level()
    nb = levels[-1].Bc.shape[1] if levels else 1
    last.A = coarsest.tobsr(blocksize=(nb, nb)) if nb > 1 else coarsest
    out.append(last)
    # pyamg's pseudo-inverse on small coarsest levels; a sparse LU when coarsening stopped early
    ml = MultilevelSolver(out, coarse_solver="pinv" if coarsest.shape[0] <= 2000 else "splu")
    change_smoothers(ml, SMOOTHER, SMOOTHER)
    return ml
