"""Neural multigrid against smoothed-aggregation AMG on two-phase coefficients of growing contrast.

Systems ``-div(a grad u) = b`` on ``n x n`` node grids, ``a`` in ``{1, c}`` (thresholded Gaussian
random fields, :func:`pdesurrogates.physics.darcy.sample_coefficient` with ``high=c, low=1``),
random ``b``, solved to a relative residual of 1e-6 from zero. Methods, all measured in the same run
on one thread:

* ``neural MG (BoxMG)``: the network trained with ``configs/neural_multigrid.toml`` (black-box
  multigrid hierarchy, symmetric learned smoother, contrasts up to 1e6) in flexible CG;
* ``BoxMG + Jacobi``: the same network untrained (classical black-box multigrid, damped Jacobi);
* ``neural MG (rediscretised)``: the previous design, trained with the previous settings
  (``hierarchy = "rediscretised"``, separate smoothers, Poisson and 12/3 Darcy coefficients);
* ``SA-AMG``: pyamg's ``smoothed_aggregation_solver`` with default settings, one V-cycle per
  iteration, in preconditioned CG.

Seconds are setup (hierarchy) + solve; ratios to SA-AMG are per system. Training runs through the
package's engine first (about a minute each on a CPU).

    python benchmarks/neural_multigrid_contrast.py --overwrite          # 65^2, 66^2, 257^2, 513^2
    python benchmarks/neural_multigrid_contrast.py --quick --out /tmp/x # seconds
    python benchmarks/neural_multigrid_contrast.py --replot benchmarks/results/cpu/neural_multigrid_contrast.json

Writes ``benchmarks/results/cpu/neural_multigrid_contrast.{json,md,png}``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import tomllib
import torch

from pdesurrogates.bench.report import RESULTS, device_name, write_results
from pdesurrogates.linalg import AMGPreconditioner, fcg, pcg
from pdesurrogates.physics.darcy import sample_coefficient
from pdesurrogates.physics.grid import Grid
from pdesurrogates.physics.operators import diffusion_matrix
from pdesurrogates.solvers.learned.multigrid_preconditioner import (
    MultigridNeuralOperator,
    NeuralMultigridPreconditioner,
)
from pdesurrogates.train import train_network
from pdesurrogates.train.config import to_dict
from pdesurrogates.train.tasks.preconditioners import NeuralMultigridTask

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "neural_multigrid.toml"
RTOL = 1e-6
NAME = "neural_multigrid_contrast"
METHODS = ("neural MG (BoxMG)", "BoxMG + Jacobi", "neural MG (rediscretised)", "SA-AMG")


def training_configs(steps: int | None = None) -> dict:
    """The shipped config and the previous design's settings (``steps`` shortens both, for smoke runs)."""
    raw = tomllib.loads(CONFIG.read_text())
    if steps is not None:
        raw["train"].update(epochs=1, steps_per_epoch=steps)
    new = NeuralMultigridTask.parse_config(raw)
    raw["problem"].update(coefficient="mixed", cycles=1)
    raw["model"].update(hierarchy="rediscretised", symmetric=False)
    old = NeuralMultigridTask.parse_config(raw)
    return {"neural MG (BoxMG)": new, "neural MG (rediscretised)": old}


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def solve_case(n: int, contrast: float, seed: int, networks: dict, maxiter: int) -> list[dict]:
    grid = Grid((n, n))
    a = sample_coefficient(n, torch.Generator().manual_seed(seed), high=contrast, low=1.0)
    A = diffusion_matrix(a, grid)
    b = np.random.default_rng(seed).standard_normal(A.shape[0])
    rows = []
    for method in METHODS:
        if method == "SA-AMG":
            M, setup = _timed(lambda: AMGPreconditioner(A))
            res, solve = _timed(lambda M=M: pcg(A, b, M=M, rtol=RTOL, maxiter=maxiter))
        else:
            net = networks[method]
            M, setup = _timed(lambda net=net: NeuralMultigridPreconditioner(net, grid, a))
            res, solve = _timed(lambda M=M: fcg(A, b, M=M, rtol=RTOL, maxiter=maxiter))
        true_residual = float(np.linalg.norm(b - A @ res.x) / np.linalg.norm(b))
        rows.append({"n": n, "contrast": contrast, "seed": seed, "method": method, "iterations": int(res.iterations),
                     "converged": bool(res.converged), "relative_residual": true_residual,
                     "setup_s": setup, "solve_s": solve, "total_s": setup + solve})
    amg = rows[-1]
    for row in rows:
        row["iterations_vs_amg"] = row["iterations"] / amg["iterations"]
        row["time_vs_amg"] = row["total_s"] / amg["total_s"]
    return rows


def summarise(rows: list[dict]) -> list[dict]:
    """One row per (n, contrast, method): the mean and max over seeds."""
    out = []
    keys = sorted({(r["n"], r["contrast"], r["method"]) for r in rows}, key=lambda k: (k[0], k[1], METHODS.index(k[2])))
    for n, c, method in keys:
        group = [r for r in rows if (r["n"], r["contrast"], r["method"]) == (n, c, method)]
        out.append({"n": n, "contrast": c, "method": method,
                    "iterations": float(np.mean([r["iterations"] for r in group])),
                    "max_iterations": max(r["iterations"] for r in group),
                    "converged": all(r["converged"] for r in group),
                    "setup_s": float(np.mean([r["setup_s"] for r in group])),
                    "total_s": float(np.mean([r["total_s"] for r in group])),
                    "iterations_vs_amg": float(np.mean([r["iterations_vs_amg"] for r in group])),
                    "time_vs_amg": float(np.mean([r["time_vs_amg"] for r in group]))})
    return out


