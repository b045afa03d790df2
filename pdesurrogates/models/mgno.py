"""MgNO: a neural operator whose linear layers are multigrid V-cycles.

He, Liu, Xu, "MgNO: Efficient Parameterization of Linear Operators via Multigrid", ICLR 2024
(official code ``xlliu2017/MgNO``, model ``MgNO_DC`` for Darcy). One layer is

    u <- act(MgConv(u) + Conv1x1(u)),

where ``MgConv`` is a learned V-cycle and the 1x1 convolution's bias is the function-valued bias.
There is no lifting MLP: the first V-cycle reads the input channels directly, and a final bias-free
1x1 convolution gives the output.

Two variants (config field ``variant``):

* ``"consistent"`` (default): the V-cycle :class:`pdesurrogates.nn.multigrid.ConsistentMgConv`,
  whose hierarchy follows the input grid (weights tied to ``levels`` length scales counted from a
  coarsest grid of ``coarsest`` points; finer grids of an input are transfer-only), whose stencils
  scale with the mesh width and whose transfers are fixed linear interpolation, with the coarse grid
  correcting the restricted residual. The same weights describe the same operator on any grid, so a model
  trained on one resolution can be evaluated zero-shot on finer ones.
* ``"legacy"``: the paper's form :class:`pdesurrogates.nn.multigrid.MgConv` (learned strided
  transfers, plain 3x3 convolutions, ``levels`` grids fixed at build time). It is accurate at the
  training resolution but does not transfer to other grids. Checkpoints written before the
  variants existed load as legacy.

Differences of the legacy variant from the official code (generalisations, no default changed):

* any grid size: a stride-2 convolution maps ``n -> ceil(n/2)`` points and the transposed
  convolution's output is cropped back to ``n``, instead of kernel sizes picked by hand per
  resolution (211 -> 106 -> 53 -> ...);
* with ``padding_mode="circular"`` the prolongation wraps around the periodic boundary too (the
  official code's transposed convolutions pad with zeros), so the V-cycle commutes exactly with
  shifts by ``2**(levels-1)`` points (tested);
* 1D and 3D as well as 2D (the same blocks with ``Conv1d``/``Conv3d``).

Consistent only: ``refine`` computes on a grid finer than the input's (the input interpolated
linearly onto it, the output read back at the input's points): on neuraloperator's 16x16 Darcy data
the finest weights then resolve the two-phase interface below the data's mesh width.

Both: optional coordinate channels and domain padding (shared options of all our models; off by
default); no ``normalizer`` inside the model (normalisation lives in the checkpoint, ``Surrogate``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ..nn.hierarchy import (
    GridRefinement,
    Hierarchy,
    axis_kinds,
    axis_spacing,
    grid_hierarchy,
    refined_shape,
)
from ..nn.layers import GridChannels, check_input, conv_class
from ..nn.multigrid import CORRECTIONS, ConsistentMgConv, MgConv, default_smoothing
from ..nn.padding import DomainPadding
from ..nn.stencils import PADDING_MODES
from .registry import (
    MODELS,
    check_choice,
    check_config_name,
    check_fraction,
    check_ndim,
    check_positive_ints,
)

ACTIVATIONS = {"gelu": nn.GELU, "relu": nn.ReLU, "tanh": nn.Tanh, "silu": nn.SiLU}


def levels_for_grid(spatial: Sequence[int], coarsest: int = 4, grid_kind: str = "node",
                    periodic: bool = False, refine: int = 1) -> int:
    """Weight sets (``levels``) the consistent variant uses on an input grid: one per scale from the
    coarsest grid (``coarsest`` cells per unit length) to this one (to the grid ``refine`` times
    finer that the model computes on, see :class:`MgNOConfig`).

    >>> levels_for_grid((16, 16)), levels_for_grid((33, 33)), levels_for_grid((211, 211)), levels_for_grid((421,))
    (3, 4, 7, 8)
    >>> levels_for_grid((16, 16), grid_kind="half-open", refine=2)
    4
    """
    shape = refined_shape(tuple(spatial), axis_kinds(tuple(spatial), grid_kind, periodic), refine)
    return grid_hierarchy(shape, axis_kinds(shape, grid_kind, periodic), coarsest)[0].scale + 1


VARIANTS = ("consistent", "legacy")
GRID_KINDS = ("node", "cell", "half-open")


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
        ``"consistent"``: weight sets, one per scale from the coarsest grid (spacing ``1 / coarsest``)
        up; set it to :func:`levels_for_grid` of the training grid
        (:meth:`fitted_to_grid`). Finer grids of an input only pass data through, so a finer input
        changes nothing the weights act on. ``"legacy"``: grids in each V-cycle, the finest
        included (paper: 5-6 at 211 points).
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
    variant : {"consistent", "legacy"}
        The V-cycle (see the module docstring). Checkpoints saved without this field are legacy.
    coarsest : int
        ``"consistent"``: cells per unit length of the coarsest grid (>= 2); grid ``s`` has
        ``coarsest * 2**s``.
    grid_kind : {"node", "cell", "half-open"}
        ``"consistent"``: how grid points sit on each axis (:mod:`pdesurrogates.nn.hierarchy`):
        ``"node"`` (both ends included, as :class:`pdesurrogates.physics.grid.Grid` and our
        generators; ``2**k + 1`` sizes nest), ``"cell"`` (cell centres, PDEBench) or ``"half-open"``
        (points ``i / n``: neuraloperator's Darcy data). Circular padding makes the grid periodic.
    correction : {"residual", "rhs"}
        ``"consistent"``: the coarse grid corrects the restricted residual ``R(f - A u)``, or receives
        ``R(f)`` (the paper's default).
    train_grid : tuple of int, optional
        ``"consistent"``: the grid the weights were trained on (points per axis; set by
        :meth:`fitted_to_grid` and by the training task). A finer input computes the training
        grid's scale on that grid itself and only passes its finer grids through, so the weights
        act where they were trained even when the training grid is not a canonical one (85 nodes:
        ``141 -> 85 -> 33`` instead of ``141 -> 65 -> 33``; ``anchor`` of
        :func:`pdesurrogates.nn.hierarchy.grid_hierarchy`). ``None`` (checkpoints saved before the
        field): canonical grids below every input.
    refine : int
        ``"consistent"``: compute on a grid ``refine`` times finer than the input's: the input is
        interpolated linearly onto it and the output read back at the input's points
        (:class:`pdesurrogates.nn.hierarchy.GridRefinement`; node, half-open or periodic grids).
        The finest weight set then acts below the input's mesh width, where a coarse input (a
        16x16 two-phase coefficient) leaves the interface position to interpolation. Costs about
        ``refine**ndim`` times the compute, adds one weight set per factor of 2 and no other
        parameters. 1: off.
    """

    name: str = "mgno"
    in_channels: int = 1
    out_channels: int = 1
    ndim: int = 2
    width: int = 24
    n_layers: int = 5
    levels: int = 3
    smoothing: tuple[int, ...] | None = None
    post_smooth: int = 0
    padding_mode: str = "zeros"
    activation: str = "gelu"
    grid_channels: bool = False
    domain_padding: float = 0.0
    variant: str = "consistent"
    coarsest: int = 4
    grid_kind: str = "node"
    correction: str = "residual"
    train_grid: tuple[int, ...] | None = None
    refine: int = 1

    def __post_init__(self):
        check_config_name(self, "mgno")
        check_ndim(self)
        check_positive_ints(self, "in_channels", "out_channels", "width", "n_layers", "levels")
        check_choice(self, "variant", VARIANTS)
        if self.smoothing is not None:
            object.__setattr__(self, "smoothing", tuple(self.smoothing))
            coarsest_ok = self.variant == "legacy" or self.smoothing[-1:] >= (1,)
            if (len(self.smoothing) != self.levels or self.smoothing[0] < 1 or min(self.smoothing) < 0
                    or not coarsest_ok):
                raise ValueError(f"MgNOConfig.smoothing must give {self.levels} step counts (>= 1 on the finest "
                                 f"and the coarsest level), got {self.smoothing}")
        if isinstance(self.post_smooth, bool) or not isinstance(self.post_smooth, int) or self.post_smooth < 0:
            raise ValueError(f"MgNOConfig.post_smooth must be an int >= 0, got {self.post_smooth!r}")
        check_choice(self, "padding_mode", PADDING_MODES)
        check_choice(self, "activation", tuple(ACTIVATIONS))
        check_fraction(self, "domain_padding", upper=1.0)
        if isinstance(self.coarsest, bool) or not isinstance(self.coarsest, int) or self.coarsest < 2:
            raise ValueError(f"MgNOConfig.coarsest must be an int >= 2, got {self.coarsest!r}")
        check_choice(self, "grid_kind", GRID_KINDS)
        check_choice(self, "correction", CORRECTIONS)
        if self.train_grid is not None:
            grid = tuple(self.train_grid)
            if len(grid) != self.ndim or any(isinstance(n, bool) or not isinstance(n, int) or n < 2 for n in grid):
                raise ValueError(f"MgNOConfig.train_grid must give {self.ndim} ints >= 2 (points per axis), "
                                 f"got {self.train_grid!r}")
            object.__setattr__(self, "train_grid", grid)
        if isinstance(self.refine, bool) or not isinstance(self.refine, int) or self.refine < 1:
            raise ValueError(f"MgNOConfig.refine must be an int >= 1, got {self.refine!r}")
        if self.refine > 1 and self.variant == "legacy":
            raise ValueError("MgNOConfig.refine needs the consistent variant (the legacy V-cycle has no grids)")
        if self.refine > 1 and self.grid_kind == "cell" and self.padding_mode != "circular":
            raise ValueError("MgNOConfig.refine needs grid points that a finer grid contains: grid_kind 'node' or "
                             "'half-open' (or circular padding), not 'cell'")

    def fitted_to_grid(self, spatial: Sequence[int]) -> MgNOConfig:
        """This config with ``levels`` and ``train_grid`` set for training on a grid of shape
        ``spatial``: every grid of the consistent hierarchy then works. Legacy: unchanged. A
        ``smoothing`` of another length is an error (set ``levels`` and ``smoothing`` together).

        >>> cfg = MgNOConfig(levels=3).fitted_to_grid((85, 85))
        >>> cfg.levels, cfg.train_grid
        (5, (85, 85))
        """
        if self.variant == "legacy":
            return self
        levels = levels_for_grid(spatial, self.coarsest, self.grid_kind, self.padding_mode == "circular",
                                 self.refine)
        if self.smoothing is not None and len(self.smoothing) != levels:
            raise ValueError(f"MgNOConfig.smoothing gives {len(self.smoothing)} step counts but a grid of shape "
                             f"{tuple(spatial)} has {levels} levels; give levels and smoothing together")
        return dataclasses.replace(self, levels=levels, train_grid=tuple(int(n) for n in spatial))


