"""2D Navier–Stokes: Taylor–Green decay, steady Kolmogorov flow, time order, invariants."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from pdesurrogates.physics import spectral
from pdesurrogates.physics.navier_stokes import (
    default_time_step,
    enstrophy,
    fno_forcing,
    kinetic_energy,
    solve_navier_stokes,
    velocity_from_vorticity,
)
from pdesurrogates.physics.problems import get_problem
from pdesurrogates.physics.random import gaussian_random_field, sample_generator

REPO = Path(__file__).resolve().parents[1]


def _mesh(n):
    x = torch.arange(n, dtype=torch.float64) / n
    return torch.meshgrid(x, x, indexing="ij")


def test_taylor_green_decays_exactly() -> None:
    """w = 2 a^2 sin(a x) sin(a y) (psi = sin sin): advection vanishes, w(t) = w0 exp(-2 nu a^2 t)."""
    n, nu = 32, 0.01
    x, y = _mesh(n)
    ws = []
    for m in (1, 2):
        a = 2 * math.pi * m
        ws.append(2 * a**2 * torch.sin(a * x) * torch.sin(a * y))
    w0 = torch.stack(ws)
    times = [0.25, 0.5]
    w = solve_navier_stokes(w0, nu, times, dt=5e-4)
    for i, m in enumerate((1, 2)):
        for j, t in enumerate(times):
            exact = w0[i] * math.exp(-2 * nu * (2 * math.pi * m) ** 2 * t)
            rel = float((w[i, j] - exact).abs().max() / exact.abs().max())
            assert rel < 1e-6, (m, t, rel)


def test_forced_kolmogorov_flow_is_steady() -> None:
    """w = A sin(2 pi k y) with f = nu (2 pi k)^2 w is an exact steady state of the forced equation."""
    n, nu, k = 32, 0.05, 3
    x, y = _mesh(n)
    w0 = torch.sin(2 * math.pi * k * y) + 0.0 * x
    f = nu * (2 * math.pi * k) ** 2 * w0
    w = solve_navier_stokes(w0, nu, [1.0], dt=5e-3, forcing=f)
    assert float((w[0] - w0).abs().max()) < 1e-12


def _random_w0(n, seed=0):
    return gaussian_random_field((n, n), alpha=2.5, tau=7.0, generator=sample_generator(seed, 0))


def test_heun_crank_nicolson_second_order_in_time() -> None:
    n, nu, T = 32, 2e-3, 0.4
    w0 = _random_w0(n) * 3
    f = fno_forcing(n)
    reference = solve_navier_stokes(w0, nu, [T], dt=T / 320, forcing=f)[0]
    dts = [T / 20, T / 40, T / 80]
    errors = [float((solve_navier_stokes(w0, nu, [T], dt=dt, forcing=f)[0] - reference).abs().max())
              for dt in dts]
    slope = np.polyfit(np.log(dts), np.log(errors), 1)[0]
    assert abs(slope - 2.0) < 0.2, errors


def test_unforced_energy_and_enstrophy_decay_monotonically() -> None:
    n, nu = 64, 1e-3
    w0 = _random_w0(n, seed=3)[None].repeat(2, 1, 1)
    w0[1] *= 0.5
    times = [0.05 * k for k in range(1, 21)]
    w = solve_navier_stokes(w0, nu, times, dt=2.5e-3)
    for b in range(2):
        e = torch.cat([kinetic_energy(w0[b])[None], kinetic_energy(w[b])])
        z = torch.cat([enstrophy(w0[b])[None], enstrophy(w[b])])
        assert torch.all(e[1:] < e[:-1]) and torch.all(z[1:] < z[:-1])
        # energy budget of 2D flow: dE/dt = -nu <w^2> = -2 nu Z (advection conserves E)
        loss = float(e[0] - e[-1])
        dissipated = 2 * nu * float(torch.trapezoid(z, dx=0.05))
        assert abs(loss / dissipated - 1.0) < 0.01, (loss, dissipated)


def test_velocity_is_divergence_free_and_recovers_vorticity() -> None:
    w = spectral.dealias(_random_w0(48, seed=1), 2)  # no Nyquist content (odd derivatives drop it)
    u = velocity_from_vorticity(w)
    div = spectral.divergence(u, 2)
    assert float(div.abs().max()) < 1e-11 * float(u.abs().max()) * 48
    curl = spectral.derivative(u[1], (1, 0)) - spectral.derivative(u[0], (0, 1))
    assert torch.allclose(curl, w - w.mean(), atol=1e-10)


def test_batch_and_float32_consistent() -> None:
    w0 = torch.stack([_random_w0(32, s) for s in range(3)])
    f = fno_forcing(32)
    both = solve_navier_stokes(w0, 1e-3, [0.1], dt=1e-2, forcing=f)
    single = solve_navier_stokes(w0[1], 1e-3, [0.1], dt=1e-2, forcing=f)
    assert torch.allclose(both[1], single, atol=1e-12)
    f32 = solve_navier_stokes(w0.float(), 1e-3, [0.1], dt=1e-2, forcing=f)
    assert f32.dtype == torch.float32 and torch.allclose(f32.double(), both, atol=1e-4)


def test_bad_input_refused() -> None:
    w0 = _random_w0(32) * 100
    with pytest.raises(ValueError, match="CFL"):
        solve_navier_stokes(w0, 1e-3, [0.5], dt=0.5)
    with pytest.raises(ValueError, match="nu must be > 0"):
        solve_navier_stokes(w0, -1.0, [0.5])
    with pytest.raises(ValueError, match="multiple of dt"):
        solve_navier_stokes(w0, 1e-3, [0.00015], dt=1e-4)


def test_default_time_step_matches_the_papers_dt() -> None:
    """FNO setting: the default step (CFL + accuracy bounds) agrees with dt = 1e-4 to < 1e-3."""
    params = {"resolution": 32, "solver_resolution": 32, "t_final": 1.0, "record_every": 0.5}
    default = get_problem("navier-stokes", **params)
    assert default.dt is None
    x, y = default.generate([0, 1], seed=0)
    x_ref, y_ref = get_problem("navier-stokes", **params, dt=1e-4).generate([0, 1], seed=0)
    assert np.array_equal(x, x_ref)
    for t in range(2):
        diff = np.linalg.norm((y[:, 0, t] - y_ref[:, 0, t]).reshape(2, -1), axis=1)
        rel = diff / np.linalg.norm(y_ref[:, 0, t].reshape(2, -1), axis=1)
        assert np.all(rel < 1e-3), (t, rel)
    # ... with far fewer steps than the 10^4 of the fixed step
    w0 = torch.as_tensor(x[:, 0], dtype=torch.float64)
    steps = 1.0 / default_time_step(w0, default.nu, fno_forcing(32))
    assert float(steps.max()) < 100


def _heun_cn_amplification(y, a):
    """One step of the code's scheme on a Fourier mode: advection eigenvalue ``-i y / dt``,
    viscous ``-2 a / dt`` (``a = dt nu |k|^2 / 2``): CN numer/denom with a Heun predictor."""
    numer, denom, z = 1.0 - a, 1.0 / (1.0 + a), -1j * y
    pred = (numer + z) * denom
    return (numer + 0.5 * z * (1.0 + pred)) * denom


@pytest.mark.parametrize("nu", [1e-3, 1e-4, 1e-5])
def test_default_step_keeps_every_kept_mode_stable(nu) -> None:
    """Heun alone amplifies advected modes (|G| > 1 on the imaginary axis); at the default step
    the Crank-Nicolson damping wins on every mode the 2/3 rule keeps, for any local velocity."""
    n = 64
    m = 2 * np.pi * np.arange(-(n // 3), n // 3 + 1)
    kx, ky = np.meshgrid(m, m)
    k2 = kx**2 + ky**2
    for u_max in (0.05, 0.5, 5.0):
        # a vorticity field with that max|u|: scale a random field
        w = _random_w0(n, seed=2)
        w = w * (u_max / float(velocity_from_vorticity(w).abs().max()))
        dt = float(default_time_step(w[None], nu, accuracy=1e9))  # stability bounds only
        for ux in np.linspace(-u_max, u_max, 9):  # any velocity with components <= max|u|
            for uy in np.linspace(0, u_max, 5):
                g = np.abs(_heun_cn_amplification(dt * (kx * ux + ky * uy), 0.5 * dt * nu * k2))
                assert g.max() <= 1.0 + 1e-12, (nu, u_max, ux, uy, g.max())
        # ... while pure Heun at that step would amplify the fastest mode
        y = dt * (n // 3) * 2 * np.pi * u_max
        assert abs(_heun_cn_amplification(y, 0.0)) > 1.0


def test_default_step_is_batch_independent_and_lands_on_output_times() -> None:
    w0 = torch.stack([_random_w0(32, s) * (1 + 3 * s) for s in range(3)])  # different speeds
    f = fno_forcing(32)
    both = solve_navier_stokes(w0, 1e-3, [0.3, 0.7], forcing=f)
    for b in range(3):
        single = solve_navier_stokes(w0[b], 1e-3, [0.3, 0.7], forcing=f)
        assert torch.allclose(both[b], single, rtol=0, atol=1e-13 * float(single.abs().max()))
    _, steps = solve_navier_stokes(w0, 1e-3, [0.3, 0.7], forcing=f, return_steps=True)
    assert len(set(steps.tolist())) == 3  # the trajectories took different steps
    first = torch.ceil(0.3 / default_time_step(w0, 1e-3, f)).long()
    assert torch.all(steps > first)


@pytest.mark.slow
def test_generate_cli_default_navier_stokes_within_a_minute(tmp_path) -> None:
    """``pdesurrogates generate navier-stokes --n 2 --resolution 32`` (128^2 solve, T = 50)."""
    out = tmp_path / "ns.h5"
    env = dict(os.environ, OMP_NUM_THREADS="2")
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "pdesurrogates.cli", "generate", "navier-stokes", "--n", "2",
                    "--resolution", "32", "--out", str(out), "--no-progress"],
                   cwd=REPO, env=env, check=True, capture_output=True)
    assert time.perf_counter() - start < 60.0
    assert out.exists()


@pytest.mark.gpu
def test_cuda_matches_cpu() -> None:
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    w0 = torch.stack([_random_w0(64, s) for s in range(4)])
    f = fno_forcing(64)
    cpu = solve_navier_stokes(w0, 1e-3, [0.5], dt=1e-3, forcing=f)
    gpu = solve_navier_stokes(w0.cuda(), 1e-3, [0.5], dt=1e-3, forcing=f.cuda())
    assert gpu.device.type == "cuda"
    assert torch.allclose(gpu.cpu(), cpu, atol=1e-10 * float(cpu.abs().max()))
