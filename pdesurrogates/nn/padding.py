"""Padding helpers: pad a grid to a size the network can handle, then crop back.

``DomainPadding`` is the option for non-periodic problems: models whose layers assume periodicity
(FFT, circular convolutions, circular patch context) see a zero-padded domain, and the output is
cropped back to the original grid.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def torch_pad_widths(pads_per_axis: Sequence[tuple[int, int]]) -> list[int]:
    """(before, after) per spatial axis (first axis first) -> the flat list ``F.pad`` expects."""
    flat: list[int] = []
    for before, after in reversed(list(pads_per_axis)):
        flat += [before, after]
    return flat


def pad_to_multiple(x: torch.Tensor, multiple: int, mode: str = "constant") -> tuple[torch.Tensor, tuple[int, ...]]:
    """Pad the end of each spatial axis so its length is a multiple of ``multiple``.

    Parameters
    ----------
    x : torch.Tensor
        ``(B, C, *spatial)``.
    multiple : int
        Required divisor of every spatial length.
    mode : str
        ``"constant"`` (zeros) or ``"replicate"``.

    Returns
    -------
    (torch.Tensor, tuple of int)
        The padded tensor and the original spatial shape (to pass to :func:`crop_to`).
    """
    if mode not in ("constant", "replicate"):
        raise ValueError(f"pad_to_multiple: mode must be 'constant' or 'replicate', got {mode!r}")
    spatial = tuple(x.shape[2:])
    pads = [(0, (-n) % multiple) for n in spatial]
    if any(after for _, after in pads):
        x = F.pad(x, torch_pad_widths(pads), mode=mode)
    return x, spatial


def crop_to(x: torch.Tensor, spatial: Sequence[int]) -> torch.Tensor:
    """Keep the leading ``spatial`` entries of each spatial axis of ``x`` (inverse of padding at the end)."""
    index = (slice(None), slice(None)) + tuple(slice(0, n) for n in spatial)
    return x[index]


class DomainPadding(nn.Module):
    """Zero-pad each spatial axis by a fraction of its length, and crop it off again.

    Parameters
    ----------
    fraction : float
        Padding per axis is ``round(fraction * n)`` points; 0 disables.
    mode : {"one-sided", "symmetric"}
        Pad only at the end of each axis, or at both ends.

    Examples
    --------
    >>> import torch
    >>> pad = DomainPadding(0.25)
    >>> x = torch.ones(1, 1, 8, 8)
    >>> y = pad.pad(x); y.shape
    torch.Size([1, 1, 10, 10])
    >>> torch.equal(pad.unpad(y, x.shape[2:]), x)
    True
    """

    def __init__(self, fraction: float, mode: str = "one-sided"):
        super().__init__()
        if not (fraction >= 0 and math.isfinite(fraction)):
            raise ValueError(f"domain_padding must be a finite fraction >= 0, got {fraction!r}")
        if mode not in ("one-sided", "symmetric"):
            raise ValueError(f"domain padding mode must be 'one-sided' or 'symmetric', got {mode!r}")
        self.fraction = float(fraction)
        self.mode = mode

    def amounts(self, spatial: Sequence[int]) -> list[tuple[int, int]]:
        """(before, after) padding per spatial axis."""
        pads = [round(self.fraction * n) for n in spatial]
        return [(p, p) if self.mode == "symmetric" else (0, p) for p in pads]

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, *s) -> (B, C, *(s + padding))`` with zeros."""
        if self.fraction == 0:
            return x
        return F.pad(x, torch_pad_widths(self.amounts(x.shape[2:])))

    def unpad(self, x: torch.Tensor, spatial: Sequence[int]) -> torch.Tensor:
        """Remove the padding added by :meth:`pad` for an input of spatial shape ``spatial``."""
        if self.fraction == 0:
            return x
        index = (slice(None), slice(None)) + tuple(
            slice(before, before + n) for (before, _), n in zip(self.amounts(spatial), spatial)
        )
        return x[index]

    def extra_repr(self) -> str:
        return f"fraction={self.fraction}, mode={self.mode!r}"
