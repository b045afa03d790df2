"""The training loop: ``train(config, out_dir, resume=None, device=None) -> summary``.

A run directory holds::

    config.toml, config.json   the resolved config (absolute data paths)
    metrics.csv                one row per epoch: train loss (and its parts), lr, evaluation errors
    steps.csv                  one row per optimiser step: loss and learning rate
    summary.json               status, best and final metrics, timing, where the checkpoints are
    checkpoints/last/          model checkpoint (pdesurrogates.models.Surrogate.load reads it)
                               + training_state.pt (optimizer, scaler, RNG, epoch, step, position)
    checkpoints/best/          model checkpoint with the best monitored metric

Reproducibility. The model is initialised from ``config.seed``; the order of the samples of
epoch ``e`` is a permutation drawn from ``seed + e`` (``DistributedSampler``'s rule, also used for
one process); the global RNG state (dropout, if any) is saved with every checkpoint. Training
runs inside :func:`torch.random.fork_rng`, so the caller's RNG state is untouched. On the CPU a
run is therefore deterministic, and a run stopped at any optimiser step (``train.stop_after``,
Ctrl-C) and finished with ``resume`` ends with the same weights, bit for bit, as one that was not
stopped.

Multi-process runs (``torchrun``): ``train.batch_size`` is the global batch; each of K processes
takes ``batch_size / K`` samples of the same per-epoch permutation, DDP averages the gradients,
so the optimiser sees the same batches as a single process. Rank 0 evaluates and writes files.

Failures. A NaN or Inf loss raises :class:`TrainingDiverged` (a ``ValueError``) naming the epoch
and step, without touching the last good checkpoint. ``KeyboardInterrupt`` saves the state after
the last completed optimiser step to ``checkpoints/last`` and re-raises.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import shutil
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch

from pdesurrogates.train.config import TrainConfig, resolve_task, save_config
from pdesurrogates.train.distributed import (
    DistContext,
    init_distributed,
    unwrap_model,
    wrap_model,
)
from pdesurrogates.train.evaluation import Predictor, autocast, evaluate_dataset, is_periodic

STATE_FILE = "training_state.pt"
RUN_FILES = ("config.toml", "config.json", "metrics.csv", "steps.csv", "summary.json", "checkpoints")

Callback = Callable[[str, dict], None]


class TrainingDiverged(ValueError):
    """The loss became NaN or Inf; the message names the epoch and step."""


def train(config: Any, out_dir: str | os.PathLike | None, resume: str | os.PathLike | None = None,
          device: str | torch.device | None = None, **kwargs: Any) -> dict:
    """Train what ``config`` describes and return the run's summary.

    Dispatches on ``config.task`` through :data:`pdesurrogates.train.config.TASKS` (the default
    task ``"surrogate"`` is :func:`train_surrogate`).

    Parameters
    ----------
    config : TrainConfig or another task's config
    out_dir : path or None
        Run directory; None with ``resume`` continues in the resumed directory.
    resume : path, optional
        Run directory (or its ``checkpoints/last``) to continue from.
    device : {"cpu", "cuda"}, optional
        Default CUDA when available.
    **kwargs
        Passed to the task's trainer (``overwrite``, ``progress``, ``callback``).
    """
    trainer = resolve_task(getattr(config, "task", "surrogate"), 1)
    return trainer(config, out_dir, resume=resume, device=device, **kwargs)


# ----------------------------------------------------------------------------------------------
# Helpers


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


def _learning_rate(config: TrainConfig, step: int, steps_per_epoch: int) -> float:
    factor = lr_factor(config.schedule, step, steps_per_epoch, config.train.epochs)
    lr, floor = config.optimizer.lr, config.schedule.min_lr
    if config.schedule.name == "cosine" and step >= config.schedule.warmup_epochs * steps_per_epoch:
        return floor + (lr - floor) * factor
    return lr * factor


def _open(path: str, stride: int, n: int, in_memory: bool, where: str, start: int = 0):
    """Samples ``[start, start + n)`` of ``path`` (all from ``start`` when ``n`` is 0)."""
    from pdesurrogates.data import open_dataset

    try:
        ds = open_dataset(path, stride=stride, in_memory=False)
    except FileNotFoundError:
        raise FileNotFoundError(f"{where}: data file {path} not found (generate it first, e.g. "
                                f"`pdesurrogates generate ...`; relative paths are taken from the "
                                f"current directory)") from None
    if n or start:
        stop = start + n if n else len(ds)
        if stop > len(ds) or start >= len(ds):
            raise ValueError(f"{where}: asks for samples {start}..{stop - 1} but {path} holds {len(ds)}")
        ds.close()
        ds = open_dataset(path, stride=stride, indices=range(start, stop), in_memory=in_memory)
    elif in_memory:
        ds.close()
        ds = open_dataset(path, stride=stride, in_memory=True)
    return ds


def _stride_for(path: str, resolution: int, where: str) -> int:
    from pdesurrogates.data import open_dataset
    from pdesurrogates.train.evaluation import stride_for_resolution

    if not Path(path).is_file():
        raise FileNotFoundError(f"{where}: data file {path} not found")
    ds = open_dataset(path)
    spatial = ds.meta["spatial_shape"]
    ds.close()
    return stride_for_resolution(spatial, resolution, where)


def _as_tensors(ds, in_memory: bool) -> tuple[torch.Tensor, torch.Tensor] | None:
    """All samples as two tensors when the dataset was loaded into memory (batches by indexing)."""
    if not in_memory:
        return None
    x, y = ds.arrays()
    return torch.from_numpy(x), torch.from_numpy(y)


def _fill_model_shape(model_cfg: Any, in_channels: int, out_channels: int, ndim: int) -> Any:
    """Set in/out channels and ndim of the model config from the data where left at the default."""
    names = {f.name: f for f in dataclasses.fields(model_cfg)}
    changes = {}
    for name, value in (("in_channels", in_channels), ("out_channels", out_channels), ("ndim", ndim)):
        if name not in names:
            continue
        current = getattr(model_cfg, name)
        if current == value:
            continue
        if current != names[name].default:
            raise ValueError(f"config [model]: {name} = {current} but the training data has {value} "
                             f"(leave {name} out to take it from the data)")
        changes[name] = value
    return dataclasses.replace(model_cfg, **changes) if changes else model_cfg


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


def _rng_state(device: torch.device) -> dict:
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def _write_csv(path: Path, rows: list[dict]) -> None:
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


def _read_csv(path: Path) -> list[dict]:
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


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


def find_checkpoint(path: str | os.PathLike, which: str = "best") -> Path:
    """The model checkpoint directory inside a run directory (or ``path`` itself if it is one).

    Parameters
    ----------
    path : path
        A run directory (``checkpoints/best`` then ``checkpoints/last`` are tried, ``which``
        first) or a checkpoint directory (holding ``config.json`` and ``weights.pt``).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint or run directory {path} does not exist")
    if (path / "weights.pt").is_file():
        return path
    order = [which, "last" if which == "best" else "best"]
    for name in order:
        candidate = path / "checkpoints" / name
        if (candidate / "weights.pt").is_file():
            return candidate
    raise FileNotFoundError(f"{path} is neither a checkpoint directory (config.json + weights.pt) nor a "
                            f"run directory with checkpoints/best or checkpoints/last")


