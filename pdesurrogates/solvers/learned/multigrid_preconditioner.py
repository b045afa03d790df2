"""A multigrid neural operator that knows the matrix: a learned V-cycle as a preconditioner.

MgNO (He, Liu, Xu, ICLR 2024) writes a neural operator's linear layers as multigrid V-cycles whose
operator ``A`` and smoother ``B`` are learned convolutions. Used as a *preconditioner*, the operator
is known, so this network keeps MgNO's V-cycle but applies the system's own finite-volume operator
``A(a)`` on every level and learns only what multigrid leaves open: the smoother. Its inputs are the
coefficient ``a`` and the residual ``r``, its output ``z ~ A(a)^-1 r``:

* **Levels**: node grids coarsened ``N -> ceil((N-1)/2) + 1`` down to at most ``coarsest_nodes`` per
  side (any grid size, nested when ``N - 1`` is a power of two); the coefficient is restricted by
  weighted averaging and the operator rediscretised with the same stencil
  (:func:`pdesurrogates.physics.operators.apply_diffusion`); the coarsest system is solved exactly.
* **Transfers**: geometric (bi/tri)linear interpolation ``P`` between the node grids and its
  transpose (scaled by the cell-volume ratio) as restriction.
* **Smoother** (learned, shared by all levels, so one network serves every grid size):
  ``z = D^-1 W2 * ((W1 * res) . (1 + G(log a)))`` with ``W1, W2`` convolutions and ``G`` a
  convolution of the log-coefficient. It is linear in the residual and nonlinear in the
  coefficient; initialised to damped Jacobi, so an untrained network is classical geometric
  multigrid.

Because the map ``r -> z`` is linear but not symmetric (pre- and post-smoothers differ), the
preconditioner is flagged ``linear = True, symmetric = False`` and runs in flexible CG.

Training minimises the energy-norm error left by one V-cycle, ``E ||e - M A e||_A^2 / ||e||_A^2``,
over random errors ``e`` (smooth and rough) and random coefficients: the stochastic estimate of the
two-grid convergence factor used to learn multigrid parameters (Katrutsa, Daulbaev, Oseledets,
"Black-box learning of multigrid parameters", J. Comput. Appl. Math. 2020; Greenfeld et al.,
ICML 2019). No solution of the PDE is needed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from pdesurrogates.linalg.preconditioners import Preconditioner
from pdesurrogates.models import NETWORKS, save_checkpoint
from pdesurrogates.physics.grid import Grid
from pdesurrogates.physics.operators import apply_diffusion, diffusion_diagonal, pad_dirichlet
from pdesurrogates.solvers.learned._checkpoint import load_network

__all__ = [
    "MultigridHierarchy",
    "MultigridNeuralOperator",
    "MultigridPreconditionerConfig",
    "NeuralMultigridPreconditioner",
    "random_errors",
    "sample_coefficients",
    "vcycle_energy_loss",
]

_JACOBI_DAMPING = {2: 0.8, 3: 6.0 / 7.0}  # optimal smoothing factors of damped Jacobi, 5/7-point


@dataclass(frozen=True)
class MultigridPreconditionerConfig:
    """Architecture of :class:`MultigridNeuralOperator`.

    Attributes:
        ndim: 2 or 3.
        hidden: channels of the smoother's hidden layer.
        kernel: smoother convolution width (odd).
        pre_smooth, post_smooth: smoothing steps before and after the coarse correction.
        coarsest_nodes: coarsening stops when a side has at most this many nodes.
    """

    name: str = "neural_multigrid"
    ndim: int = 2
    hidden: int = 8
    kernel: int = 3
    pre_smooth: int = 1
    post_smooth: int = 1
    coarsest_nodes: int = 5

    def __post_init__(self) -> None:
        if self.ndim not in (2, 3):
            raise ValueError(f"MultigridPreconditionerConfig.ndim must be 2 or 3, got {self.ndim}")
        if self.hidden < 1 or self.kernel < 1 or self.kernel % 2 == 0:
            raise ValueError(f"hidden must be >= 1 and kernel odd and >= 1, got {self.hidden}, {self.kernel}")
        if self.pre_smooth < 0 or self.post_smooth < 0 or self.pre_smooth + self.post_smooth == 0:
            raise ValueError("need at least one smoothing step (pre_smooth + post_smooth >= 1)")
        if self.coarsest_nodes < 3:
            raise ValueError(f"coarsest_nodes must be >= 3, got {self.coarsest_nodes}")


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
    """One grid of the hierarchy: operator, inverse diagonal, encoded coefficient, transfers."""

    def __init__(self, grid: Grid, a: torch.Tensor, shift: float = 0.0) -> None:
        self.grid = grid
        self.a = a  # (B or 1, 1, *grid.shape)
        self.shift = shift
        self.inv_diag = 1.0 / (diffusion_diagonal(a, grid) + shift)
        log_a = torch.log(a)
        self.log_a = interior_of(log_a - log_a.mean(tuple(range(1, a.ndim)), keepdim=True), grid.ndim)
        self.transfer: _LinearInterpolation | None = None  # to the next coarser level
        self.coarse_inverse: torch.Tensor | None = None

    def apply_A(self, u: torch.Tensor) -> torch.Tensor:
        out = apply_diffusion(self.a, pad_dirichlet(u, self.grid.ndim), self.grid)
        return out + self.shift * u if self.shift else out


def interior_of(x: torch.Tensor, ndim: int) -> torch.Tensor:
    """The interior part of a node field (drops one boundary layer per side)."""
    return x[(Ellipsis,) + (slice(1, -1),) * ndim]


class MultigridHierarchy:
    """Grids, restricted coefficients, transfers and the exact coarsest solve for one or more systems.

    Args:
        grid: fine Dirichlet grid.
        coefficient: ``(*grid.shape)`` or ``(B, 1, *grid.shape)`` positive node values (``None``: a = 1).
        coarsest_nodes: stop coarsening at this many nodes per side.
        shift: ``c >= 0`` of the operator ``-div(a grad .) + c I`` on every level.
        dtype, device: of the stored tensors.
    """

    def __init__(self, grid: Grid, coefficient=None, coarsest_nodes: int = 5, shift: float = 0.0,
                 dtype: torch.dtype = torch.float64, device=None) -> None:
        if grid.boundary != "dirichlet":
            raise ValueError(f"MultigridHierarchy needs a Dirichlet grid, got {grid.boundary!r}")
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
        if not (math.isfinite(shift) and shift >= 0):
            raise ValueError(f"shift must be finite and >= 0, got {shift}")
        self.levels = [_Level(grid, a, shift)]
        while max(self.levels[-1].grid.shape) > coarsest_nodes:
            fine = self.levels[-1]
            shape = tuple(math.ceil((s - 1) / 2) + 1 for s in fine.grid.shape)
            coarse_grid = Grid(shape, length=fine.grid.length)
            fine.transfer = _LinearInterpolation(fine.grid, coarse_grid, device=device)
            a_c = fine.transfer.full_transpose(fine.a) / fine.transfer.full_transpose(torch.ones_like(fine.a))
            self.levels.append(_Level(coarse_grid, a_c, shift))
        last = self.levels[-1]
        k = math.prod(last.grid.interior_shape)
        eye = torch.eye(k, dtype=dtype, device=device).reshape(k, *last.grid.interior_shape)
        cols = last.apply_A(eye[None])  # (B or 1, k, *interior): A applied to every unit vector
        dense = cols.reshape(cols.shape[0], k, k)
        last.coarse_inverse = torch.linalg.inv(dense)  # (B or 1, k, k), symmetric

    @property
    def grid(self) -> Grid:
        return self.levels[0].grid

    def prolong(self, level: int, e: torch.Tensor) -> torch.Tensor:
        return self.levels[level].transfer.prolong(e)

    def restrict(self, level: int, r: torch.Tensor) -> torch.Tensor:
        return self.levels[level].transfer.restrict(r)

    def coarse_solve(self, f: torch.Tensor) -> torch.Tensor:
        last = self.levels[-1]
        k = last.coarse_inverse.shape[-1]
        flat = f.reshape(f.shape[0], k, 1)
        inv = last.coarse_inverse.to(f.dtype)
        return (inv @ flat).reshape(f.shape)


class _Smoother(nn.Module):
    """``z = D^-1 W2 * ((W1 * r) . (1 + G(log a)))``; damped Jacobi at initialisation."""

    def __init__(self, config: MultigridPreconditionerConfig) -> None:
        super().__init__()
        conv = nn.Conv2d if config.ndim == 2 else nn.Conv3d
        c, k = config.hidden, config.kernel
        self.inp = conv(1, c, k, padding=k // 2, bias=False)
        self.out = conv(c, 1, k, padding=k // 2, bias=False)
        self.gate = conv(1, c, k, padding=k // 2)
        with torch.no_grad():
            centre = (0, 0) + (k // 2,) * config.ndim
            self.inp.weight.normal_(0.0, 0.1)  # hidden channels 1.. start random, unused (out = 0)
            self.inp.weight[0].zero_()
            self.inp.weight[centre] = 1.0
            self.out.weight.zero_()
            self.out.weight[centre] = _JACOBI_DAMPING[config.ndim]
            self.gate.weight.zero_()
            self.gate.bias.zero_()

    def forward(self, r: torch.Tensor, level: _Level) -> torch.Tensor:
        # Convolutions run in the weights' dtype (float32 is several times faster on CPU than
        # float64); the V-cycle around them stays in the residual's dtype.
        dtype = self.inp.weight.dtype
        h = self.inp(r.to(dtype)) * (1.0 + self.gate(level.log_a.to(dtype)))
        return self.out(h).to(r.dtype) * level.inv_diag


class MultigridNeuralOperator(nn.Module):
    """Learned V-cycle ``(hierarchy, r (B, 1, *interior)) -> z ~ A^-1 r`` (linear in ``r``).

    >>> net = MultigridNeuralOperator(MultigridPreconditionerConfig(ndim=2))
    >>> H = MultigridHierarchy(Grid((17, 17)))
    >>> net(H, torch.ones(1, 1, 15, 15, dtype=torch.float64)).shape
    torch.Size([1, 1, 15, 15])
    """

    def __init__(self, config: MultigridPreconditionerConfig = MultigridPreconditionerConfig()) -> None:
        super().__init__()
        self.config = config
        self.pre = _Smoother(config)
        self.post = _Smoother(config)

    def forward(self, hierarchy: MultigridHierarchy, r: torch.Tensor) -> torch.Tensor:
        nd = self.config.ndim
        if hierarchy.grid.ndim != nd:
            raise ValueError(f"network is {nd}D but the hierarchy's grid is {hierarchy.grid.ndim}D")
        if r.ndim != nd + 2 or r.shape[1] != 1 or tuple(r.shape[2:]) != hierarchy.grid.interior_shape:
            raise ValueError(f"residual must be (batch, 1, *{hierarchy.grid.interior_shape}), got {tuple(r.shape)}")
        return self._vcycle(hierarchy, 0, r)

    def _vcycle(self, H: MultigridHierarchy, level: int, f: torch.Tensor) -> torch.Tensor:
        if level == len(H.levels) - 1:
            return H.coarse_solve(f)
        lev = H.levels[level]
        u = None
        for _ in range(self.config.pre_smooth):
            res = f if u is None else f - lev.apply_A(u)
            u = self.pre(res, lev) if u is None else u + self.pre(res, lev)
        res = f if u is None else f - lev.apply_A(u)
        correction = H.prolong(level, self._vcycle(H, level + 1, H.restrict(level, res)))
        u = correction if u is None else u + correction
        for _ in range(self.config.post_smooth):
            u = u + self.post(f - lev.apply_A(u), lev)
        return u


def vcycle_energy_loss(net: MultigridNeuralOperator, hierarchy: MultigridHierarchy, e: torch.Tensor) -> torch.Tensor:
    """Mean ``||e - M A e||_A^2 / ||e||_A^2`` over a batch of errors ``e (B, 1, *interior)``."""
    lev = hierarchy.levels[0]
    Ae = lev.apply_A(e)
    err = e - net(hierarchy, Ae)
    dims = tuple(range(1, e.ndim))
    return ((err * lev.apply_A(err)).sum(dims) / (e * Ae).sum(dims)).mean()


class NeuralMultigridPreconditioner(Preconditioner):
    """A :class:`MultigridNeuralOperator` attached to one system ``-div(a grad u) = f``.

    ``apply(r)`` takes ``(n,)`` or ``(B, n)`` residuals (numpy or torch, any device the network is
    on) and runs the learned V-cycle in float64 around convolutions in the network's dtype (a
    float32 network is linear in ``r`` up to float32 rounding; ``network.double()`` makes it exact
    at several times the cost on CPU). Not symmetric: use it in :func:`pdesurrogates.linalg.fcg`.

    Args:
        network: trained network.
        grid: the system's Dirichlet grid (boundary nodes included).
        coefficient: node values ``grid.shape`` (``None``: the Laplacian).
        shift: ``c >= 0`` for the system ``-div(a grad u) + c u`` (implicit time steps:
            ``c = 1/dt``), applied on every level.
    """

    linear = True
    symmetric = False

    def __init__(self, network: MultigridNeuralOperator, grid: Grid | None = None, coefficient=None,
                 shift: float = 0.0) -> None:
        self.network = network.eval()
        self.hierarchy = None
        self.n = None  # unknowns of the attached system (interior nodes)
        if grid is not None:
            if grid.ndim != network.config.ndim:
                raise ValueError(f"network is {network.config.ndim}D but the grid {grid.shape} is {grid.ndim}D")
            param = next(network.parameters())
            self.hierarchy = MultigridHierarchy(grid, coefficient, network.config.coarsest_nodes, shift,
                                                dtype=torch.float64, device=param.device)
            self.n = math.prod(grid.interior_shape)

    def for_system(self, grid: Grid, coefficient=None, shift: float = 0.0) -> NeuralMultigridPreconditioner:
        """The same network attached to the system on ``grid`` with ``coefficient``."""
        return NeuralMultigridPreconditioner(self.network, grid, coefficient, shift)

    @torch.no_grad()
    def apply(self, r):
        if self.hierarchy is None:
            raise ValueError("NeuralMultigridPreconditioner has no system: call .for_system(grid, coefficient)")
        r_t = torch.as_tensor(r)
        shape = self.hierarchy.grid.interior_shape
        n = math.prod(shape)
        if r_t.shape[-1] != n:
            raise ValueError(f"residual has length {r_t.shape[-1]}, the grid {self.hierarchy.grid.shape} has {n} unknowns")
        device = self.hierarchy.levels[0].a.device
        field = r_t.reshape(-1, 1, *shape).to(device=device, dtype=torch.float64)
        z = self.network(self.hierarchy, field).reshape(-1, n).to(device=r_t.device, dtype=r_t.dtype)
        z = z.reshape(r_t.shape)
        return z.numpy() if isinstance(r, np.ndarray) else z

    def as_linear_operator(self):
        """The learned V-cycle (linear in ``r``) as a SciPy ``LinearOperator`` on float64 vectors,
        e.g. for ``scipy.sparse.linalg.cg(A, b, M=...)`` or ``pyamg.krylov.cg``."""
        if self.hierarchy is None:
            raise ValueError("NeuralMultigridPreconditioner has no system: call .for_system(grid, coefficient)")
        return super().as_linear_operator()

    def save(self, path: str | Path, *, overwrite: bool = False, extra: dict | None = None) -> Path:
        """Write the network as a checkpoint directory (:func:`pdesurrogates.models.save_checkpoint`)."""
        return save_checkpoint(path, self.network, self.network.config, extra=extra, overwrite=overwrite)

    @classmethod
    def load(cls, path: str | Path, grid: Grid | None = None, coefficient=None,
             shift: float = 0.0) -> NeuralMultigridPreconditioner:
        """Load a trained network, optionally attached to a system.

        ``path``: a run directory of ``pdesurrogates train`` (task ``neural_multigrid``; its best
        checkpoint is used) or a checkpoint directory. The smoother runs in float32.
        """
        return cls(load_network(path, MultigridNeuralOperator).float(), grid, coefficient, shift)


_COEFFICIENT_KINDS = ("ones", "darcy", "mixed")


def _check_coefficient_kind(kind: str) -> None:
    if kind not in _COEFFICIENT_KINDS:
        raise ValueError(f"coefficient must be 'ones', 'darcy' or 'mixed', got {kind!r}")


def random_errors(n: int, shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    """``(n, 1, *shape)`` float64 test errors: white noise mixed with smoothed noise at several scales."""
    ndim = len(shape)
    pool = nn.functional.avg_pool2d if ndim == 2 else nn.functional.avg_pool3d
    white = torch.randn(n, 1, *shape, generator=generator, dtype=torch.float64)
    out = white * torch.rand(n, *(1,) * (ndim + 1), generator=generator, dtype=torch.float64)
    width = 3
    while width <= max(shape):
        smooth = white
        for _ in range(3):
            smooth = pool(smooth, width, stride=1, padding=width // 2, count_include_pad=False)
        out = out + smooth * width * torch.rand(n, *(1,) * (ndim + 1), generator=generator, dtype=torch.float64)
        width = 2 * width + 1
    return out / out.flatten(1).norm(dim=1).reshape(n, *(1,) * (ndim + 1))


def sample_coefficients(n: int, resolution: int, kind: str, generator: torch.Generator, *, ndim: int = 2,
                        high: float = 12.0, low: float = 3.0) -> torch.Tensor:
    """``(n, 1, *grid)`` float64 training coefficients: ``kind`` ``"ones"``, ``"darcy"`` (two-phase
    ``high``/``low``, 2D) or ``"mixed"`` (every other one two-phase)."""
    from pdesurrogates.physics.darcy import sample_coefficient

    _check_coefficient_kind(kind)
    shape = (resolution,) * ndim
    pool = []
    for i in range(n):
        if kind == "ones" or (kind == "mixed" and i % 2 == 0):
            pool.append(torch.ones(shape, dtype=torch.float64))
        else:
            pool.append(torch.as_tensor(sample_coefficient(resolution, generator, high=high, low=low)))
    return torch.stack(pool)[:, None]


NETWORKS.register("neural_multigrid", MultigridPreconditionerConfig,
                  lambda **fields: MultigridNeuralOperator(MultigridPreconditionerConfig(**fields)))
