"""The dataset every reader returns: sources, stride views, batched reads, the fast loader.

A *source* knows how to read samples ``[lo, hi)`` of one file (or of arrays in memory) as numpy
arrays ``x (k, C_in, *spatial)``, ``y (k, C_out, [T,] *spatial)``; one module per file format
builds them (:mod:`~pdesurrogates.data.ours`, :mod:`~pdesurrogates.data.pdebench`,
:mod:`~pdesurrogates.data.fno_mat`, :mod:`~pdesurrogates.data.neuralop_pt`, and
:mod:`~pdesurrogates.data.arrays` for arrays). :func:`make_dataset` checks the stride and the
indices and wraps a source into a :class:`FieldDataset`, whatever the format.
"""

from __future__ import annotations

import numbers
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

from pdesurrogates.data.files import DataFormatError, open_h5, shape_str
from pdesurrogates.errors import UserInputError

# --------------------------------------------------------------------------------------------
# Sources: how to read samples of one file, before striding. ``read(lo, hi)`` returns numpy
# arrays x (k, C_in, *spatial) and y (k, C_out, [T,] *spatial).
# --------------------------------------------------------------------------------------------


class Source:
    """Samples of one file or array pair. ``label`` names it in messages (the path for files)."""

    path: Path | None
    label: str
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

    def release(self) -> None:
        """Drop what the source holds once the dataset has its own copy in memory."""
        self.close()


