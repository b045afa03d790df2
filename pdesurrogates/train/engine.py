"""The training engine: one optimiser loop for everything that trains.

A *task* says what is trained and on what (:class:`Task`: build the module, plan the batches of an
epoch, compute the loss of one batch, evaluate, export); the engine does the rest, the same way for
every task:

* optimiser (AdamW/Adam) and learning-rate schedule (warm-up, cosine/step/constant), per step;
* device, autocast precision (bf16/fp16 with a loss scaler that handles complex weights), gradient
  accumulation and clipping, NaN/Inf stop naming the step;
* ``torchrun`` data parallelism (DDP): every process trains on its share of each global batch;
* a run directory (below) with checkpoints and *bit-identical* resume, including after Ctrl-C;
* callbacks, a tqdm progress bar, ``metrics.csv`` (one row per epoch) and ``steps.csv``.

Run directory (``out_dir``; ``None`` trains in memory and writes nothing)::

    config.toml, config.json   the resolved config (when the task came from a config)
    metrics.csv                epoch, step, train_loss (+ its parts), lr, the task's evaluation metrics
    steps.csv                  step, epoch, loss, lr
    summary.json               status, best and final metrics, timing, checkpoint paths
    checkpoints/last/          the model checkpoint (pdesurrogates.models.load_checkpoint reads it)
                               + training_state.pt (optimiser, scaler, RNG, position, task state)
    checkpoints/best/          the model checkpoint with the best monitored metric

Reproducibility: the module is initialised after ``torch.manual_seed(seed)``; a task draws its
batches from the epoch (and step) number only, never from a shared generator, and the global RNG
state is saved with every checkpoint; training runs inside :func:`torch.random.fork_rng`. A run
stopped at any optimiser step (``train.stop_after``, Ctrl-C) and finished with ``resume`` ends with
the same weights, bit for bit, as one that was not stopped.

Adding a trainable thing is writing a :class:`Task` subclass (see ARCHITECTURE.md for a worked
example) and, for the command line, registering it in :data:`pdesurrogates.train.tasks.TASKS`.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pdesurrogates.errors import UserInputError
from pdesurrogates.models.checkpoint import find_checkpoint, tensor_state_dict
from pdesurrogates.train.config import TrainSettings, save_config
from pdesurrogates.train.distributed import DistContext, init_distributed, unwrap_model, wrap_model
from pdesurrogates.train.support import (
    LossScaler,
    autocast,
    json_safe,
    learning_rate,
    lr_factor,
    make_optimizer,
    read_csv,
    rng_state,
    set_rng_state,
    write_csv,
)

STATE_FILE = "training_state.pt"
RUN_FILES = ("config.toml", "config.json", "metrics.csv", "steps.csv", "summary.json", "checkpoints")

Callback = Callable[[str, dict], None]


class TrainingDiverged(UserInputError):
    """The loss became NaN or Inf; the message names the epoch and step."""


@dataclass
class RunContext:
    """What a task may know about the run it is part of.

    Attributes
    ----------
    device : torch.device
    dist : DistContext
        Rank and world size; ``dist.is_main`` is the process that writes files.
    out_dir : Path or None
        The run directory (None: in memory).
    resumed : bool
        True when the run continues from a checkpoint; the task's state (normalizers, ...) is then
        restored with :meth:`Task.load_state_dict` after :meth:`Task.setup`.
    seed : int
    precision : str
        ``"none"``, ``"bf16"`` or ``"fp16"``.
    """

    device: torch.device
    dist: DistContext
    out_dir: Path | None
    resumed: bool
    seed: int
    precision: str = "none"


class Task:
    """What to train and on what; the engine (:func:`fit`) does the training.

    Subclasses implement :meth:`build_model`, :meth:`plan` and :meth:`loss`; the rest has defaults.

    Attributes
    ----------
    name : str
        The task's registry name (``task = "..."`` in a config file).
    config : object or None
        The frozen config the task was made from; saved as ``config.toml`` in the run directory.
    """

    name: str = "task"
    config: Any = None

    # ---- set-up
    def setup(self, run: RunContext) -> None:
        """Load data, fit normalizers, draw pools: once per run, before the module is built."""

    def build_model(self) -> nn.Module:
        """A freshly initialised module (the engine seeds torch's RNG first and moves it to the device)."""
        raise NotImplementedError(f"{type(self).__name__} must implement build_model()")

    def model_config(self) -> Any:
        """The registry config of the module, for checkpoints (None: the run cannot be saved)."""
        return None

    # ---- one epoch
    def plan(self, epoch: int, run: RunContext) -> Sequence[Any]:
        """The micro-batches of ``epoch`` (0-based) for this process, in order.

        Items are whatever :meth:`loss` takes (index lists, step numbers, tensors). Every process
        must return the same number of items. The plan must depend only on ``epoch`` (and the
        seed, rank and world size), so that a resumed run sees the same batches.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement plan(epoch, run)")

    def loss(self, model: nn.Module, item: Any, run: RunContext) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``(scalar loss, {part name: detached scalar})`` of one micro-batch."""
        raise NotImplementedError(f"{type(self).__name__} must implement loss(model, item, run)")

    def item_weight(self, item: Any) -> float:
        """Weight of an item in the epoch's mean training loss (e.g. its number of samples)."""
        return float(len(item)) if hasattr(item, "__len__") else 1.0

    # ---- evaluation and results
    def evaluate(self, model: nn.Module, run: RunContext) -> dict[str, float]:
        """Metrics added to the epoch's row of ``metrics.csv`` (called on the main process only)."""
        return {}

    def monitor(self) -> str:
        """The metric (a ``metrics.csv`` column, lower is better) that picks the ``best`` checkpoint."""
        return "train_loss"

    def normalizers(self) -> dict[str, Any]:
        """Normalizers saved with the model checkpoint (``{"input": ..., "output": ...}``)."""
        return {}

    def checkpoint_extra(self) -> dict[str, Any]:
        """JSON metadata saved with every checkpoint (the task name is added by the engine)."""
        return {}

    def summary(self) -> dict[str, Any]:
        """Entries added to (or replacing) the run's summary, e.g. detailed final metrics."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        """Tensors and plain values the task needs to resume (saved in ``training_state.pt``)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""

    def close(self) -> None:
        """Release files (called when the run ends, however it ends)."""


def resume_directory(resume: str | os.PathLike) -> Path:
    """``checkpoints/last`` of the run ``resume`` (a run directory or that folder itself)."""
    path = Path(resume)
    if path.name == "last" and path.parent.name == "checkpoints":
        path = path.parent.parent
    last = path / "checkpoints" / "last"
    if not (last / STATE_FILE).is_file():
        raise FileNotFoundError(f"--resume {resume}: no {STATE_FILE} in {last}; "
                                f"expected a run directory written by `pdesurrogates train`")
    return last


def load_training_state(resume_dir: Path) -> dict:
    """``training_state.pt`` of a checkpoint, with a message naming the file when it is unreadable."""
    import pickle
    import zipfile

    file = resume_dir / STATE_FILE
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError) as err:
        raise UserInputError(f"--resume: cannot read {file} (truncated, corrupt or not written by "
                         f"`pdesurrogates train`): {err}") from err
    required = ("optimizer", "rng", "epoch", "batch", "step")
    if not isinstance(state, dict) or any(k not in state for k in required):
        raise UserInputError(f"--resume: {file} is not a training state (expected the keys {list(required)})")
    return state


