"""``smoke`` of every benchmark suite (the run inside ``make test``), with checks on its numbers."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from pdesurrogates.bench import schema
from pdesurrogates.bench.harness import _normalise, point_key, run_suite
from pdesurrogates.bench.suites import SUITES, get_suite
from pdesurrogates.bench.training import count_flops
from pdesurrogates.cli import main as cli_main


@pytest.fixture(scope="module")
def out(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("bench")


@pytest.fixture(scope="module")
def smoke(out: Path, neuralop_small: Path):
    cache: dict[str, dict] = {}

    def run(name: str) -> dict:
        if name not in cache:
            paths = run_suite(name, "smoke", out=out, progress=False)
            payload = schema.load(paths["json"])
            assert paths["md"].exists() and all(p.exists() for p in paths.values())
            cache[name] = {"paths": paths, "payload": payload}
        return cache[name]

    return run


def _errors(rows: list[dict]) -> list[float]:
    return [r["test_rel_l2"] for r in rows]


def test_scaling_params_smoke(smoke) -> None:
    res = smoke("scaling-params")
    cfg, rows = res["payload"]["config"], res["payload"]["rows"]
    fams = {r["family"] for r in rows}
    assert {"fno", "mgno", "neuralop-fno"} <= fams
    assert len(rows) == len(fams) * len(cfg["widths"]) * len(cfg["seeds"])
    assert all(0.0 < e < 2.0 for e in _errors(rows))
    for fam in fams:  # a wider model has more parameters
        params = [r["params"] for r in rows if r["family"] == fam]
        assert params == sorted(params) and params[0] < params[-1]
    # Our FNO wraps neuralop's with the same seed: same parameters, same test error.
    ours = {r["width"]: r for r in rows if r["family"] == "fno"}
    theirs = {r["width"]: r for r in rows if r["family"] == "neuralop-fno"}
    for w in ours:
        assert ours[w]["params"] == theirs[w]["params"]
        assert ours[w]["test_rel_l2"] == pytest.approx(theirs[w]["test_rel_l2"], rel=1e-4)
    fits = res["payload"]["fits"]
    assert set(fits) == fams and all("b" in f["no_offset"] for f in fits.values())
    assert res["paths"]["smoke_error_vs_params"].stat().st_size > 1000


def test_scaling_data_smoke(smoke) -> None:
    rows = smoke("scaling-data")["payload"]["rows"]
    assert sorted({r["n_train"] for r in rows}) == [16, 32]
    # Same optimizer steps for every data size: half the data gets twice the epochs.
    ep = {r["n_train"]: r["epochs"] for r in rows}
    assert ep[16] == 2 * ep[32]
    assert all(0.0 < e < 2.0 for e in _errors(rows))


def test_scaling_resolution_smoke(smoke) -> None:
    payload = smoke("scaling-resolution")["payload"]
    for r in payload["rows"]:
        assert set(r["test_errors"]) == {"16", "32"}  # zero-shot at 32 from training at 16
        assert all(0.0 < e < 2.0 for e in r["test_errors"].values())
        assert r["test_rel_l2"] == r["test_errors"]["16"]
    table = next(iter(payload["tables"].values()))
    assert {"test 16²", "test 32²"} <= set(table[0])


def test_compute_smoke(smoke) -> None:
    payload = smoke("compute")["payload"]
    rows = payload["rows"]
    for r in rows:
        assert [h["epoch"] for h in r["history"]] == payload["config"]["eval_epochs"]
        flops = [h["train_flops"] for h in r["history"]]
        assert flops[1] == pytest.approx(2 * flops[0])  # compute grows linearly with epochs
    for fam in {r["family"] for r in rows}:
        f = [r["train_flops"] for r in rows if r["family"] == fam]
        assert f[0] < f[-1]  # wider costs more
    front = payload["tables"]["compute-optimal frontier"]
    errs = [p["test_rel_l2"] for p in front]
    assert front and errs == sorted(errs, reverse=True)


def test_flop_counter_counts_matmul_and_fft() -> None:
    lin = torch.nn.Linear(16, 8, bias=False)
    x = torch.randn(4, 16)
    # forward 2·B·in·out; backward the same again for the weight gradient (x needs no gradient)
    assert count_flops(lambda: lin(x)) == 2 * 4 * 16 * 8
    assert count_flops(lambda: lin(x).sum().backward()) == 2 * 2 * 4 * 16 * 8
    u = torch.randn(1, 1, 8, 8)
    assert count_flops(lambda: torch.fft.rfft2(u)) == int(2.5 * 64 * math.log2(64))


def test_speed_smoke_via_cli_with_resume_and_report(out: Path) -> None:
    suite = get_suite("speed")
    config = _normalise(suite.SIZES["smoke"])
    point = {"family": "fno", "resolution": 16, "batch_size": 1}
    folder = out / "cpu" / "speed"
    folder.mkdir(parents=True, exist_ok=True)
    marked = {**point, "params": 1, "latency_s": 123.0, "latency_median_s": 123.0, "samples_per_s": 1 / 123,
              "peak_memory_mb": 1.0, "key": point_key(point)}
    (folder / "smoke.partial.json").write_text(json.dumps({"config": config, "rows": [marked]}))

    assert cli_main(["bench", "speed", "--size", "smoke", "--out", str(out), "--no-progress"]) == 0
    payload = schema.load(folder / "smoke.json")
    rows = payload["rows"]
    assert rows[0]["latency_s"] == 123.0  # the finished point was not measured again
    assert not (folder / "smoke.partial.json").exists()
    real = rows[1:]
    assert all(0 < r["latency_s"] < 10 and r["samples_per_s"] > 0 for r in real)
    for fam in {r["family"] for r in real}:
        mem = {(r["resolution"], r["batch_size"]): r["peak_memory_mb"] for r in real if r["family"] == fam}
        if (16, 1) in mem:  # fno at (16, 1) is the marked point
            assert mem[(32, 1)] > 2.0 * mem[(16, 1)]  # 4x the grid points: more than 2x the activations
        assert mem[(32, 2)] > 1.5 * mem[(32, 1)]

    md = folder / "smoke.md"
    text = md.read_text()
    md.unlink()
    (folder / "smoke_latency.png").unlink()
    assert cli_main(["bench", "report", str(out)]) == 0
    assert md.read_text() == text and (folder / "smoke_latency.png").exists()
    before = json.loads((folder / "smoke.json").read_text())
    assert cli_main(["bench", "report", str(out), "--refit"]) == 0  # recomputed analysis, same rows
    after = json.loads((folder / "smoke.json").read_text())
    assert after["rows"] == before["rows"] and after["environment"] == before["environment"]
    assert after["tables"] == before["tables"]


def test_surrogate_vs_solver_smoke(smoke) -> None:
    payload = smoke("surrogate-vs-solver")["payload"]
    row = payload["rows"][0]
    assert row["model"] == "fno" and row["output_resolution"] == 9 and 0.0 < row["surrogate_l2"] < 2.0
    curve = row["solver_curve"]
    assert [c["resolution"] for c in curve] == [3, 5, 9]
    assert curve[-1]["l2_nodes"] > 0 and curve[0]["l2_output"] > curve[-1]["l2_output"]  # finer grid, smaller error
    assert row["speedup_b1"] == pytest.approx(row["solver_s_equal"] / row["surrogate_s_b1"])
    assert row["speedup_batched"] == pytest.approx(row["solver_s_equal"] / row["surrogate_s_batched"])


def test_linear_solvers_imports_benchmarks_and_skips_missing(tmp_path: Path, monkeypatch) -> None:
    log = tmp_path / "argv.json"
    (tmp_path / "fake_linear_bench.py").write_text(
        "import json, pathlib\n"
        f"def main(argv=None):\n    pathlib.Path({str(log)!r}).write_text(json.dumps(argv))\n    return 0\n"
    )
    (tmp_path / "existing_linear_bench.py").write_text(
        "def main(argv=None):\n    raise FileExistsError('results/x.json exists; pass --overwrite')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    benchmarks = {"fake": {"module": "fake_linear_bench", "argv": ["--quick"]},
                  "gone": {"module": "no_such_linear_bench", "argv": []},
                  "existing": {"module": "existing_linear_bench", "argv": []}}
    paths = run_suite("linear-solvers", "smoke", out=tmp_path / "res", progress=False,
                      overrides={"benchmarks": benchmarks})
    rows = {r["benchmark"]: r for r in schema.load(paths["json"])["rows"]}
    assert rows["fake"]["status"] == "ok" and json.loads(log.read_text()) == ["--quick"]
    assert rows["gone"]["status"] == "missing" and "not found" in rows["gone"]["message"]
    assert rows["existing"]["status"] == "exists" and "--overwrite" in rows["existing"]["message"]
    # the suite's own table names importable package modules, not script paths
    for size in get_suite("linear-solvers").SIZES.values():
        for spec in size["benchmarks"].values():
            assert spec["module"].startswith("pdesurrogates.bench.")


def test_cli_bad_input(capsys) -> None:
    assert cli_main(["bench", "nope"]) == 2
    assert "unknown suite 'nope'" in capsys.readouterr().err
    assert cli_main(["bench", "speed", "extra"]) == 2
    assert cli_main(["bench", "report", "/nonexistent/results"]) == 2
    with pytest.raises(ValueError, match="choose from"):
        get_suite("speeed")
    assert set(SUITES) >= {"scaling-params", "scaling-data", "speed", "compute", "linear-solvers"}
