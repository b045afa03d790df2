"""Dataset generation speed: Darcy at 64/128/256/421 and Navier–Stokes at 64^2 (FNO setting).

Darcy: per-sample wall time of the full generator (``DarcyProblem.generate``: Gaussian random
field by DCT, thresholding, matrix assembly, sparse direct solve, float32 copies) against the bare
sparse direct solve of the *same* matrix and right-hand side with the same call
(``scipy.sparse.linalg.spsolve``, minimum-degree ordering), measured in the same run on the same
samples; ratio = generator / bare solve (target <= 1.5). A pyamg (smoothed aggregation, rtol 1e-10)
solve of the same system is timed for comparison.

Navier–Stokes, FNO setting (solved at 256^2 with dt = 1e-4, stored at 64^2, nu = 1e-3, 50 time
units = 500,000 steps): one trajectory takes far too long for a CPU benchmark, so we time
``--ns-steps`` steps of a batch of ``B`` trajectories and extrapolate linearly to 50 time units (the
cost per step is constant: fixed-size FFTs). The extrapolation is labelled as such. We also time
the cheaper setting that solves directly at 64^2 with dt = 1e-3 (``ns_small``), end to end for a
short horizon. On a GPU (``--device cuda``) the same code runs batched on the device.

Run: ``OMP_NUM_THREADS=1 python benchmarks/generation.py`` (a few minutes on one core);
``--quick`` for a smoke run (not committed).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import scipy.sparse.linalg as spla
import torch

from pdesurrogates.bench.report import write_results
from pdesurrogates.physics import darcy, navier_stokes
from pdesurrogates.physics.problems import get_problem
from pdesurrogates.physics.random import gaussian_random_field, sample_generator


def bench_darcy(resolution: int, n_samples: int, seed: int) -> dict:
    problem = get_problem("darcy", resolution=resolution)
    gen_times, solve_times, amg_times = [], [], []
    for i in range(n_samples):
        t0 = time.perf_counter()
        problem.generate([i], seed=seed)
        gen_times.append(time.perf_counter() - t0)
        a = darcy.sample_coefficient(resolution, sample_generator(seed, i))
        A, b = darcy.darcy_system(a)
        Ac = A.tocsc()
        t0 = time.perf_counter()
        spla.spsolve(Ac, b, permc_spec="MMD_AT_PLUS_A")
        solve_times.append(time.perf_counter() - t0)
        if resolution <= 256 or i == 0:
            import pyamg

            t0 = time.perf_counter()
            pyamg.smoothed_aggregation_solver(A).solve(b, tol=1e-10, accel="cg", maxiter=500)
            amg_times.append(time.perf_counter() - t0)
    gen, solve = float(np.median(gen_times)), float(np.median(solve_times))
    return {
        "case": f"darcy {resolution}^2",
        "samples": n_samples,
        "generator_s_per_sample": gen,
        "bare_solve_s": solve,
        "ratio_generator_over_solve": gen / solve,
        "amg_solve_s": float(np.median(amg_times)),
        "samples_per_s": 1.0 / gen,
    }


def bench_ns(label: str, batch: int, solver_resolution: int, dt: float, steps: int, horizon: float,
             device: str, seed: int) -> dict:
    """Time ``steps`` steps for ``batch`` trajectories; per-trajectory time extrapolated to ``horizon``."""
    w0 = torch.stack([gaussian_random_field((solver_resolution,) * 2, 2.5, 7.0, 7.0**1.5,
                                            generator=sample_generator(seed, i)) for i in range(batch)])
    w0 = w0.to(device)
    forcing = navier_stokes.fno_forcing(solver_resolution, device=device)
    # warm-up (plans, allocations)
    navier_stokes.solve_navier_stokes(w0, 1e-3, [2 * dt], dt=dt, forcing=forcing)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    navier_stokes.solve_navier_stokes(w0, 1e-3, [steps * dt], dt=dt, forcing=forcing)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - t0
    per_step_per_traj = elapsed / steps / batch
    total_steps = round(horizon / dt)
    per_traj = per_step_per_traj * total_steps
    return {
        "case": label,
        "batch": batch,
        "solver_grid": f"{solver_resolution}^2",
        "dt": dt,
        "timed_steps": steps,
        "ms_per_step_per_trajectory": 1e3 * per_step_per_traj,
        "s_per_trajectory_50tu": per_traj,
        "samples_per_s": 1.0 / per_traj,
        "extrapolated": steps < total_steps,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny smoke run, results not written")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ns-steps", type=int, default=200)
    args = parser.parse_args(argv)

    darcy_sizes = {64: 20, 128: 10, 256: 4, 421: 3}
    ns_batches = [1, 8]
    if args.quick:
        darcy_sizes = {64: 3, 128: 2}
        ns_batches = [1]
        args.ns_steps = 10

    darcy_rows = []
    for resolution, n in darcy_sizes.items():
        row = bench_darcy(resolution, n, args.seed)
        print(row, flush=True)
        darcy_rows.append(row)

    ns_rows = []
    for batch in ns_batches:
        row = bench_ns("NS FNO setting (256^2 solve, dt=1e-4, 50 tu)", batch, 256, 1e-4,
                       args.ns_steps, 50.0, args.device, args.seed)
        print(row, flush=True)
        ns_rows.append(row)
    for batch in ns_batches:
        row = bench_ns("NS direct 64^2 solve (dt=1e-3, 50 tu)", batch, 64, 1e-3,
                       10 * args.ns_steps, 50.0, args.device, args.seed)
        print(row, flush=True)
        ns_rows.append(row)
    if args.quick:
        return 0

    worst = max(r["ratio_generator_over_solve"] for r in darcy_rows)
    config = {"darcy_samples": darcy_sizes, "ns_batches": ns_batches, "ns_steps": args.ns_steps,
              "seed": args.seed, "device": args.device,
              "threads": torch.get_num_threads()}
    notes = (
        f"Generator / bare-solve ratio (median over samples, same matrices, same run): worst "
        f"{worst:.2f} (target <= 1.5). `amg_solve_s`: pyamg smoothed aggregation + CG to rtol 1e-10 "
        "on the same system (at 421 one sample).\n\nCommand: `OMP_NUM_THREADS=1 python "
        "benchmarks/generation.py`."
    )
    write_results("generation_darcy", darcy_rows, config=config, device=args.device,
                  title="Darcy generation: samples/s and generator vs bare sparse solve", notes=notes)
    ns_notes = (
        "Per-trajectory times for 50 time units are extrapolated from the timed steps (constant "
        "cost per step) where `extrapolated` is true. Heun/Crank-Nicolson, 2/3 dealiasing, "
        "10 FFTs per step. GPU numbers: not measured (no device lent to this session).\n\n"
        "Command: `OMP_NUM_THREADS=1 python benchmarks/generation.py`."
    )
    write_results("generation_navier_stokes", ns_rows, config=config, device=args.device,
                  title="Navier-Stokes generation (FNO setting) per trajectory", notes=ns_notes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
