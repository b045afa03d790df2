"""Data losses: relative Lp / H1 against neuraloperator and closed forms."""

from __future__ import annotations

import math

import pytest
import torch

from pdesurrogates.losses import RelativeH1Loss, RelativeLpLoss, relative_h1, relative_lp


def test_relative_l2_matches_neuralop():
    from neuralop.losses import LpLoss

    g = torch.Generator().manual_seed(0)
    y = torch.randn(4, 1, 16, 16, generator=g, dtype=torch.float64)
    p = y + 0.1 * torch.randn(4, 1, 16, 16, generator=g, dtype=torch.float64)
    ref = LpLoss(d=2, p=2, reduction="mean", eps=0.0)(p, y)
    assert float(relative_lp(p, y)) == pytest.approx(float(ref), rel=1e-12)


def test_relative_lp_per_channel_and_reductions():
    y = torch.ones(3, 2, 8, 8)
    p = y.clone()
    p[:, 0] *= 1.5  # channel 0: error 0.5, channel 1: exact
    assert relative_lp(p, y, per_channel=True).tolist() == pytest.approx([0.5, 0.0])
    assert float(relative_lp(p, y)) == pytest.approx(0.25)
    assert relative_lp(p, y, reduction="none").shape == (3, 2)
    assert float(relative_lp(p, y, reduction="sum")) == pytest.approx(0.75)
    assert float(relative_lp(p, y, p=1)) == pytest.approx(0.25)
    assert float(RelativeLpLoss()(p, y)) == pytest.approx(0.25)


def test_relative_h1_closed_form_periodic():
    # u = sin(2 pi x), e = eps sin(2 pi k x): ||e||_H1 / ||u||_H1 = eps sqrt(1 + (2 pi k)^2) / sqrt(1 + (2 pi)^2)
    n, k, eps = 512, 3, 1e-2
    x = torch.arange(n, dtype=torch.float64) / n
    u = torch.sin(2 * math.pi * x)[None, None]
    p = u + eps * torch.sin(2 * math.pi * k * x)[None, None]
    exact = eps * math.sqrt(1 + (2 * math.pi * k) ** 2) / math.sqrt(1 + (2 * math.pi) ** 2)
    got = float(relative_h1(p, u, periodic=True))
    assert got == pytest.approx(exact, rel=2e-3)  # central differences: O(h^2) in the derivative
    assert float(RelativeH1Loss(periodic=True)(p, u)) == pytest.approx(got)


def test_relative_h1_nonperiodic_uses_gradient_of_linear_exactly():
    # on a Dirichlet-type node grid, torch.gradient is exact for linear functions
    x = torch.linspace(0, 1, 33, dtype=torch.float64)
    u = (1 + x)[None, None].expand(1, 1, 33)
    p = u + 0.1 * x  # e = 0.1 x: ||e||^2 ~ 0.01 * sum x^2 + 0.01 * n
    e = 0.1 * x
    exact = math.sqrt(float((e**2).sum() + 0.01 * 33)) / math.sqrt(float(((1 + x) ** 2).sum() + 33))
    assert float(relative_h1(p, u)) == pytest.approx(exact, rel=1e-12)


def test_bad_input():
    with pytest.raises(ValueError, match="differ"):
        relative_lp(torch.zeros(2, 1, 8), torch.zeros(2, 1, 9))
    with pytest.raises(ValueError, match="reduction"):
        relative_lp(torch.zeros(2, 1, 8), torch.ones(2, 1, 8), reduction="avg")
    with pytest.raises(ValueError, match="spacings"):
        relative_h1(torch.zeros(2, 1, 8, 8), torch.ones(2, 1, 8, 8), spacing=[0.1])
