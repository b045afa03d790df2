"""Learned preconditioners against classical ones: iterations and wall time to rel. residual 1e-6.

Systems: 2D Poisson (interior 64^2 .. 512^2), 2D two-phase diffusion (contrast 12/3, the FNO Darcy
coefficient from :func:`pdesurrogates.physics.darcy.sample_coefficient`), 3D Poisson (16^3 .. 64^3).
Solvers, all to ``||b - A x|| <= 1e-6 ||b||`` from ``x0 = 0`` with a standard-normal ``b``:

* CG; SSOR-PCG with the best omega on a grid; IC(0)-PCG; pyamg smoothed-aggregation AMG-PCG;
* **DCDM** (Kaneda et al. 2023): FCG(2) with the conjugate-direction network trained on the
  smallest grid (32^2 / 16^3) and applied unchanged to the larger ones;
* **neural multigrid**: FCG(2) with the learned V-cycle
  (:mod:`pdesurrogates.solvers.learned.multigrid_preconditioner`) trained on 33^2 nodes (Poisson and
  two-phase coefficients mixed) or 17^3 (Poisson), applied unchanged to every size;
* **MgNO (registry)**: a generic surrogate from :mod:`pdesurrogates.models` (MgNO, input
  ``(log a, r)``) trained as a preconditioner (:mod:`pdesurrogates.solvers.learned.neural_preconditioner`)
  on 33^2 nodes, in FCG(2); 2D only, up to ``mgno_max_n``;
* **Jacobi multigrid**: the same network untrained (= classical geometric V(1,1) with damped
  Jacobi), the ablation that shows what training adds.

``seconds`` is the wall time of set-up (factorisation, AMG hierarchy, network hierarchy) plus the
solve, on the device recorded in the JSON; ``setup_seconds`` is the set-up alone. The training time of
the networks is reported once in the notes, not per solve.

    python benchmarks/learned_preconditioner.py                # the committed 'small' run
    python benchmarks/learned_preconditioner.py --size smoke   # seconds, used by the tests

Writes benchmarks/results/<device>/learned_preconditioner.{json,md,png} (``--out DIR`` elsewhere;
existing results are replaced only with ``--overwrite``). ``pdesurrogates bench linear-solvers`` runs it
too.
"""

from __future__ import annotations

import argparse
import json
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch

from pdesurrogates.bench.report import write_results
from pdesurrogates.linalg import (
    AMGPreconditioner,
    IC0Preconditioner,
    SSORPreconditioner,
    cg,
    fcg,
    pcg,
)
from pdesurrogates.models import MgNOConfig
from pdesurrogates.physics.darcy import sample_coefficient
from pdesurrogates.physics.grid import Grid
from pdesurrogates.physics.operators import diffusion_matrix
from pdesurrogates.solvers.learned.conjugate_direction import DCDMConfig, LearnedPreconditioner
from pdesurrogates.solvers.learned.multigrid_preconditioner import (
    MultigridNeuralOperator,
    MultigridPreconditionerConfig,
    NeuralMultigridPreconditioner,
)
from pdesurrogates.solvers.learned.neural_preconditioner import NeuralOperatorPreconditioner
from pdesurrogates.train import train_network
from pdesurrogates.train.config import to_dict
from pdesurrogates.train.tasks.preconditioners import (
    DCDMTask,
    NeuralMultigridTask,
    OperatorPreconditionerTask,
)

SIZES = {
    "smoke": {"poisson2d": [16, 32], "darcy2d": [16], "poisson3d": [8], "dcdm_steps": 30, "dcdm3d_steps": 10,
              "mg_steps": 20, "mg3d_steps": 5, "dcdm_maxiter": 300,
              "mgno_steps": 20, "mgno_max_n": 32},
    "small": {"poisson2d": [64, 128, 256, 512], "darcy2d": [64, 128, 256, 512], "poisson3d": [16, 32, 64],
              "dcdm_steps": 1500, "dcdm3d_steps": 600, "mg_steps": 300, "mg3d_steps": 150, "dcdm_maxiter": 500,
              "mgno_steps": 600, "mgno_max_n": 256},
    "large3d": {"poisson2d": [], "darcy2d": [], "poisson3d": [32, 64, 128], "dcdm_steps": 1500, "dcdm3d_steps": 600,
                "mg_steps": 300, "mg3d_steps": 150, "dcdm_maxiter": 500, "mgno_steps": 1, "mgno_max_n": 0},
    "full": {"poisson2d": [64, 128, 256, 512, 1024], "darcy2d": [64, 128, 256, 512, 1024],
             "poisson3d": [16, 32, 64, 128], "dcdm_steps": 3000, "dcdm3d_steps": 1000, "mg_steps": 600,
             "mg3d_steps": 300, "dcdm_maxiter": 1000, "mgno_steps": 2000, "mgno_max_n": 1024},
}
RTOL = 1e-6
OMEGAS = (1.0, 1.2, 1.4, 1.5, 1.6, 1.7, 1.8, 1.9)
LEARNED = ("DCDM", "neural multigrid", "MgNO (registry)")
MGNO = MgNOConfig(in_channels=2, width=16, n_layers=4, levels=5, variant="legacy")  # the generic surrogate, 2D


