"""Surrogate vs solver at equal accuracy: the solver's error curve and its interpolation."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from pdesurrogates.bench.suites.surrogate_vs_solver import (
    equal_accuracy,
    nested_stride,
    solver_curve,
    to_grid,
)


def test_equal_accuracy_interpolates_log_log_and_flags_bounds():
    curve = [{"resolution": 9, "l2_output": 0.08, "seconds": 1e-4},
             {"resolution": 17, "l2_output": 0.02, "seconds": 1e-3},
             {"resolution": 33, "l2_output": 0.005, "seconds": 8e-3}]
    # error = h^2 with h ~ 1/(r-1)-ish: halfway in log error between 17 and 33 is sqrt(17 * 33)
    eq = equal_accuracy(curve, 0.01)
    assert eq["bound"] == "" and eq["resolution"] == pytest.approx(math.sqrt(17 * 33))
    assert eq["seconds"] == pytest.approx(math.sqrt(1e-3 * 8e-3))
    assert equal_accuracy(curve, 0.02)["resolution"] == pytest.approx(17)
    assert equal_accuracy(curve, 0.5) == {"resolution": 9, "seconds": 1e-4, "bound": "coarsest"}
    assert equal_accuracy(curve, 1e-3) == {"resolution": 33, "seconds": 8e-3, "bound": "finest"}


def test_nested_grids_and_bilinear_transfer_are_exact_on_bilinear_fields():
    assert nested_stride(65, 17) == 4 and nested_stride(421, 85) == 5
    with pytest.raises(ValueError, match="not nested"):
        nested_stride(65, 16)
    x = torch.linspace(0, 1, 5, dtype=torch.float64)
    u = (1 + 2 * x[:, None] + 3 * x[None, :] + x[:, None] * x[None, :])[None, None]
    fine = torch.linspace(0, 1, 17, dtype=torch.float64)
    exact = 1 + 2 * fine[:, None] + 3 * fine[None, :] + fine[:, None] * fine[None, :]
    torch.testing.assert_close(to_grid(u, 17)[0, 0], exact)


def test_solver_error_falls_at_second_order_against_the_fine_solve():
    """On a smooth coefficient the coarse solves converge to the 65-point one at order about 2."""
    from pdesurrogates.physics.darcy import solve_darcy

    n = 65
    x = torch.linspace(0, 1, n, dtype=torch.float64)
    a = (1.5 + torch.sin(2 * math.pi * x)[:, None] * torch.cos(2 * math.pi * x)[None, :])[None, None]
    u = torch.as_tensor(solve_darcy(a[0, 0].numpy()))[None, None]
    curve = solver_curve(a, u, [9, 17, 33], output_stride=1)
    errs = [c["l2_nodes"] for c in curve]
    orders = [math.log2(e0 / e1) for e0, e1 in itertools.pairwise(errs)]
    assert all(1.6 < p < 2.4 for p in orders), orders  # the reference's own error makes the last one slightly off
    assert all(c["l2_output"] >= c["l2_nodes"] * 0.5 and c["seconds"] > 0 for c in curve)
