"""Evaluation helpers shared by the training loop and ``pdesurrogates evaluate``/``predict``.

A :class:`Predictor` bundles a model with its normalizers and the sample layout it was trained on:
it encodes physical inputs, runs the model and decodes the outputs, reshaping a flattened time
axis back to ``(B, C_out, T, *spatial)``. :func:`evaluate_dataset` computes the mean relative L2
and H1 errors over a dataset; :func:`plot_samples` draws input / truth / prediction / error.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pdesurrogates.errors import UserInputError
from pdesurrogates.models.checkpoint import find_checkpoint
from pdesurrogates.train.support import autocast


@dataclass
class Predictor:
    """``pred = decode(model(encode(x)))`` in physical units.

    Attributes
    ----------
    model : nn.Module
        Maps ``(B, C_in, *spatial)`` to ``(B, C_model, *spatial)``.
    normalizers : dict
        Optional ``"input"`` / ``"output"`` :class:`~pdesurrogates.data.normalize.GaussianNormalizer`.
    output_lead : tuple of int
        Output sample shape before the spatial axes, ``(C_out,)`` or ``(C_out, T)``; the model's
        ``C_model = prod(output_lead)`` channels are reshaped to it.
    ndim : int
        Number of spatial axes.
    """

    model: nn.Module
    normalizers: dict[str, Any] = field(default_factory=dict)
    output_lead: tuple[int, ...] = (1,)
    ndim: int = 2

    def to(self, device: torch.device) -> Predictor:
        self.model.to(device)
        self.normalizers = {k: v.to(device) for k, v in self.normalizers.items()}
        return self

    def check_input(self, x: torch.Tensor, where: str = "input") -> None:
        if x.ndim != self.ndim + 2:
            raise UserInputError(f"{where}: expected a batch (B, C_in, *spatial) with {self.ndim} spatial axes, "
                             f"got shape {tuple(x.shape)}")

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Forward pass with gradients (the caller decides ``no_grad``); ``x: (B, C_in, *spatial)``."""
        if "input" in self.normalizers:
            x = self.normalizers["input"].encode(x)
        out = self.model(x)
        spatial = tuple(out.shape[out.ndim - self.ndim:])
        out = out.reshape(out.shape[0], *self.output_lead, *spatial).float()
        if "output" in self.normalizers:
            out = self.normalizers["output"].decode(out)
        return out


def _resolution(shape: Sequence[int], ndim: int) -> str:
    return "x".join(str(s) for s in shape[len(shape) - ndim:])


@torch.no_grad()
def evaluate_dataset(predict: Predictor, dataset: Any, *, batch_size: int = 32,
                     device: torch.device | str = "cpu", periodic: bool = False,
                     precision: str = "none") -> dict[str, Any]:
    """Mean relative L2 and H1 errors of ``predict`` over ``dataset``.

    Parameters
    ----------
    predict : Predictor
    dataset : Dataset of (x, y) or a pair of tensors ``(X, Y)``
    batch_size : int
    device : torch.device
    periodic : bool
        Periodic differences in the H1 norm.
    precision : {"none", "bf16", "fp16"}
        Autocast dtype of the forward pass.

    Returns
    -------
    dict
        ``l2``, ``h1`` (means over samples), ``n`` and ``resolution`` (e.g. ``"33x33"``).
    """
    from pdesurrogates.losses import relative_h1, relative_lp

    device = torch.device(device)
    was_training = predict.model.training
    predict.model.eval()
    l2_sum = h1_sum = 0.0
    n = 0
    shape: tuple[int, ...] = ()
    for x, y in iterate_batches(dataset, batch_size):
        x, y = x.to(device), y.to(device)
        with autocast(device, precision):
            pred = predict(x)
        pred = pred.float()
        l2 = relative_lp(pred, y, reduction="none").mean(dim=1)
        h1 = relative_h1(pred, y, periodic=periodic, spatial_dims=predict.ndim, reduction="none").mean(dim=1)
        l2_sum += float(l2.sum())
        h1_sum += float(h1.sum())
        n += x.shape[0]
        shape = tuple(y.shape)
    predict.model.train(was_training)
    if n == 0:
        raise UserInputError("evaluate_dataset: the dataset is empty")
    return {"l2": l2_sum / n, "h1": h1_sum / n, "n": n, "resolution": _resolution(shape, predict.ndim)}


def iterate_batches(dataset: Any, batch_size: int):
    """Yield ``(x, y)`` batches in order from a dataset or a pair of tensors."""
    if isinstance(dataset, (tuple, list)) and len(dataset) == 2 and isinstance(dataset[0], torch.Tensor):
        X, Y = dataset
        for lo in range(0, X.shape[0], batch_size):
            yield X[lo:lo + batch_size], Y[lo:lo + batch_size]
        return
    n = len(dataset)
    for lo in range(0, n, batch_size):
        items = (dataset.__getitems__(list(range(lo, min(n, lo + batch_size))))
                 if hasattr(dataset, "__getitems__") else [dataset[i] for i in range(lo, min(n, lo + batch_size))])
        yield torch.stack([a for a, _ in items]), torch.stack([b for _, b in items])


