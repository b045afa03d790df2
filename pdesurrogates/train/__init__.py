"""Training: one engine (:mod:`~pdesurrogates.train.engine`) and the tasks it trains.

>>> from pdesurrogates.train import load_config, train                  # doctest: +SKIP
>>> summary = train(load_config("configs/darcy_fno.toml"), "runs/darcy_fno")  # doctest: +SKIP

From Python a task object can be trained directly: ``fit(task, settings, out_dir)`` (see
:class:`~pdesurrogates.train.engine.Task`). ``pdesurrogates train --config FILE`` is the
command-line front end; :data:`TASKS` lists what a config file can name.
"""

from pdesurrogates.train.config import TrainConfig, TrainSettings
from pdesurrogates.train.engine import RunResult, Task, TrainingDiverged, fit
from pdesurrogates.train.pino import finetune_instance, train_physics_only, train_pino
from pdesurrogates.train.tasks import TASKS, config_from_dict, load_config, task_from_config, train
from pdesurrogates.train.tasks.preconditioners import train_network

__all__ = [
    "TASKS",
    "RunResult",
    "Task",
    "TrainConfig",
    "TrainSettings",
    "TrainingDiverged",
    "config_from_dict",
    "finetune_instance",
    "fit",
    "load_config",
    "task_from_config",
    "train",
    "train_network",
    "train_physics_only",
    "train_pino",
]
