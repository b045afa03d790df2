"""Crank–Nicolson heat sequence against exact solutions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse.linalg as spla

from pdesurrogates.physics.heat import HeatSequence, KhodakDiffusivity


def _c(t):
    return 1.0 + 0.5 * math.sin(2 * math.pi * t)


def _int_c(t):
    return t + 0.5 * (1.0 - math.cos(2 * math.pi * t)) / (2 * math.pi)


def _mode(x, y):
    return np.sin(math.pi * x) * np.sin(math.pi * y)


def _no_forcing(x, y, t):
    return 0.0 * x


def _fitted_slope(hs, errors):
    return np.polyfit(np.log(hs), np.log(errors), 1)[0]


def test_crank_nicolson_is_second_order_in_time() -> None:
    """Against the exact semi-discrete solution: sin(pi x) sin(pi y) is an eigenvector of L_h."""
    n, T = 15, 0.2
    h = 1.0 / (n + 1)
    mu = 2 * (4 / h**2) * math.sin(math.pi * h / 2) ** 2
    dts, errors = [0.02, 0.01, 0.005, 0.0025], []
    for dt in dts:
        seq = HeatSequence(n, dt=dt, steps=round(T / dt), diffusivity=_c, forcing=_no_forcing, u0=_mode)
        u = seq.solve_all()
        exact = _mode(seq.x, seq.y) * math.exp(-mu * _int_c(T))
        errors.append(np.max(np.abs(u - exact)))
    slope = _fitted_slope(dts, errors)
    assert abs(slope - 2.0) < 0.2, (slope, errors)


def test_forced_solution_matches_manufactured_semidiscrete_solution() -> None:
    """u = g(t) sin sin with f = (g' + mu_h c g) sin sin: the forcing path is second order too."""
    n, T = 11, 0.3
    h = 1.0 / (n + 1)
    mu = 2 * (4 / h**2) * math.sin(math.pi * h / 2) ** 2
    g = lambda t: math.cos(3 * t) + 2.0
    dg = lambda t: -3 * math.sin(3 * t)

    def forcing(x, y, t):
        return (dg(t) + mu * _c(t) * g(t)) * _mode(x, y)

    errors, dts = [], [0.03, 0.015, 0.0075]
    for dt in dts:
        seq = HeatSequence(n, dt=dt, steps=round(T / dt), diffusivity=_c, forcing=forcing,
                           u0=lambda x, y: g(0.0) * _mode(x, y))
        errors.append(np.max(np.abs(seq.solve_all() - g(T) * _mode(seq.x, seq.y))))
    assert abs(_fitted_slope(dts, errors) - 2.0) < 0.2, errors


def test_continuum_solution_second_order_in_space() -> None:
    """With dt ~ h the full CN solution converges to the PDE's exact solution at order 2."""
    T, errors, hs = 0.125, [], []
    for n in (7, 15, 31):
        h = 1.0 / (n + 1)
        seq = HeatSequence(n, dt=h / 4, steps=round(4 * T / h), diffusivity=_c, forcing=_no_forcing, u0=_mode)
        exact = _mode(seq.x, seq.y) * math.exp(-2 * math.pi**2 * _int_c(T))
        errors.append(np.max(np.abs(seq.solve_all() - exact)))
        hs.append(h)
    assert abs(_fitted_slope(hs, errors) - 2.0) < 0.2, errors


def test_steps_are_spd_with_context_and_must_be_advanced() -> None:
    seq = HeatSequence(6, dt=0.05, steps=4)
    contexts = []
    for step in seq:
        A = step.A.toarray()
        assert np.allclose(A, A.T) and np.linalg.eigvalsh(A).min() > 0.99
        expected = np.eye(36) + 0.5 * 0.05 * step.context * seq.laplacian.toarray()
        assert np.allclose(A, expected)
        contexts.append(step.context)
        A_t, b_t, c_t = step
        assert A_t is step.A and b_t is step.b and c_t == step.context
        seq.advance(spla.spsolve(step.A.tocsc(), step.b))
    assert contexts == [KhodakDiffusivity()(0.05 * k) for k in range(1, 5)]
    assert min(contexts) >= 1e-3
    seq2 = HeatSequence(4, dt=0.1, steps=3)
    it = iter(seq2)
    next(it)
    with pytest.raises(RuntimeError, match="advance"):
        next(it)


def test_negative_diffusivity_refused() -> None:
    seq = HeatSequence(4, dt=0.1, steps=2, diffusivity=lambda t: -1.0)
    with pytest.raises(ValueError, match="ill-posed"):
        next(iter(seq))
    with pytest.raises(ValueError, match="dt"):
        HeatSequence(4, dt=0.0)
