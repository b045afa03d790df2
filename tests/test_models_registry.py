"""The model interface: registry, configs vs constructors, shapes, errors, and FNO == neuralop's FNO."""

from __future__ import annotations

import dataclasses
import inspect

import pytest
import torch
from torch import nn

from pdesurrogates.models import (
    MODELS,
    FNOConfig,
    MgNOConfig,
    MGTFNOConfig,
    TFNOConfig,
    UNetConfig,
    build,
    config_from_dict,
    config_to_dict,
    count_parameters,
)
from pdesurrogates.models.fno import neuralop_fno_kwargs
from pdesurrogates.models.registry import Registry, constructor_kwargs

SHAPES = {1: (2, 1, 19), 2: (2, 1, 12, 10), 3: (1, 1, 8, 8, 8)}
# small but structurally complete variants, so 3D stays fast
SMALL = {
    "fno": {"width": 8, "modes": 4},
    "tfno": {"width": 8, "modes": 4},
    "mg-tfno": {"width": 8, "modes": 4},
    "mgno": {"width": 6, "n_layers": 2, "levels": 2},  # every grid above has >= 2 scales: every weight is used
    "unet": {"width": 8, "depth": 2},
}
EXPECTED = {"fno", "tfno", "mgno", "mg-tfno", "unet"}


def test_registry_lists_the_five_models():
    assert set(MODELS) == EXPECTED


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_config_fields_match_constructor(name):
    """No drift: the constructor takes exactly the config fields (less name), with equal defaults."""
    entry = MODELS[name]
    params = inspect.signature(entry.model_class.__init__).parameters
    ctor = {k: p.default for k, p in params.items() if k != "self"}
    fields = {f.name: f.default for f in dataclasses.fields(entry.config_class) if f.name != "name"}
    assert ctor == fields
    assert entry.config_class().name == name


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_default_config_builds_2d_forward_backward(name):
    """Every model builds from its *default* config and trains in 2D, on a grid not divisible by 4."""
    model = build(MODELS[name].config_class())
    x = torch.randn(2, 1, 20, 20)
    y = model(x)
    assert y.shape == x.shape
    y.square().mean().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(g.abs().sum() for g in grads) > 0


@pytest.mark.parametrize("ndim", [1, 2, 3])
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_all_models_all_ranks(name, ndim):
    """(B, C_in, *s) -> (B, C_out, *s) with two channels in and three out, 1D/2D/3D, odd sizes."""
    cfg = MODELS[name].config_class(in_channels=2, out_channels=3, ndim=ndim, **SMALL[name])
    model = build(cfg)
    shape = list(SHAPES[ndim])
    shape[1] = 2
    x = torch.randn(*shape)
    y = model(x)
    assert y.shape == (shape[0], 3, *shape[2:])
    y.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_config_dict_round_trip_and_tuples():
    for cfg in [FNOConfig(modes=(8, 6)), TFNOConfig(ndim=1, modes=12, rank=0.2), MgNOConfig(smoothing=(1, 3, 2)),
                MGTFNOConfig(levels=2, modes=[4, 4]), UNetConfig(depth=2, norm="batch")]:
        d = config_to_dict(cfg)
        assert d["name"] == cfg.name
        assert all(not isinstance(v, tuple) for v in d.values())  # JSON-ready
        assert config_from_dict(d) == cfg
    assert MGTFNOConfig(modes=[4, 4]).modes == (4, 4)


def test_config_errors_name_what_is_valid():
    with pytest.raises(KeyError, match="valid names: fno, mg-tfno, mgno, tfno, unet"):
        config_from_dict({"name": "transformer"})
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['widht'\].*valid keys: name, in_channels"):
        config_from_dict({"name": "mgno", "widht": 8})
    with pytest.raises(KeyError, match="needs a 'name'"):
        config_from_dict({"width": 8})
    with pytest.raises(ValueError, match="FNOConfig.modes"):
        FNOConfig(modes=(8, 8, 8))
    with pytest.raises(ValueError, match="MgNOConfig.padding_mode must be one of"):
        MgNOConfig(padding_mode="periodic")
    with pytest.raises(ValueError, match="MgNOConfig.width must be a positive int"):
        MgNOConfig(width=0)
    with pytest.raises(ValueError, match="ndim must be 1, 2 or 3"):
        UNetConfig(ndim=4)
    with pytest.raises(ValueError, match="name must be 'fno'"):
        FNOConfig(name="mgno")
    with pytest.raises(dataclasses.FrozenInstanceError):
        FNOConfig().width = 3  # type: ignore[misc]


