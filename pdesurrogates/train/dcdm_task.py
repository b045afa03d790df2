"""Learned-preconditioner tasks for ``pdesurrogates train``: ``task = "dcdm"``,
``task = "neural_multigrid"`` and ``task = "operator_preconditioner"`` (a model-registry surrogate,
input ``(log a, r)``, trained as a preconditioner; ``[model]`` is a registry table such as
``name = "mgno"``, and the result is a model checkpoint read by ``NeuralOperatorPreconditioner.load``).

A config file looks like ``configs/dcdm_poisson.toml`` or ``configs/neural_multigrid.toml``::

    task = "neural_multigrid"
    [neural_multigrid]   # MultigridTrainConfig fields: resolution, ndim, coefficient, steps, lr, ...
    resolution = 33
    steps = 300
    [model]              # MultigridPreconditionerConfig fields: hidden, kernel, pre_smooth, ...
    hidden = 8

(``task = "dcdm"`` takes a ``[dcdm]`` table of :class:`DCDMTrainConfig` fields and a ``[model]`` table of
:class:`DCDMConfig` fields.) The run directory receives ``preconditioner/`` (load it with
``LearnedPreconditioner.load`` or ``NeuralMultigridPreconditioner.load``), ``losses.csv`` and
``summary.json``.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pdesurrogates.solvers.learned.conjugate_direction import (
    DCDMConfig,
    DCDMTrainConfig,
    LearnedPreconditioner,
    train_dcdm,
)
from pdesurrogates.solvers.learned.multigrid_preconditioner import (
    MultigridPreconditionerConfig,
    MultigridTrainConfig,
    NeuralMultigridPreconditioner,
    train_multigrid_preconditioner,
)
from pdesurrogates.solvers.learned.neural_preconditioner import (
    OperatorPreconditionerTrainConfig,
    train_operator_preconditioner_from_config,
)
from pdesurrogates.train.config import dataclass_from_dict


@dataclass(frozen=True)
class _Kind:
    train_config: type
    parse_model: Callable  # (raw [model] table, where) -> model config
    train: Callable  # (train config, progress) -> (network, loss history)
    save: Callable  # (network, train config, path, extra) -> None


def _network_config(config_type: type) -> Callable:
    def parse(raw: dict, where: str):
        return dataclass_from_dict(config_type, raw, where)
    return parse


def _registry_config(raw: dict, where: str):
    """A model-registry config (``name = "mgno"`` ...); channels and ndim are the preconditioner's."""
    from pdesurrogates.models import config_from_dict

    raw = {**raw, "in_channels": 2, "out_channels": 1, "ndim": 2}
    try:
        return config_from_dict(raw)
    except (KeyError, ValueError) as exc:
        raise ValueError(f"{where}: {exc}") from exc


def _save_registry_model(net, config, path: Path, extra: dict) -> None:
    from pdesurrogates.models.checkpoint import save_checkpoint

    save_checkpoint(path, net, config.model, extra={"kind": "operator_preconditioner", **extra}, overwrite=True)


_KINDS = {
    "dcdm": _Kind(DCDMTrainConfig, _network_config(DCDMConfig), train_dcdm,
                  lambda net, cfg, path, extra: LearnedPreconditioner(net).save(path, overwrite=True, extra=extra)),
    "neural_multigrid": _Kind(
        MultigridTrainConfig, _network_config(MultigridPreconditionerConfig), train_multigrid_preconditioner,
        lambda net, cfg, path, extra: NeuralMultigridPreconditioner(net).save(path, overwrite=True, extra=extra)),
    "operator_preconditioner": _Kind(OperatorPreconditionerTrainConfig, _registry_config,
                                     train_operator_preconditioner_from_config, _save_registry_model),
}