class ArraySource(Source):
    """Samples held in memory: ``x (N, C_in, *spatial)``, ``y (N, C_out, [T,] *spatial)``."""

    def __init__(self, path: Path | None, x: np.ndarray, y: np.ndarray, spatial_ndim: int,
                 input_key: str, output_key: str, meta: dict[str, Any], label: str | None = None) -> None:
        self.path, self.x, self.y = path, x, y
        self.label = label if label is not None else str(path)
        self.n = x.shape[0]
        self.input_shape, self.output_shape = tuple(x.shape[1:]), tuple(y.shape[1:])
        self.spatial_ndim = spatial_ndim
        self.input_key, self.output_key = input_key, output_key
        self.meta = meta

    def read(self, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
        if self.x is None:
            raise RuntimeError(f"{self.label}: samples were released after loading into memory")
        return self.x[lo:hi], self.y[lo:hi]

    def release(self) -> None:
        self.x = self.y = None  # the dataset's tensors are the samples now (maybe a copy)


class H5Source(Source):
    """An HDF5 file opened lazily, once per process (so DataLoader workers each get their own)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.label = str(path)
        self._file = None
        self._pid = None
        self._datasets: dict[str, Any] = {}

    @property
    def file(self) -> Any:
        if self._file is None or self._pid != os.getpid():
            self._file = open_h5(self.path, "r")
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

    def get(self, key: str) -> Any:
        """The HDF5 object ``key``; a missing key is an error that lists what the file holds."""
        f = self.file
        if key not in f:
            raise DataFormatError(f"{self.path}: missing key {key!r}; found {sorted(f.keys())[:12]}")
        return f[key]


# --------------------------------------------------------------------------------------------
# Helpers the format modules share.
# --------------------------------------------------------------------------------------------


def check_real(label: Any, key: str, dtype: np.dtype, kind: str = "key") -> None:
    """Refuse an array that is not real numbers (complex, compound, strings, objects).

    Casting such an array to float32 would keep only part of it (the real part of a complex
    field) without a word. ``kind`` names what ``key`` is in the message ("key", "argument").
    """
    dtype = np.dtype(dtype)
    if dtype.kind not in "biuf":
        what = {"c": "complex numbers", "V": "a compound/record type (MATLAB stores complex "
                "fields this way)", "O": "Python objects", "U": "strings", "S": "bytes"}.get(
            dtype.kind, "not real numbers")
        raise DataFormatError(
            f"{label}: {kind} {key!r} has dtype {dtype} ({what}); expected real numbers (float, int "
            f"or bool). Split complex fields into real and imaginary channels before storing them"
        )


def to_float32(a: np.ndarray, label: Any, key: str) -> np.ndarray:
    """``a`` as a C-contiguous float32 array, after :func:`check_real`."""
    check_real(label, key, a.dtype)
    return np.ascontiguousarray(a, dtype=np.float32)


def attr_value(value: Any) -> Any:
    """An HDF5 attribute as a plain Python value (str, list, int, float)."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


PAIRS = (("coeff", "sol"), ("a", "u"), ("input", "output"), ("x", "y"))


def pick_pair(path: Path, keys: Sequence[str], input_key: str | None,
              output_key: str | None) -> tuple[str, str]:
    """The input/output keys of a file holding an ``(x, y)`` pair (``.mat``, ``.pt``)."""
    if input_key is not None or output_key is not None:
        if input_key is None or output_key is None:
            raise UserInputError(f"{path}: give both input_key and output_key")
        for k in (input_key, output_key):
            if k not in keys:
                raise DataFormatError(f"{path}: missing key {k!r}; found {sorted(keys)[:12]}")
        return input_key, output_key
    for a, b in PAIRS:
        if a in keys and b in keys:
            return a, b
    raise DataFormatError(
        f"{path}: cannot find an input/output pair: expected one of "
        f"{', '.join(f'{a}/{b}' for a, b in PAIRS)}; found keys {sorted(keys)[:12]} "
        f"(pass input_key= and output_key=)"
    )


def check_pair(path: Path, kx: str, ky: str, xshape: Sequence[int], yshape: Sequence[int]) -> int:
    """Validate ``x`` (N, *sp) and ``y`` (N, [T,] *sp) / (N, *sp, [T]); returns the spatial rank."""
    if len(xshape) < 2:
        raise DataFormatError(f"{path}: key {kx!r} must be (N, *spatial), found {shape_str(xshape)}")
    if len(yshape) not in (len(xshape), len(xshape) + 1) or yshape[0] != xshape[0]:
        raise DataFormatError(
            f"{path}: key {ky!r} must be (N={xshape[0]}, [T,] {', '.join(map(str, xshape[1:]))}), "
            f"found {shape_str(yshape)}"
        )
    return len(xshape) - 1


# --------------------------------------------------------------------------------------------
# Stride and indices, checked the same way for every format.
# --------------------------------------------------------------------------------------------


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_stride(label: Any, stride: Any, spatial: Sequence[int]) -> tuple[int, ...]:
    """One stride per spatial axis; each an int >= 1 that fits its axis (see :func:`open_dataset`)."""
    if _is_int(stride):
        strides = (int(stride),) * len(spatial)
    elif isinstance(stride, (tuple, list)) and all(_is_int(s) for s in stride):
        strides = tuple(int(s) for s in stride)
    else:
        raise UserInputError(
            f"{label}: stride must be an int or a tuple of ints (one per spatial axis), got "
            f"{stride!r} ({type(stride).__name__})"
        )
    if len(strides) != len(spatial):
        raise UserInputError(f"{label}: stride {stride} has {len(strides)} entries for {len(spatial)} spatial dims")
    for s, n in zip(strides, spatial):
        if s < 1:
            raise UserInputError(f"{label}: stride must be >= 1, got {stride}")
        if s > 1 and (n - 1) % s and n % s:
            raise DataFormatError(
                f"{label}: stride {s} does not fit the spatial grid {shape_str(spatial)}: need "
                f"(n - 1) % stride == 0 (node grid with both ends) or n % stride == 0 (periodic) "
                f"for every n; {n} fails"
            )
    return strides


def select_indices(label: Any, indices: Any, n: int) -> np.ndarray:
    """Sample indices as an int64 array in ``[0, n)``: all (``None``), a slice, a range or a list."""
    if indices is None:
        return np.arange(n, dtype=np.int64)
    if isinstance(indices, slice):
        return np.arange(n, dtype=np.int64)[indices]
    idx = np.asarray(list(indices) if isinstance(indices, range) else indices)
    if idx.ndim != 1 or (idx.size and idx.dtype.kind not in "iu"):
        raise UserInputError(f"{label}: indices must be a 1D sequence of ints, got {indices!r}")
    idx = idx.astype(np.int64)
    if idx.size and (idx.min() < 0 or idx.max() >= n):
        raise IndexError(f"{label}: indices must be in [0, {n}), found min {idx.min()}, max {idx.max()}")
    return idx


def strided_shape(shape: Sequence[int], strides: Sequence[int]) -> tuple[int, ...]:
    lead = len(shape) - len(strides)
    return tuple(shape[:lead]) + tuple(-(-n // s) for n, s in zip(shape[lead:], strides))


def make_dataset(source: Source, fmt: str, *, indices: Any = None, stride: Any = 1,
                 in_memory: bool = False, check_finite: bool = True) -> FieldDataset:
    """Check ``stride`` and ``indices`` against ``source`` and wrap it; closes it on error."""
    try:
        spatial = source.input_shape[-source.spatial_ndim:]
        strides = check_stride(source.label, stride, spatial)
        idx = select_indices(source.label, indices, source.n)
        dataset = FieldDataset(source, idx, strides, in_memory, check_finite, fmt)
    except BaseException:
        source.close()
        raise
    if not in_memory:
        source.close()  # reopened lazily by whichever process reads
    return dataset


class FieldDataset(Dataset):
    """Map-style dataset of ``(x, y)`` pairs; build it with :func:`open_dataset` or :func:`from_arrays`.

    Items are float32 tensors ``x: (C_in, *spatial)``, ``y: (C_out, [T,] *spatial)`` (spatial
    sizes after the stride). HDF5 files are opened lazily, once per process, so the dataset can be
    handed to a ``DataLoader`` with ``num_workers > 0``. ``__getitems__`` reads a run of
    consecutive samples in one call (the DataLoader uses it for whole batches).

    Attributes
    ----------
    meta : dict
        ``format``, ``path`` (``None`` for arrays), ``pde``, ``n_samples``, ``input_shape``,
        ``output_shape``, ``spatial_shape``, ``stride``, ``input_key``, ``output_key``,
        ``provenance`` (file attributes), ``grid`` (coordinate arrays as stored, not strided),
        ``grid_kind`` (``"node"``, ``"cell"``, ``"half-open"``, or None when the format does not say).
    """

    def __init__(self, source: Source, indices: np.ndarray, strides: tuple[int, ...],
                 in_memory: bool, check_finite: bool, fmt: str) -> None:
        self._source = source
        self.indices = indices
        self.strides = strides
        self.check_finite = check_finite
        in_shape = strided_shape(source.input_shape, strides)
        out_shape = strided_shape(source.output_shape, strides)
        self.meta = {
            "format": fmt,
            "path": None if source.path is None else str(source.path),
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
            "grid_kind": source.meta.get("grid_kind"),
        }
        self._memory: tuple[torch.Tensor, torch.Tensor] | None = None
        if in_memory:
            x, y = self._read_numpy(np.arange(len(indices)))
            self._memory = (torch.from_numpy(x), torch.from_numpy(y))
            source.release()

    def __len__(self) -> int:
        return len(self.indices)

    def _stride(self, a: np.ndarray) -> np.ndarray:
        if all(s == 1 for s in self.strides):
            return a
        sl = (Ellipsis,) + tuple(slice(None, None, s) for s in self.strides)
        return a[sl]

    def _read_numpy(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Samples at dataset positions ``positions`` as float32 arrays (k, ...), strided."""
        src = self._source
        file_idx = self.indices[positions]
        xs, ys = [], []
        # split into runs of consecutive file indices, each read in one call
        breaks = np.flatnonzero(np.diff(file_idx) != 1) + 1
        for run in np.split(file_idx, breaks):
            if len(run) == 0:
                continue
            lo, hi = int(run[0]), int(run[-1]) + 1
            try:
                x, y = src.read(lo, hi)
            except OSError as exc:
                raise DataFormatError(
                    f"{src.label}: cannot read samples {lo}..{hi - 1} of "
                    f"{src.input_key!r}/{src.output_key!r} (truncated file?): {exc}"
                ) from None
            xs.append(self._stride(x))
            ys.append(self._stride(y))
        x = np.ascontiguousarray(xs[0] if len(xs) == 1 else np.concatenate(xs), dtype=np.float32)
        y = np.ascontiguousarray(ys[0] if len(ys) == 1 else np.concatenate(ys), dtype=np.float32)
        if self.check_finite:
            for key, arr in ((src.input_key, x), (src.output_key, y)):
                if np.isfinite(arr).all():  # one fast pass; locate the sample only on failure
                    continue
                ok = np.isfinite(arr.reshape(arr.shape[0], -1)).all(axis=1)
                bad = int(file_idx[np.flatnonzero(~ok)[0]])
                raise DataFormatError(
                    f"{src.label}: key {key!r}, sample {bad} contains NaN or Inf "
                    f"(expected finite values)"
                )
        return x, y

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        i = int(i)
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} samples of {self._source.label}")
        i %= len(self)
        if self._memory is not None:
            return self._memory[0][i], self._memory[1][i]
        x, y = self._read_numpy(np.array([i]))
        return torch.from_numpy(x[0]), torch.from_numpy(y[0])

    def __getitems__(self, positions: Sequence[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        if self._memory is not None:
            return [(self._memory[0][int(i)], self._memory[1][int(i)]) for i in positions]
        pos = np.asarray(positions, dtype=np.int64)
        if pos.size and (pos.min() < -len(self) or pos.max() >= len(self)):
            raise IndexError(f"positions out of range for {len(self)} samples of {self._source.label}")
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
        where = m["path"] if m["path"] is not None else self._source.label
        return (f"FieldDataset({where!r}, format={m['format']!r}, n={m['n_samples']}, "
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
        From :func:`open_dataset` or :func:`from_arrays`.
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
    if not _is_int(batch_size) or batch_size < 1:
        raise UserInputError(f"batch_size must be an int >= 1, got {batch_size!r}")
    sampler = RandomSampler(dataset, generator=generator) if shuffle else SequentialSampler(dataset)
    return DataLoader(_Batches(dataset), batch_size=None,
                      sampler=BatchSampler(sampler, batch_size, drop_last),
                      num_workers=num_workers, generator=generator, **loader_options)
