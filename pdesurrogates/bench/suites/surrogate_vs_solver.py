"""``surrogate-vs-solver``: a trained surrogate against our Darcy solver *at the same accuracy*.

A surrogate's error is measured against a fine reference solution (the data's own, solved at
``reference_resolution``) at its output grid. Our solver (:func:`pdesurrogates.physics.darcy.solve_darcy`,
sparse direct) is run on coarser node grids nested in the reference one, on the reference
coefficient subsampled to them; each coarse solution is interpolated bilinearly to the surrogate's
output grid and compared with the same reference there. The solver's error falls with its grid;
the grid at which it equals the surrogate's error is found by interpolating ``log error`` against
``log resolution`` between the measured grids, and the solver's time there by interpolating
``log seconds`` the same way. The speed-up is that time over the surrogate's time per sample (its
forward pass with normalisation, batch 1 and batched), both measured in the same run and thread
setting. The solver's time is the solve alone (assembly + factorisation + solve), the surrogate's
the prediction alone; generating the coefficient is common to both and left out. Times are CPU
seconds of the calling thread (one torch thread; SciPy's solve runs in it too), so that other
processes on a shared machine, which preempt a long call more often than a short one, do not bias
the ratio; median wall times are kept beside them.

Models (points): ``small`` trains the quickstart's FNO recipe and a small MgNO on our generator's
Darcy data (65² reference, 33² output); ``full`` evaluates the standard Darcy models
(:mod:`pdesurrogates.bench.standard`, run directories ``runs/standard/darcy/<model>``) on the
``darcy_421`` test samples (421² reference, 85² output), whatever of them has a checkpoint.
"""

from __future__ import annotations

import itertools
import math
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

NAME = "surrogate-vs-solver"
TITLE = "Surrogate vs our Darcy solver at equal accuracy (time per sample)"
_QUICKSTART = {"optimizer": {"lr": 3e-3, "weight_decay": 1e-4}, "schedule": {"name": "cosine", "warmup_epochs": 0.5},
               "loss": {"data": "l2"}}
SIZES = {
    "smoke": {"source": "generated", "reference_resolution": 17, "output_stride": 2, "n_train": 16, "n_test": 4,
              "train_seed": 0, "test_seed": 1, "solver_resolutions": [3, 5, 9], "batch": 4, "repeats": 2,
              "runs": None,
              "models": {"fno": {"model": {"name": "fno", "width": 4, "modes": 4, "n_layers": 1},
                                 "train": {"epochs": 1, "batch_size": 8}, **_QUICKSTART}}},
    "small": {"source": "generated", "reference_resolution": 65, "output_stride": 2, "n_train": 800, "n_test": 50,
              "train_seed": 0, "test_seed": 1, "solver_resolutions": [5, 9, 17, 33], "batch": 50, "repeats": 20,
              "runs": "runs/surrogate_vs_solver/small",
              "models": {
                  # the quickstart's FNO and recipe (pdesurrogates quickstart)
                  "fno": {"model": {"name": "fno", "width": 32, "modes": 12, "n_layers": 4},
                          "train": {"epochs": 12, "batch_size": 16}, **_QUICKSTART},
                  # the paper's Darcy MgNO shape, one weight set per scale of the 33 grid, same recipe
                  "mgno": {"model": {"name": "mgno", "width": 24, "n_layers": 4, "levels": 4},
                           "train": {"epochs": 12, "batch_size": 16}, **_QUICKSTART}}},
    "full": {"source": "standard", "reference_resolution": 421, "output_stride": 5, "n_test": 20, "test_start": 1000,
             "data": "datasets/generated/darcy_421.h5", "solver_resolutions": [11, 21, 29, 43, 61, 85, 141, 211],
             "batch": 20, "repeats": 10, "runs": "runs/standard/darcy",
             "models": ["fno", "tfno", "unet", "mgno", "mgno-wide", "mg-tfno"]},
}
COLUMNS = ["model", "params", "epochs", "output_resolution", "surrogate_l2", "solver_equal_resolution",
           "solver_s_equal", "surrogate_s_b1", "surrogate_s_batched", "speedup_b1", "speedup_batched",
           "solver_s_reference", "speedup_vs_reference_b1"]


def _repo() -> Path:
    from pdesurrogates.bench.report import REPO

    return REPO


# ----------------------------------------------------------------------------------------------
# Data and models


def _generated(config: dict[str, Any]) -> dict[str, torch.Tensor]:
    from pdesurrogates.bench import datasets

    r = config["reference_resolution"]
    cache = None if config.get("runs") is None else datasets.CACHE
    a_tr, u_tr = datasets.generate_darcy(r, config["n_train"], seed=config["train_seed"], split="train", cache=cache)
    a_te, u_te = datasets.generate_darcy(r, config["n_test"], seed=config["test_seed"], split="test", cache=cache)
    return {"a_train": a_tr, "u_train": u_tr, "a": a_te, "u": u_te}


