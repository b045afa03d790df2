"""In-memory fits for benchmark sweeps: tensors in, test errors, FLOPs and seconds out.

A sweep of dozens of tiny runs needs no files or checkpoints, only that every model gets exactly
the same data, optimizer, schedule, epochs and seeds. :func:`fit_surrogate` trains with the
package's one engine (:func:`pdesurrogates.train.engine.fit`) on its in-memory task
(:class:`~pdesurrogates.train.tasks.tensors.TensorTask`).

Training compute is counted with :class:`torch.utils.flop_counter.FlopCounterMode` on one
forward+backward step (FFTs included through :data:`FFT_FLOP_FORMULAS`, ``2.5 N log2 n`` per real
transform), scaled by the number of samples seen; optimizer updates are not counted.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch

Tensor = torch.Tensor


def _fft_flops(input_shape, dim, *args, out_shape=None, **kwargs) -> int:
    """FLOPs of an FFT over ``dim``: ``5/2 * N * log2(n)`` with N the larger of input/output."""
    big = max(math.prod(input_shape), math.prod(out_shape))
    n = math.prod(max(input_shape[d], out_shape[d]) for d in dim)
    return int(2.5 * big * math.log2(max(n, 2)))


def _fft_mapping() -> dict[Any, Callable[..., int]]:
    aten = torch.ops.aten
    return {aten._fft_r2c: _fft_flops, aten._fft_c2r: _fft_flops, aten._fft_c2c: _fft_flops}


def count_flops(fn: Callable[[], Any]) -> int:
    """FLOPs of running ``fn()`` (matmuls, convolutions and FFTs), counted by dispatch."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False, custom_mapping=_fft_mapping()) as counter:
        fn()
    return int(counter.get_total_flops())


@dataclass(frozen=True)
class Budget:
    """Optimisation budget shared by every model of a sweep.

    Adam with cosine decay of the learning rate to zero over ``epochs``; relative-L2 loss.
    """

    epochs: int = 10
    batch_size: int = 16
    lr: float = 3e-3
    weight_decay: float = 1e-4

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"Budget: epochs and batch_size must be >= 1, got {self.epochs}, {self.batch_size}")
        if not self.lr > 0:
            raise ValueError(f"Budget: lr must be > 0, got {self.lr}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Scaler:
    """Scalar affine normalisation fitted on the training set: ``(v - mean) / std``."""

    mean: float
    std: float

    @classmethod
    def fit(cls, v: Tensor) -> Scaler:
        return cls(float(v.float().mean()), float(v.float().std().clamp_min(1e-12)))

    def encode(self, v: Tensor) -> Tensor:
        return (v - self.mean) / self.std

    def decode(self, v: Tensor) -> Tensor:
        return v * self.std + self.mean


def _check_pair(name: str, pair: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
    if len(pair) != 2:
        raise ValueError(f"fit_surrogate: {name} must be a pair (x, y), got {len(pair)} items")
    x, y = pair
    if x.ndim < 3 or y.ndim < 3 or x.shape[0] != y.shape[0]:
        raise ValueError(
            f"fit_surrogate: {name} must be x (N, C_in, *spatial) and y (N, C_out, *spatial) "
            f"with the same N, got {tuple(x.shape)} and {tuple(y.shape)}"
        )
    return x.float(), y.float()


def fit_surrogate(
    model: torch.nn.Module,
    train: Sequence[Tensor],
    tests: dict[str, Sequence[Tensor]],
    *,
    budget: Budget,
    seed: int,
    device: str | torch.device = "cpu",
    eval_epochs: Sequence[int] = (),
) -> dict[str, Any]:
    """Train ``model`` on in-memory tensors and report test errors, compute and time.

    Parameters
    ----------
    model:
        Freshly initialised network mapping ``(B, C_in, *spatial) -> (B, C_out, *spatial)``.
    train:
        ``(x, y)``, ``x: (N, C_in, *spatial)``, ``y: (N, C_out, *spatial)``.
    tests:
        Named test sets ``{"32": (x, y), ...}``, possibly at other resolutions (zero-shot).
    budget:
        Epochs, batch size, learning rate and weight decay.
    seed:
        Seeds the shuffling generator (pass the same seed to the model's initialisation).
    device:
        Where to train.
    eval_epochs:
        Epochs (1-based) after which to record the test errors too (for compute curves).

    Returns
    -------
    dict
        ``params``, ``flops_per_sample`` (one forward+backward), ``train_flops``,
        ``train_seconds``, ``test_rel_l2`` (``{name: error}``), ``final_train_loss`` and
        ``history`` (one entry per ``eval_epochs`` with ``epoch``, ``train_flops``,
        ``train_seconds``, ``test_rel_l2``).
    """
    from pdesurrogates.train.config import (
        OptimizerConfig,
        ScheduleConfig,
        TrainerConfig,
        TrainSettings,
    )
    from pdesurrogates.train.engine import TrainingDiverged, fit
    from pdesurrogates.train.tasks.tensors import TensorTask, relative_l2_loss

    x, y = _check_pair("train", train)
    tests = {k: _check_pair(f"tests[{k!r}]", v) for k, v in tests.items()}
    device = torch.device(device)
    model = model.to(device)
    xs, ys = Scaler.fit(x), Scaler.fit(y)
    bs = min(budget.batch_size, x.shape[0])

    def forward(m: torch.nn.Module, xb: Tensor) -> Tensor:
        return ys.decode(m(xs.encode(xb)))

    task = TensorTask(model, x, y, relative_l2_loss, batch_size=bs, forward=forward, tests=tests)
    probe_x, probe_y = x[:bs].to(device), y[:bs].to(device)
    flops_per_sample = count_flops(lambda: relative_l2_loss(forward(model, probe_x), probe_y, probe_x)[0].backward()) / bs
    model.zero_grad(set_to_none=True)
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    n = x.shape[0]
    history: list[dict[str, Any]] = []
    wanted = {int(e) for e in eval_epochs}

    clock = {"seconds": 0.0}

    def record(event: str, info: dict) -> None:
        if event != "epoch":
            return
        clock["seconds"] += info["epoch_time_s"]
        if info["epoch"] in wanted:
            history.append({"epoch": info["epoch"], "train_flops": flops_per_sample * n * info["epoch"],
                            "train_seconds": clock["seconds"], "test_rel_l2": task.test_errors(model)})

    settings = TrainSettings(
        optimizer=OptimizerConfig(name="adam", lr=budget.lr, weight_decay=budget.weight_decay),
        schedule=ScheduleConfig(name="cosine"), train=TrainerConfig(epochs=budget.epochs, batch_size=bs),
        seed=int(seed))
    settings.validate()
    try:
        result = fit(task, settings, None, device=device, progress=False, callback=record)
        last = float(result.metrics[-1]["train_loss"])
    except TrainingDiverged:  # a diverged run is a data point of a sweep, not an error
        last = math.nan
    seconds = clock["seconds"]
    return {
        "params": int(params),
        "flops_per_sample": float(flops_per_sample),
        "train_flops": float(flops_per_sample * n * budget.epochs),
        "train_seconds": float(seconds),
        "final_train_loss": float(last),
        "test_rel_l2": task.test_errors(model),
        "history": history,
    }
