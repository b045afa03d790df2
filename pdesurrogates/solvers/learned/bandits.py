"""Bandit learners over a finite set of arms whose costs are iteration counts.

The three learners of Khodak, Chow, Balcan and Talwalkar, *Learning to Relax* (ICLR 2024), used
by :class:`~pdesurrogates.solvers.learned.sor_bandit.SORBandit` to choose the SOR relaxation
factor; they know nothing about linear algebra (an arm is an index, a cost a number):

- :class:`TsallisINF` -- the non-contextual bandit: Tsallis-INF with the 1/2-Tsallis entropy
  and step size ``eta_t = 2 / sqrt(t)``; costs are normalised by the running mean of
  ``(cost - 1)``.
- :class:`BinnedTsallisINF` -- a contextual bandit for a scalar context (a shift, a
  diffusivity): the context interval is cut into a few equal bins, each with its own
  Tsallis-INF.
- :class:`ChebyshevContextualBandit` (ChebCB) -- per arm, a least-squares fit of the cost as a
  Chebyshev series in the context, and inverse-gap-weighted sampling around the arm whose
  predicted cost is smallest.

Each has ``probabilities(...)``, ``choose(...) -> arm``, ``update(cost)`` and
``state_dict()``/``load_state_dict()`` (tensors and Python scalars only).

>>> learner = TsallisINF(3, seed=0)
>>> for _ in range(300):
...     arm = learner.choose()
...     learner.update(cost=[30, 10, 20][arm])
>>> int(learner.probabilities().argmax())
1
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = [
    "BinnedTsallisINF",
    "ChebyshevContextualBandit",
    "TsallisINF",
    "chebyshev_features",
    "tsallis_inf_probabilities",
]


def tsallis_inf_probabilities(
    losses: np.ndarray, eta: float, *, tol: float = 1e-13, max_newton: int = 100
) -> tuple[np.ndarray, float]:
    """Arm probabilities of 1/2-Tsallis-INF: ``p_i = 4 / (eta (L_i - x))^2`` with ``sum p = 1``.

    The normaliser ``x < min L`` is found by Newton's method on ``f(x) = sum p(x) - 1``, whose
    derivative is ``eta * sum p^{3/2}``. ``f`` is increasing and convex on ``x < min L``, so
    Newton started at ``x0 = min L - 2 / eta`` (where the best arm alone has ``p = 1``, hence
    ``f(x0) >= 0``) decreases monotonically to the root and never leaves the domain. (The
    paper's code starts at ``x = -1``, which can overshoot past ``min L`` once losses grow.)

    Parameters
    ----------
    losses : (K,) array
        Cumulative (importance-weighted, normalised) loss estimates.
    eta : float
        Step size, positive.

    Returns
    -------
    p : (K,) array
        Probabilities, nonnegative, summing to one (renormalised after Newton).
    x : float
        The normaliser.
    """
    L = np.asarray(losses, dtype=np.float64)
    if L.ndim != 1 or L.size == 0:
        raise ValueError(f"losses must be a non-empty 1-D array, got shape {L.shape}")
    if not np.all(np.isfinite(L)):
        raise ValueError("losses contain NaN or Inf")
    if not (eta > 0 and math.isfinite(eta)):
        raise ValueError(f"eta must be positive and finite, got {eta}")
    x = float(L.min()) - 2.0 / eta
    for _ in range(max_newton):
        p = 4.0 / (eta * (L - x)) ** 2
        f = p.sum() - 1.0
        if f <= tol:
            break
        x -= f / (eta * np.sum(p**1.5))
    p = 4.0 / (eta * (L - x)) ** 2
    return p / p.sum(), x


def _generator_state(rng: np.random.Generator) -> dict:
    state = rng.bit_generator.state
    return {
        "bit_generator": state["bit_generator"],
        "state": int(state["state"]["state"]),
        "inc": int(state["state"]["inc"]),
        "has_uint32": int(state["has_uint32"]),
        "uinteger": int(state["uinteger"]),
    }


def _set_generator_state(rng: np.random.Generator, saved: dict) -> None:
    if saved["bit_generator"] != rng.bit_generator.state["bit_generator"]:
        raise ValueError(f"saved generator is {saved['bit_generator']}, expected PCG64")
    rng.bit_generator.state = {
        "bit_generator": saved["bit_generator"],
        "state": {"state": int(saved["state"]), "inc": int(saved["inc"])},
        "has_uint32": int(saved["has_uint32"]),
        "uinteger": int(saved["uinteger"]),
    }


def _make_rng(seed) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is None or isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed must be an int or a numpy Generator, got {seed!r}")
    return np.random.default_rng(int(seed))


def _check_cost(cost) -> float:
    try:
        c = float(cost)
    except (TypeError, ValueError):
        raise ValueError(f"cost must be a number (an iteration count), got {cost!r}") from None
    if not math.isfinite(c) or c < 0:
        raise ValueError(f"cost must be a finite nonnegative iteration count, got {cost!r}")
    return c


def _tensor(x) -> Any:
    import torch

    return torch.as_tensor(np.asarray(x, dtype=np.float64))


def _array(x) -> np.ndarray:
    try:
        import torch

        if isinstance(x, torch.Tensor):
            return x.detach().cpu().numpy().astype(np.float64)
    except ImportError:  # pragma: no cover
        pass
    return np.asarray(x, dtype=np.float64)


class TsallisINF:
    """1/2-Tsallis-INF over ``n_arms`` arms whose costs are iteration counts.

    Round ``t = 1, 2, ...``: draw arm ``i`` with the probabilities of
    :func:`tsallis_inf_probabilities` at ``eta_t = 2 / sqrt(t)`` applied to the cumulative loss
    estimates divided by ``scale``; observe the cost ``c`` (iterations, at least one); add
    the importance-weighted estimate ``(c - 1) / p_i`` to arm ``i``. ``scale`` is the running
    mean of ``c - 1`` over the rounds seen so far (1 before the first), which makes the method
    invariant to the size of the systems (Khodak et al., ICLR 2024, Sec. 3).

    Parameters
    ----------
    n_arms : int
        Number of arms, at least 1.
    seed : int or numpy.random.Generator
        Source of the arm draws.
    """

    def __init__(self, n_arms: int, *, seed: int | np.random.Generator = 0):
        if int(n_arms) != n_arms or n_arms < 1:
            raise ValueError(f"n_arms must be a positive integer, got {n_arms!r}")
        self.n_arms = int(n_arms)
        self.rng = _make_rng(seed)
        self.loss_estimates = np.zeros(self.n_arms)
        self.t = 1
        self.total_cost = 0.0  # sum of (cost - 1) so far
        self._pending: tuple[int, float] | None = None

    @property
    def scale(self) -> float:
        if self.t == 1 or self.total_cost <= 0:
            return 1.0
        return self.total_cost / (self.t - 1)

    def probabilities(self) -> np.ndarray:
        """Arm probabilities for the current round, ``(n_arms,)``."""
        eta = 2.0 / math.sqrt(self.t)
        return tsallis_inf_probabilities(self.loss_estimates / self.scale, eta)[0]

    def choose(self) -> int:
        """Draw an arm index for this round (remembered for :meth:`update`)."""
        p = self.probabilities()
        arm = int(self.rng.choice(self.n_arms, p=p))
        self._pending = (arm, float(p[arm]))
        return arm

    def update(self, cost) -> None:
        """Record the cost (an iteration count) of the arm drawn by the last :meth:`choose`."""
        if self._pending is None:
            raise RuntimeError("update() called before choose(): no pending arm to charge")
        c = max(_check_cost(cost) - 1.0, 0.0)
        arm, p = self._pending
        self.loss_estimates[arm] += c / p
        self.total_cost += c
        self.t += 1
        self._pending = None

    def state_dict(self) -> dict:
        return {
            "loss_estimates": _tensor(self.loss_estimates),
            "t": self.t,
            "total_cost": self.total_cost,
            "pending": None if self._pending is None else [self._pending[0], self._pending[1]],
            "rng": _generator_state(self.rng),
        }

    def load_state_dict(self, state: dict) -> None:
        est = _array(state["loss_estimates"])
        if est.shape != (self.n_arms,):
            raise ValueError(f"saved loss estimates have shape {est.shape}, expected ({self.n_arms},)")
        self.loss_estimates = est.copy()
        self.t = int(state["t"])
        self.total_cost = float(state["total_cost"])
        pending = state["pending"]
        self._pending = None if pending is None else (int(pending[0]), float(pending[1]))
        _set_generator_state(self.rng, state["rng"])


class BinnedTsallisINF:
    """Contextual Tsallis-INF: ``n_bins`` equal bins over ``[low, high]``, one learner per bin.

    A context is sent to the bin whose centre is nearest, so contexts outside the interval are
    clipped to the first or last bin. All bins share one random generator.
    """

    def __init__(
        self, n_arms: int, context_range: tuple[float, float], *, n_bins: int = 5, seed=0
    ):
        low, high = _check_range(context_range)
        if int(n_bins) != n_bins or n_bins < 1:
            raise ValueError(f"n_bins must be a positive integer, got {n_bins!r}")
        self.n_arms = int(n_arms)
        self.low, self.high, self.n_bins = low, high, int(n_bins)
        self.rng = _make_rng(seed)
        self.bins = [TsallisINF(n_arms, seed=self.rng) for _ in range(self.n_bins)]
        self._pending_bin: int | None = None

    def bin_of(self, context: float) -> int:
        u = (float(context) - self.low) / (self.high - self.low)
        return int(min(max(math.floor(u * self.n_bins), 0), self.n_bins - 1))

    def probabilities(self, context: float) -> np.ndarray:
        return self.bins[self.bin_of(context)].probabilities()

    def choose(self, context: float) -> int:
        k = self.bin_of(context)
        self._pending_bin = k
        return self.bins[k].choose()

    def update(self, cost) -> None:
        if self._pending_bin is None:
            raise RuntimeError("update() called before choose(): no pending arm to charge")
        self.bins[self._pending_bin].update(cost)
        self._pending_bin = None

    def state_dict(self) -> dict:
        # every bin shares self.rng; its state is saved once at this level
        bins = []
        for b in self.bins:
            s = b.state_dict()
            s.pop("rng")
            bins.append(s)
        return {"bins": bins, "pending_bin": self._pending_bin, "rng": _generator_state(self.rng)}

    def load_state_dict(self, state: dict) -> None:
        if len(state["bins"]) != self.n_bins:
            raise ValueError(f"saved state has {len(state['bins'])} bins, expected {self.n_bins}")
        _set_generator_state(self.rng, state["rng"])
        for b, s in zip(self.bins, state["bins"]):
            s = dict(s, rng=_generator_state(self.rng))
            b.load_state_dict(s)
        self._pending_bin = state["pending_bin"]


def _check_range(context_range) -> tuple[float, float]:
    if context_range is None:
        raise ValueError("a contextual method needs context_range=(low, high)")
    try:
        low, high = (float(v) for v in context_range)
    except (TypeError, ValueError):
        raise ValueError(f"context_range must be a pair (low, high), got {context_range!r}") from None
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise ValueError(f"context_range must be finite with low < high, got {context_range!r}")
    return low, high


def chebyshev_features(u, n_features: int) -> np.ndarray:
    """Chebyshev polynomials ``T_0(u), ..., T_{n_features-1}(u)`` at ``u`` in ``[-1, 1]``.

    >>> chebyshev_features(0.5, 4).round(12).tolist()
    [1.0, 0.5, -0.5, -1.0]
    """
    u = np.asarray(u, dtype=np.float64)
    out = np.empty(u.shape + (n_features,))
    out[..., 0] = 1.0
    if n_features > 1:
        out[..., 1] = u
    for j in range(2, n_features):
        out[..., j] = 2.0 * u * out[..., j - 1] - out[..., j - 2]
    return out


class ChebyshevContextualBandit:
    """ChebCB: per-arm Chebyshev regression of cost on a scalar context, inverse-gap weighting.

    For each arm ``i`` the normalised cost ``y = (c - 1) / s`` (``s`` the running mean of
    ``c - 1``) is fitted by ridge least squares on the features ``T_0..T_{m-1}`` of the context
    mapped to ``[-1, 1]`` (contexts outside ``context_range`` are clipped to it). With predictions
    ``y_i`` and the best ``y_*``, arm ``i != *`` is drawn with probability
    ``1 / (K + eta_t (y_i - y_*))`` and the best arm takes the rest (inverse-gap weighting,
    Foster & Rakhlin 2020). The rate follows the paper's code,
    ``eta_t = 2 t sqrt(K t / (R_t + alpha t))``, where ``R_t`` is the cumulative squared error of
    the predictions made for the chosen arms. Arms with no data predict ``y = 0`` (one
    iteration), which makes the greedy choice try them first.

    Parameters
    ----------
    n_arms : int
    context_range : (low, high)
    n_features : int
        Number of Chebyshev terms (the paper uses 6).
    ridge : float
        Ridge penalty on the coefficients, keeps the fit defined for arms with few samples.
    alpha : float
        Floor on the mean squared prediction error in ``eta_t``.
    seed : int or numpy.random.Generator
    """

    def __init__(
        self,
        n_arms: int,
        context_range: tuple[float, float],
        *,
        n_features: int = 6,
        ridge: float = 1e-3,
        alpha: float = 1e-4,
        seed=0,
    ):
        if int(n_arms) != n_arms or n_arms < 1:
            raise ValueError(f"n_arms must be a positive integer, got {n_arms!r}")
        if int(n_features) != n_features or n_features < 1:
            raise ValueError(f"n_features must be a positive integer, got {n_features!r}")
        if not (ridge > 0 and alpha > 0):
            raise ValueError(f"ridge and alpha must be positive, got {ridge}, {alpha}")
        self.low, self.high = _check_range(context_range)
        self.n_arms, self.n_features = int(n_arms), int(n_features)
        self.ridge, self.alpha = float(ridge), float(alpha)
        self.rng = _make_rng(seed)
        m = self.n_features
        self.gram = np.zeros((self.n_arms, m, m))  # sum phi phi^T per arm
        self.moment = np.zeros((self.n_arms, m))  # sum phi (c - 1) per arm
        self.counts = np.zeros(self.n_arms, dtype=np.int64)
        self.t = 1
        self.total_cost = 0.0
        self.squared_error = 0.0
        self._pending: tuple[int, np.ndarray, float] | None = None

    @property
    def scale(self) -> float:
        if self.t == 1 or self.total_cost <= 0:
            return 1.0
        return self.total_cost / (self.t - 1)

    def features(self, context: float) -> np.ndarray:
        u = 2.0 * (float(context) - self.low) / (self.high - self.low) - 1.0
        return chebyshev_features(min(max(u, -1.0), 1.0), self.n_features)

    def predict(self, context: float) -> np.ndarray:
        """Predicted normalised costs ``(c - 1) / s`` of all arms at ``context``, ``(K,)``."""
        phi = self.features(context)
        eye = self.ridge * np.eye(self.n_features)
        theta = np.linalg.solve(self.gram + eye, self.moment[..., None])[..., 0]
        return theta @ phi / self.scale

    @property
    def eta(self) -> float:
        t = self.t
        return 2.0 * t * math.sqrt(self.n_arms * t / (self.squared_error + self.alpha * t))

    def _inverse_gap(self, y: np.ndarray) -> np.ndarray:
        best = int(np.argmin(y))
        p = 1.0 / (self.n_arms + self.eta * (y - y[best]))
        p[best] = 0.0
        p[best] = 1.0 - p.sum()  # >= 1/K: every other arm has p <= 1/K
        return p

    def probabilities(self, context: float) -> np.ndarray:
        """Inverse-gap-weighted arm probabilities at ``context``, ``(K,)``."""
        return self._inverse_gap(self.predict(context))

    def choose(self, context: float) -> int:
        y = self.predict(context)
        p = self._inverse_gap(y)
        arm = int(self.rng.choice(self.n_arms, p=p))
        self._pending = (arm, self.features(context), float(y[arm]))
        return arm

    def update(self, cost) -> None:
        if self._pending is None:
            raise RuntimeError("update() called before choose(): no pending arm to charge")
        c = max(_check_cost(cost) - 1.0, 0.0)
        arm, phi, predicted = self._pending
        self.squared_error += (predicted - c / self.scale) ** 2
        self.gram[arm] += np.outer(phi, phi)
        self.moment[arm] += phi * c
        self.counts[arm] += 1
        self.total_cost += c
        self.t += 1
        self._pending = None

    def state_dict(self) -> dict:
        pending = None
        if self._pending is not None:
            pending = [self._pending[0], _tensor(self._pending[1]), self._pending[2]]
        return {
            "gram": _tensor(self.gram),
            "moment": _tensor(self.moment),
            "counts": _tensor(self.counts),
            "t": self.t,
            "total_cost": self.total_cost,
            "squared_error": self.squared_error,
            "pending": pending,
            "rng": _generator_state(self.rng),
        }

    def load_state_dict(self, state: dict) -> None:
        gram = _array(state["gram"])
        if gram.shape != self.gram.shape:
            raise ValueError(f"saved Gram matrices have shape {gram.shape}, expected {self.gram.shape}")
        self.gram = gram.copy()
        self.moment = _array(state["moment"]).copy()
        self.counts = _array(state["counts"]).astype(np.int64)
        self.t = int(state["t"])
        self.total_cost = float(state["total_cost"])
        self.squared_error = float(state["squared_error"])
        p = state["pending"]
        self._pending = None if p is None else (int(p[0]), _array(p[1]).copy(), float(p[2]))
        _set_generator_state(self.rng, state["rng"])

