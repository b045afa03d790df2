"""Krylov solvers for SPD systems: CG, preconditioned CG, flexible CG (FCG(m)).

All three are batched (``b: (B, n)``, one scalar recurrence per system, systems that have
converged are frozen) and run on the device of their inputs; the host checks for completion
only every ``check_every`` iterations. The stopping test is SciPy's:
``||r_k|| <= max(rtol ||b||, atol)`` on the (recursively updated) residual.

A single right-hand side on the CPU takes a fast path on numpy buffers (in-place BLAS updates,
no per-iteration copies or casts): same recurrences, same iterates up to round-off, the cost of
SciPy's ``cg`` around the same ``A`` and ``M``.

``A`` may be any matrix format of :mod:`~pdesurrogates.linalg.operators`, a
``StencilOperator``, a SciPy ``LinearOperator`` or a callable (matrix-free). It must be
symmetric: a randomised test ``u^T A v = v^T A u`` (two products with ``A``) refuses a
non-symmetric one before iterating, and ``p^T A p <= 0`` (indefinite) stops with an error naming
the iteration.

Preconditioners ``M`` approximate ``A^{-1}`` and may be

* a :class:`~pdesurrogates.linalg.preconditioners.Preconditioner` (or any object with
  ``apply(R)`` on ``(B, n)`` torch tensors and flags ``linear``/``symmetric``),
* a :class:`scipy.sparse.linalg.LinearOperator`, SciPy sparse matrix or numpy array (applied with
  ``matvec`` to 1-D float64 numpy vectors, SciPy's convention),
* a torch tensor (a matrix that multiplies ``r``),
* a plain callable, called in the caller's convention: with a numpy ``b``, ``M(r)`` on 1-D
  float64 numpy vectors (as SciPy users write them); with a torch ``b``, ``M(R)`` on the
  ``(B, n)`` torch batch.

What ``M`` returns is checked (``None``, a complex or wrongly shaped result raise an error naming
``M``). :func:`pcg` requires a linear symmetric ``M`` and refuses others; :func:`fcg` accepts any.

>>> from pdesurrogates.linalg import gallery
>>> A = gallery.poisson2d(16)
>>> res = cg(A, np.ones(256), rtol=1e-8)
>>> res.converged, res.iterations
(True, 28)
"""

from __future__ import annotations

import math
from functools import partial

import numpy as np
import torch

from pdesurrogates.linalg._dispatch import ResolvedPreconditioner, resolve_preconditioner
from pdesurrogates.linalg._iteration import (
    Monitor,
    check_tolerances,
    default_check_every,
    user_iterate,
)
from pdesurrogates.linalg._krylov_numpy import Breakdown, cg_single, fcg_single
from pdesurrogates.linalg.adjoint import differentiable_solve
from pdesurrogates.linalg.operators import System, TorchOperator, prepare_system
from pdesurrogates.linalg.result import SolveResult

__all__ = ["cg", "fcg", "pcg", "resolve_preconditioner"]

# ``converged`` also needs the recomputed residual ``||b - A x||`` within this factor of the
# threshold: the recursive residual can drift below what the iterate attains (round-off, float32,
# a nonlinear preconditioner), and such a solve is reported as not converged, not as an answer.
TRUE_RESIDUAL_FACTOR = 10.0


