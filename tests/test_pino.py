"""PINO helpers: physics-only training and instance-wise fine-tuning against the Darcy solver."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pdesurrogates.losses import DarcyLoss, LossConfig, ZeroDirichletOutput, build_loss, relative_lp
from pdesurrogates.models import FNOConfig, build
from pdesurrogates.physics.darcy import sample_coefficient, solve_darcy
from pdesurrogates.physics.random import sample_generator
from pdesurrogates.train.pino import finetune_instance, train_physics_only, train_pino


def darcy_set(n, seed, s=33, **coefficient):
    a = np.stack([sample_coefficient(s, sample_generator(seed, i), **coefficient) for i in range(n)])
    u = np.stack([solve_darcy(ai) for ai in a])
    return torch.tensor(a, dtype=torch.float32)[:, None], torch.tensor(u, dtype=torch.float32)[:, None]


class Scaled(torch.nn.Module):
    """Normalise the coefficient (values 3..12) and scale the output to the O(0.05) pressure."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, a):
        return 0.1 * self.model((a - 7.5) / 4.5)


def darcy_model(seed, width=16, modes=8):
    torch.manual_seed(seed)  # parameter init of the library model; tests only
    return ZeroDirichletOutput(Scaled(build(FNOConfig(width=width, modes=modes, n_layers=4))), mode="bump")


def test_zero_dirichlet_output_modes():
    model = torch.nn.Conv2d(1, 1, 1)
    x = torch.randn(2, 1, 9, 9)
    for mode in ("bump", "pad"):
        with torch.no_grad():
            y = ZeroDirichletOutput(model, mode)(x)
        assert y.shape == x.shape and float(y[..., 0, :].abs().max() + y[..., :, -1].abs().max()) == 0.0
    with pytest.raises(ValueError, match="bump, pad"):
        ZeroDirichletOutput(model, "mask")


def test_finetune_instance_copies_and_lowers_the_residual():
    model = darcy_model(0)
    a, u = darcy_set(1, seed=5)
    before = [p.detach().clone() for p in model.parameters()]
    res = finetune_instance(model, a, DarcyLoss(norm="h-1"), steps=30, lr=1e-3, reference=u, record_every=10)
    assert all(torch.equal(p, q) for p, q in zip(before, model.parameters()))  # the original is untouched
    assert len(res.physics) == len(res.error) == 4
    assert res.physics[-1] < 0.5 * res.physics[0]
    assert res.prediction.shape == u.shape
    with pytest.raises(ValueError, match="single instance"):
        finetune_instance(model, a.expand(2, 1, 33, 33), DarcyLoss(), steps=1)


def test_finetuning_halves_the_error_out_of_distribution():
    # train briefly on the FNO coefficient (12 / 3), then meet a contrast of 12 / 1 it never saw
    a, u = darcy_set(32, seed=0)
    model = darcy_model(0)
    train_pino(model, a, u, build_loss(LossConfig(data="l2")), epochs=12, batch_size=8, lr=3e-3, seed=0)
    a_ood, u_ood = darcy_set(1, seed=1, low=1.0)
    with torch.no_grad():
        err0 = float(relative_lp(model(a_ood), u_ood))
    res = finetune_instance(model, a_ood, DarcyLoss(norm="h-1"), steps=150, lr=1e-3, reference=u_ood,
                            record_every=50)
    err1 = float(relative_lp(res.prediction, u_ood))
    assert res.error[0] == pytest.approx(err0, rel=1e-5)
    print(f"OOD fine-tuning: error {err0:.4f} -> {err1:.4f}")
    assert err1 <= 0.5 * err0, (err0, err1)


@pytest.mark.slow
def test_physics_only_training_reaches_ten_percent_on_darcy_32():
    # 33 x 33 nodes (32 x 32 cells), no solution labels; held-out inputs judged against the solver
    a, u = darcy_set(96 + 16, seed=0)
    model = darcy_model(0, width=24, modes=12)
    hist = train_physics_only(model, a[:96], DarcyLoss(norm="h-1"), epochs=60, batch_size=8, lr=3e-3, seed=0)
    with torch.no_grad():
        err = float(relative_lp(model(a[96:]), u[96:]))
    assert hist.loss[-1] < hist.loss[0] / 5
    print(f"physics-only Darcy 33x33: held-out relative L2 {err:.4f} after {hist.seconds:.0f} s")
    assert err <= 0.1, err
