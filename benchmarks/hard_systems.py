"""Hard SPD systems: classical and learned preconditioners side by side, 10^4 to 10^6 unknowns.

Systems: the families of :mod:`pdesurrogates.physics.hard_systems` (two-phase contrast 1e6 in 2D
and 3D, log-normal sigma 3, layered 3D contrast 1e6, rotated anisotropy epsilon 1e-3, P1 FEM with
contrast 1e4 on random Delaunay meshes, 2D elasticity), drawn with seed 2026 (the learned
preconditioner was trained on seeds 0 and validated on seed 1, at about 10^3 unknowns), plus
systems it never saw, handed over as matrices only (:data:`UNSEEN`).

Every system is solved for a standard-normal ``b`` from ``x0 = 0`` to ``||b - A x|| <= 1e-8 ||b||``
with :func:`pdesurrogates.linalg.pcg` (flexible :func:`~pdesurrogates.linalg.fcg` for the unseen
systems and the grid neural multigrid), the true residual recomputed in float64 at the end:

* ``CG``, ``Jacobi-PCG`` and ``IC(0)-PCG`` (the package's preconditioners), iterations capped;
* ``SA-AMG``: pyamg's ``smoothed_aggregation_solver(A)`` with default settings (one V-cycle per
  iteration); for elasticity also ``SA-AMG + rigid-body B`` (BSR blocks of 2, ``B`` = the three
  rigid-body modes);
* ``SA-AMG, theta 0.1``: the same with the symmetric strength threshold the learned hierarchy
  aggregates with (0.1 instead of pyamg's 0; ``B`` for elasticity), the classical twin of the shipped
  weights;
* ``learned AMG``: ``pretrained().setup(A)`` (``B`` and ``blocksize=2`` for elasticity), one W-cycle
  per iteration. The shipped weights are the validated choice, which is the network's
  initialisation: smoothed-aggregation smoothing (all weights 1) on aggregates of strength threshold
  0.1 (see ``pretrained().info``);
* ``learned AMG, V-cycle``: the same hierarchy with one V-cycle per iteration, as pyamg's SA rows
  (``pretrained().setup(A, cycle="V")``);
* ``learned AMG, trained weights (not shipped)``: with ``--trained-run DIR``, the best (validated)
  epoch of a training run of ``configs/algebraic_preconditioner.toml``: what training the weights
  does at these sizes;
* ``neural multigrid (grid)``: the learned grid V-cycle trained with ``configs/neural_multigrid.toml``
  (2D finite-volume families only, up to ``--grid-max-unknowns``).

Seconds are set-up (hierarchy or factorisation) plus solve, wall clock, with ``--threads`` torch
threads (default 1, as pyamg's and SciPy's kernels; on a shared machine more torch threads than free
cores make every small torch operation wait for the scheduler). The run is resumable: rows already in the JSON are
skipped (``--overwrite`` starts afresh).

    python benchmarks/hard_systems.py --trained-run runs/algebraic_amg   # the committed run (an hour)
    python benchmarks/hard_systems.py --quick --out /tmp/h   # 10^4 unknowns, a minute
    python benchmarks/hard_systems.py --replot               # Markdown and PNG from the JSON

Writes ``benchmarks/results/cpu/hard_systems.{json,md,png}``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch

from pdesurrogates.bench.report import RESULTS, environment, write_results
from pdesurrogates.linalg import IC0Preconditioner, JacobiPreconditioner, fcg, pcg
from pdesurrogates.physics.grid import Grid
from pdesurrogates.physics.hard_systems import hard_system
from pdesurrogates.solvers.learned.amg import LearnedAMG, pretrained

NAME = "hard_systems"
SEED = 2026
RTOL = 1e-8
TRAINED = ("two-phase-2d", "two-phase-3d", "lognormal-2d", "layered-3d", "anisotropic", "fem-jump")

# case -> (family, params, sizes per side: about 1e4, 1e5, 1e6 unknowns)
CASES = {
    "two-phase-2d": ("two-phase", {"contrast": 1e6}, (128, 362, 1024)),
    "two-phase-3d": ("two-phase", {"ndim": 3, "contrast": 1e6}, (24, 50, 100)),
    "lognormal-2d": ("lognormal", {"sigma": 3.0}, (128, 362, 1024)),
    "layered-3d": ("layered", {"contrast": 1e6}, (24, 50, 100)),
    "anisotropic": ("anisotropic", {"epsilon": 1e-3}, (128, 362, 1024)),
    "fem-jump": ("fem-jump", {"contrast": 1e4}, (100, 316, 1000)),
    "elasticity": ("elasticity", {}, (71, 224, 708)),
}
QUICK_SIZES = {"two-phase-3d": 22, "layered-3d": 22, "elasticity": 71}

TRAINED_EPOCH = "learned AMG, trained weights (not shipped)"
FAMILY_TRAINED = "learned AMG, trained on this family only"
SA_THETA = "SA-AMG, theta 0.1"
LEARNED_V = "learned AMG, V-cycle"
METHODS = ("CG", "Jacobi-PCG", "IC(0)-PCG", "SA-AMG", "SA-AMG + rigid-body B", SA_THETA, TRAINED_EPOCH, FAMILY_TRAINED,
           LEARNED_V, "learned AMG", "neural multigrid (grid)")
COLORS = {"CG": "0.6", "Jacobi-PCG": "tab:gray", "IC(0)-PCG": "tab:brown", "SA-AMG": "tab:blue",
          "SA-AMG + rigid-body B": "tab:cyan", "learned AMG": "tab:red",
          "neural multigrid (grid)": "tab:green", TRAINED_EPOCH: "tab:pink", SA_THETA: "tab:purple",
          FAMILY_TRAINED: "tab:olive", LEARNED_V: "tab:orange"}


def _unseen(quick: bool) -> dict:
    """Systems outside the training families: ``name -> builder() -> scipy CSR``."""
    from pyamg import gallery

    n3 = 22 if quick else 48

    def q1_poisson_3d():  # 27-point trilinear finite elements
        return sp.csr_matrix(gallery.poisson((n3, n3, n3), type="FE", format="csr"))

    def anisotropic_3d():  # 7-point, weak coupling in z (epsilon 1e-2): a 3D anisotropy never trained on
        n = n3
        e = np.ones(n)
        T = sp.diags([-e[:-1], 2 * e, -e[:-1]], [-1, 0, 1])
        eye = sp.eye(n)
        return sp.csr_matrix(sp.kron(sp.kron(T, eye), eye) + sp.kron(sp.kron(eye, T), eye)
                             + 1e-2 * sp.kron(sp.kron(eye, eye), T))

    def graph_laplacian_3d():  # random geometric graph (k nearest neighbours), Dirichlet on 5% of nodes
        from scipy.spatial import cKDTree

        rng = np.random.default_rng(SEED)
        n = n3**3
        pts = rng.uniform(size=(n, 3))
        _, idx = cKDTree(pts).query(pts, k=9)
        rows = np.repeat(np.arange(n), 8)
        cols = idx[:, 1:].ravel()
        W = sp.csr_matrix((np.ones(rows.size), (rows, cols)), shape=(n, n))
        W = ((W + W.T) > 0).astype(float)
        L = sp.diags(np.asarray(W.sum(1)).ravel()) - W
        boundary = rng.uniform(size=n) < 0.05
        return sp.csr_matrix(L + sp.diags(boundary.astype(float) * 8.0))

    def shifted_diffusion():  # implicit heat step -div(a grad u)/h^2 + u/dt on a two-phase medium
        s = hard_system("two-phase", 128 if quick else 362, seed=SEED, contrast=1e3)
        return sp.csr_matrix(s.A + sp.eye(s.n) * (s.A.diagonal().mean() * 0.05))

    def airfoil():
        return sp.csr_matrix(gallery.load_example("airfoil")["A"], dtype=float)

    return {"unseen: Q1 Poisson 3D": q1_poisson_3d, "unseen: anisotropic 3D (eps 1e-2)": anisotropic_3d,
            "unseen: graph Laplacian 3D": graph_laplacian_3d, "unseen: shifted two-phase": shifted_diffusion,
            "unseen: pyamg airfoil": airfoil}


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def _neural_multigrid(out_dir: Path):
    """Train the grid neural multigrid with its shipped config through the engine (about a minute)."""
    import tomllib

    from pdesurrogates.solvers.learned.multigrid_preconditioner import NeuralMultigridPreconditioner
    from pdesurrogates.train.tasks.preconditioners import NeuralMultigridTask, train_network

    config_path = Path(__file__).resolve().parents[1] / "configs" / "neural_multigrid.toml"
    config = NeuralMultigridTask.parse_config(tomllib.loads(config_path.read_text()))
    (net, _), seconds = _timed(lambda: train_network(NeuralMultigridTask(config), out_dir / "neural_multigrid_run",
                                                     overwrite=True))
    return NeuralMultigridPreconditioner(net.double()), seconds


def _pyamg_sa(A, B=None, blocksize=1, theta=None):
    import pyamg

    M = A.tobsr(blocksize=(blocksize, blocksize)) if blocksize > 1 else A
    if theta is None:  # pyamg's defaults
        return pyamg.smoothed_aggregation_solver(M, B=B)
    return pyamg.smoothed_aggregation_solver(M, B=B, strength=("symmetric", {"theta": theta}))


class _Setup:
    """A preconditioner and what to report about it."""

    def __init__(self, M, complexity=None):
        self.M, self.complexity = M, complexity


def _methods(case: str, system, n: int, args, nets) -> list[tuple[str, callable, str]]:
    """``(method, make_preconditioner, krylov)`` for one system."""
    A, B = system["A"], system.get("B")
    blocksize = system.get("blocksize", 1)
    unseen = case.startswith("unseen")
    out = [("CG", lambda: _Setup(None), "pcg"),
           ("Jacobi-PCG", lambda: _Setup(JacobiPreconditioner(A)), "pcg")]
    if n <= args.ic0_max_unknowns:
        out.append(("IC(0)-PCG", lambda: _Setup(IC0Preconditioner(A)), "pcg"))

    def sa():
        ml = _pyamg_sa(A)
        return _Setup(ml.aspreconditioner(), ml.operator_complexity())
    out.append(("SA-AMG", sa, "pcg"))
    if B is not None:
        def sa_b():
            ml = _pyamg_sa(A, B, blocksize)
            return _Setup(ml.aspreconditioner(), ml.operator_complexity())
        out.append(("SA-AMG + rigid-body B", sa_b, "pcg"))

    def sa_theta():  # the strength threshold the learned hierarchy aggregates with (B as it gets it)
        ml = _pyamg_sa(A, B, blocksize, theta=nets["learned"].config.theta)
        return _Setup(ml.aspreconditioner(), ml.operator_complexity())
    out.append((SA_THETA, sa_theta, "pcg"))

    def learned(model, cycle=None):
        def make():
            M = model.setup(A, B, blocksize=blocksize, cycle=cycle)
            return _Setup(M.as_linear_operator(), M.operator_complexity())
        return make
    if nets.get("trained") is not None:
        out.append((TRAINED_EPOCH, learned(nets["trained"]), "pcg"))
    if case in nets.get("family", {}):
        out.append((FAMILY_TRAINED, learned(nets["family"][case]), "pcg"))
    out.append((LEARNED_V, learned(nets["learned"], "V"), "fcg" if unseen else "pcg"))
    out.append(("learned AMG", learned(nets["learned"]), "fcg" if unseen else "pcg"))
    grid_ok = system.get("grid") is not None and system["grid"].ndim == 2 and n <= args.grid_max_unknowns
    if grid_ok and nets.get("neural_multigrid") is not None:
        out.append(("neural multigrid (grid)",
                    lambda: _Setup(nets["neural_multigrid"].for_system(system["grid"], system["coefficient"])), "fcg"))
    return out


def solve_system(case: str, size, system: dict, args, nets, done: set, record) -> None:
    A = system["A"]
    n = A.shape[0]
    b = np.random.default_rng(SEED).standard_normal(n)
    for method, make, krylov in _methods(case, system, n, args, nets):
        key = (case, str(size), method)
        if key in done:
            continue
        cap = args.max_iterations if method in ("CG", "Jacobi-PCG", "IC(0)-PCG", "neural multigrid (grid)") else 1000
        if method == "IC(0)-PCG" and n > 2e5:
            cap = args.ic0_max_iterations
        setup, setup_s = _timed(make)
        solver = pcg if krylov == "pcg" else fcg
        res, solve_s = _timed(lambda solver=solver, M=setup.M, cap=cap: solver(A, b, M=M, rtol=RTOL, maxiter=cap))
        true_residual = float(np.linalg.norm(b - A @ np.asarray(res.x)) / np.linalg.norm(b))
        row = {"case": case, "size": size, "unknowns": n, "nonzeros": int(A.nnz), "method": method,
               "krylov": krylov, "iterations": int(res.iterations), "max_iterations": cap,
               "converged": bool(res.converged) and true_residual <= 2 * RTOL, "true_residual": true_residual,
               "setup_s": setup_s, "solve_s": solve_s, "total_s": setup_s + solve_s,
               "operator_complexity": setup.complexity}
        record(row)
        print(f"{case:34s} {size!s:>6} n={n:8d} {method:26s} it={row['iterations']:5d} "
              f"conv={row['converged']!s:5} res={true_residual:.1e} {setup_s:7.2f}+{solve_s:7.2f}s", flush=True)


def _system(case: str, size: int) -> dict:
    family, params, _ = CASES[case]
    s = hard_system(family, size, seed=SEED, **params)
    out = {"A": s.A, "B": s.near_nullspace, "blocksize": 1 if s.near_nullspace is None else 2}
    if family in ("two-phase", "lognormal") and params.get("ndim", 2) == 2:
        out["grid"] = Grid((size + 2, size + 2))
        out["coefficient"] = s.coefficient
    return out


# ---------------------------------------------------------------- report
def ratios(rows: list[dict]) -> list[dict]:
    """Learned AMG against SA-AMG (with B for elasticity) per system, and the targets."""
    out = []
    systems = sorted({(r["case"], str(r["size"])) for r in rows}, key=lambda k: (k[0], int(k[1]) if k[1].isdigit() else 0))
    for case, size in systems:
        group = {r["method"]: r for r in rows if (r["case"], str(r["size"])) == (case, size)}
        learned = group.get("learned AMG")
        ref = group.get("SA-AMG + rigid-body B") or group.get("SA-AMG")
        if learned is None or ref is None:
            continue
        limit = 2.0 if case == "elasticity" else 1.5
        it_ratio = learned["iterations"] / max(ref["iterations"], 1)
        time_ratio = learned["total_s"] / ref["total_s"]
        checks = {"converged": learned["converged"], "iterations": it_ratio <= limit}
        if case in TRAINED:
            checks["fewer_than_sa"] = learned["iterations"] < ref["iterations"]
        if learned["unknowns"] >= 65536:
            checks["time"] = time_ratio <= 1.5
        out.append({"case": case, "size": size, "unknowns": learned["unknowns"], "reference": ref["method"],
                    "sa_iterations": ref["iterations"], "learned_iterations": learned["iterations"],
                    "trained_epoch_iterations": group.get(TRAINED_EPOCH, {}).get("iterations"),
                    "family_trained_iterations": group.get(FAMILY_TRAINED, {}).get("iterations"),
                    "family_trained_total_s": group.get(FAMILY_TRAINED, {}).get("total_s"),
                    "v_cycle_iterations": group.get(LEARNED_V, {}).get("iterations"),
                    "v_cycle_total_s": group.get(LEARNED_V, {}).get("total_s"),
                    "sa_theta_iterations": group.get(SA_THETA, {}).get("iterations"),
                    "sa_theta_total_s": group.get(SA_THETA, {}).get("total_s"),
                    "iterations_ratio": it_ratio, "sa_total_s": ref["total_s"], "learned_total_s": learned["total_s"],
                    "time_ratio": time_ratio, "all_targets_met": all(checks.values()),
                    "failed": ", ".join(k for k, v in checks.items() if not v)})
    return out


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cases = [c for c in CASES if any(r["case"] == c for r in rows)]
    fig, axes = plt.subplots(2, len(cases), figsize=(3.2 * len(cases), 6.4), squeeze=False)
    for j, case in enumerate(cases):
        for method in METHODS:
            pts = sorted((r["unknowns"], r["iterations"], r["total_s"], r["converged"]) for r in rows
                         if r["case"] == case and r["method"] == method)
            if not pts:
                continue
            x = [p[0] for p in pts]
            for i, k in ((0, 1), (1, 2)):
                axes[i, j].plot(x, [p[k] for p in pts], "o-", color=COLORS[method], label=method, ms=4)
                bad = [(p[0], p[k]) for p in pts if not p[3]]
                if bad:
                    axes[i, j].plot(*zip(*bad), "x", color="k", ms=8)
        axes[0, j].set_title(case, fontsize=9)
        for i in range(2):
            axes[i, j].set_xscale("log")
            axes[i, j].set_yscale("log")
            axes[i, j].set_xlabel("unknowns")
        axes[0, j].set_ylabel("iterations to 1e-8" if j == 0 else "")
        axes[1, j].set_ylabel("set-up + solve seconds" if j == 0 else "")
    axes[0, 0].legend(fontsize=6, loc="upper left")
    fig.suptitle("Hard SPD systems: x = not converged within the cap", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def notes(payload: dict) -> str:
    rat = payload.get("ratios", [])
    lines = ["", "## Learned AMG against SA-AMG (same run, same Krylov solver)", ""]
    if rat:
        from pdesurrogates.bench.report import markdown_table

        lines.append(markdown_table(rat, ["case", "size", "unknowns", "reference", "sa_iterations", "learned_iterations",
                                          "v_cycle_iterations", "trained_epoch_iterations",
                                          "family_trained_iterations", "sa_theta_iterations", "iterations_ratio",
                                          "time_ratio", "all_targets_met", "failed"]))
        met = sum(r["all_targets_met"] for r in rat)
        lines.append(f"\nTargets met on {met} of {len(rat)} systems (converged with true residual <= 2e-8; "
                     "iterations <= 1.5x SA's, 2x on elasticity; fewer than SA on the trained families; "
                     "set-up + solve <= 1.5x SA's from 65536 unknowns). `failed` lists the targets missed.")
    cfg = payload.get("config", {})
    lines += ["", f"Learned AMG: {cfg.get('learned', {})}."]
    if cfg.get("trained_run"):
        run = cfg["trained_run"]
        lines.append(f"Trained weights (not shipped): epoch {run.get('epoch')} of `{run.get('path')}`, the best "
                     f"validation epoch (val_loss {run.get('metrics', {}).get('val_loss', float('nan')):.4f}; "
                     "0 = classical SA with the same theta, negative = better).")
    for case, run in cfg.get("family_runs", {}).items():
        lines.append(f"`{FAMILY_TRAINED}` ({case}): the best validation epoch ({run.get('epoch')}) of the run "
                     f"`{run.get('path')}` (its config.toml), trained on that family only (not shipped).")
    lines += [(f"Neural multigrid trained in {cfg.get('neural_multigrid_training_s', 'n/a')} s "
               "(configs/neural_multigrid.toml)."),
              ("Caps: CG, Jacobi and the neural multigrid at `max_iterations`, IC(0) at `ic0_max_iterations` "
               "above 2e5 unknowns and not run above `ic0_max_unknowns`; AMG methods at 1000."),
              "", "Command: `python benchmarks/hard_systems.py` (see the JSON's `config`)."]
    return "\n".join(lines)


def write_report(payload: dict, folder: Path) -> None:
    rows = payload["rows"]
    payload["ratios"] = ratios(rows)
    columns = ["case", "size", "unknowns", "method", "iterations", "converged", "true_residual", "setup_s",
               "solve_s", "total_s", "operator_complexity"]
    write_results(NAME, rows, config=payload["config"], title="Hard SPD systems: preconditioners at 1e4-1e6 unknowns",
                  notes=notes(payload), columns=columns, extra={"runs": payload["runs"], "ratios": payload["ratios"]},
                  out_dir=folder)
    plot(rows, folder / f"{NAME}.png")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="about 1e4 unknowns per family")
    parser.add_argument("--out", type=Path, default=None, help="folder (default benchmarks/results/cpu)")
    parser.add_argument("--overwrite", action="store_true", help="start afresh instead of resuming")
    parser.add_argument("--replot", action="store_true", help="rewrite Markdown and PNG from the JSON")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--max-iterations", type=int, default=2000)
    parser.add_argument("--ic0-max-iterations", type=int, default=500)
    parser.add_argument("--ic0-max-unknowns", type=int, default=1_100_000)
    parser.add_argument("--grid-max-unknowns", type=int, default=140_000)
    parser.add_argument("--cases", nargs="*", default=None, help=f"subset of {list(CASES)} and 'unseen'")
    parser.add_argument("--trained-run", type=Path, default=None,
                        help="a training run of configs/algebraic_preconditioner.toml whose best weights get a row "
                             "of their own (the shipped weights are the validated choice, see pretrained().info)")
    parser.add_argument("--family-run", action="append", default=[], metavar="CASE=DIR",
                        help="a training run on one family only (e.g. anisotropic=runs/algebraic_amg_aniso, "
                             "configs/algebraic_preconditioner_anisotropic.toml): a row for that case")
    args = parser.parse_args(argv)
    family_runs = {}
    for item in args.family_run:
        case, _, run_dir = item.partition("=")
        if case not in CASES or not run_dir:
            parser.error(f"--family-run expects CASE=DIR with CASE one of {list(CASES)}, got {item!r}")
        family_runs[case] = Path(run_dir)
    folder = args.out if args.out is not None else RESULTS / "cpu"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{NAME}.json"
    if args.replot:
        write_report(json.loads(path.read_text()), folder)
        return 0
    torch.set_num_threads(args.threads)
    payload = {"rows": [], "runs": []}
    if path.exists() and not args.overwrite:
        payload = json.loads(path.read_text())
        payload.setdefault("runs", [])
    learned = pretrained()
    nets = {"learned": learned, "trained": LearnedAMG.load(args.trained_run) if args.trained_run else None,
            "family": {case: LearnedAMG.load(run_dir) for case, run_dir in family_runs.items()}}
    earlier = payload.get("config", {})
    payload["config"] = {
        "seed": SEED, "rtol": RTOL, "threads": args.threads, "max_iterations": args.max_iterations,
        "ic0_max_iterations": args.ic0_max_iterations, "ic0_max_unknowns": args.ic0_max_unknowns,
        "grid_max_unknowns": args.grid_max_unknowns, "quick": args.quick,
        "cases": {k: [v[0], v[1], list(v[2])] for k, v in CASES.items()},
        "learned": {"config": vars(learned.config), "trained": learned.info.get("provenance", {})},
        **{k: v for k, v in earlier.items() if k in ("neural_multigrid_training_s", "trained_run")}}
    def run_info(run_dir: Path, model: LearnedAMG) -> dict:
        return {"path": run_dir.as_posix(), **{k: v for k, v in model.info.items() if k != "normalizers"}}

    payload["config"]["family_runs"] = {**earlier.get("family_runs", {}), **{
        case: run_info(run_dir, nets["family"][case]) for case, run_dir in family_runs.items()}}
    if nets["trained"] is not None:
        payload["config"]["trained_run"] = run_info(args.trained_run, nets["trained"])
    payload["runs"].append(environment("cpu"))
    done = {(r["case"], str(r["size"]), r["method"]) for r in payload["rows"]}

    def record(row):
        payload["rows"].append(row)
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(payload, indent=2, default=float) + "\n")
        os.replace(tmp, path)

    selected = args.cases or [*CASES, "unseen"]
    grid_rows = [(c, str(size), "neural multigrid (grid)") for c in ("two-phase-2d", "lognormal-2d") if c in selected
                 for size in ((QUICK_SIZES.get(c, 100),) if args.quick else CASES[c][2])
                 if size * size <= args.grid_max_unknowns]
    if any(row not in done for row in grid_rows):
        import tempfile

        with tempfile.TemporaryDirectory() as work:
            mg, seconds = _neural_multigrid(Path(work))
        nets["neural_multigrid"] = mg
        payload["config"].setdefault("neural_multigrid_training_s", round(seconds, 1))
    for case in CASES:
        if case not in selected:
            continue
        sizes = CASES[case][2]
        sizes = (QUICK_SIZES.get(case, 100),) if args.quick else sizes
        for size in sizes:
            if all((case, str(size), m) in done for m in METHODS if m != "neural multigrid (grid)"):
                continue
            system, seconds = _timed(lambda case=case, size=size: _system(case, size))
            print(f"{case} {size}: assembled {system['A'].shape[0]} unknowns in {seconds:.1f} s", flush=True)
            solve_system(case, size, system, args, nets, done, record)
    if "unseen" in selected:
        for name, build in _unseen(args.quick).items():
            A = build()
            solve_system(name, "-", {"A": A}, args, nets, done, record)
    write_report(payload, folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
