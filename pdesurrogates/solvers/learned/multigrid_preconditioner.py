"""A multigrid neural operator that knows the matrix: a learned V-cycle as a preconditioner.

MgNO (He, Liu, Xu, ICLR 2024) writes a neural operator's linear layers as multigrid V-cycles whose
operator ``A`` and smoother ``B`` are learned convolutions. Used as a *preconditioner*, the operator
is known, so this network keeps MgNO's V-cycle but applies the system's own finite-volume operator
on every level and learns only what multigrid leaves open: the smoother. Its inputs are the system
and the residual ``r``, its output ``z ~ A^-1 r``.

Two hierarchies (``MultigridPreconditionerConfig.hierarchy``):

* ``"boxmg"`` (default): black-box multigrid (Alcouffe, Brandt, Dendy and Painter 1981; Dendy
  1982), :mod:`pdesurrogates.linalg.boxmg`. Operator-dependent interpolation ``P`` from the
  stencil, restriction ``P^T`` and Galerkin coarse operators ``P^T A P`` (9-point in 2D, 27-point in
  3D), so the coarse levels see the coefficient's jumps: robust to contrasts of ``1e6``. Any grid
  size (``m`` interior nodes per axis coarsen to ``m // 2``; nested on ``2^k + 1`` nodes). The
  smoother reads the local stencil (couplings over the diagonal), which does not change when the
  coefficient is scaled, so one network serves every contrast.
* ``"rediscretised"``: the first hierarchy, kept for checkpoints whose config predates the choice
  (they load with it). Node grids coarsened ``N -> ceil((N-1)/2) + 1``, the coefficient restricted
  by weighted averaging and the operator rediscretised; (bi/tri)linear interpolation and its
  transpose scaled by the cell-volume ratio; the smoother reads ``log a``. It degrades at high
  contrast (averaged coefficients do not see the interfaces).

On both the coarsest level (at most ``coarsest_nodes`` nodes per side) is solved exactly.

**Smoother** (learned, shared by all levels, so one network serves every grid size):
``z = W2 * ((W1 * D^-1 res) . (1 + G(features)))`` (BoxMG; features: the stencil's normalised
couplings) or ``z = D^-1 W2 * ((W1 * res) . (1 + G(log a)))`` (rediscretised), with ``W1, W2``
convolutions and ``G`` a convolution of the level's features. It is linear in the residual and
nonlinear in the operator; initialised to damped Jacobi, so an untrained network is classical
multigrid (BoxMG or geometric).

The map ``r -> z`` is linear. With ``symmetric = True`` (default) the post-smoother is the
transpose of the pre-smoother, so the V-cycle is a symmetric operator (positive definite once
the smoother converges, as training makes it): conjugate gradients keep their short-recurrence
theory. With separately learned smoothers (``symmetric = False``, the first networks) it is not
symmetric, and flexible CG can stall on it at high contrast. Either runs in flexible CG.

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
from pdesurrogates.solvers.learned._checkpoint import load_network
from pdesurrogates.solvers.learned.multigrid_hierarchy import (
    HIERARCHIES,
    BlackBoxHierarchy,
    MultigridHierarchy,
    _interpolation_1d,  # noqa: F401  (the rediscretised hierarchy's 1D interpolation, tested)
    build_hierarchy,
    feature_channels,
)

__all__ = [
    "BlackBoxHierarchy",
    "MultigridHierarchy",
    "MultigridNeuralOperator",
    "MultigridPreconditionerConfig",
    "NeuralMultigridPreconditioner",
    "build_hierarchy",
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
        hierarchy: ``"boxmg"`` (operator-dependent interpolation, Galerkin coarse operators; the
            smoother reads the stencil) or ``"rediscretised"`` (the first hierarchy: averaged
            coefficients, linear interpolation; the smoother reads ``log a``).
        symmetric: the post-smoother is the adjoint of the pre-smoother (one set of weights), so
            the V-cycle is a symmetric operator (needs ``pre_smooth == post_smooth``); otherwise
            the two are learned apart and the V-cycle is not symmetric.

    Checkpoints saved before ``hierarchy`` and ``symmetric`` existed load as ``"rediscretised"``
    and ``False``, the network they hold.
    """

    name: str = "neural_multigrid"
    ndim: int = 2
    hidden: int = 8
    kernel: int = 3
    pre_smooth: int = 1
    post_smooth: int = 1
    coarsest_nodes: int = 5
    hierarchy: str = "boxmg"
    symmetric: bool = True

    def __post_init__(self) -> None:
        if self.ndim not in (2, 3):
            raise ValueError(f"MultigridPreconditionerConfig.ndim must be 2 or 3, got {self.ndim}")
        if self.hidden < 1 or self.kernel < 1 or self.kernel % 2 == 0:
            raise ValueError(f"hidden must be >= 1 and kernel odd and >= 1, got {self.hidden}, {self.kernel}")
        if self.pre_smooth < 0 or self.post_smooth < 0 or self.pre_smooth + self.post_smooth == 0:
            raise ValueError("need at least one smoothing step (pre_smooth + post_smooth >= 1)")
        if self.coarsest_nodes < 3:
            raise ValueError(f"coarsest_nodes must be >= 3, got {self.coarsest_nodes}")
        if self.hierarchy not in HIERARCHIES:
            raise ValueError(f"MultigridPreconditionerConfig.hierarchy must be one of {list(HIERARCHIES)}, "
                             f"got {self.hierarchy!r}")
        if not isinstance(self.symmetric, bool):
            raise TypeError(f"MultigridPreconditionerConfig.symmetric must be true or false, got {self.symmetric!r}")
        if self.symmetric and self.pre_smooth != self.post_smooth:
            raise ValueError(f"a symmetric V-cycle needs pre_smooth == post_smooth, got {self.pre_smooth} and "
                             f"{self.post_smooth} (or set symmetric = false)")


