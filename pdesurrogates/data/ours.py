"""Reader of our own HDF5 format (format name ``"pdesurrogates"``; the writer is :mod:`.hdf5`).

``inputs`` ``(N, C_in, *spatial)``, ``outputs`` ``(N, C_out, [T,] *spatial)``, coordinates under
``grid/``, provenance in the file attributes (schema: ``datasets/README.md``).

Option: ``allow_incomplete`` (read the first ``n_written`` samples of an unfinished file).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from pdesurrogates.data.dataset import H5Source, attr_value, check_real
from pdesurrogates.data.files import DataFormatError, shape_str
from pdesurrogates.data.hdf5 import SCHEMA_VERSION

OPTIONS = ("allow_incomplete",)


def detect(f: Any) -> bool:
    """Whether the open HDF5 file ``f`` is ours."""
    return "schema_version" in f.attrs or ("inputs" in f and "outputs" in f)


class OursSource(H5Source):
    def __init__(self, path: Path, allow_incomplete: bool = False) -> None:
        super().__init__(path)
        f = self.file
        x, y = self.get("inputs"), self.get("outputs")
        if x.ndim < 3:
            raise DataFormatError(
                f"{path}: dataset 'inputs' must have rank >= 3 (N, C_in, *spatial), found shape "
                f"{shape_str(x.shape)}"
            )
        if y.ndim not in (x.ndim, x.ndim + 1) or y.shape[0] != x.shape[0]:
            raise DataFormatError(
                f"{path}: dataset 'outputs' must be (N={x.shape[0]}, C_out, [T,] "
                f"{', '.join(map(str, x.shape[2:]))}), found {shape_str(y.shape)}"
            )
        for key, ds in (("inputs", x), ("outputs", y)):
            check_real(path, key, ds.dtype)
        self.spatial_ndim = x.ndim - 2
        if tuple(y.shape[-self.spatial_ndim:]) != tuple(x.shape[2:]):
            raise DataFormatError(
                f"{path}: spatial shape of 'outputs' {shape_str(y.shape[-self.spatial_ndim:])} "
                f"differs from 'inputs' {shape_str(x.shape[2:])}"
            )
        attrs = {k: attr_value(v) for k, v in f.attrs.items()}
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
                    f"{shape_str(ds.shape[1:])}"
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


def open_source(path: Path, allow_incomplete: bool = False) -> OursSource:
    return OursSource(path, allow_incomplete=allow_incomplete)
