"""Task ``rollout``: a model stepped recurrently in time on stored trajectories (the FNO paper's
Navier–Stokes setting).

The model maps the last ``history`` frames (as channels) to the next frame; a prediction is
appended to the window and the oldest frame dropped, ``horizon`` times. Training rolls out every
step of a batch and minimises the *sum over steps* of the relative L2 error of each predicted
frame (mean over the batch), as the FNO paper's code does (Li et al., ICLR 2021,
``fourier_2d_time.py``); the gradient flows through the whole rollout. Evaluation rolls out the
test trajectories and reports the relative L2 error of the whole predicted trajectory
(``<set>_l2``, the paper's metric), the mean of the per-step errors (``<set>_l2_step``) and the
error of the last step (``<set>_l2_last``).

The data are files :func:`pdesurrogates.data.open_dataset` reads whose outputs are trajectories
``(N, 1, T, *spatial)`` (e.g. the ``navier-stokes`` generator's); frames ``0..history-1`` of the
outputs are the initial window and frames ``history..history+horizon-1`` the targets::

    task = "rollout"
    [data]
    train = "datasets/generated/ns_1e-3_64.h5"
    n_train = 1000
    test_start = 1000       # the test trajectories follow the training ones in the same file
    n_test = 200
    history = 10
    horizon = 40
    [model]
    name = "fno"
    width = 20
    modes = [24, 23]

Epoch ``e`` visits the trajectories in the permutation drawn from ``seed + e``. Single process.
"""

from __future__ import annotations

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
    TrainSettings,
    _closest,
    check_keys,
    dataclass_from_dict,
    parse_settings,
)
from pdesurrogates.train.engine import RunContext, Task


@dataclass(frozen=True)
class RolloutData:
    """The ``[data]`` table of task ``rollout``.

    Attributes
    ----------
    train : str
        File of trajectories (outputs ``(N, 1, T, *spatial)``).
    test : tuple of str
        Test files; empty means the training file from ``test_start`` on.
    n_train, n_test : int
        Trajectories used (0 = all; ``n_test`` counts from ``test_start``).
    test_start : int
        First test trajectory.
    history : int
        Frames the model sees (its input channels).
    horizon : int
        Frames predicted after the window (0 = all that follow).
    train_stride : int
        Spatial subsampling.
    """

    train: str = ""
    test: tuple[str, ...] = ()
    n_train: int = 0
    n_test: int = 0
    test_start: int = 0
    history: int = 10
    horizon: int = 0
    train_stride: int = 1

    def validate(self, where: str) -> None:
        if not self.train:
            raise UserInputError(f"{where}: 'train' (path of the trajectory file) is required")
        if self.history < 1 or self.horizon < 0 or self.train_stride < 1:
            raise UserInputError(f"{where}: need history >= 1, horizon >= 0 and train_stride >= 1, got "
                                 f"{self.history}, {self.horizon}, {self.train_stride}")
        for name in ("n_train", "n_test", "test_start"):
            if getattr(self, name) < 0:
                raise UserInputError(f"{where}: {name} must be >= 0, got {getattr(self, name)}")


