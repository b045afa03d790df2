"""Symmetry augmentation: the symmetries are exact for our Darcy solver, the maps follow the input
into the target, and training with them is deterministic and resumable."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pdesurrogates.data.symmetry import check_symmetries, random_symmetries, symmetry_generator
from pdesurrogates.errors import UserInputError
from pdesurrogates.physics.darcy import sample_coefficient, solve_darcy


def test_darcy_on_a_node_grid_is_symmetric_under_transpose_and_reflections():
    """-div(a grad u) = 1, u = 0 on the boundary: u[a^T] = u[a]^T and u[flip a] = flip u[a] to
    round-off (the maps the augmentation relies on, checked on the solver, not assumed)."""
    a = np.asarray(sample_coefficient(33, torch.Generator().manual_seed(3)), dtype=np.float64)
    u = solve_darcy(a)
    scale = np.abs(u).max()
    assert np.abs(solve_darcy(a.T) - u.T).max() <= 1e-10 * scale
    assert np.abs(solve_darcy(a[::-1]) - u[::-1]).max() <= 1e-10 * scale
    assert np.abs(solve_darcy(a[:, ::-1]) - u[:, ::-1]).max() <= 1e-10 * scale
    # and the map is not trivial on this sample
    assert np.abs(u.T - u).max() > 1e-3 * scale


def test_maps_follow_the_input_into_the_target():
    x = torch.randn(64, 2, 5, 5)
    y = torch.stack([x[:, 0] * 3.0, x[:, 1] - 1.0], 1)  # a pointwise map of x: commutes with any grid map
    for names in (("transpose",), ("flip",), ("transpose", "flip")):
        xs, ys = random_symmetries(x, y, names, torch.Generator().manual_seed(0))
        assert torch.equal(ys, torch.stack([xs[:, 0] * 3.0, xs[:, 1] - 1.0], 1))
        changed = (xs != x).flatten(1).any(1)
        assert 0 < int(changed.sum()) < 64  # some samples mapped, some kept
    xs, _ = random_symmetries(x, None, ("transpose",), torch.Generator().manual_seed(1))
    for i in range(64):  # each sample is itself or its transpose
        assert torch.equal(xs[i], x[i]) or torch.equal(xs[i], x[i].transpose(-1, -2))
    xs, _ = random_symmetries(x, None, ("flip",), torch.Generator().manual_seed(2))
    for i in range(64):
        flips = [x[i], x[i].flip(-1), x[i].flip(-2), x[i].flip(-1, -2)]
        assert any(torch.equal(xs[i], f) for f in flips)


def test_generator_is_fixed_by_seed_epoch_and_batch():
    a = torch.rand(4, generator=symmetry_generator(0, 3, [5, 1, 7]))
    assert torch.equal(a, torch.rand(4, generator=symmetry_generator(0, 3, [5, 1, 7])))
    assert not torch.equal(a, torch.rand(4, generator=symmetry_generator(0, 4, [5, 1, 7])))
    assert not torch.equal(a, torch.rand(4, generator=symmetry_generator(1, 3, [5, 1, 7])))


def test_bad_symmetries_are_refused():
    with pytest.raises(UserInputError, match="unknown symmetries"):
        check_symmetries(["rotate"], (8, 8))
    with pytest.raises(UserInputError, match="equal size"):
        check_symmetries(["transpose"], (8, 9))
    with pytest.raises(UserInputError, match="at least 2 spatial axes"):
        check_symmetries(["transpose"], (8,))
    with pytest.raises(UserInputError, match="twice"):
        check_symmetries(["flip", "flip"], (8, 8))
    with pytest.raises(UserInputError, match="same grid"):
        random_symmetries(torch.zeros(2, 1, 4, 4), torch.zeros(2, 1, 8, 8), ("flip",), torch.Generator())


def test_surrogate_training_with_symmetries_resumes_bit_identically(tmp_path):
    """[data] symmetries in a config: the run differs from one without, and a run stopped after one
    epoch and resumed ends with the same weights as an uninterrupted one."""
    import dataclasses

    from pdesurrogates.data import write_arrays
    from pdesurrogates.train import config_from_dict, train

    gen = torch.Generator().manual_seed(0)
    a = np.stack([np.asarray(sample_coefficient(17, gen), dtype=np.float64) for _ in range(24)])
    u = np.stack([solve_darcy(ai) for ai in a])
    path = write_arrays(tmp_path / "d.h5", a[:, None], u[:, None], pde="darcy")
    raw = {"seed": 0, "data": {"train": str(path), "test": [str(path)], "n_train": 16, "test_start": 16,
                               "symmetries": ["transpose", "flip"]},
           "model": {"name": "fno", "width": 8, "modes": 4, "n_layers": 1},
           "train": {"epochs": 2, "batch_size": 4}}
    cfg = config_from_dict(raw)
    plain = config_from_dict({**raw, "data": {**raw["data"], "symmetries": []}})
    train(cfg, tmp_path / "full", device="cpu", progress=False)
    train(plain, tmp_path / "plain", device="cpu", progress=False)
    stopped = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, stop_after=1))
    train(stopped, tmp_path / "split", device="cpu", progress=False)
    train(cfg, None, resume=tmp_path / "split", device="cpu", progress=False)

    def weights(run):
        return torch.load(run / "checkpoints" / "last" / "weights.pt", weights_only=True)

    full, split, other = weights(tmp_path / "full"), weights(tmp_path / "split"), weights(tmp_path / "plain")
    assert all(torch.equal(full[k], split[k]) for k in full)
    assert any(not torch.equal(full[k], other[k]) for k in full)
    with pytest.raises(UserInputError, match="unknown symmetries"):
        config_from_dict({**raw, "data": {**raw["data"], "symmetries": ["rotate"]}})


def test_tensor_task_applies_the_symmetries_it_is_given():
    from pdesurrogates.train import TrainSettings, fit
    from pdesurrogates.train.config import OptimizerConfig, TrainerConfig
    from pdesurrogates.train.tasks.tensors import TensorTask

    x = torch.randn(16, 1, 6, 6)
    seen = []

    def loss_fn(pred, target, inputs):
        seen.append(inputs.detach().clone())
        return ((pred - target) ** 2).mean(), {}

    model = torch.nn.Conv2d(1, 1, 3, padding=1)
    settings = TrainSettings(optimizer=OptimizerConfig(name="adam", lr=1e-3), train=TrainerConfig(epochs=1, batch_size=4),
                             seed=0)
    fit(TensorTask(model, x, 2 * x, loss_fn, batch_size=4, symmetries=("transpose",)), settings, None, device="cpu",
        progress=False)
    batches = torch.cat(seen)
    originals = [any(torch.equal(b, xi) for xi in x) for b in batches]
    transposed = [any(torch.equal(b, xi.transpose(-1, -2)) for xi in x) for b in batches]
    assert all(o or t for o, t in zip(originals, transposed)) and any(transposed) and any(originals)
    with pytest.raises(UserInputError, match="equal size"):
        TensorTask(model, torch.zeros(4, 1, 6, 7), torch.zeros(4, 1, 6, 7), loss_fn, batch_size=2,
                   symmetries=("transpose",))
