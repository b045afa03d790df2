"""One reader interface over our HDF5 files and three foreign formats.

:func:`open_dataset` returns a :class:`~pdesurrogates.data.dataset.FieldDataset` (a
``torch.utils.data.Dataset``) whose items are ``(x, y)`` float32 tensors ``(C_in, *spatial)`` and
``(C_out, [T,] *spatial)``, whatever the file. One module per format reads it (``format=``
overrides detection):

``pdesurrogates``  :mod:`pdesurrogates.data.ours`, our schema (``datasets/README.md``).
``pdebench``       :mod:`pdesurrogates.data.pdebench`, PDEBench's three HDF5 layouts.
``fno-mat``        :mod:`pdesurrogates.data.fno_mat`, the FNO paper's MATLAB files (v7.3 and older).
``neuralop-pt``    :mod:`pdesurrogates.data.neuralop_pt`, neuraloperator's ``.pt`` dictionaries.

Format options (keyword arguments of :func:`open_dataset`): ``input_key``/``output_key``
(fno-mat, neuralop-pt), ``initial_step`` (pdebench, default 1), ``allow_incomplete``
(pdesurrogates: read the first ``n_written`` samples of an unfinished file). ``check_finite``
(default True) makes NaN/Inf in a sample an error naming file, key and sample.

Arrays already in memory become the same kind of dataset with
:func:`pdesurrogates.data.from_arrays`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pdesurrogates.data import fno_mat, neuralop_pt, ours, pdebench
from pdesurrogates.data.dataset import FieldDataset, make_dataset, make_loader
from pdesurrogates.data.files import DataFormatError, check_readable, open_h5
from pdesurrogates.errors import UserInputError

__all__ = ["FORMATS", "DataFormatError", "FieldDataset", "detect_format", "inspect_file", "make_loader",
           "open_dataset"]

_MODULES = {"pdesurrogates": ours, "pdebench": pdebench, "fno-mat": fno_mat, "neuralop-pt": neuralop_pt}
FORMATS = tuple(_MODULES)


def detect_format(path: str | os.PathLike) -> str:
    """Name of the format of ``path``, from its extension and content.

    Raises
    ------
    FileNotFoundError
    PermissionError
        The file cannot be read by this user.
    DataFormatError
        Not a supported format; the message lists what was found.
    """
    import h5py

    path = Path(path)
    check_readable(path)
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
    with open_h5(path, "r") as f:
        keys = list(f.keys())
        for name in ("pdesurrogates", "pdebench", "fno-mat"):  # order matters: ours first
            if _MODULES[name].detect(f):
                return name
    raise DataFormatError(
        f"{path}: HDF5 file of unknown layout: found keys {keys[:12]}; expected 'inputs'/'outputs' "
        f"(ours), 'tensor' or '0000/data' (PDEBench), or 'coeff'/'sol', 'a'/'u' (FNO .mat)"
    )


def _format_module(fmt: str) -> Any:
    if fmt not in _MODULES:
        raise UserInputError(f"unknown format {fmt!r}; valid: {', '.join(FORMATS)}")
    return _MODULES[fmt]


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
        64 -> 32 with stride 2); both give ``ceil(n / stride)`` points. Only ints are accepted.
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

    Raises
    ------
    FileNotFoundError, PermissionError
        No such file; a file this user cannot read.
    DataFormatError
        The content is not what the format says (the message names file, key, expected, found).
    ValueError, TypeError
        A bad argument (stride, indices, format, option).

    Examples
    --------
    >>> from pdesurrogates.data import neuralop_small
    >>> ds = open_dataset(neuralop_small.file_path("darcy_test_32.pt"), stride=2)
    >>> ds[0][0].shape
    torch.Size([1, 16, 16])
    """
    path = Path(path)
    check_readable(path)
    fmt = format or detect_format(path)
    module = _format_module(fmt)
    unknown = sorted(set(format_options) - set(module.OPTIONS))
    if unknown:
        valid = ", ".join(module.OPTIONS) or "none"
        raise TypeError(f"unknown option(s) {unknown} for format {fmt!r}; valid: {valid}")
    source = module.open_source(path, **format_options)
    return make_dataset(source, fmt, indices=indices, stride=stride, in_memory=in_memory,
                        check_finite=check_finite)


def inspect_file(path: str | os.PathLike) -> list[tuple[str, tuple[int, ...], str]]:
    """Raw contents of a supported file: ``(key, shape, dtype)`` per array, as stored.

    For MATLAB v7.3 files the shapes are given in MATLAB order (h5py's reversed).
    """
    import h5py

    path = Path(path)
    fmt = detect_format(path)
    module = _MODULES[fmt]
    if hasattr(module, "inspect"):
        return module.inspect(path)
    rows: list[tuple[str, tuple[int, ...], str]] = []
    with open_h5(path, "r") as f:
        def visit(name: str, obj: Any) -> None:
            if isinstance(obj, h5py.Dataset) and not name.startswith("#"):
                rows.append((name, tuple(obj.shape), str(obj.dtype)))

        f.visititems(visit)
    return rows