def _train(name: str, spec: dict[str, Any], data: dict[str, torch.Tensor], config: dict[str, Any],
           device: str) -> dict[str, Any]:
    """Train (or reuse/resume the run of) one model on the training data at the output grid."""
    from pdesurrogates.data import from_arrays
    from pdesurrogates.train import config_from_dict, fit
    from pdesurrogates.train.engine import resume_directory
    from pdesurrogates.train.evaluation import load_predictor
    from pdesurrogates.train.tasks.surrogate import SurrogateTask

    s = config["output_stride"]
    train_ds = from_arrays(data["a_train"][..., ::s, ::s], data["u_train"][..., ::s, ::s], pde="darcy")
    test_ds = from_arrays(data["a"][..., ::s, ::s], data["u"][..., ::s, ::s], pde="darcy")
    raw = {"seed": 0, "data": {"train": "<in memory>"}, "eval": {"every": spec["train"]["epochs"]},
           **spec}
    cfg = config_from_dict(raw, where=f"{NAME} model {name}")
    task = SurrogateTask(cfg, train_data=train_ds, test_data={"test": test_ds})
    if config.get("runs") is None:
        result = fit(task, cfg, None, device=device, progress=False)
        from pdesurrogates.train.evaluation import Predictor

        predict = Predictor(result.model, dict(task.normalizers()), (1,), 2)
        return {"predict": predict, "epochs": cfg.train.epochs, "train_s": result.summary["wall_time_s"]}
    run = _repo() / config["runs"] / name
    summary_file = run / "summary.json"
    import json

    if not (summary_file.is_file() and json.loads(summary_file.read_text()).get("status") == "finished"):
        started = (run / "checkpoints" / "last").is_dir()
        fit(task, cfg, None if started else run, resume=resume_directory(run) if started else None,
            device=device, progress=False, overwrite=not started)
    summary = json.loads(summary_file.read_text())
    predict, _ = load_predictor(run / "checkpoints" / "last", device=device)
    return {"predict": predict, "epochs": summary["epochs_completed"], "train_s": summary["wall_time_s"]}


