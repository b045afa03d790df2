"""The SOR relaxation factor: Jacobi spectral radii and Young's omega against the closed forms of
the Poisson matrices, Young's omega against the spectral radius of the SOR iteration matrix
computed by brute force, and the omega search against exhaustive scans."""

from __future__ import annotations

import doctest
import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from pdesurrogates.linalg import StencilOperator, gallery, sor
from pdesurrogates.linalg import omega as omega_module
from pdesurrogates.linalg.omega import jacobi_spectral_radius, search_optimal_omega, young_omega
from pdesurrogates.physics.grid import Grid


def _sor_iteration_radius(A: np.ndarray, w: float) -> float:
    """Spectral radius of ``I - (D / w + L)^{-1} A`` (dense eigenvalues)."""
    M = np.diag(np.diag(A)) / w + np.tril(A, -1)
    return float(np.max(np.abs(np.linalg.eigvals(np.eye(len(A)) - np.linalg.solve(M, A)))))


@pytest.mark.parametrize("ndim,n", [(1, 30), (2, 10), (2, 17), (3, 6)])
def test_jacobi_radius_and_young_omega_of_poisson_match_closed_forms(ndim, n):
    A = gallery.poisson(n, ndim)
    h = math.pi / (n + 1)
    beta = jacobi_spectral_radius(A)
    assert abs(beta - math.cos(h)) < 1e-12  # eigenvalues of I - D^-1 A: mean of cos(k_i h)
    assert abs(young_omega(A) - 2.0 / (1.0 + math.sin(h))) < 1e-12
    # the two textbook forms of Young's omega are one number
    assert abs(young_omega(beta=beta) - (1.0 + (beta / (1.0 + math.sqrt(1.0 - beta**2))) ** 2)) < 1e-14


def test_jacobi_radius_of_shifted_laplacians_and_other_formats():
    for c in (-0.15, 0.0, 0.3):  # the paper's stencil (4, -1) on 10 x 10 nodes, shifted
        A = gallery.shifted_laplacian(10, c, format="scipy")
        assert abs(jacobi_spectral_radius(A) - 4 * math.cos(math.pi / 11) / (4 + c)) < 1e-12
    B = gallery.poisson2d(10, scaled=False, format="numpy") + np.diag(np.linspace(0, 0.1, 100))
    ref = jacobi_spectral_radius(B)
    # the non-symmetric path (dense eigenvalues of I - D^-1 A) agrees with the symmetric one
    assert abs(jacobi_spectral_radius(B, symmetric=False) - ref) < 1e-10
    for fmt in (torch.as_tensor(B), torch.as_tensor(B).to_sparse_csr(), sp.csr_matrix(B)):
        assert abs(jacobi_spectral_radius(fmt) - ref) < 1e-13
    # a constant-coefficient stencil operator is a scaled Laplacian: same radius cos(pi h)
    op = StencilOperator(np.full((9, 9), 3.0), Grid((9, 9)))
    assert abs(jacobi_spectral_radius(op) - math.cos(math.pi / 8)) < 1e-12
    # Lanczos above n = 2000 gives the dense answer's closed form
    assert abs(jacobi_spectral_radius(gallery.poisson2d(46)) - math.cos(math.pi / 47)) < 1e-9


def test_young_omega_minimises_the_sor_spectral_radius():
    """Young's theorem, checked by brute force: rho(L_w) is smallest at w* and equals w* - 1."""
    for A in (gallery.poisson2d(6, format="numpy"), gallery.shifted_laplacian(6, 0.4, format="numpy")):
        w_star = young_omega(A)
        ws = np.linspace(1.0, 1.95, 381)
        rho = np.array([_sor_iteration_radius(A, w) for w in ws])
        assert abs(ws[np.argmin(rho)] - w_star) <= ws[1] - ws[0]
        # at w* the SOR matrix has a Jordan block, so its computed eigenvalues carry ~sqrt(eps)
        assert abs(_sor_iteration_radius(A, w_star) - (w_star - 1.0)) < 1e-5
        assert rho.min() >= (w_star - 1.0) - 1e-5


