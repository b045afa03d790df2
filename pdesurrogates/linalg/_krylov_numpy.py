"""CG and FCG for one right-hand side on the CPU, on numpy buffers (the fast path).

The same recurrences, stopping test and breakdown checks as the batched torch loops in
:mod:`pdesurrogates.linalg.krylov`, written for a single system: scalars stay Python floats, the
vectors are updated in place with BLAS (``axpy``), and the operator and preconditioner act on
1-D numpy vectors (a SciPy CSR product for sparse ``A``, ``LinearOperator.matvec`` for SciPy-style
preconditioners, a zero-copy torch view for ``Preconditioner`` objects). No per-iteration
dtype casts, device copies or tensor allocations: the cost around ``A`` and ``M`` is that of
SciPy's own ``cg``.

Both kernels raise :class:`Breakdown` (caught and reworded by the caller) instead of returning a
meaningless iterate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.linalg import blas

__all__ = ["Breakdown", "SingleRun", "cg_single", "fcg_single"]


class Breakdown(Exception):
    """``kind`` (``"A"``, ``"M"`` or ``"direction"``) failed at ``iteration`` with ``value``."""

    def __init__(self, kind: str, iteration: int, value: float) -> None:
        super().__init__(kind, iteration, value)
        self.kind, self.iteration, self.value = kind, iteration, value


@dataclass
class SingleRun:
    x: np.ndarray
    rnorms: list = field(default_factory=list)
    iterations: int = 0
    fallbacks: int = 0
    restarts: int = 0


def _axpy(dtype):
    return blas.daxpy if dtype == np.float64 else blas.saxpy


def _norm(v: np.ndarray) -> float:
    return math.sqrt(float(np.dot(v, v)))


def _active(rnorm: float, thresh: float) -> bool:
    return rnorm > thresh and math.isfinite(rnorm)


def cg_single(matvec, prec, b: np.ndarray, x: np.ndarray, thresh: float, maxiter: int,
              callback=None) -> SingleRun:
    """Preconditioned CG on ``A x = b`` from ``x`` (updated in place).

    ``matvec(v)`` and ``prec(r)`` act on 1-D numpy vectors; ``thresh`` is the absolute residual
    threshold ``max(rtol ||b||, atol)``.
    """
    axpy = _axpy(x.dtype)
    r = b - matvec(x) if x.any() else b.copy()
    run = SingleRun(x=x)
    rnorm = _norm(r)
    run.rnorms.append(rnorm)
    if not _active(rnorm, thresh) or maxiter == 0:
        return run
    z = prec(r)
    rz = float(np.dot(r, z))
    if not rz > 0:
        raise Breakdown("M", 0, rz)
    p = np.array(z, copy=True)
    for k in range(maxiter):
        q = matvec(p)
        pAp = float(np.dot(p, q))
        if not pAp > 0:
            raise Breakdown("A", k + 1, pAp)
        alpha = rz / pAp
        axpy(p, x, a=alpha)
        axpy(q, r, a=-alpha)
        rnorm = _norm(r)
        run.iterations += 1
        run.rnorms.append(rnorm)
        if callback is not None:
            callback(x)
        if not _active(rnorm, thresh) or k + 1 == maxiter:
            break  # no preconditioner application for a step that will not be taken
        z = prec(r)
        rz_new = float(np.dot(r, z))
        if not rz_new > 0:
            raise Breakdown("M", k + 1, rz_new)
        p *= rz_new / rz
        axpy(z, p, a=1.0)
        rz = rz_new
    return run


def _direction(z: np.ndarray, history, axpy, spare: list) -> np.ndarray:
    """``z`` A-orthogonalised against ``(p_j, A p_j, p_j^T A p_j)`` (modified Gram–Schmidt), in an
    array of its own (``z`` may alias ``r`` or ``M``'s buffers; the result joins the history):
    a direction dropped from the history earlier (``spare``) or a new one."""
    out = spare.pop() if spare else np.empty_like(z)
    first = True
    for pj, apj, pApj in history:
        coef = float(np.dot(z if first else out, apj)) / pApj if pApj > 0 else 0.0
        if first:
            np.multiply(pj, -coef, out=out)
            out += z
            first = False
        else:
            axpy(pj, out, a=-coef)
    if first:
        np.copyto(out, z)
    return out


def fcg_single(matvec, prec, b: np.ndarray, x: np.ndarray, thresh: float, maxiter: int, *,
               m: int, recompute_every: int | None, fallback: bool, stagnation: float | None,
               jacobi_scale: np.ndarray | None, callback=None) -> SingleRun:
    """Flexible CG FCG(m) on ``A x = b`` from ``x`` (updated in place); see ``krylov.fcg``.

    ``jacobi_scale``: ``1 / diag(A)`` for the fallback and restart directions (``None``: ``r``).
    """
    axpy = _axpy(x.dtype)
    r = b - matvec(x) if x.any() else b.copy()
    run = SingleRun(x=x)
    rnorm = _norm(r)
    run.rnorms.append(rnorm)
    history: list = []
    spare: list = []  # directions dropped from the history, reused as buffers
    stalled = False

    def jacobi(r):
        return r * jacobi_scale if jacobi_scale is not None else r.copy()

    if not _active(rnorm, thresh):
        return run
    for k in range(maxiter):
        if stagnation is not None and stalled:
            run.restarts += 1
            z = jacobi(r)
        else:
            z = prec(r)
        # NaN/Inf anywhere in z makes p^T r non-finite (no separate pass over z)
        p = _direction(z, history, axpy, spare)
        pr = float(np.dot(p, r))
        if not (pr > 0 and math.isfinite(pr)):
            if not fallback:
                raise Breakdown("direction", k + 1, pr)
            run.fallbacks += 1
            spare.append(p)
            j = jacobi(r)
            p = _direction(j, history, axpy, spare)
            if not float(np.dot(p, r)) > 0:
                spare.append(p)
                p = j
            pr = float(np.dot(p, r))
        q = matvec(p)
        pAp = float(np.dot(p, q))
        if not pAp > 0:
            raise Breakdown("A", k + 1, pAp)
        alpha = pr / pAp
        axpy(p, x, a=alpha)
        if recompute_every is not None and (k + 1) % recompute_every == 0:
            r = b - matvec(x)
        else:
            axpy(q, r, a=-alpha)
        new_norm = _norm(r)
        if stagnation is not None:
            stalled = new_norm >= (1.0 - stagnation) * rnorm
        rnorm = new_norm
        run.iterations += 1
        run.rnorms.append(rnorm)
        if callback is not None:
            callback(x)
        if not _active(rnorm, thresh):
            break
        history.append((p, q, pAp))
        if len(history) > m:
            spare.append(history.pop(0)[0])
    return run