def _standard(config: dict[str, Any], device: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    import json

    from pdesurrogates.data import open_dataset
    from pdesurrogates.train.evaluation import load_predictor

    path = _repo() / config["data"]
    start = config["test_start"]
    ds = open_dataset(path, indices=range(start, start + config["n_test"]), in_memory=True)
    a, u = (torch.as_tensor(v) for v in ds.arrays())
    ds.close()
    models = {}
    for name in config["models"]:
        run = _repo() / config["runs"] / name
        if not (run / "checkpoints" / "last").is_dir():
            continue
        predict, _ = load_predictor(run / "checkpoints" / "last", device=device)
        rows = (run / "metrics.csv").read_text().strip().splitlines()
        summary = json.loads((run / "summary.json").read_text()) if (run / "summary.json").is_file() else {}
        models[name] = {"predict": predict, "epochs": f"{len(rows) - 1}/{summary.get('epochs', '?')}",
                        "train_s": summary.get("wall_time_s")}
    return {"a": a, "u": u}, models


# ----------------------------------------------------------------------------------------------
# The solver's error and time against resolution


def nested_stride(reference: int, resolution: int) -> int:
    """Stride of the node grid with ``resolution`` points per side inside the ``reference`` one."""
    if resolution < 2 or (reference - 1) % (resolution - 1):
        raise ValueError(f"a {resolution}-point node grid is not nested in the {reference}-point one")
    return (reference - 1) // (resolution - 1)


def to_grid(u: torch.Tensor, resolution: int) -> torch.Tensor:
    """Bilinear interpolation of node values ``(B, 1, n, n)`` on ``[0, 1]^2`` to ``resolution`` nodes."""
    return torch.nn.functional.interpolate(u, size=(resolution, resolution), mode="bilinear", align_corners=True)


def solver_curve(a: torch.Tensor, u: torch.Tensor, resolutions: list[int], output_stride: int) -> list[dict]:
    """Error and seconds per sample of :func:`~pdesurrogates.physics.darcy.solve_darcy` on each grid.

    ``a``, ``u``: reference coefficients and solutions ``(N, 1, R, R)``. Errors: mean relative L2
    against ``u`` at the output grid (the coarse solution interpolated bilinearly to it:
    ``l2_output``) and at the coarse grid's own nodes (``l2_nodes``).
    """
    from pdesurrogates.losses import relative_lp
    from pdesurrogates.physics.darcy import solve_darcy

    reference = a.shape[-1]
    out_res = (reference - 1) // output_stride + 1
    target = u[..., ::output_stride, ::output_stride].double()
    curve = []
    for r in resolutions:
        s = nested_stride(reference, r)
        coarse = a[:, 0, ::s, ::s].double().numpy()
        solve_darcy(coarse[0])  # warm-up, untimed
        sols, cpu, wall = [], [], []
        for k in range(coarse.shape[0]):
            c0, t0 = time.thread_time(), time.perf_counter()
            sols.append(solve_darcy(coarse[k]))
            cpu.append(time.thread_time() - c0)
            wall.append(time.perf_counter() - t0)
        sol = torch.as_tensor(np.stack(sols))[:, None]
        curve.append({"resolution": r,
                      "l2_output": float(relative_lp(to_grid(sol, out_res), target)),
                      "l2_nodes": float(relative_lp(sol, u[..., ::s, ::s].double())),
                      "seconds": statistics.median(cpu), "wall_seconds": statistics.median(wall)})
    return curve


def equal_accuracy(curve: list[dict], error: float, key: str = "l2_output", seconds: str = "seconds") -> dict[str, Any]:
    """Solver grid and seconds at which its error equals ``error`` (log-log interpolation).

    ``bound`` says when ``error`` lies outside the measured errors: ``"coarsest"`` (the surrogate
    is less accurate than the coarsest grid: its seconds are an upper bound of the solver's) or
    ``"finest"`` (more accurate than the finest grid measured: a lower bound).
    """
    pts = sorted(curve, key=lambda c: c["resolution"])
    errs = [c[key] for c in pts]
    if error >= errs[0]:
        return {"resolution": pts[0]["resolution"], "seconds": pts[0][seconds], "bound": "coarsest"}
    if error <= errs[-1]:
        return {"resolution": pts[-1]["resolution"], "seconds": pts[-1][seconds], "bound": "finest"}
    for lo, hi in itertools.pairwise(pts):
        if hi[key] <= error <= lo[key]:
            w = math.log(error / lo[key]) / math.log(hi[key] / lo[key])
            r = math.exp(math.log(lo["resolution"]) + w * math.log(hi["resolution"] / lo["resolution"]))
            t = math.exp(math.log(lo[seconds]) + w * math.log(hi[seconds] / lo[seconds]))
            return {"resolution": r, "seconds": t, "bound": ""}
    raise ValueError(f"the solver's errors do not fall with resolution: {errs}")


# ----------------------------------------------------------------------------------------------
# Suite protocol


def prepare(config: dict[str, Any], device: str) -> dict[str, Any]:
    """Test data, trained models and the solver's error/time curve (timed once for all models)."""
    if config["source"] == "generated":
        data = _generated(config)
        models = {name: _train(name, spec, data, config, device) for name, spec in config["models"].items()}
    else:
        data, models = _standard(config, device)
    curve = solver_curve(data["a"], data["u"], config["solver_resolutions"], config["output_stride"])
    from pdesurrogates.physics.darcy import solve_darcy

    a_ref = data["a"][:, 0].double().numpy()
    times = []
    for k in range(min(3, a_ref.shape[0])):
        c0 = time.thread_time()
        solve_darcy(a_ref[k])
        times.append(time.thread_time() - c0)
    return {"data": data, "models": models, "curve": curve, "reference_seconds": statistics.median(times)}


def points(config: dict[str, Any], context: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"model": name} for name in context["models"]]


def _time(fn, repeats: int) -> tuple[float, float]:
    """Median CPU seconds of this thread and median wall seconds of ``fn()``."""
    fn()
    cpu, wall = [], []
    for _ in range(repeats):
        c0, t0 = time.thread_time(), time.perf_counter()
        fn()
        cpu.append(time.thread_time() - c0)
        wall.append(time.perf_counter() - t0)
    return statistics.median(cpu), statistics.median(wall)


