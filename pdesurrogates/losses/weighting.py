"""Weighting of several loss terms: fixed weights and adaptive schemes.

All weighters share one call, ``total, weights = weighter(parts)``, where ``parts`` is a dict of
scalar loss tensors (``{"data": ..., "physics": ...}``); ``weights`` are the multipliers actually
applied (a dict of floats, for logging).

* :class:`FixedWeights` -- ``sum_i w_i L_i``.
* :class:`SoftAdaptWeights` -- SoftAdapt (Heydari, Thompson, Mehmood 2019, arXiv:1912.12355): weights
  ``softmax(L_i(t) / L_i(t-1))`` rescaled to sum to the number of terms, favouring the terms that
  decrease slowest. Delegates to neuraloperator's :class:`neuralop.losses.SoftAdapt`.
* :class:`ReLoBRaLoWeights` -- Relative Loss Balancing with Random Lookback (Bischof and Kraus 2021,
  arXiv:2110.09813). Written here rather than taken from neuraloperator because
  :class:`neuralop.losses.Relobralo` draws its lookback coin from torch's global RNG; ours takes a
  seed and owns a ``torch.Generator`` (house rule: no global RNG).

The fixed weights are applied before the adaptive ones, so ``data_weight = 5, physics_weight = 1``
(PINO's Darcy setting) still holds at the first step of an adaptive run.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

ADAPTIVE_SCHEMES = ("softadapt", "relobralo")


def _check_parts(parts: Mapping[str, torch.Tensor], names: tuple[str, ...] | None, where: str):
    if not parts:
        raise ValueError(f"{where}: no loss terms given")
    if names is not None and tuple(parts) != names:
        raise ValueError(f"{where}: loss terms {tuple(parts)} differ from the first call's {names}")
    for k, v in parts.items():
        if not isinstance(v, torch.Tensor) or v.ndim != 0:
            raise ValueError(f"{where}: term {k!r} must be a scalar tensor")


class FixedWeights:
    """``total = sum_i weights[i] * parts[i]``; missing names weigh 1."""

    def __init__(self, weights: Mapping[str, float] | None = None):
        self.weights = dict(weights or {})

    def __call__(self, parts: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        _check_parts(parts, None, "FixedWeights")
        used = {k: float(self.weights.get(k, 1.0)) for k in parts}
        total = sum(used[k] * v for k, v in parts.items())
        return total, used


class SoftAdaptWeights:
    """SoftAdapt on top of fixed ``weights`` (neuraloperator's implementation).

    The first call fixes the names and order of the terms; the step counter is internal.
    """

    def __init__(self, weights: Mapping[str, float] | None = None, eps: float = 1e-8):
        self.weights = dict(weights or {})
        self.eps = eps
        self._impl = None
        self._names: tuple[str, ...] | None = None
        self.step = 0

    def __call__(self, parts: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        from neuralop.losses import SoftAdapt

        _check_parts(parts, self._names, "SoftAdaptWeights")
        if self._impl is None:
            self._names = tuple(parts)
            device = next(iter(parts.values())).device
            self._impl = SoftAdapt([torch.zeros(1, device=device)], len(parts), eps=self.eps,
                                   weights={k: float(self.weights.get(k, 1.0)) for k in parts})
        total, lmbda = self._impl(dict(parts), self.step)
        self.step += 1
        lmbda = lmbda.detach()
        scale = len(parts) / (float(lmbda.sum()) + self.eps) if self.step > 1 else 1.0
        used = {k: float(self.weights.get(k, 1.0)) * float(lmbda[i]) * scale for i, k in enumerate(parts)}
        return total, used


class ReLoBRaLoWeights:
    """ReLoBRaLo (Bischof and Kraus 2021) with a seeded lookback coin.

    ``lambda_i <- alpha (rho lambda_i + (1 - rho) lambda_i^(init)) + (1 - alpha) lambda_i^(prev)``
    where ``lambda^(prev) = n softmax(L(t) / (tau L(t-1)))``, ``lambda^(init)`` the same against the
    first losses, and ``rho ~ Bernoulli(beta)``.

    Parameters
    ----------
    weights : fixed weights applied first.
    alpha, beta, tau : the paper's smoothing, lookback-keep probability and temperature.
    seed : int, seeds the lookback coin.
    """

    def __init__(self, weights: Mapping[str, float] | None = None, *, alpha: float = 0.95,
                 beta: float = 0.99, tau: float = 1.0, seed: int = 0, eps: float = 1e-8):
        if not 0 <= alpha <= 1 or not 0 <= beta <= 1 or not tau > 0:
            raise ValueError(f"ReLoBRaLo needs 0<=alpha<=1, 0<=beta<=1, tau>0; got {alpha}, {beta}, {tau}")
        self.weights = dict(weights or {})
        self.alpha, self.beta, self.tau, self.eps = alpha, beta, tau, eps
        self.generator = torch.Generator().manual_seed(int(seed))
        self._names: tuple[str, ...] | None = None
        self.init = self.prev = self.lmbda = None
        self.step = 0

    def _softmax_weights(self, losses: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        z = losses / (self.tau * ref + self.eps)
        return len(losses) * torch.softmax(z, dim=0)

    def __call__(self, parts: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        _check_parts(parts, self._names, "ReLoBRaLoWeights")
        fixed = {k: float(self.weights.get(k, 1.0)) for k in parts}
        weighted = [fixed[k] * v for k, v in parts.items()]
        current = torch.stack([w.detach() for w in weighted])
        if self.step == 0:
            self._names = tuple(parts)
            self.init = current.clone()
            self.prev = current.clone()
            self.lmbda = torch.ones_like(current)
        else:
            rho = float(torch.rand((), generator=self.generator) < self.beta)
            lam_prev = self._softmax_weights(current, self.prev)
            lam_init = self._softmax_weights(current, self.init)
            self.lmbda = self.alpha * (rho * self.lmbda + (1 - rho) * lam_init) + (1 - self.alpha) * lam_prev
            self.prev = current.clone()
        self.step += 1
        total = sum(self.lmbda[i] * w for i, w in enumerate(weighted))
        used = {k: fixed[k] * float(self.lmbda[i]) for i, k in enumerate(parts)}
        return total, used


def make_weighter(adaptive: str | None, weights: Mapping[str, float], seed: int = 0):
    """``FixedWeights`` when ``adaptive`` is None, else the named adaptive scheme."""
    if adaptive is None:
        return FixedWeights(weights)
    if adaptive == "softadapt":
        return SoftAdaptWeights(weights)
    if adaptive == "relobralo":
        return ReLoBRaLoWeights(weights, seed=seed)
    raise ValueError(f"unknown adaptive weighting {adaptive!r}; valid: None, {', '.join(ADAPTIVE_SCHEMES)}")
