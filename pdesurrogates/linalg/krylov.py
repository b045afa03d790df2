"""Krylov solvers for SPD systems: CG, preconditioned CG, flexible CG (FCG(m)).

All three are batched (``b: (B, n)``, one scalar recurrence per system, systems that have
converged are frozen) and run on the device of their inputs; the host checks for completion
only every ``check_every`` iterations. The stopping test is SciPy's:
``||r_k|| <= max(rtol ||b||, atol)`` on the (recursively updated) residual.

Preconditioners ``M`` approximate ``A^{-1}`` and may be

* a :class:`~pdesurrogates.linalg.preconditioners.Preconditioner` (or any object with
  ``apply(R)`` on ``(B, n)`` torch tensors and flags ``linear``/``symmetric``),
* a :class:`scipy.sparse.linalg.LinearOperator`, SciPy sparse matrix or numpy array (applied on
  the CPU in float64, as in SciPy),
* a torch tensor (a matrix that multiplies ``r``),
* a callable ``M(R) -> Z`` on ``(B, n)`` torch tensors.

:func:`pcg` requires a linear symmetric ``M`` and refuses others; :func:`fcg` accepts any.

>>> from pdesurrogates.linalg import gallery
>>> A = gallery.poisson2d(16)
>>> res = cg(A, np.ones(256), rtol=1e-8)
>>> res.converged, res.iterations
(True, 28)
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch

from pdesurrogates.linalg._iteration import (
    Monitor,
    check_tolerances,
    default_check_every,
    user_iterate,
)
from pdesurrogates.linalg.operators import TorchOperator, prepare_system
from pdesurrogates.linalg.result import SolveResult

__all__ = ["cg", "fcg", "pcg"]


def _dot(X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    return (X * Y).sum(dim=1)


def _safe(den: torch.Tensor, ok: torch.Tensor) -> torch.Tensor:
    return torch.where(ok, den, torch.ones_like(den))


def resolve_preconditioner(M, n: int):
    """Turn ``M`` into ``(fn, linear, symmetric)`` with ``fn: (B, n) tensor -> (B, n) tensor``."""
    if M is None:
        return (lambda R: R), True, True
    linear = bool(getattr(M, "linear", True))
    symmetric = bool(getattr(M, "symmetric", True))
    if hasattr(M, "apply") and not isinstance(M, (spla.LinearOperator, torch.Tensor)):
        size = getattr(M, "n", None)  # a preconditioner object: its own n, if it says
        if isinstance(size, int) and size != n:
            raise ValueError(f"M acts on vectors of size {size}, but A is {n} x {n}")

        def fn(R):
            return M.apply(R).to(dtype=R.dtype, device=R.device)

        return fn, linear, symmetric
    shape = getattr(M, "shape", None)
    if shape is not None and tuple(shape)[-2:] != (n, n):
        raise ValueError(f"M has shape {tuple(shape)}, expected ({n}, {n}) to match A")
    if isinstance(M, spla.LinearOperator) or sp.issparse(M) or isinstance(M, np.ndarray):
        L = M if isinstance(M, spla.LinearOperator) else spla.aslinearoperator(M)

        def fn(R):
            V = R.detach().to(device="cpu", dtype=torch.float64).numpy().T
            Z = np.asarray(L.matmat(np.ascontiguousarray(V))).T
            return torch.from_numpy(np.ascontiguousarray(Z)).to(dtype=R.dtype, device=R.device)

        return fn, linear, symmetric
    if isinstance(M, torch.Tensor):
        op = TorchOperator(M)

        def fn(R):
            if op.device != R.device or op.dtype != R.dtype:
                return TorchOperator(M, dtype=R.dtype, device=R.device).matvec(R)
            return op.matvec(R)

        return fn, linear, symmetric
    if callable(M):
        return M, linear, symmetric
    raise TypeError(
        "M: expected None, a Preconditioner, a scipy LinearOperator/sparse matrix, a numpy "
        f"array, a torch tensor or a callable, found {type(M).__name__}"
    )


def _orthogonalize(P: torch.Tensor, history) -> torch.Tensor:
    """A-orthogonalise the rows of ``P`` against stored ``(P_j, A P_j, p_j^T A p_j)`` (MGS)."""
    for Pj, APj, pApj in history:
        okj = pApj > 0
        coef = torch.where(okj, _dot(P, APj) / _safe(pApj, okj), torch.zeros_like(pApj))
        P = P - coef.unsqueeze(1) * Pj
    return P


class _Breakdown:
    """Record the first iteration where a per-system condition failed; raise at a sync."""

    def __init__(self, B: int, device) -> None:
        self.iteration = torch.full((B,), -1, dtype=torch.long, device=device)
        self.value = torch.zeros(B, dtype=torch.float64, device=device)

    def mark(self, bad: torch.Tensor, k: int, value: torch.Tensor) -> None:
        new = bad & (self.iteration < 0)
        self.iteration = torch.where(new, torch.full_like(self.iteration, k), self.iteration)
        self.value = torch.where(new, value.to(torch.float64), self.value)

    def check(self, message: str) -> None:
        if bool((self.iteration >= 0).any()):
            i = int(torch.nonzero(self.iteration >= 0)[0])
            raise ValueError(
                message.format(iteration=int(self.iteration[i]), system=i,
                               value=float(self.value[i]))
            )


def _krylov_setup(A, b, x0, rtol, atol, maxiter, check_every, name):
    system = prepare_system(A, b, x0, name=name)
    maxiter = check_tolerances(rtol, atol, maxiter, system.op.n, name)
    mon = Monitor(system.b, rtol, atol, default_check_every(system.b.device, check_every))
    return system, maxiter, mon


def _true_residual(system, X) -> torch.Tensor:
    bnorm = torch.linalg.vector_norm(system.b, dim=1)
    rn = torch.linalg.vector_norm(system.b - system.op.matvec(X), dim=1)
    return rn / torch.where(bnorm > 0, bnorm, torch.ones_like(bnorm))


def cg(A, b, x0=None, rtol=1e-8, atol=0.0, maxiter=None, M=None, callback=None, *,
       check_every=None) -> SolveResult:
    """Conjugate gradients (Hestenes & Stiefel 1952), preconditioned when ``M`` is given.

    Parameters
    ----------
    A : SPD matrix ``(n, n)`` in any supported format, a batch ``(B, n, n)`` of dense ones, or
        a ``StencilOperator``.
    b : ``(n,)`` or ``(B, n)``, torch or numpy (the result follows its type and device).
    x0 : like ``b``, optional.
    rtol, atol : float
        Stop when ``||r|| <= max(rtol ||b||, atol)`` (SciPy's convention).
    maxiter : int, optional
        Default ``10 n``; reaching it returns ``converged=False``.
    M : linear symmetric positive definite preconditioner, optional (see the module docstring).
    callback : callable, optional
        ``callback(x)`` after each iteration.
    check_every : int, optional
        Host synchronisation period (default 1 on CPU, 8 on a GPU).

    Returns
    -------
    SolveResult
        ``info["true_residual"]``: ``||b - A x|| / ||b||`` recomputed at the end.

    Raises
    ------
    ValueError
        ``p^T A p <= 0`` (``A`` not SPD) or ``r^T M r <= 0`` / NaN from ``M`` (``M`` not SPD),
        naming the iteration; or a nonlinear / non-symmetric ``M`` (use :func:`fcg`).
    """
    return _cg(A, b, x0, rtol, atol, maxiter, M, callback, check_every, "cg")


def pcg(A, b, x0=None, rtol=1e-8, atol=0.0, maxiter=None, M=None, callback=None, *,
        check_every=None) -> SolveResult:
    """Preconditioned conjugate gradients; same as :func:`cg` with ``M`` (a linear, symmetric
    positive definite preconditioner; a nonlinear or non-symmetric one is refused: use
    :func:`fcg`)."""
    return _cg(A, b, x0, rtol, atol, maxiter, M, callback, check_every, "pcg")


def _cg(A, b, x0, rtol, atol, maxiter, M, callback, check_every, name) -> SolveResult:
    system, maxiter, mon = _krylov_setup(A, b, x0, rtol, atol, maxiter, check_every, name)
    op, bb = system.op, system.b
    prec, linear, symmetric = resolve_preconditioner(M, op.n)
    if not (linear and symmetric):
        raise ValueError(
            f"{name}: the preconditioner {type(M).__name__} is "
            f"{'nonlinear' if not linear else 'non-symmetric'} (linear={linear}, "
            f"symmetric={symmetric}); plain PCG would silently lose its guarantees. "
            "Use pdesurrogates.linalg.fcg (flexible CG) for such preconditioners."
        )
    a_break = _Breakdown(bb.shape[0], bb.device)
    m_break = _Breakdown(bb.shape[0], bb.device)
    X = system.x0
    R = bb - op.matvec(X)
    mon.start(torch.linalg.vector_norm(R, dim=1))
    Z = prec(R)
    rz = _dot(R, Z)
    m_break.mark(mon.active & ~(rz > 0), 0, rz)
    P = Z
    k = 0
    for k in range(maxiter):
        if k % mon.check_every == 0:
            _raise_cg(a_break, m_break, name)
            if mon.done(k):
                break
        AP = op.matvec(P)
        pAp = _dot(P, AP)
        ok = mon.active & (pAp > 0)
        a_break.mark(mon.active & ~(pAp > 0) & (rz > 0), k + 1, pAp)
        alpha = torch.where(ok, rz / _safe(pAp, ok), torch.zeros_like(pAp))
        X = X + alpha.unsqueeze(1) * P
        R = R - alpha.unsqueeze(1) * AP
        mon.record(torch.linalg.vector_norm(R, dim=1))
        if callback is not None:
            callback(user_iterate(system, X))
        Z = prec(R)
        rz_new = _dot(R, Z)
        m_break.mark(mon.active & ~(rz_new > 0), k + 1, rz_new)
        good = rz > 0
        beta = torch.where(good, rz_new / _safe(rz, good), torch.zeros_like(rz))
        P = Z + beta.unsqueeze(1) * P
        rz = rz_new
    _raise_cg(a_break, m_break, name)
    return mon.result(system, X, {"true_residual": _true_residual(system, X)})


def _raise_cg(a_break: _Breakdown, m_break: _Breakdown, name: str) -> None:
    a_break.check(
        name + ": breakdown at iteration {iteration} (system {system}): p^T A p = {value:.3e} "
        "<= 0, so A is not symmetric positive definite"
    )
    m_break.check(
        name + ": breakdown at iteration {iteration} (system {system}): r^T M r = {value:.3e} "
        "is not positive (or M returned NaN/Inf), so M is not a symmetric positive definite "
        "preconditioner; use pdesurrogates.linalg.fcg, which falls back to Jacobi steps"
    )


def _raise_fcg(a_break: _Breakdown, z_break: _Breakdown) -> None:
    a_break.check(
        "fcg: breakdown at iteration {iteration} (system {system}): p^T A p = {value:.3e} <= 0, "
        "so A is not symmetric positive definite"
    )
    z_break.check(
        "fcg: at iteration {iteration} (system {system}) the preconditioner returned NaN/Inf or "
        "a direction that does not descend (p^T r = {value:.3e}); pass fallback=True to take a "
        "Jacobi step instead"
    )


def fcg(A, b, x0=None, rtol=1e-8, atol=0.0, maxiter=None, M=None, callback=None, *,
        m: int = 1, recompute_every: int | None = 50, fallback: bool = True,
        stagnation: float | str | None = "auto", check_every=None) -> SolveResult:
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
    A, b, x0, rtol, atol, maxiter, callback, check_every : as in :func:`cg`.
    M : any preconditioner (nonlinear allowed), see the module docstring. ``None``: ``z = r``.
    m : int >= 1
        Number of previous directions to orthogonalise against.
    recompute_every : int or None
        Replace the recursive residual by ``b - A x`` every this many iterations (``None``:
        never).
    fallback : bool
        When the preconditioner's direction is unusable for a system — NaN/Inf, or not a
        descent direction (``p^T r <= 0`` after orthogonalisation) — use the Jacobi direction
        ``D^{-1} r`` (A-orthogonalised the same way) for that system and iteration instead
        (``True``, counted in ``result.info["fallbacks"]``), or raise ``ValueError`` naming the
        iteration (``False``). A preconditioner that always fails thus gives FCG with Jacobi.

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
        ``info["fallbacks"]``, ``info["restarts"]`` (per system), ``info["true_residual"]``.

    Raises
    ------
    ValueError
        ``p^T A p <= 0`` at some iteration (``A`` is not SPD), naming the iteration.
    """
    name = "fcg"
    if int(m) != m or m < 1:
        raise ValueError(f"fcg: m must be an integer >= 1, got {m!r}")
    if recompute_every is not None and (int(recompute_every) != recompute_every
                                        or recompute_every < 1):
        raise ValueError(f"fcg: recompute_every must be a positive integer or None, "
                         f"got {recompute_every!r}")
    system, maxiter, mon = _krylov_setup(A, b, x0, rtol, atol, maxiter, check_every, name)
    op, bb = system.op, system.b
    prec, linear, _ = resolve_preconditioner(M, op.n)
    if stagnation == "auto":
        stagnation = None if linear else 0.01
    if stagnation is not None and not (isinstance(stagnation, (int, float)) and 0 < stagnation < 1):
        raise ValueError(f"fcg: stagnation must be in (0, 1), 'auto' or None, got {stagnation!r}")
    d = op.diagonal()
    jacobi_scale = torch.where(d > 0, 1.0 / torch.where(d > 0, d, torch.ones_like(d)),
                               torch.ones_like(d))
    Bn = bb.shape[0]
    fallbacks = torch.zeros(Bn, dtype=torch.long, device=bb.device)
    restarts = torch.zeros(Bn, dtype=torch.long, device=bb.device)
    stalled = torch.zeros(Bn, dtype=torch.bool, device=bb.device)
    a_break = _Breakdown(Bn, bb.device)
    z_break = _Breakdown(Bn, bb.device)
    history: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
    X = system.x0
    R = bb - op.matvec(X)
    rnorm = torch.linalg.vector_norm(R, dim=1)
    mon.start(rnorm)
    for k in range(maxiter):
        if k % mon.check_every == 0:
            _raise_fcg(a_break, z_break)
            if mon.done(k):
                break
        Z = prec(R)
        if stagnation is not None:  # no host sync: the stalled systems' proposals are replaced
            restarts += (stalled & mon.active).long()
            Z = torch.where(stalled.unsqueeze(1), R * jacobi_scale, Z)
        finite = torch.isfinite(Z).all(dim=1)
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
        alpha = torch.where(ok, pr / _safe(pAp, ok), torch.zeros_like(pAp))
        X = X + alpha.unsqueeze(1) * P
        if recompute_every is not None and (k + 1) % recompute_every == 0:
            R = mon.keep(bb - op.matvec(X), R)
        else:
            R = R - alpha.unsqueeze(1) * AP
        new_norm = torch.linalg.vector_norm(R, dim=1)
        if stagnation is not None:
            stalled = new_norm >= (1.0 - stagnation) * rnorm
        rnorm = new_norm
        mon.record(new_norm)
        if callback is not None:
            callback(user_iterate(system, X))
        history.append((P, AP, torch.where(ok, pAp, torch.zeros_like(pAp))))
        if len(history) > m:
            history.pop(0)
    _raise_fcg(a_break, z_break)
    return mon.result(
        system, X, {"fallbacks": fallbacks, "restarts": restarts, "true_residual": _true_residual(system, X)}
    )
