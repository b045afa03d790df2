"""Shared test fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data" / "neuralop_small"


@pytest.fixture(scope="session")
def neuralop_small() -> Path:
    """Folder with neuraloperator's small real datasets (``../shared/data/neuralop_small``)."""
    if not (SHARED_DATA / "darcy_train_16.pt").exists():
        pytest.fail(f"shared datasets not found at {SHARED_DATA}; the checkout must sit beside shared/")
    return SHARED_DATA
