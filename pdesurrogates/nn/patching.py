"""Multigrid domain decomposition (MG-TFNO's patching) for any number of spatial axes.

Kossaifi, Kovachki, Azizzadenesheli, Anandkumar, "Multi-Grid Tensorized Fourier Neural Operator for
High-Resolution PDEs", TMLR 2023: the grid is cut into ``2**levels`` patches per axis, stacked along
the batch; every patch carries, as extra channels, windows of the same number of points taken from
the whole input subsampled by ``2**L`` (``L = 1..levels``) and centred on the patch, so coarser
channels see a wider context. Windows wrap around periodically, as in neuraloperator's
``MultigridPatching2D`` (whose window placement we reproduce; ``tests/test_models_nn.py`` compares
the two in 2D). Ours works in 1D, 2D and 3D and keeps no state between ``patch`` and ``stitch``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch


class MultigridPatching:
    """Cut ``(B, C, *S)`` into multigrid patches and stitch model outputs back.

    Parameters
    ----------
    levels : int
        ``2**levels`` patches per axis and ``levels`` coarser context grids (0: identity).
    padding_fraction : float
        Each patch window is extended by ``round(padding_fraction * S_k)`` points on both sides of
        axis ``k`` (periodic wrap), and the extension is cropped off the outputs.

    Examples
    --------
    >>> import torch
    >>> mg = MultigridPatching(levels=1, padding_fraction=0.125)
    >>> x = torch.randn(2, 3, 16, 16)
    >>> p = mg.patch(x); p.shape            # 4 patches of 8 + 2*2 points, 3 * (1 + 1) channels
    torch.Size([8, 6, 12, 12])
    >>> torch.equal(mg.stitch(p[:, :3], x.shape[2:]), x)
    True
    """

    def __init__(self, levels: int, padding_fraction: float = 0.0):
        if levels < 0:
            raise ValueError(f"patching levels must be >= 0, got {levels}")
        if not (0 <= padding_fraction < 1):
            raise ValueError(f"padding_fraction must be in [0, 1), got {padding_fraction}")
        self.levels = int(levels)
        self.padding_fraction = float(padding_fraction)

    @property
    def n_patches(self) -> int:
        """Patches per axis."""
        return 2 ** self.levels

    def padding(self, spatial: Sequence[int]) -> tuple[int, ...]:
        """Window extension per axis for an input of spatial shape ``spatial``."""
        return tuple(round(self.padding_fraction * n) for n in spatial)

    def check_shape(self, spatial: Sequence[int]) -> None:
        """Raise unless every spatial length is divisible by ``2**levels`` and at least ``4**levels``."""
        bad = [n for n in spatial if n % self.n_patches]
        if bad:
            raise ValueError(f"multigrid patching with levels={self.levels} needs every spatial size divisible "
                             f"by {self.n_patches}, got {tuple(spatial)}")
        small = [n for n in spatial if n < self.n_patches ** 2]
        if small:
            raise ValueError(f"multigrid patching with levels={self.levels} needs every spatial size >= "
                             f"{self.n_patches ** 2} (patches of at least {self.n_patches} points), got {tuple(spatial)}")

    @staticmethod
    def _windows(x: torch.Tensor, starts: Sequence[torch.Tensor], width: Sequence[int]) -> torch.Tensor:
        """Periodic windows: ``(B, C, *m) -> (B * prod(n_k), C, *width)`` with starts ``(n_k,)`` per axis."""
        channels = x.shape[1]
        ndim = x.ndim - 2
        for k in range(ndim):
            m = x.shape[2 + 2 * k]
            index = (starts[k][:, None] + torch.arange(width[k], device=x.device)[None, :]) % m
            x = x.index_select(2 + 2 * k, index.reshape(-1))
            x = x.unflatten(2 + 2 * k, (len(starts[k]), width[k]))
        # now (B, C, n_0, w_0, n_1, w_1, ...): move patch counts next to the batch
        counts = [2 + 2 * k for k in range(ndim)]
        widths = [3 + 2 * k for k in range(ndim)]
        x = x.permute(0, *counts, 1, *widths)
        return x.reshape(-1, channels, *width)

    def patch(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, *S) -> (B * 2**(levels*d), C * (levels + 1), *(S / 2**levels + 2 p))``.

        Patches of one sample are consecutive along the batch, in C order over the patch grid.
        Channel block ``L`` (``C`` channels each) holds the input subsampled by ``2**L``.
        """
        if self.levels == 0:
            return x
        spatial = tuple(x.shape[2:])
        self.check_shape(spatial)
        n = self.n_patches
        pad = self.padding(spatial)
        size = [s // n for s in spatial]
        width = [p + 2 * q for p, q in zip(size, pad)]
        device = x.device
        blocks = [self._windows(x, [torch.arange(n, device=device) * p - q for p, q in zip(size, pad)], width)]
        for level in range(1, self.levels + 1):
            step = 2 ** level
            sub = x[(slice(None), slice(None)) + (slice(None, None, step),) * len(spatial)]
            starts = []
            for k, (p, q) in enumerate(zip(size, pad)):
                stride = p // step
                shift = math.ceil((p + (n - 1) * stride - sub.shape[2 + k]) / 2) + q
                starts.append(torch.arange(n, device=device) * stride - shift)
            blocks.append(self._windows(sub, starts, width))
        return torch.cat(blocks, dim=1)

    def stitch(self, y: torch.Tensor, spatial: Sequence[int]) -> torch.Tensor:
        """Inverse of the cut: ``(B * 2**(levels*d), C, *(S/2**levels + 2p)) -> (B, C, *S)``.

        ``spatial`` is the spatial shape ``S`` of the input that was patched.
        """
        if self.levels == 0:
            return y
        spatial = tuple(spatial)
        ndim = len(spatial)
        n = self.n_patches
        pad = self.padding(spatial)
        size = [s // n for s in spatial]
        expected = tuple(p + 2 * q for p, q in zip(size, pad))
        if tuple(y.shape[2:]) != expected or y.shape[0] % n ** ndim:
            raise ValueError(f"stitch: expected patches (k * {n ** ndim}, C, *{expected}), got {tuple(y.shape)}")
        y = y[(slice(None), slice(None)) + tuple(slice(q, q + p) for p, q in zip(size, pad))]
        channels = y.shape[1]
        y = y.reshape(-1, *([n] * ndim), channels, *size)
        # (B, n_0, ..., n_{d-1}, C, p_0, ..., p_{d-1}) -> (B, C, n_0, p_0, n_1, p_1, ...)
        order = [0, ndim + 1]
        for k in range(ndim):
            order += [1 + k, ndim + 2 + k]
        return y.permute(*order).reshape(-1, channels, *spatial)
