"""The learned-SOR benchmark: its cost tables are the library's solvers' iteration counts, the
instance optimum is never worse than the grid, and a tiny run writes complete results."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pdesurrogates import linalg
from pdesurrogates.bench import learned_sor as bench
from pdesurrogates.linalg import gallery


def test_shifted_laplacian_table_is_sor_iteration_counts():
    table = bench.shifted_laplacian_table("high", 6, seed=3, chunk=4)
    rng = np.random.default_rng(3)
    shifts = -0.15 + 0.6 * rng.beta(0.5, 1.5, size=6)
    rhs = bench.truncated_normal(rng, 100, 6)
    np.testing.assert_array_equal(table["contexts"], shifts)
    assert np.all(np.linalg.norm(rhs, axis=1) <= 10.0)
    for i in (0, 5):  # chunks of 4: the first and the second chunk
        A = gallery.shifted_laplacian(10, shifts[i], format="scipy")
        omegas = np.r_[bench.OMEGAS, table["instance_optimal_omega"][i], table["young_omega"]]
        direct = linalg.sor(A, rhs[i], omega=omegas, rtol=1e-8, maxiter=10_000, kernel="triangular")
        np.testing.assert_array_equal(table["costs"][i], direct.iterations[:20])
        assert table["instance_optimal"][i] == direct.iterations[20]
        assert table["young"][i] == direct.iterations[21]
        # Young's omega of the shifted matrix, beta = 4 cos(pi / 11) / (4 + c)
        beta = 4 * np.cos(np.pi / 11) / (4 + shifts[i])
        assert abs(table["instance_optimal_omega"][i] - 2 / (1 + np.sqrt(1 - beta**2))) < 1e-12
    assert abs(table["young_omega"] - 2 / (1 + np.sin(np.pi / 11))) < 1e-12
    # the instance optimum beats Gauss-Seidel by far on every instance
    assert np.all(table["instance_optimal"] < table["costs"][:, 0])


def test_heat_table_is_ssor_pcg_iteration_counts():
    table = bench.heat_table(6, 12)
    seq = bench.heat_sequence(6, 12)
    for k, step in enumerate(seq):
        if k in (0, 11):
            for j in (0, 9, 19):
                M = linalg.SSORPreconditioner(step.A, omega=float(bench.OMEGAS[j]))
                res = linalg.pcg(step.A, step.b, x0=step.x0, rtol=1e-8, maxiter=10_000, M=M)
                assert table["costs"][k, j] == res.iterations
            assert table["contexts"][k] == step.context
        seq.advance(np.linalg.solve(step.A.toarray(), step.b))
    np.testing.assert_array_equal(table["instance_optimal_grid"], table["costs"].min(1))
    assert np.all(table["instance_optimal"] <= table["instance_optimal_grid"])


def test_tiny_run_writes_results_and_refuses_to_overwrite(tmp_path: Path, capsys):
    argv = ["--instances", "20", "--heat-n", "5", "--heat-steps", "12", "--trials", "2", "--last", "10",
            "--out-dir", str(tmp_path), "--quick"]
    assert bench.main(argv) == 0
    payload = json.loads((tmp_path / "learned_sor_quick.json").read_text())
    env = payload["environment"]
    for key in ("torch", "numpy", "scipy", "neuralop", "pyamg", "h5py", "git_sha", "git_dirty", "device"):
        assert key in env, key
    assert env["git_dirty"] == env["git_sha"].endswith("-dirty")
    settings = {r["setting"] for r in payload["rows"]}
    assert settings == {"shifted Laplacian, high variance", "shifted Laplacian, low variance",
                        "heat equation, n = 5"}
    for row in payload["rows"]:
        assert row["mean_iterations"] > 0 and row["mean_last_10"] > 0
    assert (tmp_path / "learned_sor_quick.md").exists() and (tmp_path / "learned_sor_quick_regret.png").exists()
    text = json.dumps(payload).lower()
    assert "session" not in text and "helper" not in text
    with pytest.raises(FileExistsError, match="--overwrite"):
        bench.main(argv)
    (tmp_path / "learned_sor_quick_regret.png").unlink()
    assert bench.main(["--quick", "--plot-only", "--out-dir", str(tmp_path)]) == 0
    assert (tmp_path / "learned_sor_quick_regret.png").exists()


def test_bad_sizes():
    with pytest.raises(ValueError, match="instances must be a positive integer"):
        bench.run(instances=0)
    with pytest.raises(ValueError, match="last=50 exceeds"):
        bench.run(instances=20, heat_steps=20, last=50)
    with pytest.raises(ValueError, match="variance"):
        bench.shifted_laplacian_table("medium", 3, seed=0)
