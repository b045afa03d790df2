"""Checks at the file boundary, shared by every reader and by the writer.

Each check raises an error that names the file and says what was expected and what was found:
:class:`DataFormatError` (a ``ValueError``) for content, ``FileNotFoundError`` for a missing file,
``PermissionError`` for a file or folder this user may not read or write, ``ValueError`` for a
directory where a file was expected.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pdesurrogates.errors import UserInputError


class DataFormatError(UserInputError):
    """A data file that cannot be read or written as asked; the message names file, key, expected, found."""


def shape_str(shape: Sequence[int]) -> str:
    """``(2, 3)`` for a shape, with ``(4,)`` spelled without the trailing comma: ``(4)``."""
    return "(" + ", ".join(str(int(s)) for s in shape) + ")"


def check_readable(path: Path) -> None:
    """Raise unless ``path`` is an existing file this process may read.

    Raises
    ------
    FileNotFoundError
        Nothing at ``path``.
    ValueError
        ``path`` is a directory.
    PermissionError
        The file exists but cannot be opened for reading.
    """
    if path.is_dir():
        raise UserInputError(f"{path} is a directory; expected a dataset file (.h5, .hdf5, .mat, .pt)")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        with open(path, "rb"):
            pass
    except PermissionError:
        raise PermissionError(_denied(path, "read")) from None


def check_output_file(path: Path) -> None:
    """Raise unless a file can be created (or replaced) at ``path``.

    Creates missing parent folders. Does not touch an existing file.

    Raises
    ------
    ValueError
        ``path`` is a directory, or a parent of it is a file.
    PermissionError
        The folder that would hold the file cannot be created or written to.
    """
    if path.is_dir():
        raise UserInputError(f"{path} is a directory; the output must be a file path, e.g. {path / 'data.h5'}")
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except PermissionError:
        raise PermissionError(
            f"{path}: cannot create the folder {parent}: permission denied (choose an output in a "
            f"folder you can write to)"
        ) from None
    except (FileExistsError, NotADirectoryError):
        raise UserInputError(f"{path}: a part of the folder {parent} is a file, not a folder") from None


def permission_error(exc: OSError, path: Path, action: str) -> PermissionError | None:
    """A clear ``PermissionError`` naming ``path`` when ``exc`` is a permission problem, else ``None``.

    ``action`` is ``"read"`` or ``"write"``. h5py reports such problems as ``OSError`` with the
    errno in the message.
    """
    text = str(exc)
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS) or "Permission denied" in text \
            or "errno = 13" in text or "Read-only file system" in text:
        return PermissionError(_denied(path, action))
    return None


def _denied(path: Path, action: str) -> str:
    if action == "read":
        return (f"{path}: permission denied: the file exists but this user cannot read it "
                f"(mode {_mode(path)}); check its permissions")
    file_mode = f"file mode {_mode(path)}, " if path.exists() else ""
    return (f"{path}: permission denied: this user cannot write the file or its folder "
            f"{path.parent} ({file_mode}folder mode {_mode(path.parent)}); choose an output in a "
            f"folder you can write to")


def _mode(path: Path) -> str:
    try:
        return oct(os.stat(path).st_mode & 0o777)
    except OSError:
        return "unknown"


def open_h5(path: Path, mode: str) -> Any:
    """``h5py.File(path, mode)`` for an existing file, with errors that name the file."""
    import h5py

    action = "read" if mode == "r" else "write"
    try:
        is_hdf5 = h5py.is_hdf5(path)
    except OSError as exc:
        denied = permission_error(exc, path, action)
        if denied is None:
            raise
        raise denied from None
    if not is_hdf5:
        raise DataFormatError(f"{path} is not an HDF5 file (no HDF5 signature found)")
    try:
        return h5py.File(path, mode)
    except OSError as exc:
        denied = permission_error(exc, path, action)
        if denied is not None:
            raise denied from None
        raise DataFormatError(
            f"{path}: cannot open the HDF5 file (truncated or damaged?): {exc}"
        ) from None
