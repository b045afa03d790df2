"""End-to-end on neuraloperator's small Darcy data: training works and FNO is discretization invariant."""

from __future__ import annotations

import torch

from pdesurrogates.models import FNOConfig, MgNOConfig, build


def _load(folder, name):
    data = torch.load(folder / name, weights_only=True)
    return data["x"].float().unsqueeze(1), data["y"].float().unsqueeze(1)


def _relative_l2(pred, y):
    return ((pred - y).flatten(1).norm(dim=1) / y.flatten(1).norm(dim=1)).mean().item()


def _train(model, x, y, *, epochs, lr, seed=0, batch_size=32):
    """Relative-L2 training on outputs scaled by the training mean/std; returns the scaled predictor."""
    mean, std = y.mean(), y.std()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), batch_size):
            idx = perm[i: i + batch_size]
            loss = ((model(x[idx]) * std + mean - y[idx]).flatten(1).norm(dim=1)
                    / y[idx].flatten(1).norm(dim=1)).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
    model.eval()
    return lambda inp: model(inp) * std + mean


def test_fno_zero_shot_super_resolution(neuralop_small):
    """Trained at 16x16, the FNO's error at 32x32 (never seen) is within 1.5x of its 16x16 error,
    and both are far below the error of predicting the training mean."""
    torch.manual_seed(0)
    x, y = _load(neuralop_small, "darcy_train_16.pt")
    x16, y16 = _load(neuralop_small, "darcy_test_16.pt")
    x32, y32 = _load(neuralop_small, "darcy_test_32.pt")
    assert x32.shape[-2:] == (32, 32)
    predict = _train(build(FNOConfig(width=16, modes=8)), x, y, epochs=6, lr=8e-3)
    with torch.no_grad():
        err16, err32 = _relative_l2(predict(x16), y16), _relative_l2(predict(x32), y32)
    baseline = _relative_l2(y.mean(0, keepdim=True).expand_as(y16), y16)
    assert err16 < 0.4 * baseline, (err16, baseline)
    print(f"FNO relative L2: {err16:.4f} at 16x16, {err32:.4f} at 32x32 (mean predictor {baseline:.4f})")
    assert err32 < 1.5 * err16, (err16, err32)


def test_mgno_learns_darcy(neuralop_small):
    """A small MgNO trained for a few epochs beats the mean predictor by a wide margin."""
    torch.manual_seed(0)
    x, y = _load(neuralop_small, "darcy_train_16.pt")
    x16, y16 = _load(neuralop_small, "darcy_test_16.pt")
    predict = _train(build(MgNOConfig(width=12, n_layers=3, levels=3)), x[:500], y[:500], epochs=4, lr=3e-3)
    with torch.no_grad():
        err = _relative_l2(predict(x16), y16)
    baseline = _relative_l2(y.mean(0, keepdim=True).expand_as(y16), y16)
    assert err < 0.5 * baseline, (err, baseline)
