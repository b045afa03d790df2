"""Online choice of the SOR relaxation factor across a sequence of linear systems.

A user who solves many related systems ``A_t x = b_t`` (one per time step, or one per
parameter value) with SOR, or with SSOR-preconditioned CG, has to pick the relaxation factor
``omega`` each time. Khodak, Chow, Balcan and Talwalkar, *Learning to Relax* (ICLR 2024), treat
this as an online bandit problem: the arms are a grid of ``omega`` values (20 values in
``[1, 1.95]``), the cost of a round is the number of iterations of the solve, and only the
cost of the chosen arm is observed. This module implements the three learners of the paper:

- :class:`TsallisINF` -- the non-contextual bandit: Tsallis-INF with the 1/2-Tsallis entropy
  and step size ``eta_t = 2 / sqrt(t)``; costs are normalised by the running mean of
  ``(iterations - 1)``.
- :class:`BinnedTsallisINF` -- a contextual bandit for a scalar context (a shift, a
  diffusivity): the context interval is cut into a few equal bins, each with its own
  Tsallis-INF.
- :class:`ChebyshevContextualBandit` (ChebCB) -- per arm, a least-squares fit of the cost as a
  Chebyshev series in the context, and inverse-gap-weighted sampling around the arm whose
  predicted cost is smallest.

:class:`SORBandit` is the one object users need (``choose(context) -> omega``,
``update(cost)``), :class:`LearnedSORSolver` wraps a policy and a solver so that a time-stepping
loop calls one method per system, and :func:`jacobi_spectral_radius`,
:func:`instance_optimal_omega`, :func:`young_omega` and :func:`poisson_young_omega` give the
classical reference values of ``omega``.

Examples
--------
>>> import numpy as np
>>> policy = SORBandit(method="tsallis", seed=0)
>>> rng = np.random.default_rng(0)
>>> for t in range(200):
...     omega = policy.choose()
...     policy.update(cost=1 + 100 * abs(omega - 1.7) + rng.random())
>>> bool(policy.probabilities().argmax() == np.argmin(np.abs(policy.omegas - 1.7)))
True
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = [
    "BinnedTsallisINF",
    "ChebyshevContextualBandit",
    "LearnedSORSolver",
    "SORBandit",
    "TsallisINF",
    "chebyshev_features",
    "instance_optimal_omega",
    "jacobi_spectral_radius",
    "poisson_young_omega",
    "tsallis_inf_probabilities",
    "young_omega",
]

METHODS = ("tsallis", "binned", "chebyshev")
SOLVERS = ("sor", "ssor-pcg")


# ----------------------------------------------------------------------------------------------
# classical reference values of omega
# ----------------------------------------------------------------------------------------------


def _as_scipy_or_dense(A):
    """``A`` as a SciPy sparse matrix or a 2-D float64 numpy array (torch accepted)."""
    import scipy.sparse as sp

    if sp.issparse(A):
        return A.tocsr().astype(np.float64)
    try:
        import torch

        if isinstance(A, torch.Tensor):
            if A.layout != torch.strided:
                A = A.to_dense()
            A = A.detach().cpu().numpy()
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    A = np.asarray(A, dtype=np.float64)
    if A.ndim != 2:
        raise ValueError(f"A must be a matrix, got an array of shape {A.shape}")
    return A


def jacobi_spectral_radius(A, *, symmetric: bool | None = None) -> float:
    """Spectral radius ``beta`` of the Jacobi iteration matrix ``I - D^{-1} A``.

    Parameters
    ----------
    A : scipy sparse matrix, numpy array or torch tensor, shape ``(n, n)``
        Matrix with a nonzero diagonal.
    symmetric : bool, optional
        Whether ``A`` is symmetric with a positive diagonal; detected when not given. Then
        ``I - D^{-1} A`` is similar to ``I - D^{-1/2} A D^{-1/2}``, whose extreme eigenvalues are
        computed with a symmetric solver (dense up to ``n = 2000``, Lanczos above).

    Returns
    -------
    float
        ``max |eig(I - D^{-1} A)|``.

    Examples
    --------
    >>> from pdesurrogates.physics.grid import Grid
    >>> from pdesurrogates.physics.operators import laplacian_matrix
    >>> beta = jacobi_spectral_radius(laplacian_matrix(Grid((12, 12))))  # 10 x 10 interior
    >>> round(beta, 12) == round(math.cos(math.pi / 11), 12)
    True
    """
    import scipy.sparse as sp

    A = _as_scipy_or_dense(A)
    n, m = A.shape
    if n != m:
        raise ValueError(f"A must be square, got shape {A.shape}")
    d = A.diagonal() if sp.issparse(A) else np.diag(A).copy()
    if np.any(d == 0):
        raise ValueError(f"A has a zero on its diagonal (row {int(np.flatnonzero(d == 0)[0])})")
    if symmetric is None:
        diff = A - A.T
        asym = abs(diff).max() if sp.issparse(A) else np.abs(diff).max()
        symmetric = bool(asym <= 1e-12 * max(abs(A).max(), 1e-300)) and bool(np.all(d > 0))
    if symmetric:
        s = 1.0 / np.sqrt(d)
        if sp.issparse(A):
            S = sp.diags(s) @ A @ sp.diags(s)
        else:
            S = A * s[:, None] * s[None, :]
        if n <= 2000:
            S = S.toarray() if sp.issparse(S) else S
            ev = np.linalg.eigvalsh(S)
            lo, hi = ev[0], ev[-1]
        else:
            from scipy.sparse.linalg import eigsh

            hi = eigsh(S, k=1, which="LA", return_eigenvectors=False, tol=1e-10)[0]
            lo = eigsh(S, k=1, which="SA", return_eigenvectors=False, tol=1e-10)[0]
        return float(max(abs(1.0 - lo), abs(1.0 - hi)))
    dense = A.toarray() if sp.issparse(A) else A
    if n > 4000:
        raise ValueError(f"non-symmetric A of size {n} is too large for the dense eigen-solver")
    J = np.eye(n) - dense / d[:, None]
    return float(np.max(np.abs(np.linalg.eigvals(J))))


def young_omega(beta: float) -> float:
    """Young's optimal SOR factor ``2 / (1 + sqrt(1 - beta^2))`` for a Jacobi spectral radius ``beta``.

    Exact for consistently ordered matrices whose Jacobi matrix has real eigenvalues of modulus
    below one (e.g. the 5-point Laplacian in lexicographic or red-black order). It equals the
    "instance-optimal" formula ``1 + (beta / (1 + sqrt(1 - beta^2)))^2`` of Khodak et al.

    >>> round(young_omega(0.0), 12), round(young_omega(math.cos(math.pi / 11)), 6)
    (1.0, 1.560388)
    """
    beta = float(beta)
    if not (0.0 <= beta < 1.0):
        raise ValueError(f"Young's omega needs a Jacobi spectral radius in [0, 1), got {beta}")
    return 2.0 / (1.0 + math.sqrt(1.0 - beta * beta))


def instance_optimal_omega(A=None, *, beta: float | None = None) -> float:
    """The asymptotically optimal SOR factor of one system, ``1 + (beta / (1 + sqrt(1 - beta^2)))^2``.

    ``beta`` is the spectral radius of the Jacobi iteration matrix of ``A``
    (:func:`jacobi_spectral_radius`); give either ``A`` or ``beta``. This is the "instance-optimal"
    comparator of Khodak et al. (ICLR 2024, Sec. 2); it minimises the spectral radius of the SOR
    iteration matrix, not necessarily the iteration count to a finite tolerance.
    """
    if (A is None) == (beta is None):
        raise ValueError("give exactly one of A or beta")
    if beta is None:
        beta = jacobi_spectral_radius(A)
    beta = float(beta)
    if not (0.0 <= beta < 1.0):
        raise ValueError(
            f"the instance-optimal omega needs a Jacobi spectral radius in [0, 1), got {beta:.6g}"
        )
    return 1.0 + (beta / (1.0 + math.sqrt(1.0 - beta * beta))) ** 2


def poisson_young_omega(n: int) -> float:
    """Young's optimal factor ``2 / (1 + sin(pi / (n + 1)))`` for the 5-point Laplacian on ``n x n`` interior nodes.

    >>> round(poisson_young_omega(10), 6)
    1.560388
    """
    if int(n) != n or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    return 2.0 / (1.0 + math.sin(math.pi / (int(n) + 1)))


# ----------------------------------------------------------------------------------------------
# Tsallis-INF
# ----------------------------------------------------------------------------------------------


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


# ----------------------------------------------------------------------------------------------
# public policy
# ----------------------------------------------------------------------------------------------


def _default_omegas() -> np.ndarray:
    return np.linspace(1.0, 1.95, 20)


class SORBandit:
    """Online policy for the SOR relaxation factor over a grid of ``omega`` values.

    Parameters
    ----------
    omegas : sequence or tensor of float
        The arms; each in the open interval ``(0, 2)`` where SOR converges for SPD matrices.
        Default: 20 values ``linspace(1.0, 1.95, 20)`` as in Khodak et al. (ICLR 2024).
    method : {"tsallis", "binned", "chebyshev"}
        ``"tsallis"``: :class:`TsallisINF`, ignores the context. ``"binned"``:
        :class:`BinnedTsallisINF` with ``n_bins`` bins. ``"chebyshev"``:
        :class:`ChebyshevContextualBandit` with ``n_features`` Chebyshev terms.
    context_range : (low, high), optional
        Interval of the scalar context; required by the contextual methods. Contexts outside it
        are clipped to it (the end bins, or the end of the Chebyshev interval).
    seed : int or numpy.random.Generator
        Source of the randomised choices; two policies with the same seed and the same costs make
        the same choices.
    n_bins, n_features : int
        Options of the binned and Chebyshev methods (paper: 5 or 6 bins, 6 terms).

    Notes
    -----
    One round is ``omega = choose(context)`` followed by ``update(cost)``, where ``cost`` is the
    iteration count of the solve made with ``omega``. The learners subtract one (a solve costs at
    least one iteration) and divide by the running mean of ``cost - 1``; callers pass the raw
    count.

    Examples
    --------
    >>> policy = SORBandit(method="chebyshev", context_range=(0.0, 1.0), seed=1)
    >>> omega = policy.choose(context=0.3)
    >>> 1.0 <= omega <= 1.95
    True
    >>> policy.update(cost=42)
    """

    def __init__(
        self,
        omegas=None,
        method: str = "tsallis",
        context_range: tuple[float, float] | None = None,
        seed: int | np.random.Generator = 0,
        *,
        n_bins: int = 5,
        n_features: int = 6,
    ):
        omegas = _default_omegas() if omegas is None else _array(omegas).reshape(-1)
        if omegas.size == 0:
            raise ValueError("omegas is empty: the policy needs at least one arm")
        if not np.all(np.isfinite(omegas)) or np.any((omegas <= 0) | (omegas >= 2)):
            bad = omegas[~(np.isfinite(omegas) & (omegas > 0) & (omegas < 2))]
            raise ValueError(f"every omega must lie in the open interval (0, 2); got {bad.tolist()}")
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
        self.omegas = omegas.copy()
        self.method = method
        K = omegas.size
        if method == "tsallis":
            self.context_range = None if context_range is None else _check_range(context_range)
            self.learner = TsallisINF(K, seed=seed)
        elif method == "binned":
            self.context_range = _check_range(context_range)
            self.learner = BinnedTsallisINF(K, self.context_range, n_bins=n_bins, seed=seed)
        else:
            self.context_range = _check_range(context_range)
            self.learner = ChebyshevContextualBandit(
                K, self.context_range, n_features=n_features, seed=seed
            )
        self.last_arm: int | None = None

    @property
    def contextual(self) -> bool:
        return self.method != "tsallis"

    def _context(self, context) -> float | None:
        if not self.contextual:
            return None
        if context is None:
            raise ValueError(f"method {self.method!r} needs a scalar context in choose(context=...)")
        try:
            c = float(_array(context).reshape(()))
        except ValueError:
            raise ValueError(f"context must be a scalar, got {context!r}") from None
        if not math.isfinite(c):
            raise ValueError(f"context must be finite, got {context!r}")
        return c

    def probabilities(self, context=None) -> np.ndarray:
        """Probability of each arm in the next :meth:`choose` (draws nothing), ``(K,)``."""
        c = self._context(context)
        return self.learner.probabilities() if c is None else self.learner.probabilities(c)

    def choose(self, context=None) -> float:
        """Draw the ``omega`` for the next system; ``context`` is required by contextual methods.

        A second call before :meth:`update` replaces the pending choice.
        """
        c = self._context(context)
        arm = self.learner.choose() if c is None else self.learner.choose(c)
        self.last_arm = arm
        return float(self.omegas[arm])

    def update(self, cost) -> None:
        """Charge ``cost`` (the iteration count of the solve) to the last chosen ``omega``."""
        self.learner.update(cost)

    def state_dict(self) -> dict:
        """Everything needed to continue the sequence (tensors and Python scalars only, so that
        ``torch.load(..., weights_only=True)`` reads it back)."""
        return {
            "method": self.method,
            "omegas": _tensor(self.omegas),
            "context_range": None if self.context_range is None else list(self.context_range),
            "last_arm": self.last_arm,
            "learner": self.learner.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        if state["method"] != self.method:
            raise ValueError(f"saved policy uses method {state['method']!r}, this one {self.method!r}")
        omegas = _array(state["omegas"])
        if omegas.shape != self.omegas.shape or not np.allclose(omegas, self.omegas):
            raise ValueError("saved policy has a different grid of omegas")
        self.learner.load_state_dict(state["learner"])
        self.last_arm = state["last_arm"]

    def __repr__(self) -> str:
        return (
            f"SORBandit(method={self.method!r}, arms={self.omegas.size} in "
            f"[{self.omegas.min():.3g}, {self.omegas.max():.3g}], context_range={self.context_range})"
        )


class LearnedSORSolver:
    """A relaxation solver whose ``omega`` is chosen by a :class:`SORBandit`, one call per system.

    Parameters
    ----------
    policy : SORBandit
    solver : {"sor", "ssor-pcg"}
        ``"sor"``: :func:`pdesurrogates.linalg.sor` with the chosen ``omega``.
        ``"ssor-pcg"``: :func:`pdesurrogates.linalg.pcg` preconditioned by
        ``SSORPreconditioner(A, omega)``.
    rtol : float
        Relative residual tolerance of every solve.
    maxiter : int, optional
        Iteration cap of every solve (default 10,000 as in the paper). A solve that hits the cap
        charges ``maxiter`` to the policy.
    ordering : {"lexicographic", "red-black"}
        Sweep order of SOR (ignored by ``"ssor-pcg"``).

    Attributes
    ----------
    history : list of dict
        ``{"omega", "iterations", "converged", "context"}`` per solve.

    Examples
    --------
    A time-stepping loop calls one method per system (here: the heat equation, context = diffusivity):

    >>> from pdesurrogates.physics.heat import HeatSequence
    >>> seq = HeatSequence(n=6, dt=0.05, steps=5)
    >>> policy = SORBandit(method="chebyshev", context_range=(0.0, 10.0), seed=0)
    >>> solver = LearnedSORSolver(policy, solver="sor", rtol=1e-8)
    >>> for step in seq:
    ...     res = solver.solve(step.A, step.b, context=step.context, x0=step.x0)
    ...     seq.advance(res.x)
    >>> len(solver.history), all(h["converged"] for h in solver.history)
    (5, True)
    """

    def __init__(
        self,
        policy: SORBandit,
        solver: str = "sor",
        rtol: float = 1e-8,
        maxiter: int | None = 10_000,
        *,
        ordering: str = "lexicographic",
    ):
        if not isinstance(policy, SORBandit):
            raise TypeError(f"policy must be a SORBandit, got {type(policy).__name__}")
        if solver not in SOLVERS:
            raise ValueError(f"unknown solver {solver!r}; choose one of {', '.join(SOLVERS)}")
        if not (rtol > 0):
            raise ValueError(f"rtol must be positive, got {rtol}")
        if maxiter is not None and (int(maxiter) != maxiter or maxiter < 1):
            raise ValueError(f"maxiter must be a positive integer or None, got {maxiter!r}")
        self.policy, self.solver, self.rtol = policy, solver, float(rtol)
        self.maxiter = None if maxiter is None else int(maxiter)
        self.ordering = ordering
        self.history: list[dict] = []

    def solve(self, A, b, context=None, x0=None):
        """Choose ``omega``, solve ``A x = b`` from ``x0``, charge the iteration count, return the result.

        Parameters
        ----------
        A : matrix accepted by :mod:`pdesurrogates.linalg` (SciPy sparse, numpy, torch)
        b : (n,) vector (a single system: one bandit round is one system)
        context : float, optional
            The system's scalar context (required by contextual policies).
        x0 : (n,) initial guess (a warm start from the previous step), optional

        Returns
        -------
        SolveResult
            As returned by the underlying solver; ``result.omega`` is not set, the chosen value
            is in ``self.history[-1]["omega"]``.
        """
        from pdesurrogates import linalg

        if getattr(b, "ndim", 1) != 1:
            raise ValueError(f"LearnedSORSolver solves one system per call; b has shape {tuple(b.shape)}")
        omega = self.policy.choose(context)
        if self.solver == "sor":
            res = linalg.sor(
                A, b, x0=x0, rtol=self.rtol, maxiter=self.maxiter, omega=omega, ordering=self.ordering
            )
        else:
            M = linalg.SSORPreconditioner(A, omega=omega)
            res = linalg.pcg(A, b, x0=x0, rtol=self.rtol, maxiter=self.maxiter, M=M)
        iterations = int(np.max(_array(res.iterations)))
        self.policy.update(iterations)
        self.history.append(
            {
                "omega": omega,
                "iterations": iterations,
                "converged": bool(np.all(_array(res.converged))),
                "context": None if context is None else float(_array(context).reshape(())),
            }
        )
        return res

    def mean_iterations(self, last: int | None = None) -> float:
        """Mean iteration count over all solves, or the ``last`` ones."""
        h = self.history if last is None else self.history[-int(last):]
        if not h:
            raise ValueError("no solves recorded yet")
        return float(np.mean([r["iterations"] for r in h]))
