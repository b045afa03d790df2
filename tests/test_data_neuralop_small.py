"""The small neuraloperator files shipped in datasets/neuralop_small/: found from a clone, checked
by SHA-256, and a missing or changed file is an error naming it."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
import torch

from pdesurrogates.data import DataFormatError, neuralop_small

REPO = Path(__file__).resolve().parents[1]


def test_files_ship_in_the_repository_with_their_checksums() -> None:
    assert neuralop_small.ROOT == REPO / "datasets" / "neuralop_small"
    listed = {}
    for line in (neuralop_small.ROOT / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split()
        listed[name] = digest
    assert listed == neuralop_small.FILES
    for name, digest in neuralop_small.FILES.items():
        # hashlib directly: an independent check of the module's own sha256()
        assert hashlib.sha256((neuralop_small.ROOT / name).read_bytes()).hexdigest() == digest
        assert neuralop_small.file_path(name) == neuralop_small.ROOT / name
    for required in ("LICENSE", "README.md"):
        assert (neuralop_small.ROOT / required).is_file()
    assert "Copyright (c) 2023 NeuralOperator developers" in (neuralop_small.ROOT / "LICENSE").read_text()


def test_load_and_open_give_the_stored_tensors() -> None:
    raw = neuralop_small.load("darcy_test_16.pt")
    assert raw["x"].dtype == torch.bool and tuple(raw["x"].shape) == (50, 16, 16)
    ds = neuralop_small.open_dataset("darcy_test_16.pt", indices=range(5))
    x, y = ds.arrays()
    assert x.shape == (5, 1, 16, 16)
    assert torch.equal(torch.from_numpy(x[:, 0]), raw["x"][:5].float())
    assert torch.equal(torch.from_numpy(y[:, 0]), raw["y"][:5])


def test_explicit_root_missing_and_corrupt_files(tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    copy.mkdir()
    shutil.copy(neuralop_small.ROOT / "darcy_test_16.pt", copy)
    assert neuralop_small.file_path("darcy_test_16.pt", root=copy) == copy / "darcy_test_16.pt"
    with pytest.raises(FileNotFoundError, match=r"copy/darcy_test_32\.pt: neuraloperator small dataset not found"):
        neuralop_small.file_path("darcy_test_32.pt", root=copy)
    data = bytearray((copy / "darcy_test_16.pt").read_bytes())
    data[-100] ^= 0xFF  # one flipped byte
    (copy / "darcy_test_16.pt").write_bytes(bytes(data))
    with pytest.raises(DataFormatError, match=r"darcy_test_16\.pt: SHA-256 [0-9a-f]{64} differs from the "
                                              r"published file's d2b19af9"):
        neuralop_small.open_dataset("darcy_test_16.pt", root=copy)
    with pytest.raises(ValueError, match=r"unknown neuraloperator small dataset 'darcy_train_32\.pt'; "
                                         r"available: darcy_train_16\.pt"):
        neuralop_small.file_path("darcy_train_32.pt")


def test_bench_data_reads_the_repository_copy() -> None:
    from pdesurrogates.bench import datasets

    data = datasets.neuralop_darcy(10, 4, test_resolutions=(16, 32))
    raw = neuralop_small.load("darcy_test_32.pt")
    assert data.train[0].shape == (10, 1, 16, 16) and data.tests["32"][1].shape == (4, 1, 32, 32)
    assert torch.equal(data.tests["32"][1][:, 0], raw["y"][:4])
    with pytest.raises(FileNotFoundError, match="darcy_train_16.pt"):
        datasets.neuralop_darcy(10, 4, root=REPO / "no_such_folder")

