"""``task = "dcdm"``: train a DCDM preconditioner network with ``pdesurrogates train``.

A config file looks like ``configs/dcdm_poisson.toml``::

    task = "dcdm"
    [dcdm]            # DCDMTrainConfig fields: resolution, ndim, n_samples, n_ritz, steps, lr, ...
    resolution = 34
    steps = 1500
    [model]           # DCDMConfig fields: channels, fine_blocks, coarse_blocks
    channels = 16

The run directory receives ``preconditioner/`` (load it with
``LearnedPreconditioner.load(run_dir / "preconditioner")``), ``losses.csv`` and ``summary.json``.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Mapping

from pdesurrogates.solvers.learned.conjugate_direction import (
    DCDMConfig,
    DCDMTrainConfig,
    LearnedPreconditioner,
    train_dcdm,
)
from pdesurrogates.train.config import dataclass_from_dict

_TRAIN_FIELDS = {f for f in DCDMTrainConfig.__dataclass_fields__ if f != "model"}


def dcdm_config_from_dict(raw: Mapping[str, Any], where: str = "config", base_dir: str | Path | None = None):
    """Validate ``{"task": "dcdm", "dcdm": {...}, "model": {...}}`` into a :class:`DCDMTrainConfig`."""
    unknown = set(raw) - {"task", "dcdm", "model"}
    if unknown:
        raise ValueError(f"{where}: unknown keys {sorted(unknown)} for task 'dcdm'; valid: ['dcdm', 'model', 'task']")
    table = dict(raw.get("dcdm", {}))
    bad = set(table) - _TRAIN_FIELDS
    if bad:
        raise ValueError(f"{where} [dcdm]: unknown keys {sorted(bad)}; valid keys: {sorted(_TRAIN_FIELDS)}")
    model_raw = dict(raw.get("model", {}))
    model_raw.setdefault("ndim", table.get("ndim", 2))
    model = dataclass_from_dict(DCDMConfig, model_raw, f"{where} [model]")
    config = DCDMTrainConfig(**{**table, "model": model})
    if config.resolution < 4 or config.steps < 1 or config.batch_size < 1 or config.lr <= 0:
        raise ValueError(f"{where} [dcdm]: resolution >= 4, steps >= 1, batch_size >= 1 and lr > 0 required: {config}")
    return _TaskConfig(config)


class _TaskConfig:
    """A :class:`DCDMTrainConfig` tagged with ``task = "dcdm"`` for the dispatcher."""

    task = "dcdm"

    def __init__(self, config: DCDMTrainConfig) -> None:
        self.config = config

    def to_dict(self) -> dict:
        table = {k: v for k, v in asdict(self.config).items() if k != "model"}
        return {"task": "dcdm", "dcdm": table, "model": asdict(self.config.model)}


def train_dcdm_task(config: _TaskConfig, out_dir: str | os.PathLike | None, resume=None, device=None,
                    overwrite: bool = False, progress: bool = True, **_: Any) -> dict:
    """Trainer of ``task = "dcdm"`` (no resume: training takes minutes; rerun with ``--overwrite``)."""
    if resume is not None:
        raise ValueError("task 'dcdm' does not support --resume; rerun with --overwrite")
    if out_dir is None:
        raise ValueError("task 'dcdm' needs an output directory (--out)")
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out} exists and is not empty; pass --overwrite to replace it")
    out.mkdir(parents=True, exist_ok=True)
    losses: list[tuple[int, float]] = []
    t0 = time.perf_counter()
    net, history = train_dcdm(config.config, progress=lambda s, v: losses.append((s, v)))
    seconds = time.perf_counter() - t0
    LearnedPreconditioner(net).save(out / "preconditioner", overwrite=True,
                                    extra={"train": config.to_dict(), "seconds": seconds})
    (out / "losses.csv").write_text("step,loss\n" + "".join(f"{s},{v:.8g}\n" for s, v in losses))
    summary = {"task": "dcdm", "out_dir": str(out), "seconds": seconds, "final_loss": history[-1],
               "first_loss": history[0], "preconditioner": str(out / "preconditioner")}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    if progress:
        print(f"dcdm: loss {history[0]:.4f} -> {history[-1]:.4f} in {seconds:.1f}s; saved {out / 'preconditioner'}")
    return summary
