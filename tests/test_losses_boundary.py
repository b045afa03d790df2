"""Boundary and initial-condition terms and the hard zero-Dirichlet output."""

from __future__ import annotations

import math

import pytest
import torch

from pdesurrogates.losses import (
    ZeroDirichletOutput,
    bump,
    dirichlet_boundary_loss,
    initial_condition_loss,
)
from pdesurrogates.losses.boundary import boundary_values


def test_boundary_values_count_and_rms():
    u = torch.zeros(2, 1, 5, 7)
    u[..., 0, :] = 3.0  # one side of 7 nodes of the 2 * 5 + 2 * 7 - 4 = 20 boundary nodes
    assert boundary_values(u, 2).shape == (2, 1, 20)
    assert float(dirichlet_boundary_loss(u)) == pytest.approx(math.sqrt(9 * 7 / 20))
    assert float(dirichlet_boundary_loss(u + 1.0, 1.0)) == pytest.approx(math.sqrt(9 * 7 / 20))
    with pytest.raises(ValueError, match="NaN"):
        dirichlet_boundary_loss(u * float("nan"))


def test_initial_condition_loss():
    u0 = torch.ones(3, 16)
    assert float(initial_condition_loss(1.2 * u0, u0)) == pytest.approx(0.2)
    with pytest.raises(ValueError, match="u0"):
        initial_condition_loss(u0[:, :8], u0)


def test_bump_is_zero_on_the_boundary_and_one_in_the_middle():
    b = bump((5, 9), dtype=torch.float64)
    assert float(boundary_values(b, 2).abs().max()) == 0.0
    assert float(b[2, 4]) == 1.0 and float(b.max()) == 1.0


def test_zero_dirichlet_output_keeps_the_interior_in_pad_mode():
    net = torch.nn.Identity()
    x = torch.rand(1, 1, 6, 6, dtype=torch.float64)
    y = ZeroDirichletOutput(net, "pad")(x)
    assert torch.equal(y[..., 1:-1, 1:-1], x[..., 1:-1, 1:-1]) and float(boundary_values(y, 2).abs().max()) == 0.0
    y = ZeroDirichletOutput(net, "bump", spatial_dims=1)(x[:, :, 0])
    assert float(y[..., 0]) == 0.0 and float(y[..., -1]) == 0.0
