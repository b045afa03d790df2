"""Bookkeeping shared by the iterative solvers: stopping test, history, masks, results.

All state lives in tensors on the solve's device; the host looks at it (one sync) only every
``check_every`` iterations to decide whether the loop can stop.
"""

from __future__ import annotations

import torch

from pdesurrogates.linalg.operators import System
from pdesurrogates.linalg.result import SolveResult


def check_tolerances(rtol, atol, maxiter, n: int, name: str) -> int:
    """Validate ``rtol``, ``atol``, ``maxiter``; returns ``maxiter`` (default ``10 n``)."""
    for label, v in (("rtol", rtol), ("atol", atol)):
        try:
            ok = float(v) >= 0 and float(v) == float(v) and float(v) != float("inf")
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise ValueError(f"{name}: {label} must be a finite number >= 0, got {v!r}")
    if maxiter is None:
        return 10 * n
    if int(maxiter) != maxiter or maxiter < 0:
        raise ValueError(f"{name}: maxiter must be an integer >= 0, got {maxiter!r}")
    return int(maxiter)


def default_check_every(device: torch.device, check_every) -> int:
    if check_every is None:
        return 1 if torch.device(device).type == "cpu" else 8
    if int(check_every) != check_every or check_every < 1:
        raise ValueError(f"check_every must be a positive integer, got {check_every!r}")
    return int(check_every)


class Monitor:
    """Per-system stopping test ``||r|| <= max(rtol ||b||, atol)`` and residual history.

    Parameters
    ----------
    b : tensor ``(B, n)``
    rtol, atol : float
    check_every : int
        Host-side convergence check period (the per-system masks are exact regardless).
    """

    def __init__(self, b: torch.Tensor, rtol: float, atol: float, check_every: int) -> None:
        bnorm = torch.linalg.vector_norm(b, dim=1)
        self.denom = torch.where(bnorm > 0, bnorm, torch.ones_like(bnorm))
        self.thresh = torch.clamp(float(rtol) * bnorm, min=float(atol))
        self.check_every = check_every
        self.history: list[torch.Tensor] = []
        self.iterations = torch.zeros(b.shape[0], dtype=torch.long, device=b.device)
        self.active = torch.ones(b.shape[0], dtype=torch.bool, device=b.device)
        self.last = None

    def start(self, rnorm: torch.Tensor) -> None:
        self.history.append(rnorm / self.denom)
        self.active = (rnorm > self.thresh) & torch.isfinite(rnorm)
        self.last = rnorm

    def record(self, rnorm: torch.Tensor) -> None:
        """Count an iteration for the systems that were active, then update the masks."""
        self.iterations += self.active.long()
        rnorm = torch.where(self.active, rnorm, self.last)
        self.history.append(rnorm / self.denom)
        self.active = self.active & (rnorm > self.thresh) & torch.isfinite(rnorm)
        self.last = rnorm

    def done(self, k: int) -> bool:
        """Host check (a sync) every ``check_every`` iterations: is every system finished?"""
        return k % self.check_every == 0 and not bool(self.active.any())

    def keep(self, new: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
        """``new`` for active systems, ``old`` for finished ones (rows of ``(B, n)``)."""
        return torch.where(self.active.unsqueeze(1), new, old)

    def result(self, system: System, X: torch.Tensor, info: dict | None = None) -> SolveResult:
        K = int(self.iterations.max()) + 1 if self.iterations.numel() else 1
        hist = torch.stack(self.history[:K])
        converged = self.last <= self.thresh
        out_info = {}
        for key, v in (info or {}).items():
            out_info[key] = system.field(v) if isinstance(v, torch.Tensor) else v
        return SolveResult(
            x=system.output(X),
            converged=system.field(converged),
            iterations=system.field(self.iterations),
            residuals=system.field(hist),
            info=out_info,
        )


def user_iterate(system: System, X: torch.Tensor):
    """The current iterate in the caller's layout, for callbacks."""
    return system.output(X)
