"""The Krylov-overhead and adjoint benchmark scripts run end to end on tiny sizes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _run(script: str, out: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(REPO / "benchmarks" / script), "--size", "small",
                           "--out", str(out), *args], check=False, capture_output=True, text=True,
                          env=env, cwd=REPO, timeout=300)


def test_krylov_overhead_script_writes_results_and_refuses_to_overwrite(tmp_path):
    done = _run("krylov_overhead.py", tmp_path, "--repeats", "1")
    assert done.returncode == 0, done.stderr[-2000:]
    payload = json.loads((tmp_path / "krylov_overhead.json").read_text())
    assert {p.suffix for p in tmp_path.iterdir()} == {".json", ".md", ".png"}
    assert {"torch", "numpy", "scipy", "pyamg"} <= set(payload["versions"])
    assert set(payload["git"]) == {"sha", "dirty"}
    methods = {(r["system"], r["preconditioner"], r["method"]) for r in payload["rows"]}
    assert ("darcy", "sa", "scipy cg") in methods and ("poisson", "jacobi", "fcg") in methods
    for r in payload["rows"]:  # every method ran the same iterations as SciPy in its case
        assert r["iterations"] == next(s["iterations"] for s in payload["rows"] if s["method"] == "scipy cg"
                                       and s["system"] == r["system"]
                                       and s["preconditioner"] == r["preconditioner"])
    again = _run("krylov_overhead.py", tmp_path, "--repeats", "1")
    assert again.returncode != 0 and "--overwrite" in again.stderr


@pytest.mark.slow  # the profiler's memory timeline makes it ~10 s
def test_adjoint_script_writes_flat_memory_rows(tmp_path):
    done = _run("adjoint.py", tmp_path, "--targets", "10", "30", "--repeats", "1", "--unrolled-max", "40")
    assert done.returncode == 0, done.stderr[-2000:]
    payload = json.loads((tmp_path / "adjoint.json").read_text())
    rows = payload["rows"]
    assert [abs(r["iterations"] - r["target_iterations"]) <= 3 for r in rows] == [True, True]
    assert payload["targets"]["backward_peak_flat"]
    assert rows[1]["unrolled_forward_backward_peak_mb"] > 2 * rows[0]["unrolled_forward_backward_peak_mb"]


def test_hard_systems_script_runs_and_its_learned_amg_matches_sa_with_the_same_threshold(tmp_path):
    """The hard-systems benchmark on a 10^4-unknown FEM system: every method converges with the true
    residual checked, and the shipped weights (SA smoothing on theta-0.1 aggregates) take exactly the
    iterations of pyamg's SA with theta 0.1 on the same matrix."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "hard_systems.py"), "--quick", "--out",
                           str(tmp_path), "--cases", "fem-jump"], check=False, capture_output=True, text=True,
                          env=env, cwd=REPO, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = {r["method"]: r for r in json.loads((tmp_path / "hard_systems.json").read_text())["rows"]}
    assert {"CG", "Jacobi-PCG", "IC(0)-PCG", "SA-AMG", "SA-AMG, theta 0.1", "learned AMG"} <= set(rows)
    for method in ("Jacobi-PCG", "IC(0)-PCG", "SA-AMG", "SA-AMG, theta 0.1", "learned AMG"):
        assert rows[method]["converged"] and rows[method]["true_residual"] <= 2e-8, method
    assert rows["learned AMG"]["iterations"] == rows["SA-AMG, theta 0.1"]["iterations"]
    assert {p.suffix for p in tmp_path.iterdir()} >= {".json", ".md", ".png"}
