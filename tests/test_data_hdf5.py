"""Our HDF5 writer: schema, validation, resume after a killed process, sharded writing."""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from pdesurrogates.data import DataFormatError, DatasetWriter, open_dataset, write_dataset
from pdesurrogates.physics.grid import Grid

SHAPE_IN = (1, 6, 5)
SHAPE_OUT = (2, 3, 6, 5)  # (C_out, T, *spatial)
PARAMS = {"alpha": 2.0, "tau": 3.0, "resolution": [6, 5]}


def toy_generate(indices: np.ndarray, seed: int = 7, delay: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Sample i depends only on (seed, i), like the physics generators."""
    xs, ys = [], []
    for i in indices:
        rng = np.random.default_rng([seed, int(i)])
        a = rng.standard_normal(SHAPE_IN).astype(np.float32)
        t = np.stack([a[0] * k for k in (1.0, 0.5, 0.25)])
        ys.append(np.stack([t, t**2]).astype(np.float32))
        xs.append(a)
        if delay:
            time.sleep(delay)
    return np.stack(xs), np.stack(ys)


def _write(path: Path, n: int = 10, **kw) -> Path:
    opts = {"pde": "toy", "input_shape": SHAPE_IN, "output_shape": SHAPE_OUT, "params": PARAMS,
            "seed": 7, "batch_size": 3, "progress": False}
    opts.update(kw)
    return write_dataset(path, toy_generate, n, **opts)


def test_schema_and_values(tmp_path: Path) -> None:
    grid = Grid((6, 5), length=(1.0, 2.0))
    path = _write(tmp_path / "a.h5", grid=grid)
    x_ref, y_ref = toy_generate(np.arange(10))
    with h5py.File(path, "r") as f:
        np.testing.assert_array_equal(f["inputs"][()], x_ref)
        np.testing.assert_array_equal(f["outputs"][()], y_ref)
        assert f["inputs"].dtype == np.float32 and f["outputs"].shape == (10, *SHAPE_OUT)
        assert f["inputs"].chunks == (1, *SHAPE_IN) and f["outputs"].chunks == (1, *SHAPE_OUT)
        assert f["inputs"].compression == "lzf" and f["inputs"].fletcher32 and not f["inputs"].shuffle
        np.testing.assert_allclose(f["grid/y"][()], np.linspace(0.0, 2.0, 5))
        a = f.attrs
        assert a["schema_version"] == 1 and a["pde"] == "toy" and a["seed"] == 7
        assert json.loads(a["params"]) == PARAMS
        assert bool(a["complete"]) and a["n_written"] == 10
        assert list(a["input_shape"]) == list(SHAPE_IN) and "created" in a
        assert a["pdesurrogates_version"]


def test_gzip_and_float64_round_trip(tmp_path: Path) -> None:
    path = _write(tmp_path / "g.h5", n=4, compression="gzip", dtype="float64")
    _, y_ref = toy_generate(np.arange(4))
    with h5py.File(path, "r") as f:
        assert f["outputs"].compression == "gzip" and f["outputs"].shuffle
        assert f["outputs"].dtype == np.float64
        np.testing.assert_array_equal(f["outputs"][()], y_ref.astype(np.float64))


def test_refuses_existing_file_and_conflicting_flags(tmp_path: Path) -> None:
    path = _write(tmp_path / "a.h5", n=3)
    before = path.read_bytes()
    with pytest.raises(FileExistsError, match="--resume.*--overwrite"):
        _write(path, n=3)
    assert path.read_bytes() == before
    with pytest.raises(ValueError, match="not both"):
        _write(path, n=3, resume=True, overwrite=True)
    _write(path, n=4, overwrite=True)
    with h5py.File(path, "r") as f:
        assert f["inputs"].shape[0] == 4


@pytest.mark.parametrize(
    "change, match",
    [({"seed": 8}, "seed"), ({"pde": "other"}, "pde"), ({"params": {**PARAMS, "tau": 4.0}}, "tau"),
     ({"input_shape": (1, 6, 6)}, "input_shape"), ({"n": 11}, "n_samples")],
)
def test_resume_with_other_settings_is_refused(tmp_path: Path, change: dict, match: str) -> None:
    path = tmp_path / "a.h5"
    with DatasetWriter.open(path, pde="toy", n_samples=10, input_shape=SHAPE_IN,
                            output_shape=SHAPE_OUT, params=PARAMS, seed=7) as w:
        w.append(*toy_generate(np.arange(4)))
    kw = {"pde": "toy", "n_samples": 10, "input_shape": SHAPE_IN, "output_shape": SHAPE_OUT,
          "params": PARAMS, "seed": 7}
    if "n" in change:
        kw["n_samples"] = change.pop("n")
    kw.update(change)
    with pytest.raises(DataFormatError, match=match):
        DatasetWriter.open(path, resume=True, **kw)


def test_append_validates_shape_dtype_and_finiteness(tmp_path: Path) -> None:
    path = tmp_path / "a.h5"
    with DatasetWriter.open(path, pde="toy", n_samples=6, input_shape=SHAPE_IN,
                            output_shape=SHAPE_OUT, params=PARAMS, seed=7) as w:
        x, y = toy_generate(np.arange(3))
        with pytest.raises(ValueError, match=r"inputs must have shape \(k, 1, 6, 5\), got \(3, 6, 5\)"):
            w.append(x[:, 0], y)
        with pytest.raises(ValueError, match="floating-point.*int64"):
            w.append(x.astype(np.int64), y)
        w.append(x[:2], y[:2])
        bad = y.copy()
        bad[1, 1, 2, 0, 0] = np.inf
        with pytest.raises(ValueError, match=r"outputs of sample 3 \(batch row 1\) contains NaN or Inf"):
            w.append(x, bad)
        assert w.n_written == 2  # the bad batch wrote nothing
        with pytest.raises(ValueError, match="exceeds n_samples=6"):
            w.append(*toy_generate(np.arange(5)))
        with pytest.raises(ValueError, match="cannot finalize with 2 of 6"):
            w.finalize()


def test_context_manager_does_not_mark_complete_on_error(tmp_path: Path) -> None:
    path = tmp_path / "a.h5"
    with pytest.raises(RuntimeError), DatasetWriter.open(
            path, pde="toy", n_samples=2, input_shape=SHAPE_IN, output_shape=SHAPE_OUT,
            params=PARAMS, seed=7) as w:
        w.append(*toy_generate(np.arange(2)))
        raise RuntimeError("boom")
    with h5py.File(path, "r") as f:
        assert not f.attrs["complete"] and f.attrs["n_written"] == 2


def test_resume_of_partial_file_equals_uninterrupted(tmp_path: Path) -> None:
    ref = _write(tmp_path / "ref.h5", n=10)
    part = tmp_path / "part.h5"
    with DatasetWriter.open(part, pde="toy", n_samples=10, input_shape=SHAPE_IN,
                            output_shape=SHAPE_OUT, params=PARAMS, seed=7) as w:
        w.append(*toy_generate(np.arange(5)))
    calls: list[np.ndarray] = []

    def recording(indices: np.ndarray):
        calls.append(indices)
        return toy_generate(indices)

    write_dataset(part, recording, 10, pde="toy", input_shape=SHAPE_IN, output_shape=SHAPE_OUT,
                  params=PARAMS, seed=7, batch_size=3, resume=True, progress=False)
    assert np.concatenate(calls).tolist() == list(range(5, 10))  # nothing regenerated
    _assert_same_arrays(ref, part)

    def refuse(indices: np.ndarray):
        raise AssertionError("a complete file must not be regenerated")

    before = part.read_bytes()
    write_dataset(part, refuse, 10, pde="toy", input_shape=SHAPE_IN, output_shape=SHAPE_OUT,
                  params=PARAMS, seed=7, resume=True, progress=False)
    assert part.read_bytes() == before


def _assert_same_arrays(a: Path, b: Path) -> None:
    with h5py.File(a, "r") as fa, h5py.File(b, "r") as fb:
        for key in ("inputs", "outputs"):
            assert fa[key][()].tobytes() == fb[key][()].tobytes(), key
        assert bool(fb.attrs["complete"]) and fb.attrs["n_written"] == fa.attrs["n_written"]


_KILL_SCRIPT = """
import functools, sys
sys.path.insert(0, {tests!r})
from test_data_hdf5 import toy_generate, SHAPE_IN, SHAPE_OUT, PARAMS
from pdesurrogates.data import write_dataset

def loud(indices):
    print("start", int(indices[0]), flush=True)
    return toy_generate(indices, delay=0.05)

write_dataset({path!r}, loud, 40, pde="toy", input_shape=SHAPE_IN, output_shape=SHAPE_OUT,
              params=PARAMS, seed=7, batch_size=2, progress=False)
"""


def test_killed_writer_resumes_byte_identical(tmp_path: Path) -> None:
    path = tmp_path / "killed.h5"
    script = _KILL_SCRIPT.format(tests=str(Path(__file__).parent), path=str(path))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env)
    try:
        for line in proc.stdout:  # wait until batch [10, 12) is being generated
            if line.startswith("start") and int(line.split()[1]) >= 10:
                break
        time.sleep(0.03)  # land somewhere inside a batch
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    with h5py.File(path, "r") as f:
        n_written = int(f.attrs["n_written"])
        assert not f.attrs["complete"] and 10 <= n_written < 40
        x_ref, _ = toy_generate(np.arange(n_written))
        np.testing.assert_array_equal(f["inputs"][:n_written], x_ref)
    with pytest.raises(DataFormatError, match="incomplete"):
        open_dataset(path)
    assert len(open_dataset(path, allow_incomplete=True)) == n_written

    _write(path, n=40, resume=True)
    ref = _write(tmp_path / "ref.h5", n=40)
    _assert_same_arrays(ref, path)


def test_parallel_shards_equal_serial(tmp_path: Path) -> None:
    ref = _write(tmp_path / "ref.h5", n=12)
    out = _write(tmp_path / "par.h5", n=12, workers=2, batch_size=2)
    _assert_same_arrays(ref, out)
    assert not (tmp_path / "par.h5.shards").exists()


def test_parallel_resume_reuses_partial_shards(tmp_path: Path) -> None:
    """A shard left half written by a killed run is continued, not redone."""
    ref = _write(tmp_path / "ref.h5", n=12)
    path = tmp_path / "par.h5"
    with DatasetWriter.open(path, pde="toy", n_samples=12, input_shape=SHAPE_IN,
                            output_shape=SHAPE_OUT, params=PARAMS, seed=7) as w:
        w.append(*toy_generate(np.arange(4)))
    shard_dir = tmp_path / "par.h5.shards"
    shard_dir.mkdir()
    shard_params = {"dataset_params": PARAMS, "shard_start": 4, "shard_stop": 8}
    with DatasetWriter.open(shard_dir / "shard-4-8.h5", pde="toy", n_samples=4, input_shape=SHAPE_IN,
                            output_shape=SHAPE_OUT, params=shard_params, seed=7) as w:
        w.append(*toy_generate(np.arange(4, 6)))
    with DatasetWriter.open(shard_dir / "shard-8-12.h5", pde="toy", n_samples=4,
                            input_shape=SHAPE_IN, output_shape=SHAPE_OUT,
                            params={**shard_params, "shard_start": 8, "shard_stop": 12}, seed=7) as w:
        pass
    gen = functools.partial(toy_generate, seed=7)
    write_dataset(path, gen, 12, pde="toy", input_shape=SHAPE_IN, output_shape=SHAPE_OUT,
                  params=PARAMS, seed=7, batch_size=2, workers=2, resume=True, progress=False)
    _assert_same_arrays(ref, path)


def test_output_that_is_a_directory_is_refused_and_kept(tmp_path: Path) -> None:
    folder = tmp_path / "out.h5"
    (folder / "keep").mkdir(parents=True)
    for flags in ({}, {"overwrite": True}, {"resume": True}):
        with pytest.raises(ValueError, match=r"out\.h5 is a directory; the output must be a file path"):
            _write(folder, **flags)
    assert (folder / "keep").is_dir()


def test_read_only_folder_is_a_clear_permission_error(shared_tmp: Path, unprivileged) -> None:
    ro = shared_tmp / "ro"
    ro.mkdir(mode=0o555)
    ro.chmod(0o555)
    with unprivileged():
        with pytest.raises(PermissionError, match=r"ro/a\.h5: permission denied: this user cannot write "
                                                  r"the file or its folder .*ro \(folder mode 0o555\)"):
            _write(ro / "a.h5")
        with pytest.raises(PermissionError, match=r"ro/sub/a\.h5: cannot create the folder .*ro/sub: "
                                                  r"permission denied"):
            _write(ro / "sub" / "a.h5")
    assert list(ro.iterdir()) == []


def test_bad_sizes_are_refused_not_truncated(tmp_path: Path) -> None:
    for kw, match in (({"n_samples": 2.5}, r"n_samples must be an int >= 1, got 2\.5"),
                      ({"input_shape": (1, 6.5, 5)}, r"input_shape must be .* positive int sizes, got \(1, 6\.5, 5\)"),
                      ({"dtype": "floaty"}, r"dtype must be a float type .* got 'floaty'")):
        opts = {"pde": "toy", "n_samples": 2, "input_shape": SHAPE_IN, "output_shape": SHAPE_OUT,
                "params": {}, "seed": 0, **kw}
        with pytest.raises(ValueError, match=match):
            DatasetWriter.open(tmp_path / "b.h5", **opts)
    assert not (tmp_path / "b.h5").exists()


def _fails_at(indices: np.ndarray, at: int) -> tuple[np.ndarray, np.ndarray]:
    if indices[-1] >= at:
        raise MemoryError("solver ran out of memory")
    return toy_generate(indices)


def test_generator_failing_before_the_first_sample_leaves_no_file(tmp_path: Path) -> None:
    path = tmp_path / "f.h5"
    with pytest.raises(MemoryError):
        write_dataset(path, functools.partial(_fails_at, at=0), 10, pde="toy", input_shape=SHAPE_IN,
                      output_shape=SHAPE_OUT, params={}, seed=7, batch_size=3, progress=False)
    assert not path.exists()
    # after a first batch the file stays: its samples are valid and --resume continues it
    with pytest.raises(MemoryError):
        write_dataset(path, functools.partial(_fails_at, at=4), 10, pde="toy", input_shape=SHAPE_IN,
                      output_shape=SHAPE_OUT, params={}, seed=7, batch_size=3, progress=False)
    with h5py.File(path, "r") as f:
        assert int(f.attrs["n_written"]) == 3 and not f.attrs["complete"]
