"""A sequence of Crank–Nicolson heat-equation steps, each an SPD linear system.

The 2D heat equation ``u_t = c(t) Laplace u + f(x, y, t)`` on the unit square with ``u = 0`` on the
boundary is discretised with the 5-point Laplacian on an ``n x n`` grid of interior nodes
(``h = 1 / (n + 1)``) and stepped with Crank–Nicolson (the trapezoidal rule). With ``L = -Laplace_h``
(SPD) and ``t_{k+1} = t_k + dt`` each step solves

    (I + dt/2 c(t_{k+1}) L) u_{k+1} = (I - dt/2 c(t_k) L) u_k + dt/2 (f(t_k) + f(t_{k+1})),

so the matrix ``A_k = I + dt/2 c(t_{k+1}) L`` is SPD whenever ``c(t_{k+1}) >= 0``. This is the
sequence of linear systems that "Learning to Relax" (Khodak, Chow, Balcan, Talwalkar, ICLR 2024)
accelerates by choosing the SOR relaxation parameter from the context ``c(t)``.

The default diffusivity is theirs, ``kappa(t) = max(0.1 sin 2 pi t, -10 sin 2 pi t)``, which is zero at
every half-integer ``t``; we add a floor (:attr:`KhodakDiffusivity.floor`, default ``1e-3``) so
the equation stays strictly parabolic and ``c(t)`` stays a positive context. A negative ``c`` makes
the heat equation ill-posed and is refused.

>>> seq = HeatSequence(n=8, dt=1e-2, steps=3)
>>> for step in seq:
...     x = scipy.sparse.linalg.spsolve(step.A.tocsc(), step.b)
...     seq.advance(x)
>>> seq.step_index, round(seq.t, 12)
(3, 0.03)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg  # noqa: F401  (sp.linalg, and the name scipy for the doctest)

from pdesurrogates.physics.grid import Grid
from pdesurrogates.physics.operators import laplacian_matrix


@dataclass(frozen=True)
class KhodakDiffusivity:
    """``c(t) = max(0.1 sin 2 pi t, -10 sin 2 pi t, floor)`` (Khodak et al., ICLR 2024, plus a floor)."""

    floor: float = 1e-3

    def __post_init__(self) -> None:
        if not self.floor >= 0:
            raise ValueError(f"KhodakDiffusivity.floor must be >= 0, got {self.floor}")

    def __call__(self, t: float) -> float:
        s = math.sin(2.0 * math.pi * t)
        return max(0.1 * s, -10.0 * s, self.floor)


@dataclass(frozen=True)
class MovingBump:
    """Gaussian bump forcing whose centre circles the middle of the square once per time unit.

    ``f(x, y, t) = amplitude * exp(-|(x, y) - p(t)|^2 / (2 width^2))`` with
    ``p(t) = (0.5 + radius cos 2 pi t, 0.5 + radius sin 2 pi t)``.
    """

    amplitude: float = 1.0
    width: float = 0.1
    radius: float = 0.25

    def __call__(self, x: np.ndarray, y: np.ndarray, t: float) -> np.ndarray:
        cx = 0.5 + self.radius * math.cos(2.0 * math.pi * t)
        cy = 0.5 + self.radius * math.sin(2.0 * math.pi * t)
        return self.amplitude * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2.0 * self.width**2))


@dataclass(frozen=True)
class HeatStep:
    """One Crank–Nicolson step's linear system ``A x = b``.

    Attributes
    ----------
    A : scipy.sparse.csr_matrix
        ``(n*n, n*n)`` SPD matrix ``I + dt/2 c(t) L``.
    b : np.ndarray
        ``(n*n,)`` right-hand side, float64.
    context : float
        The diffusivity ``c(t)`` of this step's matrix (the bandit's context).
    t : float
        Time reached by this step.
    step : int
        Index of the step, from 0.
    x0 : np.ndarray
        ``(n*n,)`` previous solution, a natural warm start.
    """

    A: sp.csr_matrix
    b: np.ndarray
    context: float
    t: float
    step: int
    x0: np.ndarray

    def __iter__(self):
        """Unpack as ``A, b, context = step``."""
        return iter((self.A, self.b, self.context))


class HeatSequence:
    """Iterate over the SPD systems of a Crank–Nicolson heat-equation run.

    Iterating yields a :class:`HeatStep` per time step; the caller solves it (with any solver)
    and hands the solution back with :meth:`advance` before asking for the next step, so the
    sequence evolves with the caller's solutions. :meth:`solve_all` runs it with a direct solver.

    Parameters
    ----------
    n : int
        Interior nodes per side (>= 2); unknowns ``n*n`` in C order (``x`` first axis).
    dt : float
        Time step (> 0). Crank–Nicolson is unconditionally stable, so no CFL bound applies.
    steps : int
        Number of steps (>= 1).
    diffusivity : callable ``t -> float``, optional
        ``c(t) >= 0``; default :class:`KhodakDiffusivity`.
    forcing : callable ``(x, y, t) -> array (n, n)``, optional
        Source term on the interior nodes; default :class:`MovingBump`. ``None`` for the default,
        pass ``lambda x, y, t: 0 * x`` for no forcing.
    u0 : array ``(n, n)`` or callable ``(x, y) -> (n, n)``, optional
        Initial condition on the interior nodes; default zero.
    t0 : float
        Start time.
    """

    def __init__(
        self,
        n: int,
        dt: float = 1e-3,
        steps: int = 5000,
        diffusivity: Callable[[float], float] | None = None,
        forcing: Callable[[np.ndarray, np.ndarray, float], np.ndarray] | None = None,
        u0=None,
        t0: float = 0.0,
    ) -> None:
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 2:
            raise ValueError(f"HeatSequence: n (interior nodes per side) must be an int >= 2, got {n!r}")
        if not dt > 0 or not math.isfinite(dt):
            raise ValueError(f"HeatSequence: dt must be positive and finite, got {dt}")
        if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
            raise ValueError(f"HeatSequence: steps must be an int >= 1, got {steps!r}")
        self.n = int(n)
        self.dt = float(dt)
        self.steps = int(steps)
        self.diffusivity = KhodakDiffusivity() if diffusivity is None else diffusivity
        self.forcing = MovingBump() if forcing is None else forcing
        self.grid = Grid((self.n + 2, self.n + 2))
        self.laplacian = laplacian_matrix(self.grid)  # -Laplace_h, SPD
        self._identity = sp.identity(self.n * self.n, format="csr")
        x, y = self.grid.mesh()
        self.x, self.y = x[1:-1, 1:-1], y[1:-1, 1:-1]
        if u0 is None:
            u = np.zeros((self.n, self.n))
        elif callable(u0):
            u = np.asarray(u0(self.x, self.y), dtype=np.float64)
        else:
            u = np.asarray(u0, dtype=np.float64)
        if u.shape != (self.n, self.n):
            raise ValueError(f"HeatSequence: u0 has shape {u.shape}, expected ({self.n}, {self.n})")
        self.u = u.ravel().copy()
        self.t0 = float(t0)
        self.t = float(t0)
        self.step_index = 0
        self._pending: HeatStep | None = None

    def _c(self, t: float) -> float:
        c = float(self.diffusivity(t))
        if not (c >= 0 and math.isfinite(c)):
            raise ValueError(f"HeatSequence: diffusivity c({t:.6g}) = {c}; it must be finite and "
                             ">= 0 (a negative diffusivity makes the heat equation ill-posed)")
        return c

    def _f(self, t: float) -> np.ndarray:
        f = np.asarray(self.forcing(self.x, self.y, t), dtype=np.float64)
        if f.shape != (self.n, self.n):
            raise ValueError(f"HeatSequence: forcing returned shape {f.shape}, expected ({self.n}, {self.n})")
        return f.ravel()

    def system(self) -> HeatStep:
        """The system of the next step (from the current state), without consuming it."""
        t_now = self.t0 + self.step_index * self.dt
        t_next = self.t0 + (self.step_index + 1) * self.dt
        c_now, c_next = self._c(t_now), self._c(t_next)
        half = 0.5 * self.dt
        A = (self._identity + (half * c_next) * self.laplacian).tocsr()
        b = self.u - (half * c_now) * (self.laplacian @ self.u) + half * (self._f(t_now) + self._f(t_next))
        return HeatStep(A=A, b=b, context=c_next, t=t_next, step=self.step_index, x0=self.u.copy())

    def __iter__(self) -> Iterator[HeatStep]:
        while self.step_index < self.steps:
            if self._pending is not None:
                raise RuntimeError(
                    f"HeatSequence: step {self._pending.step} was not advanced; call "
                    "advance(x) with its solution before asking for the next step")
            self._pending = self.system()
            yield self._pending

    def advance(self, x) -> None:
        """Accept the solution ``x`` ``(n*n,)`` of the pending step and move time forward."""
        if self._pending is None:
            raise RuntimeError("HeatSequence.advance: no pending step (iterate the sequence first)")
        x = np.asarray(x, dtype=np.float64).reshape(-1)
        if x.shape != (self.n * self.n,):
            raise ValueError(f"HeatSequence.advance: x has {x.size} entries, expected {self.n * self.n}")
        if not np.all(np.isfinite(x)):
            raise ValueError("HeatSequence.advance: x contains NaN or Inf")
        self.u = x.copy()
        self.t = self._pending.t
        self.step_index += 1
        self._pending = None

    def solve_all(self) -> np.ndarray:
        """Run the remaining steps with a sparse direct solve; returns the final ``u`` ``(n, n)``."""
        for step in self:
            self.advance(sp.linalg.spsolve(step.A.tocsc(), step.b))
        return self.u.reshape(self.n, self.n)

    def state(self) -> np.ndarray:
        """Current solution on the interior nodes, ``(n, n)``."""
        return self.u.reshape(self.n, self.n).copy()
