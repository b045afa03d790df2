"""Physics-informed neural operator (PINO) training from Python, on the training engine.

Li, Zheng, Kovachki, Jin, Chen, Liu, Azizzadenesheli, Anandkumar, "Physics-Informed Neural Operator
for Learning Partial Differential Equations" (2021) train a neural operator with

* a data loss plus a PDE residual loss on the same (or extra, unlabelled) inputs,
* the PDE loss alone, from input samples without solutions, and
* *instance-wise fine-tuning*: starting from a trained operator, optimise its weights on a single
  new input with the PDE loss only, which corrects its prediction for that input (useful out of
  distribution).

Here the three are :func:`train_pino` (``targets`` given or ``None``) and :func:`finetune_instance`;
both are tasks of :func:`pdesurrogates.train.engine.fit` (:class:`~pdesurrogates.train.tasks.tensors.TensorTask`
and :class:`FinetuneTask`). From files and the command line the same training is task ``pino`` (or
``surrogate`` with a ``[loss]`` physics term). Losses are the callables of :mod:`pdesurrogates.losses`:
``physics_loss(pred, inputs) -> scalar`` (e.g. :class:`~pdesurrogates.losses.physics.DarcyLoss`) or
``loss_fn(pred, target, inputs) -> (total, parts)`` (e.g. :func:`~pdesurrogates.losses.build_loss`).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from pdesurrogates.losses.data import relative_lp
from pdesurrogates.train.config import OptimizerConfig, ScheduleConfig, TrainerConfig, TrainSettings
from pdesurrogates.train.engine import RunContext, Task, fit
from pdesurrogates.train.tasks.tensors import TensorTask

PhysicsLoss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class TrainHistory:
    """Per-epoch mean loss (and its parts) and the wall time of a :func:`train_pino` run."""

    loss: list[float] = field(default_factory=list)
    parts: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0


def train_pino(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor | None, loss_fn, *,
               epochs: int = 100, batch_size: int = 16, lr: float = 1e-3, weight_decay: float = 0.0,
               seed: int = 0, time_budget: float | None = None, device: str | None = None) -> TrainHistory:
    """Train ``model`` in place with Adam and a cosine learning-rate schedule (to 0 over ``epochs``).

    Parameters
    ----------
    model : nn.Module
        ``(B, C_in, *spatial) -> (B, C_out, ...)``; its outputs are passed to ``loss_fn`` as they are
        (wrap it in :class:`~pdesurrogates.losses.boundary.ZeroDirichletOutput` for Darcy).
    inputs : Tensor ``(N, C_in, *spatial)``
    targets : Tensor ``(N, ...)`` or None
        None trains from the inputs alone (``loss_fn`` must then have a physics term).
    loss_fn : callable ``(pred, target_or_None, inputs) -> (total, parts)``
    epochs, batch_size, lr, weight_decay
        Optimiser settings.
    seed : int
        Seeds the order of the samples.
    time_budget : float, optional
        Stop after the first epoch that ends past this many seconds.
    device : str, optional
        Default: the device of the model's parameters.
    """
    settings = TrainSettings(
        optimizer=OptimizerConfig(name="adam", lr=lr, weight_decay=weight_decay),
        schedule=ScheduleConfig(name="cosine"),
        train=TrainerConfig(epochs=epochs, batch_size=batch_size, time_limit=time_budget or 0.0),
        seed=seed)
    settings.validate()
    task = TensorTask(model, inputs, targets, loss_fn, batch_size=batch_size)
    device = device or next(model.parameters()).device
    result = fit(task, settings, None, device=device, progress=False)
    history = TrainHistory(seconds=result.summary["wall_time_s"])
    for row in result.metrics:
        history.loss.append(float(row["train_loss"]))
        history.parts.append({k.removeprefix("train_"): float(v) for k, v in row.items()
                              if k.startswith("train_") and k != "train_loss"})
    return history


class PhysicsOnly:
    """Adapter ``(pred, target, inputs) -> (loss, parts)`` around a ``physics_loss(pred, inputs)``."""

    def __init__(self, physics_loss: PhysicsLoss):
        self.physics_loss = physics_loss

    def __call__(self, pred, target, inputs):
        loss = self.physics_loss(pred, inputs)
        return loss, {"physics": loss.detach()}


def train_physics_only(model: nn.Module, inputs: torch.Tensor, physics_loss: PhysicsLoss,
                       **kwargs) -> TrainHistory:
    """:func:`train_pino` with no labels: the PDE residual of the predictions is the only loss."""
    return train_pino(model, inputs, None, PhysicsOnly(physics_loss), **kwargs)


@dataclass
class FinetuneResult:
    """Outcome of :func:`finetune_instance`.

    Attributes
    ----------
    prediction : Tensor, the fine-tuned model's output on the instance (detached).
    model : nn.Module, the fine-tuned copy (the original is untouched).
    physics : list of float, physics loss before each recorded step and after the last.
    error : list of float, relative L2 error against ``reference`` at the same points (if given).
    """

    prediction: torch.Tensor
    model: nn.Module
    physics: list[float]
    error: list[float]


class FinetuneTask(Task):
    """Instance-wise fine-tuning: a copy of ``model`` fitted to the PDE on one input ``a``.

    Every step is the same batch (the instance); the physics loss (and the error against
    ``reference``) are recorded before every ``record_every``-th step.
    """

    name = "finetune"

    def __init__(self, model: nn.Module, a: torch.Tensor, physics_loss: PhysicsLoss, steps: int,
                 reference: torch.Tensor | None = None, record_every: int = 1) -> None:
        self.model, self.a, self.physics_loss, self.steps = model, a, physics_loss, steps
        self.reference, self.record_every = reference, max(1, int(record_every))
        self.physics: list[float] = []
        self.error: list[float] = []

    def setup(self, run: RunContext) -> None:
        self.a = self.a.to(run.device)
        if self.reference is not None:
            self.reference = self.reference.to(run.device)

    def build_model(self) -> nn.Module:
        return self.model

    def plan(self, epoch: int, run: RunContext) -> list[int]:
        return list(range(self.steps))

    def record(self, pred: torch.Tensor, loss: torch.Tensor) -> None:
        self.physics.append(float(loss.detach()))
        if self.reference is not None:
            self.error.append(float(relative_lp(pred.detach(), self.reference)))

    def loss(self, model: nn.Module, item: int, run: RunContext):
        pred = model(self.a)
        loss = self.physics_loss(pred, self.a)
        if item % self.record_every == 0:
            self.record(pred, loss)
        return loss, {}

    def item_weight(self, item: int) -> float:
        return 1.0


def finetune_instance(model: nn.Module, a: torch.Tensor, physics_loss: PhysicsLoss, steps: int = 200,
                      lr: float = 1e-3, *, reference: torch.Tensor | None = None,
                      record_every: int = 1) -> FinetuneResult:
    """Instance-wise fine-tuning: fit a copy of ``model`` to the PDE on the single input ``a``.

    Parameters
    ----------
    model : nn.Module
        A trained operator (not modified).
    a : Tensor ``(1, C_in, *spatial)``
        The instance.
    physics_loss : callable ``(pred, inputs) -> scalar``
    steps : int
        Adam steps with constant ``lr``.
    reference : Tensor like ``model(a)``, optional
        A reference solution; then the relative L2 error is recorded along the way.
    record_every : int
        Record the physics loss / error every this many steps (and at the end).
    """
    if a.ndim < 3 or a.shape[0] != 1:
        raise ValueError(f"finetune_instance: a must be a single instance (1, C_in, *spatial), got {tuple(a.shape)}")
    if not torch.isfinite(a).all():
        raise ValueError("finetune_instance: a contains NaN or Inf")
    if int(steps) != steps or steps < 0:
        raise ValueError(f"finetune_instance: steps must be an integer >= 0, got {steps}")
    tuned = copy.deepcopy(model)
    task = FinetuneTask(tuned, a, physics_loss, int(steps), reference, record_every)
    if steps > 0:
        settings = TrainSettings(optimizer=OptimizerConfig(name="adam", lr=lr, weight_decay=0.0),
                                 schedule=ScheduleConfig(name="constant"),
                                 train=TrainerConfig(epochs=1, batch_size=1))
        tuned = fit(task, settings, None, device=next(model.parameters()).device, progress=False).model
    tuned.eval()
    with torch.no_grad():
        pred = tuned(a)
        task.record(pred, physics_loss(pred, a))
    return FinetuneResult(prediction=pred.detach(), model=tuned, physics=task.physics, error=task.error)


__all__ = ["FinetuneResult", "FinetuneTask", "PhysicsOnly", "TrainHistory", "finetune_instance",
           "train_physics_only", "train_pino"]
