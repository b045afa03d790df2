"""A neural operator as a nonlinear preconditioner for flexible CG.

For variable-coefficient diffusion ``-div(a grad u) = r`` with ``u = 0`` on the boundary, a neural
operator ``G(a, r) ~ A(a)^-1 r`` (e.g. MgNO or FNO from :mod:`pdesurrogates.models`, inputs = the
coefficient and the residual as two channels on the full node grid) proposes the search direction at
every FCG iteration. FCG's A-orthogonalisation and exact line search make the answer exact to the
requested tolerance however large the surrogate's own error is: the surrogate only decides how
fast the iteration converges.

Training uses the same scale-free loss as DCDM (:func:`~pdesurrogates.solvers.learned.conjugate_direction.dcdm_loss`)
with the system's own matrix applied matrix-free, on right-hand sides that mix smooth Gaussian random
fields and white noise, over random two-phase coefficients (the FNO Darcy setting), so no solver is
needed to make training data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn

from pdesurrogates.linalg.preconditioners import Preconditioner
from pdesurrogates.physics.grid import Grid
from pdesurrogates.physics.operators import apply_diffusion, pad_dirichlet
from pdesurrogates.solvers.learned.conjugate_direction import dcdm_loss

__all__ = [
    "NeuralOperatorPreconditioner",
    "OperatorPreconditionerTrainConfig",
    "train_operator_preconditioner",
    "two_phase_coefficients",
]


def _encode_coefficient(a: torch.Tensor) -> torch.Tensor:
    """Coefficient channel fed to the network: ``log(a)`` centred, so contrasts are O(1)."""
    return torch.log(a) - 1.5


class NeuralOperatorPreconditioner(Preconditioner):
    """``z = ||r|| G(a, r/||r||)`` restricted to the interior unknowns.

    Args:
        model: maps ``(B, 2, *grid.shape) -> (B, 1, *grid.shape)``; channel 0 the encoded coefficient,
            channel 1 the residual padded with zeros on the boundary.
        grid: Dirichlet grid of the system (boundary nodes included).
        coefficient: node values of ``a``, shape ``grid.shape``.
    """

    linear = False
    symmetric = False

    def __init__(self, model: nn.Module, grid: Grid, coefficient=None) -> None:
        if grid.boundary != "dirichlet":
            raise ValueError(f"NeuralOperatorPreconditioner needs a Dirichlet grid, got {grid.boundary!r}")
        self.model = model.eval()
        self.grid = grid
        a = torch.ones(grid.shape) if coefficient is None else torch.as_tensor(coefficient)
        if tuple(a.shape) != grid.shape:
            raise ValueError(f"coefficient has shape {tuple(a.shape)}, the grid needs {grid.shape}")
        if not torch.all(a > 0):
            raise ValueError("coefficient must be positive everywhere")
        param = next(model.parameters())
        self._a_channel = _encode_coefficient(a.to(param.dtype)).to(param.device)

    @torch.no_grad()
    def apply(self, r):
        r_t = torch.as_tensor(r)
        shape = self.grid.interior_shape
        n = math.prod(shape)
        if r_t.shape[-1] != n:
            raise ValueError(f"residual has length {r_t.shape[-1]}, the grid {self.grid.shape} has {n} unknowns")
        batch = r_t.reshape(-1, n)
        norm = batch.norm(dim=1, keepdim=True).clamp_min(torch.finfo(batch.dtype).tiny)
        a = self._a_channel
        field = (batch / norm).to(a.dtype).to(a.device).reshape(-1, 1, *shape)
        x = torch.cat([a.expand(field.shape[0], 1, *self.grid.shape), pad_dirichlet(field, self.grid.ndim)], 1)
        out = self.model(x)[(slice(None), slice(0, 1)) + (slice(1, -1),) * self.grid.ndim]
        z = out.reshape(-1, n).to(device=batch.device, dtype=batch.dtype) * norm
        sign = torch.where((z * batch).sum(dim=1, keepdim=True) < 0, -1.0, 1.0).to(z.dtype)
        z = (z * sign).reshape(r_t.shape)
        return z.numpy() if isinstance(r, np.ndarray) else z


def two_phase_coefficients(
    n: int, resolution: int, generator: torch.Generator, high: float = 12.0, low: float = 3.0, ndim: int = 2
) -> torch.Tensor:
    """``(n, *grid)`` two-phase coefficients thresholding a smooth random field (FNO Darcy style).

    The field is a sum of random low-frequency cosines (decaying as ``k^-2``), a cheap stand-in for
    the ``(-Delta + 9 I)^-2`` Gaussian random field of the generator.
    """
    k = torch.arange(1, 9, dtype=torch.float64)
    x = torch.linspace(0, 1, resolution, dtype=torch.float64)
    field = torch.zeros(n, *(resolution,) * ndim, dtype=torch.float64)
    grids = torch.meshgrid(*([x] * ndim), indexing="ij")
    for _ in range(12):
        kk = k[torch.randint(0, len(k), (n, ndim), generator=generator)]
        phase = torch.rand(n, ndim, generator=generator) * 2 * math.pi
        amp = torch.randn(n, generator=generator) / kk.pow(2).sum(1)
        term = torch.ones(n, *(resolution,) * ndim, dtype=torch.float64)
        for d in range(ndim):
            shape = (n,) + (1,) * ndim
            term = term * torch.cos(math.pi * kk[:, d].reshape(shape) * grids[d] + phase[:, d].reshape(shape))
        field = field + amp.reshape((n,) + (1,) * ndim) * term
    return torch.where(field >= 0, torch.tensor(high), torch.tensor(low)).float()


def smooth_and_rough_rhs(n: int, shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    """``(n, 1, *shape)`` unit right-hand sides: smoothed noise at several scales plus white noise."""
    ndim = len(shape)
    pool = nn.functional.avg_pool2d if ndim == 2 else nn.functional.avg_pool3d
    white = torch.randn(n, 1, *shape, generator=generator)
    out = white * torch.rand(n, *(1,) * (ndim + 1), generator=generator)
    for width in (3, 7, 15):
        smooth = white.clone()
        for _ in range(3):
            smooth = pool(smooth, width, stride=1, padding=width // 2, count_include_pad=False)
        out = out + smooth * 10 * torch.rand(n, *(1,) * (ndim + 1), generator=generator)
    return out / out.flatten(1).norm(dim=1).reshape(n, *(1,) * (ndim + 1))


@dataclass(frozen=True)
class OperatorPreconditionerTrainConfig:
    """Training of a neural-operator preconditioner on random two-phase diffusion problems."""

    resolution: int = 33
    steps: int = 1000
    batch_size: int = 8
    lr: float = 3e-3
    seed: int = 0
    high: float = 12.0
    low: float = 3.0
    constant_fraction: float = 0.25  # share of batches with a = 1 (plain Poisson)


def train_operator_preconditioner(
    model: nn.Module,
    config: OperatorPreconditionerTrainConfig = OperatorPreconditionerTrainConfig(),
    progress: Callable[[int, float], None] | None = None,
) -> list[float]:
    """Train ``model`` in place with the scale-free DCDM loss; returns the loss history."""
    gen = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)
    grid = Grid((config.resolution,) * 2)
    shape = grid.interior_shape
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, config.steps)
    history = []
    model.train()
    for step in range(config.steps):
        a = two_phase_coefficients(config.batch_size, config.resolution, gen, config.high, config.low)
        if torch.rand((), generator=gen) < config.constant_fraction:
            a = torch.ones_like(a)
        a = a[:, None]
        b = smooth_and_rough_rhs(config.batch_size, shape, gen)
        x = torch.cat([_encode_coefficient(a), pad_dirichlet(b, 2)], 1)
        q = model(x)[:, :1, 1:-1, 1:-1]

        def apply_A(u, a=a):
            return apply_diffusion(a, pad_dirichlet(u, 2), grid)

        loss = dcdm_loss(q, b, apply_A)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        history.append(float(loss.detach()))
        if progress is not None:
            progress(step, history[-1])
    model.eval()
    return history
