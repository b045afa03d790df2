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
