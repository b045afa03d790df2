"""Grid hierarchies of the learned V-cycle (:mod:`~pdesurrogates.solvers.learned.multigrid_preconditioner`).

Both kinds hold, for one system or a batch of systems, what the V-cycle needs on every level:
``levels[l].apply_A(u)``, ``levels[l].inv_diag``, ``levels[l].features`` (what the learned
smoother reads), ``prolong(l, e)``, ``restrict(l, r)`` and ``coarse_solve(f)``; fields are
``(B, 1, *interior)`` with ``B`` the number of systems (or 1 for one system and many right-hand
sides).

* :class:`BlackBoxHierarchy` (``"boxmg"``): operator-dependent interpolation and Galerkin coarse
  stencils (:mod:`pdesurrogates.linalg.boxmg`); features are the couplings of the diagonally
  scaled stencil (``3^d`` channels), which do not change when the coefficient is scaled.
* :class:`MultigridHierarchy` (``"rediscretised"``): geometric linear interpolation and the
  finite-volume operator rediscretised with weighted-averaged coefficients; features are the
  centred ``log a`` (one channel).
"""

from __future__ import annotations

import math

import torch

from pdesurrogates.linalg.boxmg import BoxMGHierarchy
from pdesurrogates.physics.grid import Grid
from pdesurrogates.physics.operators import apply_diffusion, diffusion_diagonal, pad_dirichlet

__all__ = [
    "HIERARCHIES",
    "BlackBoxHierarchy",
    "MultigridHierarchy",
    "build_hierarchy",
    "feature_channels",
]

HIERARCHIES = ("boxmg", "rediscretised")


def feature_channels(hierarchy: str, ndim: int) -> int:
    """Channels of the smoother's features on a ``hierarchy`` of ``ndim`` dimensions."""
    if hierarchy not in HIERARCHIES:
        raise ValueError(f"hierarchy must be one of {list(HIERARCHIES)}, got {hierarchy!r}")
    return 3**ndim if hierarchy == "boxmg" else 1


def coefficient_batch(grid: Grid, coefficient, dtype: torch.dtype, device) -> torch.Tensor:
    """``coefficient`` (``None``, ``grid.shape`` or ``(B, 1, *grid.shape)``) as a checked ``(B, 1, *grid.shape)``."""
    if grid.boundary != "dirichlet":
        raise ValueError(f"the multigrid hierarchy needs a Dirichlet grid, got {grid.boundary!r}")
    nd = grid.ndim
    a = torch.ones(grid.shape) if coefficient is None else torch.as_tensor(coefficient)
    a = a.to(dtype=dtype, device=device)
    if a.ndim == nd:
        a = a[None, None]
    if a.ndim != nd + 2 or tuple(a.shape[2:]) != grid.shape or a.shape[1] != 1:
        raise ValueError(f"coefficient has shape {tuple(a.shape)}; the grid needs {grid.shape} "
                         f"or (batch, 1, *{grid.shape})")
    if not torch.isfinite(a).all() or not (a > 0).all():
        raise ValueError("coefficient must be finite and positive everywhere")
    return a


def _check_shift(shift: float) -> None:
    if not (math.isfinite(shift) and shift >= 0):
        raise ValueError(f"shift must be finite and >= 0, got {shift}")


def _dense_inverse(apply_A, shape: tuple[int, ...], dtype: torch.dtype, device) -> torch.Tensor:
    k = math.prod(shape)
    eye = torch.eye(k, dtype=dtype, device=device).reshape(k, *shape)
    cols = apply_A(eye[None])  # (B or 1, k, *interior): A applied to every unit vector
    return torch.linalg.inv(cols.reshape(cols.shape[0], k, k).transpose(1, 2))


