"""Task ``finetune``: instance-wise fine-tuning of a trained surrogate on one input of a data file.

PINO's fine-tuning (Li et al. 2021): the weights of a trained operator are optimised on a single
new input with the PDE residual alone, which corrects its prediction for that input::

    task = "finetune"
    [finetune]
    checkpoint = "runs/darcy_fno"      # a run or checkpoint directory
    data = "data/darcy_ood.h5"         # any readable data file
    index = 0                          # the sample to fine-tune on
    physics = "darcy"                  # a key of pdesurrogates.losses.PHYSICS_LOSSES
    [finetune.physics_params]
    norm = "h-1"
    [optimizer]
    lr = 1e-3
    [train]
    steps_per_epoch = 50               # steps between evaluations
    epochs = 6

Every epoch reports the residual and, when the file holds the solution, the relative L2 error of
the prediction (``physics``, ``l2``); the fine-tuned checkpoint (same normalizers) is the run's.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pdesurrogates.errors import UserInputError
from pdesurrogates.train.config import (
    EvalConfig,
    OptimizerConfig,
    ScheduleConfig,
    TrainerConfig,
    _resolve_path,
    check_keys,
    dataclass_from_dict,
    parse_settings,
)
from pdesurrogates.train.engine import RunContext, Task


@dataclass(frozen=True)
class FinetuneSource:
    """The ``[finetune]`` table: which model, which input, which PDE residual."""

    checkpoint: str = ""
    data: str = ""
    index: int = 0
    physics: str = ""
    physics_params: Mapping[str, Any] = field(default_factory=dict)

    def validate(self, where: str) -> None:
        if not self.checkpoint or not self.data or not self.physics:
            raise UserInputError(f"{where}: checkpoint, data and physics are required")
        if self.index < 0:
            raise UserInputError(f"{where}: index must be >= 0, got {self.index}")


@dataclass(frozen=True)
class FinetuneConfig:
    """A ``finetune`` run."""

    finetune: FinetuneSource
    optimizer: OptimizerConfig = field(default_factory=lambda: OptimizerConfig(name="adam", weight_decay=0.0))
    schedule: ScheduleConfig = field(default_factory=lambda: ScheduleConfig(name="constant"))
    train: TrainerConfig = field(default_factory=lambda: TrainerConfig(epochs=4, batch_size=1, steps_per_epoch=50))
    eval: EvalConfig = field(default_factory=EvalConfig)
    seed: int = 0
    task: str = "finetune"


class FinetuneFileTask(Task):
    """See the module docstring."""

    name = "finetune"

    def __init__(self, config: FinetuneConfig) -> None:
        self.config = config

    @classmethod
    def parse_config(cls, raw: Mapping[str, Any], where: str = "config",
                     base_dir: str | Path | None = None) -> FinetuneConfig:
        check_keys(raw, ["task", "seed", "finetune", "optimizer", "schedule", "train", "eval"], where)
        defaults = FinetuneConfig(FinetuneSource())
        raw = dict(raw)
        for name in ("optimizer", "schedule", "train"):
            if not isinstance(raw.get(name, {}), Mapping):
                raise UserInputError(f"{where}: [{name}] must be a table")
            raw[name] = {**dataclasses.asdict(getattr(defaults, name)), **raw.get(name, {})}
        if not isinstance(raw.get("finetune"), Mapping):
            raise UserInputError(f"{where}: a [finetune] table (checkpoint, data, index, physics) is required")
        source = dataclass_from_dict(FinetuneSource, raw["finetune"], f"{where} [finetune]")
        source.validate(f"{where} [finetune]")
        if base_dir is not None:
            source = dataclasses.replace(source, checkpoint=_resolve_path(source.checkpoint, Path(base_dir)),
                                         data=_resolve_path(source.data, Path(base_dir)))
        from pdesurrogates.losses import get_physics_loss

        get_physics_loss(source.physics, **source.physics_params)  # unknown names and parameters fail early
        config = FinetuneConfig(finetune=source, **parse_settings(raw, where))
        for section in (config.optimizer, config.schedule, config.train, config.eval):
            section.validate()
        return config

    def setup(self, run: RunContext) -> None:
        from pdesurrogates.data import open_dataset
        from pdesurrogates.losses import get_physics_loss
        from pdesurrogates.models import find_checkpoint, load_checkpoint
        from pdesurrogates.train.evaluation import Predictor

        src = self.config.finetune
        self.ckpt = load_checkpoint(find_checkpoint(src.checkpoint))
        ds = open_dataset(src.data, indices=[src.index]) if Path(src.data).exists() else None
        if ds is None:
            raise FileNotFoundError(f"[finetune] data file {src.data} not found")
        x, y = ds[0]
        ds.close()
        self.a, self.u = x[None].to(run.device), y[None].to(run.device)
        self.physics = get_physics_loss(src.physics, **src.physics_params)
        lead = tuple(self.ckpt.extra.get("output_lead") or (getattr(self.ckpt.config, "out_channels", 1),))
        self.lead, self.ndim = lead, int(getattr(self.ckpt.config, "ndim", x.ndim - 1))
        self.norms = {k: v.to(run.device) for k, v in self.ckpt.normalizers.items()}
        self._predictor = lambda model: Predictor(model, self.norms, self.lead, self.ndim)

    def build_model(self) -> nn.Module:
        return copy.deepcopy(self.ckpt.model)

    def model_config(self) -> Any:
        return self.ckpt.config

    def normalizers(self) -> dict[str, Any]:
        return dict(self.ckpt.normalizers)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Nothing to restore: the normalizers are the source checkpoint's."""

    def checkpoint_extra(self) -> dict[str, Any]:
        return {**self.ckpt.extra, "finetuned_on": {"data": self.config.finetune.data,
                                                    "index": self.config.finetune.index}}

    def plan(self, epoch: int, run: RunContext) -> list[int]:
        return list(range(self.config.train.steps_per_epoch))

    def item_weight(self, item: int) -> float:
        return 1.0

    def loss(self, model: nn.Module, item: int, run: RunContext):
        pred = self._predictor(model)(self.a)
        loss = self.physics(pred, self.a)
        return loss, {}

    def evaluate(self, model: nn.Module, run: RunContext) -> dict[str, float]:
        from pdesurrogates.losses import relative_lp

        with torch.no_grad():
            pred = self._predictor(model)(self.a)
            return {"physics": float(self.physics(pred, self.a)), "l2": float(relative_lp(pred, self.u))}

    def monitor(self) -> str:
        return "physics"


__all__ = ["FinetuneConfig", "FinetuneFileTask", "FinetuneSource"]
