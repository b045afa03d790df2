"""2D Navier–Stokes: Taylor–Green decay, steady Kolmogorov flow, time order, invariants."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pdesurrogates.physics import spectral
from pdesurrogates.physics.navier_stokes import (
    enstrophy,
    fno_forcing,
    kinetic_energy,
    solve_navier_stokes,
    velocity_from_vorticity,
)
from pdesurrogates.physics.random import gaussian_random_field, sample_generator


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
