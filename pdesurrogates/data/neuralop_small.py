"""neuraloperator's small real datasets, shipped in the repository under ``datasets/neuralop_small/``.

Four files that the neuraloperator project keeps in its own repository (MIT License; provenance,
keys and shapes in ``datasets/neuralop_small/README.md``). They come from a solver that is not
ours, so they check our readers, models and losses on data we did not make.

Every access verifies the file's SHA-256 against :data:`FILES`: a missing file is a
``FileNotFoundError`` and a changed one a :class:`DataFormatError`, each naming the file.

Examples
--------
>>> from pdesurrogates.data import neuralop_small
>>> ds = neuralop_small.open_dataset("darcy_train_16.pt")
>>> len(ds), ds.meta["input_shape"]
(1000, (1, 16, 16))
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from pdesurrogates.data.dataset import FieldDataset
from pdesurrogates.data.files import DataFormatError
from pdesurrogates.data.neuralop_pt import load_pt
from pdesurrogates.data.readers import open_dataset as _open_dataset
from pdesurrogates.errors import UserInputError

ROOT = Path(__file__).resolve().parents[2] / "datasets" / "neuralop_small"
"""The copy in a clone of the repository (``datasets/neuralop_small/``)."""

FILES = {
    "darcy_train_16.pt": "0be662acdb1dab7dfd1a1da0b140e97f75cc94f98a14edcf768abe6968b3b418",
    "darcy_test_16.pt": "d2b19af9d4a6ae04ba2de54b8ecccc8b89766472faf6ce7f506c0b2a60f69a4c",
    "darcy_test_32.pt": "bcbd10622373e94df84a17fcdb72ac4317d76e024c2499d21fd1fd34d0742cfd",
    "burgers_test_16.pt": "70bb1591e31b254e74ac6097a5520de299da38115cb3f814e8d0f6f19057d201",
}
"""File name -> SHA-256 of the published file."""


def sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_path(name: str, root: str | os.PathLike | None = None) -> Path:
    """Path of the file ``name`` under ``root`` (default :data:`ROOT`), after checking its SHA-256.

    Raises
    ------
    ValueError
        ``name`` is not one of :data:`FILES`.
    FileNotFoundError
        The file is not there.
    DataFormatError
        Its checksum differs from the published file's.
    """
    if name not in FILES:
        raise UserInputError(f"unknown neuraloperator small dataset {name!r}; available: {', '.join(FILES)}")
    folder = Path(root) if root is not None else ROOT
    path = folder / name
    if not path.is_file():
        where = ("it ships with the repository in datasets/neuralop_small/; restore it with "
                 "`git checkout -- datasets/neuralop_small`" if root is None
                 else "pass root= the folder that holds neuraloperator's small datasets")
        raise FileNotFoundError(f"{path}: neuraloperator small dataset not found ({where})")
    found = sha256(path)
    if found != FILES[name]:
        raise DataFormatError(
            f"{path}: SHA-256 {found} differs from the published file's {FILES[name]}: the file "
            f"is damaged or not neuraloperator's {name}"
        )
    return path


def load(name: str, root: str | os.PathLike | None = None) -> dict[str, Any]:
    """The raw dictionary of tensors of ``name`` (checksum verified), e.g. ``{"x", "y"}``."""
    return load_pt(file_path(name, root))


def open_dataset(name: str, root: str | os.PathLike | None = None, **options: Any) -> FieldDataset:
    """``name`` (checksum verified) as a :class:`~pdesurrogates.data.dataset.FieldDataset`.

    ``options`` go to :func:`pdesurrogates.data.open_dataset` (``indices``, ``stride``, ...).
    """
    return _open_dataset(file_path(name, root), **options)