PERIODIC_PDES = ("burgers", "navier-stokes")
"""Problems of :mod:`pdesurrogates.physics.problems` posed on periodic domains."""


def is_periodic(meta: Mapping[str, Any]) -> bool:
    """Whether a dataset's grid is periodic, from the metadata a reader returns (default False).

    Looks for a ``boundary`` entry of the grid or provenance, then at the PDE name
    (:data:`PERIODIC_PDES`).
    """
    if meta.get("pde") in PERIODIC_PDES:
        return True
    for source in (meta.get("grid") or {}, meta.get("provenance") or {}):
        boundary = source.get("boundary") if isinstance(source, Mapping) else None
        if isinstance(boundary, str):
            return boundary.strip('"') == "periodic"
    params = (meta.get("provenance") or {}).get("params")
    if isinstance(params, str):
        return '"periodic"' in params
    if isinstance(params, Mapping):
        return params.get("boundary") == "periodic"
    return False


def plot_samples(x: torch.Tensor, y: torch.Tensor, pred: torch.Tensor, path: str | Path,
                 title: str = "") -> Path:
    """Save a PNG with one row per sample: input, truth, prediction and absolute error.

    Parameters
    ----------
    x : (k, C_in, *spatial), y, pred : (k, C_out, [T,] *spatial)
        First channel (and last time step) of each is drawn; 1D fields as curves, 2D as images,
        3D as the middle slice.
    path : path
        PNG file to write.
    """
    from matplotlib.figure import Figure  # no pyplot: no global backend or figure state

    def field2d(t: torch.Tensor, ndim: int) -> torch.Tensor:
        t = t.detach().float().cpu()
        t = t[0]  # first channel
        while t.ndim > ndim:  # time axis: last step
            t = t[-1]
        if ndim == 3:
            t = t[t.shape[0] // 2]
        return t

    ndim = x.ndim - 2
    k = x.shape[0]
    fig = Figure(figsize=(12, 2.8 * k))
    axes = fig.subplots(k, 4, squeeze=False)
    for i in range(k):
        a, u, p = field2d(x[i], ndim), field2d(y[i], ndim), field2d(pred[i], ndim)
        err = (p - u).abs()
        rel = float(torch.linalg.vector_norm(p - u) / torch.linalg.vector_norm(u).clamp_min(1e-12))
        panels = (("input", a), ("truth", u), ("prediction", p), (f"|error| (rel. L2 {rel:.3f})", err))
        for j, (name, f) in enumerate(panels):
            ax = axes[i][j]
            if f.ndim == 1:
                ax.plot(f.numpy())
                if name == "prediction":
                    ax.plot(u.numpy(), "--", alpha=0.6)
            else:
                vmin = vmax = None
                if name in ("truth", "prediction"):
                    vmin, vmax = float(u.min()), float(u.max())
                im = ax.imshow(f.numpy(), origin="lower", vmin=vmin, vmax=vmax, cmap="viridis")
                fig.colorbar(im, ax=ax, fraction=0.046)
                ax.set_xticks([])
                ax.set_yticks([])
            if i == 0:
                ax.set_title(name)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    return path


def load_predictor(checkpoint: str | Path, device: torch.device | str = "cpu") -> tuple[Predictor, Any]:
    """A :class:`Predictor` for a checkpoint directory (or a run directory: its best checkpoint).

    Returns
    -------
    (Predictor, Checkpoint)
        The checkpoint as read by :func:`pdesurrogates.models.load_checkpoint`.
    """
    from pdesurrogates.models import load_checkpoint

    path = find_checkpoint(checkpoint)
    ckpt = load_checkpoint(path)
    lead = tuple(ckpt.extra.get("output_lead") or (getattr(ckpt.config, "out_channels", 1),))
    ndim = int(getattr(ckpt.config, "ndim", 2))
    predictor = Predictor(ckpt.model, dict(ckpt.normalizers), lead, ndim).to(torch.device(device))
    predictor.model.eval()
    return predictor, ckpt


def stride_for_resolution(spatial_shape: Sequence[int], resolution: int, where: str = "") -> int:
    """The stride that turns a grid of ``spatial_shape`` into ``resolution`` points per side.

    Valid strides keep both ends of a node grid (``(n - 1) % s == 0``) or divide a periodic
    grid (``n % s == 0``); the error lists the resolutions that are available.
    """
    n = int(spatial_shape[0])
    if any(int(m) != n for m in spatial_shape):
        raise UserInputError(f"{where}: --resolution needs a square grid, got {tuple(spatial_shape)}; use --stride")
    options = {}
    for s in range(1, n + 1):
        if s == 1 or (n - 1) % s == 0 or n % s == 0:
            options.setdefault(-(-n // s), s)
    if resolution not in options:
        raise UserInputError(f"{where}: resolution {resolution} is not a subsampling of the {n}-point grid; "
                         f"available: {sorted(options, reverse=True)}")
    return options[resolution]
