"""Shared test fixtures."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import pytest

from pdesurrogates.data import neuralop_small as _neuralop_small


@pytest.fixture(scope="session")
def neuralop_small() -> Path:
    """Folder with neuraloperator's small real datasets (``datasets/neuralop_small/``, in the
    repository); every file's SHA-256 is checked first."""
    for name in _neuralop_small.FILES:
        _neuralop_small.file_path(name)
    return _neuralop_small.ROOT


UNPRIVILEGED_UID = 65534  # "nobody"


@contextmanager
def _as_unprivileged_user() -> Iterator[None]:
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        yield
        return
    os.seteuid(UNPRIVILEGED_UID)
    try:
        yield
    finally:
        os.seteuid(0)


@pytest.fixture
def unprivileged() -> Callable[[], AbstractContextManager[None]]:
    """``with unprivileged(): ...`` runs the block with file permissions enforced: as user
    ``nobody`` when the tests run as root (root reads and writes anything), unchanged otherwise.
    Only the effective uid changes, and it is restored on leaving the block."""
    return _as_unprivileged_user


@pytest.fixture
def shared_tmp() -> Iterator[Path]:
    """A temporary folder that any user may enter (pytest's own sit under a folder private to the
    owner), for tests that check permissions as another user; removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="pdesurrogates-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        for sub in path.rglob("*"):  # give back the rights a test took away, then remove
            if sub.is_dir():
                sub.chmod(0o755)
        shutil.rmtree(path)
