"""`pdesurrogates train | evaluate | predict | quickstart` end to end on tiny Darcy files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from pdesurrogates.cli import main


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    from pdesurrogates.data import write_dataset
    from pdesurrogates.physics.problems import get_problem

    folder = tmp_path_factory.mktemp("cli")
    problem = get_problem("darcy", resolution=17)
    out = {}
    for name, n, seed in (("train", 16, 0), ("test", 6, 1)):
        out[name] = write_dataset(folder / f"{name}.h5", lambda idx, s=seed: problem.generate(idx, s), n,
                                  pde="darcy", input_shape=problem.input_shape,
                                  output_shape=problem.output_shape, params=problem.to_dict(), seed=seed,
                                  progress=False)
    config = folder / "tiny.toml"
    config.write_text(f"""
[data]
train = "{out['train']}"
test = ["{out['test']}"]
test_strides = [1, 2]
[model]
name = "fno"
width = 8
modes = 4
n_layers = 2
[train]
epochs = 3
batch_size = 4
""")
    out["config"] = config
    return out


@pytest.fixture(scope="module")
def run_dir(files, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("runs") / "tiny"
    rc = main(["train", "--config", str(files["config"]), "--out", str(run), "--set", "train.epochs=2",
               "--set", "train.stop_after=1", "--device", "cpu", "--no-progress"])
    assert rc == 0
    assert json.loads((run / "summary.json").read_text())["status"] == "stopped"
    rc = main(["train", "--resume", str(run), "--device", "cpu", "--no-progress"])  # config from the run
    assert rc == 0
    return run


def test_train_writes_run_directory(run_dir, capsys):
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["epochs_completed"] == 2 and summary["step"] == 8
    assert "epochs = 2" in (run_dir / "config.toml").read_text()
    assert json.loads((run_dir / "config.json").read_text())["train"]["epochs"] == 2
    header = (run_dir / "metrics.csv").read_text().splitlines()[0].split(",")
    for column in ("epoch", "train_loss", "lr", "test0_s1_l2", "test0_s1_h1", "test0_s2_l2"):
        assert column in header
    assert len((run_dir / "metrics.csv").read_text().splitlines()) == 3
    for which in ("best", "last"):
        assert (run_dir / "checkpoints" / which / "weights.pt").is_file()


def test_train_user_errors_exit_2(files, run_dir, capsys, tmp_path):
    assert main(["train", "--config", str(files["config"]), "--out", str(run_dir), "--no-progress"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["train", "--config", str(files["config"]), "--out", str(tmp_path / "x"),
                 "--set", "train.epocs=2"]) == 2
    assert "did you mean 'epochs'" in capsys.readouterr().err
    assert main(["train", "--config", str(tmp_path / "none.toml")]) == 2
    assert "config file not found" in capsys.readouterr().err
    assert main(["train"]) == 2
    assert "--config FILE" in capsys.readouterr().err


def test_resume_from_a_truncated_or_foreign_training_state_is_a_sentence(files, tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    assert main(["train", "--config", str(files["config"]), "--out", str(run), "--set", "train.epochs=2",
                 "--set", "train.stop_after=1", "--device", "cpu", "--no-progress"]) == 0
    state = run / "checkpoints" / "last" / "training_state.pt"
    good = state.read_bytes()
    for bad in (good[: len(good) // 2], b"not a torch file"):
        state.write_bytes(bad)
        assert main(["train", "--resume", str(run), "--device", "cpu", "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert "cannot read" in err and str(state) in err and "Traceback" not in err
    torch.save({"weights": torch.zeros(2)}, state)  # a torch file, but not a training state
    assert main(["train", "--resume", str(run), "--device", "cpu", "--no-progress"]) == 2
    assert "is not a training state" in capsys.readouterr().err
    shutil.rmtree(run / "checkpoints")
    assert main(["train", "--resume", str(run), "--device", "cpu", "--no-progress"]) == 2
    assert "training_state.pt" in capsys.readouterr().err


def test_evaluate_refuses_data_that_does_not_fit_the_checkpoint(files, run_dir, tmp_path, capsys):
    import numpy as np

    from pdesurrogates.data import write_arrays

    x = np.random.default_rng(0).random((3, 1, 17, 17)).astype(np.float32)
    cases = {
        "channels.h5": (np.concatenate([x, x], 1), x[:, :1], "inputs have 2 channels"),
        "outputs.h5": (x, np.concatenate([x, x, x], 1), "outputs are (3, 17, 17)"),
        "rank.h5": (x[:, :, :, 0], x[:, :, :, 0], "1 spatial axes"),
    }
    for name, (a, u, message) in cases.items():
        path = write_arrays(tmp_path / name, a, u, pde="darcy")
        assert main(["evaluate", "--checkpoint", str(run_dir), "--data", str(path), "--n-plot", "0",
                     "--out", str(tmp_path / "eval")]) == 2
        err = capsys.readouterr().err
        assert message in err and str(path) in err and str(run_dir) in err, err
    for n in ("0", "-1", "99"):
        assert main(["evaluate", "--checkpoint", str(run_dir), "--data", str(files["test"]), "--n", n,
                     "--out", str(tmp_path / "eval")]) == 2
        assert "--n" in capsys.readouterr().err


def test_evaluate_reports_each_resolution_and_plots(files, run_dir, tmp_path, capsys):
    from pdesurrogates.data import open_dataset
    from pdesurrogates.losses import relative_lp
    from pdesurrogates.models import Surrogate

    out = tmp_path / "eval"
    rc = main(["evaluate", "--checkpoint", str(run_dir), "--data", str(files["test"]), "--resolution", "17", "9",
               "--out", str(out), "--n-plot", "2"])
    assert rc == 0
    report = json.loads((out / "eval_test.json").read_text())
    assert [r["resolution"] for r in report["results"]] == ["17x17", "9x9"]
    assert [r["stride"] for r in report["results"]] == [1, 2]
    for r in report["results"]:
        png = Path(r["plot"])
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    x, y = open_dataset(files["test"]).arrays()
    expected = float(relative_lp(Surrogate.load(run_dir / "checkpoints" / "best")(torch.from_numpy(x)),
                                 torch.from_numpy(y)))
    assert report["results"][0]["l2"] == pytest.approx(expected, rel=1e-5)
    assert "17x17" in capsys.readouterr().out
    # an earlier evaluation is not overwritten; an impossible resolution lists the valid ones
    assert main(["evaluate", "--checkpoint", str(run_dir), "--data", str(files["test"]), "--out", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["evaluate", "--checkpoint", str(run_dir), "--data", str(files["test"]), "--resolution", "10",
                 "--out", str(tmp_path / "e2")]) == 2
    assert "available: [17, 9, 5" in capsys.readouterr().err


def test_predict_writes_our_format(files, run_dir, tmp_path, capsys):
    from pdesurrogates.data import open_dataset
    from pdesurrogates.models import Surrogate

    out = tmp_path / "pred.h5"
    assert main(["predict", "--checkpoint", str(run_dir), "--input", str(files["test"]), "--out", str(out),
                 "--batch-size", "4", "--no-progress"]) == 0
    pred = open_dataset(out)
    x, y = pred.arrays()
    x_ref, _ = open_dataset(files["test"]).arrays()
    assert (x == x_ref).all() and y.shape == x_ref.shape
    expected = Surrogate.load(run_dir / "checkpoints" / "best")(torch.from_numpy(x_ref))
    assert torch.allclose(torch.from_numpy(y), expected, rtol=1e-5, atol=1e-7)
    assert pred.meta["provenance"]["pde"] == "darcy"
    assert main(["predict", "--checkpoint", str(run_dir), "--input", str(files["test"]), "--out", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["predict", "--checkpoint", str(tmp_path / "nope"), "--input", str(files["test"]),
                 "--out", str(tmp_path / "p2.h5")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_quickstart_tiny_runs_and_repeats(tmp_path, capsys):
    args = ["quickstart", "--out", str(tmp_path / "qs"), "--resolution", "17", "--n-train", "16", "--n-test", "4",
            "--epochs", "1", "--width", "8", "--modes", "4", "--no-progress", "--device", "cpu"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "relative L2 at 9x9 (training resolution)" in text and "relative L2 at 17x17 (zero-shot" in text
    result = json.loads((tmp_path / "qs" / "quickstart.json").read_text())
    assert [r["resolution"] for r in result["results"]] == ["9x9", "17x17"]
    assert all(Path(r["plot"]).is_file() for r in result["results"])
    import h5py

    def created():
        out = []
        for p in sorted((tmp_path / "qs" / "data").glob("*.h5")):
            with h5py.File(p, "r") as f:
                out.append(str(f.attrs["created"]))
        return out

    stamps = created()
    assert len(stamps) == 2
    weights = (tmp_path / "qs" / "run" / "checkpoints" / "best" / "weights.pt").read_bytes()
    assert main(args) == 0  # typed again: the finished run's results, nothing retrained
    again = capsys.readouterr().out
    assert "already holds a finished quickstart" in again
    assert f"relative L2 at 9x9 (training resolution): {result['results'][0]['l2']:.4f}" in again
    assert (tmp_path / "qs" / "run" / "checkpoints" / "best" / "weights.pt").read_bytes() == weights
    assert main(args + ["--overwrite"]) == 0
    assert created() == stamps  # the data were reused, not regenerated


def test_quickstart_thread_choice():
    from pdesurrogates.commands.quickstart import choose_threads

    assert choose_threads(3, cores=2, load=10.0) == 3
    assert choose_threads(0, cores=2, load=0.3) == 2
    assert choose_threads(0, cores=2, load=1.2) == 1
    assert choose_threads(0, cores=8, load=2.0) == 8


@pytest.mark.slow
def test_full_quickstart_reaches_target_error(tmp_path, capsys):
    """The default quickstart (800 Darcy samples, 12 epochs; about 2.5 CPU-minutes) ends below 0.08."""
    assert main(["quickstart", "--out", str(tmp_path / "qs"), "--no-progress", "--device", "cpu"]) == 0
    result = json.loads((tmp_path / "qs" / "quickstart.json").read_text())
    at_train, zero_shot = result["results"]
    assert (at_train["resolution"], zero_shot["resolution"]) == ("33x33", "65x65")
    assert at_train["l2"] < 0.08 and zero_shot["l2"] < 0.08  # measured: 0.030 and 0.049
    assert "relative L2 at 33x33" in capsys.readouterr().out
