"""``pdesurrogates quickstart``: generate a small Darcy dataset, train an FNO, evaluate, plot.

The whole story in a few minutes on a laptop CPU::

    pdesurrogates quickstart --out runs/quickstart

1. generate Darcy flow samples (the FNO-paper setting: thresholded Gaussian coefficient, f = 1)
   on a 65 x 65 node grid, a training and a test file, in ``OUT/data/``;
2. train an FNO on the 33 x 33 view (stride 2) with the relative L2 loss, in ``OUT/run/``;
3. evaluate at 33 x 33 and zero-shot at 65 x 65, writing ``OUT/eval/*.png`` and ``*.json``;
4. print the relative L2 errors and the plot path; ``OUT/quickstart.json`` keeps the timings.

Re-running with the same ``--out``: data files are reused (an interrupted generation continues);
an interrupted training run is resumed; a finished run is not trained again: its results are printed
(``--overwrite`` retrains, still reusing the data).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from pdesurrogates.errors import UserInputError

DEFAULTS = {"resolution": 65, "n_train": 800, "n_test": 100, "epochs": 12, "seed": 0}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "quickstart", help="generate Darcy data, train an FNO, evaluate at two resolutions",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/quickstart"), help="output folder")
    parser.add_argument("--overwrite", action="store_true", help="retrain even if a finished run exists")
    parser.add_argument("--resolution", type=int, default=DEFAULTS["resolution"],
                        help="generated grid (odd; training uses every other node)")
    parser.add_argument("--n-train", type=int, default=DEFAULTS["n_train"])
    parser.add_argument("--n-test", type=int, default=DEFAULTS["n_test"])
    parser.add_argument("--epochs", type=int, default=DEFAULTS["epochs"])
    parser.add_argument("--width", type=int, default=32, help="FNO width")
    parser.add_argument("--modes", type=int, default=12, help="Fourier modes per axis")
    parser.add_argument("--seed", type=int, default=DEFAULTS["seed"])
    parser.add_argument("--device", choices=("cpu", "cuda"))
    parser.add_argument("--threads", type=int, default=0,
                        help="CPU threads of torch (default: all cores, or 1 when the machine is already busy)")
    parser.add_argument("--no-progress", action="store_true")
    parser.set_defaults(func=run)


def quickstart_config(data_dir: Path, resolution: int, n_train: int, n_test: int, seed: int) -> dict:
    """File names of the quickstart data (they encode size and seed, so changed options never clash)."""
    return {
        "train": data_dir / f"darcy_r{resolution}_n{n_train}_seed{seed}_train.h5",
        "test": data_dir / f"darcy_r{resolution}_n{n_test}_seed{seed + 1}_test.h5",
    }


def generate_darcy(path: Path, resolution: int, n: int, seed: int, progress: bool = True) -> float:
    """Write (or finish) a Darcy file with the physics generator; returns seconds spent."""
    from functools import partial

    from pdesurrogates.data import write_dataset
    from pdesurrogates.physics.problems import get_problem

    t0 = time.perf_counter()
    problem = get_problem("darcy", resolution=resolution)
    # One process: a 65 x 65 sample takes about 8 ms, while starting worker processes (each importing
    # torch) cost more than it saves at this size (measured: 900 samples 62 s with 2 workers vs ~8 s).
    write_dataset(path, partial(problem.generate, seed=seed), n, pde="darcy",
                  input_shape=problem.input_shape, output_shape=problem.output_shape,
                  params=problem.to_dict(), seed=seed, grid=problem.grid_arrays(), batch_size=25,
                  workers=1, resume=True, progress=progress)
    return time.perf_counter() - t0


def _cpu_seconds() -> float:
    """CPU time of this process and its finished children (the generator workers)."""
    import resource

    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def run_quickstart(out: Path, *, resolution: int = 65, n_train: int = 800, n_test: int = 100,
                   epochs: int = 12, width: int = 32, modes: int = 12, seed: int = 0,
                   device: str | None = None, overwrite: bool = False, progress: bool = True) -> dict:
    """Run the quickstart; returns the dictionary also written to ``out/quickstart.json``."""
    from pdesurrogates.commands.evaluate import evaluate_checkpoint
    from pdesurrogates.train import config_from_dict, train

    if resolution < 9 or resolution % 2 == 0:
        raise UserInputError(f"--resolution must be odd and >= 9 (training uses every other node), got {resolution}")
    if n_train < 2 or n_test < 1 or epochs < 1:
        raise UserInputError(f"need --n-train >= 2, --n-test >= 1, --epochs >= 1; got {n_train}, {n_test}, {epochs}")
    t0 = time.perf_counter()
    out = Path(out)
    run_dir = out / "run"
    summary_file = run_dir / "summary.json"
    resume = None
    if summary_file.is_file():
        status = json.loads(summary_file.read_text()).get("status")
        report = out / "quickstart.json"
        if status == "finished" and not overwrite and report.is_file():
            result = json.loads(report.read_text())
            result["reused"] = True  # nothing was trained: the finished run's results
            return result
        if status in ("interrupted", "stopped") and not overwrite:
            resume = run_dir
    elif (run_dir / "checkpoints" / "last" / "training_state.pt").is_file() and not overwrite:
        resume = run_dir

    files = quickstart_config(out / "data", resolution, n_train, n_test, seed)
    t_gen = generate_darcy(files["train"], resolution, n_train, seed, progress)
    t_gen += generate_darcy(files["test"], resolution, n_test, seed + 1, progress)

    raw = {
        "seed": seed,
        "data": {"train": str(files["train"]), "test": [str(files["test"])], "train_stride": 2,
                 "test_strides": [2, 1]},
        "model": {"name": "fno", "width": width, "modes": modes, "n_layers": 4},
        "loss": {"data": "l2"},
        "optimizer": {"lr": 3e-3, "weight_decay": 1e-4},
        "schedule": {"name": "cosine", "warmup_epochs": 0.5},
        "train": {"epochs": epochs, "batch_size": 16},
        "eval": {"every": max(1, epochs // 4)},
    }
    config = config_from_dict(raw, where="quickstart", base_dir=".")
    t1 = time.perf_counter()
    summary = train(config, run_dir, resume=resume, device=device, overwrite=overwrite and resume is None,
                    progress=progress)
    t_train = time.perf_counter() - t1
    t2 = time.perf_counter()
    evaluation = evaluate_checkpoint(run_dir, files["test"], strides=[2, 1], out=out / "eval", device=device,
                                     overwrite=True, n_plot=3)
    t_eval = time.perf_counter() - t2
    result = {
        "results": evaluation["results"], "train_summary": str(summary_file),
        "checkpoint": str(run_dir / "checkpoints" / "best"),
        "timings_s": {"generate": t_gen, "train": t_train, "evaluate": t_eval,
                      "total": time.perf_counter() - t0, "cpu": _cpu_seconds()},
        "settings": {"resolution": resolution, "n_train": n_train, "n_test": n_test, "epochs": epochs,
                     "width": width, "modes": modes, "seed": seed},
        "train_wall_time_s": summary.get("wall_time_s"),
    }
    (out / "quickstart.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def choose_threads(requested: int, cores: int | None = None, load: float | None = None) -> int:
    """Threads for the quickstart's CPU training.

    ``requested`` > 0 wins. Otherwise all cores when the machine is idle, and one thread once the
    one-minute load average reaches half the cores: extra threads then compete with the other
    work. Measured on a shared 2-core machine: at load 8, 2 threads took 2-7 s per step and 1
    thread 0.5 s; at load 2, the quickstart's training took 118 s with 2 threads, 87 s with 1.
    """
    if requested > 0:
        return requested
    cores = cores or os.cpu_count() or 1
    if load is None:
        try:
            load = os.getloadavg()[0]
        except (AttributeError, OSError):  # not available on every platform
            load = 0.0
    return 1 if load >= cores / 2 else cores


def run(args: argparse.Namespace) -> int:
    import torch

    if args.threads < 0:
        raise UserInputError(f"--threads must be >= 0, got {args.threads}")
    threads, before = choose_threads(args.threads), torch.get_num_threads()
    print(f"quickstart: {threads} CPU thread(s)")
    torch.set_num_threads(threads)
    try:
        result = run_quickstart(args.out, resolution=args.resolution, n_train=args.n_train, n_test=args.n_test,
                                epochs=args.epochs, width=args.width, modes=args.modes, seed=args.seed,
                                device=args.device, overwrite=args.overwrite, progress=not args.no_progress)
    finally:
        torch.set_num_threads(before)
    train_res, zero_shot = result["results"][0], result["results"][-1]
    print()
    if result.get("reused"):
        print(f"{args.out} already holds a finished quickstart; its results (pass --overwrite to train again):")
    print(f"relative L2 at {train_res['resolution']} (training resolution): {train_res['l2']:.4f}")
    print(f"relative L2 at {zero_shot['resolution']} (zero-shot, 2x finer):  {zero_shot['l2']:.4f}")
    print(f"plot: {train_res.get('plot')}")
    print(f"plot: {zero_shot.get('plot')}")
    print(f"checkpoint: {result['checkpoint']}  (pdesurrogates.models.Surrogate.load(...)(a))")
    t = result["timings_s"]
    if result.get("reused"):
        return 0
    print(f"total time: {t['total']:.0f} s wall, {t['cpu']:.0f} s CPU; details in {Path(args.out) / 'quickstart.json'}")
    return 0
