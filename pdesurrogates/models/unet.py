"""U-Net baseline (Ronneberger, Fischer, Brox, MICCAI 2015) for 1D, 2D and 3D grids.

Standard encoder-decoder: at each of ``depth`` scales two 3x3 convolutions (normalisation +
activation), max-pooling down, a stride-2 transposed convolution up, concatenation with the skip,
and a final 1x1 convolution. Channels double per scale from ``width``. Grids whose size is not
divisible by ``2**depth`` are handled by zero-padding the upsampled map to the skip's size, as in
common U-Net implementations. GroupNorm (one group per 8 channels) instead of BatchNorm so a model's
output does not depend on the batch it is evaluated in. The defaults (width 16, depth 3, ~0.47M
parameters in 2D) put it between MgNO and FNO in size on the small Darcy benchmark.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..nn.layers import GridChannels, check_input, conv_class, conv_transpose_class, max_pool_class
from ..nn.padding import DomainPadding, torch_pad_widths
from .mgno import ACTIVATIONS
from .registry import (
    MODELS,
    check_choice,
    check_config_name,
    check_fraction,
    check_ndim,
    check_positive_ints,
)

NORMS = ("group", "batch", "none")


@dataclass(frozen=True)
class UNetConfig:
    """U-Net baseline.

    Attributes
    ----------
    in_channels, out_channels : int
    ndim : int
        Spatial axes (1, 2 or 3).
    width : int
        Channels at the finest scale (doubled at each coarser one).
    depth : int
        Number of down-sampling steps.
    norm : {"group", "batch", "none"}
    activation : {"gelu", "relu", "tanh", "silu"}
    grid_channels : bool
        Append normalized coordinates to the input.
    domain_padding : float
        Zero-pad each axis by this fraction of its length (then crop); 0 disables.
    """

    name: str = "unet"
    in_channels: int = 1
    out_channels: int = 1
    ndim: int = 2
    width: int = 16
    depth: int = 3
    norm: str = "group"
    activation: str = "gelu"
    grid_channels: bool = False
    domain_padding: float = 0.0

    def __post_init__(self):
        check_config_name(self, "unet")
        check_ndim(self)
        check_positive_ints(self, "in_channels", "out_channels", "width", "depth")
        check_choice(self, "norm", NORMS)
        check_choice(self, "activation", tuple(ACTIVATIONS))
        check_fraction(self, "domain_padding", upper=1.0)


def _norm(kind: str, channels: int, ndim: int) -> nn.Module:
    if kind == "group":
        return nn.GroupNorm(max(1, channels // 8), channels)
    if kind == "batch":
        return {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}[ndim](channels)
    return nn.Identity()


class _DoubleConv(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, ndim: int, norm: str, activation: str):
        conv = conv_class(ndim)
        bias = norm == "none"
        super().__init__(
            conv(c_in, c_out, 3, padding=1, bias=bias), _norm(norm, c_out, ndim), ACTIVATIONS[activation](),
            conv(c_out, c_out, 3, padding=1, bias=bias), _norm(norm, c_out, ndim), ACTIVATIONS[activation](),
        )


class UNet(nn.Module):
    """U-Net: ``(B, in_channels, *s) -> (B, out_channels, *s)``; parameters are :class:`UNetConfig`'s fields."""

    def __init__(self, in_channels: int = 1, out_channels: int = 1, ndim: int = 2, width: int = 16,
                 depth: int = 3, norm: str = "group", activation: str = "gelu", grid_channels: bool = False,
                 domain_padding: float = 0.0):
        super().__init__()
        self.in_channels = in_channels
        self.ndim = ndim
        self.grid = GridChannels() if grid_channels else None
        self.padding = DomainPadding(domain_padding) if domain_padding > 0 else None
        channels = [width * 2 ** i for i in range(depth + 1)]
        c_in = in_channels + (ndim if grid_channels else 0)
        self.down = nn.ModuleList([_DoubleConv(c_in, channels[0], ndim, norm, activation)])
        for i in range(depth):
            self.down.append(_DoubleConv(channels[i], channels[i + 1], ndim, norm, activation))
        self.pool = max_pool_class(ndim)(2)
        up = conv_transpose_class(ndim)
        self.upsample = nn.ModuleList(up(channels[i + 1], channels[i], 2, stride=2) for i in reversed(range(depth)))
        self.up = nn.ModuleList(_DoubleConv(2 * channels[i], channels[i], ndim, norm, activation)
                                for i in reversed(range(depth)))
        self.project = conv_class(ndim)(channels[0], out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: ``(B, in_channels, *s)`` -> ``(B, out_channels, *s)``."""
        check_input(x, ndim=self.ndim, channels=self.in_channels, model="unet")
        spatial = x.shape[2:]
        if self.grid is not None:
            x = self.grid(x)
        if self.padding is not None:
            x = self.padding.pad(x)
        skips = []
        for i, block in enumerate(self.down):
            if i > 0:
                if min(x.shape[2:]) < 2:
                    raise ValueError(f"unet: grid {tuple(spatial)} is too small for depth {len(self.down) - 1}")
                x = self.pool(x)
            x = block(x)
            skips.append(x)
        skips.pop()
        for upsample, block in zip(self.upsample, self.up):
            skip = skips.pop()
            x = upsample(x)
            missing = [(0, s - n) for s, n in zip(skip.shape[2:], x.shape[2:])]
            if any(m for _, m in missing):
                x = F.pad(x, torch_pad_widths(missing))
            x = block(torch.cat([skip, x], dim=1))
        x = self.project(x)
        if self.padding is not None:
            x = self.padding.unpad(x, spatial)
        return x


MODELS.register("unet", UNetConfig, UNet)
