"""``pdesurrogates info``: shapes, provenance and per-channel statistics checked against numpy."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from pdesurrogates.cli import main
from pdesurrogates.data import DatasetWriter


def _info_json(capsys: pytest.CaptureFixture, *args: str) -> dict:
    assert main(["info", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_info_on_our_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((70, 2, 5, 5)).astype(np.float32) + np.array([0, 10], np.float32)[:, None, None]
    y = rng.uniform(-1, 3, (70, 1, 5, 5)).astype(np.float32)
    path = tmp_path / "d.h5"
    with DatasetWriter.open(path, pde="darcy", n_samples=70, input_shape=(2, 5, 5), output_shape=(1, 5, 5),
                            params={"resolution": 5}, seed=11) as w:
        w.append(x, y)
        w.finalize()
    report = _info_json(capsys, str(path))
    assert report["format"] == "pdesurrogates" and report["pde"] == "darcy" and report["n_samples"] == 70
    assert report["provenance"]["seed"] == 11 and report["provenance"]["params"] == {"resolution": 5}
    assert {"key": "inputs", "shape": [70, 2, 5, 5], "dtype": "float32"} in report["keys"]
    for c in range(2):
        s = report["channels"]["inputs"][c]
        assert s["min"] == pytest.approx(float(x[:, c].min()))
        assert s["max"] == pytest.approx(float(x[:, c].max()))
        assert s["mean"] == pytest.approx(float(x[:, c].astype(np.float64).mean()), rel=1e-12)
    assert report["channels"]["outputs"][0]["mean"] == pytest.approx(float(y.astype(np.float64).mean()))
    assert main(["info", str(path)]) == 0
    text = capsys.readouterr().out
    assert "(N, 2, 5, 5)" in text and "seed" in text and "channel 1" in text


def test_info_on_neuralop_file(neuralop_small: Path, capsys: pytest.CaptureFixture) -> None:
    path = neuralop_small / "darcy_train_16.pt"
    raw = torch.load(path, weights_only=True)
    report = _info_json(capsys, str(path), "--max-samples", "300")
    assert report["format"] == "neuralop-pt" and report["statistics_over_samples"] == 300
    assert {"key": "x", "shape": [1000, 16, 16], "dtype": "torch.bool"} in report["keys"]
    s = report["channels"]["outputs"][0]
    assert s["max"] == pytest.approx(float(raw["y"][:300].max()))
    assert s["mean"] == pytest.approx(float(raw["y"][:300].double().mean()), rel=1e-10)
    assert report["channels"]["inputs"][0]["mean"] == pytest.approx(float(raw["x"][:300].double().mean()))


def test_info_bad_file_is_a_clean_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bad = tmp_path / "data.h5"
    bad.write_bytes(b"\x00" * 100)
    assert main(["info", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "data.h5 is not an HDF5 file" in err and "Traceback" not in err
    assert main(["info", str(tmp_path / "missing.h5")]) == 2
    assert "missing.h5: no such file" in capsys.readouterr().err


def test_info_unreadable_file_names_it(shared_tmp: Path, unprivileged, capsys: pytest.CaptureFixture) -> None:
    path = shared_tmp / "locked.h5"
    with DatasetWriter.open(path, pde="toy", n_samples=1, input_shape=(1, 4), output_shape=(1, 4),
                            params={}, seed=0) as w:
        w.append(np.zeros((1, 1, 4), np.float32), np.zeros((1, 1, 4), np.float32))
        w.finalize()
    path.chmod(0o000)
    with unprivileged():
        try:  # printed as one line by the command line, or raised with the same message
            assert main(["info", str(path)]) == 2
            message = capsys.readouterr().err
        except PermissionError as exc:
            message = str(exc)
    assert f"{path}: permission denied: the file exists but this user cannot read it" in message
    assert "Traceback" not in message