class MgNO(nn.Module):
    """Multigrid neural operator: ``(B, in_channels, *s) -> (B, out_channels, *s)``.

    Parameters are the fields of :class:`MgNOConfig`.
    """

    def __init__(self, in_channels: int = 1, out_channels: int = 1, ndim: int = 2, width: int = 24,
                 n_layers: int = 5, levels: int = 3, smoothing: tuple[int, ...] | None = None,
                 post_smooth: int = 0, padding_mode: str = "zeros", activation: str = "gelu",
                 grid_channels: bool = False, domain_padding: float = 0.0, variant: str = "consistent",
                 coarsest: int = 4, grid_kind: str = "node", correction: str = "residual",
                 train_grid: tuple[int, ...] | None = None, refine: int = 1):
        super().__init__()
        self.in_channels = in_channels
        self.ndim = ndim
        self.variant = variant
        self.coarsest, self.grid_kind, self.periodic = coarsest, grid_kind, padding_mode == "circular"
        self.train_grid = None if train_grid is None else tuple(train_grid)
        self.refine = refine
        # the grid the training grid's weights act on: the training grid, refined
        self.anchor = None if self.train_grid is None else refined_shape(
            self.train_grid, axis_kinds(self.train_grid, grid_kind, self.periodic), refine)
        smoothing = default_smoothing(levels) if smoothing is None else tuple(smoothing)
        conv = conv_class(ndim)
        first = in_channels + (ndim if grid_channels else 0)
        self.grid = GridChannels() if grid_channels else None
        self.padding = DomainPadding(domain_padding) if domain_padding > 0 else None
        self.mg = nn.ModuleList()
        self.linear = nn.ModuleList()
        for i in range(n_layers):
            c_in = first if i == 0 else width
            if variant == "legacy":
                mg = MgConv(c_in, width, ndim, levels=levels, smoothing=smoothing, post_smooth=post_smooth,
                            padding_mode=padding_mode)
            else:
                mg = ConsistentMgConv(c_in, width, ndim, levels=levels, smoothing=smoothing,
                                      post_smooth=post_smooth, padding_mode=padding_mode, coarsest=coarsest,
                                      grid_kind=grid_kind, correction=correction)
            self.mg.append(mg)
            self.linear.append(conv(c_in, width, 1))
        self.act = ACTIVATIONS[activation]()
        self.project = conv(width, out_channels, 1, bias=False)

    def refinement(self, x: torch.Tensor) -> GridRefinement | None:
        """The map onto the grid ``refine`` times finer than ``x (B, C, *s)``'s (``None`` if ``refine == 1``)."""
        if self.refine == 1:
            return None
        spatial = tuple(x.shape[2:])
        return GridRefinement(spatial, axis_kinds(spatial, self.grid_kind, self.periodic), self.refine,
                              device=x.device, dtype=x.dtype)

    def hierarchy(self, x: torch.Tensor) -> Hierarchy | None:
        """The consistent variant's grids for ``x (B, C, *s)`` on the grid it computes on (already
        refined, :meth:`refinement`); ``None`` for legacy.

        The grid kinds and spacing are those of the grid on the unit box; domain padding
        extends the grid with the same spacing. ``train_grid`` anchors its scale (see the config).
        """
        if self.variant == "legacy":
            return None
        spatial = tuple(x.shape[2:])
        kinds = axis_kinds(spatial, self.grid_kind, self.periodic)
        spacing = tuple(axis_spacing(n, k) for n, k in zip(spatial, kinds))
        padded = spatial if self.padding is None else tuple(self.padding.pad(x[:1, :1]).shape[2:])
        return Hierarchy(padded, kinds, self.coarsest, spacing, device=x.device, dtype=x.dtype,
                         anchor=self.anchor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: ``(B, in_channels, *s)`` -> ``(B, out_channels, *s)``."""
        check_input(x, ndim=self.ndim, channels=self.in_channels, model="mgno")
        refinement = self.refinement(x)
        if refinement is not None:
            x = refinement.up(x)
        spatial = x.shape[2:]
        hierarchy = self.hierarchy(x)
        if self.grid is not None:
            x = self.grid(x)
        if self.padding is not None:
            x = self.padding.pad(x)
        for mg, linear in zip(self.mg, self.linear):
            v = mg(x) if hierarchy is None else mg(x, hierarchy)
            x = self.act(v + linear(x))
        x = self.project(x)
        if self.padding is not None:
            x = self.padding.unpad(x, spatial)
        return x if refinement is None else refinement.back(x)


# checkpoints written before ``variant`` existed hold the paper's V-cycle
MODELS.register("mgno", MgNOConfig, MgNO, legacy_defaults={"variant": "legacy"})
