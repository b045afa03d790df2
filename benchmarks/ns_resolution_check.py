"""Navier–Stokes FNO setting (nu = 1e-3, T = 50, stored at 64^2): which solver grid is fine enough?

The same initial vorticity (a draw of the FNO prior on the 256^2 grid, restricted spectrally to the
coarser grids: exact for every mode they represent) is solved with the default time step of
:func:`pdesurrogates.physics.navier_stokes.solve_navier_stokes` on 64^2, 128^2 and 256^2 grids.
The 256^2 solve is the reference; its own time-stepping error is measured against a 256^2 solve
with shorter steps (``accuracy`` 0.01 instead of 0.05; the CFL bound still caps both) on one
trajectory. Reported:
relative L2 difference at the 64^2 stored nodes, at t = 10, 30, 50 (mean and max over the
trajectories), the mean steps and the wall time per trajectory.

Run: ``OMP_NUM_THREADS=1 python benchmarks/ns_resolution_check.py`` (about 6 minutes on one core);
``--quick`` for a smoke run (short horizon, not written).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import torch

from pdesurrogates.bench.report import write_results
from pdesurrogates.physics import navier_stokes
from pdesurrogates.physics.problems import get_problem
from pdesurrogates.physics.random import gaussian_random_field, sample_generator

STORED = 64
REFERENCE = 256


def restrict(w: torch.Tensor, n: int) -> torch.Tensor:
    """Fourier restriction of ``(B, N, N)`` periodic fields to ``n x n`` (modes ``|m| < n / 2``)."""
    N = w.shape[-1]
    if n == N:
        return w.clone()
    w_hat = torch.fft.rfft2(w)
    half = n // 2
    rows = torch.cat([torch.arange(half), torch.arange(N - half + 1, N)])  # drop the coarse Nyquist
    coarse = torch.zeros(w.shape[0], n, half + 1, dtype=w_hat.dtype)
    coarse[:, torch.cat([torch.arange(half), torch.arange(n - half + 1, n)]), :half] = w_hat[:, rows, :half]
    return torch.fft.irfft2(coarse * (n / N) ** 2, s=(n, n))


def solve(w0: torch.Tensor, times: list[float], nu: float, **kwargs) -> tuple[torch.Tensor, float, float]:
    """Solution at the 64^2 nodes ``(B, T, 64, 64)``, seconds per trajectory, mean steps."""
    n = w0.shape[-1]
    forcing = navier_stokes.fno_forcing(n)
    t0 = time.perf_counter()
    w, steps = navier_stokes.solve_navier_stokes(w0, nu, times, forcing=forcing, return_steps=True,
                                                 **kwargs)
    seconds = (time.perf_counter() - t0) / w0.shape[0]
    stride = n // STORED
    return w[..., ::stride, ::stride], seconds, float(steps.double().mean())


def relative_l2(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``(B, T)`` relative L2 difference of ``a`` from ``b`` over the last two axes."""
    return (a - b).flatten(-2).norm(dim=-1) / b.flatten(-2).norm(dim=-1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trajectories", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="t = 2, two trajectories, not written")
    args = parser.parse_args(argv)
    problem = get_problem("navier-stokes", resolution=STORED)  # the FNO parameters
    horizon, checks = (2.0, [1.0, 2.0]) if args.quick else (50.0, [10.0, 30.0, 50.0])
    count = 2 if args.quick else args.trajectories
    times = [float(t) for t in range(1, int(horizon) + 1)]
    at = [times.index(t) for t in checks]

    fine0 = torch.stack([
        gaussian_random_field((REFERENCE, REFERENCE), problem.alpha, problem.tau, problem.sigma,
                              generator=sample_generator(args.seed, i)) for i in range(count)])
    reference, ref_seconds, ref_steps = solve(fine0, times, problem.nu)
    print(f"reference {REFERENCE}^2: {ref_seconds:.1f} s/trajectory, {ref_steps:.0f} steps", flush=True)
    rows = []
    for grid in (STORED, 2 * STORED):
        w, seconds, steps = solve(restrict(fine0, grid), times, problem.nu)
        err = relative_l2(w[:, at], reference[:, at])
        row = {"solver_grid": f"{grid}^2", "compared_with": f"{REFERENCE}^2 default dt",
               "trajectories": count, "mean_steps": steps, "s_per_trajectory": seconds,
               "compared_steps": ref_steps}
        for k, t in enumerate(checks):
            row[f"rel_l2_t{t:g}_mean"] = float(err[:, k].mean())
            row[f"rel_l2_t{t:g}_max"] = float(err[:, k].max())
        rows.append(row)
        print(row, flush=True)
    # the reference's own time error: the same 256^2 solve with shorter steps, one trajectory
    finer, fine_seconds, fine_steps = solve(fine0[:1], times, problem.nu, accuracy=0.01)
    err = relative_l2(reference[:1, at], finer[:, at])
    row = {"solver_grid": f"{REFERENCE}^2", "compared_with": f"{REFERENCE}^2, accuracy 0.01",
           "trajectories": 1, "mean_steps": ref_steps, "s_per_trajectory": ref_seconds,
           "compared_steps": fine_steps}
    for k, t in enumerate(checks):
        row[f"rel_l2_t{t:g}_mean"] = float(err[0, k])
        row[f"rel_l2_t{t:g}_max"] = float(err[0, k])
    rows.append(row)
    print(row, f"(finer: {fine_seconds:.1f} s, {fine_steps:.0f} steps)", flush=True)
    if args.quick:
        return 0

    best = next((r for r in rows[:2] if r["rel_l2_t50_max"] < 1e-3), None)
    verdict = (f"The coarsest solver grid whose stored 64^2 trajectories agree with the 256^2 solve to "
               f"< 1e-3 at t = 10, 30 and 50 is {best['solver_grid']}" if best else
               "Neither 64^2 nor 128^2 agrees with the 256^2 solve to < 1e-3 at t = 50")
    cost = {r["solver_grid"]: r["s_per_trajectory"] for r in rows}
    notes = (
        f"Navier-Stokes, FNO setting: nu = {problem.nu:g}, forcing 0.1 (sin 2 pi (x + y) + cos 2 pi (x + y)), "
        f"initial vorticity from the FNO prior drawn on the {REFERENCE}^2 grid (seed {args.seed}, samples "
        f"0-{count - 1}) and restricted in Fourier space to the coarser grids; default time step (CFL "
        "safety 0.5, viscous and accuracy bounds) everywhere. Relative L2 at the 64^2 stored nodes. "
        f"Last row: the {REFERENCE}^2 reference against the same solve with shorter steps (accuracy "
        f"0.01; `compared_steps` steps), its time-stepping error.\n\n{verdict}. 1200 trajectories to t = 50 on 2 CPU cores (2 "
        f"processes, one thread each, this machine's per-trajectory times): "
        + ", ".join(f"{g} {1200 * s / 2 / 3600:.1f} h" for g, s in cost.items())
        + ".\n\nCommand: `OMP_NUM_THREADS=1 python benchmarks/ns_resolution_check.py`."
    )
    config = {"nu": problem.nu, "t_final": horizon, "checks": checks, "trajectories": count,
              "seed": args.seed, "stored": STORED, "reference": REFERENCE,
              "threads": torch.get_num_threads()}
    write_results("ns_resolution_check", rows, config=config, device="cpu",
                  title="Navier-Stokes nu = 1e-3 (FNO setting): solver grid vs a 256^2 solve",
                  notes=notes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
