"""Task ``tensors``: a given module trained on tensors in memory (Python only).

What benchmark sweeps, PINO experiments and notebooks need: no files, the module built by the
caller, any loss ``loss_fn(pred, target, inputs) -> (total, parts)`` (``target`` may be None for
physics-only training), optional maps around the module (normalisation) and named test sets whose
mean relative L2 errors are the evaluation metrics (``test_<name>``).

Epoch ``e`` visits the samples in the permutation drawn from ``seed + e``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
from torch import nn

from pdesurrogates.data.symmetry import check_symmetries, random_symmetries, symmetry_generator
from pdesurrogates.errors import UserInputError
from pdesurrogates.train.engine import RunContext, Task

LossFn = Callable[[torch.Tensor, torch.Tensor | None, torch.Tensor], tuple[torch.Tensor, dict]]


def _check_pair(name: str, x: torch.Tensor, y: torch.Tensor | None) -> None:
    if not isinstance(x, torch.Tensor) or x.ndim < 2:
        raise UserInputError(f"{name}: inputs must be a tensor (N, C_in, *spatial), got "
                         f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
    if not torch.isfinite(x).all():
        raise UserInputError(f"{name}: inputs contain NaN or Inf")
    if y is not None:
        if not isinstance(y, torch.Tensor) or y.shape[0] != x.shape[0]:
            raise UserInputError(f"{name}: {x.shape[0]} inputs but targets of shape "
                             f"{tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__}")
        if not torch.isfinite(y).all():
            raise UserInputError(f"{name}: targets contain NaN or Inf")


class TensorTask(Task):
    """Train ``model`` on ``(inputs, targets)`` in memory.

    Parameters
    ----------
    model : nn.Module
        Trained in place (the engine moves it to the run's device).
    inputs : Tensor ``(N, C_in, *spatial)``
    targets : Tensor ``(N, ...)`` or None
    loss_fn : callable ``(pred, target_or_None, inputs) -> (total, parts)``
    batch_size : int
    forward : callable ``(model, x) -> pred``, optional
        Default ``model(x)``; e.g. ``lambda m, x: decode(m(encode(x)))``.
    tests : mapping name -> (x, y), optional
        Evaluated as the mean relative L2 error of ``forward`` (metrics ``test_<name>``).
    symmetries : sequence of str, optional
        Exact symmetries of the data applied at random to each training sample
        (:func:`pdesurrogates.data.symmetry.random_symmetries`: ``"transpose"``, ``"flip"``).
    """

    name = "tensors"

    def __init__(self, model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor | None, loss_fn: LossFn,
                 *, batch_size: int, forward: Callable[[nn.Module, torch.Tensor], torch.Tensor] | None = None,
                 tests: Mapping[str, tuple[torch.Tensor, torch.Tensor]] | None = None,
                 symmetries: Sequence[str] = ()) -> None:
        _check_pair("training data", inputs, targets)
        self.symmetries = check_symmetries(symmetries, tuple(inputs.shape[2:]),
                                           target_shape=None if targets is None else tuple(targets.shape[1:]))
        self._epoch = 0
        for key, (tx, ty) in (tests or {}).items():
            _check_pair(f"test set {key!r}", tx, ty)
        if batch_size < 1:
            raise UserInputError(f"batch_size must be >= 1, got {batch_size}")
        self.model, self.inputs, self.targets, self.loss_fn = model, inputs, targets, loss_fn
        self.batch_size = min(batch_size, inputs.shape[0])
        self.forward = forward or (lambda m, x: m(x))
        self.tests = dict(tests or {})

    def setup(self, run: RunContext) -> None:
        if run.dist.world_size > 1:
            raise UserInputError("the in-memory tensor task runs in one process; use task 'surrogate' under torchrun")
        self.device = run.device

    def build_model(self) -> nn.Module:
        return self.model

    def plan(self, epoch: int, run: RunContext) -> list[torch.Tensor]:
        n = self.inputs.shape[0]
        self._epoch = epoch
        order = torch.randperm(n, generator=torch.Generator().manual_seed(run.seed + epoch))
        return [order[i:i + self.batch_size] for i in range(0, n, self.batch_size)]

    def loss(self, model: nn.Module, item: torch.Tensor, run: RunContext):
        x = self.inputs[item.to(self.inputs.device)].to(run.device)
        y = self.targets[item.to(self.targets.device)].to(run.device) if self.targets is not None else None
        if self.symmetries:
            x, y = random_symmetries(x, y, self.symmetries, symmetry_generator(run.seed, self._epoch, item.tolist()))
        return self.loss_fn(self.forward(model, x), y, x)

    def test_errors(self, model: nn.Module) -> dict[str, float]:
        """Mean relative L2 error of ``forward`` on every test set."""
        device = next(model.parameters()).device
        return {key: mean_relative_l2(model, x, y, self.forward, device) for key, (x, y) in self.tests.items()}

    def evaluate(self, model: nn.Module, run: RunContext) -> dict[str, float]:
        return {f"test_{k}": v for k, v in self.test_errors(model).items()}

    def monitor(self) -> str:
        return f"test_{next(iter(self.tests))}" if self.tests else "train_loss"


@torch.no_grad()
def mean_relative_l2(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                     forward: Callable[[nn.Module, torch.Tensor], torch.Tensor] | None = None,
                     device: torch.device | str = "cpu", batch_size: int = 64) -> float:
    """Mean over samples of the relative L2 error of ``forward(model, x)`` against ``y`` (eval mode)."""
    from pdesurrogates.losses import relative_lp

    forward = forward or (lambda m, xb: m(xb))
    was = model.training
    model.eval()
    errs = []
    for i in range(0, x.shape[0], batch_size):
        pred = forward(model, x[i:i + batch_size].to(device))
        errs.append(relative_lp(pred.float(), y[i:i + batch_size].to(device).float(), reduction="none")
                    .mean(dim=1).cpu())
    model.train(was)
    return float(torch.cat(errs).mean())


def relative_l2_loss(pred: torch.Tensor, target: torch.Tensor | None, inputs: torch.Tensor):
    """``(mean relative L2 error, {})``: the loss of surrogate benchmarks."""
    from pdesurrogates.losses import relative_lp

    return relative_lp(pred, target), {}


__all__ = ["TensorTask", "mean_relative_l2", "relative_l2_loss"]