def _timed(fn):
    t0 = time.perf_counter()
    res = fn()
    return res, time.perf_counter() - t0


def training_configs(sizes: dict, seed: int) -> dict:
    """The training config of every network the sizes need (2D and/or 3D), on the package's engine."""
    configs = {}
    if sizes["poisson2d"] or sizes["darcy2d"]:
        configs["dcdm2"] = DCDMTask.make_config(resolution=34, steps=sizes["dcdm_steps"], n_samples=1024,
                                                n_ritz=400, seed=seed)
        configs["mg2"] = NeuralMultigridTask.make_config(resolution=33, steps=sizes["mg_steps"], seed=seed)
        configs["mgno2"] = OperatorPreconditionerTask.make_config(resolution=33, steps=sizes["mgno_steps"],
                                                                  seed=seed, model=MGNO)
    if sizes["poisson3d"]:
        configs["dcdm3"] = DCDMTask.make_config(resolution=18, ndim=3, steps=sizes["dcdm3d_steps"], n_samples=512,
                                                n_ritz=300, seed=seed, model=DCDMConfig(ndim=3))
        configs["mg3"] = NeuralMultigridTask.make_config(resolution=17, ndim=3, coefficient="ones", batch_size=4,
                                                         steps=sizes["mg3d_steps"], seed=seed)
    return configs


def train_networks(sizes: dict, seed: int) -> tuple[dict, dict]:
    """The trained networks the sizes need and their training summaries."""
    tasks = {"dcdm": DCDMTask, "neural_multigrid": NeuralMultigridTask,
             "operator_preconditioner": OperatorPreconditionerTask}
    nets, info = {}, {}
    for key, config in training_configs(sizes, seed).items():
        (net, hist), sec = _timed(lambda config=config: train_network(tasks[config.task](config)))
        nets[key] = net.float() if config.task == "neural_multigrid" else net
        tail = 50 if key == "dcdm2" else 20
        info[key.replace("2", "2d").replace("3", "3d")] = {
            "seconds": sec, "initial_loss": hist[0], "final_loss": float(np.mean(hist[-tail:]))}
    return nets, info


def run(size: str = "small", seed: int = 2, out_dir: Path | None = None, name: str = "learned_preconditioner") -> dict:
    torch.manual_seed(seed)
    sizes = SIZES[size]
    nets, training = train_networks(sizes, seed)
    rows = []
    cases = [("poisson2d", n, 2) for n in sizes["poisson2d"]]
    cases += [("darcy2d", n, 2) for n in sizes["darcy2d"]]
    cases += [("poisson3d", n, 3) for n in sizes["poisson3d"]]
    rng = np.random.default_rng(seed)
    for problem, n, ndim in cases:
        rows += solve_case(problem, n, ndim, nets, sizes, seed, rng)
    fits = growth_exponents(rows)
    targets = check_targets(rows, fits)
    config = {"size": size, "seed": seed, "rtol": RTOL, "omegas": OMEGAS, "sizes": sizes,
              "training": {k: to_dict(v) for k, v in training_configs(sizes, seed).items()}}
    extra = {"training": training, "growth_exponents": fits, "targets": targets}
    paths = write_results(name, rows, config=config, extra=extra, notes=_notes(training, fits, targets),
                          title="Learned vs classical preconditioners (rel. residual 1e-6)",
                          columns=["problem", "n", "unknowns", "method", "iterations", "converged", "seconds",
                                   "setup_seconds"], out_dir=out_dir)
    _plot(rows, paths["json"].with_suffix(".png"))
    return {"rows": rows, "paths": paths, **extra}


