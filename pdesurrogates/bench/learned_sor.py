"""Learning the SOR relaxation factor across a sequence of systems (Khodak et al., ICLR 2024).

Reproduces the two settings of *Learning to Relax*:

(a) **shifted Laplacians** ``A_t = A + c_t I``, ``A`` the 5-point Laplacian (stencil 4, -1) on a
    10 x 10 interior grid (:func:`pdesurrogates.linalg.gallery.shifted_laplacian`), shifts
    ``c = -0.15 + 0.6 Beta(0.5, 1.5)`` ("high variance") or ``c = -0.15 + 0.6 Beta(2, 6)`` ("low
    variance", the same affine map as in the paper's code), ``b`` a radially truncated standard
    Gaussian, ``x0 = 0``, lexicographic SOR (:func:`pdesurrogates.linalg.sor`) to relative
    residual 1e-8, capped at 10,000 sweeps; the context of the contextual bandits is ``c``;
(b) **the 2D heat equation** (:class:`pdesurrogates.physics.heat.HeatSequence`) with diffusivity
    ``kappa(t) = max(0.1 sin 2 pi t, -10 sin 2 pi t)`` (floored at 1e-3), Crank-Nicolson with
    ``dt = 1e-3``, the paper's forcing (a bump of radius 1/8 circling the centre eight times per
    time unit) and initial bump, each step solved by CG preconditioned with
    :class:`pdesurrogates.linalg.SSORPreconditioner` (:func:`pdesurrogates.linalg.pcg`) to
    ``||r|| <= 1e-8 ||b||`` warm-started from the previous step; context ``kappa``.

Every instance's iteration counts for **all** arms (20 values of ``omega`` in ``[1, 1.95]``) and
for the reference values are computed once into a cost table; the policies
(:class:`pdesurrogates.solvers.learned.SORBandit`), the best fixed ``omega`` in hindsight and the
instance optimum are then read off that table. The shifted Laplacians of a chunk of instances
are one batched :func:`~pdesurrogates.linalg.sor` call (a batch of matrices, each with its own
``omega``: the library's wavefront kernel). The instance optimum is Young's ``omega`` for (a)
(:func:`pdesurrogates.linalg.omega.young_omega`) and a golden-section search per step for (b)
(:func:`pdesurrogates.linalg.omega.search_optimal_omega`). In (b) the state is advanced with the
direct solution, so every arm of a step starts from the same ``x0``.

``python benchmarks/learned_sor.py`` runs it (about 10 minutes on one core), ``--quick`` a smoke
run (files ``learned_sor_quick.*``), ``--plot-only`` redraws the PNG from the JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import scipy.sparse.linalg as spla
import torch

from pdesurrogates import linalg
from pdesurrogates.linalg import gallery
from pdesurrogates.linalg.omega import jacobi_spectral_radius, search_optimal_omega, young_omega
from pdesurrogates.physics.heat import HeatSequence
from pdesurrogates.solvers.learned import SORBandit

OMEGAS = np.linspace(1.0, 1.95, 20)
METHODS = {"Tsallis-INF": "tsallis", "Tsallis-INF-CB (binned)": "binned", "ChebCB": "chebyshev"}
RTOL, MAXITER, HEAT_DT, GRID_N = 1e-8, 10_000, 1e-3, 10
FULL = {"instances": 5000, "heat_n": 24, "heat_steps": 5000, "trials": 5, "last": 1000}
QUICK = {"instances": 300, "heat_n": 12, "heat_steps": 300, "trials": 2, "last": 100}


# ----------------------------------------------------------------------------------------------
# cost tables
# ----------------------------------------------------------------------------------------------


def truncated_normal(rng: np.random.Generator, size: int, count: int) -> np.ndarray:
    """``count`` standard Gaussian vectors of length ``size`` conditioned on ``||b|| <= sqrt(size)``."""
    out = np.empty((count, size))
    filled = 0
    while filled < count:
        draw = rng.standard_normal((2 * (count - filled) + 8, size))
        draw = draw[np.linalg.norm(draw, axis=1) <= math.sqrt(size)][: count - filled]
        out[filled : filled + len(draw)] = draw
        filled += len(draw)
    return out


def shifted_laplacian_table(variance: str, T: int, seed: int, chunk: int = 100) -> dict:
    """SOR iteration counts of every arm, Young's omega and the instance optimum on ``T`` systems.

    Columns of ``costs``: the 20 arms. ``instance_optimal``: the count at Young's omega of each
    shifted matrix; ``young``: at Young's omega of the unshifted Laplacian.
    """
    if variance not in ("high", "low"):
        raise ValueError(f"variance must be 'high' or 'low', got {variance!r}")
    rng = np.random.default_rng(seed)
    a, b = (0.5, 1.5) if variance == "high" else (2.0, 6.0)
    n = GRID_N
    shifts = -0.15 + 0.6 * rng.beta(a, b, size=T)
    rhs = truncated_normal(rng, n * n, T)
    young = young_omega(gallery.poisson2d(n, scaled=False))
    opt = np.empty(T)
    k = OMEGAS.size + 2
    costs = np.empty((T, k), dtype=np.int64)
    for start in range(0, T, chunk):
        stop = min(T, start + chunk)
        matrices = [gallery.shifted_laplacian(n, c, format="dense") for c in shifts[start:stop]]
        opt[start:stop] = young_omega(beta=np.array([jacobi_spectral_radius(A) for A in matrices]))
        omegas = np.concatenate([np.tile(OMEGAS, (stop - start, 1)), opt[start:stop, None],
                                 np.full((stop - start, 1), young)], axis=1)
        # one batched solve: every instance's matrix once per omega
        A = torch.stack(matrices).repeat_interleave(k, dim=0)
        bb = torch.from_numpy(rhs[start:stop]).repeat_interleave(k, dim=0)
        res = linalg.sor(A, bb, omega=torch.from_numpy(omegas.ravel()), rtol=RTOL, maxiter=MAXITER)
        costs[start:stop] = res.iterations.numpy().reshape(stop - start, k)
    return {"contexts": shifts, "costs": costs[:, :20], "instance_optimal": costs[:, 20],
            "instance_optimal_omega": opt, "young": costs[:, 21], "young_omega": young,
            "context_range": (-0.15, 0.45)}


def paper_bump(x, y, cx, cy, radius):
    """``exp(1 - 1 / (1 - min(1, |p - c|^2 / r^2)))``: a C-infinity bump of the given radius."""
    rho = np.minimum(1.0, ((x - cx) ** 2 + (y - cy) ** 2) / radius**2)
    with np.errstate(divide="ignore"):
        return np.where(rho < 1.0, np.exp(1.0 - 1.0 / (1.0 - rho)), 0.0)


def paper_forcing(x, y, t):
    """The paper's source: a bump of radius 1/8 circling the centre eight times per time unit."""
    return 32.0 * paper_bump(x, y, 0.5 + math.cos(16 * math.pi * t) / 4,
                             0.5 + math.sin(16 * math.pi * t) / 4, 0.125)


