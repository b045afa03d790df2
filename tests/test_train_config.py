"""TOML training configs: validation, error messages, --set overrides, round trip, task dispatch."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

from pdesurrogates.train import TASKS, config_from_dict, load_config
from pdesurrogates.train.config import (
    TrainConfig,
    apply_overrides,
    dumps_toml,
    parse_override,
    save_config,
    to_dict,
)

REPO = Path(__file__).resolve().parents[1]
# Surrogate-training examples (task "surrogate"); the learned-preconditioner examples (tasks "dcdm" and
# "neural_multigrid") are tested in tests/test_dcdm.py and tests/test_neural_multigrid.py.
CONFIGS = sorted(p for p in (REPO / "configs").glob("*.toml")
                 if tomllib.loads(p.read_text()).get("task", "surrogate") == "surrogate")

BASE = """
seed = 3
[data]
train = "data/train.h5"
test = "data/test.h5"
test_strides = [2, 1]
[model]
name = "fno"
width = 8
modes = 4
[train]
epochs = 5
batch_size = 4
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.toml"
    path.write_text(text)
    return path


def test_load_fills_defaults_and_resolves_paths(tmp_path):
    cfg = load_config(write(tmp_path, BASE), base_dir=tmp_path)
    assert isinstance(cfg, TrainConfig)
    assert cfg.seed == 3 and cfg.train.epochs == 5 and cfg.train.batch_size == 4
    assert cfg.optimizer.name == "adamw" and cfg.schedule.name == "cosine" and cfg.train.precision == "none"
    assert cfg.data.train == str((tmp_path / "data/train.h5").resolve())
    assert cfg.data.test == (str((tmp_path / "data/test.h5").resolve()),)  # a single file becomes a list
    assert cfg.data.test_strides == (2, 1) and cfg.data.eval_strides == (2, 1)
    assert cfg.model.width == 8 and cfg.model.modes == 4
    assert cfg.loss.data == "l2"
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.seed = 4


@pytest.mark.parametrize(
    "patch, message",
    [
        ("[train]\nepocs = 3", "did you mean 'epochs'"),
        ("[optimiser]\nlr = 1.0", "did you mean 'optimizer'"),
        ("[schedule]\nname = 'cosin'", "must be one of ['constant', 'cosine', 'step']"),
        ("[train]\nprecision = 'fp8'", "precision must be one of"),
        ("[data]\nn_train = 'many'", "key 'n_train': expected an integer"),
        ("[optimizer]\nbetas = [0.9]", "expected a list of 2 values"),
        ("[eval]\nevery = 0", "every and batch_size must be >= 1"),
        ("[loss]\ndata = 'l3'", "[loss]: LossConfig.data: unknown 'l3'"),
        ("[loss]\nphysiks = 'darcy'", "did you mean 'physics'"),
    ],
)
def test_bad_keys_and_values_are_named(tmp_path, patch, message):
    text = BASE
    section = patch.split("\n")[0]
    if section in text:  # merge into the existing table
        text = text.replace(section, patch)
    else:
        text += "\n" + patch + "\n"
    with pytest.raises(ValueError) as err:
        load_config(write(tmp_path, text))
    assert message in str(err.value)
    assert str(tmp_path / "c.toml") in str(err.value) or "config" in str(err.value)


def test_unknown_model_key_and_missing_sections(tmp_path):
    with pytest.raises(ValueError, match=r"\[model\] \(fno\): unknown key 'widht' \(did you mean 'width'\?\)"):
        load_config(write(tmp_path, BASE.replace("width = 8", "widht = 8")))
    with pytest.raises(ValueError, match="unknown model 'fnoo' \\(did you mean 'fno'\\?\\)"):
        load_config(write(tmp_path, BASE.replace('name = "fno"', 'name = "fnoo"')))
    with pytest.raises(ValueError, match=r"missing table \[data\]"):
        config_from_dict({"model": {"name": "fno"}})
    with pytest.raises(ValueError, match="'name'"):
        config_from_dict({"data": {"train": "x.h5"}, "model": {"width": 3}})
    with pytest.raises(ValueError, match="'train'.*required"):
        config_from_dict({"data": {}, "model": {"name": "fno"}})


def test_parse_override_never_evaluates():
    assert parse_override("train.epochs=10") == ("train.epochs", 10)
    assert parse_override("optimizer.lr=3e-4") == ("optimizer.lr", 3e-4)
    assert parse_override("data.normalize_inputs=false") == ("data.normalize_inputs", False)
    assert parse_override("data.test_strides=[4, 2]") == ("data.test_strides", [4, 2])
    assert parse_override("model.name=fno") == ("model.name", "fno")
    assert parse_override('data.train="a b.h5"') == ("data.train", "a b.h5")
    # Python expressions stay strings (and then fail type checks): nothing is executed
    assert parse_override("train.epochs=__import__('os').getcwd()")[1] == "__import__('os').getcwd()"
    for bad in ("train.epochs", "=3", "train..epochs=3"):
        with pytest.raises(ValueError, match="KEY=VALUE"):
            parse_override(bad)


