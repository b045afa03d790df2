"""Burgers against the exact Cole–Hopf solution for a sine initial condition."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from scipy.special import ive

from pdesurrogates.physics.burgers import solve_burgers


def cole_hopf_sine(x: np.ndarray, t: float, nu: float, amplitude: float = 1.0, terms: int = 60):
    """Exact solution for u0 = A sin(2 pi x) on [0, 1): u = -2 nu phi_x / phi with
    phi = I0(beta) + 2 sum_m I_m(beta) exp(-nu (2 pi m)^2 t) cos(2 pi m x), beta = A / (4 pi nu)
    (the generating function exp(beta cos z) = I0 + 2 sum I_m cos(m z))."""
    beta = amplitude / (4 * math.pi * nu)
    m = np.arange(1, terms + 1)[:, None]
    decay = np.exp(-nu * (2 * math.pi * m) ** 2 * t) * ive(m, beta)  # exp(-beta) scaling cancels
    phi = ive(0, beta) + 2 * np.sum(decay * np.cos(2 * math.pi * m * x), axis=0)
    phi_x = -2 * np.sum(decay * 2 * math.pi * m * np.sin(2 * math.pi * m * x), axis=0)
    return -2 * nu * phi_x / phi


@pytest.mark.parametrize("nu,sizes", [(0.1, (8, 16, 32)), (0.02, (16, 32, 64, 128))])
def test_matches_cole_hopf_spectrally(nu, sizes) -> None:
    times = [0.1, 0.5]
    errors = []
    for n in sizes:
        x = np.arange(n) / n
        u0 = torch.as_tensor(np.sin(2 * math.pi * x))
        u = solve_burgers(torch.stack([u0, u0]), nu, times, dt=2e-4 if nu < 0.05 else 1e-3)
        assert u.shape == (2, 2, n)
        exact = np.stack([cole_hopf_sine(x, t, nu) for t in times])
        errors.append(float(np.abs(u[1].numpy() - exact).max()))
    # spectral: the error falls faster than any power; below 1e-6 at a modest grid
    assert errors[-1] < 1e-6, errors
    rates = [math.log2(errors[i] / errors[i + 1]) for i in range(len(errors) - 1)]
    assert all(b > a + 1.0 for a, b in itertools.pairwise(rates)), errors  # growing rate: not algebraic


def test_cfl_violating_dt_and_bad_nu_refused() -> None:
    u0 = torch.sin(2 * math.pi * torch.arange(256) / 256) * 10
    with pytest.raises(ValueError, match="CFL"):
        solve_burgers(u0, 0.1, [0.1], dt=0.1)
    with pytest.raises(ValueError, match="nu must be > 0"):
        solve_burgers(u0, 0.0, [0.1])