def heat_sequence(n: int, steps: int, dt: float = HEAT_DT) -> HeatSequence:
    """The paper's heat sequence (Khodak diffusivity, circling forcing, initial bump)."""
    return HeatSequence(n=n, dt=dt, steps=steps, forcing=paper_forcing,
                        u0=lambda x, y: paper_bump(x, y, 0.5, 0.5, 0.25))


def heat_table(n: int, steps: int, dt: float = HEAT_DT, rounds: int = 8) -> dict:
    """SSOR-PCG iteration counts of every arm at every step, and the per-step optimum.

    The optimum is :func:`search_optimal_omega` (the grid, then ``rounds`` golden-section steps
    in the bracket around the best grid value, as the paper's ``golden_section.m``).
    """
    seq = heat_sequence(n, steps, dt)
    kappa = np.empty(steps)
    costs = np.empty((steps, OMEGAS.size), dtype=np.int64)
    best, best_w = np.empty(steps, dtype=np.int64), np.empty(steps)
    for k, step in enumerate(seq):

        def iterations(omegas, step=step):
            return [int(linalg.pcg(step.A, step.b, x0=step.x0, rtol=RTOL, maxiter=MAXITER,
                                   M=linalg.SSORPreconditioner(step.A, omega=float(w))).iterations)
                    for w in omegas]

        kappa[k] = step.context
        costs[k] = iterations(OMEGAS)
        found = search_optimal_omega(iterations, OMEGAS, rounds=rounds, grid_costs=costs[k])
        best[k], best_w[k] = found.cost, found.omega
        seq.advance(spla.splu(step.A.tocsc()).solve(step.b))
    return {"contexts": kappa, "costs": costs, "instance_optimal": best,
            "instance_optimal_omega": best_w, "instance_optimal_grid": costs.min(1),
            "context_range": (float(kappa.min()), float(kappa.max()))}


# ----------------------------------------------------------------------------------------------
# policies on a cost table
# ----------------------------------------------------------------------------------------------


