"""Task ``algebraic_preconditioner``: the algebraic learned multigrid, trained on random SPD systems.

A config file (``configs/algebraic_preconditioner.toml``)::

    task = "algebraic_preconditioner"
    seed = 0
    [problem]     # AlgebraicTrainProblem: families, size_2d, size_3d, max_log10_contrast, cg_steps, ...
    families = ["two-phase", "lognormal", "anisotropic", "fem-jump"]
    [model]       # AlgebraicMultigridConfig: hidden, rounds, theta, ...
    hidden = 16
    [optimizer]
    lr = 0.001
    [train]
    epochs = 8
    steps_per_epoch = 50

Step ``k`` trains on one system drawn with seed ``(seed, k)``
(:func:`~pdesurrogates.solvers.learned.amg.training.sample_system`); ``[train] batch_size`` is
unused (one matrix per step, ``n_errors`` right-hand sides). After each epoch ``val_loss`` is the
mean relative loss on ``n_validation`` fixed systems drawn from seed ``seed + 1``; it is 0 for
classical smoothed aggregation (the untrained network), negative when the learned hierarchy does
better, and picks the ``best`` checkpoint. ``LearnedAMG.load(run_dir)`` reads it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pdesurrogates.errors import UserInputError
from pdesurrogates.solvers.learned.amg.network import (
    AlgebraicMultigridConfig,
    AlgebraicMultigridNet,
)
from pdesurrogates.solvers.learned.amg.training import (
    AlgebraicTrainProblem,
    relative_pcg_loss,
    sample_system,
)
from pdesurrogates.train.config import check_keys, dataclass_from_dict, parse_settings
from pdesurrogates.train.engine import RunContext, Task
from pdesurrogates.train.tasks.preconditioners import PreconditionerTrainConfig

__all__ = ["AlgebraicPreconditionerTask"]

_DEFAULTS: dict[str, dict] = {
    "optimizer": {"name": "adam", "lr": 1e-3, "weight_decay": 0.0},
    "schedule": {"name": "cosine"},
    "train": {"epochs": 8, "steps_per_epoch": 50, "batch_size": 1, "grad_clip": 1.0},
    "eval": {},
}


class AlgebraicPreconditionerTask(Task):
    """Train :class:`~pdesurrogates.solvers.learned.amg.network.AlgebraicMultigridNet` with the
    relative PCG loss (:func:`~pdesurrogates.solvers.learned.amg.training.relative_pcg_loss`)."""

    name = "algebraic_preconditioner"

    def __init__(self, config: PreconditionerTrainConfig) -> None:
        if not isinstance(config, PreconditionerTrainConfig):
            raise TypeError(f"task {self.name!r} needs a PreconditionerTrainConfig, got {type(config).__name__}")
        config.validate()
        self.config = config
        self.problem: AlgebraicTrainProblem = config.problem
        self._validation: list | None = None

    @classmethod
    def parse_config(cls, raw: Mapping[str, Any], where: str = "config",
                     base_dir: str | Path | None = None) -> PreconditionerTrainConfig:
        """Validate a config file's tables (``[problem]``, ``[model]`` and the engine's)."""
        raw = dict(raw)
        for name, values in _DEFAULTS.items():
            if name in raw and not isinstance(raw[name], Mapping):
                raise UserInputError(f"{where}: [{name}] must be a table, got {raw[name]!r}")
            raw[name] = {**values, **raw.get(name, {})}
        check_keys(raw, ["task", "seed", "problem", "model", "optimizer", "schedule", "train", "eval"], where)
        problem = dataclass_from_dict(AlgebraicTrainProblem, raw.get("problem", {}), f"{where} [problem]")
        model_raw = dict(raw.get("model", {}))
        model_raw.pop("name", None)
        try:
            model = dataclass_from_dict(AlgebraicMultigridConfig, model_raw, f"{where} [model]")
        except (TypeError, ValueError) as exc:
            raise UserInputError(f"{where} [model]: {exc}") from exc
        config = PreconditionerTrainConfig(task=cls.name, problem=problem, model=model, **parse_settings(raw, where))
        config.validate()
        return config

    @classmethod
    def make_config(cls, *, problem: AlgebraicTrainProblem | None = None,
                    model: AlgebraicMultigridConfig | None = None, **tables: Mapping[str, Any]) -> PreconditionerTrainConfig:
        """A config for Python use: ``make_config(problem=..., model=..., train={"epochs": 2}, seed=0)``."""
        from pdesurrogates.train.config import to_dict

        raw: dict[str, Any] = {k: dict(v) if isinstance(v, Mapping) else v for k, v in tables.items()}
        if problem is not None:
            raw["problem"] = to_dict(problem)
        if model is not None:
            raw["model"] = to_dict(model)
        return cls.parse_config(raw, where=f"{cls.name} config")

    # ---- the engine's hooks
    def build_model(self) -> nn.Module:
        fields = {f.name: getattr(self.config.model, f.name) for f in dataclasses.fields(self.config.model)
                  if f.name != "name"}
        return AlgebraicMultigridNet(**fields).double()

    def model_config(self) -> AlgebraicMultigridConfig:
        return self.config.model

    def plan(self, epoch: int, run: RunContext) -> list[int]:
        per_epoch = self.config.train.steps_per_epoch
        world, rank = run.dist.world_size, run.dist.rank
        return [(epoch * per_epoch + i) * world + rank for i in range(per_epoch)]

    def item_weight(self, item: int) -> float:
        return 1.0

    def loss(self, model: nn.Module, item: int, run: RunContext):
        _, A, B, blocksize = sample_system(self.problem, self.config.seed, item)
        gen = torch.Generator().manual_seed(int(item))
        return relative_pcg_loss(model, A, B, blocksize, self.problem.cg_steps, self.problem.n_errors, gen,
                                 kind=self.problem.loss)

    def evaluate(self, model: nn.Module, run: RunContext) -> dict[str, float]:
        if self._validation is None:
            self._validation = [sample_system(self.problem, self.config.seed + 1, i)
                                for i in range(self.problem.n_validation)]
        was = model.training
        model.eval()
        losses = []
        with torch.no_grad():
            for i, (_, A, B, blocksize) in enumerate(self._validation):
                loss, _ = relative_pcg_loss(model, A, B, blocksize, self.problem.cg_steps, self.problem.n_errors,
                                            torch.Generator().manual_seed(i), kind=self.problem.loss)
                losses.append(float(loss))
        model.train(was)
        return {"val_loss": sum(losses) / len(losses)}

    def monitor(self) -> str:
        return "val_loss"

    def checkpoint_extra(self) -> dict[str, Any]:
        from pdesurrogates.train.config import to_dict

        return {"training": {"problem": to_dict(self.problem), "seed": self.config.seed,
                             "families": list(self.problem.families)}}
