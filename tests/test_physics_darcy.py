"""Darcy: manufactured solution with a variable coefficient (order 2), FNO-setting samples."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pdesurrogates.physics.darcy import darcy_system, downsample, sample_coefficient, solve_darcy
from pdesurrogates.physics.grid import Grid
from pdesurrogates.physics.operators import apply_diffusion
from pdesurrogates.physics.random import sample_generator


def _manufactured(n):
    grid = Grid((n, n))
    x, y = grid.mesh()
    pi = math.pi
    a = 2.0 + np.sin(2 * pi * x) * np.cos(pi * y)
    ax = 2 * pi * np.cos(2 * pi * x) * np.cos(pi * y)
    ay = -pi * np.sin(2 * pi * x) * np.sin(pi * y)
    u = np.sin(pi * x) * np.sin(pi * y)
    ux = pi * np.cos(pi * x) * np.sin(pi * y)
    uy = pi * np.sin(pi * x) * np.cos(pi * y)
    lap = -2 * pi**2 * u
    f = -(ax * ux + ay * uy + a * lap)
    return grid, a, u, f


@pytest.mark.parametrize("solver", ["direct", "amg"])
def test_manufactured_solution_second_order(solver) -> None:
    hs, errors = [], []
    for n in (17, 33, 65, 129):
        grid, a, exact, f = _manufactured(n)
        u = solve_darcy(a, f, solver=solver)
        errors.append(np.abs(u - exact).max())
        hs.append(grid.spacing[0])
    slope = np.polyfit(np.log(hs), np.log(errors), 1)[0]
    assert abs(slope - 2.0) < 0.2, errors


def test_reference_solution_has_zero_matrix_free_residual() -> None:
    a = sample_coefficient(33, sample_generator(0, 0))
    u = solve_darcy(a)
    res = apply_diffusion(torch.as_tensor(a), torch.as_tensor(u), Grid((33, 33))) - 1.0
    assert float(res.abs().max()) < 1e-9
    A, b = darcy_system(a)
    assert A.shape == (31 * 31, 31 * 31) and np.allclose(b, 1.0)


def test_fno_coefficient_two_values_and_lognormal() -> None:
    a = sample_coefficient(64, sample_generator(5, 2))
    assert set(np.unique(a)) == {3.0, 12.0}
    assert 0.2 < (a == 12.0).mean() < 0.8
    assert np.array_equal(a, sample_coefficient(64, sample_generator(5, 2)))
    b = sample_coefficient(16, sample_generator(5, 2), kind="lognormal")
    assert np.all(b > 0) and len(np.unique(b)) > 100
    with pytest.raises(ValueError, match="threshold, lognormal"):
        sample_coefficient(16, sample_generator(0, 0), kind="binary")


def test_downsampled_views_match_coarse_nodes() -> None:
    u = np.arange(421 * 421, dtype=float).reshape(421, 421)
    for stride, s in zip((2, 3, 4, 5), (211, 141, 106, 85)):
        v = downsample(u, stride)
        assert v.shape == (s, s) and v[-1, -1] == u[-1, -1] and v[1, 1] == u[stride, stride]
    with pytest.raises(ValueError, match="stride 8"):
        downsample(u, 8)


def test_coefficient_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        solve_darcy(np.zeros((9, 9)))


@pytest.mark.slow
def test_fno_resolution_421_and_its_views() -> None:
    """A 421-node FNO sample: zero matrix-free residual, and the paper's 211/141/106/85 views."""
    from pdesurrogates.physics.problems import get_problem

    fine = get_problem("darcy", resolution=421)
    x, y = fine.generate([0], seed=0)
    a = x[0, 0].astype(np.float64)  # the two values 3 and 12 are exact in float32
    u = solve_darcy(a)
    res = apply_diffusion(torch.as_tensor(a), torch.as_tensor(u), Grid((421, 421))) - 1.0
    assert float(res.abs().max()) < 1e-7
    assert np.abs(y[0, 0] - u).max() < 1e-6 * np.abs(u).max()  # stored = float64 solve, rounded
    for s in (211, 141, 106, 85):
        xs, ys = get_problem("darcy", resolution=s, solver_resolution=421).generate([0], seed=0)
        stride = 420 // (s - 1)
        assert np.array_equal(xs[0, 0], x[0, 0, ::stride, ::stride])
        assert np.array_equal(ys[0, 0], y[0, 0, ::stride, ::stride])
