"""Cost of our Krylov loops around a preconditioner, against SciPy's ``cg`` around the same one.

For one right-hand side on the CPU, ``pdesurrogates.linalg.cg/pcg/fcg`` should cost what
``scipy.sparse.linalg.cg`` costs around the same ``A`` and ``M`` (target: at most 1.1x), so that
choosing our solvers (batched, GPU-capable, differentiable, checked) costs nothing on a laptop.

Systems (default size):

* ``darcy``: ``-div(a grad u)`` on 256^2 interior nodes, ``a`` a two-phase field with contrast
  1e6 (``physics.darcy.sample_coefficient(258, high=1e6, low=1)``),
* ``poisson``: the 5-point Laplacian on 512^2 interior nodes.

Preconditioners: none, Jacobi, and one V-cycle of pyamg's smoothed aggregation (SA). SciPy gets
them as SciPy users write them (``None``; ``LinearOperator(matvec=lambda r: r * dinv)``; the
hierarchy's ``aspreconditioner()``), ours as our objects (``JacobiPreconditioner``,
``AMGPreconditioner`` sharing the same pyamg hierarchy) and, in the ``cg (SciPy M)`` rows, the very
same SciPy operators. Every solve stops at ``rtol`` or ``maxiter`` (the same iteration counts on
both sides, recorded); the time is the best of ``--repeats`` runs, interleaved across methods so
that load from other processes hits all alike, and the ratios ours/SciPy come from the same run.

    python benchmarks/krylov_overhead.py                 # writes benchmarks/results/cpu/krylov_overhead.*
    python benchmarks/krylov_overhead.py --size small --out /tmp/k --overwrite
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before numpy: both sides on one BLAS thread

import argparse
import importlib
import json
import time
from pathlib import Path

import numpy as np
import scipy.sparse.linalg as spla
import torch

from pdesurrogates.bench.report import RESULTS, device_name, git_sha, write_results
from pdesurrogates.linalg import (
    AMGPreconditioner,
    JacobiPreconditioner,
    cg,
    fcg,
    gallery,
    pcg,
)
from pdesurrogates.physics.darcy import sample_coefficient
from pdesurrogates.physics.grid import Grid
from pdesurrogates.physics.operators import diffusion_matrix

NAME = "krylov_overhead"
TARGET = 1.1
SIZES = {
    "default": {"darcy": 256, "poisson": 512},
    "small": {"darcy": 32, "poisson": 48},
}
PRECONDITIONERS = ("none", "jacobi", "sa")


def versions() -> dict:
    out = {}
    for mod in ("torch", "numpy", "scipy", "pyamg", "h5py", "neuralop"):
        try:
            out[mod] = importlib.import_module(mod).__version__
        except ImportError:
            out[mod] = None
    return out


def build_system(kind: str, n: int, seed: int):
    if kind == "darcy":
        a = sample_coefficient(n + 2, torch.Generator().manual_seed(seed), high=1e6, low=1.0)
        A = diffusion_matrix(a, Grid((n + 2, n + 2)))
    else:
        A = gallery.poisson2d(n, format="scipy")
    b = np.random.default_rng(seed).standard_normal(A.shape[0])
    return A.tocsr(), b


def preconditioners(kind: str, A):
    """``(scipy_M, our_M)`` for one kind: what a SciPy user passes, what one of ours passes."""
    if kind == "none":
        return None, None
    if kind == "jacobi":
        dinv = 1.0 / A.diagonal()
        return spla.LinearOperator(A.shape, matvec=lambda r: r * dinv), JacobiPreconditioner(A)
    ours = AMGPreconditioner(A)
    return ours.hierarchy.aspreconditioner(cycle="V"), ours


def scipy_iterations(A, b, M, rtol, maxiter) -> int:
    count = [0]

    def callback(_):
        count[0] += 1

    spla.cg(A, b, rtol=rtol, maxiter=maxiter, M=M, callback=callback)
    return count[0]


def measure_case(system: str, n: int, prec: str, rtol: float, maxiter: int, repeats: int,
                 seed: int) -> list[dict]:
    A, b = build_system(system, n, seed)
    M_scipy, M_ours = preconditioners(prec, A)
    methods = {"scipy cg": lambda: spla.cg(A, b, rtol=rtol, maxiter=maxiter, M=M_scipy)}
    methods["cg"] = lambda: cg(A, b, rtol=rtol, maxiter=maxiter, M=M_ours)
    if M_ours is not None:
        methods["pcg"] = lambda: pcg(A, b, rtol=rtol, maxiter=maxiter, M=M_ours)
        methods["cg (SciPy M)"] = lambda: cg(A, b, rtol=rtol, maxiter=maxiter, M=M_scipy)
    methods["fcg"] = lambda: fcg(A, b, rtol=rtol, maxiter=maxiter, M=M_ours)
    iterations = {"scipy cg": scipy_iterations(A, b, M_scipy, rtol, maxiter)}
    converged = {"scipy cg": None}
    for name, fn in methods.items():  # warm-up, and iteration counts
        if name != "scipy cg":
            res = fn()
            iterations[name], converged[name] = int(res.iterations), bool(res.converged)
        else:
            fn()
    best = {name: float("inf") for name in methods}
    for _ in range(repeats):  # interleaved: drifting load hits every method alike
        for name, fn in methods.items():
            t0 = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t0)
    m_apply = None
    if M_scipy is not None:
        m_apply = min(_timed(lambda: M_scipy.matvec(b)) for _ in range(repeats))
    rows = []
    for name in methods:
        its = iterations[name]
        rows.append({
            "system": system, "n": n, "unknowns": A.shape[0], "preconditioner": prec, "method": name,
            "iterations": its, "converged": converged[name], "seconds": best[name],
            "ratio_to_scipy": best[name] / best["scipy cg"],
            "overhead_ms_per_iteration": 1e3 * (best[name] - best["scipy cg"]) / max(its, 1),
            "M_apply_ms": None if m_apply is None else 1e3 * m_apply,
        })
    return rows


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def run(size: str = "default", repeats: int = 5, rtol: float = 1e-8, maxiter: int = 300, seed: int = 0,
        out_dir: Path | None = None, overwrite: bool = False) -> dict:
    folder = Path(out_dir) if out_dir is not None else RESULTS / device_name()
    if (folder / f"{NAME}.json").exists() and not overwrite:
        raise FileExistsError(f"{folder / (NAME + '.json')} exists; pass --overwrite to replace it")
    torch.set_num_threads(1)
    load_before = os.getloadavg()
    rows = []
    for system, n in SIZES[size].items():
        for prec in PRECONDITIONERS:
            rows += measure_case(system, n, prec, rtol, maxiter, repeats, seed)
            print(f"{system} {n}^2 {prec}: " + ", ".join(
                f"{r['method']} {r['ratio_to_scipy']:.2f}x" for r in rows[-5:] if r["preconditioner"] == prec))
    ours = [r for r in rows if r["method"] != "scipy cg"]
    worst = max(ours, key=lambda r: r["ratio_to_scipy"])
    same_iterations = all(abs(r["iterations"] - _scipy_row(rows, r)["iterations"]) <= 1 for r in ours)
    targets = {"max_ratio": worst["ratio_to_scipy"], "worst": f"{worst['method']} on {worst['system']} "
               f"with {worst['preconditioner']}", f"all_within_{TARGET}x": worst["ratio_to_scipy"] <= TARGET,
               "iterations_equal_to_scipy_within_1": same_iterations}
    config = {"size": size, "sizes": SIZES[size], "repeats": repeats, "rtol": rtol, "maxiter": maxiter,
              "seed": seed, "threads": {"torch": torch.get_num_threads(),
                                        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS")},
              "load_average_before_after": [load_before, os.getloadavg()]}
    sha = git_sha()
    extra = {"versions": versions(), "git": {"sha": sha.removesuffix("-dirty"), "dirty": sha.endswith("-dirty")},
             "targets": targets}
    notes = _notes(rows, targets, config)
    paths = write_results(NAME, rows, config=config, extra=extra, notes=notes, out_dir=folder,
                          title="Krylov loop overhead: ours vs scipy.sparse.linalg.cg (one right-hand side, CPU)",
                          columns=["system", "unknowns", "preconditioner", "method", "iterations", "seconds",
                                   "ratio_to_scipy", "overhead_ms_per_iteration", "M_apply_ms"])
    plot(rows, paths["json"].with_suffix(".png"))
    return {"rows": rows, "paths": paths, "targets": targets}


def _scipy_row(rows, row):
    return next(r for r in rows if r["method"] == "scipy cg" and r["system"] == row["system"]
                and r["preconditioner"] == row["preconditioner"])


def _notes(rows, targets, config) -> str:
    lines = [
        (f"Best of {config['repeats']} interleaved runs; rtol {config['rtol']:g}, maxiter {config['maxiter']} "
         "(unpreconditioned and Jacobi solves of these systems run to maxiter on both sides). "
         f"Ratio = our time / SciPy's in the same run; target <= {TARGET}x."),
        (f"Largest ratio {targets['max_ratio']:.3f} ({targets['worst']}); "
         f"all within {TARGET}x: {'yes' if targets[f'all_within_{TARGET}x'] else 'NO'}; "
         "iteration counts equal to SciPy's within 1: "
         f"{'yes' if targets['iterations_equal_to_scipy_within_1'] else 'NO'}."),
        ("Load average (1, 5, 15 min) before/after: "
         + " / ".join(", ".join(f"{x:.2f}" for x in la) for la in config["load_average_before_after"])),
        ("`fcg` does more vector work per iteration than CG (it A-orthogonalises each proposal "
         "explicitly and checks it), so it is the upper bound of the three."),
    ]
    return "\n\n".join(lines)


def plot(rows, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    systems = list(dict.fromkeys(r["system"] for r in rows))
    methods = [m for m in dict.fromkeys(r["method"] for r in rows) if m != "scipy cg"]
    colors = {m: plt.get_cmap("tab10")(i) for i, m in enumerate(methods)}
    fig, axes = plt.subplots(1, len(systems), figsize=(6 * len(systems), 4), squeeze=False)
    for ax, system in zip(axes[0], systems):
        for j, prec in enumerate(PRECONDITIONERS):
            sub = [r for r in rows if r["system"] == system and r["preconditioner"] == prec
                   and r["method"] != "scipy cg"]
            for k, r in enumerate(sub):
                ax.bar(j + (k - (len(sub) - 1) / 2) * 0.18, r["ratio_to_scipy"], 0.17, color=colors[r["method"]],
                       label=r["method"])
        ax.axhline(1.0, color="k", lw=0.8)
        ax.axhline(TARGET, color="r", ls="--", lw=0.8, label=f"target {TARGET}x")
        unknowns = next(r["unknowns"] for r in rows if r["system"] == system)
        ax.set(xticks=range(len(PRECONDITIONERS)), xticklabels=PRECONDITIONERS, ylabel="time / SciPy cg time",
               title=f"{system} ({unknowns} unknowns)")
        ax.grid(True, axis="y", alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    unique = dict(zip(labels, handles))
    fig.legend(unique.values(), unique.keys(), loc="lower center", ncol=len(unique), fontsize=8)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=sorted(SIZES), default="default")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rtol", type=float, default=1e-8)
    parser.add_argument("--maxiter", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="results folder (default benchmarks/results/<device>)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing result files")
    parser.add_argument("--replot", type=Path, default=None, metavar="JSON",
                        help="only redraw the PNG next to an existing results JSON")
    args = parser.parse_args(argv)
    if args.replot is not None:
        plot(json.loads(args.replot.read_text())["rows"], args.replot.with_suffix(".png"))
        return {"paths": {"png": args.replot.with_suffix(".png")}}
    out = run(args.size, args.repeats, args.rtol, args.maxiter, args.seed, args.out, args.overwrite)
    print(Path(out["paths"]["md"]).read_text())
    return out


if __name__ == "__main__":
    main()