class _Smoother(nn.Module):
    """A learned smoother, damped Jacobi ``z = omega D^-1 r`` at initialisation.

    BoxMG hierarchy: ``z = D^-1/2 W2 * ((W1 * D^-1/2 r) . (1 + G(features)))``. In the variables
    ``D^1/2 u`` the operator is ``D^-1/2 A D^-1/2``, whose couplings (the features) stay bounded
    whatever the contrast, so the network sees the same numbers for a coefficient and for any
    multiple of it, also across an interface; its transpose (:meth:`adjoint`) has the same form.
    Rediscretised hierarchy (the first networks): ``z = D^-1 W2 * ((W1 * r) . (1 + G(log a)))``.
    """

    def __init__(self, config: MultigridPreconditionerConfig) -> None:
        super().__init__()
        self.root_scaled = config.hierarchy == "boxmg"
        self.conv = nn.functional.conv2d if config.ndim == 2 else nn.functional.conv3d
        conv = nn.Conv2d if config.ndim == 2 else nn.Conv3d
        c, k = config.hidden, config.kernel
        self.inp = conv(1, c, k, padding=k // 2, bias=False)
        self.out = conv(c, 1, k, padding=k // 2, bias=False)
        self.gate = conv(feature_channels(config.hierarchy, config.ndim), c, k, padding=k // 2)
        with torch.no_grad():
            centre = (0, 0) + (k // 2,) * config.ndim
            self.inp.weight.normal_(0.0, 0.1)  # hidden channels 1.. start random, unused (out = 0)
            self.inp.weight[0].zero_()
            self.inp.weight[centre] = 1.0
            self.out.weight.zero_()
            self.out.weight[centre] = _JACOBI_DAMPING[config.ndim]
            self.gate.weight.zero_()
            self.gate.bias.zero_()

    def scale(self, level) -> torch.Tensor:
        """``1 + G(features)`` of a level; kept on the level while no gradient is taken (it depends
        only on the level and the gate's weights, and costs most of a smoothing step)."""
        dtype = self.gate.weight.dtype
        if torch.is_grad_enabled():
            return 1.0 + self.gate(level.features.to(dtype))
        key = (self.gate.weight.data_ptr(), self.gate.weight._version, self.gate.bias._version, dtype)
        cached = level.cache.get(id(self))
        if cached is None or cached[0] != key:
            cached = (key, 1.0 + self.gate(level.features.to(dtype)))
            level.cache[id(self)] = cached
        return cached[1]

    def forward(self, r: torch.Tensor, level) -> torch.Tensor:
        # Convolutions run in the weights' dtype (float32 is several times faster on CPU than
        # float64); the V-cycle around them stays in the residual's dtype.
        dtype = self.inp.weight.dtype
        if self.root_scaled:
            h = self.inp((r * level.inv_root_diag).to(dtype)) * self.scale(level)
            return self.out(h).to(r.dtype) * level.inv_root_diag
        h = self.inp(r.to(dtype)) * self.scale(level)
        return self.out(h).to(r.dtype) * level.inv_diag

    def adjoint(self, r: torch.Tensor, level) -> torch.Tensor:
        """The transpose of :meth:`forward`: the convolutions transposed (channels swapped, kernels
        flipped), applied in the reverse order."""
        dtype = self.inp.weight.dtype
        pad = self.inp.padding
        spatial = tuple(range(2, self.inp.weight.ndim))

        def transposed(x: torch.Tensor, conv: nn.Module) -> torch.Tensor:
            return self.conv(x, conv.weight.transpose(0, 1).flip(spatial), padding=pad)

        if self.root_scaled:
            h = transposed((r * level.inv_root_diag).to(dtype), self.out) * self.scale(level)
            return transposed(h, self.inp).to(r.dtype) * level.inv_root_diag
        h = transposed((r * level.inv_diag).to(dtype), self.out) * self.scale(level)
        return transposed(h, self.inp).to(r.dtype)


class MultigridNeuralOperator(nn.Module):
    """Learned V-cycle ``(hierarchy, r (B, 1, *interior)) -> z ~ A^-1 r`` (linear in ``r``).

    ``hierarchy`` is a :class:`BlackBoxHierarchy` or :class:`MultigridHierarchy`, the kind the
    config names (:func:`build_hierarchy`, or :meth:`hierarchy_for`).

    >>> net = MultigridNeuralOperator(MultigridPreconditionerConfig(ndim=2))
    >>> H = net.hierarchy_for(Grid((17, 17)))
    >>> net(H, torch.ones(1, 1, 15, 15, dtype=torch.float64)).shape
    torch.Size([1, 1, 15, 15])
    """

    def __init__(self, config: MultigridPreconditionerConfig = MultigridPreconditionerConfig()) -> None:
        super().__init__()
        self.config = config
        self.pre = _Smoother(config)
        self.post = None if config.symmetric else _Smoother(config)

    def hierarchy_for(self, grid: Grid, coefficient=None, shift: float = 0.0, dtype: torch.dtype = torch.float64,
                      device=None) -> BlackBoxHierarchy | MultigridHierarchy:
        """The hierarchy this network runs on, for the systems ``(grid, coefficient, shift)``."""
        return build_hierarchy(self.config.hierarchy, grid, coefficient, self.config.coarsest_nodes, shift,
                               dtype=dtype, device=device)

    def forward(self, hierarchy, r: torch.Tensor) -> torch.Tensor:
        nd = self.config.ndim
        if hierarchy.kind != self.config.hierarchy:
            raise ValueError(f"network was built for the {self.config.hierarchy!r} hierarchy, got a "
                             f"{hierarchy.kind!r} one")
        if hierarchy.grid.ndim != nd:
            raise ValueError(f"network is {nd}D but the hierarchy's grid is {hierarchy.grid.ndim}D")
        if r.ndim != nd + 2 or r.shape[1] != 1 or tuple(r.shape[2:]) != hierarchy.grid.interior_shape:
            raise ValueError(f"residual must be (batch, 1, *{hierarchy.grid.interior_shape}), got {tuple(r.shape)}")
        return self._vcycle(hierarchy, 0, r)

    def _vcycle(self, H, level: int, f: torch.Tensor) -> torch.Tensor:
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
            res = f - lev.apply_A(u)
            u = u + (self.pre.adjoint(res, lev) if self.post is None else self.post(res, lev))
        return u


def vcycle_energy_loss(net: MultigridNeuralOperator, hierarchy, e: torch.Tensor, cycles: int = 1) -> torch.Tensor:
    """Mean ``(||E^k e||_A^2 / ||e||_A^2)^(1/k)`` over a batch of errors ``e (B, 1, *interior)``, with
    ``E = I - M A`` the V-cycle's error propagation and ``k = cycles`` (``k = 1``: the energy left by
    one V-cycle; larger ``k`` weights the slowly reduced errors, as a power iteration does)."""
    lev = hierarchy.levels[0]
    Ae = lev.apply_A(e)
    err, A_err = e, Ae
    for _ in range(cycles):
        err = err - net(hierarchy, A_err)
        A_err = lev.apply_A(err)
    dims = tuple(range(1, e.ndim))
    ratio = (err * A_err).sum(dims) / (e * Ae).sum(dims)
    return (ratio if cycles == 1 else ratio.clamp(min=0.0) ** (1.0 / cycles)).mean()


class NeuralMultigridPreconditioner(Preconditioner):
    """A :class:`MultigridNeuralOperator` attached to one system ``-div(a grad u) + shift u = f``.

    ``apply(r)`` takes ``(n,)`` or ``(B, n)`` residuals (numpy or torch, any device the network is
    on) and runs the learned V-cycle in float64 around convolutions in the network's dtype (a
    float32 network is linear in ``r`` up to float32 rounding; ``network.double()`` makes it exact
    at several times the cost on CPU). Use it in :func:`pdesurrogates.linalg.fcg`; the flag
    ``symmetric`` is set for a symmetric network (config ``symmetric``) in float64, whose V-cycle
    is symmetric to round-off (in float32 only to float32 rounding).
    The hierarchy (the network config's ``hierarchy``) is built once, here.

    Args:
        network: trained network.
        grid: the system's Dirichlet grid (boundary nodes included), any size.
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
            self.hierarchy = network.hierarchy_for(grid, coefficient, shift, dtype=torch.float64, device=param.device)
            self.n = math.prod(grid.interior_shape)
        self.symmetric = bool(network.config.symmetric) and next(network.parameters()).dtype == torch.float64

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
        field = r_t.reshape(-1, 1, *shape).to(device=self.hierarchy.device, dtype=torch.float64)
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


_COEFFICIENT_KINDS = ("ones", "darcy", "mixed", "contrast")


def _check_coefficient_kind(kind: str) -> None:
    if kind not in _COEFFICIENT_KINDS:
        raise ValueError(f"coefficient must be one of {list(_COEFFICIENT_KINDS)}, got {kind!r}")


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
                        high: float = 12.0, low: float = 3.0, max_contrast: float = 1e6) -> torch.Tensor:
    """``(n, 1, *grid)`` float64 training coefficients (thresholded Gaussian random fields, 2D).

    ``kind``: ``"ones"``; ``"darcy"`` (two-phase ``high``/``low``); ``"mixed"`` (every other one
    two-phase); ``"contrast"`` (two-phase ``c``/``1`` with ``c`` drawn log-uniformly in
    ``[1, max_contrast]`` per coefficient).
    """
    from pdesurrogates.physics.darcy import sample_coefficient

    _check_coefficient_kind(kind)
    if kind == "contrast" and not (math.isfinite(max_contrast) and max_contrast >= 1):
        raise ValueError(f"max_contrast must be finite and >= 1, got {max_contrast}")
    shape = (resolution,) * ndim
    pool = []
    for i in range(n):
        if kind == "ones" or (kind == "mixed" and i % 2 == 0):
            pool.append(torch.ones(shape, dtype=torch.float64))
        elif kind == "contrast":
            c = math.exp(float(torch.rand((), generator=generator, dtype=torch.float64)) * math.log(max_contrast))
            pool.append(torch.as_tensor(sample_coefficient(resolution, generator, high=c, low=1.0)))
        else:
            pool.append(torch.as_tensor(sample_coefficient(resolution, generator, high=high, low=low)))
    return torch.stack(pool)[:, None]


# Checkpoints written before ``hierarchy`` existed hold the rediscretised network.
NETWORKS.register("neural_multigrid", MultigridPreconditionerConfig,
                  lambda **fields: MultigridNeuralOperator(MultigridPreconditionerConfig(**fields)),
                  legacy_defaults={"hierarchy": "rediscretised", "symmetric": False})
