"""One reader interface over our HDF5 files and three foreign formats.

:func:`open_dataset` returns a :class:`FieldDataset` (a ``torch.utils.data.Dataset``) whose items
are ``(x, y)`` float32 tensors ``(C_in, *spatial)`` and ``(C_out, [T,] *spatial)``, whatever the
file. Formats (``format=`` overrides detection):

``pdesurrogates``
    Ours (``datasets/README.md``): ``inputs`` ``(N, C_in, *spatial)``, ``outputs``
    ``(N, C_out, [T,] *spatial)``.
``pdebench``
    PDEBench HDF5 (Takamoto et al., "PDEBench", NeurIPS 2022 Datasets and Benchmarks), three layouts:
    ``tensor`` ``(N, T, *spatial)`` with ``x-coordinate``/``t-coordinate`` (1D files): ``x`` is the
    first ``initial_step`` time steps as channels, ``y`` the rest ``(1, T - initial_step, *spatial)``
    (CFD files with ``density``, ``pressure``, ``Vx`` [, ``Vy``, ``Vz``] instead of ``tensor``:
    the fields are channels, ``x`` ``(initial_step * C, *spatial)`` step-major);
    Darcy ``nu`` ``(N, X, Y)`` with ``tensor`` ``(N, 1, X, Y)``: ``x = nu`` and ``y = tensor``
    (the singleton axis is the channel); groups ``0000/data`` ``(T, *spatial, C)`` with
    ``0000/grid/{x,y,t}``: ``x`` is the first ``initial_step`` steps ``(initial_step * C, *spatial)``,
    ``y`` the rest ``(C, T - initial_step, *spatial)``.
``fno-mat``
    MATLAB files of the FNO paper (Li et al., ICLR 2021): pairs ``coeff``/``sol`` (Darcy) or
    ``a``/``u`` (Burgers, Navier-Stokes; a trailing time axis of ``u`` becomes ``T``). v7.3 files
    are HDF5 with MATLAB's column-major order, so h5py sees every axis reversed; they are read
    lazily and transposed back. Older versions go through ``scipy.io.loadmat`` into memory.
``neuralop-pt``
    neuraloperator's ``.pt`` dictionaries ``{"x": (N, *spatial), "y": (N, [T,] *spatial)}``;
    a channel axis is added, bool and float64 become float32. Loaded into memory.

Format options (keyword arguments of :func:`open_dataset`): ``input_key``/``output_key``
(fno-mat, neuralop-pt), ``initial_step`` (pdebench, default 1), ``allow_incomplete``
(pdesurrogates: read the first ``n_written`` samples of an unfinished file), ``check_finite``
(default True: NaN/Inf in a sample is an error naming file, key and sample).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    Dataset,
    RandomSampler,
    SequentialSampler,
)

from pdesurrogates.data.hdf5 import SCHEMA_VERSION, DataFormatError, _open_h5

FORMATS = ("pdesurrogates", "pdebench", "fno-mat", "neuralop-pt")
_HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf", ".he5")
_MAT_PAIRS = (("coeff", "sol"), ("a", "u"), ("input", "output"), ("x", "y"))


def detect_format(path: str | os.PathLike) -> str:
    """Name of the format of ``path``, from its extension and content.

    Raises
    ------
    FileNotFoundError
    DataFormatError
        Not a supported format; the message lists what was found.
    """
    import h5py

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix in (".pt", ".pth"):
        return "neuralop-pt"
    if suffix == ".mat":
        return "fno-mat"
    if not h5py.is_hdf5(path):
        raise DataFormatError(
            f"{path} is not an HDF5 file (no HDF5 signature found) and its extension {suffix!r} is "
            f"not .pt/.pth/.mat; supported formats: {', '.join(FORMATS)}"
        )
    with _open_h5(path, "r") as f:
        keys = list(f.keys())
        if "schema_version" in f.attrs or ("inputs" in f and "outputs" in f):
            return "pdesurrogates"
        if "tensor" in f or ("density" in f and "Vx" in f) or _sample_groups(f):
            return "pdebench"
        if any(a in f and b in f for a, b in _MAT_PAIRS) or "#refs#" in f:
            return "fno-mat"
    raise DataFormatError(
        f"{path}: HDF5 file of unknown layout: found keys {keys[:12]}; expected 'inputs'/'outputs' "
        f"(ours), 'tensor' or '0000/data' (PDEBench), or 'coeff'/'sol', 'a'/'u' (FNO .mat)"
    )


def _sample_groups(f: Any) -> list[str]:
    import h5py

    return sorted(k for k in f if k.isdigit() and isinstance(f[k], h5py.Group) and "data" in f[k])


def _shape_str(shape: Sequence[int]) -> str:
    return "(" + ", ".join(str(int(s)) for s in shape) + ")"


# --------------------------------------------------------------------------------------------
# Sources: how to read samples of one file, before striding. ``read(lo, hi)`` returns numpy
# arrays x (k, C_in, *spatial) and y (k, C_out, [T,] *spatial).
# --------------------------------------------------------------------------------------------


class _Source:
    path: Path
    n: int
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    spatial_ndim: int
    input_key: str = "inputs"
    output_key: str = "outputs"
    meta: dict[str, Any]

    def read(self, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def close(self) -> None:
        pass


class _ArraySource(_Source):
    """Samples held in memory."""

    def __init__(self, path: Path, x: np.ndarray, y: np.ndarray, spatial_ndim: int,
                 input_key: str, output_key: str, meta: dict[str, Any]) -> None:
        self.path, self.x, self.y = path, x, y
        self.n = x.shape[0]
        self.input_shape, self.output_shape = tuple(x.shape[1:]), tuple(y.shape[1:])
        self.spatial_ndim = spatial_ndim
        self.input_key, self.output_key = input_key, output_key
        self.meta = meta

    def read(self, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
        return self.x[lo:hi], self.y[lo:hi]


class _H5Source(_Source):
    """An HDF5 file opened lazily, once per process (so DataLoader workers each get their own)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = None
        self._pid = None
        self._datasets: dict[str, Any] = {}

    @property
    def file(self) -> Any:
        if self._file is None or self._pid != os.getpid():
            self._file = _open_h5(self.path, "r")
            self._pid = os.getpid()
            self._datasets = {}
        return self._file

    def dataset(self, key: str) -> Any:
        """The h5py dataset ``key`` of this process's handle (cached: lookups cost per batch)."""
        f = self.file
        ds = self._datasets.get(key)
        if ds is None:
            ds = self._datasets[key] = f[key]
        return ds

    def close(self) -> None:
        if self._file is not None and self._pid == os.getpid() and self._file.id.valid:
            self._file.close()
        self._file = None
        self._datasets = {}

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_file"], state["_pid"], state["_datasets"] = None, None, {}
        return state

    def _get(self, key: str) -> Any:
        f = self.file
        if key not in f:
            raise DataFormatError(f"{self.path}: missing key {key!r}; found {sorted(f.keys())[:12]}")
        return f[key]