# ----------------------------------------------------------------------------------------------
# The engine


@dataclass
class RunResult:
    """What :func:`fit` returns.

    Attributes
    ----------
    model : nn.Module
        The trained module (last weights), unwrapped from DDP.
    summary : dict
        Also written to ``summary.json`` when the run has a directory.
    metrics : list of dict
        One row per epoch (the rows of ``metrics.csv``).
    steps : list of dict
        One row per optimiser step (``step``, ``epoch``, ``loss``, ``lr``).
    """

    model: nn.Module
    summary: dict
    metrics: list[dict] = field(default_factory=list)
    steps: list[dict] = field(default_factory=list)
    best_state: dict | None = None

    def best_model(self) -> nn.Module:
        """The module with the weights of the best monitored epoch (the last ones if none was better)."""
        if self.best_state is None:
            return self.model
        import copy

        best = copy.deepcopy(self.model)
        best.load_state_dict(self.best_state)
        return best.eval()


def _prepare_out_dir(out: Path, resume_dir: Path | None, overwrite: bool, ctx: DistContext) -> None:
    if not ctx.is_main:
        return
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"output directory {out} is a file; choose another --out")
    resuming_here = resume_dir is not None and out.resolve() == resume_dir.parent.parent.resolve()
    existing = [name for name in RUN_FILES if (out / name).exists()]
    if existing and not resuming_here:
        if not overwrite:
            raise FileExistsError(f"{out} already holds a run ({', '.join(existing)}); pass --overwrite to "
                                  f"replace it, --resume {out} to continue it, or choose another --out")
        for name in existing:
            target = out / name
            shutil.rmtree(target) if target.is_dir() else target.unlink()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise PermissionError(f"cannot create the run directory {out}: {err.strerror}") from err
    if not os.access(out, os.W_OK):
        raise PermissionError(f"the run directory {out} is not writable")


