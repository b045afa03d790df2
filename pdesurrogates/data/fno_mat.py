"""Reader of the FNO paper's MATLAB files (Li et al., ICLR 2021; format name ``"fno-mat"``).

Pairs ``coeff``/``sol`` (Darcy) or ``a``/``u`` (Burgers, Navier-Stokes; a trailing time axis of
``u`` becomes ``T``). v7.3 files are HDF5 with MATLAB's column-major order, so h5py sees every
axis reversed; they are read lazily and transposed back. Older versions go through
``scipy.io.loadmat`` into memory.

Options: ``input_key``, ``output_key``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from pdesurrogates.data.dataset import (
    PAIRS,
    ArraySource,
    H5Source,
    Source,
    check_pair,
    check_real,
    pick_pair,
    to_float32,
)
from pdesurrogates.data.files import DataFormatError, open_h5, shape_str

OPTIONS = ("input_key", "output_key")


def detect(f: Any) -> bool:
    """Whether the open HDF5 file ``f`` looks like a MATLAB v7.3 file with an input/output pair."""
    return any(a in f and b in f for a, b in PAIRS) or "#refs#" in f


def _time_first(y: np.ndarray, time: bool) -> np.ndarray:
    """(k, *sp, T) -> (k, T, *sp) when there is a trailing time axis."""
    return np.moveaxis(y, -1, 1) if time else y


class MatV73Source(H5Source):
    """MATLAB v7.3 (HDF5): h5py shapes are the MATLAB shapes reversed."""

    def __init__(self, path: Path, input_key: str | None = None, output_key: str | None = None) -> None:
        super().__init__(path)
        f = self.file
        keys = [k for k in f if not k.startswith("#")]
        self.input_key, self.output_key = pick_pair(path, keys, input_key, output_key)
        for key in (self.input_key, self.output_key):
            check_real(path, key, f[key].dtype)
        xs = tuple(reversed(f[self.input_key].shape))
        ys = tuple(reversed(f[self.output_key].shape))
        self.spatial_ndim = check_pair(path, self.input_key, self.output_key, xs, ys)
        self.time = len(ys) == len(xs) + 1
        if self.time and tuple(ys[1:-1]) != tuple(xs[1:]):
            raise DataFormatError(
                f"{path}: {self.output_key!r} (MATLAB order) {shape_str(ys)} must be "
                f"(N, *spatial, T) with spatial {shape_str(xs[1:])}"
            )
        self.n = xs[0]
        self.input_shape = (1, *xs[1:])
        self.output_shape = (1, ys[-1], *ys[1:-1]) if self.time else (1, *ys[1:])
        self.meta = {"pde": None, "provenance": {}, "grid": {}}

    def read(self, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
        x = np.asarray(self.dataset(self.input_key)[..., lo:hi]).transpose()
        y = np.asarray(self.dataset(self.output_key)[..., lo:hi]).transpose()
        return x[:, None], _time_first(y, self.time)[:, None]


def _loadmat(path: Path) -> dict[str, Any]:
    import scipy.io

    try:
        data = scipy.io.loadmat(path)
    except (ValueError, OSError, TypeError) as exc:
        if isinstance(exc, PermissionError):
            raise PermissionError(f"{path}: permission denied: this user cannot read the file") from None
        raise DataFormatError(f"{path}: cannot read as a MATLAB file: {exc}") from None
    return {k: v for k, v in data.items() if not k.startswith("__")}


def _load_old(path: Path, input_key: str | None = None, output_key: str | None = None) -> ArraySource:
    data = _loadmat(path)
    kx, ky = pick_pair(path, list(data), input_key, output_key)
    x, y = np.asarray(data[kx]), np.asarray(data[ky])
    spatial_ndim = check_pair(path, kx, ky, x.shape, y.shape)
    time = y.ndim == x.ndim + 1
    y = _time_first(y, time)
    return ArraySource(path, to_float32(x, path, kx)[:, None], to_float32(y, path, ky)[:, None],
                       spatial_ndim, kx, ky, {"pde": None, "provenance": {}, "grid": {}})


def _is_v73(path: Path) -> bool:
    import h5py

    return bool(h5py.is_hdf5(path))


def open_source(path: Path, input_key: str | None = None, output_key: str | None = None) -> Source:
    """A lazy source for v7.3 files, an in-memory one for older versions."""
    if _is_v73(path):
        return MatV73Source(path, input_key, output_key)
    return _load_old(path, input_key, output_key)


def inspect(path: Path) -> list[tuple[str, tuple[int, ...], str]]:
    """``(key, shape in MATLAB order, dtype)`` of every array of the file."""
    if not _is_v73(path):
        return [(k, tuple(np.shape(v)), str(np.asarray(v).dtype)) for k, v in _loadmat(path).items()]
    import h5py

    rows: list[tuple[str, tuple[int, ...], str]] = []
    with open_h5(path, "r") as f:
        def visit(name: str, obj: Any) -> None:
            if isinstance(obj, h5py.Dataset) and not name.startswith("#"):
                rows.append((name, tuple(reversed(obj.shape)), str(obj.dtype)))

        f.visititems(visit)
    return rows
