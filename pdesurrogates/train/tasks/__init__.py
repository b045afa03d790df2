"""The task registry: ``task = "..."`` in a config file -> a :class:`~pdesurrogates.train.engine.Task` class.

| name | class | what it trains |
|---|---|---|
| ``surrogate`` | :class:`~.surrogate.SurrogateTask` | a neural operator on dataset files (data and/or physics loss) |
| ``pino`` | :class:`~.surrogate.SurrogateTask` | the same with a PDE-residual term required |
| ``finetune`` | :class:`~.finetune.FinetuneFileTask` | physics-only fine-tuning of a checkpoint on one input |
| ``neural_multigrid`` | :class:`~.preconditioners.NeuralMultigridTask` | the learned V-cycle preconditioner |
| ``dcdm`` | :class:`~.preconditioners.DCDMTask` | the DCDM conjugate-direction network |
| ``operator_preconditioner`` | :class:`~.preconditioners.OperatorPreconditionerTask` | a registry surrogate as preconditioner |
| ``algebraic_preconditioner`` | :class:`~.algebraic.AlgebraicPreconditionerTask` | the algebraic learned multigrid (any SPD matrix) |
| ``tensors`` | :class:`~.tensors.TensorTask` | a given module on tensors in memory (Python only) |
| ``rollout`` | :class:`~.rollout.RolloutTask` | a model stepped recurrently in time on trajectories |

A task class has ``name``, ``parse_config(raw, where, base_dir) -> config`` (a frozen config with
the engine's tables) and is constructed from that config. :func:`config_from_dict` and
:func:`load_config` validate a config for its task; :func:`train` runs it on the engine.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from pdesurrogates.errors import UserInputError
from pdesurrogates.train.config import _closest, apply_overrides, read_toml
from pdesurrogates.train.engine import Task, fit
from pdesurrogates.train.tasks.algebraic import AlgebraicPreconditionerTask
from pdesurrogates.train.tasks.finetune import FinetuneFileTask
from pdesurrogates.train.tasks.preconditioners import (
    DCDMTask,
    NeuralMultigridTask,
    OperatorPreconditionerTask,
)
from pdesurrogates.train.tasks.rollout import RolloutTask
from pdesurrogates.train.tasks.surrogate import SurrogateTask
from pdesurrogates.train.tasks.tensors import TensorTask


class TaskRegistry:
    """Task name -> task class; refuses duplicates and lists the choices in its errors."""

    def __init__(self) -> None:
        self._tasks: dict[str, type[Task]] = {}

    def register(self, name: str, task_class: type[Task]) -> None:
        if name in self._tasks:
            raise UserInputError(f"task {name!r} is already registered (by {self._tasks[name].__qualname__})")
        if not (isinstance(task_class, type) and issubclass(task_class, Task)):
            raise TypeError(f"task {name!r}: {task_class!r} is not a Task subclass")
        self._tasks[name] = task_class

    def __getitem__(self, name: str) -> type[Task]:
        if name not in self._tasks:
            raise UserInputError(f"unknown task {name!r}{_closest(str(name), self.names())}; valid tasks: {self.names()}")
        return self._tasks[name]

    def __contains__(self, name: object) -> bool:
        return name in self._tasks

    def __iter__(self):
        return iter(self._tasks)

    def names(self) -> list[str]:
        return sorted(self._tasks)


TASKS = TaskRegistry()
for _name, _cls in (("surrogate", SurrogateTask), ("pino", SurrogateTask), ("finetune", FinetuneFileTask),
                    ("neural_multigrid", NeuralMultigridTask), ("dcdm", DCDMTask),
                    ("operator_preconditioner", OperatorPreconditionerTask),
                    ("algebraic_preconditioner", AlgebraicPreconditionerTask), ("tensors", TensorTask),
                    ("rollout", RolloutTask)):
    TASKS.register(_name, _cls)


def config_from_dict(raw: Mapping[str, Any], where: str = "config", base_dir: str | Path | None = None) -> Any:
    """Validate ``raw`` (a config file's tables) into the frozen config of its ``task``
    (default ``"surrogate"``)."""
    task = raw.get("task", "surrogate")
    if not isinstance(task, str):
        raise UserInputError(f"{where}: 'task' must be a string, got {task!r}")
    cls = TASKS[task]
    if not hasattr(cls, "parse_config"):
        raise UserInputError(f"{where}: task {task!r} is built in Python ({cls.__name__}), not from a config file")
    return cls.parse_config(raw, where=where, base_dir=base_dir)


def load_config(path: str | Path, overrides: Sequence[str] = (), base_dir: str | Path | None = ".") -> Any:
    """Read a TOML config, apply ``--set`` overrides and validate it for its task.

    Parameters
    ----------
    path : path
        TOML file.
    overrides : sequence of str
        ``"dotted.key=value"`` strings, applied in order.
    base_dir : path or None
        Relative data paths are resolved against it (default: the current directory).
    """
    raw = apply_overrides(read_toml(path), overrides)
    return config_from_dict(raw, where=str(path), base_dir=base_dir)


def task_from_config(config: Any) -> Task:
    """The task object a validated config describes."""
    return TASKS[getattr(config, "task", "surrogate")](config)


def train(config: Any, out_dir: str | os.PathLike | None, resume: str | os.PathLike | None = None,
          device: str | torch.device | None = None, **kwargs: Any) -> dict:
    """Train what ``config`` describes on the engine and return the run's summary.

    Parameters
    ----------
    config : a task's config (from :func:`load_config` or :func:`config_from_dict`)
    out_dir : path or None
        Run directory; None with ``resume`` continues in the resumed directory.
    resume : path, optional
        Run directory (or its ``checkpoints/last``) to continue from.
    device : {"cpu", "cuda"}, optional
        Default CUDA when available; an unavailable device is refused.
    **kwargs
        ``overwrite``, ``progress``, ``callback`` of :func:`pdesurrogates.train.engine.fit`.
    """
    return fit(task_from_config(config), config, out_dir, resume=resume, device=device, **kwargs).summary


__all__ = ["TASKS", "TaskRegistry", "config_from_dict", "load_config", "task_from_config", "train"]
