"""Reader of PDEBench HDF5 files (Takamoto et al., "PDEBench", NeurIPS 2022 Datasets and Benchmarks).

Three layouts (format name ``"pdebench"``):

- ``tensor`` ``(N, T, *spatial)`` with ``x-coordinate``/``t-coordinate`` (1D files): ``x`` is the
  first ``initial_step`` time steps as channels, ``y`` the rest ``(1, T - initial_step, *spatial)``;
  CFD files hold ``density``, ``pressure``, ``Vx`` [, ``Vy``, ``Vz``] instead of ``tensor``: the
  fields are channels, ``x`` ``(initial_step * C, *spatial)`` step-major;
- Darcy ``nu`` ``(N, X, Y)`` with ``tensor`` ``(N, 1, X, Y)``: ``x = nu`` and ``y = tensor``
  (the singleton axis is the channel);
- groups ``0000/data`` ``(T, *spatial, C)`` with ``0000/grid/{x,y,t}``: ``x`` is the first
  ``initial_step`` steps ``(initial_step * C, *spatial)``, ``y`` the rest
  ``(C, T - initial_step, *spatial)``.

Option: ``initial_step`` (default 1).
"""

from __future__ import annotations

import numbers
from pathlib import Path
from typing import Any

import numpy as np

from pdesurrogates.data.dataset import H5Source, attr_value, check_real
from pdesurrogates.data.files import DataFormatError, open_h5, shape_str

OPTIONS = ("initial_step",)
CFD_FIELDS = ("density", "pressure", "Vx", "Vy", "Vz")


def sample_groups(f: Any) -> list[str]:
    """Names of the per-sample groups ``0000``, ``0001``, ... that hold ``data``."""
    import h5py

    return sorted(k for k in f if k.isdigit() and isinstance(f[k], h5py.Group) and "data" in f[k])


def detect(f: Any) -> bool:
    """Whether the open HDF5 file ``f`` has one of PDEBench's layouts."""
    return "tensor" in f or ("density" in f and "Vx" in f) or bool(sample_groups(f))


def _check_initial_step(path: Path, key: str, initial_step: Any, steps: int) -> None:
    if not isinstance(initial_step, numbers.Integral) or isinstance(initial_step, bool) \
            or not 1 <= initial_step < steps:
        raise DataFormatError(
            f"{path}: initial_step must be an int in [1, {steps - 1}] for {key!r} with T={steps}, "
            f"got {initial_step!r}"
        )


