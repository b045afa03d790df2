"""Online choice of the SOR relaxation factor across a sequence of linear systems.

A user who solves many related systems ``A_t x = b_t`` (one per time step, or one per
parameter value) with SOR, or with SSOR-preconditioned CG, has to pick the relaxation factor
``omega`` each time. Khodak, Chow, Balcan and Talwalkar, *Learning to Relax* (ICLR 2024), treat
this as an online bandit problem: the arms are a grid of ``omega`` values (20 values in
``[1, 1.95]``), the cost of a round is the number of iterations of the solve, and only the
cost of the chosen arm is observed.

:class:`SORBandit` is the one object users need (``choose(context) -> omega``,
``update(cost)``); it runs one of the learners of :mod:`pdesurrogates.solvers.learned.bandits`.
:class:`LearnedSORSolver` wraps a policy and a solver of :mod:`pdesurrogates.linalg` so that a
time-stepping loop calls one method per system. The classical reference values of ``omega``
(Young's optimal factor, the spectral radius of Jacobi, a search for the best ``omega`` of one
system) are in :mod:`pdesurrogates.linalg.omega`.

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

import numpy as np

from pdesurrogates.solvers.learned.bandits import (
    BinnedTsallisINF,
    ChebyshevContextualBandit,
    TsallisINF,
    _array,
    _check_range,
    _tensor,
)

__all__ = ["LearnedSORSolver", "SORBandit"]

METHODS = ("tsallis", "binned", "chebyshev")
SOLVERS = ("sor", "ssor-pcg")


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
