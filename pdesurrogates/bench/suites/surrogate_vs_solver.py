"""``surrogate-vs-solver``: wall time of a surrogate prediction vs the solver that made its data.

An FNO is trained once, at ``train_resolution``, on our Darcy generator's data under a small budget.
Then at each resolution: time the generator per sample (coefficient sampling + sparse direct solve,
:func:`pdesurrogates.bench.datasets.darcy_samples`), evaluate the trained surrogate there (zero-shot
away from its training resolution: FNO weights are resolution independent) and time its forward
pass at batch 1 and batched. The speed-up is only meaningful next to the accuracy the surrogate
reaches, so both are in each row.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import torch

from pdesurrogates.bench import datasets, plots

NAME = "surrogate-vs-solver"
TITLE = "Surrogate vs numerical solver: time per sample at the accuracy reached (Darcy)"
SIZES = {
    "smoke": {"train_resolution": 16, "resolutions": [16, 32], "family": "fno", "width": 4, "modes": 4,
              "n_train": 16, "n_test": 4, "solver_samples": 2, "batch": 4, "repeats": 2, "seed": 0,
              "budget": {"epochs": 1, "batch_size": 8, "lr": 3e-3, "weight_decay": 1e-4}},
    "small": {"train_resolution": 32, "resolutions": [32, 64, 128, 256], "family": "fno", "width": 8, "modes": 8,
              "n_train": 96, "n_test": 16, "solver_samples": 5, "batch": 16, "repeats": 5, "seed": 0,
              "budget": {"epochs": 10, "batch_size": 8, "lr": 3e-3, "weight_decay": 1e-4}},
    "full": {"train_resolution": 64, "resolutions": [64, 128, 256, 512], "family": "fno", "width": 32,
             "modes": 16, "n_train": 1000, "n_test": 50, "solver_samples": 10, "batch": 64, "repeats": 20,
             "seed": 0, "budget": {"epochs": 100, "batch_size": 8, "lr": 3e-3, "weight_decay": 1e-4}},
}
COLUMNS = ["resolution", "train_resolution", "family", "test_rel_l2", "solver_seconds_per_sample", "surrogate_seconds_per_sample",
           "surrogate_batched_seconds_per_sample", "speedup", "speedup_batched"]


def prepare(config: dict[str, Any], device: str) -> dict[str, Any]:
    """Train the surrogate once at ``train_resolution``; keep it with its normalisers."""
    from pdesurrogates.bench.cases import build_model
    from pdesurrogates.bench.training import Budget, Scaler, fit_surrogate

    r, seed = config["train_resolution"], config["seed"]
    data = datasets.generated_darcy(r, config["n_train"], config["n_test"], seed=seed)
    model = build_model(config["family"], config["width"], modes=config["modes"], seed=seed)
    fit = fit_surrogate(model, data.train, data.tests, budget=Budget(**config["budget"]), seed=seed, device=device)
    return {"model": model.eval(), "fit": fit, "scalers": (Scaler.fit(data.train[0]), Scaler.fit(data.train[1]))}


def points(config: dict[str, Any], context: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"resolution": r} for r in config["resolutions"]]


def _time(fn, repeats: int, sync) -> float:
    fn()
    times = []
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def measure(point: dict[str, Any], context: dict[str, Any], config: dict[str, Any], device: str) -> dict[str, Any]:
    from pdesurrogates.train.tasks.tensors import mean_relative_l2

    r = point["resolution"]
    seed = config["seed"]
    datasets.darcy_samples(r, [datasets.TEST_OFFSET * 3], seed)  # warm-up, untimed
    solver_times = []
    for i in range(config["solver_samples"]):
        t0 = time.perf_counter()
        datasets.darcy_samples(r, [datasets.TEST_OFFSET * 2 + i], seed)
        solver_times.append(time.perf_counter() - t0)
    tx, ty = datasets.generate_darcy(r, config["n_test"], seed=seed, split="test")
    model = context["model"]
    xs, ys = context["scalers"]
    dev = torch.device(device)
    err = mean_relative_l2(model, tx, ty, lambda m, x: ys.decode(m(xs.encode(x))), dev)
    sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)
    x1 = xs.encode(tx[:1]).to(dev)
    xb = x1.expand(config["batch"], -1, -1, -1).contiguous()
    with torch.no_grad():
        t1 = _time(lambda: model(x1), config["repeats"], sync)
        tb = _time(lambda: model(xb), config["repeats"], sync) / config["batch"]
    solver = statistics.median(solver_times)
    return {
        "train_resolution": config["train_resolution"], "family": config["family"],
        "params": context["fit"]["params"], "test_rel_l2": err,
        "train_seconds": round(context["fit"]["train_seconds"], 3), "solver_seconds_per_sample": solver,
        "surrogate_seconds_per_sample": t1, "surrogate_batched_seconds_per_sample": tb,
        "speedup": solver / t1, "speedup_batched": solver / tb,
    }


def analyze(rows: list[dict[str, Any]], config: dict[str, Any]) -> dict[str, Any]:
    notes = (
        f"Solver: our Darcy generator (coefficient field + sparse direct solve), median of "
        f"{config['solver_samples']} single-sample calls on the CPU. Surrogate: {config['family']} width "
        f"{config['width']} trained once on {config['n_train']} samples at {config['train_resolution']}² for "
        f"{config['budget']['epochs']} epochs, evaluated zero-shot at the other resolutions; "
        f"median of {config['repeats']} forward passes at batch 1 and batch {config['batch']} (per sample). "
        "Training time is not amortised into the speed-up: the break-even number of queries is "
        "train_seconds / (solver - surrogate time).\n"
    )
    return {"fits": {}, "tables": {}, "notes": notes, "columns": COLUMNS}


def plot(payload: dict[str, Any], folder: Path, stem: str) -> list[Path]:
    rows = []
    for r in payload["rows"]:
        for who, key in (("solver", "solver_seconds_per_sample"), ("surrogate b=1", "surrogate_seconds_per_sample"),
                         ("surrogate batched", "surrogate_batched_seconds_per_sample")):
            rows.append({"who": who, "pixels": r["resolution"] ** 2, "seconds": r[key]})
    return [plots.loglog_plot(folder / f"{stem}_time.png", rows, x="pixels", y="seconds", group="who",
                              title=payload["title"], xlabel="grid points", ylabel="seconds per sample")]
