"""The SOR relaxation factor: spectral radius of Jacobi, Young's optimal ``omega``, a search for
the ``omega`` that minimises a measured cost.

For a consistently ordered matrix (the 5/7-point Laplacian in lexicographic or red-black
order, any tridiagonal matrix) whose Jacobi iteration matrix ``I - D^{-1} A`` has real
eigenvalues of modulus at most ``beta < 1``, Young's theorem gives the ``omega`` minimising the
spectral radius of the SOR iteration matrix,

    omega* = 2 / (1 + sqrt(1 - beta^2)) = 1 + (beta / (1 + sqrt(1 - beta^2)))^2,

where it equals ``omega* - 1``. The second form is the "instance-optimal" comparator of
Khodak et al. (*Learning to Relax*, ICLR 2024). It is asymptotic: the fewest iterations to a
finite tolerance, or the best ``omega`` of SSOR-preconditioned CG, has no closed form, and
:func:`search_optimal_omega` finds it from measured costs (a grid, then golden-section steps).

>>> from pdesurrogates.linalg import gallery
>>> round(young_omega(gallery.poisson2d(10)), 6)  # 2 / (1 + sin(pi / 11))
1.560388
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from pdesurrogates.linalg.operators import to_scipy_csr

__all__ = ["OmegaSearch", "jacobi_spectral_radius", "search_optimal_omega", "young_omega"]

#: golden-section ratio ``(sqrt(5) - 1) / 2``
GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0


def jacobi_spectral_radius(A, *, symmetric: bool | None = None) -> float:
    """Spectral radius ``beta`` of the Jacobi iteration matrix ``I - D^{-1} A``.

    Parameters
    ----------
    A : matrix ``(n, n)`` in any format :mod:`pdesurrogates.linalg` accepts (SciPy sparse,
        numpy, torch dense or sparse CSR, ``StencilOperator``), with a nonzero diagonal.
    symmetric : bool, optional
        Whether ``A`` is symmetric with a positive diagonal; detected when not given. Then
        ``I - D^{-1} A`` is similar to ``I - D^{-1/2} A D^{-1/2}``, whose extreme eigenvalues are
        computed with a symmetric solver (dense up to ``n = 2000``, Lanczos above). Otherwise
        the eigenvalues of the dense ``I - D^{-1} A`` (``n <= 4000``).

    Returns
    -------
    float
        ``max |eig(I - D^{-1} A)|``.

    Examples
    --------
    >>> from pdesurrogates.linalg import gallery
    >>> beta = jacobi_spectral_radius(gallery.poisson2d(10))
    >>> round(beta, 12) == round(math.cos(math.pi / 11), 12)
    True
    """
    S = to_scipy_csr(A)
    n, m = S.shape
    if n != m:
        raise ValueError(f"jacobi_spectral_radius: A must be square, got shape {S.shape}")
    d = S.diagonal()
    if np.any(d == 0):
        raise ValueError(
            f"jacobi_spectral_radius: A has a zero on its diagonal (row {int(np.flatnonzero(d == 0)[0])})"
        )
    if symmetric is None:
        asym = abs(S - S.T).max() if S.nnz else 0.0
        symmetric = bool(asym <= 1e-12 * max(abs(S).max(), 1e-300)) and bool(np.all(d > 0))
    if symmetric:
        s = sp.diags(1.0 / np.sqrt(d))
        scaled = (s @ S @ s).tocsr()
        if n <= 2000:
            ev = np.linalg.eigvalsh(scaled.toarray())
            lo, hi = ev[0], ev[-1]
        else:
            from scipy.sparse.linalg import eigsh

            hi = eigsh(scaled, k=1, which="LA", return_eigenvectors=False, tol=1e-10)[0]
            lo = eigsh(scaled, k=1, which="SA", return_eigenvectors=False, tol=1e-10)[0]
        return float(max(abs(1.0 - lo), abs(1.0 - hi)))
    if n > 4000:
        raise ValueError(
            f"jacobi_spectral_radius: non-symmetric A of size {n} is too large for the dense "
            "eigen-solver (at most 4000)"
        )
    J = np.eye(n) - S.toarray() / d[:, None]
    return float(np.max(np.abs(np.linalg.eigvals(J))))


def young_omega(A=None, *, beta=None):
    """Young's optimal SOR factor ``2 / (1 + sqrt(1 - beta^2))``.

    Give the matrix ``A`` (``beta`` is then :func:`jacobi_spectral_radius` of it) or the
    Jacobi spectral radius ``beta`` itself (a float, or an array for many systems at once).
    The value is optimal for consistently ordered matrices whose Jacobi matrix has real
    eigenvalues (see the module docstring); elsewhere it is a heuristic.

    Returns
    -------
    float, or an array shaped like ``beta``

    Examples
    --------
    >>> round(young_omega(beta=0.0), 12), round(young_omega(beta=math.cos(math.pi / 11)), 6)
    (1.0, 1.560388)
    >>> young_omega(beta=[0.0, 0.8]).tolist()
    [1.0, 1.25]
    """
    if (A is None) == (beta is None):
        raise ValueError("young_omega: give exactly one of A or beta")
    if beta is None:
        beta = jacobi_spectral_radius(A)
    b = np.asarray(beta, dtype=np.float64)
    if not np.all((b >= 0.0) & (b < 1.0)):
        bad = b[~((b >= 0.0) & (b < 1.0))].reshape(-1)[0]
        raise ValueError(
            f"young_omega needs a Jacobi spectral radius in [0, 1) (SOR converges for some omega "
            f"only then), got {bad:.6g}"
        )
    omega = 2.0 / (1.0 + np.sqrt(1.0 - b * b))
    return float(omega) if omega.ndim == 0 else omega


@dataclass(frozen=True)
class OmegaSearch:
    """Outcome of :func:`search_optimal_omega`.

    Attributes
    ----------
    omega : float
        The ``omega`` with the smallest cost seen (the first one on a tie, grid first).
    cost : float
        Its cost.
    grid_omega, grid_cost : float
        The best grid value and its cost.
    evaluations : int
        How many ``omega`` values were evaluated (grid included).
    """

    omega: float
    cost: float
    grid_omega: float
    grid_cost: float
    evaluations: int


def search_optimal_omega(
    cost: Callable[[np.ndarray], np.ndarray],
    omegas,
    *,
    rounds: int = 8,
    grid_costs=None,
) -> OmegaSearch:
    """Find the ``omega`` with the smallest measured cost: a grid, then golden-section steps.

    The cost (an iteration count, a time) is evaluated on the grid ``omegas``; with ``w_i`` the
    best grid value, the bracket ``[w_{i-1}, w_{i+1}]`` (clipped at the ends of the grid) is
    narrowed by ``rounds`` golden-section steps, each evaluating one new ``omega``. This is the
    per-instance optimum of Khodak et al. (ICLR 2024), who search the same way (eight rounds).
    An integer cost is only piecewise constant in ``omega``, so the result is the best value
    seen, never worse than the grid's.

    Parameters
    ----------
    cost : callable
        ``cost(w) -> c`` for a 1-D array ``w`` of ``omega`` values, returning their costs (an
        array of the same length). The grid is evaluated in one call (e.g. one batched
        :func:`~pdesurrogates.linalg.sor` solve with many ``omega``), the two interior points of
        the first bracket in a second call, then one value per round.
    omegas : 1-D array
        The grid, increasing.
    rounds : int
        Golden-section steps (each shrinks the bracket by ``0.618``).
    grid_costs : 1-D array, optional
        The costs of the grid when already known (then ``cost`` is not called on the grid).

    Returns
    -------
    OmegaSearch

    Examples
    --------
    >>> grid = np.linspace(1.0, 1.95, 20)
    >>> res = search_optimal_omega(lambda w: (w - 1.4321) ** 2, grid, rounds=30)
    >>> round(res.omega, 4), res.grid_omega, res.evaluations
    (1.4321, 1.45, 52)
    """
    grid = np.asarray(omegas, dtype=np.float64).reshape(-1)
    if grid.size == 0 or not np.all(np.isfinite(grid)):
        raise ValueError("search_optimal_omega: omegas must be a non-empty array of finite values")
    if grid.size > 1 and not np.all(np.diff(grid) > 0):
        raise ValueError("search_optimal_omega: omegas must be increasing")
    if int(rounds) != rounds or rounds < 0:
        raise ValueError(f"search_optimal_omega: rounds must be an integer >= 0, got {rounds!r}")

    def evaluate(w: np.ndarray) -> np.ndarray:
        c = np.asarray(cost(w), dtype=np.float64).reshape(-1)
        if c.shape != w.shape:
            raise ValueError(
                f"search_optimal_omega: cost returned {c.size} values for {w.size} omegas"
            )
        if not np.all(np.isfinite(c)):
            raise ValueError(f"search_optimal_omega: cost returned a non-finite value at omega {w.tolist()}")
        return c

    if grid_costs is None:
        costs = evaluate(grid)
        count = grid.size
    else:
        costs = np.asarray(grid_costs, dtype=np.float64).reshape(-1)
        if costs.shape != grid.shape:
            raise ValueError(
                f"search_optimal_omega: grid_costs has {costs.size} values, omegas {grid.size}"
            )
        count = 0
    i = int(np.argmin(costs))
    best_w, best_c = float(grid[i]), float(costs[i])
    result = {"omega": best_w, "cost": best_c}
    lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, grid.size - 1)]
    if rounds == 0 or hi <= lo:
        return OmegaSearch(best_w, best_c, best_w, best_c, count)

    def seen(w: float, c: float) -> None:
        if c < result["cost"]:
            result["omega"], result["cost"] = float(w), float(c)

    x1, x2 = hi - GOLDEN * (hi - lo), lo + GOLDEN * (hi - lo)
    f1, f2 = evaluate(np.array([x1, x2]))
    count += 2
    seen(x1, f1)
    seen(x2, f2)
    for _ in range(int(rounds)):
        if f1 <= f2:  # the minimum is in [lo, x2]
            hi, x2, f2 = x2, x1, f1
            x1 = hi - GOLDEN * (hi - lo)
            f1 = evaluate(np.array([x1]))[0]
            seen(x1, f1)
        else:  # in [x1, hi]
            lo, x1, f1 = x1, x2, f2
            x2 = lo + GOLDEN * (hi - lo)
            f2 = evaluate(np.array([x2]))[0]
            seen(x2, f2)
        count += 1
    return OmegaSearch(result["omega"], result["cost"], best_w, best_c, count)
