"""Checkpoints: bit-identical round trips, refusal to overwrite, clear errors on bad files."""

from __future__ import annotations

import json

import pytest
import torch

from pdesurrogates.models import (
    FNOConfig,
    MgNOConfig,
    MGTFNOConfig,
    Surrogate,
    TFNOConfig,
    UNetConfig,
    build,
    load_checkpoint,
    save_checkpoint,
)

CONFIGS = [
    FNOConfig(width=8, modes=6),
    TFNOConfig(width=8, modes=6, ndim=1),
    MgNOConfig(width=6, n_layers=2, levels=3, smoothing=(1, 1, 3)),
    MGTFNOConfig(width=8, modes=4),
    UNetConfig(width=8, depth=2, norm="batch"),
]


def _trained_a_little(cfg):
    """A model whose weights and (BatchNorm) buffers differ from a fresh build."""
    torch.manual_seed(1)
    model = build(cfg)
    x = torch.randn(4, cfg.in_channels, *([16] * cfg.ndim))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(2):
        opt.zero_grad()
        model(x).square().mean().backward()
        opt.step()
    return model.eval(), x


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: c.name)
def test_round_trip_is_bit_identical(tmp_path, cfg):
    model, x = _trained_a_little(cfg)
    path = save_checkpoint(tmp_path / "ckpt", model, cfg, extra={"epochs": 2, "note": "test"})
    ckpt = load_checkpoint(path)
    assert ckpt.config == cfg
    assert ckpt.extra == {"epochs": 2, "note": "test"}
    assert ckpt.normalizers == {}
    assert not ckpt.model.training
    with torch.no_grad():
        assert torch.equal(ckpt.model(x), model(x))
    meta = json.loads((path / "config.json").read_text())
    assert meta["pdesurrogates_version"] and meta["torch_version"] == torch.__version__
    surrogate = Surrogate.load(path)
    assert torch.equal(surrogate(x), ckpt.model(x))
    assert torch.equal(surrogate(x[0]), ckpt.model(x[:1])[0])  # single sample without batch axis


def test_refuses_to_overwrite(tmp_path):
    cfg = MgNOConfig(width=4, n_layers=1, levels=2)
    model = build(cfg)
    path = save_checkpoint(tmp_path / "ckpt", model, cfg)
    with pytest.raises(FileExistsError, match="already exists; pass overwrite=True"):
        save_checkpoint(path, model, cfg)
    other = build(cfg)
    save_checkpoint(path, other, cfg, overwrite=True)
    x = torch.randn(1, 1, 8, 8)
    assert torch.equal(load_checkpoint(path).model(x), other(x))
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "keep.txt").write_text("precious")
    with pytest.raises(FileExistsError, match="not a checkpoint directory"):
        save_checkpoint(tmp_path / "data", model, cfg, overwrite=True)
    assert (tmp_path / "data" / "keep.txt").read_text() == "precious"


def test_weights_of_another_architecture(tmp_path):
    fno_cfg, mgno_cfg = FNOConfig(width=8, modes=6), MgNOConfig(width=6, n_layers=2, levels=3)
    with pytest.raises(ValueError, match="do not match a 'fno' model"):
        save_checkpoint(tmp_path / "bad", build(mgno_cfg), fno_cfg)
    assert not (tmp_path / "bad").exists()
    a = save_checkpoint(tmp_path / "a", build(fno_cfg), fno_cfg)
    b = save_checkpoint(tmp_path / "b", build(mgno_cfg), mgno_cfg)
    (a / "weights.pt").write_bytes((b / "weights.pt").read_bytes())
    with pytest.raises(ValueError, match=r"weights.pt do not match a 'fno' model.*missing \d+ tensors"):
        load_checkpoint(a)
    # same architecture, other sizes
    c = save_checkpoint(tmp_path / "c", build(FNOConfig(width=4, modes=6)), FNOConfig(width=4, modes=6))
    (c / "weights.pt").write_bytes((tmp_path / "a" / "weights.pt").read_bytes())
    # a's weights are now the MgNO ones; put FNO width-8 weights in c instead
    save_checkpoint(tmp_path / "d", build(fno_cfg), fno_cfg)
    (c / "weights.pt").write_bytes((tmp_path / "d" / "weights.pt").read_bytes())
    with pytest.raises(ValueError, match="shape mismatches"):
        load_checkpoint(c)