def run_policy(costs, contexts, method, context_range, seed, order=None) -> np.ndarray:
    """Play ``SORBandit(method)`` on the rows of ``costs`` (in ``order``); returns the arms."""
    policy = SORBandit(OMEGAS, method=method, context_range=context_range, seed=seed)
    order = np.arange(len(costs)) if order is None else order
    arms = np.empty(len(order), dtype=np.int64)
    for t, i in enumerate(order):
        policy.choose(context=contexts[i] if method != "tsallis" else None)
        arms[t] = policy.last_arm
        policy.update(costs[i, arms[t]])
    return arms


def evaluate(table: dict, *, trials: int, seed: int, last: int, permute: bool) -> tuple[list, dict]:
    """Rows of mean iterations and regret curves of every policy on one cost table.

    With ``permute`` (i.i.d. instances) trial ``k > 0`` plays a random permutation of the instances;
    without it (a time sequence) every trial plays them in order and only the bandit seed changes.
    """
    costs, contexts = table["costs"], table["contexts"]
    T = len(costs)
    best = int(np.argmin(costs.mean(0)))
    rows, curves = [], {}
    ref = {
        "omega = 1 (Gauss-Seidel)": costs[:, 0],
        f"best fixed omega in hindsight ({OMEGAS[best]:.2f})": costs[:, best],
        "instance-optimal omega": table["instance_optimal"],
    }
    if "instance_optimal_grid" in table:
        ref["per-instance best of the 20 grid values"] = table["instance_optimal_grid"]
    if "young" in table:
        ref[f"Young's omega of the unshifted Laplacian ({table['young_omega']:.3f})"] = table["young"]
    rng = np.random.default_rng(seed)
    orders = [np.arange(T)] + [rng.permutation(T) if permute else np.arange(T) for _ in range(trials - 1)]
    for name, c in ref.items():
        tail = np.mean([c[o][-last:].mean() for o in orders])
        rows.append({"method": name, "mean_iterations": float(c.mean()), f"mean_last_{last}": float(tail),
                     "std_over_trials": 0.0})
    for name, method in METHODS.items():
        totals, tails, regret = [], [], []
        for k, order in enumerate(orders):
            arms = run_policy(costs, contexts, method, table["context_range"], seed + 1000 * k, order)
            paid = costs[order, arms]
            totals.append(paid.mean())
            tails.append(paid[-last:].mean())
            regret.append(np.cumsum(paid - costs[order, best]))
        rows.append({"method": name, "mean_iterations": float(np.mean(totals)),
                     f"mean_last_{last}": float(np.mean(tails)), "std_over_trials": float(np.std(totals))})
        regret = np.array(regret)
        points = np.unique(np.linspace(0, T - 1, 200).astype(int))
        curves[name] = {"t": (points + 1).tolist(), "mean": regret.mean(0)[points].tolist(),
                        "min": regret.min(0)[points].tolist(), "max": regret.max(0)[points].tolist()}
    summary = {"best_fixed_omega": float(OMEGAS[best]), "regret_curves": curves,
               "mean_cost_per_arm": costs.mean(0).tolist()}
    return rows, summary


def targets_of(rows: list[dict], last: int) -> dict:
    """The paper's claims, checked on one setting's rows."""
    by = {row["method"]: row for row in rows}
    key = f"mean_last_{last}"
    gs = next(v for k, v in by.items() if k.startswith("omega = 1"))[key]
    fixed = next(v for k, v in by.items() if k.startswith("best fixed"))[key]
    inst = by["instance-optimal omega"][key]
    bandit = by["Tsallis-INF"][key]
    tg = {
        "bandit_last_within_10pct_of_best_fixed": bool(bandit <= 1.10 * fixed),
        "bandit_last_3x_fewer_than_omega_1": bool(3.0 * bandit <= gs),
        "bandit_last_over_best_fixed": bandit / fixed,
        "omega_1_over_bandit_last": gs / bandit,
    }
    for cb in ("Tsallis-INF-CB (binned)", "ChebCB"):
        tg[f"{cb}: beats best fixed (last {last})"] = bool(by[cb][key] < fixed)
        tg[f"{cb}: within 15% of instance-optimal (last {last})"] = bool(by[cb][key] <= 1.15 * inst)
        tg[f"{cb}: over instance-optimal (last {last})"] = by[cb][key] / inst
    return tg


# ----------------------------------------------------------------------------------------------
# results
# ----------------------------------------------------------------------------------------------