def _dot(X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    """Row-wise dot products ``(B,)`` of ``(B, n)`` tensors, without a ``(B, n)`` temporary."""
    return torch.bmm(X.unsqueeze(1), Y.unsqueeze(2)).reshape(-1)


def _safe(den: torch.Tensor, ok: torch.Tensor) -> torch.Tensor:
    return torch.where(ok, den, torch.ones_like(den))


def _orthogonalize(P: torch.Tensor, history) -> torch.Tensor:
    """A-orthogonalise the rows of ``P`` against stored ``(P_j, A P_j, p_j^T A p_j)`` (MGS)."""
    for Pj, APj, pApj in history:
        okj = pApj > 0
        coef = torch.where(okj, _dot(P, APj) / _safe(pApj, okj), torch.zeros_like(pApj))
        P = P - coef.unsqueeze(1) * Pj
    return P


# -- errors ----------------------------------------------------------------------------------
_MESSAGES = {
    "A": ("breakdown at iteration {iteration} (system {system}): p^T A p = {value:.3e} <= 0, so "
          "A is not symmetric positive definite"),
    "A_nan": ("at iteration {iteration} (system {system}) A returned NaN/Inf (p^T A p = "
              "{value:.3e}); check the operator"),
    "M": ("breakdown at iteration {iteration} (system {system}): r^T M r = {value:.3e} is not "
          "positive, so M is not a symmetric positive definite preconditioner; use "
          "pdesurrogates.linalg.fcg, which falls back to Jacobi steps"),
    "M_nan": ("at iteration {iteration} (system {system}) M returned NaN/Inf (r^T M r = "
              "{value:.3e}); use pdesurrogates.linalg.fcg, which falls back to Jacobi steps"),
    "direction": ("at iteration {iteration} (system {system}) the preconditioner returned NaN/Inf "
                  "or a direction that does not descend (p^T r = {value:.3e}); pass "
                  "fallback=True to take a Jacobi step instead"),
}


def _breakdown_error(name: str, kind: str, iteration: int, system: int, value: float) -> ValueError:
    if kind in ("A", "M") and not math.isfinite(value):
        kind += "_nan"
    text = _MESSAGES[kind].format(iteration=iteration, system=system, value=value)
    return ValueError(f"{name}: {text}")


class _Breakdown:
    """Record the first iteration where a per-system condition failed; raise at a sync."""

    def __init__(self, B: int, device, kind: str) -> None:
        self.kind = kind
        self.iteration = torch.full((B,), -1, dtype=torch.long, device=device)
        self.value = torch.zeros(B, dtype=torch.float64, device=device)

    def mark(self, bad: torch.Tensor, k: int, value: torch.Tensor) -> None:
        new = bad & (self.iteration < 0)
        self.iteration = torch.where(new, torch.full_like(self.iteration, k), self.iteration)
        self.value = torch.where(new, value.to(torch.float64), self.value)

    def check(self, name: str) -> None:
        if bool((self.iteration >= 0).any()):
            i = int(torch.nonzero(self.iteration >= 0)[0])
            raise _breakdown_error(name, self.kind, int(self.iteration[i]), i, float(self.value[i]))


# -- setup -------------------------------------------------------------------------------------
def _check_symmetric(op: TorchOperator, name: str) -> None:
    """Refuse a non-symmetric ``A``: ``u^T A v`` vs ``v^T A u`` for two fixed random vectors.

    The relative tolerance ``4 sqrt(n) eps`` (of ``|u|^T |A v| + |v|^T |A u|``) is far above the
    round-off of a symmetric ``A`` (measured: below ``eps`` up to 65k unknowns, contrast 1e6) and
    far below what a non-symmetric discretisation gives (1e-3 for first-order upwinding).
    """
    n = op.n
    U = np.random.default_rng(0).random((2, n)) - 0.5  # fixed, cheap to draw
    tol = 4.0 * math.sqrt(n) * torch.finfo(op.dtype).eps
    if op.batch is None and op.device.type == "cpu" and op.dtype in (torch.float32, torch.float64):
        u, v = U.astype(np.float64 if op.dtype == torch.float64 else np.float32)
        Au, Av = op.numpy_matvec(u), op.numpy_matvec(v)
        scale = float(np.abs(u * Av).sum() + np.abs(v * Au).sum())
        rel = abs(float(np.dot(u, Av)) - float(np.dot(v, Au))) / scale if scale > 0 else 0.0
        finite, i = math.isfinite(scale), 0
    else:
        Ut = torch.from_numpy(U).to(dtype=op.dtype, device=op.device)
        rows = op.batch or 1
        u, v = Ut[0].expand(rows, n).contiguous(), Ut[1].expand(rows, n).contiguous()
        Au, Av = op.matvec(u), op.matvec(v)
        scale_t = (u * Av).abs().sum(1) + (v * Au).abs().sum(1)
        rel_t = torch.where(scale_t > 0, (_dot(u, Av) - _dot(v, Au)).abs()
                            / torch.where(scale_t > 0, scale_t, 1.0), torch.zeros_like(scale_t))
        bad = ~torch.isfinite(scale_t) | (rel_t > tol)
        if not bool(bad.any()):
            return
        i = int(torch.nonzero(bad)[0])
        finite, rel = bool(torch.isfinite(scale_t[i])), float(rel_t[i])
    where = f" (matrix {i} of the batch)" if op.batch else ""
    if not finite:
        raise ValueError(f"{name}: A returned NaN/Inf when applied to a random vector{where}")
    if rel > tol:
        raise ValueError(
            f"{name}: A is not symmetric{where}: for random u, v, |u^T A v - v^T A u| is "
            f"{rel:.2e} of |u|^T |A v| + |v|^T |A u| (tolerance {tol:.1e} for round-off). CG needs "
            "a symmetric positive definite A; for a non-symmetric one use e.g. "
            "scipy.sparse.linalg.gmres"
        )


def _setup(A, b, x0, rtol, atol, maxiter, M, name, check_symmetry=True):
    system = prepare_system(A, b, x0, name=name, matrix_free=True)
    maxiter = check_tolerances(rtol, atol, maxiter, system.op.n, name)
    prec = resolve_preconditioner(M, system.op.n, system.numpy_out)
    if check_symmetry:  # off only for the adjoint solve of an A the forward solve checked
        _check_symmetric(system.op, name)
    return system, maxiter, prec


def _fast(system: System) -> bool:
    """One right-hand side on the CPU in float32/64: the numpy kernels apply."""
    b = system.b
    return (b.shape[0] == 1 and b.device.type == "cpu"
            and b.dtype in (torch.float32, torch.float64))


def _true_residual(system: System, X: torch.Tensor) -> torch.Tensor:
    bnorm = torch.linalg.vector_norm(system.b, dim=1)
    rn = torch.linalg.vector_norm(system.b - system.op.matvec(X), dim=1)
    return rn / torch.where(bnorm > 0, bnorm, torch.ones_like(bnorm))


def _thresholds(b: np.ndarray, rtol, atol) -> tuple[float, float]:
    bnorm = math.sqrt(float(np.dot(b, b)))
    return max(float(rtol) * bnorm, float(atol)), (bnorm if bnorm > 0 else 1.0)


def _single_callback(system: System, callback):
    if callback is None:
        return None

    def call(x: np.ndarray) -> None:
        callback(user_iterate(system, torch.from_numpy(x.copy()).unsqueeze(0)))

    return call


def _single_result(system: System, run, thresh: float, denom: float, info: dict) -> SolveResult:
    """A :class:`SolveResult` from a numpy kernel's run (same fields as the batched loop)."""
    X = torch.from_numpy(run.x).unsqueeze(0)
    b = system.b[0].numpy()
    true = math.sqrt(float(np.sum((b - system.op.numpy_matvec(run.x)) ** 2)))
    converged = run.rnorms[-1] <= thresh and true <= TRUE_RESIDUAL_FACTOR * thresh
    hist = torch.tensor(run.rnorms, dtype=torch.float64).unsqueeze(1) / denom
    fields = {"true_residual": torch.tensor([true / denom], dtype=system.b.dtype)}
    fields.update({k: torch.tensor([v]) for k, v in info.items()})
    return SolveResult(
        x=system.output(X),
        converged=system.field(torch.tensor([converged])),
        iterations=system.field(torch.tensor([run.iterations])),
        residuals=system.field(hist.to(system.b.dtype)),
        info={k: system.field(v) for k, v in fields.items()},
    )


# -- CG / PCG ------------------------------------------------------------------------------------
def cg(A, b, x0=None, rtol=1e-8, atol=0.0, maxiter=None, M=None, callback=None, *,
       check_every=None, adjoint_rtol=None) -> SolveResult:
    """Conjugate gradients (Hestenes & Stiefel 1952), preconditioned when ``M`` is given.

    Parameters
    ----------
    A : SPD matrix ``(n, n)`` in any supported format, a batch ``(B, n, n)`` of dense ones, a
        ``StencilOperator``, a SciPy ``LinearOperator`` or a callable (see the module docstring).
    b : ``(n,)`` or ``(B, n)``, real, torch or numpy (the result follows its type and device).
    x0 : like ``b``, optional.
    rtol, atol : float
        Stop when ``||r|| <= max(rtol ||b||, atol)`` (SciPy's convention).
    maxiter : int, optional
        Default ``10 n``; reaching it returns ``converged=False``.
    M : linear symmetric positive definite preconditioner, optional (see the module docstring).
    callback : callable, optional
        ``callback(x)`` after each iteration (``x`` in ``b``'s layout, a copy).
    check_every : int, optional
        Host synchronisation period of the batched loop (default 1 on CPU, 8 on a GPU).
    adjoint_rtol : float, optional
        Tolerance of the adjoint solve ``A^T lambda = dL/dx`` that gives gradients (default
        ``rtol``). ``x`` is differentiable with respect to a torch ``b`` and to ``A``'s entries
        (dense/sparse torch values, a ``StencilOperator``'s coefficient) when they require a
        gradient: implicit differentiation, one adjoint solve with the same solver and ``M``,
        memory independent of the iterations (:mod:`pdesurrogates.linalg.adjoint`).

    Returns
    -------
    SolveResult
        ``info["true_residual"]``: ``||b - A x|| / ||b||`` recomputed at the end. ``converged``
        needs the recursive residual within tolerance *and* the recomputed one within
        ``TRUE_RESIDUAL_FACTOR`` (10) times it: when round-off (e.g. float32 with a tolerance near
        its precision) lets the recursive residual drift below what the iterate attains, the
        solve is reported as not converged rather than as a wrong answer. Iterations are those
        SciPy's ``cg`` takes (its stopping test is the recursive residual).

    Raises
    ------
    ValueError
        A non-symmetric ``A`` (before iterating); ``p^T A p <= 0`` (``A`` not positive definite)
        or ``r^T M r <= 0`` / NaN from ``M`` (``M`` not SPD), naming the iteration; a nonlinear /
        non-symmetric ``M`` (use :func:`fcg`); ``M`` returning ``None`` or a wrong shape.
    TypeError
        Complex ``A``, ``b`` or ``M``.
    RuntimeError
        On backward, when the forward or the adjoint solve did not converge.
    """
    kwargs = {"rtol": rtol, "atol": atol, "maxiter": maxiter, "M": M, "callback": callback,
              "check_every": check_every}
    return differentiable_solve("cg", partial(_cg, name="cg"), A, b, x0, kwargs, adjoint_rtol)


def pcg(A, b, x0=None, rtol=1e-8, atol=0.0, maxiter=None, M=None, callback=None, *,
        check_every=None, adjoint_rtol=None) -> SolveResult:
    """Preconditioned conjugate gradients; same as :func:`cg` with ``M`` (a linear, symmetric
    positive definite preconditioner; a nonlinear or non-symmetric one is refused: use
    :func:`fcg`)."""
    kwargs = {"rtol": rtol, "atol": atol, "maxiter": maxiter, "M": M, "callback": callback,
              "check_every": check_every}
    return differentiable_solve("pcg", partial(_cg, name="pcg"), A, b, x0, kwargs, adjoint_rtol)


def _cg(A, b, x0, *, rtol, atol, maxiter, M, callback, check_every, name,
        check_symmetry=True) -> SolveResult:
    system, maxiter, prec = _setup(A, b, x0, rtol, atol, maxiter, M, name, check_symmetry)
    if not (prec.linear and prec.symmetric):
        raise ValueError(
            f"{name}: the preconditioner {type(M).__name__} is "
            f"{'nonlinear' if not prec.linear else 'non-symmetric'} (linear={prec.linear}, "
            f"symmetric={prec.symmetric}); plain PCG would silently lose its guarantees. "
            "Use pdesurrogates.linalg.fcg (flexible CG) for such preconditioners."
        )
    if _fast(system):
        b1 = system.b[0].numpy()
        thresh, denom = _thresholds(b1, rtol, atol)
        try:
            run = cg_single(system.op.numpy_matvec, prec.single, b1,
                            system.x0[0].numpy().copy(), thresh, maxiter,
                            _single_callback(system, callback))
        except Breakdown as err:
            raise _breakdown_error(name, err.kind, err.iteration, 0, err.value) from None
        return _single_result(system, run, thresh, denom, {})
    return _cg_batched(system, maxiter, prec, rtol, atol, callback, check_every, name)


def _cg_batched(system: System, maxiter: int, prec: ResolvedPreconditioner, rtol, atol,
                callback, check_every, name) -> SolveResult:
    op, bb = system.op, system.b
    mon = Monitor(bb, rtol, atol, default_check_every(bb.device, check_every))
    a_break = _Breakdown(bb.shape[0], bb.device, "A")
    m_break = _Breakdown(bb.shape[0], bb.device, "M")
    X = system.x0  # a fresh tensor (prepare_system), updated in place
    R = bb - op.matvec(X)
    mon.start(torch.linalg.vector_norm(R, dim=1))
    Z = prec.batched(R)
    rz = _dot(R, Z)
    m_break.mark(mon.active & ~(rz > 0), 0, rz)
    P = Z  # never changed in place
    done = mon.done(0)
    for k in range(maxiter):
        if done:
            break
        if k % mon.check_every == 0:
            a_break.check(name)
            m_break.check(name)
        AP = op.matvec(P)
        pAp = _dot(P, AP)
        ok = mon.active & (pAp > 0)
        a_break.mark(mon.active & ~(pAp > 0) & (rz > 0), k + 1, pAp)
        alpha = torch.where(ok, rz / _safe(pAp, ok), torch.zeros_like(pAp)).unsqueeze(1)
        X.addcmul_(alpha, P)
        R = R - alpha * AP
        mon.record(torch.linalg.vector_norm(R, dim=1))
        if callback is not None:
            callback(user_iterate(system, X.clone()))
        done = mon.done(k + 1)
        if done or k + 1 == maxiter:
            break  # no preconditioner application for a step that will not be taken
        Z = prec.batched(R)
        rz_new = _dot(R, Z)
        m_break.mark(mon.active & ~(rz_new > 0), k + 1, rz_new)
        good = rz > 0
        beta = torch.where(good, rz_new / _safe(rz, good), torch.zeros_like(rz)).unsqueeze(1)
        P = torch.addcmul(Z, beta, P)
        rz = rz_new
    a_break.check(name)
    m_break.check(name)
    return _verified_result(system, mon, X, {})


def _verified_result(system: System, mon: Monitor, X: torch.Tensor, info: dict) -> SolveResult:
    """``mon.result`` with ``info["true_residual"]`` and ``converged`` checked against it."""
    true = _true_residual(system, X)
    res = mon.result(system, X, {**info, "true_residual": true})
    verified = (mon.last <= mon.thresh) & (true * mon.denom <= TRUE_RESIDUAL_FACTOR * mon.thresh)
    res.converged = system.field(verified)
    return res


# -- FCG -------------------------------------------------------------------------------------------
def fcg(A, b, x0=None, rtol=1e-8, atol=0.0, maxiter=None, M=None, callback=None, *,
        m: int = 1, recompute_every: int | None = 50, fallback: bool = True,
        stagnation: float | str | None = "auto", check_every=None,
        adjoint_rtol=None) -> SolveResult:
    """Flexible conjugate gradients FCG(m) (Notay, SIAM J. Sci. Comput. 22, 2000).

    Each iteration takes ``z = M(r)`` (any map, it may change between iterations),
    A-orthogonalises it against the last ``m`` search directions (modified Gram–Schmidt),
    ``p = z - sum_j (z^T A p_j / p_j^T A p_j) p_j``, and steps with the exact line search
    ``alpha = p^T r / p^T A p``. ``m = 1`` is Notay's flexible CG; DCDM (Kaneda et al.,
    ICML 2023) uses ``m = 2`` and recomputes the true residual every iteration
    (``recompute_every=1``). With a fixed SPD preconditioner FCG(1) reproduces PCG in exact
    arithmetic.

    Parameters
    ----------
    A, b, x0, rtol, atol, maxiter, callback, check_every, adjoint_rtol : as in :func:`cg`
        (gradients likewise, the adjoint solve being an FCG solve with the same ``M``).
    M : any preconditioner (nonlinear allowed), see the module docstring. ``None``: ``z = r``.
    m : int >= 1
        Number of previous directions to orthogonalise against.
    recompute_every : int or None
        Replace the recursive residual by ``b - A x`` every this many iterations (``None``:
        never).
    fallback : bool
        When the preconditioner's direction is unusable for a system — NaN/Inf, or not a
        descent direction (``p^T r <= 0`` after orthogonalisation) — use the Jacobi direction
        ``D^{-1} r`` (A-orthogonalised the same way; ``r`` itself for a matrix-free ``A``) for
        that system and iteration instead (``True``, counted in ``result.info["fallbacks"]``),
        or raise ``ValueError`` naming the iteration (``False``). A preconditioner that always
        fails thus gives FCG with Jacobi.
    stagnation : float, "auto" or None
        A nonlinear preconditioner can stagnate: when the residual barely changes, its proposal
        repeats the previous direction and FCG stops making progress (seen with DCDM networks).
        If one step reduces ``||r||`` by a relative amount below ``stagnation``, the next step
        uses the Jacobi direction for that system (counted in ``info["restarts"]``), which moves
        the residual and lets the preconditioner propose afresh. ``"auto"``: ``0.01`` for a
        nonlinear preconditioner (measured: a DCDM network trained 300 steps went from no
        convergence in 300 iterations to 50-63 at 16^2-64^2; on well-trained DCDM and MgNO
        preconditioners at 64^2-256^2 the count moves by about +-10% either way, and thresholds of
        0.001-0.05 behave alike), off (``None``) for a linear one,
        so FCG with a fixed SPD preconditioner still reproduces PCG.

    Returns
    -------
    SolveResult
        ``info["fallbacks"]``, ``info["restarts"]`` (per system), ``info["true_residual"]``;
        ``converged`` is verified against the true residual as in :func:`cg`.

    Raises
    ------
    ValueError
        A non-symmetric ``A``; ``p^T A p <= 0`` at some iteration (``A`` is not SPD), naming the
        iteration; ``M`` returning ``None`` or a wrong shape.
    """
    kwargs = {"rtol": rtol, "atol": atol, "maxiter": maxiter, "M": M, "callback": callback,
              "check_every": check_every, "m": m, "recompute_every": recompute_every,
              "fallback": fallback, "stagnation": stagnation}
    return differentiable_solve("fcg", _fcg, A, b, x0, kwargs, adjoint_rtol)


def _fcg(A, b, x0, *, rtol, atol, maxiter, M, callback, check_every, m, recompute_every,
         fallback, stagnation, check_symmetry=True) -> SolveResult:
    name = "fcg"
    if int(m) != m or m < 1:
        raise ValueError(f"fcg: m must be an integer >= 1, got {m!r}")
    if recompute_every is not None and (int(recompute_every) != recompute_every
                                        or recompute_every < 1):
        raise ValueError(f"fcg: recompute_every must be a positive integer or None, "
                         f"got {recompute_every!r}")
    system, maxiter, prec = _setup(A, b, x0, rtol, atol, maxiter, M, name, check_symmetry)
    if stagnation == "auto":
        stagnation = None if prec.linear else 0.01
    if stagnation is not None and not (isinstance(stagnation, (int, float)) and 0 < stagnation < 1):
        raise ValueError(f"fcg: stagnation must be in (0, 1), 'auto' or None, got {stagnation!r}")
    op = system.op
    if op.matrix_free:
        jacobi_scale = None
    else:
        d = op.diagonal()
        jacobi_scale = torch.where(d > 0, 1.0 / torch.where(d > 0, d, torch.ones_like(d)),
                                   torch.ones_like(d))
    if _fast(system):
        b1 = system.b[0].numpy()
        thresh, denom = _thresholds(b1, rtol, atol)
        scale = None if jacobi_scale is None else jacobi_scale.reshape(-1).cpu().numpy()
        try:
            run = fcg_single(op.numpy_matvec, prec.single, b1, system.x0[0].numpy().copy(),
                             thresh, maxiter, m=int(m), recompute_every=recompute_every,
                             fallback=fallback, stagnation=stagnation, jacobi_scale=scale,
                             callback=_single_callback(system, callback))
        except Breakdown as err:
            raise _breakdown_error(name, err.kind, err.iteration, 0, err.value) from None
        return _single_result(system, run, thresh, denom,
                              {"fallbacks": run.fallbacks, "restarts": run.restarts})
    if jacobi_scale is None:
        jacobi_scale = torch.ones(op.n, dtype=system.b.dtype, device=system.b.device)
    return _fcg_batched(system, maxiter, prec, rtol, atol, callback, check_every, int(m),
                        recompute_every, fallback, stagnation, jacobi_scale)


def _fcg_batched(system: System, maxiter, prec: ResolvedPreconditioner, rtol, atol, callback,
                 check_every, m, recompute_every, fallback, stagnation, jacobi_scale):
    name = "fcg"
    op, bb = system.op, system.b
    mon = Monitor(bb, rtol, atol, default_check_every(bb.device, check_every))
    Bn = bb.shape[0]
    fallbacks = torch.zeros(Bn, dtype=torch.long, device=bb.device)
    restarts = torch.zeros(Bn, dtype=torch.long, device=bb.device)
    stalled = torch.zeros(Bn, dtype=torch.bool, device=bb.device)
    a_break = _Breakdown(Bn, bb.device, "A")
    z_break = _Breakdown(Bn, bb.device, "direction")
    history: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
    X = system.x0
    R = bb - op.matvec(X)
    rnorm = torch.linalg.vector_norm(R, dim=1)
    mon.start(rnorm)
    for k in range(maxiter):
        if k % mon.check_every == 0:
            a_break.check(name)
            z_break.check(name)
            if mon.done(k):
                break
        Z = prec.batched(R)
        if stagnation is not None:  # no host sync: the stalled systems' proposals are replaced
            restarts += (stalled & mon.active).long()
            Z = torch.where(stalled.unsqueeze(1), R * jacobi_scale, Z)
        finite = torch.isfinite(Z).all(dim=1)
        # a fresh tensor: Z may alias R (identity) or M's buffers, and P is kept in the history
        P = _orthogonalize(torch.where(finite.unsqueeze(1), Z, torch.zeros_like(Z)), history)
        pr = _dot(P, R)
        usable = finite & (pr > 0)
        bad = mon.active & ~usable
        if fallback:
            fallbacks += bad.long()
            # Jacobi direction, A-orthogonalised like any other; if even that does not descend
            # (possible for m > 1 in floating point), the plain Jacobi direction, which does.
            J = R * jacobi_scale
            PJ = _orthogonalize(J, history)
            pj = _dot(PJ, R)
            PJ = torch.where((pj > 0).unsqueeze(1), PJ, J)
            P = torch.where(usable.unsqueeze(1), P, PJ)
            pr = torch.where(usable, pr, _dot(P, R))
        else:
            z_break.mark(bad, k + 1, pr)
        AP = op.matvec(P)
        pAp = _dot(P, AP)
        ok = mon.active & (pAp > 0)
        a_break.mark(mon.active & ~(pAp > 0) & (pr > 0), k + 1, pAp)
        alpha = torch.where(ok, pr / _safe(pAp, ok), torch.zeros_like(pAp)).unsqueeze(1)
        X.addcmul_(alpha, P)
        if recompute_every is not None and (k + 1) % recompute_every == 0:
            R = mon.keep(bb - op.matvec(X), R)
        else:
            R = R - alpha * AP
        new_norm = torch.linalg.vector_norm(R, dim=1)
        if stagnation is not None:
            stalled = new_norm >= (1.0 - stagnation) * rnorm
        rnorm = new_norm
        mon.record(new_norm)
        if callback is not None:
            callback(user_iterate(system, X.clone()))
        history.append((P, AP, torch.where(ok, pAp, torch.zeros_like(pAp))))
        if len(history) > m:
            history.pop(0)
    a_break.check(name)
    z_break.check(name)
    return _verified_result(system, mon, X, {"fallbacks": fallbacks, "restarts": restarts})
