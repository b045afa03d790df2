"""Training: TOML configs -> frozen dataclasses, the loop with checkpoints and resume, DDP.

>>> from pdesurrogates.train import load_config, train          # doctest: +SKIP
>>> summary = train(load_config("configs/darcy_fno.toml"), "runs/darcy_fno")  # doctest: +SKIP

``pdesurrogates train --config FILE`` is the command-line front end.
"""

from pdesurrogates.train.config import TASKS, TrainConfig, config_from_dict, load_config
from pdesurrogates.train.loop import TrainingDiverged, train

__all__ = ["TASKS", "TrainConfig", "TrainingDiverged", "config_from_dict", "load_config", "train"]
