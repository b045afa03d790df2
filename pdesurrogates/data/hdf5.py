"""Our HDF5 dataset format: writer with flush-then-count resume, and parallel shards.

One file per dataset (schema in ``datasets/README.md``):

- ``inputs``  ``(N, C_in, *spatial)`` and ``outputs`` ``(N, C_out, [T,] *spatial)``, float32 by
  default, chunked one sample per chunk, compressed (``lzf`` by default, see
  ``benchmarks/results/cpu/data_loading.md`` for the measurement behind that choice);
- coordinates under the group ``grid/``;
- file attributes ``schema_version``, ``pde``, ``params`` (JSON), ``seed``, ``pdesurrogates_version``,
  ``created``, ``complete``, ``n_written``, ``n_samples``, ``input_shape``, ``output_shape``, ``dtype``.

The writer stores sample data first, flushes the file, and only then raises ``n_written``: a
process killed at any point leaves a file whose first ``n_written`` samples are valid, which
``resume=True`` continues. Because sample ``i`` depends only on ``(seed, i)``, a resumed file holds
the same arrays, byte for byte, as one written without interruption.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from itertools import pairwise
from multiprocessing import get_context
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pdesurrogates.data.files import (
    DataFormatError,
    check_output_file,
    open_h5,
    permission_error,
)
from pdesurrogates.errors import UserInputError

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["COMPRESSIONS", "SCHEMA_VERSION", "DataFormatError", "DatasetWriter", "write_dataset"]

SCHEMA_VERSION = 1
COMPRESSIONS = ("lzf", "gzip", "none")
DEFAULT_COMPRESSION = "lzf"

GenerateFn = Callable[[np.ndarray], "tuple[np.ndarray, np.ndarray]"]


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _package_version() -> str:
    import pdesurrogates

    return pdesurrogates.__version__


def _canonical_params(params: Mapping[str, Any] | None) -> str:
    try:
        return json.dumps(dict(params or {}), sort_keys=True, default=_json_default)
    except TypeError as exc:
        raise UserInputError(f"params must be JSON serialisable: {exc}") from None


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (tuple, set)):
        return list(value)
    raise TypeError(f"{type(value).__name__} {value!r} is not JSON serialisable")


def _grid_arrays(grid: Any) -> dict[str, np.ndarray]:
    """Coordinates to store under ``grid/``: a mapping of arrays, or a :class:`Grid`."""
    if grid is None:
        return {}
    if isinstance(grid, Mapping):
        return {str(k): np.asarray(v) for k, v in grid.items()}
    if hasattr(grid, "coords") and hasattr(grid, "shape"):
        names = ("x", "y", "z")
        return {names[d]: c for d, c in enumerate(grid.coords())}
    raise TypeError(f"grid must be a mapping name -> array or a Grid, got {type(grid).__name__}")


def _grid_attrs(grid: Any) -> dict[str, Any]:
    if grid is not None and not isinstance(grid, Mapping) and hasattr(grid, "boundary"):
        return {"boundary": grid.boundary, "length": list(grid.length), "shape": list(grid.shape)}
    return {}


class DatasetWriter:
    """Appends samples to one of our HDF5 files; create it with :meth:`open`.

    Attributes
    ----------
    path : Path
    n_samples : int
        Samples the finished file holds.
    n_written : int
        Samples already valid in the file (0 for a new file).
    input_shape, output_shape : tuple of int
        Shape of one sample, ``(C_in, *spatial)`` and ``(C_out, [T,] *spatial)``.

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> tmp = tempfile.TemporaryDirectory()
    >>> path = tmp.name + "/toy.h5"
    >>> with DatasetWriter.open(path, pde="toy", n_samples=2, input_shape=(1, 4),
    ...                         output_shape=(1, 4), params={"a": 1}, seed=0) as w:
    ...     w.append(np.zeros((2, 1, 4), np.float32), np.ones((2, 1, 4), np.float32))
    ...     w.finalize()
    >>> w.n_written
    2
    >>> tmp.cleanup()
    """

    def __init__(self, file: Any, path: Path, n_samples: int, input_shape: tuple[int, ...],
                 output_shape: tuple[int, ...], dtype: np.dtype) -> None:
        self._file = file
        self.path = path
        self.n_samples = n_samples
        self.input_shape = input_shape
        self.output_shape = output_shape
        self.dtype = dtype
        self.n_written = int(file.attrs["n_written"])

    @classmethod
    def open(
        cls,
        path: str | os.PathLike,
        *,
        pde: str,
        n_samples: int,
        input_shape: Sequence[int],
        output_shape: Sequence[int],
        params: Mapping[str, Any] | None,
        seed: int,
        grid: Any = None,
        dtype: str = "float32",
        resume: bool = False,
        overwrite: bool = False,
        compression: str = DEFAULT_COMPRESSION,
        extra_attrs: Mapping[str, Any] | None = None,
    ) -> DatasetWriter:
        """Create a new file, or reopen an interrupted one to continue it.

        Parameters
        ----------
        path : str or PathLike
            Target file (``.h5``).
        pde : str
            Problem name stored in the provenance.
        n_samples : int
            Number of samples the finished file holds.
        input_shape, output_shape : sequence of int
            One sample's shape: ``(C_in, *spatial)`` and ``(C_out, [T,] *spatial)``.
        params : mapping
            All physical and numerical parameters (JSON serialisable), stored as JSON.
        seed : int
            Seed of the generator; sample ``i`` must depend only on ``(seed, i)`` for resume.
        grid : mapping of str to array, or Grid, optional
            Coordinates written under ``grid/``.
        dtype : {"float32", "float64", "float16"}
        resume : bool
            Continue an existing file at its ``n_written`` (a missing file is simply created).
            Its pde, params, seed, shapes and dtype must match the ones given.
        overwrite : bool
            Replace an existing file.
        compression : {"lzf", "gzip", "none"}
            ``"lzf"`` (default): fast, about 2x smaller for our fields; ``"gzip"``: byte shuffle +
            deflate level 4, smallest, about 3x slower to read. All add a fletcher32 checksum.
        extra_attrs : mapping, optional
            More file attributes (JSON-serialisable values), e.g. a shard's index offset.

        Raises
        ------
        FileExistsError
            The file exists and neither ``resume`` nor ``overwrite`` was given.
        ValueError
            ``path`` is a directory; a bad argument.
        PermissionError
            The file or its folder cannot be written by this user.
        DataFormatError
            ``resume`` on a file written with other settings, or one that is not ours.
        """
        import h5py

        path = Path(path)
        if resume and overwrite:
            raise UserInputError("give resume or overwrite, not both")
        if compression not in COMPRESSIONS:
            raise UserInputError(f"compression must be one of {COMPRESSIONS}, got {compression!r}")
        try:
            np_dtype = np.dtype(dtype)
        except TypeError:
            np_dtype = None
        if np_dtype is None or np_dtype.kind != "f":
            raise UserInputError(f"dtype must be a float type (float32, float64, float16), got {dtype!r}")
        if not _is_int(n_samples) or n_samples < 1:
            raise UserInputError(f"n_samples must be an int >= 1, got {n_samples!r}")
        n_samples = int(n_samples)
        for name, shape in (("input_shape", input_shape), ("output_shape", output_shape)):
            if len(shape) < 2 or not all(_is_int(s) and s >= 1 for s in shape):
                raise UserInputError(f"{name} must be (channels, *spatial) with positive int sizes, "
                                 f"got {tuple(shape)}")
        input_shape = tuple(int(s) for s in input_shape)
        output_shape = tuple(int(s) for s in output_shape)
        params_json = _canonical_params(params)
        expected = {
            "pde": str(pde),
            "params": params_json,
            "seed": int(seed),
            "n_samples": n_samples,
            "input_shape": list(input_shape),
            "output_shape": list(output_shape),
            "dtype": np_dtype.name,
        }
        check_output_file(path)  # a directory, or a folder that cannot be created: say so now
        if path.exists() and not overwrite:
            if not resume:
                raise FileExistsError(
                    f"{path} already exists; pass --resume to continue an interrupted file or "
                    f"--overwrite to replace it"
                )
            file = open_h5(path, "r+")
            try:
                _check_resume(file, path, expected)
            except BaseException:
                file.close()
                raise
            return cls(file, path, n_samples, input_shape, output_shape, np_dtype)

        try:
            if path.exists():
                path.unlink()
            file = h5py.File(path, "w")
        except OSError as exc:
            denied = permission_error(exc, path, "write")
            if denied is None:
                raise
            raise denied from None
        try:
            comp = None if compression == "none" else compression
            # fletcher32: a per-chunk checksum, so a damaged chunk is an error, not silent garbage
            opts = {"compression": comp, "fletcher32": True}
            if comp == "gzip":  # the byte shuffle pays off with gzip only (data_loading benchmark)
                opts["shuffle"] = True
                opts["compression_opts"] = 4
            file.create_dataset("inputs", shape=(n_samples, *input_shape), dtype=np_dtype,
                                chunks=(1, *input_shape), **opts)
            file.create_dataset("outputs", shape=(n_samples, *output_shape), dtype=np_dtype,
                                chunks=(1, *output_shape), **opts)
            group = file.create_group("grid")
            for key, value in _grid_arrays(grid).items():
                group.create_dataset(key, data=value)
            for key, value in _grid_attrs(grid).items():
                group.attrs[key] = json.dumps(value)
            attrs = file.attrs
            attrs["schema_version"] = SCHEMA_VERSION
            for key, value in expected.items():
                attrs[key] = value
            attrs["pdesurrogates_version"] = _package_version()
            attrs["created"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
            attrs["compression"] = compression
            attrs["complete"] = False
            attrs["n_written"] = 0
            for key, value in (extra_attrs or {}).items():
                attrs[key] = value
            file.flush()
        except BaseException:
            file.close()
            raise
        return cls(file, path, n_samples, input_shape, output_shape, np_dtype)

    @property
    def complete(self) -> bool:
        return bool(self._file.attrs["complete"])

    def append(self, inputs: np.ndarray, outputs: np.ndarray) -> None:
        """Write the next ``k`` samples, then flush, then raise ``n_written``.

        Parameters
        ----------
        inputs : array, (k, *input_shape)
        outputs : array, (k, *output_shape)
            Real floating arrays, finite; cast to the file's dtype.
        """
        inputs = self._check("inputs", inputs, self.input_shape)
        outputs = self._check("outputs", outputs, self.output_shape)
        k = inputs.shape[0]
        if outputs.shape[0] != k:
            raise UserInputError(
                f"{self.path}: append got {k} inputs but {outputs.shape[0]} outputs"
            )
        start = self.n_written
        if start + k > self.n_samples:
            raise UserInputError(
                f"{self.path}: appending {k} samples at {start} exceeds n_samples={self.n_samples}"
            )
        if k == 0:
            return
        self._file["inputs"][start:start + k] = inputs
        self._file["outputs"][start:start + k] = outputs
        self._file.flush()  # data on disk before the count that declares it valid
        self._file.attrs["n_written"] = start + k
        self._file.flush()
        self.n_written = start + k

    def _check(self, key: str, array: Any, sample_shape: tuple[int, ...]) -> np.ndarray:
        array = np.asarray(array)
        if array.dtype.kind != "f":
            raise UserInputError(
                f"{self.path}: {key} must be a real floating-point array, got dtype {array.dtype}"
            )
        if array.ndim != len(sample_shape) + 1 or tuple(array.shape[1:]) != sample_shape:
            raise UserInputError(
                f"{self.path}: {key} must have shape (k, {', '.join(map(str, sample_shape))}), "
                f"got {tuple(array.shape)}"
            )
        finite = np.isfinite(array.reshape(array.shape[0], -1)).all(axis=1)
        if not finite.all():
            bad = int(np.flatnonzero(~finite)[0])
            raise UserInputError(
                f"{self.path}: {key} of sample {self.n_written + bad} (batch row {bad}) "
                f"contains NaN or Inf; nothing of this batch was written"
            )
        return np.ascontiguousarray(array, dtype=self.dtype)

    def finalize(self) -> None:
        """Mark the file complete; every sample must have been written."""
        if self.n_written != self.n_samples:
            raise UserInputError(
                f"{self.path}: cannot finalize with {self.n_written} of {self.n_samples} samples"
            )
        self._file.attrs["complete"] = True
        self._file.flush()

    def close(self) -> None:
        if self._file is not None and self._file.id.valid:
            self._file.flush()
            self._file.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _check_resume(file: Any, path: Path, expected: dict[str, Any]) -> None:
    attrs = file.attrs
    if "schema_version" not in attrs or "inputs" not in file or "outputs" not in file:
        raise DataFormatError(
            f"{path}: cannot resume: not a pdesurrogates dataset (expected attribute "
            f"'schema_version' and datasets 'inputs', 'outputs'; found keys {sorted(file.keys())})"
        )
    for key, want in expected.items():
        if key not in attrs:
            raise DataFormatError(f"{path}: cannot resume: attribute {key!r} missing")
        found = attrs[key]
        if isinstance(want, list):
            found = [int(v) for v in np.atleast_1d(found)]
        elif isinstance(want, int):
            found = int(found)
        else:
            found = str(found)
        if key == "params":
            want_d, found_d = json.loads(want), json.loads(found)
            if want_d != found_d:
                diff = sorted(k for k in set(want_d) | set(found_d) if want_d.get(k) != found_d.get(k))
                raise DataFormatError(
                    f"{path}: cannot resume: params differ in {diff}: file has "
                    f"{ {k: found_d.get(k) for k in diff} }, asked for { {k: want_d.get(k) for k in diff} }"
                )
        elif found != want:
            raise DataFormatError(
                f"{path}: cannot resume: {key} is {found!r} in the file but {want!r} was asked for; "
                f"use --overwrite to start again"
            )


def _progress_bar(total: int, initial: int, enabled: bool, desc: str) -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, unit="sample", desc=desc)


def write_dataset(
    path: str | os.PathLike,
    generate_fn: GenerateFn,
    n_samples: int,
    *,
    pde: str,
    input_shape: Sequence[int],
    output_shape: Sequence[int],
    params: Mapping[str, Any] | None,
    seed: int,
    grid: Any = None,
    batch_size: int = 16,
    workers: int = 1,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    dtype: str = "float32",
    compression: str = DEFAULT_COMPRESSION,
) -> Path:
    """Generate ``n_samples`` samples with ``generate_fn`` and write them to ``path``.

    Parameters
    ----------
    path : str or PathLike
    generate_fn : callable
        ``generate_fn(indices: np.ndarray[int64]) -> (inputs (k, *input_shape), outputs
        (k, *output_shape))``. Sample ``i`` must depend only on ``(seed, i)``. With
        ``workers > 1`` it is sent to worker processes, so it must be picklable: a
        module-level function or a ``functools.partial`` of one (not a lambda or closure).
    n_samples : int
    pde, input_shape, output_shape, params, seed, grid, dtype, compression
        As in :meth:`DatasetWriter.open`.
    batch_size : int
        Samples per ``generate_fn`` call; each batch is flushed before the next.
    workers : int
        ``> 1`` runs that many processes, each writing a shard (``<path>.shards/shard-<start>-<stop>.h5``,
        itself resumable) over a contiguous range of the missing samples; the shards are then
        copied in order into ``path`` and deleted. The result is one self-contained file.
    resume, overwrite : bool
        See :meth:`DatasetWriter.open`. A complete file with ``resume`` is left as it is. When
        ``generate_fn`` fails before the first sample is written, a file this call created is
        removed again (there is nothing in it to resume).
    progress : bool
        Show a tqdm bar.

    Returns
    -------
    Path
        The finished file.
    """
    path = Path(path)
    if batch_size < 1:
        raise UserInputError(f"batch_size must be >= 1, got {batch_size}")
    if workers < 1:
        raise UserInputError(f"workers must be >= 1, got {workers}")
    shard_dir = path.with_name(path.name + ".shards")
    if overwrite and shard_dir.exists():
        shutil.rmtree(shard_dir)
    common = {"pde": pde, "n_samples": n_samples, "input_shape": input_shape,
              "output_shape": output_shape, "params": params, "seed": seed, "grid": grid,
              "dtype": dtype, "compression": compression}
    creates = overwrite or not path.exists()
    with DatasetWriter.open(path, resume=resume, overwrite=overwrite, **common) as writer:
        start = writer.n_written
        if writer.complete and start == n_samples:
            return path
        if workers == 1 or n_samples - start <= batch_size:
            bar = _progress_bar(n_samples, start, progress, path.name)
            try:
                _generate_into(writer, generate_fn, start, n_samples, batch_size, bar)
            except BaseException:
                if creates and writer.n_written == 0:  # nothing to resume: leave no empty file
                    writer.close()
                    path.unlink(missing_ok=True)
                raise
            finally:
                if bar is not None:
                    bar.close()
            writer.finalize()
            return path

    ranges = _shard_ranges(shard_dir, start, n_samples, workers)
    shard_dir.mkdir(exist_ok=True)
    bar = _progress_bar(len(ranges), 0, progress, f"{path.name} shards")
    ctx = get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(workers, len(ranges)), mp_context=ctx) as pool:
        futures = [
            pool.submit(_write_shard, str(shard_dir / f"shard-{a}-{b}.h5"), generate_fn, a, b,
                        batch_size, common)
            for a, b in ranges
        ]
        for future in as_completed(futures):
            future.result()
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    with DatasetWriter.open(path, resume=True, **common) as writer:
        for a, b in ranges:
            _copy_shard(writer, shard_dir / f"shard-{a}-{b}.h5", a, b)
        writer.finalize()
    shutil.rmtree(shard_dir)
    return path


def _generate_into(writer: DatasetWriter, generate_fn: GenerateFn, start: int, stop: int,
                   batch_size: int, bar: Any, offset: int = 0) -> None:
    """Fill ``writer`` with global samples ``offset + [start, stop)`` in batches."""
    for lo in range(start, stop, batch_size):
        hi = min(lo + batch_size, stop)
        indices = np.arange(offset + lo, offset + hi, dtype=np.int64)
        inputs, outputs = generate_fn(indices)
        writer.append(inputs, outputs)
        if bar is not None:
            bar.update(hi - lo)


def _shard_ranges(shard_dir: Path, start: int, stop: int, workers: int) -> list[tuple[int, int]]:
    """Contiguous ranges covering ``[start, stop)``: the existing shards' if any, else a new split."""
    if shard_dir.exists():
        found = []
        for f in shard_dir.glob("shard-*-*.h5"):
            try:
                a, b = (int(v) for v in f.stem.split("-")[1:3])
            except ValueError:
                continue
            found.append((a, b))
        found.sort()
        if found:
            covers = found[0][0] == start and found[-1][1] == stop and all(
                found[i][1] == found[i + 1][0] for i in range(len(found) - 1)
            )
            if not covers:
                raise DataFormatError(
                    f"{shard_dir}: leftover shards {found} do not cover the missing samples "
                    f"[{start}, {stop}); delete that folder or use --overwrite"
                )
            return found
    bounds = np.linspace(start, stop, workers + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in pairwise(bounds) if b > a]


