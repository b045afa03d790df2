"""Sweep harness: resumption skips finished points; result schema; reports rebuilt from JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pdesurrogates.bench import schema
from pdesurrogates.bench.harness import point_key, render_markdown, run_sweep
from pdesurrogates.bench.report import environment


class Interrupt(Exception):
    pass


def _points(n: int) -> list[dict]:
    return [{"width": w, "seed": s} for w in range(n) for s in (0, 1)]


def test_resume_skips_finished_points(tmp_path: Path) -> None:
    partial = tmp_path / "small.partial.json"
    calls: list[dict] = []

    def measure(point: dict) -> dict:
        if len(calls) == 5:
            raise Interrupt  # the sixth point "crashes"
        calls.append(point)
        return {"error": 1.0 / (1 + point["width"])}

    config = {"widths": [0, 1, 2, 3], "seeds": [0, 1]}
    with pytest.raises(Interrupt):
        run_sweep(_points(4), measure, partial=partial, config=config, progress=False)
    assert len(calls) == 5
    stored = json.loads(partial.read_text())
    assert len(stored["rows"]) == 5 and stored["config"] == config

    calls.clear()
    fresh: list[dict] = []

    def measure_again(point: dict) -> dict:
        fresh.append(point)
        return {"error": 1.0 / (1 + point["width"])}

    rows = run_sweep(_points(4), measure_again, partial=partial, config=config, progress=False)
    assert len(fresh) == 3  # only the 8 - 5 unfinished points
    assert [r["key"] for r in rows] == [point_key(p) for p in _points(4)]
    assert [r["error"] for r in rows] == [1.0 / (1 + p["width"]) for p in _points(4)]

    # A third run has nothing left to do.
    fresh.clear()
    run_sweep(_points(4), measure_again, partial=partial, config=config, progress=False)
    assert fresh == []


def test_resume_refuses_another_config(tmp_path: Path) -> None:
    partial = tmp_path / "p.json"
    run_sweep(_points(1), lambda p: {"e": 0.5}, partial=partial, config={"a": 1}, progress=False)
    with pytest.raises(ValueError, match="another config"):
        run_sweep(_points(1), lambda p: {"e": 0.5}, partial=partial, config={"a": 2}, progress=False)


def test_duplicate_points_refused() -> None:
    with pytest.raises(ValueError, match="distinct"):
        run_sweep([{"a": 1}, {"a": 1}], lambda p: {}, partial=None, config={}, progress=False)


def _payload() -> dict:
    return {
        "name": "small", "suite": "scaling-data", "size": "small", "schema_version": schema.SCHEMA_VERSION,
        "environment": environment("cpu"), "config": {"n_train": [8, 16]}, "fits": {},
        "rows": [{"family": "fno", "n_train": 8, "seed": 0, "test_rel_l2": 0.3},
                 {"family": "fno", "n_train": 16, "seed": 0, "test_rel_l2": None}],
    }


def test_schema_accepts_a_valid_result() -> None:
    schema.validate(_payload())
    schema.validate(json.loads(json.dumps(_payload())))


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda p: p.pop("environment"), "missing key 'environment'"),
        (lambda p: p["environment"].pop("git_sha"), "environment.git_sha"),
        (lambda p: p.update(rows={}), "'rows' should be list"),
        (lambda p: p.update(suite="nope"), "unknown suite 'nope'"),
        (lambda p: p["rows"][0].pop("n_train"), r"rows\[0\] missing 'n_train'"),
        (lambda p: p["rows"][1].update(test_rel_l2="0.1"), r"rows\[1\].test_rel_l2 should be float or NoneType"),
        (lambda p: p["rows"][0].update(seed=True), r"rows\[0\].seed should be int"),
        (lambda p: p.update(schema_version=99), "schema_version 99"),
    ],
)
def test_schema_rejects_invalid_results(mutate, match) -> None:
    payload = _payload()
    mutate(payload)
    with pytest.raises(ValueError, match=match):
        schema.validate(payload, "x.json")


def test_schema_load_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="bad.json"):
        schema.load(bad)
    good = tmp_path / "good.json"
    good.write_text(json.dumps(_payload()))
    assert schema.load(good)["suite"] == "scaling-data"


def test_markdown_has_provenance_and_rows() -> None:
    payload = {**_payload(), "tables": {"exponents": [{"family": "fno", "b": 0.5}]}, "notes": "a note"}
    md = render_markdown(payload, ["small_plot.png"])
    env = payload["environment"]
    assert env["git_sha"] in md and env["torch"] in md and env["date"] in md
    assert "## exponents" in md and "| fno | 0.5 |" in md and "a note" in md
    assert "![small_plot.png](small_plot.png)" in md
    assert "| fno | 8 | 0 | 0.3 |" in md


def test_git_sha_is_dirty_for_code_changes_not_for_rewritten_results(tmp_path: Path, monkeypatch) -> None:
    """A benchmark rewriting its own result files leaves the sha clean; an edited source file does not."""
    import shutil
    import subprocess

    from pdesurrogates.bench import report

    if shutil.which("git") is None:
        pytest.skip("git is not installed")

    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    (tmp_path / "benchmarks" / "results").mkdir(parents=True)
    (tmp_path / "code.py").write_text("x = 1\n")
    (tmp_path / "benchmarks" / "results" / "r.json").write_text("{}\n")
    git("init", "-q")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    monkeypatch.setattr(report, "REPO", tmp_path)
    assert not report.git_sha().endswith("-dirty")
    (tmp_path / "benchmarks" / "results" / "r.json").write_text('{"a": 1}\n')
    assert not report.git_sha().endswith("-dirty")
    (tmp_path / "code.py").write_text("x = 2\n")
    assert report.git_sha().endswith("-dirty")
