"""The training loop: determinism, bit-identical resume, Ctrl-C, NaN stop, checkpoints, schedules."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
from pathlib import Path

import pytest
import torch

from pdesurrogates.train import config_from_dict, train
from pdesurrogates.train.config import ScheduleConfig
from pdesurrogates.train.engine import STATE_FILE, LossScaler, TrainingDiverged, lr_factor


@pytest.fixture(scope="module")
def darcy_files(tmp_path_factory) -> dict[str, Path]:
    """Small Darcy files from the physics generator (17 x 17 nodes)."""
    from pdesurrogates.data import write_dataset
    from pdesurrogates.physics.problems import get_problem

    folder = tmp_path_factory.mktemp("darcy")
    problem = get_problem("darcy", resolution=17)
    files = {}
    for name, n, seed in (("train", 64, 0), ("test", 16, 1)):
        files[name] = write_dataset(folder / f"{name}.h5", lambda idx, s=seed: problem.generate(idx, s), n,
                                    pde="darcy", input_shape=problem.input_shape,
                                    output_shape=problem.output_shape, params=problem.to_dict(), seed=seed,
                                    progress=False)
    return files


def make_config(files, **sections):
    raw = {
        "seed": 0,
        "data": {"train": str(files["train"]), "test": [str(files["test"])], "n_train": 32,
                 "test_strides": [1, 2]},
        "model": {"name": "fno", "width": 8, "modes": 4, "n_layers": 2},
        "optimizer": {"lr": 3e-3},
        "schedule": {"name": "cosine", "warmup_epochs": 0.5},
        "train": {"epochs": 3, "batch_size": 4, "accumulate": 2, "grad_clip": 1.0},
        "eval": {"every": 1, "batch_size": 8},
    }
    for key, value in sections.items():
        raw[key] = {**raw.get(key, {}), **value}
    return config_from_dict(raw)


def weights(run: Path, which: str = "last") -> dict[str, torch.Tensor]:
    return torch.load(run / "checkpoints" / which / "weights.pt", weights_only=True)


def read_metrics(run: Path, name: str = "metrics.csv") -> list[dict]:
    with (run / name).open() as fh:
        return list(csv.DictReader(fh))


def assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key, value in a.items():
        assert torch.equal(value, b[key]), f"{key} differs"


def test_stop_and_resume_and_ctrl_c_give_bit_identical_weights(darcy_files, tmp_path):
    cfg = make_config(darcy_files)
    full = train(cfg, tmp_path / "full", device="cpu", progress=False)
    assert full["status"] == "finished" and full["epochs_completed"] == 3
    assert full["step"] == 3 * 4  # 32 samples / (4 x 2 accumulation) = 4 steps per epoch

    # a second run is deterministic
    again = train(cfg, tmp_path / "again", device="cpu", progress=False)
    assert_same_weights(weights(tmp_path / "full"), weights(tmp_path / "again"))
    assert again["final"] == full["final"]

    # stopped after epoch 1 (schedule unchanged), then resumed
    stopped = train(dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, stop_after=1)),
                    tmp_path / "split", device="cpu", progress=False)
    assert stopped["status"] == "stopped" and stopped["epochs_completed"] == 1
    resumed = train(cfg, None, resume=tmp_path / "split", device="cpu", progress=False)
    assert resumed["status"] == "finished" and resumed["step"] == full["step"]
    assert_same_weights(weights(tmp_path / "full"), weights(tmp_path / "split"))
    assert_same_weights(weights(tmp_path / "full", "best"), weights(tmp_path / "split", "best"))
    assert read_metrics(tmp_path / "split", "steps.csv") == read_metrics(tmp_path / "full", "steps.csv")
    rows_full, rows_split = read_metrics(tmp_path / "full"), read_metrics(tmp_path / "split")
    assert [r["train_loss"] for r in rows_split] == [r["train_loss"] for r in rows_full]
    assert [r["test0_s1_l2"] for r in rows_split] == [r["test0_s1_l2"] for r in rows_full]

    # Ctrl-C in the middle of epoch 2 (after optimiser step 6 of 12), then resume
    def interrupt(event, info):
        if event == "step" and info["step"] == 6:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(cfg, tmp_path / "ctrlc", device="cpu", progress=False, callback=interrupt)
    state = torch.load(tmp_path / "ctrlc" / "checkpoints" / "last" / STATE_FILE, weights_only=True)
    assert (state["epoch"], state["step"], state["batch"]) == (1, 6, 4)
    assert json.loads((tmp_path / "ctrlc" / "summary.json").read_text())["status"] == "interrupted"
    with pytest.raises(ValueError, match="stopped mid-epoch with 8 batches per epoch, this config gives 4"):
        train(make_config(darcy_files, train={"batch_size": 8}), None, resume=tmp_path / "ctrlc", device="cpu",
              progress=False)
    train(cfg, tmp_path / "ctrlc", resume=tmp_path / "ctrlc", device="cpu", progress=False)
    assert_same_weights(weights(tmp_path / "full"), weights(tmp_path / "ctrlc"))
    assert [r["train_loss"] for r in read_metrics(tmp_path / "ctrlc")] == [r["train_loss"] for r in rows_full]


def test_nan_loss_stops_naming_the_step_and_keeps_last_good_checkpoint(darcy_files, tmp_path):
    cfg = make_config(darcy_files)
    after_epoch_1 = {}

    def poison(event, info):
        if event == "step" and info["step"] == 4:  # last step of epoch 1
            after_epoch_1.update({k: v.clone() for k, v in info["model"].state_dict().items()
                                  if isinstance(v, torch.Tensor)})
        if event == "step" and info["step"] == 5:
            with torch.no_grad():
                next(info["model"].parameters()).fill_(float("nan"))

    with pytest.raises(TrainingDiverged) as err:
        train(cfg, tmp_path / "run", device="cpu", progress=False, callback=poison)
    message = str(err.value)
    assert "epoch 2, optimiser step 6" in message and "nan" in message
    assert str(tmp_path / "run" / "checkpoints" / "last") in message
    state = torch.load(tmp_path / "run" / "checkpoints" / "last" / STATE_FILE, weights_only=True)
    assert state["epoch"] == 1 and state["step"] == 4
    kept = weights(tmp_path / "run")
    assert all(torch.isfinite(v).all() for v in kept.values() if v.is_floating_point() or v.is_complex())
    assert_same_weights(kept, after_epoch_1)
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["status"] == "diverged"


def test_training_learns_and_checkpoint_loads_as_surrogate(darcy_files, tmp_path):
    from pdesurrogates.data import open_dataset
    from pdesurrogates.losses import relative_lp
    from pdesurrogates.models import Surrogate

    cfg = make_config(darcy_files, data={"n_train": 64}, train={"epochs": 10, "accumulate": 1, "batch_size": 4},
                      model={"width": 16, "modes": 6}, eval={"every": 5})
    summary = train(cfg, tmp_path / "run", device="cpu", progress=False)
    test = open_dataset(darcy_files["test"], in_memory=True)
    train_set = open_dataset(darcy_files["train"], indices=range(64), in_memory=True)
    x, y = test.arrays()
    x, y = torch.from_numpy(x), torch.from_numpy(y)
    mean_field = torch.from_numpy(train_set.arrays()[1]).mean(0, keepdim=True)
    baseline = float(relative_lp(mean_field.expand_as(y), y))  # predicting the mean training solution
    surrogate = Surrogate.load(tmp_path / "run" / "checkpoints" / "best")
    error = float(relative_lp(surrogate(x), y))
    assert error < 0.7 * baseline, (error, baseline)  # measured: 0.156 vs 0.259
    # the summary's metric is what the saved best checkpoint gives
    best_epoch = summary["best"]["epoch"]
    rows = read_metrics(tmp_path / "run")
    assert math.isclose(float(rows[best_epoch - 1]["test0_s1_l2"]), error, rel_tol=1e-5)
    assert best_epoch in (5, 10)
    assert math.isclose(summary["best"]["value"], error, rel_tol=1e-5)
    # the loss went down and the zero-shot column exists
    assert float(rows[-1]["train_loss"]) < 0.5 * float(rows[0]["train_loss"])
    assert rows[0]["test0_s2_l2"] == "" and float(rows[4]["test0_s2_l2"]) > 0  # evaluated every 5 epochs
    resolved = (tmp_path / "run" / "config.toml").read_text()
    assert "n_train = 64" in resolved and str(darcy_files["train"]) in resolved


def test_existing_run_is_not_overwritten(darcy_files, tmp_path):
    cfg = make_config(darcy_files, train={"epochs": 1}, data={"n_train": 8})
    train(cfg, tmp_path / "run", device="cpu", progress=False)
    with pytest.raises(FileExistsError, match="--overwrite"):
        train(cfg, tmp_path / "run", device="cpu", progress=False)
    (tmp_path / "run" / "notes.txt").write_text("mine")
    train(cfg, tmp_path / "run", device="cpu", progress=False, overwrite=True)
    assert (tmp_path / "run" / "notes.txt").read_text() == "mine"  # only the run's own files are replaced
    with pytest.raises(FileNotFoundError, match="training_state.pt"):
        train(cfg, None, resume=tmp_path / "nothing", device="cpu", progress=False)


def test_bad_data_and_model_settings_are_named(darcy_files, tmp_path):
    with pytest.raises(ValueError, match="asks for samples 0..999 but .*holds 64"):
        train(make_config(darcy_files, data={"n_train": 1000}), tmp_path / "a", device="cpu", progress=False)
    with pytest.raises(ValueError, match="in_channels = 3 but the training data has 1"):
        train(make_config(darcy_files, model={"in_channels": 3}), tmp_path / "b", device="cpu", progress=False)
    with pytest.raises(FileNotFoundError, match="missing.h5 not found"):
        train(make_config(darcy_files, data={"train": "missing.h5"}), tmp_path / "c", device="cpu",
              progress=False)
    with pytest.raises(ValueError, match="monitor 'nope' is not a metric"):
        train(make_config(darcy_files, eval={"monitor": "nope"}, train={"epochs": 1}), tmp_path / "d",
              device="cpu", progress=False)


def test_learning_rate_schedules():
    spe, epochs = 10, 5
    warm = ScheduleConfig(name="cosine", warmup_epochs=1)
    factors = [lr_factor(warm, s, spe, epochs) for s in range(spe * epochs)]
    assert factors[:spe] == pytest.approx([(s + 1) / spe for s in range(spe)])  # linear warm-up
    assert factors[spe] == pytest.approx(1.0) and factors[-1] < 0.01  # cosine to ~0
    assert all(a >= b for a, b in zip(factors[spe:], factors[spe + 1:]))
    step = ScheduleConfig(name="step", step_epochs=2, gamma=0.5)
    assert [lr_factor(step, e * spe, spe, epochs) for e in range(5)] == [1, 1, 0.5, 0.5, 0.25]
    assert lr_factor(ScheduleConfig(name="constant"), 37, spe, epochs) == 1.0


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_follows_float32(darcy_files, tmp_path, precision):
    """Autocast runs on the CPU too (fp16 with loss scaling of complex spectral weights)."""
    cfg = make_config(darcy_files, train={"epochs": 1, "accumulate": 1}, eval={"every": 1})
    ref = train(cfg, tmp_path / "fp32", device="cpu", progress=False)
    low = train(dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, precision=precision)),
                tmp_path / precision, device="cpu", progress=False)
    a = [float(r["loss"]) for r in read_metrics(tmp_path / "fp32", "steps.csv")]
    b = [float(r["loss"]) for r in read_metrics(tmp_path / precision, "steps.csv")]
    assert b == pytest.approx(a, rel=0.05)
    assert low["final"]["test0_s1"]["l2"] == pytest.approx(ref["final"]["test0_s1"]["l2"], rel=0.05)


def test_loss_scaler_skips_overflow_and_unscales():
    p = torch.nn.Parameter(torch.zeros(3, dtype=torch.complex64))
    scaler = LossScaler(enabled=True, init_scale=8.0, growth_interval=2)
    p.grad = torch.full((3,), 16.0 + 8.0j)
    assert scaler.unscale_([p]) and torch.equal(p.grad, torch.full((3,), 2.0 + 1.0j))
    scaler.update(True)
    p.grad = torch.tensor([1.0, float("inf"), 0.0], dtype=torch.complex64)
    assert not scaler.unscale_([p])
    scaler.update(False)
    assert scaler.scale == 4.0 and scaler.good_steps == 0
    scaler.update(True), scaler.update(True)
    assert scaler.scale == 8.0
    off = LossScaler(enabled=False)
    assert off.scale_loss(torch.tensor(2.0)) == 2.0 and off.unscale_([p])


@pytest.mark.parametrize("in_shape, out_shape", [((1, 16), (1, 16)), ((1, 8, 8), (1, 3, 8, 8))],
                         ids=["1d", "2d-with-time-axis"])
def test_other_layouts_train_and_predict(tmp_path, in_shape, out_shape):
    """1D fields, and outputs with a time axis (flattened into the model's channels and back)."""
    import numpy as np

    from pdesurrogates.data import DatasetWriter
    from pdesurrogates.train.evaluation import load_predictor

    rng = np.random.default_rng(0)
    x = rng.standard_normal((12, *in_shape)).astype(np.float32)
    reps = out_shape[1] if len(out_shape) > len(in_shape) else 1
    y = np.stack([np.sin(x) * (k + 1) for k in range(reps)], axis=2) if reps > 1 else np.sin(x)
    path = tmp_path / "toy.h5"
    with DatasetWriter.open(path, pde="toy", n_samples=12, input_shape=in_shape, output_shape=out_shape,
                            params={}, seed=0) as writer:
        writer.append(x, y.astype(np.float32))
        writer.finalize()
    cfg = config_from_dict({"data": {"train": str(path), "test": [str(path)], "n_train": 8, "test_start": 8},
                            "model": {"name": "fno", "width": 8, "modes": 4, "n_layers": 1},
                            "train": {"epochs": 2, "batch_size": 4}})
    summary = train(cfg, tmp_path / "run", device="cpu", progress=False)
    assert summary["model"]["out_channels"] == reps and summary["model"]["ndim"] == len(in_shape) - 1
    predictor, _ = load_predictor(tmp_path / "run")
    out = predictor(torch.from_numpy(x[:2]))
    assert out.shape == (2, *out_shape)
    assert summary["final"]["test0_s1"]["l2"] > 0


def test_resolutions_instead_of_strides(darcy_files, tmp_path):
    cfg = make_config(darcy_files, data={"train_resolution": 9, "test_strides": [], "test_resolutions": [9, 17]},
                      train={"epochs": 1})
    summary = train(cfg, tmp_path / "run", device="cpu", progress=False)
    assert [(e["stride"], e["resolution"]) for e in summary["eval_sets"]] == [(2, "9x9"), (1, "17x17")]
    assert summary["model"]["ndim"] == 2 and "train_stride = 2" in (tmp_path / "run" / "config.toml").read_text()
    with pytest.raises(ValueError, match="resolution 10 is not a subsampling of the 17-point grid"):
        train(make_config(darcy_files, data={"train_resolution": 10}), tmp_path / "bad", device="cpu",
              progress=False)


def test_periodicity_and_resolution_helpers():
    from pdesurrogates.train.evaluation import is_periodic, stride_for_resolution

    assert is_periodic({"pde": "burgers"}) and is_periodic({"pde": "navier-stokes"})
    assert not is_periodic({"pde": "darcy", "grid": {}})
    assert is_periodic({"pde": "toy", "grid": {"boundary": "periodic"}})
    assert [stride_for_resolution((421, 421), r) for r in (421, 211, 141, 106, 85, 61)] == [1, 2, 3, 4, 5, 7]
    assert stride_for_resolution((64, 64), 32) == 2 and stride_for_resolution((8192,), 1024) == 8
    with pytest.raises(ValueError, match="available: \\[17, 9, 5, 3"):
        stride_for_resolution((17, 17), 12)


def test_one_file_split_into_train_and_test(darcy_files, tmp_path):
    same = {"test": [str(darcy_files["train"])], "n_train": 32, "test_strides": [1]}
    with pytest.raises(ValueError, match="must start after the 32 training samples"):
        train(make_config(darcy_files, data=same), tmp_path / "a", device="cpu", progress=False)
    cfg = make_config(darcy_files, data={**same, "test_start": 48, "n_test": 16}, train={"epochs": 1})
    summary = train(cfg, tmp_path / "b", device="cpu", progress=False)
    assert summary["final"]["test0_s1"]["n"] == 16
    with pytest.raises(ValueError, match="asks for samples 60..75 but .* holds 64"):
        train(make_config(darcy_files, data={**same, "test_start": 60, "n_test": 16}), tmp_path / "c",
              device="cpu", progress=False)


@pytest.mark.parametrize("model", [
    {"name": "tfno", "width": 8, "modes": 4, "n_layers": 2},
    {"name": "mgno", "width": 8, "n_layers": 2, "levels": 3},
    {"name": "mg-tfno", "width": 8, "modes": 4, "n_layers": 2, "levels": 1},
    {"name": "unet", "width": 8, "depth": 2},
], ids=lambda m: m["name"])
def test_every_model_trains_resumes_and_reloads(darcy_files, tmp_path, model):
    from pdesurrogates.models import Surrogate

    base = make_config(darcy_files, data={"n_train": 16, "test_strides": [1]}, train={"epochs": 2, "accumulate": 1})
    cfg = dataclasses.replace(base, model=config_from_dict({"data": {"train": "x"}, "model": model}).model)
    full = train(cfg, tmp_path / "full", device="cpu", progress=False)
    stopped = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, stop_after=1))
    train(stopped, tmp_path / "split", device="cpu", progress=False)
    train(cfg, None, resume=tmp_path / "split", device="cpu", progress=False)
    assert_same_weights(weights(tmp_path / "full"), weights(tmp_path / "split"))
    x = torch.randn(2, 1, 17, 17).abs() + 3.0
    assert Surrogate.load(tmp_path / "full" / "checkpoints" / "last")(x).shape == (2, 1, 17, 17)
    assert full["final"]["test0_s1"]["l2"] > 0


def test_lazy_reading_gives_the_same_run_as_in_memory(darcy_files, tmp_path):
    eager = make_config(darcy_files, data={"n_train": 16}, train={"epochs": 1})
    lazy = make_config(darcy_files, data={"n_train": 16, "in_memory": False}, train={"epochs": 1})
    a = train(eager, tmp_path / "eager", device="cpu", progress=False)
    b = train(lazy, tmp_path / "lazy", device="cpu", progress=False)
    assert_same_weights(weights(tmp_path / "eager"), weights(tmp_path / "lazy"))
    assert a["final"] == b["final"]