def test_overrides_apply_and_are_validated(tmp_path):
    path = write(tmp_path, BASE)
    cfg = load_config(path, ["train.epochs=7", "optimizer.lr=0.01", "model.width=12", "schedule.warmup_epochs=1"])
    assert cfg.train.epochs == 7 and cfg.optimizer.lr == 0.01 and cfg.model.width == 12
    assert cfg.schedule.warmup_epochs == 1.0  # int accepted for a float key
    with pytest.raises(ValueError, match="did you mean 'batch_size'"):
        load_config(path, ["train.batchsize=3"])
    with pytest.raises(ValueError, match="expected an integer"):
        load_config(path, ["train.epochs=__import__('os')"])
    with pytest.raises(ValueError, match=r"\[model\]: FNOConfig"):  # the model's own check, located
        load_config(path, ["model.modes=0"])
    with pytest.raises(ValueError, match="is a value, not a table"):
        apply_overrides({"seed": 1}, ["seed.x=2"])


def test_resolved_config_round_trips(tmp_path):
    cfg = load_config(write(tmp_path, BASE + "\n[loss]\ndata = 'h1'\nperiodic = true\n"), base_dir=tmp_path)
    out = tmp_path / "resolved.toml"
    save_config(cfg, out)
    again = load_config(out, base_dir=None)
    assert again == cfg
    assert to_dict(again) == to_dict(cfg)
    assert (tmp_path / "resolved.json").is_file()


def test_dumps_toml_quotes_and_nests():
    text = dumps_toml({"a": 1, "s": 'x"y', "t": {"b": [1.5, True], "u": {"c": "d"}}, "n": None})
    import tomllib

    assert tomllib.loads(text) == {"a": 1, "s": 'x"y', "t": {"b": [1.5, True], "u": {"c": "d"}}}


def test_task_dispatch_hook():
    from pdesurrogates.train.tasks.surrogate import SurrogateTask

    assert TASKS["surrogate"] is SurrogateTask
    with pytest.raises(ValueError, match="did you mean 'surrogate'"):
        config_from_dict({"task": "surogate", "data": {"train": "x"}, "model": {"name": "fno"}})
    with pytest.raises(ValueError, match="built in Python"):
        config_from_dict({"task": "tensors"})


@pytest.mark.parametrize("path", sorted((REPO / "configs").glob("*.toml")), ids=lambda p: p.name)
def test_every_example_config_refuses_an_absent_device_before_training(path, tmp_path, capsys):
    """--device cuda on a machine without CUDA: a message naming the device, nothing trained."""
    import torch

    from pdesurrogates.cli import main

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    assert main(["train", "--config", str(path), "--device", "cuda", "--out", str(tmp_path / "run")]) == 2
    assert "'cuda'" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_set_value_with_a_line_break_is_refused():
    with pytest.raises(ValueError, match="line break"):
        parse_override("train.epochs=5\nseed=3")


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_example_configs_parse(path):
    cfg = load_config(path, base_dir=None)
    assert cfg.data.train and cfg.data.test, path
    assert path.stem.endswith(cfg.model.name.replace("-", "_")), (cfg.model.name, path.name)


SHAPES = {"darcy": (1, 1, (33, 33)), "burgers": (1, 1, (64,)), "navier_stokes": (1, 5, (16, 16))}


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_example_config_models_build_and_run(path):
    """Each example's model, with channels/ndim as the loop fills them from the data, runs forward."""
    import dataclasses

    import torch

    from pdesurrogates.models import build

    cfg = load_config(path, base_dir=None)
    c_in, c_out, spatial = SHAPES[path.stem.rsplit("_", 2 if "mg_tfno" in path.stem else 1)[0]]
    model_cfg = dataclasses.replace(cfg.model, in_channels=c_in, out_channels=c_out, ndim=len(spatial))
    torch.manual_seed(0)
    model = build(model_cfg)
    with torch.no_grad():
        out = model(torch.randn(2, c_in, *spatial))
    assert out.shape == (2, c_out, *spatial)
    assert torch.isfinite(out).all()


def test_example_configs_cover_every_problem_and_model():
    names = {p.stem for p in CONFIGS}
    for pde in ("darcy", "burgers", "navier_stokes"):
        for model in ("fno", "tfno", "mgno", "mg_tfno", "unet"):
            assert f"{pde}_{model}" in names, f"configs/{pde}_{model}.toml is missing"


@pytest.mark.parametrize("path", sorted((REPO / "configs").glob("*.toml")), ids=lambda p: p.name)
def test_every_example_config_validates_for_a_registered_task(path):
    """Each example config names a task of the registry and validates against that task's schema."""
    from pdesurrogates.train.tasks import TASKS

    task = tomllib.loads(path.read_text()).get("task", "surrogate")
    assert task in TASKS, f"{path.name}: task {task!r} is not registered"
    cfg = load_config(path, base_dir=None)
    assert cfg is not None