@dataclass(frozen=True)
class RolloutConfig:
    """A whole run of task ``rollout``: ``data``, the registry ``model`` config and the engine's tables."""

    data: RolloutData
    model: Any
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: TrainerConfig = field(default_factory=TrainerConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    seed: int = 0
    task: str = "rollout"

    def validate(self) -> None:
        TrainSettings.validate(self)
        self.data.validate("config [data]")


def load_frames(path: str, start: int, n: int, stride: int, where: str) -> torch.Tensor:
    """Trajectories ``[start, start + n)`` of ``path`` as ``(n, T, *spatial)`` float32."""
    from pdesurrogates.data import open_dataset

    if not Path(path).is_file():
        raise FileNotFoundError(f"{where}: trajectory file {path} not found (generate it first, e.g. "
                                f"`pdesurrogates generate --preset ns_1e-3_64`)")
    ds = open_dataset(path)
    total, shape = len(ds), tuple(ds.meta["output_shape"])
    ds.close()
    if len(shape) < 3 or shape[0] != 1:
        raise UserInputError(f"{where}: {path} holds outputs of shape {shape}; task 'rollout' needs one-channel "
                             f"trajectories (1, T, *spatial)")
    stop = start + n if n else total
    if start >= total or stop > total:
        raise UserInputError(f"{where}: asks for trajectories {start}..{stop - 1} but {path} holds {total}")
    ds = open_dataset(path, indices=range(start, stop), stride=stride, in_memory=True)
    _, y = ds.arrays()
    ds.close()
    return torch.as_tensor(y[:, 0]).float()


def rollout(model: nn.Module, window: torch.Tensor, steps: int) -> torch.Tensor:
    """Step ``model`` ``steps`` times from ``window`` ``(B, history, *spatial)``; returns the
    predicted frames ``(B, steps, *spatial)``."""
    frames = []
    for _ in range(steps):
        nxt = model(window)
        frames.append(nxt)
        window = torch.cat([window[:, 1:], nxt], dim=1)
    return torch.cat(frames, dim=1)


@torch.no_grad()
def rollout_errors(model: nn.Module, frames: torch.Tensor, history: int, horizon: int,
                   device: torch.device | str = "cpu", batch_size: int = 50) -> dict[str, float]:
    """Errors of rolling ``model`` out on trajectories ``frames`` ``(N, T, *spatial)`` from their first
    ``history`` frames for ``horizon`` steps: relative L2 of the whole predicted trajectory
    (``l2``), mean of the per-step relative L2 (``l2_step``) and of the last step (``l2_last``),
    each a mean over trajectories."""
    from pdesurrogates.losses import relative_lp

    was = model.training
    model.eval()
    full, step, last = [], [], []
    for lo in range(0, frames.shape[0], batch_size):
        traj = frames[lo:lo + batch_size].to(device)
        pred = rollout(model, traj[:, :history], horizon)
        target = traj[:, history:history + horizon]
        full.append(relative_lp(pred.unsqueeze(1), target.unsqueeze(1), reduction="none")[:, 0])
        per = relative_lp(pred.unsqueeze(2), target.unsqueeze(2), reduction="none")  # (B, horizon)
        step.append(per.mean(dim=1))
        last.append(per[:, -1])
    model.train(was)
    return {"l2": float(torch.cat(full).mean()), "l2_step": float(torch.cat(step).mean()),
            "l2_last": float(torch.cat(last).mean())}


class RolloutTask(Task):
    """Recurrent-in-time training on trajectories; see the module docstring."""

    name = "rollout"

    def __init__(self, config: RolloutConfig):
        if not isinstance(config, RolloutConfig):
            raise TypeError(f"task 'rollout' needs a RolloutConfig, got {type(config).__name__}")
        config.validate()
        self.config = config

    @classmethod
    def parse_config(cls, raw: Mapping[str, Any], where: str = "config",
                     base_dir: str | Path | None = None) -> RolloutConfig:
        check_keys(raw, ["task", "seed", "data", "model", "optimizer", "schedule", "train", "eval"], where)
        if not isinstance(raw.get("data"), Mapping):
            raise UserInputError(f"{where}: missing table [data] (trajectory files)")
        data = dataclass_from_dict(RolloutData, raw["data"], f"{where} [data]")
        if base_dir is not None:
            from pdesurrogates.train.config import _resolve_path

            data = dataclasses.replace(data, train=_resolve_path(data.train, Path(base_dir)),
                                       test=tuple(_resolve_path(t, Path(base_dir)) for t in data.test))
        from pdesurrogates import models

        table = raw.get("model")
        if not isinstance(table, Mapping) or "name" not in table:
            raise UserInputError(f"{where}: missing [model] table with a 'name' (a registered model such as 'fno')")
        if table["name"] not in models.MODELS:
            raise UserInputError(f"{where} [model]: unknown model {table['name']!r}"
                                 f"{_closest(str(table['name']), models.MODELS.names())}; valid: {models.MODELS.names()}")
        fields = [f.name for f in dataclasses.fields(models.MODELS[table["name"]].config_class)]
        check_keys(table, fields, f"{where} [model] ({table['name']})")
        try:
            model = models.config_from_dict(dict(table))
        except (TypeError, KeyError, ValueError) as exc:
            raise UserInputError(f"{where} [model]: {exc.args[0] if exc.args else exc}") from exc
        config = RolloutConfig(data=data, model=model, **parse_settings(raw, where))
        config.validate()
        return config

    # ---- data
    def setup(self, run: RunContext) -> None:
        if run.dist.world_size > 1:
            raise UserInputError("task 'rollout' runs in one process")
        d = self.config.data
        self.train_frames = load_frames(d.train, 0, d.n_train, d.train_stride, "config [data] train")
        n_frames = self.train_frames.shape[1]
        self.horizon = d.horizon or n_frames - d.history
        if d.history + self.horizon > n_frames or self.horizon < 1:
            raise UserInputError(f"config [data]: history {d.history} + horizon {self.horizon} frames, but the "
                                 f"trajectories in {d.train} have {n_frames}")
        self.tests = {}
        files = d.test or (d.train,)
        for i, path in enumerate(files):
            start = d.test_start
            if Path(path).resolve() == Path(d.train).resolve() and start < self.train_frames.shape[0]:
                raise UserInputError(f"config [data]: the test trajectories of {path} must start after the "
                                     f"{self.train_frames.shape[0]} training ones (test_start >= n_train)")
            frames = load_frames(path, start, d.n_test, d.train_stride, f"config [data] test[{i}]")
            if frames.shape[1] < d.history + self.horizon or frames.shape[2:] != self.train_frames.shape[2:]:
                raise UserInputError(f"config [data] test[{i}]: trajectories {tuple(frames.shape[1:])} do not "
                                     f"match the training ones {tuple(self.train_frames.shape[1:])}")
            self.tests[f"test{i}"] = frames
        ndim = self.train_frames.ndim - 2
        from pdesurrogates.train.tasks.surrogate import fill_model_shape

        self.model_cfg = fill_model_shape(self.config.model, d.history, 1, ndim)

    def build_model(self) -> nn.Module:
        from pdesurrogates import models

        return models.build(self.model_cfg)

    def model_config(self) -> Any:
        return self.model_cfg

    def plan(self, epoch: int, run: RunContext) -> list[torch.Tensor]:
        n, b = self.train_frames.shape[0], self.config.train.batch_size
        order = torch.randperm(n, generator=torch.Generator().manual_seed(run.seed + epoch))
        return [order[i:i + b] for i in range(0, n, b)]

    def loss(self, model: nn.Module, item: torch.Tensor, run: RunContext):
        from pdesurrogates.losses import relative_lp

        h = self.config.data.history
        traj = self.train_frames[item].to(run.device)
        window = traj[:, :h]
        total = traj.new_zeros(())
        for t in range(self.horizon):
            nxt = model(window)
            total = total + relative_lp(nxt, traj[:, h + t:h + t + 1])
            window = torch.cat([window[:, 1:], nxt], dim=1)
        return total, {"per_step": total.detach() / self.horizon}

    def evaluate(self, model: nn.Module, run: RunContext) -> dict[str, float]:
        row = {}
        h = self.config.data.history
        for name, frames in self.tests.items():
            errors = rollout_errors(model, frames, h, self.horizon, run.device, self.config.eval.batch_size)
            row.update({f"{name}_{key}": value for key, value in errors.items()})
        return row

    def monitor(self) -> str:
        return self.config.eval.monitor or "test0_l2"

    def checkpoint_extra(self) -> dict[str, Any]:
        return {"rollout": {"history": self.config.data.history, "horizon": self.horizon,
                            "train": self.config.data.train, "n_train": int(self.train_frames.shape[0])}}


__all__ = ["RolloutConfig", "RolloutData", "RolloutTask", "load_frames", "rollout", "rollout_errors"]
