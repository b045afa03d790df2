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

import numpy as np
import torch
from torch import nn

from pdesurrogates.linalg.preconditioners import Preconditioner
from pdesurrogates.physics.grid import Grid
from pdesurrogates.physics.operators import pad_dirichlet

__all__ = [
    "NeuralOperatorPreconditioner",
    "encode_coefficient",
    "energy_cosine_loss",
]


def encode_coefficient(a: torch.Tensor) -> torch.Tensor:
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
        """The trained model in ``path`` (a run or checkpoint directory) attached to the system on
        ``grid`` with ``coefficient``."""
        from pdesurrogates.models import find_checkpoint, load_checkpoint

        ckpt = load_checkpoint(find_checkpoint(path))
        task = ckpt.extra.get("task", ckpt.extra.get("kind"))  # "kind" in checkpoints of the first layout
        if task != "operator_preconditioner":
            raise ValueError(f"{path}: checkpoint of task {task!r} is not an 'operator_preconditioner' "
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
        self._a_channel = encode_coefficient(a.to(param.dtype)).to(param.device)

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
