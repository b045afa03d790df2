"""Poisson equation ``-Laplace u = f`` on a box, 1D/2D/3D, Dirichlet or homogeneous Neumann.

Second-order finite differences on a node-based :class:`~pdesurrogates.physics.grid.Grid`:

* **Dirichlet**: the unknowns are the interior nodes; the matrix is
  :func:`~pdesurrogates.physics.operators.laplacian_matrix` (the same finite-volume operator as
  Darcy with ``a = 1``) and given boundary values move to the right-hand side.
* **Neumann** (``du/dn = 0``): every node is an unknown. The vertex-centred finite-volume form
  ``K u = M f`` is used, with ``K`` the symmetric stiffness (one ``1/h^2`` coupling per pair of
  neighbouring nodes, weighted by the transverse face fraction) and ``M`` the diagonal of control
  volume fractions (``1/2`` per boundary axis); on interior nodes it is the 5-point stencil and on
  boundary nodes the mirror-ghost-node stencil, both second order. The problem is solvable only when
  ``sum(M f) = 0`` (the discrete ``\\int f = 0``, trapezoidal rule); ``compatibility="project"``
  subtracts the weighted mean of ``f`` and ``"raise"`` refuses an incompatible ``f``. The solution is
  fixed by ``sum(M u) = 0``.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch

from pdesurrogates.physics.grid import Grid
from pdesurrogates.physics.operators import apply_diffusion, laplacian_matrix


def _check_field(f, grid: Grid, name: str) -> np.ndarray:
    f = np.asarray(f, dtype=np.float64)
    if f.shape != grid.shape:
        raise ValueError(f"{name} has shape {f.shape}, grid needs {grid.shape}")
    if not np.all(np.isfinite(f)):
        raise ValueError(f"{name} contains NaN or Inf")
    return f


def neumann_mass_weights(grid: Grid) -> np.ndarray:
    """Control-volume fractions ``M`` at every node (``1/2`` per boundary axis), ``grid.shape``."""
    w = np.ones(())
    for n in grid.shape:
        w1 = np.ones(n)
        w1[0] = w1[-1] = 0.5
        w = np.multiply.outer(w, w1)
    return w


def neumann_laplacian_matrix(grid: Grid) -> tuple[sp.csr_matrix, np.ndarray]:
    """Symmetric stiffness ``K`` (singular, kernel = constants) and mass weights of ``-Laplace``.

    Returns
    -------
    K : scipy.sparse.csr_matrix
        ``(N, N)`` with ``N = prod(grid.shape)``, C order.
    M : np.ndarray
        ``(N,)`` control-volume fractions; ``diag(M)^-1 K`` is the ghost-node Neumann Laplacian.
    """
    masses, stiff = [], []
    for n, h in zip(grid.shape, grid.spacing):
        d = np.full(n, 2.0)
        d[0] = d[-1] = 1.0
        stiff.append(sp.diags([-np.ones(n - 1), d, -np.ones(n - 1)], [-1, 0, 1]) / h**2)
        m = np.ones(n)
        m[0] = m[-1] = 0.5
        masses.append(sp.diags(m))
    K = None
    for axis in range(grid.ndim):
        term = None
        for other in range(grid.ndim):
            factor = stiff[other] if other == axis else masses[other]
            term = factor if term is None else sp.kron(term, factor)
        K = term if K is None else K + term
    return K.tocsr(), neumann_mass_weights(grid).ravel()


def solve_poisson(f, grid: Grid, boundary_values=None, *, compatibility: str = "project") -> np.ndarray:
    """Solve ``-Laplace u = f`` on ``grid`` with a sparse direct solver.

    Parameters
    ----------
    f : array ``grid.shape``
        Right-hand side at every node (boundary nodes are ignored for Dirichlet grids).
    grid : Grid
        ``"dirichlet"`` or ``"neumann"`` (homogeneous ``du/dn = 0``).
    boundary_values : array ``grid.shape``, optional
        Dirichlet only: ``u`` on the boundary nodes (interior entries ignored); default zero.
    compatibility : {"project", "raise"}
        Neumann only: what to do when ``sum(M f) != 0`` (see the module docstring).

    Returns
    -------
    np.ndarray
        ``u`` at every node, ``grid.shape``, float64.

    >>> g = Grid((17,))
    >>> x = g.coords()[0]
    >>> u = solve_poisson(np.full(17, 2.0), g)   # -u'' = 2, u(0) = u(1) = 0: u = x (1 - x)
    >>> bool(np.allclose(u, x * (1 - x)))
    True
    """
    f = _check_field(f, grid, "f")
    if grid.boundary == "dirichlet":
        interior = tuple(slice(1, -1) for _ in range(grid.ndim))
        rhs = f[interior].copy()
        u = np.zeros(grid.shape)
        if boundary_values is not None:
            g = _check_field(boundary_values, grid, "boundary_values").copy()
            g[interior] = 0.0
            lifted = apply_diffusion(torch.ones(grid.shape, dtype=torch.float64),
                                     torch.as_tensor(g), grid).numpy()
            rhs -= lifted
            u = g
        A = laplacian_matrix(grid)
        u[interior] = spla.spsolve(A.tocsc(), rhs.ravel(), permc_spec="MMD_AT_PLUS_A").reshape(grid.interior_shape)
        return u
    if grid.boundary == "neumann":
        if boundary_values is not None:
            raise ValueError("solve_poisson: boundary_values apply to Dirichlet grids only")
        if compatibility not in ("project", "raise"):
            raise ValueError(f"compatibility must be 'project' or 'raise', got {compatibility!r}")
        K, M = neumann_laplacian_matrix(grid)
        rhs = M * f.ravel()
        mean = rhs.sum() / M.sum()
        scale = max(np.abs(rhs).sum() / M.sum(), 1e-300)
        if compatibility == "raise" and abs(mean) > 1e-10 * scale:
            raise ValueError(
                f"solve_poisson: Neumann problem needs a zero-mean right-hand side (integral of f = "
                f"0), found mean {mean:.3e}; pass compatibility='project' to subtract it")
        rhs = rhs - mean * M
        n = rhs.size
        # Saddle point [K M; M^T 0] [u; lam] = [rhs; 0] fixes the weighted mean of u to zero.
        aug = sp.bmat([[K, sp.csr_matrix(M[:, None])], [sp.csr_matrix(M[None, :]), None]]).tocsc()
        sol = spla.spsolve(aug, np.concatenate([rhs, [0.0]]), permc_spec="MMD_AT_PLUS_A")
        return sol[:n].reshape(grid.shape)
    raise ValueError(f"solve_poisson supports 'dirichlet' and 'neumann' grids, got {grid.boundary!r}")


def poisson_residual(u, f, grid: Grid) -> float:
    """Max-norm residual ``|-Laplace_h u - f|`` at the unknowns (interior for Dirichlet, all nodes for Neumann)."""
    u = _check_field(u, grid, "u")
    f = _check_field(f, grid, "f")
    if grid.boundary == "dirichlet":
        interior = tuple(slice(1, -1) for _ in range(grid.ndim))
        lap = apply_diffusion(torch.ones(grid.shape, dtype=torch.float64), torch.as_tensor(u), grid)
        return float(np.max(np.abs(lap.numpy() - f[interior])))
    K, M = neumann_laplacian_matrix(grid)
    return float(np.max(np.abs(K @ u.ravel() / M - f.ravel())))
