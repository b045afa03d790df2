"""Multigrid building blocks for MgNO: smoother, restriction, prolongation and the V-cycle ``MgConv``.

These follow He, Liu and Xu, "MgNO: Efficient parameterization of linear operators via multigrid",
ICLR 2024 (official code ``xlliu2017/MgNO``). A multigrid V-cycle for ``A u = f`` is a *linear*
operator ``f -> u``; MgNO learns every piece of it as a convolution:

* smoothing ``u <- u + S(f - A(u))`` with ``S`` and ``A`` 3x3 convolutions (no bias); the first
  step on the finest grid starts from ``u = 0`` and reduces to ``u = S(f)``;
* restriction of the pair ``(u, f) -> (Pi(u), R(f))`` with 3x3, stride-2 convolutions (no bias);
* prolongation ``u_fine <- u_fine + P(u_coarse)`` with a stride-2 transposed convolution.

All blocks work for 1, 2 and 3 spatial axes and any grid size: a stride-2 convolution maps ``n``
points to ``ceil(n / 2)``, and the prolongation output (``2 ceil(n / 2)`` points) is cropped to ``n``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .layers import conv_class, conv_transpose_class
from .padding import crop_to

PADDING_MODES = ("zeros", "circular", "reflect", "replicate")


def _check_padding_mode(padding_mode: str) -> str:
    if padding_mode not in PADDING_MODES:
        raise ValueError(f"padding_mode must be one of {PADDING_MODES}, got {padding_mode!r}")
    return padding_mode


class Smoother(nn.Module):
    """One learned smoothing step ``u <- u + S(f - A(u))``.

    Parameters
    ----------
    u_channels, f_channels : int
        Channels of the iterate ``u`` and of the right-hand side ``f``.
    ndim : int
        Spatial axes (1, 2 or 3).
    padding_mode : str
        Boundary handling of the 3x3 convolutions: ``"zeros"`` (Dirichlet-like) or ``"circular"``
        (periodic), or ``"reflect"``/``"replicate"``.
    first : bool
        The first step of a V-cycle, from ``u = 0``: ``u = S(f)``, no ``A``.

    Notes
    -----
    Shapes: ``u`` ``(B, u_channels, *s)``, ``f`` ``(B, f_channels, *s)`` -> ``(B, u_channels, *s)``.
    """

    def __init__(self, u_channels: int, f_channels: int, ndim: int = 2, *, padding_mode: str = "zeros",
                 first: bool = False):
        super().__init__()
        conv = conv_class(ndim)
        _check_padding_mode(padding_mode)
        self.first = first
        self.S = conv(f_channels, u_channels, 3, padding=1, bias=False, padding_mode=padding_mode)
        self.A = None if first else conv(u_channels, f_channels, 3, padding=1, bias=False,
                                         padding_mode=padding_mode)

    def forward(self, u: torch.Tensor | None, f: torch.Tensor) -> torch.Tensor:
        if self.A is None:
            if u is not None:
                raise ValueError("Smoother(first=True) starts from u = 0; pass u=None")
            return self.S(f)
        if u is None:
            raise ValueError("Smoother(first=False) needs the current iterate u")
        return u + self.S(f - self.A(u))


class Restriction(nn.Module):
    """Restrict ``(u, f)`` to the next coarser grid with learned stride-2 3x3 convolutions.

    ``u (B, u_channels, *s) -> Pi(u) (B, u_channels, *ceil(s/2))`` and likewise ``f -> R(f)``.
    """

    def __init__(self, u_channels: int, f_channels: int, ndim: int = 2, *, padding_mode: str = "zeros"):
        super().__init__()
        conv = conv_class(ndim)
        _check_padding_mode(padding_mode)
        self.Pi = conv(u_channels, u_channels, 3, stride=2, padding=1, bias=False, padding_mode=padding_mode)
        self.R = conv(f_channels, f_channels, 3, stride=2, padding=1, bias=False, padding_mode=padding_mode)

    def forward(self, u: torch.Tensor, f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.Pi(u), self.R(f)


class Prolongation(nn.Module):
    """Learned prolongation: a stride-2 transposed convolution (kernel 4, as in MgNO), cropped.

    ``u (B, C, *m) -> (B, C, *fine_shape)``, valid when ``m == ceil(fine_shape / 2)``.

    With ``padding_mode="circular"`` the coarse grid is wrapped by one point before the transposed
    convolution, so contributions that cross the periodic boundary are kept (PyTorch's transposed
    convolutions only pad with zeros; the official MgNO code uses those as they are). Other modes
    use the zero-padded transposed convolution.
    """

    def __init__(self, channels: int, ndim: int = 2, *, padding_mode: str = "zeros"):
        super().__init__()
        self.circular = _check_padding_mode(padding_mode) == "circular"
        self.P = conv_transpose_class(ndim)(channels, channels, 4, stride=2, padding=1, bias=False)

    def forward(self, u: torch.Tensor, fine_shape: Sequence[int]) -> torch.Tensor:
        coarse = tuple(u.shape[2:])
        expected = tuple((n + 1) // 2 for n in fine_shape)
        if coarse != expected:
            raise ValueError(f"Prolongation: coarse grid {coarse} does not match fine grid {tuple(fine_shape)} "
                             f"(expected coarse {expected})")
        if not self.circular:
            return crop_to(self.P(u), fine_shape)
        # one wrapped point per side shifts the transposed-convolution output by 2
        u = F.pad(u, [1, 1] * len(coarse), mode="circular")
        index = (slice(None), slice(None)) + tuple(slice(2, 2 + n) for n in fine_shape)
        return self.P(u)[index]


def default_smoothing(levels: int, pre_smooth: int = 1, coarse_smooth: int = 2) -> tuple[int, ...]:
    """Pre-smoothing steps per level: ``pre_smooth`` on every level, ``coarse_smooth`` on the coarsest."""
    if levels < 1:
        raise ValueError(f"levels must be >= 1, got {levels}")
    return (pre_smooth,) * (levels - 1) + (coarse_smooth,)


class MgConv(nn.Module):
    """A learned linear operator ``f -> u`` parameterised as one multigrid V-cycle.

    Parameters
    ----------
    in_channels : int
        Channels of ``f`` (the layer input).
    channels : int
        Channels of ``u`` (the layer output).
    ndim : int
        Spatial axes (1, 2 or 3).
    levels : int
        Number of grids, the finest included (``levels=1``: smoothing only).
    smoothing : sequence of int, optional
        Pre-smoothing steps per level, finest first; default one per level and two on the coarsest
        (:func:`default_smoothing`). The first step on the finest grid is ``u = S(f)``.
    post_smooth : int
        Post-smoothing steps per level on the way up (MgNO's default: 0).
    padding_mode : str
        Boundary handling of the smoothing and restriction convolutions.

    Notes
    -----
    ``f (B, in_channels, *s) -> u (B, channels, *s)``; any grid size works (see module docstring).
    """

    def __init__(self, in_channels: int, channels: int, ndim: int = 2, *, levels: int = 4,
                 smoothing: Sequence[int] | None = None, post_smooth: int = 0, padding_mode: str = "zeros"):
        super().__init__()
        smoothing = tuple(default_smoothing(levels) if smoothing is None else smoothing)
        if len(smoothing) != levels:
            raise ValueError(f"smoothing must give one step count per level ({levels} levels), got {smoothing}")
        if smoothing[0] < 1 or any(s < 0 for s in smoothing) or post_smooth < 0:
            raise ValueError(f"smoothing steps must be >= 0 (>= 1 on the finest level), got {smoothing}, "
                             f"post_smooth={post_smooth}")
        self.levels = levels
        self.smoothing = smoothing
        kw = dict(padding_mode=padding_mode)
        self.pre = nn.ModuleList()
        for level, steps in enumerate(smoothing):
            self.pre.append(nn.ModuleList(
                Smoother(channels, in_channels, ndim, first=(level == 0 and i == 0), **kw) for i in range(steps)
            ))
        self.restrict = nn.ModuleList(Restriction(channels, in_channels, ndim, **kw) for _ in range(levels - 1))
        self.prolong = nn.ModuleList(Prolongation(channels, ndim, **kw) for _ in range(levels - 1))
        self.post = nn.ModuleList(
            nn.ModuleList(Smoother(channels, in_channels, ndim, **kw) for _ in range(post_smooth))
            for _ in range(levels - 1)
        )

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        u: torch.Tensor | None = None
        pairs: list[tuple[torch.Tensor, torch.Tensor]] = []
        for level in range(self.levels):
            if level > 0:
                u, f = self.restrict[level - 1](u, f)
            for smoother in self.pre[level]:
                u = smoother(u, f)
            pairs.append((u, f))
        u = pairs[-1][0]
        for level in range(self.levels - 2, -1, -1):
            u_fine, f_fine = pairs[level]
            u = u_fine + self.prolong[level](u, u_fine.shape[2:])
            for smoother in self.post[level]:
                u = smoother(u, f_fine)
        return u

    def extra_repr(self) -> str:
        return f"levels={self.levels}, smoothing={self.smoothing}"