def test_registry_refuses_duplicates_and_non_frozen_configs():
    reg = Registry("model")
    reg.register("a", FNOConfig, nn.Identity)
    with pytest.raises(ValueError, match="'a' is already registered"):
        reg.register("a", FNOConfig, nn.Identity)

    @dataclasses.dataclass
    class Loose:
        name: str = "b"

    with pytest.raises(TypeError, match="frozen dataclass"):
        reg.register("b", Loose, nn.Identity)
    with pytest.raises(KeyError, match="valid names: a"):
        reg["zzz"]
    with pytest.raises(ValueError, match="already registered"):
        MODELS.register("fno", FNOConfig, nn.Identity)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_input_checks(name):
    model = build(MODELS[name].config_class(in_channels=2, **SMALL[name]))
    with pytest.raises(ValueError, match=r"expected 2 input channels, got 1"):
        model(torch.randn(1, 1, 8, 8))
    with pytest.raises(ValueError, match=r"2 spatial axes, got shape \(2, 8, 8\)"):
        model(torch.randn(2, 8, 8))


def test_fno_wrapper_is_neuralop_fno():
    """Same seed -> identical weights and outputs as ``neuralop.models.FNO`` built directly."""
    from neuralop.models import FNO as NeuralopFNO

    for cfg in [FNOConfig(width=8, modes=(6, 4), domain_padding=0.25), TFNOConfig(width=8, modes=6, ndim=1)]:
        torch.manual_seed(0)
        ours = build(cfg)
        torch.manual_seed(0)
        ref = NeuralopFNO(**neuralop_fno_kwargs(**constructor_kwargs(cfg)))
        x = torch.randn(3, 1, *([16] * cfg.ndim))
        assert torch.equal(ours(x), ref(x))
        assert count_parameters(ours) == count_parameters(ref)


def test_tfno_weights_are_tucker_factorized():
    model = build(TFNOConfig(width=8, modes=8, rank=0.1))
    dense = build(FNOConfig(width=8, modes=8))
    weight = model.fno.fno_blocks.convs[0].weight
    assert "TuckerTensor" in type(weight).__name__
    spectral = sum(2 * p.numel() for n, p in model.named_parameters() if "convs.0.weight" in n)
    spectral_dense = sum(2 * p.numel() for n, p in dense.named_parameters() if "convs.0.weight" in n)
    assert spectral < 0.2 * spectral_dense


def test_mg_tfno_has_ten_times_fewer_parameters_than_fno():
    for width, modes in [(32, 16), (64, 16), (32, 24)]:
        fno = count_parameters(build(FNOConfig(width=width, modes=modes)))
        mg = count_parameters(build(MGTFNOConfig(width=width, modes=modes)))
        assert fno >= 10 * mg, (width, modes, fno, mg)


def test_count_parameters_counts_complex_as_two():
    module = nn.Module()
    module.a = nn.Parameter(torch.zeros(3, 4))
    module.b = nn.Parameter(torch.zeros(5, dtype=torch.cfloat))
    module.c = nn.Parameter(torch.zeros(7), requires_grad=False)
    assert count_parameters(module) == 12 + 10
    assert count_parameters(module, trainable_only=False) == 12 + 10 + 7


def test_mgno_legacy_matches_paper_size():
    """The paper's 4-layer, 24-channel Darcy model with 6 levels has about 0.57M parameters."""
    n = count_parameters(build(MgNOConfig(n_layers=4, width=24, levels=6, variant="legacy")))
    assert 0.5e6 < n < 0.65e6


def test_domain_padding_and_grid_channels_change_the_model():
    x = torch.randn(1, 1, 16, 16)
    torch.manual_seed(0)
    plain = build(MgNOConfig(width=4, n_layers=1, levels=2))
    torch.manual_seed(0)
    padded = build(MgNOConfig(width=4, n_layers=1, levels=2, domain_padding=0.25))
    assert padded(x).shape == x.shape
    assert not torch.allclose(plain(x), padded(x))
    grid = build(MgNOConfig(width=4, n_layers=1, levels=2, grid_channels=True))
    assert grid.mg[0].pre[0][0].weight.shape[1] == 3  # smoother reads 1 input + 2 coordinate channels
    legacy = build(MgNOConfig(width=4, n_layers=1, levels=2, grid_channels=True, variant="legacy"))
    assert legacy.mg[0].pre[0][0].S.in_channels == 3


@pytest.mark.parametrize("module", ["pdesurrogates.models.registry", "pdesurrogates.models.mgno",
                                    "pdesurrogates.models.checkpoint", "pdesurrogates.nn.padding",
                                    "pdesurrogates.nn.patching"])
def test_docstring_examples_run(module):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
