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
    """Time every method for the same number of iterations ``k`` (SciPy's count to ``rtol``,
    capped at ``maxiter``), run with ``rtol=0`` so that none stops early: on a contrast-1e6
    system the count to ``rtol`` moves by a few iterations with round-off (memory alignment
    changes numpy's sums between processes), which would blur a per-iteration comparison.
    The counts to ``rtol`` are recorded too."""
    A, b = build_system(system, n, seed)
    M_scipy, M_ours = preconditioners(prec, A)
    solvers = {"scipy cg": lambda M, **kw: spla.cg(A, b, M=M, **kw)}
    solvers["cg"] = lambda M, **kw: cg(A, b, M=M, **kw)
    if M_ours is not None:
        solvers["pcg"] = lambda M, **kw: pcg(A, b, M=M, **kw)
        solvers["cg (SciPy M)"] = lambda M, **kw: cg(A, b, M=M, **kw)
    solvers["fcg"] = lambda M, **kw: fcg(A, b, M=M, **kw)
    which_M = {name: M_scipy if name in ("scipy cg", "cg (SciPy M)") else M_ours for name in solvers}
    to_rtol = {"scipy cg": scipy_iterations(A, b, M_scipy, rtol, maxiter)}
    for name, solve in solvers.items():
        if name != "scipy cg":
            to_rtol[name] = int(solve(which_M[name], rtol=rtol, maxiter=maxiter).iterations)
    k = to_rtol["scipy cg"]
    methods = {name: (lambda solve=solve, M=which_M[name]: solve(M, rtol=0.0, atol=0.0, maxiter=k))
               for name, solve in solvers.items()}
    for fn in methods.values():  # warm-up
        fn()
    best = {name: float("inf") for name in methods}
    best_cpu = {name: float("inf") for name in methods}
    for _ in range(repeats):  # interleaved: drifting load hits every method alike
        for name, fn in methods.items():
            c0, t0 = time.process_time(), time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t0)
            best_cpu[name] = min(best_cpu[name], time.process_time() - c0)
    m_apply = None
    if M_scipy is not None:
        m_apply = min(_timed(lambda: M_scipy.matvec(b)) for _ in range(repeats))
    rows = []
    for name in methods:
        rows.append({
            "system": system, "n": n, "unknowns": A.shape[0], "preconditioner": prec, "method": name,
            "iterations": k, "iterations_to_rtol": to_rtol[name], "seconds": best[name],
            "ratio_to_scipy": best[name] / best["scipy cg"], "cpu_seconds": best_cpu[name],
            "cpu_ratio_to_scipy": best_cpu[name] / best_cpu["scipy cg"],
            "overhead_ms_per_iteration": 1e3 * (best_cpu[name] - best_cpu["scipy cg"]) / max(k, 1),
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
                f"{r['method']} {r['ratio_to_scipy']:.2f}x (cpu {r['cpu_ratio_to_scipy']:.2f}x)"
                for r in rows[-5:] if r["preconditioner"] == prec), flush=True)
    ours = [r for r in rows if r["method"] != "scipy cg"]
    gaps = [abs(r["iterations_to_rtol"] - _scipy_row(rows, r)["iterations_to_rtol"]) for r in ours]
    targets = {"iterations_to_rtol_max_difference_from_scipy": max(gaps)}
    for key in ("ratio_to_scipy", "cpu_ratio_to_scipy"):
        worst = max(ours, key=lambda r, key=key: r[key])
        targets[key] = {"max": worst[key], "worst": f"{worst['method']} on {worst['system']} with "
                        f"{worst['preconditioner']}", f"all_within_{TARGET}x": worst[key] <= TARGET,
                        "cg_pcg_max": max(r[key] for r in ours if r["method"] != "fcg")}
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
                          columns=["system", "unknowns", "preconditioner", "method", "iterations",
                                   "iterations_to_rtol", "seconds",
                                   "ratio_to_scipy", "cpu_ratio_to_scipy", "overhead_ms_per_iteration",
                                   "M_apply_ms"])
    plot(rows, paths["json"].with_suffix(".png"))
    return {"rows": rows, "paths": paths, "targets": targets}


def _scipy_row(rows, row):
    return next(r for r in rows if r["method"] == "scipy cg" and r["system"] == row["system"]
                and r["preconditioner"] == row["preconditioner"])


def _notes(rows, targets, config) -> str:
    lines = [
        (f"Best of {config['repeats']} interleaved runs of the same number of iterations on both sides "
         f"(`iterations`: SciPy's count to rtol {config['rtol']:g}, capped at {config['maxiter']}; timed with "
         "rtol 0 so that no method stops early). "
         f"Ratio = our time / SciPy's in the same run; target <= {TARGET}x."),
        ("Ratios of wall time (`ratio_to_scipy`) and of process CPU time (`cpu_ratio_to_scipy`, "
         "insensitive to time the process spends descheduled on a shared machine)."),
        *[(f"{label}: largest ratio {targets[key]['max']:.3f} ({targets[key]['worst']}), cg/pcg at most "
           f"{targets[key]['cg_pcg_max']:.3f}; all within {TARGET}x: "
           f"{'yes' if targets[key][f'all_within_{TARGET}x'] else 'NO'}.")
          for label, key in (("Wall time", "ratio_to_scipy"), ("CPU time", "cpu_ratio_to_scipy"))],
        ("Iterations to rtol differ from SciPy's by at most "
         f"{targets['iterations_to_rtol_max_difference_from_scipy']} (the contrast-1e6 system with SA is "
         "sensitive to round-off: SciPy's own count moves by a few between processes)."),
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
                pos = j + (k - (len(sub) - 1) / 2) * 0.18
                ax.bar(pos, r.get("cpu_ratio_to_scipy", r["ratio_to_scipy"]), 0.17, color=colors[r["method"]],
                       label=r["method"])
                ax.plot(pos, r["ratio_to_scipy"], "k.", label="wall-time ratio")
        ax.axhline(1.0, color="k", lw=0.8)
        ax.axhline(TARGET, color="r", ls="--", lw=0.8, label=f"target {TARGET}x")
        unknowns = next(r["unknowns"] for r in rows if r["system"] == system)
        ax.set(xticks=range(len(PRECONDITIONERS)), xticklabels=PRECONDITIONERS, ylabel="CPU time / SciPy cg CPU time",
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
