"""Two CPU processes on gloo (torchrun) follow the same loss curve as one process with the same global batch."""

from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pdesurrogates.train import load_config, train
from pdesurrogates.train.distributed import DistContext, env_world_size, init_distributed

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def config_file(tmp_path_factory) -> Path:
    from pdesurrogates.data import write_dataset
    from pdesurrogates.physics.problems import get_problem

    folder = tmp_path_factory.mktemp("ddp")
    problem = get_problem("darcy", resolution=17)
    for name, n, seed in (("train", 16, 0), ("test", 8, 1)):
        write_dataset(folder / f"{name}.h5", lambda idx, s=seed: problem.generate(idx, s), n, pde="darcy",
                      input_shape=problem.input_shape, output_shape=problem.output_shape,
                      params=problem.to_dict(), seed=seed, progress=False)
    path = folder / "ddp.toml"
    path.write_text(f"""
seed = 0
[data]
train = "{folder / 'train.h5'}"
test = ["{folder / 'test.h5'}"]
[model]
name = "fno"
width = 8
modes = 4
n_layers = 2
[optimizer]
lr = 3e-3
[train]
epochs = 2
batch_size = 4            # global: 2 samples per process with 2 processes
grad_clip = 1.0
[eval]
every = 2
""")
    return path


def losses(run: Path) -> list[float]:
    with (run / "steps.csv").open() as fh:
        return [float(r["loss"]) for r in csv.DictReader(fh)]


def test_two_gloo_processes_match_one_process(config_file, tmp_path):
    single = train(load_config(config_file), tmp_path / "single", device="cpu", progress=False)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    env.pop("WORLD_SIZE", None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc_per_node=2",
           "--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{free_port()}",
           "-m", "pdesurrogates", "train", "--config", str(config_file), "--out", str(tmp_path / "ddp"),
           "--device", "cpu", "--no-progress"]
    proc = subprocess.run(cmd, check=False, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    summary = json.loads((tmp_path / "ddp" / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["status"] == "finished"
    assert summary["step"] == single["step"] == 2 * 4  # 16 samples / global batch 4, two epochs
    one, two = losses(tmp_path / "single"), losses(tmp_path / "ddp")
    assert len(one) == len(two) == 8
    assert one[-1] < one[0]  # it trains
    # same batches, gradients averaged over ranks: equal up to float reduction order
    assert two == pytest.approx(one, rel=1e-4, abs=1e-6)
    w1 = torch.load(tmp_path / "single" / "checkpoints" / "last" / "weights.pt", weights_only=True)
    w2 = torch.load(tmp_path / "ddp" / "checkpoints" / "last" / "weights.pt", weights_only=True)
    for key in w1:
        assert torch.allclose(w1[key], w2[key], rtol=1e-4, atol=1e-5), key
    # only rank 0 wrote files, and its evaluation matches the single process
    assert summary["final"]["test0_s1"]["l2"] == pytest.approx(single["final"]["test0_s1"]["l2"], rel=1e-3)


def test_single_process_context_without_torchrun():
    ctx = init_distributed("cpu", environ={})
    assert isinstance(ctx, DistContext)
    assert (ctx.rank, ctx.world_size, ctx.is_main, ctx.distributed) == (0, 1, True, False)
    value = torch.tensor(2.5)
    assert ctx.mean(value) is value
    with pytest.raises(ValueError, match="torchrun variables"):
        init_distributed("cpu", environ={"WORLD_SIZE": "2"})
    with pytest.raises(ValueError, match="WORLD_SIZE must be an integer"):
        env_world_size({"WORLD_SIZE": "two"})