def _write_shard(shard_path: str, generate_fn: GenerateFn, start: int, stop: int, batch_size: int,
                 common: dict[str, Any]) -> None:
    """Worker process: write (or resume) the shard holding global samples ``[start, stop)``."""
    opts = dict(common)
    opts["n_samples"] = stop - start
    opts["params"] = {"dataset_params": json.loads(_canonical_params(common["params"])),
                      "shard_start": start, "shard_stop": stop}
    with DatasetWriter.open(shard_path, resume=True, **opts) as writer:
        if writer.n_written < writer.n_samples:
            _generate_into(writer, generate_fn, writer.n_written, writer.n_samples, batch_size,
                           None, offset=start)
        if not writer.complete:
            writer.finalize()


def _copy_shard(writer: DatasetWriter, shard: Path, start: int, stop: int) -> None:
    if writer.n_written != start:
        raise DataFormatError(f"{shard}: expected to continue at sample {start}, file has {writer.n_written}")
    with open_h5(shard, "r") as f:
        if not bool(f.attrs.get("complete", False)):
            raise DataFormatError(f"{shard}: shard is incomplete")
        step = 64
        for lo in range(0, stop - start, step):
            hi = min(lo + step, stop - start)
            writer.append(f["inputs"][lo:hi], f["outputs"][lo:hi])
