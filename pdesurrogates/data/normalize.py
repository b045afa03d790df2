"""Gaussian normalization fitted in one streaming pass.

Statistics are accumulated batch by batch in float64 with the pairwise update of Chan, Golub and
LeVeque ("Algorithms for computing the sample variance", 1983): each batch's count, mean and sum
of squared deviations are merged into the running ones, so a file is never loaded whole and the
result matches the two-pass ``numpy`` mean/std to round-off.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pdesurrogates.errors import UserInputError

_WHICH = {"inputs": 0, "x": 0, "outputs": 1, "y": 1}


class GaussianNormalizer:
    """``encode(u) = (u - mean) / (std + eps)``, per channel or per grid point.

    Parameters
    ----------
    mean, std : torch.Tensor
        Per channel: ``(C, 1, ..., 1)`` with one singleton per axis after the channel (so it
        broadcasts over ``(B, C, *rest)`` and over any resolution); point-wise: ``(C, *rest)``.
    eps : float
        Added to ``std`` so constant channels do not divide by zero.

    Examples
    --------
    >>> u = torch.randn(8, 2, 5, 5, dtype=torch.float64) * 3 + 1
    >>> norm = GaussianNormalizer.fit(u)
    >>> torch.allclose(norm.decode(norm.encode(u)), u)
    True
    >>> state = norm.state_dict()  # plain tensors: torch.save / torch.load(weights_only=True)
    >>> torch.equal(GaussianNormalizer.from_state_dict(state).mean, norm.mean)
    True
    """

    def __init__(self, mean: torch.Tensor, std: torch.Tensor, eps: float = 1e-6) -> None:
        mean, std = torch.as_tensor(mean), torch.as_tensor(std)
        if mean.shape != std.shape or mean.ndim < 1:
            raise UserInputError(f"mean {tuple(mean.shape)} and std {tuple(std.shape)} must have one shape (C, ...)")
        if not torch.isfinite(mean).all() or not torch.isfinite(std).all() or (std < 0).any():
            raise UserInputError("mean and std must be finite and std >= 0")
        self.mean, self.std, self.eps = mean, std, float(eps)

    @property
    def pointwise(self) -> bool:
        return any(s != 1 for s in self.mean.shape[1:])

    @property
    def channels(self) -> int:
        return int(self.mean.shape[0])

    def _stats_for(self, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        rest = self.mean.ndim  # (C, *rest) must match the trailing axes of u
        if u.ndim not in (rest, rest + 1) or u.shape[u.ndim - rest] != self.channels:
            raise UserInputError(
                f"normalizer fitted on samples (C={self.channels}, ...) of rank {rest}; got a tensor "
                f"of shape {tuple(u.shape)} (expected (C, ...) or (B, C, ...))"
            )
        if self.pointwise and tuple(u.shape[-(rest - 1):]) != tuple(self.mean.shape[1:]):
            raise UserInputError(
                f"point-wise normalizer fitted on grid {tuple(self.mean.shape[1:])}, got "
                f"{tuple(u.shape[-(rest - 1):])}; fit a per-channel normalizer for other resolutions"
            )
        mean = self.mean.to(device=u.device, dtype=u.dtype)
        std = self.std.to(device=u.device, dtype=u.dtype)
        return mean, std

    def encode(self, u: torch.Tensor) -> torch.Tensor:
        """Normalize ``u: (B, C, *rest)`` or ``(C, *rest)``."""
        mean, std = self._stats_for(u)
        return (u - mean) / (std + self.eps)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`encode`."""
        mean, std = self._stats_for(z)
        return z * (std + self.eps) + mean

    def to(self, device: Any = None, dtype: torch.dtype | None = None) -> GaussianNormalizer:
        return GaussianNormalizer(self.mean.to(device=device, dtype=dtype),
                                  self.std.to(device=device, dtype=dtype), self.eps)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Plain tensors (loadable with ``torch.load(weights_only=True)``)."""
        return {"mean": self.mean.detach().cpu().clone(), "std": self.std.detach().cpu().clone(),
                "eps": torch.tensor(self.eps, dtype=torch.float64)}

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> GaussianNormalizer:
        missing = {"mean", "std", "eps"} - set(state)
        if missing:
            raise KeyError(f"normalizer state is missing {sorted(missing)}; found {sorted(state)}")
        return cls(state["mean"], state["std"], float(state["eps"]))

    def __repr__(self) -> str:
        kind = "point-wise" if self.pointwise else "per-channel"
        return f"GaussianNormalizer({kind}, channels={self.channels}, shape={tuple(self.mean.shape)})"

    @classmethod
    def fit(
        cls,
        source: Any,
        *,
        which: str | int = "inputs",
        pointwise: bool = False,
        batch_size: int = 64,
        eps: float = 1e-6,
        dtype: torch.dtype = torch.float64,
        **open_options: Any,
    ) -> GaussianNormalizer:
        """Fit mean and std in one streaming pass.

        Parameters
        ----------
        source : path, Dataset, array or tensor
            A file (opened with :func:`pdesurrogates.data.open_dataset`, ``open_options``
            passed on), a dataset whose items are ``(x, y)``, or an array ``(N, C, *rest)``.
        which : {"inputs", "outputs"} or {0, 1}
            Which item of ``(x, y)`` to fit (ignored for an array).
        pointwise : bool
            One mean/std per channel and grid point instead of per channel.
        batch_size : int
            Samples read per step.
        dtype : torch.dtype
            Dtype of the stored statistics (accumulation is float64; :meth:`encode` casts them
            to the dtype of its input).
        """
        acc = _Welford(pointwise)
        for batch in _batches(source, which, batch_size, open_options):
            acc.update(batch)
        mean, std = acc.result()
        return cls(torch.from_numpy(mean).to(dtype), torch.from_numpy(std).to(dtype), eps)


class _Welford:
    """Running count/mean/M2 in float64, merged per batch (Chan et al. 1983)."""

    def __init__(self, pointwise: bool) -> None:
        self.pointwise = pointwise
        self.count = 0
        self.mean: np.ndarray | None = None
        self.m2: np.ndarray | None = None
        self.sample_shape: tuple[int, ...] | None = None

    def update(self, batch: np.ndarray) -> None:
        b = np.asarray(batch, dtype=np.float64)
        if b.ndim < 2:
            raise UserInputError(f"batches must be (B, C, ...), got shape {b.shape}")
        if self.sample_shape is None:
            self.sample_shape = tuple(b.shape[1:])
        elif tuple(b.shape[1:]) != self.sample_shape:
            raise UserInputError(f"sample shape changed from {self.sample_shape} to {tuple(b.shape[1:])}")
        # reduce over batch (and space unless pointwise): view as (B, C, rest) -> axes
        axes = (0,) if self.pointwise else (0,) + tuple(range(2, b.ndim))
        n = b.shape[0] if self.pointwise else b.shape[0] * int(np.prod(b.shape[2:], dtype=np.int64))
        mean = b.mean(axis=axes, keepdims=True)[0]
        m2 = ((b - mean[None]) ** 2).sum(axis=axes, keepdims=True)[0]
        if self.mean is None:
            self.count, self.mean, self.m2 = n, mean, m2
            return
        total = self.count + n
        delta = mean - self.mean
        self.mean = self.mean + delta * (n / total)
        self.m2 = self.m2 + m2 + delta**2 * (self.count * n / total)
        self.count = total

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        if self.mean is None or self.count == 0:
            raise UserInputError("cannot fit a normalizer on zero samples")
        return self.mean, np.sqrt(self.m2 / self.count)


def _batches(source: Any, which: str | int, batch_size: int,
             open_options: dict[str, Any]) -> Iterable[np.ndarray]:
    if isinstance(which, str):
        if which not in _WHICH:
            raise UserInputError(f"which must be one of {sorted(_WHICH)} or 0/1, got {which!r}")
        which = _WHICH[which]
    if isinstance(source, (str, os.PathLike)):
        from pdesurrogates.data.readers import open_dataset

        dataset = open_dataset(Path(source), **open_options)
        try:
            yield from _dataset_batches(dataset, which, batch_size)
        finally:
            dataset.close()
        return
    if isinstance(source, (np.ndarray, torch.Tensor)):
        array = source.detach().cpu().numpy() if isinstance(source, torch.Tensor) else source
        for lo in range(0, array.shape[0], batch_size):
            yield array[lo:lo + batch_size]
        return
    if hasattr(source, "__getitem__") and hasattr(source, "__len__"):
        yield from _dataset_batches(source, which, batch_size)
        return
    raise TypeError(f"cannot fit on {type(source).__name__}: give a path, a dataset or an array")


def _dataset_batches(dataset: Any, which: int, batch_size: int) -> Iterable[np.ndarray]:
    n = len(dataset)
    for lo in range(0, n, batch_size):
        positions: Sequence[int] = range(lo, min(lo + batch_size, n))
        if hasattr(dataset, "__getitems__"):
            items = dataset.__getitems__(list(positions))
        else:
            items = [dataset[i] for i in positions]
        yield np.stack([np.asarray(item[which]) for item in items])
