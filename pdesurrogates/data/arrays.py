"""Datasets from arrays already in memory, and our HDF5 file written from such arrays.

:func:`from_arrays` gives the same :class:`~pdesurrogates.data.dataset.FieldDataset` that
:func:`~pdesurrogates.data.open_dataset` returns for a file (items, ``.meta``, stride views,
``make_loader``, normalizers, the training loop all work on it); :func:`write_arrays` stores the
arrays as our HDF5 format with their provenance, so ``open_dataset`` reads them back.

Both check the arrays at the boundary: numpy arrays or torch tensors, inputs ``(N, C_in,
*spatial)`` and outputs ``(N, C_out, [T,] *spatial)`` with the same ``N`` and spatial shape, real
numbers (float, int or bool; complex, object and string arrays are refused), finite values.

Examples
--------
>>> import numpy as np
>>> a = np.random.default_rng(0).uniform(1, 2, (8, 1, 17, 17)).astype(np.float32)
>>> ds = from_arrays(a, 2 * a, pde="toy", stride=2)
>>> ds.meta["format"], ds.meta["spatial_shape"], len(ds)
('arrays', (9, 9), 8)
>>> x, y = ds[3]
>>> x.shape, bool((y == 2 * x).all())
(torch.Size([1, 9, 9]), True)
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pdesurrogates.data.dataset import ArraySource, FieldDataset, check_real, make_dataset
from pdesurrogates.data.files import shape_str
from pdesurrogates.data.hdf5 import DEFAULT_COMPRESSION, DatasetWriter, _grid_arrays
from pdesurrogates.errors import UserInputError

ARRAYS_SEED = -1
"""``seed`` stored by :func:`write_arrays` when the arrays were not drawn from a seed."""


def _as_numpy(label: str, name: str, a: Any) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        t = a.detach()
        if t.dtype == torch.bfloat16:  # numpy has no bfloat16
            t = t.float()
        return t.cpu().numpy()
    if isinstance(a, np.ndarray):
        return a
    raise TypeError(f"{label}: {name} must be a numpy array or a torch tensor, got {type(a).__name__}")


def _check_arrays(label: str, inputs: Any, outputs: Any) -> tuple[np.ndarray, np.ndarray, int]:
    """Validated numpy views of ``inputs``/``outputs`` and the number of spatial axes."""
    x, y = _as_numpy(label, "inputs", inputs), _as_numpy(label, "outputs", outputs)
    for name, a in (("inputs", x), ("outputs", y)):
        check_real(label, name, a.dtype, kind="argument")
    if x.ndim < 3:
        raise UserInputError(
            f"{label}: inputs must be (N, C_in, *spatial) with at least one spatial axis, found "
            f"shape {shape_str(x.shape)} (add a channel axis: inputs[:, None])"
        )
    spatial = x.shape[2:]
    if y.ndim not in (x.ndim, x.ndim + 1) or y.shape[0] != x.shape[0] \
            or tuple(y.shape[y.ndim - len(spatial):]) != tuple(spatial):
        raise UserInputError(
            f"{label}: outputs must be (N={x.shape[0]}, C_out, [T,] {', '.join(map(str, spatial))}) "
            f"to match inputs {shape_str(x.shape)}, found {shape_str(y.shape)}"
        )
    if 0 in x.shape or 0 in y.shape:
        raise UserInputError(f"{label}: empty arrays: inputs {shape_str(x.shape)}, outputs {shape_str(y.shape)}")
    for name, a in (("inputs", x), ("outputs", y)):
        if a.dtype.kind == "f" and not np.isfinite(a).all():
            ok = np.isfinite(a.reshape(a.shape[0], -1)).all(axis=1)
            bad = np.flatnonzero(~ok)
            raise UserInputError(
                f"{label}: {name} sample {int(bad[0])} contains NaN or Inf ({len(bad)} of "
                f"{a.shape[0]} samples do); expected finite values"
            )
    return x, y, len(spatial)


def _grid(label: str, grid: Any, spatial: tuple[int, ...]) -> dict[str, np.ndarray]:
    if grid is None:
        return {}
    is_grid = not isinstance(grid, Mapping) and hasattr(grid, "shape") and hasattr(grid, "coords")
    if is_grid and tuple(grid.shape) != tuple(spatial):
        raise UserInputError(f"{label}: grid has shape {shape_str(grid.shape)}, the arrays' spatial "
                             f"shape is {shape_str(spatial)}")
    arrays = _grid_arrays(grid)
    for key, value in arrays.items():
        check_real(label, f"grid[{key!r}]", value.dtype, kind="argument")
        if value.dtype.kind == "f" and not np.isfinite(value).all():
            raise UserInputError(f"{label}: grid[{key!r}] contains NaN or Inf")
    return arrays


def from_arrays(
    inputs: np.ndarray | torch.Tensor,
    outputs: np.ndarray | torch.Tensor,
    *,
    grid: Any = None,
    pde: str | None = None,
    params: Mapping[str, Any] | None = None,
    indices: Any = None,
    stride: int | tuple[int, ...] = 1,
) -> FieldDataset:
    """A dataset over arrays in memory, of the type :func:`open_dataset` returns for files.

    Parameters
    ----------
    inputs : numpy array or torch tensor, (N, C_in, *spatial)
    outputs : numpy array or torch tensor, (N, C_out, [T,] *spatial)
        Real numbers (float, int, bool), finite. Tensors are detached and moved to the CPU.
    grid : mapping of str to array, or Grid, optional
        Coordinates, kept in ``meta["grid"]`` (a ``Grid`` must have the arrays' spatial shape).
    pde : str, optional
        Problem name for ``meta["pde"]``.
    params : mapping, optional
        Parameters kept in ``meta["provenance"]["params"]``.
    indices, stride
        As in :func:`open_dataset`: samples to keep, every ``stride``-th node per spatial axis.

    Returns
    -------
    FieldDataset
        Items ``(x, y)`` float32 tensors; ``meta["format"] == "arrays"``, ``meta["path"] is None``.
        When the arrays are float32, C-contiguous, unstrided and all samples are kept, the
        dataset shares their memory (no copy); otherwise it holds a float32 copy.

    Raises
    ------
    TypeError
        Not a numpy array or torch tensor.
    ValueError
        Wrong rank or mismatched shapes, complex/object/string dtype, NaN or Inf (the message
        names the argument and the first bad sample), bad stride or indices.
    """
    label = "from_arrays"
    x, y, spatial_ndim = _check_arrays(label, inputs, outputs)
    coords = _grid(label, grid, tuple(x.shape[2:]))
    provenance: dict[str, Any] = {}
    if pde is not None:
        provenance["pde"] = str(pde)
    if params is not None:
        provenance["params"] = dict(params)
    source = ArraySource(None, x, y, spatial_ndim, "inputs", "outputs",
                         {"pde": pde, "provenance": provenance, "grid": coords}, label=label)
    return make_dataset(source, "arrays", indices=indices, stride=stride, in_memory=True,
                        check_finite=False)


def write_arrays(
    path: str | os.PathLike,
    inputs: np.ndarray | torch.Tensor,
    outputs: np.ndarray | torch.Tensor,
    *,
    pde: str,
    params: Mapping[str, Any] | None = None,
    seed: int | None = None,
    grid: Any = None,
    overwrite: bool = False,
    dtype: str = "float32",
    compression: str = DEFAULT_COMPRESSION,
    batch_size: int = 64,
) -> Path:
    """Write arrays to ``path`` in our HDF5 format, with provenance; ``open_dataset`` reads it back.

    The arrays are checked as in :func:`from_arrays` before the file is created, so bad input
    leaves no file behind. The samples are written ``batch_size`` at a time (each converted to
    ``dtype`` on the way) and the file is marked complete at the end.

    Parameters
    ----------
    path : str or PathLike
        Target ``.h5`` file; an existing one is an error unless ``overwrite``.
    inputs, outputs : numpy arrays or torch tensors
        ``(N, C_in, *spatial)`` and ``(N, C_out, [T,] *spatial)``.
    pde : str
        Problem name stored as the ``pde`` attribute.
    params : mapping, optional
        Physical and numerical parameters (JSON serialisable), stored as ``params``.
    seed : int, optional
        The seed the samples were drawn with, if any; :data:`ARRAYS_SEED` (-1) otherwise.
    grid, dtype, compression
        As in :meth:`DatasetWriter.open`.
    batch_size : int
        Samples per write.

    Returns
    -------
    Path
        The finished file. Its attribute ``source`` is ``"arrays"``.
    """
    label = f"write_arrays({path})"
    x, y, _ = _check_arrays(label, inputs, outputs)
    _grid(label, grid, tuple(x.shape[2:]))
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise UserInputError(f"{label}: batch_size must be an int >= 1, got {batch_size!r}")
    if seed is not None and (not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0):
        raise UserInputError(f"{label}: seed must be an int >= 0 or None, got {seed!r}")
    with DatasetWriter.open(
        path, pde=pde, n_samples=x.shape[0], input_shape=x.shape[1:], output_shape=y.shape[1:],
        params=params, seed=ARRAYS_SEED if seed is None else int(seed), grid=grid, dtype=dtype,
        overwrite=overwrite, compression=compression, extra_attrs={"source": "arrays"},
    ) as writer:
        file_dtype = writer.dtype
        for lo in range(0, x.shape[0], batch_size):
            hi = min(lo + batch_size, x.shape[0])
            writer.append(x[lo:hi].astype(file_dtype, copy=False), y[lo:hi].astype(file_dtype, copy=False))
        writer.finalize()
    return writer.path
