"""Pieces of a training run that are not the loop: learning-rate schedules, the fp16 loss scaler,
autocast, the optimiser factory, RNG snapshots and the CSV/JSON files of a run directory."""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path
from typing import Any

import torch

from pdesurrogates.train.config import TrainSettings


def lr_factor(schedule: Any, step: int, steps_per_epoch: int, epochs: int) -> float:
    """Multiplier of the base learning rate before optimiser step ``step`` (0-based).

    Linear warm-up over ``warmup_epochs``, then ``constant``, ``cosine`` (to ``min_lr / lr``,
    handled by the caller through ``floor``) or ``step`` decay.
    """
    warmup = schedule.warmup_epochs * steps_per_epoch
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    if schedule.name == "constant":
        return 1.0
    if schedule.name == "step":
        return schedule.gamma ** ((step // steps_per_epoch) // schedule.step_epochs)
    total = epochs * steps_per_epoch
    progress = (step - warmup) / max(1.0, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, max(0.0, progress))))


def learning_rate(settings: TrainSettings, step: int, steps_per_epoch: int) -> float:
    """The learning rate of optimiser step ``step`` under ``settings``' schedule."""
    factor = lr_factor(settings.schedule, step, steps_per_epoch, settings.train.epochs)
    lr, floor = settings.optimizer.lr, settings.schedule.min_lr
    if settings.schedule.name == "cosine" and step >= settings.schedule.warmup_epochs * steps_per_epoch:
        return floor + (lr - floor) * factor
    return lr * factor


class LossScaler:
    """Dynamic loss scaling for fp16 training that also handles complex parameters.

    ``torch.amp.GradScaler`` cannot unscale complex gradients on every device (the FNO's spectral
    weights are complex), so the scale is applied and checked here: the loss is multiplied by
    ``scale``; after the backward pass the gradients are divided by it and checked for Inf/NaN; a
    step with non-finite gradients is skipped and the scale halved; after ``growth_interval``
    good steps it is doubled. Disabled (bf16, float32) it does nothing.
    """

    def __init__(self, enabled: bool, init_scale: float = 2.0**16, growth_interval: int = 2000):
        self.enabled = enabled
        self.scale = float(init_scale) if enabled else 1.0
        self.growth_interval = growth_interval
        self.good_steps = 0

    def scale_loss(self, loss: torch.Tensor) -> torch.Tensor:
        return loss * self.scale if self.enabled else loss

    def unscale_(self, parameters) -> bool:
        """Divide the gradients by the scale; True when all of them are finite."""
        if not self.enabled:
            return True
        grads = [p.grad for p in parameters if p.grad is not None]
        if not grads:
            return True
        finite = torch.stack([torch.isfinite(torch.view_as_real(g) if g.is_complex() else g).all()
                              for g in grads]).all()
        for g in grads:
            g.mul_(1.0 / self.scale)
        return bool(finite)

    def update(self, grads_finite: bool) -> None:
        if not self.enabled:
            return
        if not grads_finite:
            self.scale *= 0.5
            self.good_steps = 0
            return
        self.good_steps += 1
        if self.good_steps >= self.growth_interval:
            self.scale *= 2.0
            self.good_steps = 0

    def state_dict(self) -> dict:
        return {"scale": self.scale, "good_steps": self.good_steps}

    def load_state_dict(self, state: dict) -> None:
        if self.enabled and state:
            self.scale = float(state["scale"])
            self.good_steps = int(state["good_steps"])


class autocast:
    """``torch.autocast`` for ``precision`` in {"none", "bf16", "fp16"} (a no-op for "none")."""

    def __init__(self, device: torch.device | str, precision: str):
        device = torch.device(device)
        dtypes = {"bf16": torch.bfloat16, "fp16": torch.float16}
        self._ctx = (torch.autocast(device_type=device.type, dtype=dtypes[precision])
                     if precision != "none" else None)

    def __enter__(self):
        if self._ctx is not None:
            self._ctx.__enter__()
        return self

    def __exit__(self, *exc):
        if self._ctx is not None:
            return self._ctx.__exit__(*exc)
        return False


def make_optimizer(parameters, settings: TrainSettings) -> torch.optim.Optimizer:
    """AdamW (decoupled weight decay) or Adam (L2 penalty) as ``settings.optimizer`` says."""
    o = settings.optimizer
    cls = torch.optim.AdamW if o.name == "adamw" else torch.optim.Adam
    return cls(parameters, lr=o.lr, betas=o.betas, eps=o.eps, weight_decay=o.weight_decay)


def rng_state(device: torch.device) -> dict:
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def write_csv(path: Path, rows: list[dict]) -> None:
    """Write ``rows`` (union of their keys as columns) to ``path`` atomically."""
    if not rows:
        return
    keys: list[str] = []
    for row in rows:
        keys.extend(k for k in row if k not in keys)
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def read_csv(path: Path) -> list[dict]:
    """Rows of a CSV written by :func:`write_csv`, numbers parsed (empty when the file is absent)."""
    if not path.is_file():
        return []
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    out = []
    for row in rows:
        parsed = {}
        for k, v in row.items():
            try:
                parsed[k] = int(v)
            except (TypeError, ValueError):
                try:
                    parsed[k] = float(v)
                except (TypeError, ValueError):
                    parsed[k] = v
        out.append(parsed)
    return out


def json_safe(obj: Any) -> Any:
    """``obj`` with NaN/Inf floats replaced by None (strict JSON)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj



__all__ = ["LossScaler", "autocast", "json_safe", "learning_rate", "lr_factor", "make_optimizer", "read_csv",
           "rng_state", "set_rng_state", "write_csv"]
