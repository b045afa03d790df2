"""Stationary relaxation: Jacobi, Gauss–Seidel, SOR(omega) and SSOR(omega).

With ``A = L + D + U`` (strict lower, diagonal, strict upper), one SOR sweep is

    x <- x + (D / omega + L)^{-1} (b - A x),

Gauss–Seidel is ``omega = 1``, and SSOR follows each forward sweep with a backward one,
``x <- x + (D / omega + U)^{-1} (b - A x)``. Every solver stops when the relative residual
``||b - A x|| / ||b||`` is at most ``rtol`` (or ``||b - A x|| <= atol``).

Orderings
---------
``"lexicographic"``
    The natural order of the unknowns: a sparse triangular solve per sweep. The whole batch
    (each system with its own ``omega``) is one block-diagonal triangular system, solved in a
    single call (torch CSR: MKL on the CPU, cuSPARSE on a GPU).
``"red-black"``
    Unknowns split into two colours with no coupling inside a colour (the checkerboard of a
    5/7-point stencil, found from the sparsity graph, or from the grid of a
    :class:`~pdesurrogates.linalg.operators.StencilOperator`). A colour's unknowns update all at
    once, ``x_c <- x_c + omega (b - A x)_c / d_c``: pure tensor operations over the batch, which
    is what parallelises on a GPU. A matrix whose graph is not two-colourable is refused.

Kernels of the lexicographic sweep
----------------------------------
``kernel="triangular"`` solves the block-diagonal triangular system of the batch with one sparse
triangular solve per sweep. ``kernel="wavefront"`` groups the unknowns into *levels* of the
sweep's dependency graph (unknown ``i`` depends on the earlier ``j`` with ``a_ij != 0``; a level
holds unknowns whose dependencies all lie in earlier levels: the anti-diagonals of a 5-point
grid), updates a level's unknowns of every system at once, and drops converged systems from the
working batch. The iterates are those of the triangular kernel up to the order of floating-point
sums. It pays off for large batches of small systems (many matrices or many ``omega``): the
default ``"auto"`` picks it for a batch of matrices ``(B, n, n)`` whose levels hold two unknowns
or more on average, and for one matrix when the batch holds at least 32 systems and a level
holds at least 2048 unknowns across the batch on average.

Batches and many relaxation factors
-----------------------------------
``b`` may be ``(B, n)`` and ``omega`` a float or ``B`` values, one per system. A single ``b``
``(n,)`` with ``k`` values of ``omega`` is solved ``k`` times, once per ``omega`` (a batched result)
— the shape of the "Learning to Relax" experiments (Khodak et al., ICLR 2024), which compare
many ``omega`` on one system.

>>> from pdesurrogates.linalg import gallery
>>> A = gallery.poisson2d(8)
>>> b = torch.ones(64, dtype=torch.float64)
>>> res = sor(A, b, omega=torch.tensor([1.0, 1.5]), rtol=1e-8)
>>> res.iterations.tolist(), res.converged.tolist()
([149, 32], [True, True])
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
from scipy.sparse import csgraph

from pdesurrogates.linalg._iteration import (
    Monitor,
    check_tolerances,
    default_check_every,
    user_iterate,
)
from pdesurrogates.linalg._wavefront import WavefrontSOR, stationary_wavefront, sweep_levels
from pdesurrogates.linalg.operators import System, TorchOperator, prepare_system
from pdesurrogates.linalg.result import SolveResult

__all__ = ["gauss_seidel", "jacobi", "red_black_colors", "sor", "ssor", "sweep_levels"]

ORDERINGS = ("lexicographic", "red-black")


def red_black_colors(A) -> np.ndarray:
    """Two-colouring ``(n,)`` of 0/1 of the unknowns of ``A`` with no edge inside a colour.

    Raises ``ValueError`` when the sparsity graph of ``A`` is not bipartite (e.g. a 9-point
    stencil), since red-black ordering is then not a Gauss–Seidel sweep.

    >>> from pdesurrogates.linalg import gallery
    >>> red_black_colors(gallery.poisson2d(3)).reshape(3, 3)
    array([[0, 1, 0],
           [1, 0, 1],
           [0, 1, 0]])
    """
    op = A if isinstance(A, TorchOperator) else TorchOperator(A, device="cpu")
    if op.kind == "stencil":
        return op.stencil.colors()
    P = op.pattern_scipy().tocoo()
    off = P.row != P.col
    rows, cols = P.row[off], P.col[off]
    n = op.n
    # a virtual root joined to one node of every connected component: BFS depth parity
    G = sp.csr_matrix((np.ones(rows.size), (rows, cols)), shape=(n, n))
    _, labels = csgraph.connected_components(G, directed=False)
    roots = np.unique(labels, return_index=True)[1]
    r2 = np.concatenate([rows, np.full(roots.size, n)])
    c2 = np.concatenate([cols, roots])
    G2 = sp.csr_matrix((np.ones(r2.size), (r2, c2)), shape=(n + 1, n + 1))
    depth = csgraph.shortest_path(G2, directed=False, unweighted=True, indices=n)[:n]
    colors = (depth.astype(np.int64) - 1) % 2
    clash = colors[rows] == colors[cols]
    if np.any(clash):
        i, j = rows[clash][0], cols[clash][0]
        raise ValueError(
            "ordering='red-black' needs a matrix whose sparsity graph is two-colourable "
            f"(e.g. a 3/5/7-point stencil); unknowns {i} and {j} are coupled but would share a "
            "colour. Use ordering='lexicographic'."
        )
    return colors


# -- validation -----------------------------------------------------------------------------
def _omega_tensor(omega, system: System, name: str) -> tuple[torch.Tensor, System]:
    """``omega`` as a ``(B,)`` tensor; broadcasts a single ``b`` over several omegas."""
    w = omega.detach() if isinstance(omega, torch.Tensor) else torch.as_tensor(
        np.asarray(omega, dtype=np.float64))
    w = w.to(dtype=system.b.dtype, device=system.b.device).reshape(-1)
    if w.numel() == 0:
        raise ValueError(f"{name}: omega is empty")
    if not bool(torch.isfinite(w).all()) or not bool(((w > 0) & (w < 2)).all()):
        bad = w[~(torch.isfinite(w) & (w > 0) & (w < 2))][0].item()
        raise ValueError(f"{name}: omega must lie in the open interval (0, 2), found {bad}")
    B = system.b.shape[0]
    if w.numel() == 1:
        return w.expand(B), system
    if B == 1 and system.single and system.op.batch is None:
        k = w.numel()
        system.b = system.b.expand(k, -1).contiguous()
        system.x0 = system.x0.expand(k, -1).contiguous()
        system.single = False
        return w, system
    if w.numel() != B:
        raise ValueError(
            f"{name}: omega has {w.numel()} values but there are {B} systems "
            "(give one omega, or one per system)"
        )
    return w, system


def _diagonal(op: TorchOperator, name: str) -> torch.Tensor:
    d = op.diagonal()
    zero = d == 0
    if bool(zero.any()):
        idx = torch.nonzero(zero)[0].tolist()
        raise ValueError(
            f"{name}: A has a zero diagonal entry at index {idx[-1]}"
            + (f" of matrix {idx[0]}" if d.ndim == 2 else "")
            + "; relaxation divides by the diagonal"
        )
    return d


def _check_ordering(ordering: str, name: str) -> None:
    if ordering not in ORDERINGS:
        raise ValueError(f"{name}: ordering must be one of {ORDERINGS}, got {ordering!r}")


def _no_preconditioner(M, name: str) -> None:
    if M is not None:
        raise ValueError(f"{name}: relaxation methods take no preconditioner M (got {M!r})")


# -- sweeps ---------------------------------------------------------------------------------
class _TriangularSweep:
    """``r -> (D / omega + L)^{-1} r`` (or with ``U``) for a batch with per-system omega.

    The batch is one block-diagonal sparse triangular system (one block per system, each with
    its own ``omega`` and, for a batch of matrices, its own ``A``), solved by a single sparse
    triangular solve (torch CSR: MKL on the CPU, cuSPARSE on a GPU). The work per sweep is
    ``O(B nnz)``, so thousands of small systems with different ``omega`` cost one call.
    """

    def __init__(self, op: TorchOperator, d: torch.Tensor, omega: torch.Tensor, lower: bool):
        self.lower = lower
        B, n = omega.shape[0], op.n
        self.shape = (B, n)
        dev = omega.device
        if op.kind == "batched":
            part = torch.tril(op.matrix, -1) if lower else torch.triu(op.matrix, 1)
            k, i, j = torch.nonzero(part, as_tuple=True)
            rows, cols, vals = k * n + i, k * n + j, part[k, i, j]
        else:
            r, c, v = op.sparse().coo()
            keep = (c < r) if lower else (c > r)
            r, c, v = r[keep], c[keep], v[keep]
            off = (torch.arange(B, device=dev) * n).unsqueeze(1)
            rows = (r.unsqueeze(0) + off).reshape(-1)
            cols = (c.unsqueeze(0) + off).reshape(-1)
            vals = v.repeat(B)
        diag = (d.expand(B, n) / omega.unsqueeze(1)).reshape(-1)
        ar = torch.arange(B * n, device=dev)
        T = torch.sparse_coo_tensor(
            torch.stack([torch.cat([rows, ar]), torch.cat([cols, ar])]),
            torch.cat([vals, diag.to(vals.dtype)]),
            (B * n, B * n),
            check_invariants=False,
        ).coalesce()
        self.T = T.to_sparse_csr()

    def __call__(self, R: torch.Tensor) -> torch.Tensor:
        sol = torch.triangular_solve(R.reshape(-1, 1), self.T, upper=not self.lower).solution
        return sol.reshape(self.shape)


# -- wavefront kernel -------------------------------------------------------------------------
#: ``kernel="auto"`` uses the wavefront kernel from this many systems in the batch ...
WAVEFRONT_MIN_BATCH = 32
#: ... when a level holds at least this many unknowns across the batch on average
WAVEFRONT_MIN_WIDTH = 2048
KERNELS = ("auto", "triangular", "wavefront")


def _choose_kernel(kernel: str, op: TorchOperator, d, w, symmetric, name):
    """The :class:`WavefrontSOR` to use, or ``None`` for the triangular kernel."""
    B = w.shape[0]
    if kernel == "triangular" or (kernel == "auto" and B < WAVEFRONT_MIN_BATCH and op.kind != "batched"):
        return None
    kern = WavefrontSOR(op, d, w, symmetric)
    if kernel == "wavefront":
        return kern
    if op.kind == "batched":  # the triangular kernel multiplies B dense matrices per sweep
        return kern if 2 * kern.n_levels <= op.n else None
    return kern if B * op.n >= WAVEFRONT_MIN_WIDTH * kern.n_levels else None


def _stationary(
    system: System, step, rtol, atol, maxiter, callback, check_every, name
) -> SolveResult:
    op, b = system.op, system.b
    maxiter = check_tolerances(rtol, atol, maxiter, op.n, name)
    mon = Monitor(b, rtol, atol, default_check_every(b.device, check_every))
    X = system.x0
    R = b - op.matvec(X)
    mon.start(torch.linalg.vector_norm(R, dim=1))
    for k in range(maxiter):
        if mon.done(k):
            break
        X_new, R = step(X, R)
        X = mon.keep(X_new, X)  # a finished system's R is stale but never read again
        mon.record(torch.linalg.vector_norm(R, dim=1))
        if callback is not None:
            callback(user_iterate(system, X))
    return mon.result(system, X)


def _relax(A, b, x0, rtol, atol, maxiter, M, callback, omega, ordering, symmetric, check_every,
           name, kernel="auto") -> SolveResult:
    _no_preconditioner(M, name)
    _check_ordering(ordering, name)
    if kernel not in KERNELS:
        raise ValueError(f"{name}: kernel must be one of {KERNELS}, got {kernel!r}")
    if ordering != "lexicographic" and kernel != "auto":
        raise ValueError(f"{name}: kernel={kernel!r} applies to ordering='lexicographic' only "
                         f"(got ordering={ordering!r})")
    system = prepare_system(A, b, x0, name=name)
    w, system = _omega_tensor(omega, system, name)
    op, bb = system.op, system.b
    d = _diagonal(op, name)
    if ordering == "lexicographic":
        kern = _choose_kernel(kernel, op, d, w, symmetric, name)
        if kern is not None:
            return stationary_wavefront(system, kern, rtol, atol, maxiter, callback, check_every,
                                         name)
        fwd = _TriangularSweep(op, d, w, lower=True)
        bwd = _TriangularSweep(op, d, w, lower=False) if symmetric else None

        def step(X, R):
            X = X + fwd(R)
            R = bb - op.matvec(X)
            if bwd is not None:
                X = X + bwd(R)
                R = bb - op.matvec(X)
            return X, R
    else:
        colors = torch.as_tensor(red_black_colors(op), device=bb.device)
        masks = [(colors == c).to(bb.dtype) for c in (0, 1)]
        order = [0, 1, 1, 0] if symmetric else [0, 1]
        scale = w.unsqueeze(-1) / d  # (B, n)

        def step(X, R):
            for c in order:
                X = X + masks[c] * scale * R
                R = bb - op.matvec(X)
            return X, R

    return _stationary(system, step, rtol, atol, maxiter, callback, check_every, name)


# -- public solvers ---------------------------------------------------------------------------
def sor(A, b, x0=None, rtol=1e-8, atol=0.0, maxiter=None, M=None, callback=None, *,
        omega, ordering: str = "lexicographic", check_every=None,
        kernel: str = "auto") -> SolveResult:
    """Successive over-relaxation.

    Parameters
    ----------
    A : matrix ``(n, n)`` (torch sparse CSR or dense, SciPy sparse, numpy) or a batch of dense
        matrices ``(B, n, n)``, or a ``StencilOperator``. Needs a nonzero diagonal.
    b : ``(n,)`` or ``(B, n)``, torch or numpy.
    x0 : like ``b``, optional (default zero).
    rtol, atol : float
        Stop when ``||b - A x|| <= max(rtol ||b||, atol)``.
    maxiter : int, optional
        Sweep cap (default ``10 n``); a solve that reaches it returns ``converged=False``.
    M : None
        Relaxation takes no preconditioner (present for the common signature).
    callback : callable, optional
        ``callback(x)`` after each sweep, ``x`` in ``b``'s layout.
    omega : float or ``(B,)`` values in ``(0, 2)``
        Relaxation factor, one per system if several (see the module docstring).
    ordering : ``"lexicographic"`` or ``"red-black"``
    check_every : int, optional
        How often the host checks whether every system has finished (default 1 on CPU, 8 on a
        GPU); per-system results are exact whatever its value.
    kernel : ``"auto"``, ``"triangular"`` or ``"wavefront"``
        How a lexicographic sweep is computed (see the module docstring); the iterates agree
        to rounding. Only ``"auto"`` goes with ``ordering="red-black"``.

    Returns
    -------
    SolveResult
    """
    return _relax(A, b, x0, rtol, atol, maxiter, M, callback, omega, ordering, False,
                  check_every, "sor", kernel)


def ssor(A, b, x0=None, rtol=1e-8, atol=0.0, maxiter=None, M=None, callback=None, *,
         omega, ordering: str = "lexicographic", check_every=None,
         kernel: str = "auto") -> SolveResult:
    """Symmetric SOR: a forward SOR sweep then a backward one per iteration. See :func:`sor`."""
    return _relax(A, b, x0, rtol, atol, maxiter, M, callback, omega, ordering, True,
                  check_every, "ssor", kernel)


def gauss_seidel(A, b, x0=None, rtol=1e-8, atol=0.0, maxiter=None, M=None, callback=None, *,
                 ordering: str = "lexicographic", check_every=None,
                 kernel: str = "auto") -> SolveResult:
    """Gauss–Seidel (SOR with ``omega = 1``). See :func:`sor`."""
    return _relax(A, b, x0, rtol, atol, maxiter, M, callback, 1.0, ordering, False,
                  check_every, "gauss_seidel", kernel)


def jacobi(A, b, x0=None, rtol=1e-8, atol=0.0, maxiter=None, M=None, callback=None, *,
           omega=1.0, check_every=None) -> SolveResult:
    """(Weighted) Jacobi: ``x <- x + omega D^{-1} (b - A x)``; ``omega`` float or ``(B,)``.

    Converges for SPD ``A`` when ``0 < omega < 2 / lambda_max(D^{-1} A)``. See :func:`sor` for the
    other parameters.
    """
    name = "jacobi"
    _no_preconditioner(M, name)
    system = prepare_system(A, b, x0, name=name)
    w, system = _omega_tensor(omega, system, name)
    op, bb = system.op, system.b
    scale = w.unsqueeze(-1) / _diagonal(op, name)

    def step(X, R):
        X = X + scale * R
        return X, bb - op.matvec(X)

    return _stationary(system, step, rtol, atol, maxiter, callback, check_every, name)
