"""A neural operator as a nonlinear preconditioner for flexible CG.

For variable-coefficient diffusion ``-div(a grad u) = r`` with ``u = 0`` on the boundary, a neural
operator ``G(a, r) ~ A(a)^-1 r`` (e.g. MgNO or FNO from :mod:`pdesurrogates.models`, inputs = the
coefficient and the residual as two channels on the full node grid) proposes the search direction at
every FCG iteration. FCG's A-orthogonalisation and exact line search make the answer exact to the
requested tolerance however large the surrogate's own error is: the surrogate only decides how
fast the iteration converges.

Training (:func:`train_operator_preconditioner`) minimises a scale-free energy-norm loss with the
system's own matrix applied matrix-free, over random errors and random two-phase coefficients (the
FNO Darcy setting), so no solver is needed to make training data. A generic surrogate does not know
the matrix, so its iteration counts grow with the grid; the learned V-cycle of
:mod:`pdesurrogates.solvers.learned.multigrid_preconditioner`, which applies the matrix on every
level, does not.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from pdesurrogates.linalg.preconditioners import Preconditioner
from pdesurrogates.physics.grid import Grid
from pdesurrogates.physics.operators import apply_diffusion, pad_dirichlet
from pdesurrogates.solvers.learned.multigrid_preconditioner import (
    random_errors,
    sample_coefficients,
)

__all__ = [
    "NeuralOperatorPreconditioner",
    "OperatorPreconditionerTrainConfig",
    "energy_cosine_loss",
    "train_operator_preconditioner",
    "train_operator_preconditioner_from_config",
]


def _encode_coefficient(a: torch.Tensor) -> torch.Tensor:
    """Coefficient channel fed to the network: ``log(a)`` centred, so contrasts are O(1)."""
    return torch.log(a) - 1.5


class NeuralOperatorPreconditioner(Preconditioner):
    """``z = rms(r) G(a, r/rms(r))`` restricted to the interior unknowns.

    Args:
        model: maps ``(B, 2, *grid.shape) -> (B, 1, *grid.shape)``; channel 0 the encoded coefficient,
            channel 1 the residual padded with zeros on the boundary.
        grid: Dirichlet grid of the system (boundary nodes included).
        coefficient: node values of ``a``, shape ``grid.shape``.

    A model trained by ``pdesurrogates train`` (``task = "operator_preconditioner"``) is a model
    checkpoint (:func:`pdesurrogates.models.checkpoint.save_checkpoint`); :meth:`load` reads it.
    """

    linear = False
    symmetric = False

    @classmethod
    def load(cls, path, grid: Grid, coefficient=None) -> NeuralOperatorPreconditioner:
        """The model checkpoint in ``path`` attached to the system on ``grid`` with ``coefficient``."""
        from pdesurrogates.models.checkpoint import load_checkpoint

        ckpt = load_checkpoint(path)
        if ckpt.extra.get("kind") != "operator_preconditioner":
            raise ValueError(f"{path}: checkpoint kind {ckpt.extra.get('kind')!r} is not 'operator_preconditioner' "
                             "(train one with task = \"operator_preconditioner\")")
        return cls(ckpt.model, grid, coefficient)

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
        # RMS normalisation: the network sees O(1) values at every grid size
        norm = (batch.norm(dim=1, keepdim=True) / math.sqrt(n)).clamp_min(torch.finfo(batch.dtype).tiny)
        a = self._a_channel
        field = (batch / norm).to(a.dtype).to(a.device).reshape(-1, 1, *shape)
        x = torch.cat([a.expand(field.shape[0], 1, *self.grid.shape), pad_dirichlet(field, self.grid.ndim)], 1)
        out = self.model(x)[(slice(None), slice(0, 1)) + (slice(1, -1),) * self.grid.ndim]
        z = out.reshape(-1, n).to(device=batch.device, dtype=batch.dtype) * norm
        sign = torch.where((z * batch).sum(dim=1, keepdim=True) < 0, -1.0, 1.0).to(z.dtype)
        z = (z * sign).reshape(r_t.shape)
        return z.numpy() if isinstance(r, np.ndarray) else z


def energy_cosine_loss(q: torch.Tensor, e: torch.Tensor, Ae: torch.Tensor, Aq: torch.Tensor) -> torch.Tensor:
    """Mean ``1 - (q.Ae)^2 / ((q.Aq)(e.Ae))``: the squared A-norm error left after the best step
    along ``q`` towards the exact correction ``e`` (scale free, in ``[0, 1]``)."""
    dims = tuple(range(1, q.ndim))
    qf = (q * Ae).sum(dims)
    return (1.0 - qf.pow(2) / ((q * Aq).sum(dims).clamp_min(1e-30) * (e * Ae).sum(dims))).mean()


@dataclass(frozen=True)
class OperatorPreconditionerTrainConfig:
    """Training of a neural-operator preconditioner on random diffusion problems (2D).

    Attributes:
        resolution: nodes per side of the training grid.
        coefficient: ``"ones"``, ``"darcy"`` (two-phase ``high``/``low``) or ``"mixed"``.
        steps, batch_size, lr: Adam with cosine decay.
    """

    resolution: int = 33
    coefficient: str = "mixed"
    n_coefficients: int = 32
    high: float = 12.0
    low: float = 3.0
    steps: int = 600
    batch_size: int = 8
    lr: float = 1e-3
    seed: int = 0
    model: Any = field(default_factory=lambda: _default_model())


def _default_model():
    from pdesurrogates.models import MgNOConfig

    return MgNOConfig(in_channels=2, width=16, n_layers=4, levels=5)


def train_operator_preconditioner_from_config(
    config: OperatorPreconditionerTrainConfig, progress: Callable[[int, float], None] | None = None
) -> tuple[nn.Module, list[float]]:
    """Build ``config.model`` (2 input channels, 1 output, 2D) and train it; ``(model, history)``."""
    import dataclasses

    from pdesurrogates.models import build

    model_cfg = dataclasses.replace(config.model, in_channels=2, out_channels=1, ndim=2)
    torch.manual_seed(config.seed)
    model = build(model_cfg)
    return model, train_operator_preconditioner(model, config, progress)


def train_operator_preconditioner(
    model: nn.Module,
    config: OperatorPreconditionerTrainConfig = OperatorPreconditionerTrainConfig(),
    progress: Callable[[int, float], None] | None = None,
) -> list[float]:
    """Train ``model`` in place with :func:`energy_cosine_loss`; returns the loss history.

    Each step draws coefficients from a fixed pool and random errors ``e`` (white and smoothed
    noise); the network sees ``(log a, A e / rms(A e))`` and its output ``q`` is scored by how much
    of ``e`` (in the A-norm) the best multiple of ``q`` removes. No PDE solve is needed. The
    right-hand side is normalised by its RMS, as :class:`NeuralOperatorPreconditioner` does, so the
    network sees O(1) values on every grid (normalising by the 2-norm instead shrinks the input as
    ``1/sqrt(n)`` and left the loss at 1 in our trials).
    """
    gen = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)
    grid = Grid((config.resolution,) * 2)
    pool = sample_coefficients(config.n_coefficients, config.resolution, config.coefficient, gen,
                               high=config.high, low=config.low)
    param = next(model.parameters())
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(config.steps, 1))
    history = []
    model.train()
    for step in range(config.steps):
        a = pool[torch.randint(0, pool.shape[0], (config.batch_size,), generator=gen)]
        e = random_errors(config.batch_size, grid.interior_shape, gen)

        def apply_A(u, a=a):
            return apply_diffusion(a, pad_dirichlet(u, 2), grid)

        Ae = apply_A(e)
        rms = Ae.flatten(1).norm(dim=1).reshape(-1, 1, 1, 1) / math.sqrt(Ae[0].numel())
        x = torch.cat([_encode_coefficient(a), pad_dirichlet(Ae / rms, 2)], 1).to(param.dtype)
        q = model(x)[:, :1, 1:-1, 1:-1].to(torch.float64)
        loss = energy_cosine_loss(q, e, Ae, apply_A(q))
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        history.append(float(loss.detach()))
        if progress is not None:
            progress(step, history[-1])
    model.eval()
    return history
