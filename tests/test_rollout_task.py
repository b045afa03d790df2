"""Task ``rollout``: recurrent-in-time training on Navier-Stokes trajectories (tiny sizes, seconds)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from pdesurrogates.errors import UserInputError
from pdesurrogates.train import config_from_dict, train
from pdesurrogates.train.tasks.rollout import load_frames, rollout, rollout_errors


@pytest.fixture(scope="module")
def ns_file(tmp_path_factory):
    """12 Navier-Stokes trajectories (nu = 1e-3, FNO forcing) on 16^2, frames at t = 1..8."""
    from pdesurrogates.data import write_arrays
    from pdesurrogates.physics.problems import get_problem

    problem = get_problem("navier-stokes", resolution=16, nu=1e-3, t_final=8.0, record_every=1.0,
                          solver_resolution=16)
    x, y = problem.generate(range(12), seed=0, device="cpu")
    path = tmp_path_factory.mktemp("ns") / "ns16.h5"
    write_arrays(path, x, y, pde="navier-stokes", params=problem.to_dict(), seed=0)
    return path


def _raw(path, epochs=6, **train):
    return {"task": "rollout", "seed": 0,
            "data": {"train": str(path), "n_train": 8, "test_start": 8, "n_test": 4, "history": 3, "horizon": 4},
            "model": {"name": "fno", "width": 8, "modes": [6, 5], "n_layers": 2},
            "optimizer": {"name": "adam", "lr": 3e-3, "weight_decay": 0.0},
            "schedule": {"name": "constant"},
            "train": {"epochs": epochs, "batch_size": 4, **train}, "eval": {"every": 1}}


class Persistence(nn.Module):
    """Predicts that the next frame equals the last one."""

    def forward(self, window):
        return window[:, -1:]


def test_rollout_errors_of_persistence_match_numpy(ns_file):
    frames = load_frames(str(ns_file), 0, 12, 1, "test")
    assert frames.shape == (12, 8, 16, 16)
    h, steps = 3, 4
    errors = rollout_errors(Persistence(), frames, h, steps)
    f = frames.double().numpy()
    pred = np.repeat(f[:, h - 1:h], steps, axis=1)
    target = f[:, h:h + steps]
    full = np.linalg.norm((pred - target).reshape(12, -1), axis=1) / np.linalg.norm(target.reshape(12, -1), axis=1)
    last = (np.linalg.norm((pred[:, -1] - target[:, -1]).reshape(12, -1), axis=1)
            / np.linalg.norm(target[:, -1].reshape(12, -1), axis=1))
    assert errors["l2"] == pytest.approx(full.mean(), rel=1e-5)
    assert errors["l2_last"] == pytest.approx(last.mean(), rel=1e-5)
    assert 0 < errors["l2_step"] < errors["l2_last"]  # persistence gets worse with every step


def test_rollout_feeds_predictions_back():
    class AddOne(nn.Module):
        def forward(self, window):
            return window[:, -1:] + 1

    out = rollout(AddOne(), torch.zeros(2, 3, 4, 4), 5)
    assert torch.equal(out[:, :, 0, 0], torch.arange(1, 6).float().expand(2, 5))


def test_rollout_training_beats_persistence(ns_file, tmp_path):
    summary = train(config_from_dict(_raw(ns_file, epochs=30)), tmp_path / "run", device="cpu", progress=False)
    assert summary["status"] == "finished"
    best, last = summary["best"], summary["final"]
    frames = load_frames(str(ns_file), 8, 4, 1, "test")
    baseline = rollout_errors(Persistence(), frames, 3, 4)["l2"]
    assert last["test0_l2"] < 0.7 * baseline, (last, baseline)  # 8 training trajectories, 30 epochs
    import csv

    rows = list(csv.DictReader((tmp_path / "run" / "metrics.csv").open()))
    assert float(rows[-1]["train_loss"]) < 0.5 * float(rows[0]["train_loss"])
    assert best["value"] <= last["test0_l2"]


def test_rollout_resume_is_bit_identical(ns_file, tmp_path):
    straight = train(config_from_dict(_raw(ns_file, epochs=3)), tmp_path / "a", device="cpu", progress=False)
    cut = train(config_from_dict(_raw(ns_file, epochs=3, stop_after=1)), tmp_path / "b", device="cpu", progress=False)
    assert cut["status"] == "stopped"
    resumed = train(config_from_dict(_raw(ns_file, epochs=3)), None, resume=tmp_path / "b", device="cpu",
                    progress=False)
    assert resumed["status"] == "finished"
    wa = torch.load(tmp_path / "a" / "checkpoints" / "last" / "weights.pt", weights_only=True)
    wb = torch.load(tmp_path / "b" / "checkpoints" / "last" / "weights.pt", weights_only=True)
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert straight["final"] == resumed["final"]


def test_rollout_bad_input_named(ns_file, tmp_path):
    raw = _raw(ns_file)
    raw["data"]["horizon"] = 6  # 3 + 6 > 8 frames
    with pytest.raises(UserInputError, match="history 3 \\+ horizon 6"):
        train(config_from_dict(raw), tmp_path / "r1", device="cpu", progress=False)
    raw = _raw(ns_file)
    raw["data"]["test_start"] = 4  # overlaps the 8 training trajectories
    with pytest.raises(UserInputError, match="test_start >= n_train"):
        train(config_from_dict(raw), tmp_path / "r2", device="cpu", progress=False)
    raw = _raw(ns_file)
    raw["data"]["histroy"] = 3
    with pytest.raises(UserInputError, match="did you mean 'history'"):
        config_from_dict(raw)