class TensorSource(H5Source):
    """Time series ``tensor`` (N, T, *sp) or CFD fields ``density``, ``pressure``, ``Vx``, ...
    (each (N, T, *sp), stacked as channels); or Darcy ``nu`` (N, *sp) + ``tensor`` (N, 1, *sp)."""

    def __init__(self, path: Path, initial_step: int = 1) -> None:
        super().__init__(path)
        f = self.file
        self.darcy = "nu" in f
        coords = {}
        if self.darcy:
            tensor = self.get("tensor")
            nu = f["nu"]
            if nu.ndim < 2 or tensor.ndim != nu.ndim + 1 or tensor.shape[0] != nu.shape[0] \
                    or tensor.shape[2:] != nu.shape[1:]:
                raise DataFormatError(
                    f"{path}: PDEBench Darcy expects 'nu' (N, *spatial) and 'tensor' (N, 1, *spatial); "
                    f"found 'nu' {shape_str(nu.shape)}, 'tensor' {shape_str(tensor.shape)}"
                )
            check_real(path, "nu", nu.dtype)
            check_real(path, "tensor", tensor.dtype)
            self.spatial_ndim = nu.ndim - 1
            self.input_shape = (1, *nu.shape[1:])
            self.output_shape = tuple(tensor.shape[1:])
            self.input_key, self.output_key = "nu", "tensor"
            self.fields = ["tensor"]
        else:
            if "tensor" in f:
                self.fields = ["tensor"]
            else:
                self.fields = [k for k in CFD_FIELDS if k in f]
                if not self.fields:
                    self.get("tensor")  # raises: names the missing key and what is there
            tensor = f[self.fields[0]]
            if tensor.ndim < 3:
                raise DataFormatError(
                    f"{path}: key {self.fields[0]!r} must be (N, T, *spatial) with rank >= 3, found "
                    f"{shape_str(tensor.shape)}"
                )
            for key in self.fields[1:]:
                if f[key].shape != tensor.shape:
                    raise DataFormatError(
                        f"{path}: key {key!r} has shape {shape_str(f[key].shape)}, expected "
                        f"{shape_str(tensor.shape)} like {self.fields[0]!r}"
                    )
            for key in self.fields:
                check_real(path, key, f[key].dtype)
            steps, channels = tensor.shape[1], len(self.fields)
            _check_initial_step(path, self.fields[0], initial_step, steps)
            self.spatial_ndim = tensor.ndim - 2
            self.input_shape = (initial_step * channels, *tensor.shape[2:])
            self.output_shape = (channels, steps - initial_step, *tensor.shape[2:])
            self.input_key = self.output_key = ",".join(self.fields)
            names = ("x-coordinate", "y-coordinate", "z-coordinate")
            for d in range(self.spatial_ndim):
                if names[d] in f:
                    c = f[names[d]]
                    if c.ndim != 1 or c.shape[0] != tensor.shape[2 + d]:
                        raise DataFormatError(
                            f"{path}: {names[d]!r} must be ({tensor.shape[2 + d]},) to match "
                            f"{self.fields[0]!r} {shape_str(tensor.shape)}, found {shape_str(c.shape)}"
                        )
                    coords[names[d]] = c[()]
            if "t-coordinate" in f:
                coords["t-coordinate"] = f["t-coordinate"][()]
        self.initial_step = initial_step
        self.n = tensor.shape[0]
        self.meta = {"pde": None, "provenance": {k: attr_value(v) for k, v in f.attrs.items()},
                     "grid": coords}

    def read(self, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
        if self.darcy:
            return self.dataset("nu")[lo:hi][:, None], self.dataset("tensor")[lo:hi]
        d = np.stack([self.dataset(k)[lo:hi] for k in self.fields], axis=1)  # (n, C, T, *sp)
        k = self.initial_step
        x = np.swapaxes(d[:, :, :k], 1, 2).reshape(d.shape[0], *self.input_shape)  # step-major
        return x, d[:, :, k:]


class GroupSource(H5Source):
    """Per-sample groups ``0000/data`` (T, *spatial, C) with ``0000/grid/{x,y,t}``."""

    def __init__(self, path: Path, initial_step: int = 1) -> None:
        super().__init__(path)
        f = self.file
        self.groups = sample_groups(f)
        if not self.groups:
            raise DataFormatError(f"{path}: no sample groups '0000/data' found; keys {sorted(f.keys())[:12]}")
        first = f[self.groups[0]]["data"]
        if first.ndim < 3:
            raise DataFormatError(
                f"{path}: '{self.groups[0]}/data' must be (T, *spatial, C) with rank >= 3, found "
                f"{shape_str(first.shape)}"
            )
        check_real(path, f"{self.groups[0]}/data", first.dtype)
        self.shape = tuple(first.shape)
        steps, channels = self.shape[0], self.shape[-1]
        _check_initial_step(path, f"{self.groups[0]}/data", initial_step, steps)
        self.initial_step = initial_step
        self.spatial_ndim = first.ndim - 2
        spatial = self.shape[1:-1]
        self.input_shape = (initial_step * channels, *spatial)
        self.output_shape = (channels, steps - initial_step, *spatial)
        self.input_key = self.output_key = "NNNN/data"
        self.n = len(self.groups)
        grid = {}
        if "grid" in f[self.groups[0]]:
            grid = {k: v[()] for k, v in f[self.groups[0]]["grid"].items()}
        self.meta = {"pde": None, "provenance": {k: attr_value(v) for k, v in f.attrs.items()}, "grid": grid}

    def read(self, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
        f = self.file
        xs, ys = [], []
        k = self.initial_step
        for name in self.groups[lo:hi]:
            data = f[name]["data"]
            if tuple(data.shape) != self.shape:
                raise DataFormatError(
                    f"{self.path}: '{name}/data' has shape {shape_str(data.shape)}, expected "
                    f"{shape_str(self.shape)} like '{self.groups[0]}/data'"
                )
            check_real(self.path, f"{name}/data", data.dtype)
            d = np.moveaxis(data[()], -1, 0)  # (C, T, *spatial)
            xs.append(np.swapaxes(d[:, :k], 0, 1).reshape(self.input_shape))
            ys.append(d[:, k:])
        return np.stack(xs), np.stack(ys)


def open_source(path: Path, initial_step: int = 1) -> H5Source:
    """The source for whichever PDEBench layout ``path`` has."""
    with open_h5(path, "r") as f:
        grouped = "tensor" not in f and "density" not in f and bool(sample_groups(f))
    return GroupSource(path, initial_step) if grouped else TensorSource(path, initial_step)