def plot(payload: dict, path: Path) -> None:
    """Cumulative regret of every policy against the best fixed omega, one panel per setting."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    settings = payload["settings"]
    fig, axes = plt.subplots(1, len(settings), figsize=(5 * len(settings), 4), squeeze=False)
    for ax, (name, s) in zip(axes[0], settings.items()):
        for method, c in s["regret_curves"].items():
            ax.plot(c["t"], c["mean"], label=method)
            ax.fill_between(c["t"], c["min"], c["max"], alpha=0.25)
        ax.axhline(0.0, color="black", lw=0.8)
        ax.set_title(f"{name}\n(best fixed omega = {s['best_fixed_omega']:.2f})", fontsize=10)
        ax.set_xlabel("instance")
        ax.set_ylabel("cumulative regret vs best fixed omega (iterations)")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _cached(cache_dir: Path | None, key: str, job) -> dict:
    """Build a cost table, or load it from ``cache_dir`` when the same settings made it before."""
    t = time.perf_counter()
    if cache_dir is None:
        return dict(job(), build_seconds=time.perf_counter() - t)
    path = cache_dir / ("table_" + "".join(ch if ch.isalnum() else "_" for ch in key) + ".npz")
    if path.exists():
        with np.load(path) as f:
            table = {k: f[k] for k in f.files}
        table["context_range"] = tuple(table["context_range"].tolist())
        table["build_seconds"] = float(table["build_seconds"])
        if "young_omega" in table:
            table["young_omega"] = float(table["young_omega"])
        return table
    table = dict(job(), build_seconds=time.perf_counter() - t)
    cache_dir.mkdir(parents=True, exist_ok=True)
    np.savez(path, **{k: np.asarray(v) for k, v in table.items()})
    return table


def run(*, instances: int = FULL["instances"], heat_n: int = FULL["heat_n"],
        heat_steps: int = FULL["heat_steps"], trials: int = FULL["trials"], last: int = FULL["last"],
        seed: int = 0, name: str = "learned_sor", out_dir: Path | str | None = None,
        overwrite: bool = False, cache_dir: Path | str | None = None) -> dict[str, Path]:
    """Build the three cost tables, play the policies, write ``<name>.{json,md}`` and the plot.

    Raises ``FileExistsError`` when ``<name>.json`` exists in ``out_dir`` and ``overwrite`` is
    false (checked before any work).
    """
    from pdesurrogates.bench.report import RESULTS, write_results

    for label, v in (("instances", instances), ("heat_n", heat_n), ("heat_steps", heat_steps),
                     ("trials", trials), ("last", last)):
        if isinstance(v, bool) or int(v) != v or v < (2 if label == "heat_n" else 1):
            raise ValueError(f"learned_sor: {label} must be a positive integer, got {v!r}")
    if last > min(instances, heat_steps):
        raise ValueError(f"learned_sor: last={last} exceeds the number of instances or steps")
    out_dir = Path(out_dir) if out_dir is not None else RESULTS / "cpu"
    if (out_dir / f"{name}.json").exists() and not overwrite:
        raise FileExistsError(f"{out_dir / f'{name}.json'} exists; pass overwrite=True (--overwrite) "
                              "to replace it")
    cache = Path(cache_dir) if cache_dir is not None else None
    t0 = time.perf_counter()
    tables, timings = {}, {}
    jobs = {f"shifted Laplacian, {v} variance": (lambda v=v: shifted_laplacian_table(
        v, instances, seed + (0 if v == "high" else 1))) for v in ("high", "low")}
    jobs[f"heat equation, n = {heat_n}"] = lambda: heat_table(heat_n, heat_steps)
    for label, job in jobs.items():
        key = f"{label}|{instances}|{heat_n}|{heat_steps}|{seed}"
        tables[label] = _cached(cache, key, job)
        timings[label] = float(tables[label]["build_seconds"])
        print(f"{label}: cost table built in {timings[label]:.1f} s", flush=True)

    rows, settings, targets = [], {}, {}
    for label, table in tables.items():
        permute = "young" in table  # the shifted-Laplacian instances are i.i.d.
        r, summary = evaluate(table, trials=trials, seed=seed, last=last, permute=permute)
        for row in r:
            row["setting"] = label
        rows += r
        settings[label] = summary
        targets[label] = targets_of(r, last)
        for row in r:
            print(f"  {label[:22]:<22s} {row['method']:<55s} {row['mean_iterations']:9.2f} "
                  f"{row[f'mean_last_{last}']:9.2f}", flush=True)
    config = {"instances": instances, "heat_n": heat_n, "heat_steps": heat_steps, "heat_dt": HEAT_DT,
              "trials": trials, "last": last, "seed": seed, "rtol": RTOL, "maxiter": MAXITER,
              "omegas": OMEGAS.tolist(), "golden_section_rounds": 8, "torch_threads": torch.get_num_threads()}
    extra = {"settings": settings, "targets": targets,
             "timings_s": {**timings, "total": time.perf_counter() - t0}}
    paths = write_results(
        name, rows, config=config, title="Learned SOR relaxation factor (Khodak et al., ICLR 2024)",
        notes=_notes(targets, last, trials, instances, timings), extra=extra, out_dir=out_dir,
        columns=["setting", "method", "mean_iterations", f"mean_last_{last}", "std_over_trials"],
    )
    png = out_dir / f"{name}_regret.png"
    plot({"settings": settings}, png)
    return {**paths, "png": png}


def _notes(targets, last, trials, instances, timings) -> str:
    lines = ["## Targets", ""]
    for label, tg in targets.items():
        lines.append(f"**{label}**")
        for k, v in tg.items():
            lines.append(f"- {k}: {v if isinstance(v, bool) else f'{v:.3f}'}")
        lines.append("")
    lines += [
        "## How these numbers were made",
        "",
        (
            f"- mean iterations per instance over the whole sequence and over its last {last} instances; "
            f"policies averaged over {trials} trials, each with its own bandit seed (shifted Laplacians: "
            "trial 0 plays the instances in drawn order, the others random permutations of the same i.i.d. "
            "instances; heat: every trial plays the time steps in order, as in the paper). The "
            f"paper uses 40 trials with fresh instances each; we use one table of {instances} instances "
            "per shift distribution."
        ),
        "- fixed-omega rows and the instance optimum are deterministic given the table (std 0).",
        (
            "- the '3x fewer iterations than omega = 1' target is about SOR on the shifted Laplacians; with "
            "SSOR-preconditioned CG on the heat sequence even the best fixed omega saves only about 10% over "
            "omega = 1, so that line is reported but not expected to hold there."
        ),
        (
            "- shifted Laplacian: the instance-optimal omega is Young's omega 2/(1+sqrt(1-beta^2)) of each "
            "shifted matrix, beta its Jacobi spectral radius (pdesurrogates.linalg.omega); the Young row uses "
            "the unshifted Laplacian's, 2/(1+sin(pi/11))."
        ),
        (
            "- heat: the instance-optimal row is, per step, the fewest iterations found by "
            "pdesurrogates.linalg.omega.search_optimal_omega (8 golden-section rounds in the bracket around "
            "the best of the 20 grid values, as in the paper); the per-step best grid value is listed too. "
            "Young's omega is not defined for SSOR-preconditioned CG."
        ),
        (
            f"- cost tables: {', '.join(f'{k} {v:.0f} s' for k, v in timings.items())} (wall clock, one "
            "thread; pdesurrogates.linalg.sor with its wavefront kernel for the shifted Laplacians, "
            "pdesurrogates.linalg.pcg with SSORPreconditioner for the heat steps)."
        ),
        (
            "- regret curves: the PNG next to this file (cumulative iterations paid minus those of the best "
            "fixed omega in hindsight; band = min/max over trials)."
        ),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command line of ``benchmarks/learned_sor.py``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instances", type=int, default=None, help="shifted-Laplacian instances T")
    parser.add_argument("--heat-n", type=int, default=None, help="interior nodes per side (paper nx = n + 1)")
    parser.add_argument("--heat-steps", type=int, default=None)
    parser.add_argument("--trials", type=int, default=None, help="bandit seeds / instance orders per table")
    parser.add_argument("--last", type=int, default=None, help="window for the tail averages")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true",
                        help="small sizes for a smoke run, written as learned_sor_quick.*")
    parser.add_argument("--plot-only", action="store_true", help="redraw the PNG from the JSON")
    parser.add_argument("--out-dir", type=Path, default=None, help="default benchmarks/results/cpu")
    parser.add_argument("--overwrite", action="store_true", help="replace existing result files")
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="keep the cost tables here (.npz) and reuse them on the next run")
    args = parser.parse_args(argv)
    from pdesurrogates.bench.report import RESULTS

    name = "learned_sor_quick" if args.quick else "learned_sor"
    out_dir = args.out_dir or RESULTS / "cpu"
    if args.plot_only:
        path = out_dir / f"{name}.json"
        if not path.exists():
            parser.error(f"--plot-only: {path} does not exist")
        plot(json.loads(path.read_text()), out_dir / f"{name}_regret.png")
        return 0
    sizes = dict(QUICK if args.quick else FULL)
    for key in sizes:
        if getattr(args, key) is not None:
            sizes[key] = getattr(args, key)
    paths = run(**sizes, seed=args.seed, name=name, out_dir=out_dir, overwrite=args.overwrite,
                cache_dir=args.cache_dir)
    print("wrote", *paths.values())
    return 0