@torch.no_grad()
def measure(point: dict[str, Any], context: dict[str, Any], config: dict[str, Any], device: str) -> dict[str, Any]:
    from pdesurrogates.losses import relative_lp
    from pdesurrogates.models import count_parameters

    entry = context["models"][point["model"]]
    predict = entry["predict"]
    predict.model.eval()
    s = config["output_stride"]
    dev = torch.device(device)
    a = context["data"]["a"][..., ::s, ::s].float().to(dev)
    u = context["data"]["u"][..., ::s, ::s].float().to(dev)
    preds = torch.cat([predict(a[i:i + config["batch"]]) for i in range(0, a.shape[0], config["batch"])])
    err = float(relative_lp(preds.float(), u))
    sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)

    def one():
        predict(a[:1])
        sync()

    batch = a[: config["batch"]]

    def many():
        predict(batch)
        sync()

    t1, w1 = _time(one, config["repeats"])
    tb, wb = _time(many, max(2, config["repeats"] // 4))
    tb, wb = tb / batch.shape[0], wb / batch.shape[0]
    eq = equal_accuracy(context["curve"], err)
    ref_s = context["reference_seconds"]
    return {
        "params": count_parameters(predict.model), "epochs": entry["epochs"], "train_s": entry["train_s"],
        "output_resolution": a.shape[-1], "surrogate_l2": err,
        "solver_equal_resolution": round(eq["resolution"], 1), "equal_bound": eq["bound"],
        "solver_s_equal": eq["seconds"], "surrogate_s_b1": t1, "surrogate_s_batched": tb,
        "speedup_b1": eq["seconds"] / t1, "speedup_batched": eq["seconds"] / tb,
        "solver_s_reference": ref_s, "speedup_vs_reference_b1": ref_s / t1,
        "surrogate_wall_s_b1": w1, "surrogate_wall_s_batched": wb,
        "solver_wall_s_equal": equal_accuracy(context["curve"], err, seconds="wall_seconds")["seconds"],
        "solver_curve": context["curve"], "threads": torch.get_num_threads(),
    }


def analyze(rows: list[dict[str, Any]], config: dict[str, Any]) -> dict[str, Any]:
    r = config["reference_resolution"]
    out = (r - 1) // config["output_stride"] + 1
    curve = rows[0]["solver_curve"] if rows else []
    table = [{"solver grid": f"{c['resolution']}²", "rel. L2 at the output grid (bilinear)": c["l2_output"],
              "rel. L2 at its nodes": c["l2_nodes"], "CPU ms per sample": 1e3 * c["seconds"],
              "wall ms per sample": 1e3 * c.get("wall_seconds", float("nan"))} for c in curve]
    lines = [(f"Reference: the data's own solution on {r}² nodes; surrogates predict on {out}² nodes and their "
             f"error is against the reference there. Solver: `solve_darcy` (sparse direct, one thread) on node "
             f"grids nested in {r}², coefficient subsampled, solution interpolated bilinearly to {out}²; the "
             f"grid of equal error and its time per sample are interpolated log-log between the measured grids. "
             f"Surrogate times: median forward pass (normalisation included) at batch 1 and per sample at batch "
             f"{config['batch']}; {rows[0]['threads'] if rows else 1} torch thread(s), same run as the solver. "
             f"All times are CPU seconds of the calling thread (wall times in the JSON).")]
    for row in rows:
        bound = {"coarsest": " (surrogate less accurate than the coarsest solver grid: speed-up is an upper bound)",
                 "finest": " (surrogate more accurate than the finest solver grid measured: speed-up is a lower "
                           "bound)"}.get(row["equal_bound"], "")
        faster = "faster" if row["speedup_b1"] >= 1 else "slower"
        lines.append(f"- `{row['model']}` ({row['params']} parameters): error {row['surrogate_l2']:.4f}, equal to the "
                     f"solver at about {row['solver_equal_resolution']}² ({1e3 * row['solver_s_equal']:.2f} ms); "
                     f"surrogate {1e3 * row['surrogate_s_b1']:.2f} ms at batch 1 ({row['speedup_b1']:.2f}x, {faster}) "
                     f"and {1e3 * row['surrogate_s_batched']:.2f} ms batched ({row['speedup_batched']:.2f}x){bound}. "
                     f"Against the exact {r}² solve ({1e3 * row['solver_s_reference']:.1f} ms): "
                     f"{row['speedup_vs_reference_b1']:.1f}x at batch 1.")
    return {"fits": {}, "tables": {"Solver error and time against its grid": table}, "notes": "\n".join(lines) + "\n",
            "columns": COLUMNS}


def plot(payload: dict[str, Any], folder: Path, stem: str) -> list[Path]:
    """Error against time per sample: the solver's curve over its grids and each surrogate."""
    from matplotlib.figure import Figure

    rows = payload["rows"]
    fig = Figure(figsize=(6.0, 4.2), layout="constrained")
    ax = fig.add_subplot(1, 1, 1)
    curve = rows[0]["solver_curve"] if rows else []
    if curve:
        ax.plot([c["seconds"] for c in curve], [c["l2_output"] for c in curve], "-o", color="k", label="solver")
        for c in curve:
            ax.annotate(f"{c['resolution']}²", (c["seconds"], c["l2_output"]), fontsize=7,
                        xytext=(3, 3), textcoords="offset points")
    for i, r in enumerate(rows):
        ax.plot([r["surrogate_s_b1"]], [r["surrogate_l2"]], "s", color=f"C{i}", label=f"{r['model']} batch 1")
        ax.plot([r["surrogate_s_batched"]], [r["surrogate_l2"]], "^", color=f"C{i}", label=f"{r['model']} batched")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("seconds per sample")
    ax.set_ylabel("relative L2 error vs the fine reference")
    ax.set_title(payload.get("title", ""), fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    path = folder / f"{stem}_error_vs_time.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return [path]
