"""Learned 3-point-per-axis stencils whose weights mean the same thing on every mesh width.

A plain 3x3 convolution applied to a grid twice as fine acts on half the length scale: the same
weights describe another operator. The two layers here scale with the mesh width instead:

* :class:`DifferenceOperator` is a learned constant-coefficient differential operator of order
  at most two, ``A u = C_0 u + sum_i C_i d_i u + sum_{i <= j} C_ij d_i d_j u`` (each ``C`` a
  channel-mixing matrix), discretised with centred differences divided by the spacing: the same
  ``C`` approximate the same continuous ``A`` on any grid (second-order accurate, tested);
* :class:`ScaledStencil` is ``h**power * (w * u)``, a full learned stencil scaled by the
  (mean) spacing to a power; with ``power = 2`` it is a smoother for a second-order ``A``, whose
  action on a grid-scale residual is then the same on every grid (damped Jacobi is ``h**2 / (2 d)``).

Spacings are relative (divided by a reference length ``unit``) so that weights are of order one.
All work in 1D, 2D and 3D on ``(batch, channel, *spatial)`` tensors; boundaries are handled by
padding one point per side (``"zeros"``, ``"circular"``, ``"reflect"`` or ``"replicate"``).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

PADDING_MODES = ("zeros", "circular", "reflect", "replicate")
_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


def check_padding_mode(padding_mode: str) -> str:
    if padding_mode not in PADDING_MODES:
        raise ValueError(f"padding_mode must be one of {PADDING_MODES}, got {padding_mode!r}")
    return padding_mode


def conv_same(x: torch.Tensor, kernel: torch.Tensor, padding_mode: str) -> torch.Tensor:
    """Convolve with a ``3**ndim`` kernel, padding every spatial axis by one point per side."""
    ndim = kernel.ndim - 2
    if padding_mode == "zeros":
        return _CONV[ndim](x, kernel, padding=1)
    return _CONV[ndim](F.pad(x, [1, 1] * ndim, mode=padding_mode), kernel)


def difference_basis(ndim: int) -> tuple[torch.Tensor, list[tuple[int, ...]]]:
    """Centred difference stencils of order <= 2 and the axes each differentiates.

    Returns
    -------
    stencils : torch.Tensor
        ``(n_terms, 3, ..., 3)`` float64: identity, ``d_i`` (``[-1/2, 0, 1/2]``), ``d_i d_i``
        (``[1, -2, 1]``), then ``d_i d_j`` for ``i < j`` (products of first differences);
        ``n_terms = 1 + 2 ndim + ndim (ndim - 1) / 2``.
    axes : list of tuple of int
        For each term, the axes it differentiates (``()``, ``(i,)``, ``(i, i)``, ``(i, j)``): divide by
        the product of those spacings.
    """
    if ndim not in (1, 2, 3):
        raise ValueError(f"ndim must be 1, 2 or 3, got {ndim!r}")
    ident = torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64)
    first = torch.tensor([-0.5, 0.0, 0.5], dtype=torch.float64)
    second = torch.tensor([1.0, -2.0, 1.0], dtype=torch.float64)

    def outer(factors):
        out = factors[0]
        for f in factors[1:]:
            out = torch.tensordot(out, f, dims=0)
        return out

    terms, axes = [outer([ident] * ndim)], [()]
    for i in range(ndim):
        terms.append(outer([first if d == i else ident for d in range(ndim)]))
        axes.append((i,))
    for i in range(ndim):
        terms.append(outer([second if d == i else ident for d in range(ndim)]))
        axes.append((i, i))
    for i, j in itertools.combinations(range(ndim), 2):
        terms.append(outer([first if d in (i, j) else ident for d in range(ndim)]))
        axes.append((i, j))
    return torch.stack(terms), axes


class DifferenceOperator(nn.Module):
    """``A u = C_0 u + sum_i C_i d_i u + sum_{i<=j} C_ij d_i d_j u`` on a grid of given spacing.

    Parameters
    ----------
    in_channels, out_channels : int
    ndim : int
        Spatial axes (1, 2 or 3).
    padding_mode : str
        Boundary handling (one padded point per side).
    unit : float
        Reference length: spacings are divided by it, so the weights act on ``h / unit``.

    Notes
    -----
    ``forward(u, spacing)``: ``u (B, in_channels, *s)``, ``spacing`` one float per axis ->
    ``(B, out_channels, *s)``. Parameters ``weight (n_terms, out, in)``, one matrix per term of
    :func:`difference_basis`.
    """

    def __init__(self, in_channels: int, out_channels: int, ndim: int = 2, *, padding_mode: str = "zeros",
                 unit: float = 1.0):
        super().__init__()
        stencils, self.term_axes = difference_basis(ndim)
        self.ndim = ndim
        self.padding_mode = check_padding_mode(padding_mode)
        self.unit = float(unit)
        self.register_buffer("stencils", stencils.float(), persistent=False)
        self.weight = nn.Parameter(torch.empty(len(self.term_axes), out_channels, in_channels))
        # each term's output ~ N(0, 1) per unit input on the reference grid (spacing = unit)
        nn.init.normal_(self.weight, std=1.0 / math.sqrt(in_channels * len(self.term_axes)))

    def kernel(self, spacing: Sequence[float]) -> torch.Tensor:
        """The convolution kernel ``(out, in, 3, ..., 3)`` on a grid of this ``spacing``."""
        rel = [h / self.unit for h in spacing]
        base = self.stencils.to(self.weight.dtype)
        # Python-float scales: no host-to-device copy per call
        stencils = torch.stack([base[t] / math.prod(rel[a] for a in axes) for t, axes in enumerate(self.term_axes)])
        return torch.einsum("toi,t...->oi...", self.weight, stencils)

    def forward(self, u: torch.Tensor, spacing: Sequence[float]) -> torch.Tensor:
        return conv_same(u, self.kernel(spacing), self.padding_mode)

    def extra_repr(self) -> str:
        t, o, i = self.weight.shape
        return f"{i}, {o}, terms={t}, padding_mode={self.padding_mode!r}, unit={self.unit}"


class ScaledStencil(nn.Module):
    """``(h / unit)**power * (w * u)`` with ``w`` a learned ``3**ndim`` stencil (channel-mixing).

    ``h`` is the geometric mean spacing of the grid. Parameters ``weight (out, in, 3, ..., 3)``.
    """

    def __init__(self, in_channels: int, out_channels: int, ndim: int = 2, *, power: float = 2.0,
                 padding_mode: str = "zeros", unit: float = 1.0):
        super().__init__()
        self.ndim = ndim
        self.power = float(power)
        self.padding_mode = check_padding_mode(padding_mode)
        self.unit = float(unit)
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, *([3] * ndim)))
        nn.init.normal_(self.weight, std=1.0 / math.sqrt(in_channels * 3 ** ndim))

    def forward(self, u: torch.Tensor, spacing: Sequence[float]) -> torch.Tensor:
        h = math.prod(s / self.unit for s in spacing) ** (1.0 / len(spacing))
        return conv_same(u, self.weight * h ** self.power, self.padding_mode)

    def extra_repr(self) -> str:
        o, i = self.weight.shape[:2]
        return f"{i}, {o}, power={self.power}, padding_mode={self.padding_mode!r}, unit={self.unit}"