def solve_case(problem: str, n: int, ndim: int, nets: dict, sizes: dict, seed: int, rng) -> list[dict]:
    """Every solver on one system; one row per solver."""
    grid = Grid((n + 2,) * ndim)
    a = (sample_coefficient(n + 2, torch.Generator().manual_seed(seed)) if problem == "darcy2d"
         else np.ones(grid.shape))
    A = diffusion_matrix(a, grid)
    b = rng.standard_normal(A.shape[0])
    record = {"problem": problem, "n": n, "unknowns": A.shape[0]}
    rows = []

    def add(method, make, solve, **fields):
        M, setup = _timed(make)
        res, sec = _timed(partial(solve, M))
        rows.append({**record, "method": method, **fields, "iterations": int(res.iterations),
                     "converged": bool(res.converged), "seconds": setup + sec, "setup_seconds": setup})
        print(f"{problem} {n} {method}: {res.iterations} iterations, {setup + sec:.3g} s", flush=True)
        return rows[-1]

    add("CG", lambda: None, lambda M: cg(A, b, rtol=RTOL, maxiter=20000))
    ssor = []
    for omega in OMEGAS:
        ssor.append(add("SSOR-PCG", partial(SSORPreconditioner, A, omega=omega),
                        lambda M: pcg(A, b, M=M, rtol=RTOL, maxiter=5000), omega=omega))
        rows.pop()
    rows.append(min(ssor, key=lambda r: (r["iterations"], r["seconds"])))
    add("IC(0)-PCG", lambda: IC0Preconditioner(A), lambda M: pcg(A, b, M=M, rtol=RTOL, maxiter=5000))
    add("AMG-PCG", lambda: AMGPreconditioner(A), lambda M: pcg(A, b, M=M, rtol=RTOL, maxiter=500))
    dcdm_net, mg_net = nets[f"dcdm{ndim}"], nets[f"mg{ndim}"]
    add("DCDM", lambda: LearnedPreconditioner(dcdm_net).for_shape(grid.interior_shape),
        lambda M: fcg(A, b, M=M, m=2, rtol=RTOL, maxiter=sizes["dcdm_maxiter"]))
    add("neural multigrid", lambda: NeuralMultigridPreconditioner(mg_net, grid, a),
        lambda M: fcg(A, b, M=M, m=2, rtol=RTOL, maxiter=500))
    if ndim == 2 and n <= sizes["mgno_max_n"]:
        add("MgNO (registry)", lambda: NeuralOperatorPreconditioner(nets["mgno2"], grid, a),
            lambda M: fcg(A, b, M=M, m=2, rtol=RTOL, maxiter=sizes["dcdm_maxiter"]))
    jacobi_mg = MultigridNeuralOperator(MultigridPreconditionerConfig(ndim=ndim))
    add("Jacobi multigrid (untrained)", lambda: NeuralMultigridPreconditioner(jacobi_mg, grid, a),
        lambda M: fcg(A, b, M=M, m=2, rtol=RTOL, maxiter=500))
    return rows


def growth_exponents(rows) -> dict:
    """``iterations ~ unknowns^p`` fitted per problem and method (least squares in log-log)."""
    out: dict = {}
    for problem in sorted({r["problem"] for r in rows}):
        for method in sorted({r["method"] for r in rows}):
            pts = [(r["unknowns"], r["iterations"]) for r in rows if r["problem"] == problem and r["method"] == method]
            if len(pts) >= 2:
                x, y = np.log([p[0] for p in pts]), np.log([max(p[1], 1) for p in pts])
                out.setdefault(problem, {})[method] = float(np.polyfit(x, y, 1)[0])
    return out


def check_targets(rows, fits) -> dict:
    """The targets per learned method and problem: < IC(0) and <= 2x AMG at every size
    (and converged), growth exponent <= half of CG's."""
    out: dict = {}
    for problem, exps in fits.items():
        for method in LEARNED:
            sub = {r["n"]: r for r in rows if r["problem"] == problem and r["method"] == method}
            if method not in exps:
                continue
            ic0 = {r["n"]: r["iterations"] for r in rows if r["problem"] == problem and r["method"] == "IC(0)-PCG"}
            amg = {r["n"]: r["iterations"] for r in rows if r["problem"] == problem and r["method"] == "AMG-PCG"}
            out.setdefault(problem, {})[method] = {
                "fewer_than_ic0": all(r["converged"] and r["iterations"] < ic0[n] for n, r in sub.items()),
                "within_2x_amg": all(r["converged"] and r["iterations"] <= 2 * amg[n] for n, r in sub.items()),
                "exponent_at_most_half_cg": all(r["converged"] for r in sub.values())
                and exps[method] <= 0.5 * exps["CG"],
            }
    return out


