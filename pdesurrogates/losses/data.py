"""Data losses that compare functions sampled on grids.

Both losses are *relative*: the norm of the error divided by the norm of the target, computed per
sample and per channel over the spatial axes, then reduced over batch (and channels). They agree
with neuraloperator's :class:`neuralop.losses.LpLoss` (``reduction="mean"`` over samples) up to its
``eps`` -- the tests check this -- but add per-channel reporting, an explicit channel reduction, and a
choice of finite differences for the H1 seminorm that matches the grid's boundary type (neuralop's
``H1Loss`` assumes periodic grids unless told otherwise).

On a uniform grid the quadrature weight of every node is the same, so it cancels in a relative norm;
the grid spacing only enters the H1 seminorm, where derivatives are scaled by ``1/h``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

REDUCTIONS = ("mean", "sum", "none")


def _check_pair(pred: torch.Tensor, target: torch.Tensor, spatial_dims: int, where: str) -> None:
    if not isinstance(pred, torch.Tensor) or not isinstance(target, torch.Tensor):
        raise TypeError(f"{where}: pred and target must be tensors")
    if pred.shape != target.shape:
        raise ValueError(f"{where}: pred {tuple(pred.shape)} and target {tuple(target.shape)} differ")
    if pred.ndim < spatial_dims + 2:
        raise ValueError(
            f"{where}: need (batch, channel, *spatial) with {spatial_dims} spatial axes, "
            f"got shape {tuple(pred.shape)}"
        )


def _reduce(per: torch.Tensor, reduction: str, per_channel: bool) -> torch.Tensor:
    """``per`` is ``(B, C)``."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"unknown reduction {reduction!r}; valid: {', '.join(REDUCTIONS)}")
    if reduction == "none":
        return per
    if not per_channel:
        per = per.mean(dim=1)
    return per.mean(dim=0) if reduction == "mean" else per.sum(dim=0)


def relative_lp(
    pred: torch.Tensor,
    target: torch.Tensor,
    *,
    p: float = 2.0,
    spatial_dims: int | None = None,
    reduction: str = "mean",
    per_channel: bool = False,
    eps: float = 1e-12,
) -> torch.Tensor:
    """Relative Lp error ``||pred - target||_p / ||target||_p`` over the spatial axes.

    Parameters
    ----------
    pred, target : Tensor ``(B, C, *spatial)``
        Prediction and reference. Axes after the channel axis that are not spatial (a time axis
        ``(B, C, T, *spatial)``) are simply included in the norm.
    p : float
        Order of the norm (``p >= 1``).
    spatial_dims : int, optional
        Number of trailing axes to integrate over; default all axes after the channel axis.
    reduction : ``"mean"`` | ``"sum"`` | ``"none"``
        Over the batch. ``"none"`` returns the ``(B, C)`` table.
    per_channel : bool
        Keep the channel axis: ``(C,)`` for ``"mean"``/``"sum"``. Otherwise channels are averaged.
    eps : float
        Guards a zero target norm.

    Returns
    -------
    Tensor
        Scalar, ``(C,)`` or ``(B, C)``.

    >>> y = torch.ones(2, 1, 8, 8, dtype=torch.float64)
    >>> round(float(relative_lp(1.1 * y, y)), 12)
    0.1
    """
    nd = pred.ndim - 2 if spatial_dims is None else int(spatial_dims)
    _check_pair(pred, target, nd, "relative_lp")
    if p < 1:
        raise ValueError(f"relative_lp: p must be >= 1, got {p}")
    dims = tuple(range(2, pred.ndim))  # a time axis before the spatial ones is in the norm too
    err = torch.linalg.vector_norm(pred - target, ord=p, dim=dims)
    ref = torch.linalg.vector_norm(target, ord=p, dim=dims)
    return _reduce(err / (ref + eps), reduction, per_channel)