def plot(summary: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = sorted({r["n"] for r in summary})
    fig, axes = plt.subplots(2, len(sizes), figsize=(3.6 * len(sizes), 6.4), squeeze=False, sharex=True)
    for j, n in enumerate(sizes):
        for method, marker in zip(METHODS, "osD^"):
            rows = sorted((r for r in summary if r["n"] == n and r["method"] == method), key=lambda r: r["contrast"])
            c = [r["contrast"] for r in rows]
            axes[0, j].plot(c, [r["iterations"] for r in rows], marker=marker, label=method)
            axes[1, j].plot(c, [r["total_s"] for r in rows], marker=marker, label=method)
        axes[0, j].set_title(f"{n} x {n} nodes")
        for ax in axes[:, j]:
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.grid(True, which="both", alpha=0.3)
        axes[1, j].set_xlabel("contrast c (a in {1, c})")
    axes[0, 0].set_ylabel(f"iterations to {RTOL:g}")
    axes[1, 0].set_ylabel("setup + solve (s)")
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _notes(summary: list[dict], threads: int, training: dict) -> str:
    lines = [(f"Relative residual {RTOL:g}; setup + solve on {threads} thread(s); ratios to SA-AMG are per "
             "system, then averaged over seeds; a method that did not converge is marked in `converged` "
             "(its count is the iteration limit)."), ""]
    for key, info in training.items():
        lines.append(f"- training `{key}`: {info['seconds']:.0f} s, loss {info['initial_loss']:.3g} -> "
                     f"{info['final_loss']:.3g} (mean of the last 20 steps)")
    ours = [r for r in summary if r["method"] == METHODS[0]]
    if ours:
        worst = max(r["iterations_vs_amg"] for r in ours)
        lines.append(f"- neural MG (BoxMG): at most {worst:.2f}x SA-AMG's iterations over all cases")
    return "\n".join(lines)


def run(sizes, contrasts, seeds: int, steps: int | None, maxiter: int, out_dir: Path | None, name: str) -> dict:
    torch.set_num_threads(1)
    configs = training_configs(steps)
    networks, training = {}, {}
    for key, config in configs.items():
        (net, history), seconds = _timed(lambda config=config: train_network(NeuralMultigridTask(config)))
        networks[key] = net.float()
        training[key] = {"seconds": seconds, "initial_loss": history[0], "final_loss": float(np.mean(history[-20:]))}
    networks["BoxMG + Jacobi"] = MultigridNeuralOperator(configs[METHODS[0]].model)
    rows = []
    for n in sizes:
        for contrast in contrasts:
            for seed in range(seeds):
                rows += solve_case(n, contrast, seed, networks, maxiter)
                print(*(f"{r['method']}: {r['iterations']}" for r in rows[-len(METHODS):]), f"(n={n}, c={contrast:g}, "
                      f"seed={seed})", flush=True)
    summary = summarise(rows)
    config = {"sizes": list(sizes), "contrasts": list(contrasts), "seeds": seeds, "rtol": RTOL, "maxiter": maxiter,
              "threads": torch.get_num_threads(), "training": {k: to_dict(v) for k, v in configs.items()}}
    paths = write_results(name, summary, config=config, title="Neural multigrid vs SA-AMG on two-phase contrast",
                          notes=_notes(summary, torch.get_num_threads(), training), out_dir=out_dir,
                          columns=["n", "contrast", "method", "iterations", "max_iterations", "converged", "setup_s",
                                   "total_s", "iterations_vs_amg", "time_vs_amg"],
                          extra={"per_system": rows, "training_summary": training})
    png = paths["json"].with_suffix(".png")
    plot(summary, png)
    return {"rows": summary, "per_system": rows, "paths": {**paths, "png": png}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[65, 66, 257, 513], help="nodes per side")
    parser.add_argument("--contrasts", type=float, nargs="+", default=[4.0, 1e3, 1e6])
    parser.add_argument("--seeds", type=int, default=3, help="coefficients (and right-hand sides) per case")
    parser.add_argument("--maxiter", type=int, default=500)
    parser.add_argument("--quick", action="store_true", help="smoke run: 33^2 and 34^2, 20 training steps, one seed")
    parser.add_argument("--out", type=Path, default=None, help="results folder (default benchmarks/results/<device>)")
    parser.add_argument("--replot", type=Path, default=None, metavar="JSON", help="only redraw the PNG of a results JSON")
    parser.add_argument("--overwrite", action="store_true", help="replace existing results")
    args = parser.parse_args(argv)
    if args.replot is not None:
        plot(json.loads(args.replot.read_text())["rows"], args.replot.with_suffix(".png"))
        return 0
    name = NAME + ("_quick" if args.quick else "")
    target = (args.out or RESULTS / device_name(None)) / f"{name}.json"
    if target.exists() and not args.overwrite:
        raise FileExistsError(f"{target} exists; pass --overwrite to replace it")
    if args.quick:
        out = run([33, 34], args.contrasts, 1, 20, 200, args.out, name)
    else:
        out = run(args.sizes, args.contrasts, args.seeds, None, args.maxiter, args.out, name)
    print(Path(out["paths"]["md"]).read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
