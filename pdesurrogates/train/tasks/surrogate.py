"""Task ``surrogate`` (and ``pino``): a neural operator trained on dataset files or in-memory datasets.

The data come from files any reader of :func:`pdesurrogates.data.open_dataset` takes (or from
datasets passed in Python, e.g. :func:`pdesurrogates.data.from_arrays`); inputs and outputs are
normalised per channel with :class:`~pdesurrogates.data.GaussianNormalizer` fitted on the training
set, the model's outputs are decoded before the loss, so losses and metrics are in physical units.
The loss is a :class:`~pdesurrogates.losses.LossConfig`: data only, data + PDE residual (PINO), or
the residual alone (``data = "none"``: physics-only training from the inputs). Task ``pino`` is the
same task with a physics term required.

Epoch ``e`` visits the training samples in the permutation :class:`torch.utils.data.DistributedSampler`
draws from ``seed + e``; under ``torchrun`` rank ``r`` of ``K`` takes positions ``r, r + K, ...``
of it, so K processes see the same global batches as one.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pdesurrogates.errors import UserInputError
from pdesurrogates.train.config import TrainConfig, surrogate_config_from_dict
from pdesurrogates.train.engine import RunContext, Task
from pdesurrogates.train.evaluation import (
    Predictor,
    evaluate_dataset,
    is_periodic,
    stride_for_resolution,
)
from pdesurrogates.train.support import autocast


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
            ds.close()
            raise UserInputError(f"{where}: asks for samples {start}..{stop - 1} but {path} holds {len(ds)}")
        ds.close()
        ds = open_dataset(path, stride=stride, indices=range(start, stop), in_memory=in_memory)
    elif in_memory:
        ds.close()
        ds = open_dataset(path, stride=stride, in_memory=True)
    return ds


def _stride_for(path: str, resolution: int, where: str) -> int:
    from pdesurrogates.data import open_dataset

    if not Path(path).is_file():
        raise FileNotFoundError(f"{where}: data file {path} not found")
    ds = open_dataset(path)
    spatial = ds.meta["spatial_shape"]
    ds.close()
    return stride_for_resolution(spatial, resolution, where)


def fill_model_shape(model_cfg: Any, in_channels: int, out_channels: int, ndim: int,
                     spatial: tuple[int, ...] | None = None, grid_kind: str | None = None) -> Any:
    """Set what the data decide in the model config where it was left at the default: in/out channels
    and ndim (a different explicit value is an error), the grid layout ``grid_kind`` (an explicit
    value wins) and, for models that fit their hierarchy to the training grid (``fitted_to_grid``,
    MgNO), the number of levels (where left at the default) and the training grid (``train_grid``,
    where not given)."""
    names = {f.name: f for f in dataclasses.fields(model_cfg)}
    changes = {}
    for name, value in (("in_channels", in_channels), ("out_channels", out_channels), ("ndim", ndim)):
        if name not in names:
            continue
        current = getattr(model_cfg, name)
        if current == value:
            continue
        if current != names[name].default:
            raise UserInputError(f"config [model]: {name} = {current} but the training data has {value} "
                             f"(leave {name} out to take it from the data)")
        changes[name] = value
    if grid_kind is not None and "grid_kind" in names and model_cfg.grid_kind == names["grid_kind"].default:
        changes["grid_kind"] = grid_kind
    model_cfg = dataclasses.replace(model_cfg, **changes) if changes else model_cfg
    if spatial is not None and hasattr(model_cfg, "fitted_to_grid") and "levels" in names \
            and model_cfg.levels == names["levels"].default:
        model_cfg = model_cfg.fitted_to_grid(spatial)
    if spatial is not None and "train_grid" in names and getattr(model_cfg, "variant", "") != "legacy" \
            and model_cfg.train_grid is None and len(spatial) == model_cfg.ndim:
        model_cfg = dataclasses.replace(model_cfg, train_grid=tuple(int(n) for n in spatial))
    return model_cfg


class SurrogateTask(Task):
    """Operator learning from (input, output) samples; see the module docstring.

    Parameters
    ----------
    config : TrainConfig
    train_data : Dataset, optional
        Use this dataset (items ``(x, y)``, ``.meta``) instead of ``config.data.train``.
    test_data : dict of name -> Dataset, optional
        Evaluation sets instead of ``config.data.test``.
    """

    name = "surrogate"

    def __init__(self, config: TrainConfig, train_data: Any = None, test_data: dict[str, Any] | None = None):
        if not isinstance(config, TrainConfig):
            raise TypeError(f"the surrogate task needs a TrainConfig, got {type(config).__name__}")
        self.config = config
        self.name = config.task
        self._train_data, self._test_data = train_data, test_data
        self._normalizers: dict[str, Any] = {}
        self._epoch = 0
        self.eval_sets: list[dict] = []
        self.train_ds = None
        self.final: dict[str, Any] = {}

    @classmethod
    def parse_config(cls, raw: dict, where: str, base_dir: str | Path | None) -> TrainConfig:
        config = surrogate_config_from_dict(raw, where, base_dir)
        if config.task == "pino" and config.loss.physics is None:
            raise UserInputError(f"{where}: task 'pino' needs a physics term ([loss] physics = \"darcy\", ...); "
                             f"for data-only training use task = \"surrogate\"")
        return config

    # ---- data
    def setup(self, run: RunContext) -> None:
        cfg = self.config
        if self._train_data is not None:
            self.train_ds = self._train_data
            train_stride = 1
        else:
            train_stride = cfg.data.train_stride
            if cfg.data.train_resolution:
                train_stride = _stride_for(cfg.data.train, cfg.data.train_resolution,
                                           "config [data] train_resolution")
            self.train_ds = _open(cfg.data.train, train_stride, cfg.data.n_train, cfg.data.in_memory,
                                  "config [data] train")
        if len(self.train_ds) == 0:
            raise UserInputError("the training data hold no samples")
        x0, y0 = self.train_ds[0]
        self.ndim = x0.ndim - 1
        self.output_lead = tuple(y0.shape[: y0.ndim - self.ndim])
        in_channels, out_channels = int(x0.shape[0]), int(math.prod(self.output_lead))
        self._open_eval_sets(x0, y0)
        self.periodic = is_periodic(self.train_ds.meta)
        metric_names = ["train_loss"] + [f"{e['name']}_{m}" for e in self.eval_sets for m in ("l2", "h1")]
        if cfg.eval.monitor and cfg.eval.monitor not in metric_names:
            raise UserInputError(f"config [eval] monitor {cfg.eval.monitor!r} is not a metric; available: {metric_names}")
        grid_kind = self.train_ds.meta.get("grid_kind") or ("half-open" if self.periodic else "node")
        self.model_cfg = fill_model_shape(cfg.model, in_channels, out_channels, self.ndim,
                                          tuple(x0.shape[1:]), grid_kind)
        self.config = dataclasses.replace(cfg, model=self.model_cfg, data=dataclasses.replace(
            cfg.data, train_stride=train_stride, train_resolution=0))
        if cfg.data.symmetries:
            from pdesurrogates.data.symmetry import check_symmetries

            check_symmetries(cfg.data.symmetries, tuple(x0.shape[1:]), "config [data] symmetries",
                             target_shape=tuple(y0.shape))
        if not run.resumed:
            from pdesurrogates.data import GaussianNormalizer

            if cfg.data.normalize_inputs:
                self._normalizers["input"] = GaussianNormalizer.fit(self.train_ds, which="inputs")
            if cfg.data.normalize_outputs:
                self._normalizers["output"] = GaussianNormalizer.fit(self.train_ds, which="outputs")
        from pdesurrogates.losses import build_loss

        self.loss_fn = build_loss(cfg.loss)
        self.memory = None
        if hasattr(self.train_ds, "arrays") and (cfg.data.in_memory or self._train_data is not None):
            x, y = self.train_ds.arrays()
            self.memory = torch.as_tensor(x), torch.as_tensor(y)
        self.data_info = {"train": cfg.data.train if self._train_data is None else "<in memory>",
                          "train_stride": train_stride, "n_train": len(self.train_ds),
                          "input_shape": list(x0.shape), "output_shape": list(y0.shape), "periodic": self.periodic}
        self.device = run.device
        self.precision = run.precision
        self.dist = run.dist
        from torch.utils.data import DistributedSampler

        self.sampler = DistributedSampler(range(len(self.train_ds)), num_replicas=run.dist.world_size,
                                          rank=run.dist.rank, shuffle=True, seed=run.seed, drop_last=False)
        self.per_rank = cfg.train.batch_size // run.dist.world_size

    def _open_eval_sets(self, x0: torch.Tensor, y0: torch.Tensor) -> None:
        cfg = self.config
        sets = []
        if self._test_data is not None:
            for name, ds in self._test_data.items():
                sets.append((name, "<in memory>", 1, ds))
        else:
            for i, path in enumerate(cfg.data.test):
                if (Path(path).resolve() == Path(cfg.data.train).resolve()
                        and cfg.data.test_start < len(self.train_ds)):
                    raise UserInputError(f"config [data] test[{i}] is the training file {path}: its test samples must "
                                     f"start after the {len(self.train_ds)} training samples (set test_start >= "
                                     f"{len(self.train_ds)} and n_train)")
                strides = cfg.data.eval_strides
                if cfg.data.test_resolutions:
                    strides = tuple(_stride_for(path, r, f"config [data] test_resolutions for {path}")
                                    for r in cfg.data.test_resolutions)
                for s in strides:
                    ds = _open(path, s, cfg.data.n_test, cfg.data.in_memory, f"config [data] test[{i}]",
                               start=cfg.data.test_start)
                    sets.append((f"test{i}_s{s}", path, s, ds))
        for name, path, stride, ds in sets:
            xs, ys = ds[0]
            if xs.shape[0] != x0.shape[0] or tuple(ys.shape[: ys.ndim - self.ndim]) != self.output_lead:
                raise UserInputError(f"test set {name} ({path}): samples x {tuple(xs.shape)}, y {tuple(ys.shape)} "
                                 f"do not match the training data x {tuple(x0.shape)}, y {tuple(y0.shape)}")
            self.eval_sets.append({"name": name, "file": path, "stride": stride, "dataset": ds,
                                   "resolution": "x".join(map(str, xs.shape[1:])),
                                   "periodic": is_periodic(ds.meta)})

    # ---- model
    def build_model(self) -> nn.Module:
        from pdesurrogates import models

        return models.build(self.model_cfg)

    def model_config(self) -> Any:
        return self.model_cfg

    def normalizers(self) -> dict[str, Any]:
        return self._normalizers

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._normalizers = dict(state.get("normalizers", {}))

    def predictor(self, model: nn.Module) -> Predictor:
        norms = {k: v.to(self.device) for k, v in self._normalizers.items()}
        return Predictor(model, norms, self.output_lead, self.ndim)

    # ---- batches
    def plan(self, epoch: int, run: RunContext) -> list[list[int]]:
        self._epoch = epoch
        self.sampler.set_epoch(epoch)
        order = list(self.sampler)
        return [order[i:i + self.per_rank] for i in range(0, len(order), self.per_rank)]

    def _batch(self, idx: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        if self.memory is not None:
            index = torch.as_tensor(idx)
            return self.memory[0][index], self.memory[1][index]
        items = (self.train_ds.__getitems__(idx) if hasattr(self.train_ds, "__getitems__")
                 else [self.train_ds[i] for i in idx])
        return torch.stack([a for a, _ in items]), torch.stack([b for _, b in items])

    def loss(self, model: nn.Module, item: list[int], run: RunContext):
        x, y = self._batch(item)
        x, y = x.to(run.device, non_blocking=True), y.to(run.device, non_blocking=True)
        if self.config.data.symmetries:
            from pdesurrogates.data.symmetry import random_symmetries, symmetry_generator

            generator = symmetry_generator(run.seed, self._epoch, item)
            x, y = random_symmetries(x, y, self.config.data.symmetries, generator)
        if not hasattr(self, "_predict") or self._predict.model is not model:
            self._predict = self.predictor(model)
        with autocast(run.device, run.precision):
            pred = self._predict(x)
        return self.loss_fn(pred.float(), y, x)

    # ---- evaluation
    def monitor(self) -> str:
        return self.config.eval.monitor or (f"{self.eval_sets[0]['name']}_l2" if self.eval_sets else "train_loss")

    def evaluate(self, model: nn.Module, run: RunContext) -> dict[str, float]:
        predict = self.predictor(model)
        row = {}
        self.final = {}
        for e in self.eval_sets:
            res = evaluate_dataset(predict, e["dataset"], batch_size=self.config.eval.batch_size,
                                   device=run.device, periodic=e["periodic"], precision=run.precision)
            row[f"{e['name']}_l2"] = res["l2"]
            row[f"{e['name']}_h1"] = res["h1"]
            self.final[e["name"]] = {**res, "stride": e["stride"], "file": e["file"]}
        return row

    def checkpoint_extra(self) -> dict[str, Any]:
        return {"data": self.data_info, "output_lead": list(self.output_lead)}

    def summary(self) -> dict[str, Any]:
        return {"final": self.final,
                "eval_sets": [{k: v for k, v in e.items() if k != "dataset"} for e in self.eval_sets]}

    def close(self) -> None:
        for ds in [self.train_ds, *(e["dataset"] for e in self.eval_sets)]:
            if ds is not None and hasattr(ds, "close") and ds is not self._train_data:
                ds.close()