class _OursSource(_H5Source):
    def __init__(self, path: Path, allow_incomplete: bool = False) -> None:
        super().__init__(path)
        f = self.file
        for key in ("inputs", "outputs"):
            self._get(key)
        x, y = f["inputs"], f["outputs"]
        if x.ndim < 3:
            raise DataFormatError(
                f"{path}: dataset 'inputs' must have rank >= 3 (N, C_in, *spatial), found shape "
                f"{_shape_str(x.shape)}"
            )
        if y.ndim not in (x.ndim, x.ndim + 1) or y.shape[0] != x.shape[0]:
            raise DataFormatError(
                f"{path}: dataset 'outputs' must be (N={x.shape[0]}, C_out, [T,] "
                f"{', '.join(map(str, x.shape[2:]))}), found {_shape_str(y.shape)}"
            )
        self.spatial_ndim = x.ndim - 2
        if tuple(y.shape[-self.spatial_ndim:]) != tuple(x.shape[2:]):
            raise DataFormatError(
                f"{path}: spatial shape of 'outputs' {_shape_str(y.shape[-self.spatial_ndim:])} "
                f"differs from 'inputs' {_shape_str(x.shape[2:])}"
            )
        attrs = {k: _attr(v) for k, v in f.attrs.items()}
        version = attrs.get("schema_version", SCHEMA_VERSION)
        if not isinstance(version, int) or version > SCHEMA_VERSION:
            raise DataFormatError(
                f"{path}: schema_version {version!r} is newer than this reader's "
                f"{SCHEMA_VERSION}; update pdesurrogates"
            )
        for key, ds in (("input_shape", x), ("output_shape", y)):
            if key in attrs and list(attrs[key]) != list(ds.shape[1:]):
                raise DataFormatError(
                    f"{path}: attribute {key} says {attrs[key]} but dataset has sample shape "
                    f"{_shape_str(ds.shape[1:])}"
                )
        n = x.shape[0]
        complete = bool(attrs.get("complete", True))
        if not complete:
            n_written = int(attrs.get("n_written", 0))
            if not allow_incomplete:
                raise DataFormatError(
                    f"{path}: file is incomplete ({n_written} of {n} samples written); finish it "
                    f"with `pdesurrogates generate ... --resume`, or pass allow_incomplete=True to "
                    f"read the first {n_written}"
                )
            n = n_written
        if "params" in attrs and isinstance(attrs["params"], str):
            try:
                attrs["params"] = json.loads(attrs["params"])
            except json.JSONDecodeError:
                raise DataFormatError(f"{path}: attribute 'params' is not valid JSON") from None
        self.n = n
        self.input_shape, self.output_shape = tuple(x.shape[1:]), tuple(y.shape[1:])
        self.meta = {"pde": attrs.get("pde"), "provenance": attrs,
                     "grid": {k: v[()] for k, v in f["grid"].items()} if "grid" in f else {}}

    def read(self, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
        return self.dataset("inputs")[lo:hi], self.dataset("outputs")[lo:hi]


_CFD_FIELDS = ("density", "pressure", "Vx", "Vy", "Vz")


class _PDEBenchTensorSource(_H5Source):
    """Time series ``tensor`` (N, T, *sp) or CFD fields ``density``, ``pressure``, ``Vx``, ...
    (each (N, T, *sp), stacked as channels); or Darcy ``nu`` (N, *sp) + ``tensor`` (N, 1, *sp)."""

    def __init__(self, path: Path, initial_step: int = 1) -> None:
        super().__init__(path)
        f = self.file
        self.darcy = "nu" in f
        coords = {}
        if self.darcy:
            tensor = self._get("tensor")
            nu = f["nu"]
            if nu.ndim < 2 or tensor.ndim != nu.ndim + 1 or tensor.shape[0] != nu.shape[0] \
                    or tensor.shape[2:] != nu.shape[1:]:
                raise DataFormatError(
                    f"{path}: PDEBench Darcy expects 'nu' (N, *spatial) and 'tensor' (N, 1, *spatial); "
                    f"found 'nu' {_shape_str(nu.shape)}, 'tensor' {_shape_str(tensor.shape)}"
                )
            self.spatial_ndim = nu.ndim - 1
            self.input_shape = (1, *nu.shape[1:])
            self.output_shape = tuple(tensor.shape[1:])
            self.input_key, self.output_key = "nu", "tensor"
            self.fields = ["tensor"]
        else:
            if "tensor" in f:
                self.fields = ["tensor"]
            else:
                self.fields = [k for k in _CFD_FIELDS if k in f]
                if not self.fields:
                    self._get("tensor")  # raises: names the missing key and what is there
            tensor = f[self.fields[0]]
            if tensor.ndim < 3:
                raise DataFormatError(
                    f"{path}: key {self.fields[0]!r} must be (N, T, *spatial) with rank >= 3, found "
                    f"{_shape_str(tensor.shape)}"
                )
            for key in self.fields[1:]:
                if f[key].shape != tensor.shape:
                    raise DataFormatError(
                        f"{path}: key {key!r} has shape {_shape_str(f[key].shape)}, expected "
                        f"{_shape_str(tensor.shape)} like {self.fields[0]!r}"
                    )
            steps, channels = tensor.shape[1], len(self.fields)
            if not 1 <= initial_step < steps:
                raise DataFormatError(
                    f"{path}: initial_step must be in [1, {steps - 1}] for {self.fields[0]!r} with "
                    f"T={steps}, got {initial_step}"
                )
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
                            f"{self.fields[0]!r} {_shape_str(tensor.shape)}, found {_shape_str(c.shape)}"
                        )
                    coords[names[d]] = c[()]
            if "t-coordinate" in f:
                coords["t-coordinate"] = f["t-coordinate"][()]
        self.initial_step = initial_step
        self.n = tensor.shape[0]
        self.meta = {"pde": None, "provenance": {k: _attr(v) for k, v in f.attrs.items()},
                     "grid": coords}

    def read(self, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
        if self.darcy:
            return self.dataset("nu")[lo:hi][:, None], self.dataset("tensor")[lo:hi]
        d = np.stack([self.dataset(k)[lo:hi] for k in self.fields], axis=1)  # (n, C, T, *sp)
        k = self.initial_step
        x = np.swapaxes(d[:, :, :k], 1, 2).reshape(d.shape[0], *self.input_shape)  # step-major
        return x, d[:, :, k:]


class _PDEBenchGroupSource(_H5Source):
    """Per-sample groups ``0000/data`` (T, *spatial, C) with ``0000/grid/{x,y,t}``."""

    def __init__(self, path: Path, initial_step: int = 1) -> None:
        super().__init__(path)
        f = self.file
        self.groups = _sample_groups(f)
        if not self.groups:
            raise DataFormatError(f"{path}: no sample groups '0000/data' found; keys {sorted(f.keys())[:12]}")
        first = f[self.groups[0]]["data"]
        if first.ndim < 3:
            raise DataFormatError(
                f"{path}: '{self.groups[0]}/data' must be (T, *spatial, C) with rank >= 3, found "
                f"{_shape_str(first.shape)}"
            )
        self.shape = tuple(first.shape)
        steps, channels = self.shape[0], self.shape[-1]
        if not 1 <= initial_step < steps:
            raise DataFormatError(
                f"{path}: initial_step must be in [1, {steps - 1}] for '{self.groups[0]}/data' with "
                f"T={steps}, got {initial_step}"
            )
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
        self.meta = {"pde": None, "provenance": {k: _attr(v) for k, v in f.attrs.items()}, "grid": grid}

    def read(self, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
        f = self.file
        xs, ys = [], []
        k = self.initial_step
        for name in self.groups[lo:hi]:
            data = f[name]["data"]
            if tuple(data.shape) != self.shape:
                raise DataFormatError(
                    f"{self.path}: '{name}/data' has shape {_shape_str(data.shape)}, expected "
                    f"{_shape_str(self.shape)} like '{self.groups[0]}/data'"
                )
            d = np.moveaxis(data[()], -1, 0)  # (C, T, *spatial)
            xs.append(np.swapaxes(d[:, :k], 0, 1).reshape(self.input_shape))
            ys.append(d[:, k:])
        return np.stack(xs), np.stack(ys)


def _mat_keys(path: Path, keys: Sequence[str], input_key: str | None,
              output_key: str | None) -> tuple[str, str]:
    if input_key is not None or output_key is not None:
        if input_key is None or output_key is None:
            raise ValueError(f"{path}: give both input_key and output_key")
        for k in (input_key, output_key):
            if k not in keys:
                raise DataFormatError(f"{path}: missing key {k!r}; found {sorted(keys)[:12]}")
        return input_key, output_key
    for a, b in _MAT_PAIRS:
        if a in keys and b in keys:
            return a, b
    raise DataFormatError(
        f"{path}: cannot find an input/output pair: expected one of "
        f"{', '.join(f'{a}/{b}' for a, b in _MAT_PAIRS)}; found keys {sorted(keys)[:12]} "
        f"(pass input_key= and output_key=)"
    )


def _check_pair(path: Path, kx: str, ky: str, xshape: Sequence[int], yshape: Sequence[int]) -> int:
    """Validate ``x`` (N, *sp) and ``y`` (N, [T,] *sp) / (N, *sp, [T]); returns the spatial rank."""
    if len(xshape) < 2:
        raise DataFormatError(f"{path}: key {kx!r} must be (N, *spatial), found {_shape_str(xshape)}")
    if len(yshape) not in (len(xshape), len(xshape) + 1) or yshape[0] != xshape[0]:
        raise DataFormatError(
            f"{path}: key {ky!r} must be (N={xshape[0]}, [T,] {', '.join(map(str, xshape[1:]))}), "
            f"found {_shape_str(yshape)}"
        )
    return len(xshape) - 1


class _MatV73Source(_H5Source):
    """MATLAB v7.3 (HDF5): h5py shapes are the MATLAB shapes reversed."""

    def __init__(self, path: Path, input_key: str | None = None, output_key: str | None = None) -> None:
        super().__init__(path)
        f = self.file
        keys = [k for k in f if not k.startswith("#")]
        self.input_key, self.output_key = _mat_keys(path, keys, input_key, output_key)
        xs = tuple(reversed(f[self.input_key].shape))
        ys = tuple(reversed(f[self.output_key].shape))
        self.spatial_ndim = _check_pair(path, self.input_key, self.output_key, xs, ys)
        self.time = len(ys) == len(xs) + 1
        if self.time and tuple(ys[1:-1]) != tuple(xs[1:]):
            raise DataFormatError(
                f"{path}: {self.output_key!r} (MATLAB order) {_shape_str(ys)} must be "
                f"(N, *spatial, T) with spatial {_shape_str(xs[1:])}"
            )
        self.n = xs[0]
        self.input_shape = (1, *xs[1:])
        self.output_shape = (1, ys[-1], *ys[1:-1]) if self.time else (1, *ys[1:])
        self.meta = {"pde": None, "provenance": {}, "grid": {}}

    def read(self, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
        x = np.asarray(self.dataset(self.input_key)[..., lo:hi]).transpose()
        y = np.asarray(self.dataset(self.output_key)[..., lo:hi]).transpose()
        return x[:, None], _time_first(y, self.time)[:, None]


def _time_first(y: np.ndarray, time: bool) -> np.ndarray:
    """(k, *sp, T) -> (k, T, *sp) when there is a trailing time axis."""
    return np.moveaxis(y, -1, 1) if time else y


def _load_mat_old(path: Path, input_key: str | None = None, output_key: str | None = None) -> _ArraySource:
    import scipy.io

    try:
        data = scipy.io.loadmat(path)
    except (ValueError, OSError, TypeError) as exc:
        raise DataFormatError(f"{path}: cannot read as a MATLAB file: {exc}") from None
    keys = [k for k in data if not k.startswith("__")]
    kx, ky = _mat_keys(path, keys, input_key, output_key)
    x, y = np.asarray(data[kx]), np.asarray(data[ky])
    spatial_ndim = _check_pair(path, kx, ky, x.shape, y.shape)
    time = y.ndim == x.ndim + 1
    y = _time_first(y, time)
    return _ArraySource(path, _to_float(x, path, kx)[:, None], _to_float(y, path, ky)[:, None],
                        spatial_ndim, kx, ky, {"pde": None, "provenance": {}, "grid": {}})


def _load_pt(path: Path, input_key: str | None = None, output_key: str | None = None) -> _ArraySource:
    import pickle

    import torch

    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, EOFError, OSError) as exc:
        raise DataFormatError(f"{path}: cannot read as a torch .pt file: {exc}") from None
    if not isinstance(data, dict):
        raise DataFormatError(f"{path}: expected a dict of tensors, found {type(data).__name__}")
    kx, ky = _mat_keys(path, list(data), input_key or ("x" if output_key is None else None),
                       output_key or ("y" if input_key is None else None))
    x, y = data[kx], data[ky]
    for k, v in ((kx, x), (ky, y)):
        if not isinstance(v, torch.Tensor):
            raise DataFormatError(f"{path}: key {k!r} must be a tensor, found {type(v).__name__}")
    spatial_ndim = _check_pair(path, kx, ky, tuple(x.shape), tuple(y.shape))
    extra = {k: (v.tolist() if isinstance(v, torch.Tensor) and v.numel() <= 16 else
                 f"{type(v).__name__} {tuple(getattr(v, 'shape', ()))}")
             for k, v in data.items() if k not in (kx, ky)}
    x = _to_float(x.numpy(), path, kx)[:, None]
    y = _to_float(y.numpy(), path, ky)[:, None]  # (N, [T,] *sp): neuralop puts time first already
    return _ArraySource(path, x, y, spatial_ndim, kx, ky,
                        {"pde": None, "provenance": extra, "grid": {}})


def _to_float(a: np.ndarray, path: Path, key: str) -> np.ndarray:
    if a.dtype.kind not in "biuf":
        raise DataFormatError(f"{path}: key {key!r} must be real numbers, found dtype {a.dtype}")
    return np.ascontiguousarray(a, dtype=np.float32)


def _attr(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _make_source(path: Path, fmt: str, options: dict[str, Any]) -> _Source:
    import h5py

    def take(*names: str) -> dict[str, Any]:
        return {n: options.pop(n) for n in names if n in options}

    if fmt == "pdesurrogates":
        source: _Source = _OursSource(path, **take("allow_incomplete"))
    elif fmt == "pdebench":
        opts = take("initial_step")
        with _open_h5(path, "r") as f:
            grouped = "tensor" not in f and "density" not in f and bool(_sample_groups(f))
        source = _PDEBenchGroupSource(path, **opts) if grouped else _PDEBenchTensorSource(path, **opts)
    elif fmt == "fno-mat":
        opts = take("input_key", "output_key")
        source = _MatV73Source(path, **opts) if h5py.is_hdf5(path) else _load_mat_old(path, **opts)
    elif fmt == "neuralop-pt":
        source = _load_pt(path, **take("input_key", "output_key"))
    else:
        raise ValueError(f"unknown format {fmt!r}; valid: {', '.join(FORMATS)}")
    if options:
        source.close()
        raise TypeError(f"unknown option(s) {sorted(options)} for format {fmt!r}")
    return source


# --------------------------------------------------------------------------------------------


def _check_stride(path: Path, stride: int | Sequence[int], spatial: Sequence[int]) -> tuple[int, ...]:
    strides = (int(stride),) * len(spatial) if np.isscalar(stride) else tuple(int(s) for s in stride)
    if len(strides) != len(spatial):
        raise ValueError(f"{path}: stride {stride} has {len(strides)} entries for {len(spatial)} spatial dims")
    for s, n in zip(strides, spatial):
        if s < 1:
            raise ValueError(f"{path}: stride must be >= 1, got {stride}")
        if s > 1 and (n - 1) % s and n % s:
            raise DataFormatError(
                f"{path}: stride {s} does not fit the spatial grid {_shape_str(spatial)}: need "
                f"(n - 1) % stride == 0 (node grid with both ends) or n % stride == 0 (periodic) "
                f"for every n; {n} fails"
            )
    return strides


def _strided_shape(shape: Sequence[int], strides: Sequence[int]) -> tuple[int, ...]:
    lead = len(shape) - len(strides)
    return tuple(shape[:lead]) + tuple(-(-n // s) for n, s in zip(shape[lead:], strides))


class FieldDataset(Dataset):
    """Map-style dataset of ``(x, y)`` pairs; build it with :func:`open_dataset`.

    Items are float32 tensors ``x: (C_in, *spatial)``, ``y: (C_out, [T,] *spatial)`` (spatial
    sizes after the stride). HDF5 files are opened lazily, once per process, so the dataset can be
    handed to a ``DataLoader`` with ``num_workers > 0``. ``__getitems__`` reads a run of
    consecutive samples in one call (the DataLoader uses it for whole batches).

    Attributes
    ----------
    meta : dict
        ``format``, ``path``, ``pde``, ``n_samples``, ``input_shape``, ``output_shape``,
        ``spatial_shape``, ``stride``, ``input_key``, ``output_key``, ``provenance`` (file
        attributes), ``grid`` (coordinate arrays as stored, not strided).
    """

    def __init__(self, source: _Source, indices: np.ndarray, strides: tuple[int, ...],
                 in_memory: bool, check_finite: bool, fmt: str) -> None:
        self._source = source
        self.indices = indices
        self.strides = strides
        self.check_finite = check_finite
        in_shape = _strided_shape(source.input_shape, strides)
        out_shape = _strided_shape(source.output_shape, strides)
        self.meta = {
            "format": fmt,
            "path": str(source.path),
            "pde": source.meta.get("pde"),
            "n_samples": len(indices),
            "input_shape": in_shape,
            "output_shape": out_shape,
            "spatial_shape": in_shape[-source.spatial_ndim:],
            "stride": strides,
            "input_key": source.input_key,
            "output_key": source.output_key,
            "provenance": source.meta.get("provenance", {}),
            "grid": source.meta.get("grid", {}),
        }
        self._memory: tuple[Any, Any] | None = None
        if in_memory:
            x, y = self._read_numpy(np.arange(len(indices)))
            import torch

            self._memory = (torch.from_numpy(x), torch.from_numpy(y))
            source.close()

    def __len__(self) -> int:
        return len(self.indices)

    def _stride(self, a: np.ndarray) -> np.ndarray:
        if all(s == 1 for s in self.strides):
            return a
        sl = (Ellipsis,) + tuple(slice(None, None, s) for s in self.strides)
        return a[sl]

    def _read_numpy(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Samples at dataset positions ``positions`` as float32 arrays (k, ...), strided."""
        file_idx = self.indices[positions]
        xs, ys = [], []
        # split into runs of consecutive file indices, each read in one call
        breaks = np.flatnonzero(np.diff(file_idx) != 1) + 1
        for run in np.split(file_idx, breaks):
            if len(run) == 0:
                continue
            lo, hi = int(run[0]), int(run[-1]) + 1
            try:
                x, y = self._source.read(lo, hi)
            except OSError as exc:
                raise DataFormatError(
                    f"{self._source.path}: cannot read samples {lo}..{hi - 1} of "
                    f"{self._source.input_key!r}/{self._source.output_key!r} (truncated file?): {exc}"
                ) from None
            xs.append(self._stride(x))
            ys.append(self._stride(y))
        x = np.ascontiguousarray(xs[0] if len(xs) == 1 else np.concatenate(xs), dtype=np.float32)
        y = np.ascontiguousarray(ys[0] if len(ys) == 1 else np.concatenate(ys), dtype=np.float32)
        if self.check_finite:
            for key, arr in ((self._source.input_key, x), (self._source.output_key, y)):
                if np.isfinite(arr).all():  # one fast pass; locate the sample only on failure
                    continue
                ok = np.isfinite(arr.reshape(arr.shape[0], -1)).all(axis=1)
                bad = int(file_idx[np.flatnonzero(~ok)[0]])
                raise DataFormatError(
                    f"{self._source.path}: key {key!r}, sample {bad} contains NaN or Inf "
                    f"(expected finite values)"
                )
        return x, y

    def __getitem__(self, i: int) -> tuple[Any, Any]:
        import torch

        i = int(i)
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} samples of {self._source.path}")
        i %= len(self)
        if self._memory is not None:
            return self._memory[0][i], self._memory[1][i]
        x, y = self._read_numpy(np.array([i]))
        return torch.from_numpy(x[0]), torch.from_numpy(y[0])

    def __getitems__(self, positions: Sequence[int]) -> list[tuple[Any, Any]]:
        import torch

        if self._memory is not None:
            return [(self._memory[0][int(i)], self._memory[1][int(i)]) for i in positions]
        pos = np.asarray(positions, dtype=np.int64)
        if pos.size and (pos.min() < -len(self) or pos.max() >= len(self)):
            raise IndexError(f"positions out of range for {len(self)} samples of {self._source.path}")
        x, y = self._read_numpy(pos % max(len(self), 1))
        tx, ty = torch.from_numpy(x), torch.from_numpy(y)
        return list(zip(tx.unbind(0), ty.unbind(0)))

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """All samples as float32 numpy arrays ``(N, C_in, *sp)``, ``(N, C_out, [T,] *sp)``."""
        if self._memory is not None:
            return self._memory[0].numpy(), self._memory[1].numpy()
        return self._read_numpy(np.arange(len(self)))

    def close(self) -> None:
        self._source.close()

    def __repr__(self) -> str:
        m = self.meta
        return (f"FieldDataset({m['path']!r}, format={m['format']!r}, n={m['n_samples']}, "
                f"x={m['input_shape']}, y={m['output_shape']}, stride={m['stride']})")


class _Batches(Dataset):
    """View of a :class:`FieldDataset` whose items are whole batches, indexed by position lists."""

    def __init__(self, dataset: FieldDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, positions: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        ds = self.dataset
        if ds._memory is not None:
            pos = torch.as_tensor(list(positions), dtype=torch.long)
            return ds._memory[0][pos], ds._memory[1][pos]
        x, y = ds._read_numpy(np.asarray(positions, dtype=np.int64))
        tx, ty = torch.from_numpy(x), torch.from_numpy(y)
        if torch.utils.data.get_worker_info() is not None:
            tx.share_memory_()  # sent to the main process through shared memory
            ty.share_memory_()
        return tx, ty


def make_loader(
    dataset: FieldDataset,
    batch_size: int,
    *,
    shuffle: bool = False,
    num_workers: int = 0,
    generator: torch.Generator | None = None,
    drop_last: bool = False,
    **loader_options: Any,
) -> DataLoader:
    """A ``DataLoader`` that reads each batch with one call and skips per-sample collation.

    Yields ``(x: (B, C_in, *spatial), y: (B, C_out, [T,] *spatial))`` like
    ``DataLoader(dataset, batch_size, shuffle=...)`` does, in the same order for the same
    ``generator``, but each worker builds whole batches (consecutive samples in one HDF5 read)
    instead of ``batch_size`` items that are then stacked. See
    ``benchmarks/results/cpu/data_loading.md`` for what this gains.

    Parameters
    ----------
    dataset : FieldDataset
        From :func:`open_dataset`.
    batch_size : int
    shuffle : bool
        Random order each epoch, drawn from ``generator``.
    num_workers : int
        Worker processes (each opens the file itself).
    generator : torch.Generator, optional
        Seeded generator for the shuffle.
    drop_last : bool
    **loader_options
        Passed to ``DataLoader`` (``persistent_workers``, ``pin_memory``, ...).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    sampler = RandomSampler(dataset, generator=generator) if shuffle else SequentialSampler(dataset)
    return DataLoader(_Batches(dataset), batch_size=None,
                      sampler=BatchSampler(sampler, batch_size, drop_last),
                      num_workers=num_workers, generator=generator, **loader_options)


def open_dataset(
    path: str | os.PathLike,
    *,
    indices: Sequence[int] | slice | range | None = None,
    stride: int | Sequence[int] = 1,
    in_memory: bool = False,
    format: str | None = None,
    check_finite: bool = True,
    **format_options: Any,
) -> FieldDataset:
    """Open a dataset file of any supported format as a torch ``Dataset``.

    Parameters
    ----------
    path : str or PathLike
    indices : sequence of int, slice or range, optional
        Samples to keep, in this order (default all).
    stride : int or tuple of int
        Keep every ``stride``-th grid point along each spatial axis (not time), starting at the
        first: a coarser view of the same field. Valid when ``(n - 1) % stride == 0`` (node grids
        that keep both ends: 421 -> 61 with stride 7) or ``n % stride == 0`` (periodic grids,
        64 -> 32 with stride 2); both give ``ceil(n / stride)`` points.
    in_memory : bool
        Read the selected samples into memory now (``.pt`` and old ``.mat`` always are).
    format : {"pdesurrogates", "pdebench", "fno-mat", "neuralop-pt"}, optional
        Skip detection.
    check_finite : bool
        Raise on NaN/Inf in a sample.
    **format_options
        ``input_key``, ``output_key``, ``initial_step``, ``allow_incomplete``: see module doc.

    Returns
    -------
    FieldDataset
        Items ``(x: (C_in, *spatial), y: (C_out, [T,] *spatial))`` float32 tensors; ``.meta``.

    Examples
    --------
    >>> ds = open_dataset("../shared/data/neuralop_small/darcy_test_32.pt", stride=2)  # doctest: +SKIP
    >>> ds[0][0].shape                                                                  # doctest: +SKIP
    torch.Size([1, 16, 16])
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    fmt = format or detect_format(path)
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; valid: {', '.join(FORMATS)}")
    source = _make_source(path, fmt, dict(format_options))
    try:
        spatial = source.input_shape[-source.spatial_ndim:]
        strides = _check_stride(path, stride, spatial)
        n = source.n
        if indices is None:
            idx = np.arange(n, dtype=np.int64)
        elif isinstance(indices, slice):
            idx = np.arange(n, dtype=np.int64)[indices]
        else:
            idx = np.asarray(list(indices) if isinstance(indices, range) else indices)
            if idx.ndim != 1 or (idx.size and idx.dtype.kind not in "iu"):
                raise ValueError(f"{path}: indices must be a 1D sequence of ints, got {indices!r}")
            idx = idx.astype(np.int64)
            if idx.size and (idx.min() < 0 or idx.max() >= n):
                raise IndexError(
                    f"{path}: indices must be in [0, {n}), found min {idx.min()}, max {idx.max()}"
                )
        dataset = FieldDataset(source, idx, strides, in_memory, check_finite, fmt)
    except BaseException:
        source.close()
        raise
    if not in_memory:
        source.close()  # reopened lazily by whichever process reads
    return dataset


def inspect_file(path: str | os.PathLike) -> list[tuple[str, tuple[int, ...], str]]:
    """Raw contents of a supported file: ``(key, shape, dtype)`` per array, as stored.

    For MATLAB v7.3 files the shapes are given in MATLAB order (h5py's reversed).
    """
    path = Path(path)
    fmt = detect_format(path)
    rows: list[tuple[str, tuple[int, ...], str]] = []
    if fmt == "neuralop-pt":
        src = _load_pt_raw(path)
        for k, v in src.items():
            rows.append((k, tuple(getattr(v, "shape", ())), str(getattr(v, "dtype", type(v).__name__))))
        return rows
    import h5py

    if fmt == "fno-mat" and not h5py.is_hdf5(path):
        import scipy.io

        try:
            data = scipy.io.loadmat(path)
        except (ValueError, OSError, TypeError) as exc:
            raise DataFormatError(f"{path}: cannot read as a MATLAB file: {exc}") from None
        return [(k, tuple(np.shape(v)), str(np.asarray(v).dtype)) for k, v in data.items()
                if not k.startswith("__")]
    with _open_h5(path, "r") as f:
        def visit(name: str, obj: Any) -> None:
            if isinstance(obj, h5py.Dataset) and not name.startswith("#"):
                shape = tuple(obj.shape)
                if fmt == "fno-mat":
                    shape = tuple(reversed(shape))
                rows.append((name, shape, str(obj.dtype)))

        f.visititems(visit)
    return rows


def _load_pt_raw(path: Path) -> dict[str, Any]:
    import pickle

    import torch

    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, EOFError, OSError) as exc:
        raise DataFormatError(f"{path}: cannot read as a torch .pt file: {exc}") from None
    if not isinstance(data, dict):
        raise DataFormatError(f"{path}: expected a dict of tensors, found {type(data).__name__}")
    return data
