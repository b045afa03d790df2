"""Loss weighting schemes and the LossConfig -> build_loss entry point."""

from __future__ import annotations

import math

import pytest
import torch

from pdesurrogates.losses import LossConfig, build_loss
from pdesurrogates.losses.weighting import (
    FixedWeights,
    ReLoBRaLoWeights,
    SoftAdaptWeights,
    make_weighter,
)


def _parts(d, p):
    return {"data": torch.tensor(d, dtype=torch.float64), "physics": torch.tensor(p, dtype=torch.float64)}


def test_fixed_weights():
    total, w = FixedWeights({"data": 5.0})(_parts(0.2, 0.3))
    assert float(total) == pytest.approx(5 * 0.2 + 0.3) and w == {"data": 5.0, "physics": 1.0}


def test_softadapt_follows_the_formula():
    sa = SoftAdaptWeights({"data": 2.0})
    t0, _ = sa(_parts(1.0, 1.0))
    assert float(t0) == pytest.approx(3.0)
    total, w = sa(_parts(0.5, 0.9))  # weighted: data 1.0 (was 2.0), physics 0.9 (was 1.0)
    z = torch.tensor([1.0 / 2.0, 0.9 / 1.0])
    lam = torch.exp(z - z.max())
    expected = float((lam[0] * 1.0 + lam[1] * 0.9) * 2 / lam.sum())
    assert float(total) == pytest.approx(expected, rel=1e-6)
    # the slower-decreasing physics term gets the larger share
    assert w["physics"] > w["data"] / 2.0


def test_relobralo_seeded_and_reproducible():
    def run(seed):
        rl = ReLoBRaLoWeights(seed=seed, beta=0.5)
        out = []
        for k in range(20):
            _total, w = rl(_parts(math.exp(-0.3 * k), math.exp(-0.05 * k)))
            out.append(w["physics"])
        return out

    a, b = run(0), run(0)
    assert a == b
    assert a[-1] > 1.0  # the slower-decreasing physics term is up-weighted
    assert a != run(1)


def test_make_weighter_errors():
    with pytest.raises(ValueError, match="softadapt, relobralo"):
        make_weighter("gradnorm", {})
    with pytest.raises(ValueError, match="differ"):
        rl = ReLoBRaLoWeights()
        rl(_parts(1.0, 1.0))
        rl({"data": torch.tensor(1.0)})


def test_build_loss_darcy_parts_and_physics_only():
    from pdesurrogates.physics.darcy import sample_coefficient, solve_darcy
    from pdesurrogates.physics.random import sample_generator

    a = torch.tensor(sample_coefficient(17, sample_generator(0, 0)))[None, None]
    u = torch.tensor(solve_darcy(a[0, 0].numpy()))[None, None]
    loss = build_loss(LossConfig(data="h1", data_weight=5.0, physics="darcy", boundary_weight=1.0))
    total, parts = loss(u, u, a)
    assert float(total) < 1e-10 and set(parts) >= {"data", "physics", "boundary", "weight/data"}
    pert = u * 1.1
    total, parts = loss(pert, u, a)
    assert float(total) == pytest.approx(5 * float(parts["data"]) + float(parts["physics"]), rel=1e-12)
    # physics-only: no target needed
    loss = build_loss(LossConfig(data="none", physics="darcy", physics_params={"norm": "h-1"}))
    total, parts = loss(pert, None, a)
    assert float(total) == pytest.approx(0.1, rel=1e-10)  # linear PDE: H^-1 residual of 1.1 u* is 0.1 f


def test_loss_config_validation_lists_choices():
    with pytest.raises(ValueError, match="burgers, darcy"):
        LossConfig(physics="wave")
    with pytest.raises(ValueError, match="l2, h1, none"):
        LossConfig(data="l1")
    with pytest.raises(ValueError, match="no loss term"):
        LossConfig(data="none")
    with pytest.raises(ValueError, match="no parameter"):
        build_loss(LossConfig(physics="darcy", physics_params={"nu": 1}))
    with pytest.raises(ValueError, match="needs the inputs"):
        build_loss(LossConfig(physics="darcy"))(torch.zeros(1, 1, 5, 5), torch.ones(1, 1, 5, 5))
    assert LossConfig(physics="burgers", physics_params={"nu": 0.01}).to_dict()["physics_params"] == {"nu": 0.01}
