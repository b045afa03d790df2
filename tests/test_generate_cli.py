"""``pdesurrogates generate``: files, provenance, presets, errors, workers, kill + resume."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from pdesurrogates.cli import main
from pdesurrogates.commands.generate import available_presets, load_preset
from pdesurrogates.physics.problems import get_problem

REPO = Path(__file__).resolve().parents[1]


def _read(path):
    with h5py.File(path, "r") as f:
        return f["inputs"][:], f["outputs"][:], dict(f.attrs), {k: f["grid"][k][:] for k in f["grid"]}


def test_generate_darcy_writes_solver_arrays_and_provenance(tmp_path, capsys) -> None:
    out = tmp_path / "d.h5"
    rc = main(["generate", "darcy", "--n", "4", "--resolution", "32", "--seed", "0", "--out", str(out),
               "--no-progress", "--param", "low=4"])
    assert rc == 0 and "wrote" in capsys.readouterr().out
    x, y, attrs, grid = _read(out)
    ex, ey = get_problem("darcy", resolution=32, low=4.0).generate(range(4), seed=0)
    assert np.array_equal(x, ex) and np.array_equal(y, ey)
    params = json.loads(attrs["params"])
    assert params["low"] == 4.0 and params["resolution"] == 32 and params["tau"] == 3.0
    assert attrs["seed"] == 0 and bool(attrs["complete"])
    assert np.allclose(grid["x"], np.linspace(0, 1, 32))
    # an existing file is never overwritten without --overwrite
    assert main(["generate", "darcy", "--n", "4", "--resolution", "32", "--out", str(out),
                 "--no-progress"]) == 2
    assert "exists" in capsys.readouterr().err.lower()
    assert np.array_equal(_read(out)[0], x)
    assert main(["generate", "darcy", "--n", "2", "--resolution", "16", "--out", str(out),
                 "--overwrite", "--no-progress"]) == 0
    assert _read(out)[0].shape == (2, 1, 16, 16)


@pytest.mark.parametrize("argv,message", [
    (["generate", "darcyy", "--n", "2", "--out", "X"], "valid: darcy, poisson, burgers"),
    (["generate", "darcy", "--n", "2", "--out", "X", "--param", "viscosity=1"], "unknown parameter"),
    (["generate", "burgers", "--n", "2", "--out", "X", "--param", "nu=0"], "nu must be > 0"),
    (["generate", "darcy", "--n", "2", "--resolution", "3", "--out", "X"], "resolution must be"),
    (["generate", "darcy", "--n", "2", "--out", "X", "--param", "nu"], "KEY=VALUE"),
    (["generate", "--preset", "nope"], "available: "),
    (["generate", "darcy", "--out", "X"], "--n"),
])
def test_bad_input_is_refused_with_a_message(argv, message, capsys, tmp_path) -> None:
    argv = [a if a != "X" else str(tmp_path / "x.h5") for a in argv]
    assert main(argv) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x.h5").exists()


def test_presets_are_valid_problems() -> None:
    names = available_presets()
    for required in ("darcy_421", "burgers_8192", "ns_1e-3", "ns_1e-4", "ns_1e-5", "darcy_small_32"):
        assert required in names
    for name in names:
        preset = load_preset(name)
        params = dict(preset.get("params", {}))
        if "resolution" in preset:
            params["resolution"] = preset["resolution"]
        problem = get_problem(preset["pde"], **params)  # validates
        assert preset["n"] >= 1 and problem.input_shape[0] == 1
    ns = get_problem("navier-stokes", **load_preset("ns_1e-4")["params"], resolution=64)
    assert ns.output_shape == (1, 30, 64, 64) and ns.solver_grid_size == 256


def test_preset_generation_with_overrides(tmp_path) -> None:
    out = tmp_path / "small.h5"
    assert main(["generate", "--preset", "darcy_small_32", "--n", "3", "--out", str(out),
                 "--no-progress"]) == 0
    x, y, attrs, _ = _read(out)
    assert x.shape == (3, 1, 33, 33) and y.shape == (3, 1, 33, 33)
    assert json.loads(attrs["params"])["solver_resolution"] == 65


@pytest.mark.slow  # two spawned worker processes import torch: ~20 s on a loaded 2-core machine
def test_workers_give_the_same_arrays(tmp_path) -> None:
    common = ["generate", "poisson", "--n", "6", "--resolution", "12", "--seed", "3",
              "--batch-size", "2", "--no-progress"]
    assert main(common + ["--out", str(tmp_path / "w1.h5")]) == 0
    assert main(common + ["--out", str(tmp_path / "w2.h5"), "--workers", "2"]) == 0
    a, b = _read(tmp_path / "w1.h5"), _read(tmp_path / "w2.h5")
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


def test_killed_generation_resumes_to_identical_file(tmp_path) -> None:
    """SIGKILL a subprocess mid-run, continue with --resume: same bytes as one uninterrupted run."""
    n = 12
    args = ["generate", "navier-stokes", "--n", str(n), "--resolution", "32", "--seed", "5",
            "--batch-size", "1", "--param", "solver_resolution=32", "--param", "t_final=0.3",
            "--param", "record_every=0.1", "--param", "dt=1e-3"]
    out = tmp_path / "ns.h5"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-m", "pdesurrogates", *args, "--out", str(out)],
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, env=env, cwd=tmp_path)
    seen = []

    def reader():
        while chunk := proc.stderr.read1(256) if hasattr(proc.stderr, "read1") else proc.stderr.read(1):
            seen.append(chunk.decode(errors="replace"))

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    done = 0
    while time.monotonic() < deadline and proc.poll() is None:
        counts = [int(m) for m in re.findall(rf"(\d+)/{n}", "".join(seen))]
        done = max(counts, default=0)
        if done >= 3:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    thread.join(timeout=5)
    assert 3 <= done < n, ("process was not interrupted mid-run", "".join(seen)[-500:])
    assert proc.returncode == -signal.SIGKILL
    with h5py.File(out, "r") as f:
        written = int(f.attrs["n_written"])
        assert not f.attrs["complete"] and 0 < written < n
    assert main(args + ["--out", str(out), "--no-progress"]) == 2  # refuses without --resume
    assert main(args + ["--out", str(out), "--resume", "--no-progress"]) == 0
    ref = tmp_path / "ref.h5"
    assert main(args + ["--out", str(ref), "--no-progress"]) == 0
    a, b = _read(out), _read(ref)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert bool(a[2]["complete"]) and int(a[2]["n_written"]) == n


def _cli_error(argv: list[str], capsys) -> str:
    """The one-line error ``main`` prints (exit 2), or, for an error type the command line lets
    through, the message of the exception the command raised."""
    try:
        rc = main(argv)
    except (ValueError, PermissionError) as exc:
        return str(exc)
    assert rc == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


def test_output_path_errors_name_the_path(tmp_path, shared_tmp, unprivileged, capsys) -> None:
    base = ["generate", "darcy", "--n", "2", "--resolution", "16", "--no-progress"]
    folder = tmp_path / "out"
    folder.mkdir()
    for extra in ([], ["--overwrite"]):
        err = _cli_error(base + ["--out", str(folder), *extra], capsys)
        assert f"{folder} is a directory; the output must be a file path" in err
    assert folder.is_dir()
    ro = shared_tmp / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    with unprivileged():
        err = _cli_error(base + ["--out", str(ro / "d.h5")], capsys)
        assert f"{ro / 'd.h5'}: permission denied" in err
        err = _cli_error(base + ["--out", str(ro / "sub" / "d.h5")], capsys)
        assert f"cannot create the folder {ro / 'sub'}: permission denied" in err
    assert list(ro.iterdir()) == []


def test_too_large_a_job_is_refused_before_any_file_exists(tmp_path, capsys, monkeypatch) -> None:
    from pdesurrogates.commands import generate

    out = tmp_path / "big.h5"
    err = _cli_error(["generate", "darcy", "--n", "1", "--resolution", "100000", "--out", str(out),
                      "--no-progress"], capsys)
    assert "darcy at resolution 100000: one batch of 1 sample(s) needs at least" in err
    assert "Lower --resolution or --batch-size" in err and not out.exists()
    # the threshold is the memory available: a small job passes it, the same job with less fails
    monkeypatch.setattr(generate, "_available_memory", lambda: 1000)
    err = _cli_error(["generate", "darcy", "--n", "3", "--resolution", "16", "--out", str(out),
                      "--no-progress"], capsys)
    assert "one batch of 3 sample(s) needs at least" in err and "but 1000 B of memory is available" in err
    assert not out.exists()


@pytest.mark.parametrize("pde", ["darcy", "burgers", "poisson"])
def test_memory_estimate_bounds_the_generated_arrays(pde) -> None:
    """The estimate is the batch's arrays as generated plus one float64 solver-grid field."""
    from pdesurrogates.commands.generate import estimate_batch_bytes

    problem = get_problem(pde, resolution=16)
    x, y = problem.generate(range(3), seed=0)
    solver = getattr(problem, "solver_grid_size", None)
    field = solver ** (x.ndim - 2) * 8 if solver else 0
    assert estimate_batch_bytes(problem, 3) == x.nbytes + y.nbytes + field