def test_young_omega_arrays_and_bad_input():
    betas = np.array([0.0, 0.5, 0.9, 0.99])
    np.testing.assert_allclose(young_omega(beta=betas), 2 / (1 + np.sqrt(1 - betas**2)), rtol=1e-15)
    assert isinstance(young_omega(beta=0.3), float)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        young_omega(beta=1.0)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        young_omega(beta=[0.2, -0.1])
    with pytest.raises(ValueError, match="exactly one"):
        young_omega()
    with pytest.raises(ValueError, match="exactly one"):
        young_omega(np.eye(2), beta=0.1)
    with pytest.raises(ValueError, match="zero on its diagonal"):
        jacobi_spectral_radius(np.array([[0.0, 1.0], [1.0, 2.0]]))
    with pytest.raises(ValueError, match="square"):
        jacobi_spectral_radius(np.ones((2, 3)))


def test_search_finds_the_minimum_of_a_smooth_cost():
    grid = np.linspace(1.0, 1.95, 20)
    calls = []

    def cost(w):
        calls.append(len(w))
        return np.abs(w - 1.6180) + 3.0

    res = search_optimal_omega(cost, grid, rounds=40)
    assert abs(res.omega - 1.6180) < 1e-7 and abs(res.cost - 3.0) < 1e-7
    assert res.grid_omega == grid[12] and calls == [20, 2] + [1] * 40 and res.evaluations == 62
    # with the grid's costs given, the grid is not evaluated again and the answer is the same
    calls.clear()
    again = search_optimal_omega(cost, grid, rounds=40, grid_costs=cost(grid))
    assert again.omega == res.omega and calls == [20, 2] + [1] * 40
    # zero rounds: the grid's best; a minimum at the end of the grid stays inside the grid
    assert search_optimal_omega(cost, grid, rounds=0).omega == grid[12]
    edge = search_optimal_omega(lambda w: w, grid, rounds=10)
    assert edge.omega == 1.0 and edge.cost == 1.0


def test_search_on_sor_iteration_counts_against_an_exhaustive_scan():
    A = gallery.poisson2d(8)
    b = np.random.default_rng(0).standard_normal(64)
    grid = np.linspace(1.0, 1.95, 20)

    def iterations(w):
        return np.atleast_1d(sor(A, b, omega=w, rtol=1e-8, maxiter=5000).iterations)

    res = search_optimal_omega(iterations, grid, rounds=8)
    i = int(np.argmin(iterations(grid)))
    assert res.cost <= res.grid_cost and res.grid_omega == grid[i]
    assert grid[max(i - 1, 0)] <= res.omega <= grid[min(i + 1, 19)]
    fine = np.linspace(grid[max(i - 1, 0)], grid[min(i + 1, 19)], 401)
    scan = iterations(fine)
    assert scan.min() <= res.cost <= scan.min() + 1  # integer costs: within one iteration
    assert int(iterations(np.array([res.omega]))[0]) == res.cost


def test_search_bad_input():
    grid = np.linspace(1.0, 1.9, 4)
    with pytest.raises(ValueError, match="increasing"):
        search_optimal_omega(lambda w: w, grid[::-1])
    with pytest.raises(ValueError, match="returned 1 values for 4"):
        search_optimal_omega(lambda w: np.ones(1), grid)
    with pytest.raises(ValueError, match="non-finite"):
        search_optimal_omega(lambda w: w * np.nan, grid)
    with pytest.raises(ValueError, match="grid_costs has 3 values"):
        search_optimal_omega(lambda w: w, grid, grid_costs=[1, 2, 3])
    with pytest.raises(ValueError, match="rounds"):
        search_optimal_omega(lambda w: w, grid, rounds=-1)


def test_docstring_examples():
    result = doctest.testmod(omega_module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0
