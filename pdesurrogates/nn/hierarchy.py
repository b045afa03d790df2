"""Grid hierarchies and fixed linear transfers for multigrid layers that work on any grid.

A grid axis of ``n`` points covers one interval in one of four ways:

* ``"node"``: points at both ends and ``n - 1`` equal cells between them, spacing ``L / (n - 1)``
  (Dirichlet data sampled at nodes; sizes ``2**k + 1`` nest);
* ``"cell"``: cell centres of ``n`` equal cells, spacing ``L / n`` (sizes ``2**k`` nest);
* ``"half-open"``: ``n`` points ``0, L/n, ..., (n-1) L/n``, the left end included and the right one
  not (neuraloperator's Darcy data and positional embedding; ``2**k`` sizes nest);
* ``"periodic"``: ``n`` points on a circle, spacing ``L / n``.

:func:`grid_hierarchy` builds the grids a multigrid layer works on. They are fixed physical grids:
grid ``s`` has ``coarsest * 2**s`` cells per unit length, whatever the input. The input grid sits
on top as the finest level, at the scale ``S = round(log2(coarsest * h_input))`` of its spacing, and
the canonical grids ``S - 1, ..., 0`` lie below it. A 17-node and an 18-node input thus share the
9- and 5-node grids below them, and a grid twice as fine adds one level on top. An axis with fewer
scales than another stays at its input size on the extra levels (semi-coarsening).

A model trained on a grid that is not a canonical one (85 nodes: scale 4, whose canonical grid has
65) names it as ``anchor``: a finer input then computes that scale on the training grid itself
(141 -> 85 -> 33 -> ...), so the weights act on the grid they were trained on, instead of on the
canonical grid of their scale (141 -> 65 -> 33, a coarser grid than in training).

Transfers are geometric: prolongation is linear interpolation between the point sets (exact on
linear functions; constant beyond the outermost coarse point of a ``cell`` or ``half-open`` axis),
restriction is its transpose with each row divided by its sum, a weighted average that keeps
constants (on nested grids: full weighting, ``P^T / 2**d`` away from the boundary). Neither has
weights, so they mean the same continuous operation on every grid.

>>> levels = grid_hierarchy((33, 16), ("node", "cell"), coarsest=4)
>>> [(lev.shape, lev.scale) for lev in levels]
[((33, 16), 3), ((17, 16), 2), ((9, 8), 1), ((5, 4), 0)]
>>> [lev.shape for lev in grid_hierarchy((18, 85), ("node", "node"))]
[(18, 85), (18, 33), (18, 17), (9, 9), (5, 5)]
>>> [lev.shape for lev in grid_hierarchy((141, 141), ("node", "node"), anchor=(85, 85))]
[(141, 141), (85, 85), (33, 33), (17, 17), (9, 9), (5, 5)]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

AXIS_KINDS = ("node", "cell", "half-open", "periodic")


def _check_kind(kind: str) -> str:
    if kind not in AXIS_KINDS:
        raise ValueError(f"grid axis kind must be one of {AXIS_KINDS}, got {kind!r}")
    return kind


def axis_kinds(shape: Sequence[int], grid_kind: str = "node", periodic: bool = False) -> tuple[str, ...]:
    """The kind of each axis: ``"periodic"`` if ``periodic``, else ``grid_kind`` (``"node"``, the
    convention of :class:`pdesurrogates.physics.grid.Grid`, ``"cell"`` or ``"half-open"``).

    The layout is not in the data: a 64-point axis may be 64 nodes, 64 cell centres (PDEBench) or
    ``i / 64`` (neuraloperator), and a wrong choice shifts grids of different resolutions against
    each other by up to half a cell.

    >>> axis_kinds((65, 64)), axis_kinds((64,), periodic=True), axis_kinds((64, 64), "half-open")
    (('node', 'node'), ('periodic',), ('half-open', 'half-open'))
    """
    if grid_kind not in ("node", "cell", "half-open"):
        raise ValueError(f"grid_kind must be 'node', 'cell' or 'half-open', got {grid_kind!r}")
    return ("periodic" if periodic else grid_kind,) * len(shape)


def axis_spacing(n: int, kind: str, length: float = 1.0) -> float:
    """Spacing of ``n`` points of ``kind`` covering an interval of ``length``."""
    if _check_kind(kind) == "node":
        return length / max(n - 1, 1)
    return length / n


@dataclass(frozen=True)
class GridLevel:
    """One grid of a hierarchy: points, spacing and kind per axis, and its scale ``s`` (the grid
    has about ``coarsest * 2**s`` cells per unit length)."""

    shape: tuple[int, ...]
    spacing: tuple[float, ...]
    kinds: tuple[str, ...]
    scale: int = 0


def grid_scale(spacing: float, coarsest: int) -> int:
    """``round(log2(coarsest * spacing))``, at least 0: halvings from the coarsest spacing ``1 / coarsest``.

    >>> [grid_scale(1 / (n - 1), 4) for n in (4, 5, 9, 17, 18, 33, 85, 141, 211)]
    [0, 0, 1, 2, 2, 3, 4, 5, 6]
    """
    return max(0, math.floor(math.log2(1.0 / (coarsest * spacing)) + 0.5 + 1e-9))


def _axis_points(cells: int, kind: str) -> int:
    return cells + 1 if kind == "node" else cells


def grid_hierarchy(shape: Sequence[int], kinds: Sequence[str], coarsest: int = 4,
                   spacing: Sequence[float] | None = None,
                   anchor: Sequence[int] | None = None) -> list[GridLevel]:
    """The input grid (first) and the canonical coarser grids below it, down to scale 0.

    Parameters
    ----------
    shape : sequence of int
        Points per axis of the input grid.
    kinds : sequence of str
        ``"node"``, ``"cell"``, ``"half-open"`` or ``"periodic"`` per axis.
    coarsest : int
        Cells per unit length of the coarsest grid (>= 2); grid ``s`` has ``coarsest * 2**s``.
    spacing : sequence of float, optional
        Spacing of the input grid (default: the unit interval per axis). A grid padded beyond the
        domain keeps the domain's spacing by passing it here; its canonical grids then cover the
        padded extent with about the same spacings.
    anchor : sequence of int, optional
        A grid on the unit box (points per axis, same kinds), e.g. the training grid of a model:
        where the input is finer than it on an axis, the level of the anchor's scale takes the
        anchor's spacing on that axis instead of the canonical one. Levels of other scales, and
        inputs not finer than the anchor, are unchanged.
    """
    shape = tuple(int(n) for n in shape)
    kinds = tuple(_check_kind(k) for k in kinds)
    if len(kinds) != len(shape):
        raise ValueError(f"need one axis kind per axis: shape {shape}, kinds {kinds}")
    if any(n < 1 for n in shape):
        raise ValueError(f"grid sizes must be >= 1, got {shape}")
    if isinstance(coarsest, bool) or not isinstance(coarsest, int) or coarsest < 2:
        raise ValueError(f"coarsest must be an int >= 2, got {coarsest!r}")
    if spacing is None:
        spacing = tuple(axis_spacing(n, k) for n, k in zip(shape, kinds))
    spacing = tuple(float(h) for h in spacing)
    extents = [h * (n - 1 if k == "node" else n) for n, h, k in zip(shape, spacing, kinds)]
    scales = [grid_scale(h, coarsest) if n > 1 else 0 for n, h in zip(shape, spacing)]
    anchored: list[tuple[int, float] | None] = [None] * len(shape)  # per axis: (scale, spacing) of the anchor
    if anchor is not None:
        anchor = tuple(int(n) for n in anchor)
        if len(anchor) != len(shape) or any(n < 2 for n in anchor):
            raise ValueError(f"anchor must give >= 2 points per axis for a {len(shape)}-axis grid, got {anchor}")
        for d, (n, kind) in enumerate(zip(anchor, kinds)):
            h = axis_spacing(n, kind)
            anchored[d] = (grid_scale(h, coarsest), h)
    top = max(scales)
    levels = [GridLevel(shape, spacing, kinds, top)]
    for s in range(top - 1, -1, -1):
        level_shape, level_spacing = [], []
        for n, h, kind, extent, axis_scale, anc in zip(shape, spacing, kinds, extents, scales, anchored):
            if s >= axis_scale:
                level_shape.append(n)
                level_spacing.append(h)
            else:
                target = anc[1] if anc is not None and anc[0] == s else 1.0 / (coarsest * 2 ** s)
                cells = max(1, round(extent / target))
                level_shape.append(_axis_points(cells, kind))
                level_spacing.append(extent / cells)
        levels.append(GridLevel(tuple(level_shape), tuple(level_spacing), kinds, s))
    return levels


def _interpolation(n_fine: int, n_coarse: int, kind: str, device, dtype) -> tuple[torch.Tensor, torch.Tensor,
                                                                                   torch.Tensor]:
    """For each fine point: left and right coarse neighbours and the weight of the right one."""
    i = torch.arange(n_fine, device=device, dtype=torch.float64)
    if kind == "node":
        t = i * (n_coarse - 1) / max(n_fine - 1, 1)
        left = t.floor().clamp(0, max(n_coarse - 2, 0))
        w = t - left
        right = (left + 1).clamp(max=n_coarse - 1)
    elif kind in ("cell", "half-open"):
        t = (i + 0.5) * n_coarse / n_fine - 0.5 if kind == "cell" else i * n_coarse / n_fine
        left = t.floor().clamp(0, max(n_coarse - 2, 0))
        w = (t - left).clamp(0.0, 1.0)
        right = (left + 1).clamp(max=n_coarse - 1)
    else:  # periodic
        t = i * n_coarse / n_fine
        left = t.floor()
        w = t - left
        left = left.remainder(n_coarse)
        right = (left + 1).remainder(n_coarse)
    return left.long(), right.long(), w.to(dtype)


class LinearTransfer:
    """Linear interpolation from a coarse grid to a fine one and its row-normalised transpose.

    Parameters
    ----------
    fine, coarse : GridLevel
        Consecutive levels of :func:`grid_hierarchy` (same kinds, each axis equal or coarsened).
    device, dtype :
        Where and in which precision the interpolation weights live.

    Notes
    -----
    ``prolong``: ``(..., *coarse.shape) -> (..., *fine.shape)``; ``restrict``: the reverse. Both are
    differentiable and act on the trailing ``ndim`` axes of any tensor.
    """

    def __init__(self, fine: GridLevel, coarse: GridLevel, device=None, dtype=torch.float32):
        self.fine_shape, self.coarse_shape = fine.shape, coarse.shape
        self.axes = []  # (axis, left, right, weight, inverse row sums of P^T)
        for d, (nf, nc, kind) in enumerate(zip(fine.shape, coarse.shape, fine.kinds)):
            if nf == nc:
                continue
            left, right, w = _interpolation(nf, nc, kind, device, dtype)
            sums = torch.zeros(nc, device=device, dtype=dtype)
            sums = sums.index_add(0, left, 1 - w).index_add(0, right, w)
            self.axes.append((d, left, right, w, 1.0 / sums))

    def _view(self, v: torch.Tensor, axis: int, ndim: int) -> torch.Tensor:
        shape = [1] * ndim
        shape[axis] = -1
        return v.reshape(shape)

    def prolong(self, x: torch.Tensor) -> torch.Tensor:
        """Coarse-grid field ``(..., *coarse_shape)`` -> fine-grid field ``(..., *fine_shape)``."""
        nd = len(self.fine_shape)
        for d, left, right, w, _ in self.axes:
            axis = x.ndim - nd + d
            w = self._view(w, axis, x.ndim)
            x = x.index_select(axis, left) * (1 - w) + x.index_select(axis, right) * w
        return x

    def restrict(self, y: torch.Tensor) -> torch.Tensor:
        """Fine-grid field -> coarse-grid field: ``diag(1 / colsum(P)) P^T y`` (weighted average)."""
        nd = len(self.fine_shape)
        for d, left, right, w, inv_sums in self.axes:
            axis = y.ndim - nd + d
            wv = self._view(w, axis, y.ndim)
            shape = list(y.shape)
            shape[axis] = inv_sums.numel()
            out = y.new_zeros(shape)
            out = out.index_add(axis, left, y * (1 - wv)).index_add(axis, right, y * wv)
            y = out * self._view(inv_sums, axis, y.ndim)
        return y


def refined_shape(shape: Sequence[int], kinds: Sequence[str], factor: int) -> tuple[int, ...]:
    """Points per axis of a grid ``factor`` times finer that contains every point of ``shape``.

    >>> refined_shape((17, 16, 16), ("node", "half-open", "periodic"), 2)
    (33, 32, 32)
    """
    if isinstance(factor, bool) or not isinstance(factor, int) or factor < 1:
        raise ValueError(f"refinement factor must be an int >= 1, got {factor!r}")
    out = []
    for n, kind in zip(shape, kinds):
        if _check_kind(kind) == "cell" and factor > 1:
            raise ValueError("a refined cell-centred grid does not contain the coarse cell centres; refine needs "
                             "node, half-open or periodic axes")
        out.append((n - 1) * factor + 1 if kind == "node" else n * factor)
    return tuple(out)


class GridRefinement:
    """Linear interpolation onto a grid ``factor`` times finer, and back by reading the original points.

    The fine grid contains the input's points (:func:`refined_shape`), so ``back(up(x)) == x``
    exactly; ``up`` is :class:`LinearTransfer`'s prolongation (exact on linear functions; constant
    beyond the last point of a half-open axis).

    >>> r = GridRefinement((3, 4), ("node", "half-open"), 2)
    >>> x = torch.arange(12.0).reshape(1, 3, 4)
    >>> r.up(x).shape, bool((r.back(r.up(x)) == x).all())
    (torch.Size([1, 5, 8]), True)
    """

    def __init__(self, shape: Sequence[int], kinds: Sequence[str], factor: int, device=None, dtype=torch.float32):
        self.shape, self.factor = tuple(shape), factor
        self.fine_shape = refined_shape(shape, kinds, factor)
        kinds = tuple(kinds)
        level = lambda s: GridLevel(s, tuple(axis_spacing(n, k) for n, k in zip(s, kinds)), kinds, 0)
        self.transfer = LinearTransfer(level(self.fine_shape), level(self.shape), device=device, dtype=dtype)

    def up(self, x: torch.Tensor) -> torch.Tensor:
        """``(..., *shape) -> (..., *fine_shape)``."""
        return self.transfer.prolong(x)

    def back(self, u: torch.Tensor) -> torch.Tensor:
        """``(..., *fine_shape) -> (..., *shape)``: the values at the original points."""
        step = slice(None, None, self.factor)
        return u[(..., *([step] * len(self.shape)))]


class Hierarchy:
    """The grids of :func:`grid_hierarchy` with the :class:`LinearTransfer` between consecutive ones.

    Built once per input shape and shared by every multigrid layer of a model.

    >>> H = Hierarchy((16, 16), ("cell", "cell"), coarsest=4)
    >>> [lev.shape for lev in H.levels], H.transfers[0].restrict(torch.ones(1, 16, 16)).shape
    ([(16, 16), (8, 8), (4, 4)], torch.Size([1, 8, 8]))
    """

    def __init__(self, shape: Sequence[int], kinds: Sequence[str], coarsest: int = 4,
                 spacing: Sequence[float] | None = None, device=None, dtype=torch.float32,
                 anchor: Sequence[int] | None = None):
        self.levels = grid_hierarchy(shape, kinds, coarsest, spacing, anchor)
        self.device, self.dtype = device, dtype
        self.transfers = [LinearTransfer(fine, coarse, device, dtype)
                          for fine, coarse in zip(self.levels[:-1], self.levels[1:])]

        self.device, self.dtype = device, dtype
        self._masks: dict[int, torch.Tensor | None] = {}

    def __len__(self) -> int:
        return len(self.levels)

    def interior_mask(self, k: int) -> torch.Tensor | None:
        """``(1, 1, *shape)`` mask of grid ``k`` that is 0 on the outermost points of every
        non-periodic axis of at least 3 points (``None`` if nothing is masked)."""
        if k not in self._masks:
            level = self.levels[k]
            mask = None
            for d, (n, kind) in enumerate(zip(level.shape, level.kinds)):
                if kind == "periodic" or n < 3:
                    continue
                m = torch.ones(n, device=self.device, dtype=self.dtype)
                m[0] = m[-1] = 0
                shape = [1] * (2 + len(level.shape))
                shape[2 + d] = n
                mask = m.reshape(shape) if mask is None else mask * m.reshape(shape)
            self._masks[k] = mask
        return self._masks[k]