def _solve_dense(inverse: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    k = inverse.shape[-1]
    return (inverse.to(f.dtype) @ f.reshape(f.shape[0], k, 1)).reshape(-1, *f.shape[1:])


# ---- black-box multigrid ------------------------------------------------------------------------
class _StencilLevel:
    """One level of :class:`BlackBoxHierarchy`: its stencil, inverse diagonal and features."""

    def __init__(self, stencil) -> None:
        self.stencil = stencil
        self.inv_diag = 1.0 / stencil.diagonal()
        self.inv_root_diag = self.inv_diag.sqrt()
        self.features = stencil.normalised_couplings()
        self.cache: dict = {}  # per-smoother values that depend only on the level (see _Smoother)

    @property
    def interior_shape(self) -> tuple[int, ...]:
        return self.stencil.shape

    def apply_A(self, u: torch.Tensor) -> torch.Tensor:
        return self.stencil.apply(u)


class BlackBoxHierarchy:
    """Black-box multigrid levels of one or more systems ``-div(a grad u) + shift u = f``.

    Args:
        grid: fine Dirichlet grid (any size).
        coefficient: ``(*grid.shape)`` or ``(B, 1, *grid.shape)`` positive node values (``None``: a = 1).
        coarsest_nodes: stop coarsening when a side has at most this many nodes.
        shift: ``c >= 0`` of ``-div(a grad .) + c I``; the Galerkin products carry it to every level.
        dtype, device: of the stored tensors.
    """

    kind = "boxmg"

    def __init__(self, grid: Grid, coefficient=None, coarsest_nodes: int = 5, shift: float = 0.0,
                 dtype: torch.dtype = torch.float64, device=None) -> None:
        a = coefficient_batch(grid, coefficient, dtype, device)
        _check_shift(shift)
        self.grid = grid
        self.device = a.device
        self.boxmg = BoxMGHierarchy(grid, a, coarsest_nodes, shift)
        self.levels = [_StencilLevel(s) for s in self.boxmg.stencils]

    def prolong(self, level: int, e: torch.Tensor) -> torch.Tensor:
        return self.boxmg.interpolations[level].prolong(e)

    def restrict(self, level: int, r: torch.Tensor) -> torch.Tensor:
        return self.boxmg.interpolations[level].restrict(r)

    def coarse_solve(self, f: torch.Tensor) -> torch.Tensor:
        return self.boxmg.coarse_solve(f)


# ---- rediscretised geometric multigrid (the first hierarchy) --------------------------------------
def _interpolation_weights(n_fine: int, n_coarse: int) -> tuple[torch.Tensor, torch.Tensor]:
    """For each fine node: the coarse node to its left and the weight of the one to its right."""
    x = torch.linspace(0.0, n_coarse - 1.0, n_fine, dtype=torch.float64)
    left = x.floor().clamp(max=n_coarse - 2).long()
    return left, x - left


def _interpolation_1d(n_fine: int, n_coarse: int) -> torch.Tensor:
    """``(n_fine, n_coarse)`` linear interpolation between node grids spanning the same interval."""
    left, w = _interpolation_weights(n_fine, n_coarse)
    P = torch.zeros(n_fine, n_coarse, dtype=torch.float64)
    rows = torch.arange(n_fine)
    P[rows, left] = 1.0 - w
    P[rows, left + 1] = w
    return P


class _LinearInterpolation:
    """Linear interpolation between node grids along each axis, and its transpose, in O(points).

    Equal to the Kronecker product of :func:`_interpolation_1d` matrices; the coarse side is padded
    with zero boundary values so that both maps act on interior (unknown) fields. The restriction is
    the transpose scaled by the ratio of cell volumes (full weighting on nested grids).
    """

    def __init__(self, fine: Grid, coarse: Grid, device=None) -> None:
        self.fine_shape, self.coarse_shape = fine.shape, coarse.shape
        self.restrict_scale = math.prod(hf / hc for hf, hc in zip(fine.spacing, coarse.spacing))
        self.left, self.weight = [], []
        for nf, nc in zip(fine.shape, coarse.shape):
            left, w = _interpolation_weights(nf, nc)
            self.left.append(left.to(device))
            self.weight.append(w.to(device))

    def _shape(self, w: torch.Tensor, axis: int, ndim: int) -> torch.Tensor:
        shape = [1] * ndim
        shape[axis] = -1
        return w.reshape(shape)

    def full(self, x: torch.Tensor) -> torch.Tensor:
        """Coarse node field ``(..., *coarse_shape)`` -> fine node field."""
        nd = len(self.fine_shape)
        for d in range(nd):
            axis = x.ndim - nd + d
            w = self._shape(self.weight[d].to(x.dtype), axis, x.ndim)
            x = x.index_select(axis, self.left[d]) * (1 - w) + x.index_select(axis, self.left[d] + 1) * w
        return x

    def full_transpose(self, y: torch.Tensor) -> torch.Tensor:
        """Fine node field -> coarse node field (the adjoint of :meth:`full`)."""
        nd = len(self.fine_shape)
        for d in range(nd):
            axis = y.ndim - nd + d
            w = self._shape(self.weight[d].to(y.dtype), axis, y.ndim)
            shape = list(y.shape)
            shape[axis] = self.coarse_shape[d]
            out = torch.zeros(shape, dtype=y.dtype, device=y.device)
            out = out.index_add(axis, self.left[d], y * (1 - w)).index_add(axis, self.left[d] + 1, y * w)
            y = out
        return y

    def prolong(self, e: torch.Tensor) -> torch.Tensor:
        nd = len(self.fine_shape)
        return interior_of(self.full(pad_dirichlet(e, nd)), nd)

    def restrict(self, r: torch.Tensor) -> torch.Tensor:
        nd = len(self.fine_shape)
        return interior_of(self.full_transpose(pad_dirichlet(r, nd)), nd) * self.restrict_scale


class _Level:
    """One grid of :class:`MultigridHierarchy`: operator, inverse diagonal, encoded coefficient, transfers."""

    def __init__(self, grid: Grid, a: torch.Tensor, shift: float = 0.0) -> None:
        self.grid = grid
        self.a = a  # (B or 1, 1, *grid.shape)
        self.shift = shift
        self.inv_diag = 1.0 / (diffusion_diagonal(a, grid) + shift)
        log_a = torch.log(a)
        self.features = interior_of(log_a - log_a.mean(tuple(range(1, a.ndim)), keepdim=True), grid.ndim)
        self.transfer: _LinearInterpolation | None = None  # to the next coarser level
        self.coarse_inverse: torch.Tensor | None = None
        self.cache: dict = {}

    @property
    def log_a(self) -> torch.Tensor:
        """The centred ``log a`` at the interior nodes (this level's features)."""
        return self.features

    @property
    def interior_shape(self) -> tuple[int, ...]:
        return self.grid.interior_shape

    def apply_A(self, u: torch.Tensor) -> torch.Tensor:
        out = apply_diffusion(self.a, pad_dirichlet(u, self.grid.ndim), self.grid)
        return out + self.shift * u if self.shift else out


def interior_of(x: torch.Tensor, ndim: int) -> torch.Tensor:
    """The interior part of a node field (drops one boundary layer per side)."""
    return x[(Ellipsis,) + (slice(1, -1),) * ndim]


class MultigridHierarchy:
    """Rediscretised geometric hierarchy: grids, restricted coefficients, transfers and the exact
    coarsest solve for one or more systems (the first hierarchy; it degrades at high contrast).

    Args:
        grid: fine Dirichlet grid.
        coefficient: ``(*grid.shape)`` or ``(B, 1, *grid.shape)`` positive node values (``None``: a = 1).
        coarsest_nodes: stop coarsening at this many nodes per side.
        shift: ``c >= 0`` of the operator ``-div(a grad .) + c I`` on every level.
        dtype, device: of the stored tensors.
    """

    kind = "rediscretised"

    def __init__(self, grid: Grid, coefficient=None, coarsest_nodes: int = 5, shift: float = 0.0,
                 dtype: torch.dtype = torch.float64, device=None) -> None:
        a = coefficient_batch(grid, coefficient, dtype, device)
        _check_shift(shift)
        self.device = a.device
        self.levels = [_Level(grid, a, shift)]
        while max(self.levels[-1].grid.shape) > coarsest_nodes:
            fine = self.levels[-1]
            shape = tuple(math.ceil((s - 1) / 2) + 1 for s in fine.grid.shape)
            coarse_grid = Grid(shape, length=fine.grid.length)
            fine.transfer = _LinearInterpolation(fine.grid, coarse_grid, device=device)
            a_c = fine.transfer.full_transpose(fine.a) / fine.transfer.full_transpose(torch.ones_like(fine.a))
            self.levels.append(_Level(coarse_grid, a_c, shift))
        last = self.levels[-1]
        last.coarse_inverse = _dense_inverse(last.apply_A, last.grid.interior_shape, dtype, a.device)

    @property
    def grid(self) -> Grid:
        return self.levels[0].grid

    def prolong(self, level: int, e: torch.Tensor) -> torch.Tensor:
        return self.levels[level].transfer.prolong(e)

    def restrict(self, level: int, r: torch.Tensor) -> torch.Tensor:
        return self.levels[level].transfer.restrict(r)

    def coarse_solve(self, f: torch.Tensor) -> torch.Tensor:
        return _solve_dense(self.levels[-1].coarse_inverse, f)


def build_hierarchy(kind: str, grid: Grid, coefficient=None, coarsest_nodes: int = 5, shift: float = 0.0,
                    dtype: torch.dtype = torch.float64, device=None) -> BlackBoxHierarchy | MultigridHierarchy:
    """The ``kind`` (``"boxmg"`` or ``"rediscretised"``) hierarchy of the systems ``(grid, coefficient, shift)``."""
    if kind == "boxmg":
        return BlackBoxHierarchy(grid, coefficient, coarsest_nodes, shift, dtype, device)
    if kind == "rediscretised":
        return MultigridHierarchy(grid, coefficient, coarsest_nodes, shift, dtype, device)
    raise ValueError(f"hierarchy must be one of {list(HIERARCHIES)}, got {kind!r}")
