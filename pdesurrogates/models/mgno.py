"""MgNO: a neural operator whose linear layers are multigrid V-cycles.

He, Liu, Xu, "MgNO: Efficient Parameterization of Linear Operators via Multigrid", ICLR 2024
(official code ``xlliu2017/MgNO``, model ``MgNO_DC`` for Darcy). One layer is

    u <- act(MgConv(u) + Conv1x1(u)),

where ``MgConv`` is a learned V-cycle (:class:`pdesurrogates.nn.multigrid.MgConv`) and the 1x1
convolution's bias is the function-valued bias. There is no lifting MLP: the first V-cycle reads the
input channels directly, and a final bias-free 1x1 convolution gives the output.

Differences from the official code (all are options or generalisations, none changes a default
structure):

* any grid size: a stride-2 convolution maps ``n -> ceil(n/2)`` points and the transposed
  convolution's output is cropped back to ``n``, instead of kernel sizes picked by hand per
  resolution (211 -> 106 -> 53 -> ...);
* with ``padding_mode="circular"`` the prolongation wraps around the periodic boundary too (the
  official code's transposed convolutions pad with zeros), so the V-cycle commutes exactly with
  shifts by ``2**(levels-1)`` points (tested);
* 1D and 3D as well as 2D (the same blocks with ``Conv1d``/``Conv3d``);
* ``levels`` (number of grids) is a config field; :func:`levels_for_grid` picks it from a grid
  size the way the paper does (coarsest grid of a few points);
* optional coordinate channels and domain padding (shared options of all our models; off by default);
* no ``normalizer`` inside the model: normalisation lives in the checkpoint (``Surrogate``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ..nn.layers import GridChannels, check_input, conv_class
from ..nn.multigrid import PADDING_MODES, MgConv, default_smoothing
from ..nn.padding import DomainPadding
from .registry import (
    MODELS,
    check_choice,
    check_config_name,
    check_fraction,
    check_ndim,
    check_positive_ints,
)

ACTIVATIONS = {"gelu": nn.GELU, "relu": nn.ReLU, "tanh": nn.Tanh, "silu": nn.SiLU}


def levels_for_grid(spatial: Sequence[int], coarsest: int = 4, max_levels: int = 6) -> int:
    """Number of multigrid levels for a grid: halve until the next grid would have < ``coarsest`` points.

    >>> levels_for_grid((16, 16)), levels_for_grid((211, 211)), levels_for_grid((421,))
    (3, 6, 6)
    """
    n = min(spatial)
    levels = 1
    while levels < max_levels and math.ceil(n / 2) >= coarsest:
        n = math.ceil(n / 2)
        levels += 1
    return levels


@dataclass(frozen=True)
class MgNOConfig:
    """Multigrid neural operator (MgNO).

    Attributes
    ----------
    in_channels, out_channels : int
    ndim : int
        Spatial axes (1, 2 or 3).
    width : int
        Channels of ``u`` in every layer (paper: 24 for Darcy, 32 for Navier-Stokes).
    n_layers : int
        MgNO layers (paper: 4-5).
    levels : int
        Grids in each V-cycle, the finest included (paper: 5-6 at 211 points; 4 suits 16-64 points).
    smoothing : tuple of int, optional
        Pre-smoothing steps per level, finest first; default 1 per level and 2 on the coarsest.
    post_smooth : int
        Post-smoothing steps per level (paper: 0).
    padding_mode : {"zeros", "circular", "reflect", "replicate"}
        "zeros" for Dirichlet problems (paper, Darcy), "circular" for periodic ones (Navier-Stokes).
    activation : {"gelu", "relu", "tanh", "silu"}
    grid_channels : bool
        Append normalized coordinates to the input.
    domain_padding : float
        Zero-pad each axis by this fraction of its length (then crop); 0 disables.
    """

    name: str = "mgno"
    in_channels: int = 1
    out_channels: int = 1
    ndim: int = 2
    width: int = 24
    n_layers: int = 5
    levels: int = 4
    smoothing: tuple[int, ...] | None = None
    post_smooth: int = 0
    padding_mode: str = "zeros"
    activation: str = "gelu"
    grid_channels: bool = False
    domain_padding: float = 0.0

    def __post_init__(self):
        check_config_name(self, "mgno")
        check_ndim(self)
        check_positive_ints(self, "in_channels", "out_channels", "width", "n_layers", "levels")
        if self.smoothing is not None:
            object.__setattr__(self, "smoothing", tuple(self.smoothing))
            if len(self.smoothing) != self.levels or self.smoothing[0] < 1 or min(self.smoothing) < 0:
                raise ValueError(f"MgNOConfig.smoothing must give {self.levels} step counts (>= 1 on the finest "
                                 f"level), got {self.smoothing}")
        if isinstance(self.post_smooth, bool) or not isinstance(self.post_smooth, int) or self.post_smooth < 0:
            raise ValueError(f"MgNOConfig.post_smooth must be an int >= 0, got {self.post_smooth!r}")
        check_choice(self, "padding_mode", PADDING_MODES)
        check_choice(self, "activation", tuple(ACTIVATIONS))
        check_fraction(self, "domain_padding", upper=1.0)


class MgNO(nn.Module):
    """Multigrid neural operator: ``(B, in_channels, *s) -> (B, out_channels, *s)``.

    Parameters are the fields of :class:`MgNOConfig`.
    """

    def __init__(self, in_channels: int = 1, out_channels: int = 1, ndim: int = 2, width: int = 24,
                 n_layers: int = 5, levels: int = 4, smoothing: tuple[int, ...] | None = None,
                 post_smooth: int = 0, padding_mode: str = "zeros", activation: str = "gelu",
                 grid_channels: bool = False, domain_padding: float = 0.0):
        super().__init__()
        self.in_channels = in_channels
        self.ndim = ndim
        smoothing = default_smoothing(levels) if smoothing is None else tuple(smoothing)
        conv = conv_class(ndim)
        first = in_channels + (ndim if grid_channels else 0)
        self.grid = GridChannels() if grid_channels else None
        self.padding = DomainPadding(domain_padding) if domain_padding > 0 else None
        self.mg = nn.ModuleList()
        self.linear = nn.ModuleList()
        for i in range(n_layers):
            c_in = first if i == 0 else width
            self.mg.append(MgConv(c_in, width, ndim, levels=levels, smoothing=smoothing,
                                  post_smooth=post_smooth, padding_mode=padding_mode))
            self.linear.append(conv(c_in, width, 1))
        self.act = ACTIVATIONS[activation]()
        self.project = conv(width, out_channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: ``(B, in_channels, *s)`` -> ``(B, out_channels, *s)``."""
        check_input(x, ndim=self.ndim, channels=self.in_channels, model="mgno")
        spatial = x.shape[2:]
        if self.grid is not None:
            x = self.grid(x)
        if self.padding is not None:
            x = self.padding.pad(x)
        for mg, linear in zip(self.mg, self.linear):
            x = self.act(mg(x) + linear(x))
        x = self.project(x)
        if self.padding is not None:
            x = self.padding.unpad(x, spatial)
        return x


MODELS.register("mgno", MgNOConfig, MgNO)