# ----------------------------------------------------------------------------------------------
# The surrogate trainer


def train_surrogate(config: TrainConfig, out_dir: str | os.PathLike | None,
                    resume: str | os.PathLike | None = None, device: str | torch.device | None = None,
                    *, overwrite: bool = False, progress: bool = True,
                    callback: Callback | None = None) -> dict:
    """Train a neural-operator surrogate (task ``"surrogate"``); see the module docstring.

    Parameters
    ----------
    config : TrainConfig
    out_dir : path or None
        Run directory. A directory that already holds a run is refused unless ``overwrite``
        (which deletes only the run's own files) or ``resume`` points at it.
    resume : path, optional
        Run directory (or its ``checkpoints/last``) to continue from; its checkpoint must come
        from the same model and data layout.
    device : {"cpu", "cuda"} or torch.device, optional
    overwrite : bool
        Replace an existing run in ``out_dir``.
    progress : bool
        Show a tqdm bar (rank 0 only).
    callback : callable, optional
        ``callback(event, info)`` after every optimiser step (``event="step"``; ``info`` has
        ``epoch``, ``step``, ``loss``, ``lr``, ``model``) and every epoch (``"epoch"``, with the
        metrics row). It may raise ``KeyboardInterrupt`` to stop the run cleanly.

    Returns
    -------
    dict
        The summary also written to ``summary.json``: ``status`` (``finished``, ``stopped``),
        ``epochs_completed``, ``step``, ``best``, ``final``, ``eval_sets``, timings, paths.
    """
    if not isinstance(config, TrainConfig):
        raise TypeError(f"train_surrogate needs a TrainConfig, got {type(config).__name__}")
    if out_dir is None and resume is None:
        raise ValueError("give out_dir (a new run directory) or resume (a run to continue)")
    resume_dir = None
    if resume is not None:
        resume_path = Path(resume)
        if resume_path.name == "last" and resume_path.parent.name == "checkpoints":
            resume_path = resume_path.parent.parent
        resume_dir = resume_path / "checkpoints" / "last"
        if not (resume_dir / STATE_FILE).is_file():
            raise FileNotFoundError(f"--resume {resume}: no {STATE_FILE} in {resume_dir}; "
                                    f"expected a run directory written by `pdesurrogates train`")
        if out_dir is None:
            out_dir = resume_path
    out = Path(out_dir)
    ctx = init_distributed(device)
    try:
        devices = [ctx.device] if ctx.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            return _run(config, out, resume_dir, ctx, overwrite, progress, callback)
    finally:
        ctx.shutdown()


