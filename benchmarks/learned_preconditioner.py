"""Learned preconditioners against classical ones: iterations and wall time to rel. residual 1e-6.

Systems: 2D Poisson (interior 64^2 .. 512^2), 2D two-phase diffusion (contrast 12/3, the FNO
Darcy setting), 3D Poisson (32^3, 64^3). Solvers: CG, SSOR-PCG with the best omega on a grid,
IC(0)-PCG, pyamg smoothed-aggregation AMG-PCG, DCDM (FCG(2) with the network trained on the
smallest 2D/3D grid and applied unchanged to larger ones). The neural-operator preconditioner
(pdesurrogates.solvers.learned.neural_preconditioner) is not in this table yet: its MgNO training
with the scale-free loss did not leave loss 1.0 in our trials.

    python benchmarks/learned_preconditioner.py            # the committed 'small' run
    python benchmarks/learned_preconditioner.py --size smoke

Writes benchmarks/results/<device>/learned_preconditioner.{json,md,png}.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import asdict

import numpy as np
import torch

from pdesurrogates.bench.report import RESULTS, device_name, write_results
from pdesurrogates.linalg import AMGPreconditioner, IC0Preconditioner, SSORPreconditioner, cg, fcg, pcg
from pdesurrogates.physics.grid import Grid
from pdesurrogates.physics.operators import diffusion_matrix
from pdesurrogates.solvers.learned.conjugate_direction import (
    DCDMConfig,
    DCDMTrainConfig,
    GridDiffusionOperator,
    LearnedPreconditioner,
    train_dcdm,
)

SIZES = {
    "smoke": {"poisson2d": [16, 32], "darcy2d": [16], "poisson3d": [8], "dcdm_steps": 50, "dcdm3d_steps": 20},
    "small": {
        "poisson2d": [64, 128, 256],
        "darcy2d": [64, 128],
        "poisson3d": [16],
        "dcdm_steps": 1500,
        "dcdm3d_steps": 300,
    },
}
RTOL = 1e-6
OMEGAS = (1.0, 1.2, 1.4, 1.5, 1.6, 1.7, 1.8, 1.9)


def _two_phase(nodes: int, seed: int) -> np.ndarray:
    from pdesurrogates.solvers.learned.neural_preconditioner import two_phase_coefficients

    return two_phase_coefficients(1, nodes, torch.Generator().manual_seed(seed))[0].double().numpy()


def _timed(fn):
    t0 = time.perf_counter()
    res = fn()
    return res, time.perf_counter() - t0


def run(size: str = "small", seed: int = 2) -> dict:
    torch.manual_seed(seed)
    sizes = SIZES[size]
    t0 = time.perf_counter()
    net2, hist2 = train_dcdm(DCDMTrainConfig(resolution=34, steps=sizes["dcdm_steps"], lr=3e-3, n_samples=1024, n_ritz=400, seed=seed))
    train2 = time.perf_counter() - t0
    t0 = time.perf_counter()
    net3, hist3 = train_dcdm(
        DCDMTrainConfig(resolution=18, ndim=3, steps=sizes["dcdm3d_steps"], lr=3e-3, n_samples=512, n_ritz=300,
                        seed=seed, model=DCDMConfig(ndim=3))
    )
    train3 = time.perf_counter() - t0

    rows = []
    cases = [("poisson2d", n, 2) for n in sizes["poisson2d"]]
    cases += [("darcy2d", n, 2) for n in sizes["darcy2d"]]
    cases += [("poisson3d", n, 3) for n in sizes["poisson3d"]]
    rng = np.random.default_rng(seed)
    for problem, n, ndim in cases:
        grid = Grid((n + 2,) * ndim)
        a = _two_phase(n + 2, seed) if problem == "darcy2d" else np.ones(grid.shape)
        A = diffusion_matrix(a, grid)
        b = rng.standard_normal(A.shape[0])
        record = {"problem": problem, "n": n, "unknowns": A.shape[0]}

        def add(method, fn):
            res, sec = _timed(fn)
            rows.append({**record, "method": method, "iterations": int(res.iterations), "converged": bool(res.converged), "seconds": sec})

        add("CG", lambda: cg(A, b, rtol=RTOL, maxiter=20000))
        best = None
        for omega in OMEGAS:
            M = SSORPreconditioner(A, omega=omega)
            res, sec = _timed(lambda: pcg(A, b, M=M, rtol=RTOL, maxiter=5000))
            if best is None or res.iterations < best[1].iterations:
                best = (omega, res, sec)
        rows.append({**record, "method": f"SSOR-PCG (w={best[0]})", "iterations": int(best[1].iterations),
                     "converged": bool(best[1].converged), "seconds": best[2]})
        add("IC(0)-PCG", lambda: pcg(A, b, M=IC0Preconditioner(A), rtol=RTOL, maxiter=5000))
        add("AMG-PCG", lambda: pcg(A, b, M=AMGPreconditioner(A), rtol=RTOL, maxiter=500))
        net = net2 if ndim == 2 else net3
        M = LearnedPreconditioner(net).for_shape(grid.interior_shape)
        add("DCDM", lambda: fcg(A, b, M=M, m=2, rtol=RTOL, maxiter=2000))
    fits = _growth_exponents(rows)
    config = {"size": size, "seed": seed, "rtol": RTOL, "omegas": OMEGAS, "sizes": sizes,
              "dcdm2d": asdict(DCDMConfig())}
    extra = {
        "training": {"dcdm2d_seconds": train2, "dcdm2d_final_loss": float(np.mean(hist2[-50:])),
                     "dcdm3d_seconds": train3, "dcdm3d_final_loss": float(np.mean(hist3[-20:]))},
        "growth_exponents": fits,
    }
    notes = "Iteration growth exponents (iterations ~ unknowns^p, 2D Poisson): " + ", ".join(
        f"{k} {v:.3f}" for k, v in fits.items()
    )
    paths = write_results("learned_preconditioner", rows, config=config, extra=extra, notes=notes,
                          title="Learned vs classical preconditioners (rel. residual 1e-6)")
    _plot(rows, RESULTS / device_name() / "learned_preconditioner.png")
    return {"rows": rows, "paths": paths, **extra}


def _growth_exponents(rows) -> dict:
    out = {}
    methods = sorted({r["method"].split(" (")[0] for r in rows})
    for m in methods:
        pts = [(r["unknowns"], r["iterations"]) for r in rows if r["problem"] == "poisson2d" and r["method"].split(" (")[0] == m]
        if len(pts) >= 2:
            x, y = np.log([p[0] for p in pts]), np.log([max(p[1], 1) for p in pts])
            out[m] = float(np.polyfit(x, y, 1)[0])
    return out


def _plot(rows, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    problems = sorted({r["problem"] for r in rows})
    fig, axes = plt.subplots(1, len(problems), figsize=(5 * len(problems), 4), squeeze=False)
    for ax, problem in zip(axes[0], problems):
        sub = [r for r in rows if r["problem"] == problem]
        for m in sorted({r["method"].split(" (")[0] for r in sub}):
            pts = sorted((r["unknowns"], r["iterations"]) for r in sub if r["method"].split(" (")[0] == m)
            ax.loglog(*zip(*pts), "o-", label=m)
        ax.set(title=problem, xlabel="unknowns", ylabel="iterations to 1e-6")
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=sorted(SIZES), default="small")
    parser.add_argument("--seed", type=int, default=2,
                        help="training seed (seed 1 at lr 3e-3 stalls at loss 1.0; 2 trains; see the notes)")
    args = parser.parse_args(argv)
    out = run(args.size, args.seed)
    print(open(out["paths"]["md"]).read())
    return out


if __name__ == "__main__":
    main()
