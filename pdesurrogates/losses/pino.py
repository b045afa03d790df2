"""Physics-informed neural operator (PINO) training helpers.

Li, Zheng, Kovachki, Jin, Chen, Liu, Azizzadenesheli, Anandkumar, "Physics-Informed Neural Operator
for Learning Partial Differential Equations" (2021) train a neural operator with

* a data loss plus a PDE residual loss on the same (or extra, unlabelled) inputs,
* the PDE loss alone, from input samples without solutions, and
* *instance-wise fine-tuning*: starting from a trained operator, optimise its weights on a single
  new input with the PDE loss only, which corrects its prediction for that input (useful out of
  distribution).

Here the three are :func:`train_pino` (``targets`` given or ``None``) and :func:`finetune_instance`.
Every loss is a callable; for the PDE-only uses it is ``physics_loss(pred, inputs) -> scalar``
(e.g. :class:`~pdesurrogates.losses.physics.DarcyLoss`), and for :func:`train_pino` any
``loss_fn(pred, target, inputs) -> (total, parts)`` such as :func:`~pdesurrogates.losses.config.build_loss`.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from pdesurrogates.losses.data import relative_lp

PhysicsLoss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def pino_step(model: nn.Module, optimizer: torch.optim.Optimizer, inputs: torch.Tensor,
              target: torch.Tensor | None, loss_fn) -> tuple[torch.Tensor, dict]:
    """One optimisation step on ``loss_fn(model(inputs), target, inputs)``; returns ``(total, parts)``.

    ``total`` is detached; ``parts`` is what ``loss_fn`` reported.
    """
    optimizer.zero_grad(set_to_none=True)
    pred = model(inputs)
    total, parts = loss_fn(pred, target, inputs)
    if not torch.isfinite(total):
        raise FloatingPointError(f"pino_step: loss is {float(total)} (parts {parts})")
    total.backward()
    optimizer.step()
    return total.detach(), parts


@dataclass
class TrainHistory:
    """Per-epoch mean loss and the wall time of a :func:`train_pino` run."""

    loss: list[float] = field(default_factory=list)
    parts: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0


def train_pino(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor | None, loss_fn, *,
               epochs: int = 100, batch_size: int = 16, lr: float = 1e-3, weight_decay: float = 0.0,
               seed: int = 0, time_budget: float | None = None) -> TrainHistory:
    """Train ``model`` in place with Adam and a cosine learning-rate schedule.

    Parameters
    ----------
    model : nn.Module
        ``(B, C_in, *spatial) -> (B, C_out, ...)``; its outputs are passed to ``loss_fn`` as they are
        (wrap it in :class:`~pdesurrogates.losses.boundary.ZeroDirichletOutput` for Darcy).
    inputs : Tensor ``(N, C_in, *spatial)``
    targets : Tensor ``(N, ...)`` or None
        None trains from the inputs alone (``loss_fn`` must then have a physics term).
    loss_fn : callable ``(pred, target_or_None, inputs) -> (total, parts)``
        E.g. ``build_loss(LossConfig(...))``.
    epochs, batch_size, lr, weight_decay
        Optimiser settings; the learning rate decays to 0 along a cosine over ``epochs``.
    seed : int
        Seeds the shuffling (a private ``torch.Generator``).
    time_budget : float, optional
        Stop after this many seconds (checked after each epoch).

    Returns
    -------
    TrainHistory
    """
    if targets is not None and targets.shape[0] != inputs.shape[0]:
        raise ValueError(f"train_pino: {inputs.shape[0]} inputs but {targets.shape[0]} targets")
    if not torch.isfinite(inputs).all():
        raise ValueError("train_pino: inputs contain NaN or Inf")
    n = inputs.shape[0]
    gen = torch.Generator().manual_seed(int(seed))
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    steps_per_epoch = math.ceil(n / batch_size)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs * steps_per_epoch)
    history = TrainHistory()
    start = time.perf_counter()
    model.train()
    for _ in range(epochs):
        order = torch.randperm(n, generator=gen)
        total, sums = torch.zeros(()), {}
        for i in range(0, n, batch_size):
            idx = order[i:i + batch_size].to(inputs.device)
            y = targets[idx] if targets is not None else None
            loss, parts = pino_step(model, optimizer, inputs[idx], y, loss_fn)
            scheduler.step()
            w = len(idx) / n
            total = total + loss.cpu() * w
            for k, v in parts.items():
                sums[k] = sums.get(k, 0.0) + (v * w if not isinstance(v, torch.Tensor) else v.cpu() * w)
        history.loss.append(float(total))
        history.parts.append({k: float(v) for k, v in sums.items()})
        if time_budget is not None and time.perf_counter() - start > time_budget:
            break
    history.seconds = time.perf_counter() - start
    model.eval()
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
    physics : list of float, physics loss before each step and after the last (``steps + 1``).
    error : list of float, relative L2 error against ``reference`` at the same points (if given).
    """

    prediction: torch.Tensor
    model: nn.Module
    physics: list[float]
    error: list[float]


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

    Returns
    -------
    FinetuneResult
        The fine-tuned prediction, the tuned copy, and the recorded histories.
    """
    if a.ndim < 3 or a.shape[0] != 1:
        raise ValueError(f"finetune_instance: a must be a single instance (1, C_in, *spatial), got {tuple(a.shape)}")
    if not torch.isfinite(a).all():
        raise ValueError("finetune_instance: a contains NaN or Inf")
    if steps < 0:
        raise ValueError(f"finetune_instance: steps must be >= 0, got {steps}")
    tuned = copy.deepcopy(model)
    tuned.train()
    optimizer = torch.optim.Adam(tuned.parameters(), lr=lr)
    physics, error = [], []

    def record(pred: torch.Tensor, loss: torch.Tensor) -> None:
        physics.append(float(loss.detach()))
        if reference is not None:
            error.append(float(relative_lp(pred.detach(), reference)))

    for step in range(steps):
        optimizer.zero_grad(set_to_none=True)
        pred = tuned(a)
        loss = physics_loss(pred, a)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"finetune_instance: physics loss {float(loss)} at step {step}")
        if step % record_every == 0:
            record(pred, loss)
        loss.backward()
        optimizer.step()
    tuned.eval()
    with torch.no_grad():
        pred = tuned(a)
        record(pred, physics_loss(pred, a))
    return FinetuneResult(prediction=pred.detach(), model=tuned, physics=physics, error=error)
