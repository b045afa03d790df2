"""The result object every solver in :mod:`pdesurrogates.linalg` returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class SolveResult:
    """Outcome of an iterative solve.

    The array library follows the right-hand side: a numpy ``b`` gives numpy fields, a torch ``b``
    gives torch fields on ``b``'s device.

    Attributes
    ----------
    x : array ``(n,)`` or ``(B, n)``
        The final iterate, same type, shape and dtype as ``b``.
    converged : bool or bool array ``(B,)``
        Whether the stopping test ``||b - A x|| <= max(rtol ||b||, atol)`` was met.
    iterations : int or int array ``(B,)``
        Iterations each system took (a system stops being updated once it has converged).
    residuals : array ``(iterations + 1,)`` or ``(max(iterations) + 1, B)``
        Relative residual ``||r_k|| / ||b||`` (``||r_k||`` when ``b = 0``) before the first
        iteration and after each one. Rows past a system's own stopping point repeat its
        last value.
    info : dict
        Solver-specific extras, e.g. ``"fallbacks"`` (FCG: iterations per system where the
        preconditioner's direction was replaced by the Jacobi direction) or
        ``"true_residual"`` (the recomputed ``||b - A x|| / ||b||`` at the end).
    """

    x: Any
    converged: Any
    iterations: Any
    residuals: Any
    info: dict = field(default_factory=dict)

    @property
    def fallbacks(self):
        """Per-system count of preconditioner fallbacks (FCG only, else ``None``)."""
        return self.info.get("fallbacks")

    def __repr__(self) -> str:  # short: x can be large
        return (
            f"SolveResult(converged={self.converged}, iterations={self.iterations}, "
            f"final_residual={self._final()})"
        )

    def _final(self):
        r = self.residuals
        return r[-1] if len(r) else None
