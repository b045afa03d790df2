"""The standard-benchmark script on tiny sizes: resumable rows, final evaluation, reports (seconds)."""

from __future__ import annotations

import json

import pytest
import torch

from pdesurrogates.bench import standard
from pdesurrogates.errors import UserInputError


@pytest.fixture(scope="module")
def darcy_file(tmp_path_factory):
    """16 Darcy samples (FNO setting) on a 21^2 node grid: train at 6^2, test at 6, 11, 21."""
    from pdesurrogates.data import write_arrays
    from pdesurrogates.physics.problems import get_problem

    problem = get_problem("darcy", resolution=21)
    x, y = problem.generate(range(16), seed=0, device="cpu")
    path = tmp_path_factory.mktemp("darcy") / "darcy21.h5"
    write_arrays(path, x, y, pde="darcy", params=problem.to_dict(), seed=0)
    return path


def _bench(path, epochs=3):
    return standard.darcy(path, epochs=epochs, resolution=11, test_resolutions=(11, 21), n_train=12, n_test=4,
                          tiny=True)


def test_paper_weight_decay_is_the_batch_summed_loss_update():
    """Adam on the batch mean with wd/B takes the same step as Adam on the batch sum with wd."""
    torch.manual_seed(0)
    x, y = torch.randn(20, 5), torch.randn(20, 1)
    steps = []
    for reduction, wd in (("sum", 1e-2), ("mean", standard.paper_weight_decay(1e-2, 20))):
        torch.manual_seed(1)
        lin = torch.nn.Linear(5, 1)
        opt = torch.optim.Adam(lin.parameters(), lr=1e-2, weight_decay=wd)
        for _ in range(3):
            opt.zero_grad()
            err = ((lin(x) - y) ** 2).squeeze(1)
            (err.sum() if reduction == "sum" else err.mean()).backward()
            opt.step()
        steps.append(lin.weight.detach().clone())
    torch.testing.assert_close(steps[0], steps[1], rtol=1e-5, atol=1e-7)


def test_step_recipe_keeps_the_number_of_halvings():
    assert standard.step_recipe(25)["schedule"]["step_epochs"] == 5
    assert standard.step_recipe(500)["schedule"]["step_epochs"] == 100
    assert standard.step_recipe(25)["optimizer"]["weight_decay"] == pytest.approx(5e-6)


def test_rows_stop_resume_skip_and_report(darcy_file, tmp_path):
    bench = _bench(darcy_file)
    row = bench.row("fno")
    runs = tmp_path / "runs"
    status = standard.train_row(bench, row, runs, stop_after=1)
    assert status == {"state": "started", "epochs_done": 1}
    paths = standard.report(bench, runs, out_dir=tmp_path / "out")
    payload = json.loads(paths["json"].read_text())
    fno = next(r for r in payload["runs"] if r["model"] == "fno")
    assert fno["epochs"] == "1/3" and fno["state"] == "started" and len(fno["curve"]["test_l2"]) == 1
    assert next(r for r in payload["runs"] if r["model"] == "unet")["state"] == "missing"
    assert "1/3" in paths["md"].read_text() and paths["png"].is_file()
    assert payload["environment"]["device"] == "cpu" and "git_sha" in payload["environment"]

    status = standard.train_row(bench, row, runs)  # resumes and finishes
    assert status == {"state": "finished", "epochs_done": 3}
    run_dir = runs / "darcy" / "fno"
    final = json.loads((run_dir / "final_eval.json").read_text())
    assert set(final) >= {"11", "21"}

    # the resumed run equals an uninterrupted one
    straight = standard.train_row(bench, row, tmp_path / "straight")
    assert straight["state"] == "finished"
    w1 = torch.load(run_dir / "checkpoints" / "last" / "weights.pt", weights_only=True)
    w2 = torch.load(tmp_path / "straight" / "darcy" / "fno" / "checkpoints" / "last" / "weights.pt",
                    weights_only=True)
    assert all(torch.equal(w1[k], w2[k]) for k in w1)

    # the 21^2 error is an independent evaluation of the saved model on the unseen samples
    from pdesurrogates.data import open_dataset
    from pdesurrogates.losses import relative_lp
    from pdesurrogates.train.evaluation import load_predictor

    predict, _ = load_predictor(run_dir / "checkpoints" / "last")
    ds = open_dataset(darcy_file, indices=range(12, 16), in_memory=True)
    x, y = ds.arrays()
    with torch.no_grad():
        err = relative_lp(predict(torch.as_tensor(x)), torch.as_tensor(y), reduction="none").mean()
    assert final["21"]["l2"] == pytest.approx(float(err), rel=1e-5)

    # a finished row is skipped; a changed recipe is refused rather than resumed
    mtime = (run_dir / "checkpoints" / "last" / "weights.pt").stat().st_mtime_ns
    assert standard.train_row(bench, row, runs)["state"] == "finished"
    assert (run_dir / "checkpoints" / "last" / "weights.pt").stat().st_mtime_ns == mtime
    with pytest.raises(UserInputError, match="another config"):
        changed = _bench(darcy_file, epochs=4)
        standard.train_row(changed, changed.row("fno"), runs)

    paths = standard.report(bench, runs, out_dir=tmp_path / "out")
    table = json.loads(paths["json"].read_text())["rows"]
    assert table[0]["model"] == "fno" and table[0]["l2_21"] == pytest.approx(final["21"]["l2"])
    assert table[0]["epochs"].startswith("3/3")


def test_main_report_only_and_missing_data(tmp_path, capsys):
    out = tmp_path / "out"
    assert standard.main(["burgers", "--report", "--runs", str(tmp_path / "runs"), "--out-dir", str(out)]) == 0
    payload = json.loads((out / "standard_burgers.json").read_text())
    assert [r["state"] for r in payload["runs"]] == ["missing"] * len(payload["runs"])
    assert payload["rows"][0]["published_l2_256"] == 0.0149
    missing = tmp_path / "none.h5"
    assert standard.main(["burgers", "--data", str(missing), "--runs", str(tmp_path / "runs"),
                          "--out-dir", str(out)]) == 2
    assert "generate burgers" in capsys.readouterr().out


def test_every_row_config_is_valid():
    from pdesurrogates.train import config_from_dict

    for bench in (standard.darcy("d.h5"), standard.burgers("b.h5"), standard.navier_stokes("n.h5")):
        for row in bench.rows:
            config = config_from_dict(standard.row_config(bench, row))
            assert config.train.epochs == row.tables["train"]["epochs"]
