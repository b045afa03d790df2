"""Small dimension-generic helpers: convolution classes by rank, input checks, coordinate channels.

Every layer in :mod:`pdesurrogates.nn` works on ``(batch, channel, *spatial)`` tensors with one, two
or three spatial axes; ``conv_class(ndim)`` picks the matching ``torch.nn`` class so no layer is
written once per dimension.
"""

from __future__ import annotations

import torch
from torch import nn

_CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
_CONV_T = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}
_POOL = {1: nn.MaxPool1d, 2: nn.MaxPool2d, 3: nn.MaxPool3d}


def _check_ndim(ndim: int) -> int:
    if ndim not in _CONV:
        raise ValueError(f"ndim must be 1, 2 or 3 (number of spatial axes), got {ndim!r}")
    return ndim


def conv_class(ndim: int) -> type[nn.Module]:
    """``nn.Conv1d``/``Conv2d``/``Conv3d`` for ``ndim`` spatial axes."""
    return _CONV[_check_ndim(ndim)]


def conv_transpose_class(ndim: int) -> type[nn.Module]:
    """``nn.ConvTranspose{1,2,3}d`` for ``ndim`` spatial axes."""
    return _CONV_T[_check_ndim(ndim)]


def max_pool_class(ndim: int) -> type[nn.Module]:
    """``nn.MaxPool{1,2,3}d`` for ``ndim`` spatial axes."""
    return _POOL[_check_ndim(ndim)]


def check_input(x: torch.Tensor, *, ndim: int, channels: int, model: str) -> None:
    """Raise a ``ValueError`` unless ``x`` has shape ``(B, channels, *spatial)`` with ``ndim`` axes.

    Parameters
    ----------
    x : torch.Tensor
        Model input.
    ndim : int
        Expected number of spatial axes.
    channels : int
        Expected channel count.
    model : str
        Model name used in the message.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{model}: input must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim != ndim + 2:
        raise ValueError(
            f"{model}: expected input of shape (batch, {channels}, " + ", ".join(["n"] * ndim)
            + f") with {ndim} spatial axes, got shape {tuple(x.shape)}"
        )
    if x.shape[1] != channels:
        raise ValueError(f"{model}: expected {channels} input channels, got {x.shape[1]} (shape {tuple(x.shape)})")


def coordinate_channels(x: torch.Tensor) -> torch.Tensor:
    """Normalized node coordinates of the grid of ``x``.

    Parameters
    ----------
    x : torch.Tensor
        ``(B, C, n_1, ..., n_d)``; only its shape, dtype and device are used.

    Returns
    -------
    torch.Tensor
        ``(B, d, n_1, ..., n_d)``; channel ``k`` holds ``linspace(0, 1, n_k)`` along axis ``k``
        (node-based, as :class:`pdesurrogates.physics.grid.Grid`). A grid of one point gets 0.
    """
    batch, spatial = x.shape[0], x.shape[2:]
    axes = [torch.linspace(0.0, 1.0, n, dtype=x.dtype, device=x.device) if n > 1
            else torch.zeros(1, dtype=x.dtype, device=x.device) for n in spatial]
    mesh = torch.meshgrid(*axes, indexing="ij")
    return torch.stack(mesh, dim=0).unsqueeze(0).expand(batch, -1, *spatial)


class GridChannels(nn.Module):
    """Append normalized coordinate channels: ``(B, C, *s) -> (B, C + d, *s)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, coordinate_channels(x)], dim=1)