def _notes(training, fits, targets) -> str:
    lines = ["Training (once, CPU): " + ", ".join(
        f"{k} {v['seconds']:.1f} s (loss {v['initial_loss']:.3g} -> {v['final_loss']:.3g})"
        for k, v in training.items()), "",
        "Iteration growth exponents (iterations ~ unknowns^p):", ""]
    methods = sorted({m for exps in fits.values() for m in exps})
    lines += ["| problem | " + " | ".join(methods) + " |", "|---|" + "---|" * len(methods)]
    for problem, exps in fits.items():
        lines.append(f"| {problem} | " + " | ".join(f"{exps[m]:.3f}" if m in exps else "-" for m in methods) + " |")
    lines += ["", "Targets (fewer iterations than IC(0) at every size / at most 2x AMG / exponent <= half CG's):", ""]
    for problem, per in targets.items():
        for method, t in per.items():
            lines.append(f"- {problem}, {method}: " + ", ".join(f"{k} {'yes' if v else 'NO'}" for k, v in t.items()))
    return "\n".join(lines)


def _plot(rows, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    problems = sorted({r["problem"] for r in rows})
    methods = sorted({r["method"] for r in rows})
    colors = {m: plt.get_cmap("tab10")(i % 10) for i, m in enumerate(methods)}  # one colour per method everywhere
    fig, axes = plt.subplots(2, len(problems), figsize=(5 * len(problems), 8), squeeze=False)
    for col, problem in enumerate(problems):
        sub = [r for r in rows if r["problem"] == problem]
        for method in sorted({r["method"] for r in sub}):
            pts = sorted((r["unknowns"], r["iterations"], r["seconds"]) for r in sub if r["method"] == method)
            style = "s-" if method in LEARNED or "multigrid" in method else "o--"
            for row, value in ((0, 1), (1, 2)):
                axes[row][col].loglog([p[0] for p in pts], [p[value] for p in pts], style, color=colors[method],
                                      label=method)
        axes[0][col].set(title=problem, xlabel="unknowns", ylabel="iterations to 1e-6")
        axes[1][col].set(xlabel="unknowns", ylabel="wall seconds (set-up + solve)")
        for ax in axes[:, col]:
            ax.grid(True, which="both", alpha=0.3)
    handles = [plt.Line2D([], [], color=colors[m], marker="s" if m in LEARNED or "multigrid" in m else "o",
                          linestyle="-" if m in LEARNED or "multigrid" in m else "--") for m in methods]
    fig.legend(handles, methods, loc="lower center", ncol=4, fontsize=8)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=sorted(SIZES), default="small")
    parser.add_argument("--seed", type=int, default=2, help="training and right-hand-side seed")
    parser.add_argument("--out", type=Path, default=None, help="results folder (default benchmarks/results/<device>)")
    parser.add_argument("--name", default=None, help="results file stem (default learned_preconditioner, "
                        "learned_preconditioner_<size> for sizes other than small)")
    parser.add_argument("--replot", type=Path, default=None, metavar="JSON",
                        help="only redraw the PNG next to an existing results JSON")
    parser.add_argument("--overwrite", action="store_true", help="replace existing results")
    args = parser.parse_args(argv)
    if args.replot is not None:
        _plot(json.loads(args.replot.read_text())["rows"], args.replot.with_suffix(".png"))
        return 0
    name = args.name or ("learned_preconditioner" if args.size == "small" else f"learned_preconditioner_{args.size}")
    from pdesurrogates.bench.report import RESULTS, device_name

    target = (args.out or RESULTS / device_name(None)) / f"{name}.json"
    if target.exists() and not args.overwrite:
        raise FileExistsError(f"{target} exists; pass --overwrite to replace it")
    out = run(args.size, args.seed, args.out, name)
    print(Path(out["paths"]["md"]).read_text())
    return 0
