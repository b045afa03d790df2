"""Boundary and initial-condition losses, and a hard zero-Dirichlet constraint for network outputs.

Two ways to make a network respect ``u = 0`` on the boundary of a Dirichlet grid:

* a *soft* penalty, :func:`dirichlet_boundary_loss`, added to the physics loss with a weight;
* a *hard* constraint, :class:`ZeroDirichletOutput`, which wraps a model so that its output is zero on
  the boundary by construction. Its default ``mode="bump"`` multiplies the raw output by the bump
  ``prod_d 4 x_d (1 - x_d)`` evaluated at the node coordinates of whatever grid the input lives on
  (so the wrapped operator stays resolution-independent and smooth); ``mode="pad"`` keeps the
  interior nodes and writes zeros on the boundary nodes.

PINO (Li et al., "Physics-Informed Neural Operator for Learning Partial Differential Equations",
2021) uses the physics residual at interior nodes only; with the hard constraint no boundary weight
is needed, which is what the tests and benchmarks here do.
"""

from __future__ import annotations

import torch
from torch import nn

from pdesurrogates.physics.operators import pad_dirichlet


def boundary_values(u: torch.Tensor, spatial_dims: int) -> torch.Tensor:
    """All boundary-node values of the last ``spatial_dims`` axes, flattened: ``(..., n_boundary)``."""
    if u.ndim < spatial_dims:
        raise ValueError(f"boundary_values: u {tuple(u.shape)} has fewer than {spatial_dims} axes")
    mask = torch.ones(u.shape[-spatial_dims:], dtype=torch.bool, device=u.device)
    interior = tuple(slice(1, -1) for _ in range(spatial_dims))
    mask[interior] = False
    return u[..., mask]


def dirichlet_boundary_loss(
    u: torch.Tensor, value: float | torch.Tensor = 0.0, *, spatial_dims: int = 2
) -> torch.Tensor:
    """Root-mean-square deviation of ``u`` from the boundary ``value`` on the boundary nodes.

    Parameters
    ----------
    u : Tensor ``(B, C, *spatial)``
    value : float or Tensor broadcastable to ``boundary_values(u)``
    spatial_dims : int

    Returns
    -------
    Tensor
        Scalar (averaged over batch and channels).
    """
    if not torch.isfinite(u).all():
        raise ValueError("dirichlet_boundary_loss: u contains NaN or Inf")
    b = boundary_values(u, spatial_dims)
    return torch.sqrt((b - value).pow(2).mean())


def initial_condition_loss(pred_t0: torch.Tensor, u0: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Relative L2 mismatch between the predicted state at ``t = 0`` and the given initial condition.

    Parameters
    ----------
    pred_t0, u0 : Tensor ``(B, *spatial)`` or ``(B, C, *spatial)``, the same shape.

    Returns
    -------
    Tensor
        Scalar, mean over the batch of ``||pred_t0 - u0|| / ||u0||``.
    """
    if pred_t0.shape != u0.shape:
        raise ValueError(f"initial_condition_loss: pred {tuple(pred_t0.shape)} vs u0 {tuple(u0.shape)}")
    dims = tuple(range(1, u0.ndim))
    err = torch.linalg.vector_norm(pred_t0 - u0, dim=dims)
    ref = torch.linalg.vector_norm(u0, dim=dims)
    return (err / (ref + eps)).mean()


def bump(shape: tuple[int, ...], *, dtype=None, device=None) -> torch.Tensor:
    """``prod_d 4 x_d (1 - x_d)`` on the node-based unit grid of ``shape``: 0 on the boundary, max 1."""
    out = None
    for d, n in enumerate(shape):
        x = torch.linspace(0.0, 1.0, n, dtype=dtype, device=device)
        f = 4.0 * x * (1.0 - x)
        f = f.reshape((n,) + (1,) * (len(shape) - d - 1))
        out = f if out is None else out * f
    return out


class ZeroDirichletOutput(nn.Module):
    """Wrap ``model`` so its output vanishes on the boundary nodes (hard constraint).

    Parameters
    ----------
    model : nn.Module
        Maps ``(B, C_in, *spatial)`` to ``(B, C_out, *spatial)``.
    mode : ``"bump"`` | ``"pad"``
        ``"bump"``: output times :func:`bump` of the output grid; ``"pad"``: interior kept,
        boundary nodes set to zero.
    spatial_dims : int
        Number of trailing spatial axes (2 for Darcy).
    """

    MODES = ("bump", "pad")

    def __init__(self, model: nn.Module, mode: str = "bump", spatial_dims: int = 2):
        super().__init__()
        if mode not in self.MODES:
            raise ValueError(f"unknown mode {mode!r}; valid: {', '.join(self.MODES)}")
        self.model, self.mode, self.spatial_dims = model, mode, int(spatial_dims)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.model(x)
        nd = self.spatial_dims
        if self.mode == "bump":
            return y * bump(tuple(y.shape[-nd:]), dtype=y.dtype, device=y.device)
        interior = (Ellipsis,) + tuple(slice(1, -1) for _ in range(nd))
        return pad_dirichlet(y[interior], nd)
