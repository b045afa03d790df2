"""Seeded families of hard symmetric positive definite systems, any size, as SciPy CSR matrices.

The test problems of the multigrid and preconditioning literature, made from this package's own
discretisations (plus pyamg's gallery where it already has the operator):

==================  ====================================================================  ===========
family              operator                                                              unknowns
==================  ====================================================================  ===========
``two-phase``       finite-volume ``-div(a grad u)``, ``a`` in ``{1, contrast}`` from a      ``size^d``
                    thresholded Gaussian random field (the FNO Darcy prior), 2D or 3D
``lognormal``       the same operator, ``a = exp(sigma g)`` with ``g`` a unit-variance      ``size^d``
                    periodic Gaussian random field (large ``sigma``: contrast ``e^(8 sigma)``)
``layered``         the same operator in 3D, log-permeability layered along ``z`` (an       ``size^3``
                    independent 2D log-normal field per layer plus a layer mean, SPE10
                    style), mapped to exactly ``contrast`` (default ``1e6``)
``anisotropic``     ``-div(Q diag(1, epsilon) Q^T grad u)``, ``Q`` the rotation by          ``size^2``
                    ``theta``: pyamg's 9-point finite-difference or Q1 stencil, divided by
                    ``h^2`` (SPD; not an M-matrix for ``theta`` off the axes)
``fem-jump``        P1 finite elements on a Delaunay mesh of random points, coefficient     ``size^2``
                    ``{1, contrast}`` per triangle from a thresholded random field
                    (:mod:`~pdesurrogates.physics.fem`), Dirichlet nodes eliminated
``elasticity``      2D plane-strain linear elasticity, pyamg's Q1 ``linear_elasticity``;    ``2 size^2``
                    ``near_nullspace`` holds its three rigid-body modes (``B`` for pyamg's
                    ``smoothed_aggregation_solver(A, B=B)``)
==================  ====================================================================  ===========

``size`` is the number of unknowns per side (interior nodes of a Dirichlet grid with
``h = 1 / (size + 1)`` on the unit square or cube; interior random points ``size^2`` for
``fem-jump``), so ``size=1024`` in 2D and ``size=100`` in 3D give about ``10^6`` unknowns. Every
family is assembled with array operations (no Python loop over rows, nodes or elements).

Randomness comes only from ``seed`` (an int or a :class:`numpy.random.Generator`): the same seed
gives the same matrix.

>>> s = hard_system("two-phase", 16, seed=0, contrast=1e4)
>>> s.A.shape, s.params["measured_contrast"]
((256, 256), 10000.0)
>>> hard_system("nope", 8)
Traceback (most recent call last):
...
ValueError: unknown hard-system family 'nope'; valid: two-phase, lognormal, layered, anisotropic, fem-jump, elasticity
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from pdesurrogates.physics import fem
from pdesurrogates.physics.grid import Grid
from pdesurrogates.physics.operators import diffusion_matrix
from pdesurrogates.physics.random import covariance_eigenvalues, gaussian_random_field

__all__ = ["HARD_SYSTEMS", "HardSystem", "hard_system"]


@dataclass(frozen=True)
class HardSystem:
    """One SPD system of a family.

    Attributes
    ----------
    family : str
    A : scipy.sparse.csr_matrix
        ``(n, n)`` symmetric positive definite, float64.
    coordinates : np.ndarray
        ``(n, d)`` position of each unknown (for elasticity, of its node; the two displacement
        components of a node are consecutive unknowns).
    near_nullspace : np.ndarray or None
        ``(n, k)`` vectors the operator nearly annihilates, for algebraic multigrid (elasticity:
        the rigid-body modes); ``None`` where the constants are the near-nullspace.
    coefficient : np.ndarray or None
        The coefficient field: at the grid nodes (boundary included, ``grid`` shape) for the
        finite-volume families, per triangle for ``fem-jump``.
    mesh : TriangleMesh or None
        The mesh of ``fem-jump``.
    params : dict
        Family, size, seed and every parameter (defaults included); ``measured_contrast``
        ``max / min`` of the coefficient where there is one.
    """

    family: str
    A: sp.csr_matrix
    coordinates: np.ndarray
    near_nullspace: np.ndarray | None = None
    coefficient: np.ndarray | None = None
    mesh: fem.TriangleMesh | None = None
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return self.A.shape[0]


def _rng(seed) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int or a numpy.random.Generator, got {seed!r}")
    return np.random.default_rng(int(seed))


def _torch_generator(rng: np.random.Generator) -> torch.Generator:
    return torch.Generator().manual_seed(int(rng.integers(0, 2**63 - 1)))


def _check(condition: bool, family: str, message: str) -> None:
    if not condition:
        raise ValueError(f"hard_system {family!r}: {message}")


def _grid_coordinates(grid: Grid) -> np.ndarray:
    inner = [c[1:-1] for c in grid.coords()]
    mesh = np.meshgrid(*inner, indexing="ij")
    return np.stack([m.ravel() for m in mesh], axis=1)


def _unit_variance_field(shape, rng, alpha: float, tau: float, *, batch_size=None) -> np.ndarray:
    """Periodic GRF scaled to pointwise variance exactly 1 (stationary)."""
    lam = covariance_eigenvalues(shape, alpha, tau)
    variance = float(lam.sum() - lam.flat[0])  # the constant mode is dropped
    g = gaussian_random_field(shape, alpha, tau, boundary="periodic", generator=_torch_generator(rng),
                              batch_size=batch_size)
    return g.numpy() / math.sqrt(variance)


def _finite_volume(family: str, a: np.ndarray, grid: Grid, params: dict) -> HardSystem:
    params = {**params, "measured_contrast": float(a.max() / a.min())}
    return HardSystem(family, diffusion_matrix(a, grid), _grid_coordinates(grid), None, a, None, params)


def two_phase(size: int, rng: np.random.Generator, *, ndim: int = 2, contrast: float = 1e4,
              alpha: float = 2.0, tau: float = 3.0) -> HardSystem:
    """``a = contrast`` where a Neumann GRF (covariance ``(-Laplace + tau^2)^-alpha``, the FNO Darcy
    prior) is ``>= 0``, else ``1``; finite-volume ``-div(a grad u)`` on ``size^ndim`` unknowns."""
    _check(ndim in (2, 3), "two-phase", f"ndim must be 2 or 3, got {ndim}")
    _check(contrast >= 1, "two-phase", f"contrast must be >= 1, got {contrast}")
    _check(alpha > ndim / 2 and tau > 0, "two-phase", f"need alpha > {ndim / 2} and tau > 0")
    grid = Grid((size + 2,) * ndim)
    g = gaussian_random_field(grid.shape, alpha, tau, boundary="neumann",
                              generator=_torch_generator(rng)).numpy()
    if np.all(g >= 0) or np.all(g < 0):  # one phase only: split at the median instead
        g = g - np.median(g)
    a = np.where(g >= 0, float(contrast), 1.0)
    return _finite_volume("two-phase", a, grid, {})


def lognormal(size: int, rng: np.random.Generator, *, ndim: int = 2, sigma: float = 3.0,
              alpha: float = 2.0, tau: float = 3.0) -> HardSystem:
    """``a = exp(sigma g)``, ``g`` a periodic GRF of pointwise variance exactly 1, so ``log a`` has
    standard deviation ``sigma`` at every node; finite-volume ``-div(a grad u)``."""
    _check(ndim in (2, 3), "lognormal", f"ndim must be 2 or 3, got {ndim}")
    _check(sigma > 0, "lognormal", f"sigma must be > 0, got {sigma}")
    _check(alpha > ndim / 2 and tau > 0, "lognormal", f"need alpha > {ndim / 2} and tau > 0")
    grid = Grid((size + 2,) * ndim)
    a = np.exp(sigma * _unit_variance_field(grid.shape, rng, alpha, tau))
    return _finite_volume("lognormal", a, grid, {})


def layered(size: int, rng: np.random.Generator, *, contrast: float = 1e6, layers: int | None = None,
            spread: float = 2.0, alpha: float = 2.0, tau: float = 6.0) -> HardSystem:
    """3D layered log-normal permeability (SPE10-like): ``layers`` slabs along ``z`` (default one
    per grid plane), each with its own unit-variance 2D log-normal field plus a layer mean drawn
    uniformly from ``[-spread, spread]``; ``log a`` is then mapped affinely onto
    ``[0, log(contrast)]``, so ``max a / min a = contrast`` exactly."""
    _check(contrast > 1, "layered", f"contrast must be > 1, got {contrast}")
    _check(spread >= 0 and alpha > 1 and tau > 0, "layered", "need spread >= 0, alpha > 1, tau > 0")
    grid = Grid((size + 2,) * 3)
    n = grid.shape[2]
    layers = n if layers is None else int(layers)
    _check(1 <= layers <= n, "layered", f"layers must be in [1, {n}], got {layers}")
    within = _unit_variance_field(grid.shape[:2], rng, alpha, tau, batch_size=layers)  # (L, n, n)
    means = rng.uniform(-spread, spread, size=layers)
    which = (np.arange(n) * layers) // n  # layer of each z plane
    log_a = np.moveaxis(within[which] + means[which, None, None], 0, -1)  # (n, n, n), z last
    log_a = (log_a - log_a.min()) / (log_a.max() - log_a.min()) * math.log(contrast)
    a = np.exp(log_a)
    return _finite_volume("layered", a, grid, {"layers": layers})


def anisotropic(size: int, rng: np.random.Generator, *, epsilon: float = 1e-3,
                theta: float = math.pi / 6, stencil: str = "fd") -> HardSystem:
    """``-div(K grad u)``, ``K = Q diag(1, epsilon) Q^T``, ``Q`` the rotation by ``theta``, on the
    ``size^2`` interior nodes of the unit square (``u = 0`` on the boundary): pyamg's
    ``diffusion_stencil_2d`` (``"fd"``: second-order 9-point finite differences, ``"fe"``: Q1
    finite elements) on its ``stencil_grid``, divided by ``h^2``. Deterministic (``rng`` unused)."""
    from pyamg.gallery import diffusion_stencil_2d, stencil_grid

    _check(0 < epsilon <= 1, "anisotropic", f"epsilon must be in (0, 1], got {epsilon}")
    _check(stencil in ("fd", "fe"), "anisotropic", f"stencil must be 'fd' or 'fe', got {stencil!r}")
    h = 1.0 / (size + 1)
    weights = diffusion_stencil_2d(epsilon=epsilon, theta=theta, type=stencil.upper())
    A = sp.csr_matrix(stencil_grid(weights, (size, size), format="csr"), dtype=np.float64) / h**2
    A.sum_duplicates()
    A.eliminate_zeros()
    grid = Grid((size + 2, size + 2))
    return HardSystem("anisotropic", A, _grid_coordinates(grid))


def fem_jump(size: int, rng: np.random.Generator, *, contrast: float = 1e4, alpha: float = 2.0,
             tau: float = 3.0, field_resolution: int = 256) -> HardSystem:
    """P1 ``-div(c grad u)`` on a Delaunay mesh of ``size^2`` uniform random interior points and
    ``size + 2`` equally spaced points per side, Dirichlet nodes eliminated; ``c = contrast`` on
    triangles whose centroid sees a periodic GRF ``>= 0`` (sampled on a ``field_resolution^2``
    grid, nearest node), else ``1``."""
    _check(contrast >= 1, "fem-jump", f"contrast must be >= 1, got {contrast}")
    _check(field_resolution >= 8, "fem-jump", f"field_resolution must be >= 8, got {field_resolution}")
    mesh = fem.random_delaunay_mesh(size * size, rng, boundary_per_side=size + 2)
    g = _unit_variance_field((field_resolution, field_resolution), rng, alpha, tau)
    ij = np.minimum((mesh.centroids * field_resolution).astype(np.int64), field_resolution - 1)
    values = g[ij[:, 0], ij[:, 1]]
    if np.all(values >= 0) or np.all(values < 0):
        values = values - np.median(values)
    c = np.where(values >= 0, float(contrast), 1.0)
    K = fem.stiffness_matrix(mesh, c)
    A, _, interior = fem.dirichlet_system(mesh, K, np.zeros(mesh.n_nodes))
    return HardSystem("fem-jump", A, mesh.points[interior], None, c, mesh,
                      {"measured_contrast": float(c.max() / c.min())})


def elasticity(size: int, rng: np.random.Generator, *, E: float = 1e5, nu: float = 0.3) -> HardSystem:
    """pyamg's plane-strain linear elasticity (Q1, ``linear_elasticity((size, size))``) on the unit
    square, all boundary nodes clamped: ``2 size^2`` unknowns ``(u_x, u_y)`` per interior node.
    ``near_nullspace`` = pyamg's rigid-body modes (two translations, the rotation about the
    centre). Deterministic (``rng`` unused)."""
    from pyamg.gallery import linear_elasticity

    _check(E > 0 and -1 < nu < 0.5, "elasticity", f"need E > 0 and -1 < nu < 1/2, got E={E}, nu={nu}")
    h = 1.0 / (size + 1)
    A, B = linear_elasticity((size, size), spacing=(h, h), E=E, nu=nu, format="csr")
    A = sp.csr_matrix(A, dtype=np.float64)
    # pyamg's nodes are (i h - 1/2, j h - 1/2), x fastest; its rotation mode is (-y, x) about the centre
    i, j = np.meshgrid(np.arange(1, size + 1), np.arange(1, size + 1), indexing="xy")
    nodes = np.stack([i.ravel() * h, j.ravel() * h], axis=1)
    return HardSystem("elasticity", A, np.repeat(nodes, 2, axis=0), np.asarray(B, dtype=np.float64))


@dataclass(frozen=True)
class Family:
    """A registered family: its builder ``(size, rng, **params) -> HardSystem`` and a summary."""

    name: str
    build: Callable[..., HardSystem]
    summary: str

    @property
    def parameters(self) -> dict[str, Any]:
        """Keyword parameters and their defaults."""
        sig = inspect.signature(self.build)
        return {k: p.default for k, p in sig.parameters.items() if p.kind == p.KEYWORD_ONLY}


HARD_SYSTEMS: dict[str, Family] = {}


def _register(name: str, build: Callable[..., HardSystem], summary: str) -> None:
    if name in HARD_SYSTEMS:
        raise ValueError(f"hard-system family {name!r} is already registered")
    HARD_SYSTEMS[name] = Family(name, build, summary)


_register("two-phase", two_phase, "finite-volume diffusion, two-phase GRF coefficient (2D/3D)")
_register("lognormal", lognormal, "finite-volume diffusion, log-normal coefficient (2D/3D)")
_register("layered", layered, "3D finite-volume diffusion, layered log-normal permeability")
_register("anisotropic", anisotropic, "rotated anisotropic diffusion, 9-point FD or Q1 stencil")
_register("fem-jump", fem_jump, "P1 FEM on a random Delaunay mesh, jumping coefficient")
_register("elasticity", elasticity, "2D linear elasticity (Q1) with rigid-body modes")


def hard_system(family: str, size: int, seed=0, **params: Any) -> HardSystem:
    """Build a system of ``family`` with ``size`` unknowns per side (see the module table).

    Parameters
    ----------
    family : str
        One of :data:`HARD_SYSTEMS`.
    size : int
        Unknowns per side (>= 2).
    seed : int or numpy.random.Generator
    **params
        The family's parameters (see each builder), e.g. ``contrast=1e6``, ``epsilon=1e-3``.

    Raises
    ------
    ValueError
        Unknown family or parameter (listing the valid ones), or a parameter out of range.
    """
    if family not in HARD_SYSTEMS:
        raise ValueError(f"unknown hard-system family {family!r}; valid: {', '.join(HARD_SYSTEMS)}")
    fam = HARD_SYSTEMS[family]
    valid = fam.parameters
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise ValueError(f"hard_system {family!r}: unknown parameter(s) {', '.join(unknown)}; "
                         f"valid: {', '.join(valid) or 'none'}")
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 2:
        raise ValueError(f"hard_system {family!r}: size must be an int >= 2, got {size!r}")
    seed_info = seed if not isinstance(seed, np.random.Generator) else "generator"
    system = fam.build(int(size), _rng(seed), **params)
    full = {"family": family, "size": int(size), "seed": seed_info, **valid, **params}
    return HardSystem(system.family, system.A, system.coordinates, system.near_nullspace,
                      system.coefficient, system.mesh, {**full, **system.params})
