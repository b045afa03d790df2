"""Darcy: manufactured solution with a variable coefficient (order 2), FNO-setting samples."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pdesurrogates.physics.darcy import (
    darcy_system,
    downsample,
    sample_coefficient,
    solve_darcy,
    solve_darcy_batch,
)
from pdesurrogates.physics.grid import Grid
from pdesurrogates.physics.operators import apply_diffusion
from pdesurrogates.physics.problems import get_problem
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


@pytest.mark.parametrize("solver", ["direct", "amg", "cg"])
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


def test_batched_cg_matches_the_direct_solve_on_cpu() -> None:
    """The device path (batched Jacobi-PCG, here on the CPU) against SciPy's sparse LU."""
    a = np.stack([sample_coefficient(49, sample_generator(0, i)) for i in range(3)])
    a[2] = sample_coefficient(49, sample_generator(0, 2), kind="lognormal")
    direct = np.stack([solve_darcy(x) for x in a])
    batched = solve_darcy_batch(torch.from_numpy(a)).numpy()
    for i in range(3):
        A, b = darcy_system(a[i])
        residual = np.linalg.norm(b - A @ batched[i, 1:-1, 1:-1].ravel()) / np.linalg.norm(b)
        assert residual <= 1e-10  # the solver tolerance, in the direct solver's matrix
        assert np.abs(batched[i] - direct[i]).max() <= 1e-8 * np.abs(direct[i]).max()
    # the generator's "cg" solver: same coefficients, solutions equal to float32 round-off
    x_cg, y_cg = get_problem("darcy", resolution=25, solver_resolution=49, solver="cg").generate(
        [0, 1, 2], seed=0, device="cpu")
    x_lu, y_lu = get_problem("darcy", resolution=25, solver_resolution=49).generate([0, 1, 2], seed=0)
    assert np.array_equal(x_cg, x_lu)
    assert np.abs(y_cg - y_lu).max() <= 1e-6 * np.abs(y_lu).max()


def test_batched_cg_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match="positive"):
        solve_darcy_batch(-torch.ones(1, 9, 9, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"\(B, s, s\)"):
        solve_darcy_batch(torch.ones(9, 9, dtype=torch.float64))
    with pytest.raises(RuntimeError, match="did not reach"):
        solve_darcy_batch(torch.ones(2, 33, 33, dtype=torch.float64), maxiter=3)


@pytest.mark.gpu
def test_cuda_batched_cg_matches_cpu_direct() -> None:
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    p = get_problem("darcy", resolution=65)
    x_gpu, y_gpu = get_problem("darcy", resolution=65, solver="cg").generate(range(8), seed=0, device="cuda")
    x_cpu, y_cpu = p.generate(range(8), seed=0)
    assert np.array_equal(x_gpu, x_cpu)
    assert np.abs(y_gpu - y_cpu).max() <= 1e-6 * np.abs(y_cpu).max()
