"""Poisson (Dirichlet/Neumann, 1D-3D) against manufactured solutions: fitted order 2."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pdesurrogates.physics.grid import Grid
from pdesurrogates.physics.poisson import poisson_residual, solve_poisson


def _slope(hs, errors):
    return np.polyfit(np.log(hs), np.log(errors), 1)[0]


def _dirichlet_case(grid):
    """u = exp(x) sin(pi y) (+ z-factor): nonzero boundary values in x, -Lap u = (pi^2 - 1) u."""
    mesh = grid.mesh()
    u = np.exp(mesh[0]) * np.sin(math.pi * mesh[1])
    lam = math.pi**2 - 1.0
    if grid.ndim == 3:
        u = u * np.cos(mesh[2])
        lam += 1.0
    return u, lam * u


@pytest.mark.parametrize("ndim,sizes", [(2, (9, 17, 33, 65)), (3, (5, 9, 17))])
def test_dirichlet_manufactured_solution_second_order(ndim, sizes) -> None:
    hs, errors = [], []
    for n in sizes:
        grid = Grid((n,) * ndim)
        exact, f = _dirichlet_case(grid)
        u = solve_poisson(f, grid, boundary_values=exact)
        assert poisson_residual(u, f, grid) < 1e-8 * np.abs(f).max()
        errors.append(np.abs(u - exact).max())
        hs.append(grid.spacing[0])
    assert abs(_slope(hs, errors) - 2.0) < 0.2, errors


@pytest.mark.parametrize("ndim,sizes", [(1, (9, 17, 33, 65)), (2, (9, 17, 33, 65)), (3, (5, 9, 17))])
def test_neumann_manufactured_solution_second_order(ndim, sizes) -> None:
    """u = prod cos(pi x_d) + x-only term: du/dn = 0, zero mean."""
    hs, errors = [], []
    for n in sizes:
        grid = Grid((n,) * ndim, boundary="neumann")
        mesh = grid.mesh()
        exact = np.prod([np.cos(math.pi * x) for x in mesh], axis=0) + np.cos(2 * math.pi * mesh[0])
        f = ndim * math.pi**2 * np.prod([np.cos(math.pi * x) for x in mesh], axis=0) \
            + 4 * math.pi**2 * np.cos(2 * math.pi * mesh[0])
        u = solve_poisson(f + 5.0, grid)  # an incompatible constant is projected away
        errors.append(np.abs(u - exact).max())
        hs.append(grid.spacing[0])
    assert abs(_slope(hs, errors) - 2.0) < 0.2, errors


def test_neumann_compatibility_raise() -> None:
    grid = Grid((9, 9), boundary="neumann")
    with pytest.raises(ValueError, match="zero-mean"):
        solve_poisson(np.ones((9, 9)), grid, compatibility="raise")
    u = solve_poisson(np.zeros((9, 9)), grid, compatibility="raise")
    assert np.abs(u).max() == 0.0


def test_bad_shapes() -> None:
    with pytest.raises(ValueError, match="grid needs"):
        solve_poisson(np.ones((5, 6)), Grid((5, 5)))