def _prepare_out_dir(out: Path, resume_dir: Path | None, overwrite: bool, ctx: DistContext) -> None:
    if not ctx.is_main:
        return
    resuming_here = resume_dir is not None and out.resolve() == resume_dir.parent.parent.resolve()
    existing = [name for name in RUN_FILES if (out / name).exists()]
    if existing and not resuming_here:
        if not overwrite:
            raise FileExistsError(f"{out} already holds a run ({', '.join(existing)}); pass --overwrite to "
                                  f"replace it, --resume {out} to continue it, or choose another --out")
        for name in existing:
            target = out / name
            shutil.rmtree(target) if target.is_dir() else target.unlink()
    out.mkdir(parents=True, exist_ok=True)


def _save_training_checkpoint(target: Path, model, model_cfg, normalizers, extra: dict,
                              state: dict | None) -> None:
    """Write a model checkpoint (+ training state) to ``target`` atomically (tmp dir, rename)."""
    from pdesurrogates.models import save_checkpoint

    tmp = target.with_name(f".{target.name}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    save_checkpoint(tmp, unwrap_model(model), model_cfg, normalizers=normalizers, extra=_json_safe(extra))
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


def _run(config: TrainConfig, out: Path, resume_dir: Path | None, ctx: DistContext, overwrite: bool,
         progress: bool, callback: Callback | None) -> dict:
    from pdesurrogates import models
    from pdesurrogates.data import GaussianNormalizer
    from pdesurrogates.losses import build_loss

    t_start = time.perf_counter()
    cfg, tcfg, device = config, config.train, ctx.device
    if tcfg.batch_size % ctx.world_size:
        raise ValueError(f"config [train]: batch_size {tcfg.batch_size} must be divisible by the number of "
                         f"processes ({ctx.world_size}); it is the global batch")
    _prepare_out_dir(out, resume_dir, overwrite, ctx)
    ctx.barrier()

    # ---- data
    train_stride = cfg.data.train_stride
    if cfg.data.train_resolution:
        train_stride = _stride_for(cfg.data.train, cfg.data.train_resolution, "config [data] train_resolution")
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, train_stride=train_stride,
                                                                train_resolution=0))
    train_ds = _open(cfg.data.train, train_stride, cfg.data.n_train, cfg.data.in_memory,
                     "config [data] train")
    x0, y0 = train_ds[0]
    ndim = x0.ndim - 1
    output_lead = tuple(y0.shape[: y0.ndim - ndim])
    in_channels, out_channels = int(x0.shape[0]), int(math.prod(output_lead))
    eval_sets = []
    for i, path in enumerate(cfg.data.test):
        if Path(path).resolve() == Path(cfg.data.train).resolve() and cfg.data.test_start < len(train_ds):
            raise ValueError(f"config [data] test[{i}] is the training file {path}: its test samples must "
                             f"start after the {len(train_ds)} training samples (set test_start >= "
                             f"{len(train_ds)} and n_train)")
        strides = cfg.data.eval_strides
        if cfg.data.test_resolutions:
            strides = tuple(_stride_for(path, r, f"config [data] test_resolutions for {path}")
                            for r in cfg.data.test_resolutions)
        for s in strides:
            ds = _open(path, s, cfg.data.n_test, cfg.data.in_memory, f"config [data] test[{i}]",
                       start=cfg.data.test_start)
            xs, ys = ds[0]
            if xs.shape[0] != in_channels or tuple(ys.shape[: ys.ndim - ndim]) != output_lead:
                raise ValueError(f"config [data] test[{i}] {path}: samples x {tuple(xs.shape)}, y {tuple(ys.shape)} "
                                 f"do not match the training data x {tuple(x0.shape)}, y {tuple(y0.shape)}")
            eval_sets.append({"name": f"test{i}_s{s}", "file": path, "stride": s, "dataset": ds,
                              "resolution": "x".join(map(str, xs.shape[1:])),
                              "periodic": is_periodic(ds.meta)})
    periodic = is_periodic(train_ds.meta)
    metric_names = ["train_loss"] + [f"{e['name']}_{m}" for e in eval_sets for m in ("l2", "h1")]
    if cfg.eval.monitor and cfg.eval.monitor not in metric_names:
        raise ValueError(f"config [eval] monitor {cfg.eval.monitor!r} is not a metric; available: {metric_names}")

    # ---- model, normalizers, loss
    model_cfg = _fill_model_shape(cfg.model, in_channels, out_channels, ndim)
    cfg = dataclasses.replace(cfg, model=model_cfg)
    torch.manual_seed(cfg.seed)
    model = models.build(model_cfg).to(device)
    normalizers: dict[str, Any] = {}
    if resume_dir is not None:
        from pdesurrogates.models import load_checkpoint

        ckpt = load_checkpoint(resume_dir)
        if models.config_to_dict(ckpt.config) != models.config_to_dict(model_cfg):
            raise ValueError(f"--resume {resume_dir}: its model config {models.config_to_dict(ckpt.config)} "
                             f"differs from this config's {models.config_to_dict(model_cfg)}")
        # load the saved tensors (not ckpt.model.state_dict(): neuralop models add a '_metadata' entry)
        model.load_state_dict(torch.load(resume_dir / "weights.pt", map_location="cpu", weights_only=True))
        normalizers = dict(ckpt.normalizers)
    else:
        if cfg.data.normalize_inputs:
            normalizers["input"] = GaussianNormalizer.fit(train_ds, which="inputs")
        if cfg.data.normalize_outputs:
            normalizers["output"] = GaussianNormalizer.fit(train_ds, which="outputs")
    dev_norms = {k: v.to(device) for k, v in normalizers.items()}
    ddp_model = wrap_model(model, ctx)
    predict = Predictor(ddp_model, dev_norms, output_lead, ndim)
    eval_predict = Predictor(model, dev_norms, output_lead, ndim)
    loss_fn = build_loss(cfg.loss) if cfg.loss is not None else None
    if loss_fn is None:
        from pdesurrogates.losses import LossConfig

        loss_fn = build_loss(LossConfig())

    opt_cfg = cfg.optimizer
    optimizer = torch.optim.AdamW(model.parameters(), lr=opt_cfg.lr, betas=opt_cfg.betas, eps=opt_cfg.eps,
                                  weight_decay=opt_cfg.weight_decay)
    scaler = LossScaler(enabled=tcfg.precision == "fp16")

    # ---- batching: same permutation on every rank, rank r takes positions r, r+K, ...
    from torch.utils.data import DistributedSampler

    n_train = len(train_ds)
    sampler = DistributedSampler(range(n_train), num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True,
                                 seed=cfg.seed, drop_last=False)
    per_rank = tcfg.batch_size // ctx.world_size
    n_batches = math.ceil(len(sampler) / per_rank)
    steps_per_epoch = math.ceil(n_batches / tcfg.accumulate)
    memory = _as_tensors(train_ds, cfg.data.in_memory)

    def load_batch(idx: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        if memory is not None:
            index = torch.as_tensor(idx)
            return memory[0][index], memory[1][index]
        items = train_ds.__getitems__(idx)
        return torch.stack([a for a, _ in items]), torch.stack([b for _, b in items])

    # ---- state
    start_epoch, start_batch, step = 0, 0, 0
    epoch_sums: dict[str, float] = {}
    best = {"metric": cfg.eval.monitor or (f"{eval_sets[0]['name']}_l2" if eval_sets else "train_loss"),
            "value": None, "epoch": None}
    elapsed_before = 0.0
    if resume_dir is not None:
        state = torch.load(resume_dir / STATE_FILE, map_location="cpu", weights_only=True)
        if state.get("world_size") != ctx.world_size and state.get("batch", 0):
            raise ValueError(f"--resume {resume_dir}: stopped mid-epoch with {state.get('world_size')} processes; "
                             f"resume it with the same number ({ctx.world_size} now)")
        if state.get("batch", 0) and state.get("n_batches", n_batches) != n_batches:
            raise ValueError(f"--resume {resume_dir}: stopped mid-epoch with {state['n_batches']} batches per epoch, "
                             f"this config gives {n_batches} (data.n_train or train.batch_size changed)")
        optimizer.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        _set_rng_state(state["rng"], device)
        start_epoch, start_batch, step = int(state["epoch"]), int(state["batch"]), int(state["step"])
        epoch_sums = {k: float(v) for k, v in state["epoch_sums"].items()}
        best = {"metric": state["best_metric"], "value": state["best_value"], "epoch": state["best_epoch"]}
        if best["value"] is not None and not math.isfinite(best["value"]):
            best["value"] = None
        elapsed_before = float(state.get("elapsed", 0.0))
    metrics_rows = [r for r in _read_csv(out / "metrics.csv") if int(r["epoch"]) <= start_epoch] if resume_dir else []
    steps_rows = [r for r in _read_csv(out / "steps.csv") if int(r["step"]) <= step] if resume_dir else []
    if resume_dir is not None and out.resolve() != resume_dir.parent.parent.resolve():
        metrics_rows = [r for r in _read_csv(resume_dir.parent.parent / "metrics.csv") if int(r["epoch"]) <= start_epoch]
        steps_rows = [r for r in _read_csv(resume_dir.parent.parent / "steps.csv") if int(r["step"]) <= step]

    if ctx.is_main:
        save_config(cfg, out / "config.toml")

    data_info = {"train": cfg.data.train, "train_stride": cfg.data.train_stride, "n_train": n_train,
                 "input_shape": list(x0.shape), "output_shape": list(y0.shape), "periodic": periodic}
    position = {"epoch": start_epoch, "batch": start_batch, "step": step, "rng": _rng_state(device),
                "epoch_sums": dict(epoch_sums)}
    last_eval: dict[str, Any] = {}

    def training_state() -> dict:
        return {
            "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(), "rng": position["rng"],
            "epoch": position["epoch"], "batch": position["batch"], "step": position["step"],
            "epoch_sums": dict(position["epoch_sums"]), "world_size": ctx.world_size,
            "n_batches": n_batches,
            "best_metric": best["metric"], "best_value": best["value"], "best_epoch": best["epoch"],
            "elapsed": elapsed_before + time.perf_counter() - t_start,
        }

    def checkpoint_extra(epoch_done: int) -> dict:
        return {"epoch": epoch_done, "step": position["step"], "data": data_info,
                "output_lead": list(output_lead), "metrics": last_eval, "task": cfg.task}

    def save_last() -> None:
        if ctx.is_main:
            _save_training_checkpoint(out / "checkpoints" / "last", model, model_cfg, normalizers,
                                      checkpoint_extra(position["epoch"]), training_state())
            _write_csv(out / "metrics.csv", metrics_rows)
            _write_csv(out / "steps.csv", steps_rows)

    def summary(status: str, message: str = "") -> dict:
        wall = elapsed_before + time.perf_counter() - t_start
        samples = position["step"] * tcfg.batch_size * tcfg.accumulate
        result = {
            "status": status, "message": message, "task": cfg.task, "out_dir": str(out),
            "epochs": tcfg.epochs, "epochs_completed": position["epoch"], "step": position["step"],
            "best": dict(best), "final": last_eval, "train_loss": metrics_rows[-1]["train_loss"] if metrics_rows else None,
            "eval_sets": [{k: v for k, v in e.items() if k != "dataset"} for e in eval_sets],
            "model": models.config_to_dict(model_cfg), "n_parameters": models.count_parameters(model),
            "device": str(device), "world_size": ctx.world_size, "wall_time_s": wall,
            "samples_per_s": samples / wall if wall > 0 else None,
            "checkpoints": {"last": str(out / "checkpoints" / "last"), "best": str(out / "checkpoints" / "best")},
        }
        if ctx.is_main:
            (out / "summary.json").write_text(json.dumps(_json_safe(result), indent=2) + "\n")
        return result

    bar = None
    if progress and ctx.is_main:
        from tqdm.auto import tqdm

        bar = tqdm(total=tcfg.epochs * steps_per_epoch, initial=step, unit="step", dynamic_ncols=True)

    model.train()
    try:
        for epoch in range(start_epoch, tcfg.epochs):
            sampler.set_epoch(epoch)
            order = list(sampler)
            batches = [order[i:i + per_rank] for i in range(0, len(order), per_rank)]
            first = start_batch if epoch == start_epoch else 0
            if epoch != start_epoch:
                position["epoch_sums"] = {}
            sums = dict(position["epoch_sums"]) if epoch == start_epoch else {}
            t_epoch = time.perf_counter()
            samples_epoch = 0
            b = first
            while b < n_batches:
                group = batches[b:b + tcfg.accumulate]
                lr = _learning_rate(cfg, step, steps_per_epoch)
                for pg in optimizer.param_groups:
                    pg["lr"] = lr
                optimizer.zero_grad(set_to_none=True)
                loss_sum = torch.zeros((), device=device)
                parts_sum: dict[str, torch.Tensor] = {}
                for k, idx in enumerate(group):
                    x, y = load_batch(idx)
                    x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                    sync = ctx.distributed and k < len(group) - 1
                    with (ddp_model.no_sync() if sync else nullcontext()):
                        with autocast(device, tcfg.precision):
                            pred = predict(x)
                        total, parts = loss_fn(pred.float(), y, x)
                        scaler.scale_loss(total / len(group)).backward()
                    loss_sum = loss_sum + total.detach() / len(group)
                    for name, v in parts.items():
                        if isinstance(v, torch.Tensor):
                            parts_sum[name] = parts_sum.get(name, 0) + v.detach().float() / len(group)
                loss_global = ctx.mean(loss_sum)
                loss_value = float(loss_global)
                if not math.isfinite(loss_value):
                    raise TrainingDiverged(
                        f"loss became {loss_value} at epoch {epoch + 1}, optimiser step {step + 1} "
                        f"(batch {b + 1} of {n_batches}); stopped. The last good checkpoint "
                        f"(epoch {position['epoch']}) is kept in {out / 'checkpoints' / 'last'}. "
                        f"Try a lower optimizer.lr, warm-up, train.grad_clip or precision = \"none\"."
                    )
                grads_finite = scaler.unscale_(model.parameters())
                if grads_finite:  # fp16 overflow: skip this step (the scale was lowered)
                    if tcfg.grad_clip > 0:
                        torch.nn.utils.clip_grad_norm_(model.parameters(), tcfg.grad_clip)
                    optimizer.step()
                scaler.update(grads_finite)
                step += 1
                b += len(group)
                n_samples = sum(len(i) for i in group) * ctx.world_size
                samples_epoch += n_samples
                sums["loss"] = sums.get("loss", 0.0) + loss_value * n_samples
                sums["samples"] = sums.get("samples", 0.0) + n_samples
                for name, v in parts_sum.items():
                    sums[name] = sums.get(name, 0.0) + float(ctx.mean(v)) * n_samples
                steps_rows.append({"step": step, "epoch": epoch + 1, "loss": loss_value, "lr": lr})
                position.update(epoch=epoch, batch=b, step=step, rng=_rng_state(device), epoch_sums=dict(sums))
                if bar is not None:
                    rate = samples_epoch / max(time.perf_counter() - t_epoch, 1e-9)
                    bar.set_description(f"epoch {epoch + 1}/{tcfg.epochs}", refresh=False)
                    bar.set_postfix(loss=f"{loss_value:.4g}", samples_s=f"{rate:.0f}", refresh=False)
                    bar.update(1)
                if callback is not None:
                    callback("step", {"epoch": epoch, "step": step, "loss": loss_value, "lr": lr, "model": model})

            # ---- end of epoch
            row: dict[str, Any] = {"epoch": epoch + 1, "step": step,
                                   "train_loss": sums.get("loss", 0.0) / max(sums.get("samples", 1.0), 1.0),
                                   "lr": optimizer.param_groups[0]["lr"],
                                   "epoch_time_s": time.perf_counter() - t_epoch}
            for name, v in sums.items():
                if name not in ("loss", "samples"):
                    row[f"train_{name.replace('/', '_')}"] = v / max(sums.get("samples", 1.0), 1.0)
            done = epoch + 1
            position.update(epoch=done, batch=0, step=step, rng=_rng_state(device), epoch_sums={})
            do_eval = eval_sets and (done % cfg.eval.every == 0 or done == tcfg.epochs)
            if do_eval and ctx.is_main:
                last_eval = {}
                for e in eval_sets:
                    res = evaluate_dataset(eval_predict, e["dataset"], batch_size=cfg.eval.batch_size,
                                           device=device, periodic=e["periodic"], precision=tcfg.precision)
                    row[f"{e['name']}_l2"] = res["l2"]
                    row[f"{e['name']}_h1"] = res["h1"]
                    last_eval[e["name"]] = {**res, "stride": e["stride"], "file": e["file"]}
            metrics_rows.append(row)
            monitored = row.get(best["metric"])
            improved = monitored is not None and (best["value"] is None or monitored < best["value"])
            if improved:
                best.update(value=float(monitored), epoch=done)
            if ctx.is_main:
                if improved:
                    _save_training_checkpoint(out / "checkpoints" / "best", model, model_cfg, normalizers,
                                              checkpoint_extra(done), None)
                stopping = bool(tcfg.stop_after) and done >= tcfg.stop_after
                if done % tcfg.checkpoint_every == 0 or done == tcfg.epochs or stopping:
                    save_last()
                else:
                    _write_csv(out / "metrics.csv", metrics_rows)
                    _write_csv(out / "steps.csv", steps_rows)
            ctx.barrier()
            if callback is not None:
                callback("epoch", dict(row))
            if bar is not None:
                msg = f"epoch {done}: train loss {row['train_loss']:.4g}"
                for e in eval_sets:
                    if f"{e['name']}_l2" in row:
                        msg += f", {e['name']} ({e['resolution']}) L2 {row[e['name'] + '_l2']:.4g}"
                bar.write(msg)
            if tcfg.stop_after and done >= tcfg.stop_after and done < tcfg.epochs:
                return summary("stopped", f"stopped after epoch {done} (train.stop_after); "
                                          f"continue with --resume {out}")
    except TrainingDiverged as exc:
        summary("diverged", str(exc))
        raise
    except KeyboardInterrupt:
        save_last()
        summary("interrupted", f"interrupted at epoch {position['epoch'] + 1}, step {position['step']}; "
                               f"continue with --resume {out}")
        if ctx.is_main:
            print(f"\ninterrupted: state after step {position['step']} saved to {out / 'checkpoints' / 'last'}; "
                  f"continue with `pdesurrogates train --resume {out}`", flush=True)
        raise
    finally:
        if bar is not None:
            bar.close()
        for ds in [train_ds, *(e["dataset"] for e in eval_sets)]:
            ds.close()
    return summary("finished")


__all__ = ["LossScaler", "TrainingDiverged", "find_checkpoint", "lr_factor", "train", "train_surrogate"]