def save_training_checkpoint(target: Path, model: nn.Module, model_cfg: Any, normalizers: dict,
                             extra: dict, state: dict | None) -> None:
    """Write a model checkpoint (+ training state) to ``target`` atomically (tmp dir, rename)."""
    from pdesurrogates.models import save_checkpoint

    tmp = target.with_name(f".{target.name}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    save_checkpoint(tmp, unwrap_model(model), model_cfg, normalizers=normalizers, extra=json_safe(extra))
    if state is not None:
        torch.save(state, tmp / STATE_FILE)
    old = target.with_name(f".{target.name}.old")
    if old.exists():
        shutil.rmtree(old)
    if target.exists():
        os.replace(target, old)
    os.replace(tmp, target)
    if old.exists():
        shutil.rmtree(old)


def fit(task: Task, settings: TrainSettings, out_dir: str | os.PathLike | None = None, *,
        resume: str | os.PathLike | None = None, device: str | torch.device | None = None,
        overwrite: bool = False, progress: bool = True, callback: Callback | None = None) -> RunResult:
    """Train ``task`` under ``settings``; see the module docstring.

    Parameters
    ----------
    task : Task
    settings : TrainSettings
        Optimiser, schedule, ``[train]`` and ``[eval]`` tables and the seed (any object with
        those attributes, such as a task's config).
    out_dir : path or None
        Run directory. ``None`` with ``resume`` continues in the resumed directory; ``None``
        without it trains in memory (no files, no checkpoints). A directory that already holds
        a run is refused unless ``overwrite`` (which deletes only the run's own files) or
        ``resume`` points at it.
    resume : path, optional
        Run directory (or its ``checkpoints/last``) to continue from.
    device : {"cpu", "cuda"} or torch.device, optional
        Default CUDA when available; an unavailable device is refused.
    progress : bool
        tqdm bar on the main process.
    callback : callable, optional
        ``callback(event, info)`` after every optimiser step (``"step"``: ``epoch``, ``step``,
        ``loss``, ``lr``, ``model``) and every epoch (``"epoch"``: the metrics row). It may raise
        ``KeyboardInterrupt`` to stop the run as Ctrl-C does.

    Returns
    -------
    RunResult
        ``summary["status"]`` is ``finished`` or ``stopped`` (``train.stop_after``).

    Raises
    ------
    TrainingDiverged
        The loss became NaN or Inf (the last good checkpoint is kept).
    KeyboardInterrupt
        After saving the state of the last completed step to ``checkpoints/last``.
    """
    resume_dir = resume_directory(resume) if resume is not None else None
    if out_dir is None and resume_dir is not None:
        out_dir = resume_dir.parent.parent
    ctx = init_distributed(device)
    try:
        devices = [ctx.device] if ctx.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            return _Run(task, settings, Path(out_dir) if out_dir is not None else None, resume_dir, ctx,
                        overwrite, progress, callback).run()
    finally:
        task.close()
        ctx.shutdown()


class _Run:
    """The state of one call of :func:`fit` (one method per phase)."""

    def __init__(self, task: Task, settings: TrainSettings, out: Path | None, resume_dir: Path | None,
                 ctx: DistContext, overwrite: bool, progress: bool, callback: Callback | None) -> None:
        self.t_start = time.perf_counter()
        self.task, self.settings, self.out, self.ctx = task, settings, out, ctx
        self.tcfg = settings.train
        self.callback = callback
        self.progress = progress
        self.device = ctx.device
        if self.tcfg.batch_size % ctx.world_size:
            raise UserInputError(f"config [train]: batch_size {self.tcfg.batch_size} must be divisible by the number "
                             f"of processes ({ctx.world_size}); it is the global batch")
        self.writes = out is not None and ctx.is_main
        if out is not None:
            _prepare_out_dir(out, resume_dir, overwrite, ctx)
        ctx.barrier()
        self.run_ctx = RunContext(device=self.device, dist=ctx, out_dir=out, resumed=resume_dir is not None,
                                  seed=int(settings.seed), precision=self.tcfg.precision)
        task.setup(self.run_ctx)
        if out is not None and task.model_config() is None:
            raise UserInputError(f"task {task.name!r} has no model config, so its run cannot be saved: "
                             f"train it in memory (out_dir=None)")
        torch.manual_seed(int(settings.seed))
        self.model = task.build_model().to(self.device)
        self.state: dict | None = None
        if resume_dir is not None:
            self._restore_model(resume_dir)
        self.ddp_model = wrap_model(self.model, ctx)
        self.optimizer = make_optimizer(self.model.parameters(), settings)
        self.scaler = LossScaler(enabled=self.tcfg.precision == "fp16")
        self.steps_per_epoch = self._steps_per_epoch()
        self.epoch, self.batch, self.step = 0, 0, 0
        self.epoch_sums: dict[str, float] = {}
        self.best = {"metric": task.monitor(), "value": None, "epoch": None}
        self.elapsed_before = 0.0
        self.metrics_rows: list[dict] = []
        self.steps_rows: list[dict] = []
        self.last_eval: dict[str, float] = {}
        self.best_state: dict | None = None
        if self.state is not None:
            self._restore_state(resume_dir)
        self.rng = rng_state(self.device)
        if self.writes and task.config is not None:
            save_config(task.config, out / "config.toml")

    # ---- resume
    def _restore_model(self, resume_dir: Path) -> None:
        from pdesurrogates import models

        self.state = load_training_state(resume_dir)
        ckpt = models.load_checkpoint(resume_dir)
        expected = self.task.model_config()
        if models.config_to_dict(ckpt.config) != models.config_to_dict(expected):
            raise UserInputError(f"--resume {resume_dir}: its model config {models.config_to_dict(ckpt.config)} "
                             f"differs from this config's {models.config_to_dict(expected)}")
        # the saved tensors (not ckpt.model.state_dict(): neuralop models add a '_metadata' entry)
        weights = torch.load(resume_dir / "weights.pt", map_location="cpu", weights_only=True)
        self.model.load_state_dict(weights)
        self.task.load_state_dict({**self.state.get("task", {}), "normalizers": dict(ckpt.normalizers)})

    def _restore_state(self, resume_dir: Path) -> None:
        state, ctx = self.state, self.ctx
        if state.get("batch", 0) and state.get("world_size") != ctx.world_size:
            raise UserInputError(f"--resume {resume_dir}: stopped mid-epoch with {state.get('world_size')} processes; "
                             f"resume it with the same number ({ctx.world_size} now)")
        if state.get("batch", 0) and state.get("n_items", self.n_items) != self.n_items:
            raise UserInputError(f"--resume {resume_dir}: stopped mid-epoch with {state['n_items']} batches per epoch, "
                             f"this config gives {self.n_items} (the data, batch size or steps changed)")
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state.get("scaler", {}))
        set_rng_state(state["rng"], self.device)
        self.epoch, self.batch, self.step = int(state["epoch"]), int(state["batch"]), int(state["step"])
        self.epoch_sums = {k: float(v) for k, v in state.get("epoch_sums", {}).items()}
        value = state.get("best_value")
        self.best = {"metric": state.get("best_metric", self.best["metric"]),
                     "value": value if value is not None and math.isfinite(value) else None,
                     "epoch": state.get("best_epoch")}
        self.elapsed_before = float(state.get("elapsed", 0.0))
        run_dir = resume_dir.parent.parent
        self.metrics_rows = [r for r in read_csv(run_dir / "metrics.csv") if int(r["epoch"]) <= self.epoch]
        self.steps_rows = [r for r in read_csv(run_dir / "steps.csv") if int(r["step"]) <= self.step]

    def _steps_per_epoch(self) -> int:
        plan = self.task.plan(0, self.run_ctx)
        self.n_items = len(plan)
        if self.n_items == 0:
            raise UserInputError(f"task {self.task.name!r} planned no batches for an epoch (no training data?)")
        return math.ceil(self.n_items / self.tcfg.accumulate)

    # ---- files
    def training_state(self) -> dict:
        return {
            "optimizer": self.optimizer.state_dict(), "scaler": self.scaler.state_dict(), "rng": self.rng,
            "epoch": self.epoch, "batch": self.batch, "step": self.step, "epoch_sums": dict(self.epoch_sums),
            "world_size": self.ctx.world_size, "n_items": self.n_items, "task": self.task.state_dict(),
            "best_metric": self.best["metric"], "best_value": self.best["value"], "best_epoch": self.best["epoch"],
            "elapsed": self.elapsed(),
        }

    def elapsed(self) -> float:
        return self.elapsed_before + time.perf_counter() - self.t_start

    def checkpoint_extra(self, epoch_done: int) -> dict:
        return {**self.task.checkpoint_extra(), "task": self.task.name, "epoch": epoch_done, "step": self.step,
                "metrics": self.last_eval}

    def save(self, which: str, state: dict | None) -> None:
        save_training_checkpoint(self.out / "checkpoints" / which, self.model, self.task.model_config(),
                                 self.task.normalizers(), self.checkpoint_extra(self.epoch), state)

    def save_last(self) -> None:
        if self.writes:
            self.save("last", self.training_state())
            self.write_logs()

    def write_logs(self) -> None:
        if self.writes:
            write_csv(self.out / "metrics.csv", self.metrics_rows)
            write_csv(self.out / "steps.csv", self.steps_rows)

    def summary(self, status: str, message: str = "") -> dict:
        from pdesurrogates import models

        wall = self.elapsed()
        cfg = self.task.model_config()
        result = {
            "status": status, "message": message, "task": self.task.name,
            "out_dir": str(self.out) if self.out is not None else None,
            "epochs": self.tcfg.epochs, "epochs_completed": self.epoch, "step": self.step,
            "best": dict(self.best), "final": self.last_eval,
            "train_loss": self.metrics_rows[-1]["train_loss"] if self.metrics_rows else None,
            "model": models.config_to_dict(cfg) if cfg is not None else type(self.model).__name__,
            "n_parameters": sum(p.numel() for p in self.model.parameters()),
            "device": str(self.device), "world_size": self.ctx.world_size, "wall_time_s": wall,
            **self.task.checkpoint_extra(),
        }
        result.update(self.task.summary())
        if self.out is not None:
            result["checkpoints"] = {"last": str(self.out / "checkpoints" / "last"),
                                     "best": str(self.out / "checkpoints" / "best")}
        if self.writes:
            (self.out / "summary.json").write_text(json.dumps(json_safe(result), indent=2) + "\n")
        return result

    # ---- training
    def run(self) -> RunResult:
        tcfg = self.tcfg
        bar = None
        if self.ctx.is_main and self.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=tcfg.epochs * self.steps_per_epoch, initial=self.step, unit="step", dynamic_ncols=True)
        self.bar = bar
        self.model.train()
        status, message = "finished", ""
        try:
            for epoch in range(self.epoch, tcfg.epochs):
                self._train_epoch(epoch)
                if self._end_epoch(epoch):
                    status = "stopped"
                    message = (f"stopped after epoch {epoch + 1} (train.stop_after or train.time_limit)"
                               + (f"; continue with --resume {self.out}" if self.out is not None else ""))
                    break
        except TrainingDiverged as exc:
            self.summary("diverged", str(exc))
            raise
        except KeyboardInterrupt:
            self.save_last()
            self.summary("interrupted", f"interrupted at epoch {self.epoch + 1}, step {self.step}"
                         + (f"; continue with --resume {self.out}" if self.out is not None else ""))
            if self.writes:
                print(f"\ninterrupted: state after step {self.step} saved to {self.out / 'checkpoints' / 'last'}; "
                      f"continue with `pdesurrogates train --resume {self.out}`", flush=True)
            raise
        finally:
            if bar is not None:
                bar.close()
        self.model.eval()
        return RunResult(self.model, self.summary(status, message), self.metrics_rows, self.steps_rows,
                         self.best_state)

    def _train_epoch(self, epoch: int) -> None:
        tcfg, ctx, task = self.tcfg, self.ctx, self.task
        items = task.plan(epoch, self.run_ctx)
        if len(items) != self.n_items:
            raise UserInputError(f"task {task.name!r} planned {len(items)} batches for epoch {epoch + 1}, "
                             f"{self.n_items} for the first; the number must not change")
        resuming_epoch = epoch == self.epoch and self.batch > 0
        sums = dict(self.epoch_sums) if resuming_epoch else {}
        b = self.batch if resuming_epoch else 0
        self.t_epoch = time.perf_counter()
        while b < self.n_items:
            group = items[b:b + tcfg.accumulate]
            lr = learning_rate(self.settings, self.step, self.steps_per_epoch)
            for pg in self.optimizer.param_groups:
                pg["lr"] = lr
            self.optimizer.zero_grad(set_to_none=True)
            loss_sum = torch.zeros((), device=self.device, dtype=torch.float64)
            parts_sum: dict[str, torch.Tensor] = {}
            weight = 0.0
            for k, item in enumerate(group):
                sync = ctx.distributed and k < len(group) - 1
                with (self.ddp_model.no_sync() if sync else nullcontext()):
                    total, parts = task.loss(self.ddp_model, item, self.run_ctx)
                    self.scaler.scale_loss(total / len(group)).backward()
                loss_sum = loss_sum + total.detach().double() / len(group)
                for name, v in parts.items():
                    if isinstance(v, torch.Tensor):
                        parts_sum[name] = parts_sum.get(name, 0) + v.detach().double() / len(group)
                weight += task.item_weight(item)
            loss_value = float(ctx.mean(loss_sum))
            if not math.isfinite(loss_value):
                raise TrainingDiverged(
                    f"loss became {loss_value} at epoch {epoch + 1}, optimiser step {self.step + 1} "
                    f"(batch {b + 1} of {self.n_items}); stopped. "
                    + (f"The last good checkpoint (epoch {self.epoch}) is kept in "
                       f"{self.out / 'checkpoints' / 'last'}. " if self.out is not None else "")
                    + "Try a lower optimizer.lr, warm-up, train.grad_clip or precision = \"none\"."
                )
            grads_finite = self.scaler.unscale_(self.model.parameters())
            if grads_finite:  # fp16 overflow: skip this step (the scale was lowered)
                if tcfg.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(self.model.parameters(), tcfg.grad_clip)
                self.optimizer.step()
            self.scaler.update(grads_finite)
            self.step += 1
            b += len(group)
            weight *= ctx.world_size
            sums["loss"] = sums.get("loss", 0.0) + loss_value * weight
            sums["weight"] = sums.get("weight", 0.0) + weight
            for name, v in parts_sum.items():
                sums[name] = sums.get(name, 0.0) + float(ctx.mean(v)) * weight
            self.steps_rows.append({"step": self.step, "epoch": epoch + 1, "loss": loss_value, "lr": lr})
            self.epoch, self.batch, self.epoch_sums = epoch, b, dict(sums)
            self.rng = rng_state(self.device)
            if self.bar is not None:
                self.bar.set_description(f"epoch {epoch + 1}/{tcfg.epochs}", refresh=False)
                self.bar.set_postfix(loss=f"{loss_value:.4g}", refresh=False)
                self.bar.update(1)
            if self.callback is not None:
                self.callback("step", {"epoch": epoch, "step": self.step, "loss": loss_value, "lr": lr,
                                       "model": self.model})

    def _end_epoch(self, epoch: int) -> bool:
        """Log, evaluate and checkpoint after ``epoch``; True when the run stops here (stop_after)."""
        tcfg, ctx = self.tcfg, self.ctx
        sums = self.epoch_sums
        total_weight = max(sums.get("weight", 1.0), 1e-300)
        row: dict[str, Any] = {"epoch": epoch + 1, "step": self.step, "train_loss": sums.get("loss", 0.0) / total_weight,
                               "lr": self.optimizer.param_groups[0]["lr"],
                               "epoch_time_s": time.perf_counter() - self.t_epoch}
        for name, v in sums.items():
            if name not in ("loss", "weight"):
                row[f"train_{name.replace('/', '_')}"] = v / total_weight
        done = epoch + 1
        self.epoch, self.batch, self.epoch_sums = done, 0, {}
        self.rng = rng_state(self.device)
        every = self.settings.eval.every
        if ctx.is_main and (done % every == 0 or done == tcfg.epochs):
            metrics = self.task.evaluate(self.model, self.run_ctx)
            if metrics:
                self.last_eval = dict(metrics)
                row.update(metrics)
        self.metrics_rows.append(row)
        monitored = row.get(self.best["metric"])
        improved = (isinstance(monitored, (int, float)) and math.isfinite(monitored)
                    and (self.best["value"] is None or monitored < self.best["value"]))
        if improved:
            self.best.update(value=float(monitored), epoch=done)
            self.best_state = {k: v.detach().clone() for k, v in tensor_state_dict(self.model).items()}
        out_of_time = bool(tcfg.time_limit) and self.elapsed() >= tcfg.time_limit
        stopping = (bool(tcfg.stop_after) and done >= tcfg.stop_after or out_of_time) and done < tcfg.epochs
        if self.writes:
            if improved:
                self.save("best", None)
            if done % tcfg.checkpoint_every == 0 or done == tcfg.epochs or stopping:
                self.save_last()
            else:
                self.write_logs()
        ctx.barrier()
        if self.callback is not None:
            self.callback("epoch", dict(row))
        if self.bar is not None:
            shown = ", ".join(f"{k} {v:.4g}" for k, v in row.items()
                              if k not in ("epoch", "step", "lr", "epoch_time_s") and isinstance(v, float))
            self.bar.write(f"epoch {done}: {shown}")
        return stopping


__all__ = [
    "LossScaler",
    "RunContext",
    "RunResult",
    "Task",
    "TrainingDiverged",
    "autocast",
    "find_checkpoint",
    "fit",
    "learning_rate",
    "lr_factor",
]