def _config_from_dict(task: str, raw: Mapping[str, Any], where: str) -> _TaskConfig:
    kind = _KINDS[task]
    fields = {f for f in kind.train_config.__dataclass_fields__ if f != "model"}
    unknown = set(raw) - {"task", task, "model"}
    if unknown:
        raise ValueError(f"{where}: unknown keys {sorted(unknown)} for task {task!r}; "
                         f"valid: {sorted(['model', 'task', task])}")
    table = dict(raw.get(task, {}))
    bad = set(table) - fields
    if bad:
        raise ValueError(f"{where} [{task}]: unknown keys {sorted(bad)}; valid keys: {sorted(fields)}")
    model_raw = dict(raw.get("model", {}))
    if task == "operator_preconditioner":  # a registry table; none given: the default surrogate
        model = kind.parse_model(model_raw, f"{where} [model]") if model_raw else kind.train_config().model
    else:
        model_raw.setdefault("ndim", table.get("ndim", 2))
        model = kind.parse_model(model_raw, f"{where} [model]")
    config = kind.train_config(**{**table, "model": model})
    if config.resolution < 4 or config.steps < 1 or config.batch_size < 1 or config.lr <= 0:
        raise ValueError(f"{where} [{task}]: resolution >= 4, steps >= 1, batch_size >= 1 and lr > 0 required: {config}")
    return _TaskConfig(task, config)


def dcdm_config_from_dict(raw: Mapping[str, Any], where: str = "config", base_dir: str | Path | None = None):
    """Validate ``{"task": "dcdm", "dcdm": {...}, "model": {...}}``."""
    return _config_from_dict("dcdm", raw, where)


def multigrid_config_from_dict(raw: Mapping[str, Any], where: str = "config", base_dir: str | Path | None = None):
    """Validate ``{"task": "neural_multigrid", "neural_multigrid": {...}, "model": {...}}``."""
    return _config_from_dict("neural_multigrid", raw, where)


def operator_config_from_dict(raw: Mapping[str, Any], where: str = "config", base_dir: str | Path | None = None):
    """Validate ``{"task": "operator_preconditioner", "operator_preconditioner": {...}, "model": {name = ...}}``."""
    return _config_from_dict("operator_preconditioner", raw, where)


class _TaskConfig:
    """A training config tagged with its task name for the dispatcher."""

    def __init__(self, task: str, config) -> None:
        self.task = task
        self.config = config

    def to_dict(self) -> dict:
        table = {k: v for k, v in asdict(self.config).items() if k != "model"}
        return {"task": self.task, self.task: table, "model": asdict(self.config.model)}


def train_preconditioner_task(config: _TaskConfig, out_dir: str | os.PathLike | None, resume=None, device=None,
                              overwrite: bool = False, progress: bool = True, **_: Any) -> dict:
    """Trainer of the preconditioner tasks (no resume: training takes a minute; rerun with ``--overwrite``)."""
    task = config.task
    if resume is not None:
        raise ValueError(f"task {task!r} does not support --resume; rerun with --overwrite")
    if out_dir is None:
        raise ValueError(f"task {task!r} needs an output directory (--out)")
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out} exists and is not empty; pass --overwrite to replace it")
    out.mkdir(parents=True, exist_ok=True)
    kind = _KINDS[task]
    losses: list[tuple[int, float]] = []
    t0 = time.perf_counter()
    net, history = kind.train(config.config, progress=lambda s, v: losses.append((s, v)))
    seconds = time.perf_counter() - t0
    kind.save(net, config.config, out / "preconditioner", {"train": config.to_dict(), "seconds": seconds})
    (out / "losses.csv").write_text("step,loss\n" + "".join(f"{s},{v:.8g}\n" for s, v in losses))
    summary = {"task": task, "out_dir": str(out), "seconds": seconds, "final_loss": history[-1],
               "first_loss": history[0], "preconditioner": str(out / "preconditioner")}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    if progress:
        print(f"{task}: loss {history[0]:.4f} -> {history[-1]:.4f} in {seconds:.1f}s; saved {out / 'preconditioner'}")
    return summary