def test_corrupt_and_missing_files(tmp_path):
    cfg = MgNOConfig(width=4, n_layers=1, levels=2)
    path = save_checkpoint(tmp_path / "ckpt", build(cfg), cfg)
    good = (path / "weights.pt").read_bytes()
    (path / "weights.pt").write_bytes(good[: len(good) // 2])
    with pytest.raises(ValueError, match=r"cannot read checkpoint weights .*weights.pt"):
        load_checkpoint(path)
    (path / "weights.pt").unlink()
    with pytest.raises(FileNotFoundError, match="weights file .*weights.pt is missing"):
        load_checkpoint(path)
    (path / "weights.pt").write_bytes(good)
    (path / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="config.json is not valid JSON"):
        load_checkpoint(path)
    (path / "config.json").write_text(json.dumps({"format": "pdesurrogates-checkpoint", "format_version": 1,
                                                  "model": {"name": "mgno", "wdth": 3}}))
    with pytest.raises(ValueError, match=r"invalid model config.*unknown key\(s\) \['wdth'\]"):
        load_checkpoint(path)
    (path / "config.json").write_text(json.dumps({"hello": 1}))
    with pytest.raises(ValueError, match="not a pdesurrogates checkpoint"):
        load_checkpoint(path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_checkpoint(tmp_path / "nothing")
    (tmp_path / "file.pt").write_bytes(good)
    with pytest.raises(ValueError, match="must be a directory"):
        load_checkpoint(tmp_path / "file.pt")


def test_pickled_objects_are_refused(tmp_path):
    """weights_only=True: a weights file holding arbitrary Python objects is not loaded."""
    cfg = MgNOConfig(width=4, n_layers=1, levels=2)
    path = save_checkpoint(tmp_path / "ckpt", build(cfg), cfg)
    torch.save({"x": _Evil()}, path / "weights.pt")
    with pytest.raises(ValueError, match="cannot read checkpoint weights"):
        load_checkpoint(path)


class _Evil:
    pass


def test_bad_arguments(tmp_path):
    cfg = MgNOConfig(width=4, n_layers=1, levels=2)
    with pytest.raises(TypeError, match="'extra' must be JSON-serialisable"):
        save_checkpoint(tmp_path / "x", build(cfg), cfg, extra={"t": torch.zeros(1)})
    with pytest.raises(ValueError, match="normalizer role must be one of"):
        save_checkpoint(tmp_path / "y", build(cfg), cfg, normalizers={"target": None})
    with pytest.raises(TypeError, match="expected a model config dataclass"):
        save_checkpoint(tmp_path / "z", build(cfg), {"name": "mgno"})
    assert not any(tmp_path.iterdir())


def test_surrogate_with_gaussian_normalizers(tmp_path):
    """encode -> model -> decode with the data layer's GaussianNormalizer, restored exactly."""
    from pdesurrogates.data.normalize import GaussianNormalizer

    cfg = MgNOConfig(width=4, n_layers=1, levels=2)
    model = build(cfg).eval()
    g = torch.Generator().manual_seed(0)
    x = 3.0 + 2.0 * torch.randn(32, 1, 8, 8, generator=g)
    y = -1.0 + 0.5 * torch.randn(32, 1, 8, 8, generator=g)
    n_in, n_out = GaussianNormalizer.fit(x), GaussianNormalizer.fit(y)
    path = save_checkpoint(tmp_path / "ckpt", model, cfg, normalizers={"input": n_in, "output": n_out})
    surrogate = Surrogate.load(path)
    assert set(surrogate.normalizers) == {"input", "output"}
    assert torch.equal(surrogate.normalizers["output"].std, n_out.std)
    with torch.no_grad():
        expected = n_out.decode(model(n_in.encode(x)))
    assert torch.equal(surrogate(x), expected)
    enc = surrogate.normalizers["input"].encode(x)
    assert abs(float(enc.mean())) < 0.05 and abs(float(enc.std()) - 1) < 0.05
    assert not surrogate(x).requires_grad


def test_surrogate_gradient_with_respect_to_its_input_matches_finite_differences(tmp_path):
    """Surrogate.differentiable keeps the graph through encode -> model -> decode (float64)."""
    from pdesurrogates.data.normalize import GaussianNormalizer

    cfg = MgNOConfig(width=4, n_layers=1, levels=2)
    torch.manual_seed(0)
    model = build(cfg).double().eval()
    x = 3.0 + torch.rand(2, 1, 8, 8, dtype=torch.float64)
    norms = {"input": GaussianNormalizer.fit(x), "output": GaussianNormalizer.fit(2 * x)}
    surrogate = Surrogate(model, cfg, {k: v.to(dtype=torch.float64) if hasattr(v, "to") else v
                                       for k, v in norms.items()})
    x = x[:1].requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: surrogate.differentiable(t).sum(), (x,))
    assert torch.equal(surrogate.differentiable(x).detach(), surrogate(x))