def _gradient(u: torch.Tensor, spacing: Sequence[float], periodic: bool) -> list[torch.Tensor]:
    """Finite-difference gradient over the last ``len(spacing)`` axes.

    Periodic: central differences with wrap-around. Otherwise: ``torch.gradient`` (central in the
    interior, one-sided second order at the ends).
    """
    nd = len(spacing)
    out = []
    for d, h in enumerate(spacing):
        axis = u.ndim - nd + d
        if periodic:
            out.append((torch.roll(u, -1, axis) - torch.roll(u, 1, axis)) / (2.0 * h))
        else:
            out.append(torch.gradient(u, spacing=float(h), dim=axis, edge_order=2)[0])
    return out


def relative_h1(
    pred: torch.Tensor,
    target: torch.Tensor,
    *,
    spacing: Sequence[float] | float | None = None,
    periodic: bool = False,
    spatial_dims: int | None = None,
    reduction: str = "mean",
    per_channel: bool = False,
    eps: float = 1e-12,
) -> torch.Tensor:
    """Relative H1 error ``||e||_H1 / ||target||_H1`` with ``||v||_H1^2 = ||v||^2 + ||grad v||^2``.

    Parameters
    ----------
    pred, target : Tensor ``(B, C, *spatial)``
    spacing : float or sequence of float, optional
        Grid spacing per spatial axis; default ``1/(n-1)`` (node-based unit interval) or ``1/n``
        when ``periodic``.
    periodic : bool
        Central differences with wrap-around (periodic grids) instead of ``torch.gradient``.
    spatial_dims, reduction, per_channel, eps
        As in :func:`relative_lp`.

    Returns
    -------
    Tensor
        Scalar, ``(C,)`` or ``(B, C)``.
    """
    nd = pred.ndim - 2 if spatial_dims is None else int(spatial_dims)
    _check_pair(pred, target, nd, "relative_h1")
    shape = pred.shape[pred.ndim - nd:]
    if spacing is None:
        spacing = [1.0 / (n if periodic else n - 1) for n in shape]
    elif isinstance(spacing, (int, float)):
        spacing = [float(spacing)] * nd
    spacing = list(spacing)
    if len(spacing) != nd:
        raise ValueError(f"relative_h1: {len(spacing)} spacings for {nd} spatial axes")
    dims = tuple(range(2, pred.ndim))
    diff = pred - target

    def sq_norm(v: torch.Tensor) -> torch.Tensor:
        total = v.pow(2).sum(dim=dims)
        for g in _gradient(v, spacing, periodic):
            total = total + g.pow(2).sum(dim=dims)
        return total

    per = torch.sqrt(sq_norm(diff)) / (torch.sqrt(sq_norm(target)) + eps)
    return _reduce(per, reduction, per_channel)


class RelativeLpLoss:
    """Callable form of :func:`relative_lp` with fixed options: ``loss(pred, target)``."""

    def __init__(self, p: float = 2.0, reduction: str = "mean", per_channel: bool = False):
        if reduction not in REDUCTIONS:
            raise ValueError(f"unknown reduction {reduction!r}; valid: {', '.join(REDUCTIONS)}")
        self.p, self.reduction, self.per_channel = p, reduction, per_channel

    def __call__(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return relative_lp(pred, target, p=self.p, reduction=self.reduction, per_channel=self.per_channel)

    def __repr__(self) -> str:
        return f"RelativeLpLoss(p={self.p}, reduction={self.reduction!r})"


class RelativeH1Loss:
    """Callable form of :func:`relative_h1`: ``loss(pred, target)``."""

    def __init__(self, periodic: bool = False, reduction: str = "mean", per_channel: bool = False):
        if reduction not in REDUCTIONS:
            raise ValueError(f"unknown reduction {reduction!r}; valid: {', '.join(REDUCTIONS)}")
        self.periodic, self.reduction, self.per_channel = periodic, reduction, per_channel

    def __call__(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return relative_h1(
            pred, target, periodic=self.periodic, reduction=self.reduction, per_channel=self.per_channel
        )

    def __repr__(self) -> str:
        return f"RelativeH1Loss(periodic={self.periodic}, reduction={self.reduction!r})"
