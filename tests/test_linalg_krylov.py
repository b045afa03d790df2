"""CG, PCG and FCG against direct solves, SciPy's cg, and the sqrt(kappa) bound."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse.linalg as spla
import torch

from pdesurrogates.linalg import (
    IC0Preconditioner,
    JacobiPreconditioner,
    Preconditioner,
    SSORPreconditioner,
    StencilOperator,
    cg,
    fcg,
    gallery,
    pcg,
)
from pdesurrogates.physics.grid import Grid


def _diffusion(m=30, seed=0, sigma=1.0):
    rng = np.random.default_rng(seed)
    a = np.exp(sigma * rng.standard_normal((m + 2, m + 2)))
    return a, gallery.diffusion(a, format="scipy"), rng.standard_normal(m * m)


def _rel(x, ref):
    return np.linalg.norm(x - ref) / np.linalg.norm(ref)


def test_cg_reaches_numpy_solve_on_random_spd():
    A = gallery.random_spd(60, condition=1e4, seed=3, format="numpy")
    b = np.random.default_rng(1).standard_normal(60)
    res = cg(A, b, rtol=1e-13, maxiter=1000)
    assert res.converged
    assert _rel(res.x, np.linalg.solve(A, b)) < 1e-8
    assert res.info["true_residual"] < 1e-11


@pytest.mark.parametrize("m", [16, 32])
def test_cg_iterations_within_sqrt_kappa_bound_and_equal_scipy(m):
    """||e_k||_A <= 2 ((sqrt(k)-1)/(sqrt(k)+1))^k ||e_0||_A gives
    k <= 1/2 sqrt(kappa) ln(2/eps) + 1 (the residual-norm variant gains a factor sqrt(kappa)
    inside the log; we use eps = rtol / sqrt(kappa))."""
    A = gallery.poisson2d(m)
    lam = gallery.poisson_eigenvalues(m, 2)
    kappa = lam[-1] / lam[0]
    rtol = 1e-8
    b = torch.from_numpy(np.random.default_rng(m).standard_normal(m * m))
    res = cg(A, b, rtol=rtol)
    bound = 0.5 * math.sqrt(kappa) * math.log(2 * math.sqrt(kappa) / rtol) + 1
    assert res.converged and res.iterations <= bound
    # and not vacuous: within a factor 3.5 of what CG needs on a random b
    assert res.iterations > bound / 3.5
    its = []
    x, info = spla.cg(gallery.poisson2d(m, format="scipy"), b.numpy(), rtol=rtol,
                      callback=lambda xk: its.append(1))
    assert info == 0 and abs(len(its) - res.iterations) <= 1
    np.testing.assert_allclose(res.x.numpy(), x, rtol=0, atol=1e-9 * np.abs(x).max())


def test_cg_bound_with_residual_rtol_exact_form():
    """Iterations <= 1/2 sqrt(kappa) ln(2/rtol) + 1 holds for the Poisson spectrum at 32^2."""
    m = 32
    lam = gallery.poisson_eigenvalues(m, 2)
    kappa = lam[-1] / lam[0]
    res = cg(gallery.poisson2d(m), np.ones(m * m), rtol=1e-6)
    assert res.iterations <= 0.5 * math.sqrt(kappa) * math.log(2 / 1e-6) + 1


@pytest.mark.parametrize("omega", [1.0, 1.6])
def test_ssor_pcg_iterations_match_scipy(omega):
    A = gallery.poisson2d(32)
    M = SSORPreconditioner(A, omega)
    b = np.random.default_rng(2).standard_normal(1024)
    res = pcg(A, b, M=M, rtol=1e-8)
    its = []
    x, info = spla.cg(gallery.poisson2d(32, format="scipy"), b, rtol=1e-8,
                      M=M.as_linear_operator(), callback=lambda xk: its.append(1))
    assert info == 0 and res.converged
    # SciPy stops on ||r|| < rtol ||b||, we on <=: equal unless a residual lands on the boundary
    assert res.iterations == len(its)
    np.testing.assert_allclose(res.x, x, rtol=0, atol=1e-9 * np.abs(x).max())
    assert res.iterations < 0.5 * cg(A, b, rtol=1e-8).iterations


@pytest.mark.parametrize("solver", ["cg", "fcg1", "fcg2", "fcg_ic0", "cg_ic0"])
def test_cg_and_fcg_reach_spsolve(solver):
    _, A, b = _diffusion(24)
    exact = spla.spsolve(A.tocsc(), b)
    M = IC0Preconditioner(A) if solver.endswith("ic0") else None
    if solver.startswith("fcg"):
        res = fcg(A, b, M=M, rtol=1e-12, m=2 if solver == "fcg2" else 1)
        assert res.fallbacks == 0
    else:
        res = cg(A, b, M=M, rtol=1e-12)
    assert res.converged
    assert _rel(res.x, exact) < 1e-8


def test_fcg_with_fixed_spd_preconditioner_matches_pcg():
    """With a fixed SPD M, FCG(1) is PCG in exact arithmetic: same iterates up to round-off."""
    _, A, b = _diffusion(24, seed=1)
    M = IC0Preconditioner(A)
    p = pcg(A, b, M=M, rtol=1e-10)
    f = fcg(A, b, M=M, rtol=1e-10, recompute_every=None)
    assert abs(p.iterations - f.iterations) <= 1
    k = min(p.iterations, f.iterations, 15)
    np.testing.assert_allclose(f.residuals[:k], p.residuals[:k], rtol=1e-6)


def test_fcg_converges_where_pcg_stalls_with_a_varying_preconditioner():
    """A preconditioner that changes every call (SSOR with a randomly drawn omega): each
    application is SPD, but the map is not fixed. PCG's short recurrence loses conjugacy and
    stalls; FCG re-orthogonalises explicitly and converges."""
    _, A, b = _diffusion(32, seed=0)
    Ms = [SSORPreconditioner(A, w) for w in (0.6, 1.0, 1.4, 1.8)]

    def varying(generator):
        def apply(R):
            i = int(torch.randint(len(Ms), (1,), generator=generator))
            return Ms[i].apply(R)
        return apply

    stalled = pcg(A, b, M=varying(torch.Generator().manual_seed(0)), rtol=1e-8, maxiter=400)
    flexible = fcg(A, b, M=varying(torch.Generator().manual_seed(0)), rtol=1e-8, maxiter=400)
    assert not stalled.converged and stalled.residuals.min() > 1e-6
    assert flexible.converged and flexible.iterations < 150
    assert _rel(flexible.x, spla.spsolve(A.tocsc(), b)) < 1e-6
    fcg2 = fcg(A, b, M=varying(torch.Generator().manual_seed(0)), rtol=1e-8, maxiter=400, m=2)
    assert fcg2.converged and fcg2.iterations <= flexible.iterations


class _Flagged(Preconditioner):
    linear = False

    def _apply(self, R):
        return R


def test_pcg_refuses_nonlinear_or_nonsymmetric_preconditioner():
    A = gallery.poisson1d(5)
    with pytest.raises(ValueError, match="nonlinear.*Use pdesurrogates.linalg.fcg"):
        pcg(A, np.ones(5), M=_Flagged(5))

    class NonSym(_Flagged):
        linear = True
        symmetric = False

    with pytest.raises(ValueError, match="non-symmetric.*fcg"):
        pcg(A, np.ones(5), M=NonSym(5))
    with pytest.raises(ValueError, match="nonlinear preconditioner.*fcg"):
        _Flagged(5).as_linear_operator()
    res = fcg(A, np.ones(5), M=_Flagged(5), rtol=1e-10)
    assert res.converged


def test_fcg_fallback_on_nan_and_ascent_directions():
    _, A, b = _diffusion(16, seed=2)
    jac = JacobiPreconditioner(A)
    calls = {"n": 0, "bad": 0}

    def sometimes_nan(R):  # numpy b: called SciPy-style on 1-D numpy vectors
        calls["n"] += 1
        Z = jac.apply(R)
        if calls["n"] % 3 == 0:
            calls["bad"] += 1
            return Z * float("nan")
        return Z

    res = fcg(A, b, M=sometimes_nan, rtol=1e-10)
    assert res.converged and res.fallbacks == calls["bad"] > 0
    assert _rel(res.x, spla.spsolve(A.tocsc(), b)) < 1e-8
    # an ascent direction is replaced by the Jacobi one every time: FCG-with-Jacobi exactly
    flipped = fcg(A, b, M=lambda R: -R, rtol=1e-10)
    plain = fcg(A, b, M=jac, rtol=1e-10)
    assert flipped.fallbacks == flipped.iterations == plain.iterations
    np.testing.assert_allclose(flipped.x, plain.x, rtol=1e-12)
    with pytest.raises(ValueError, match="iteration 1 .*does not descend"):
        fcg(A, b, M=lambda R: -R, fallback=False)
    with pytest.raises(ValueError, match="r\\^T M r"):
        pcg(A, b, M=sometimes_nan)


def test_non_spd_matrix_raises_with_iteration():
    A = -gallery.poisson1d(6, format="numpy")
    for solver in (cg, fcg):
        with pytest.raises(ValueError, match="iteration 1 .*not symmetric positive definite"):
            solver(A, np.ones(6))
    D = np.diag([1.0, 2.0, 3.0, -1.0])
    with pytest.raises(ValueError, match=r"breakdown at iteration \d+ \(system 1\)"):
        cg(D, np.array([[1.0, 1.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]]))


def test_batched_solves_equal_single_solves():
    a, A, _ = _diffusion(12, seed=4)
    B = torch.from_numpy(np.random.default_rng(5).standard_normal((3, 144)))
    A_t = gallery.diffusion(a)
    M = IC0Preconditioner(A)
    for solver, kw in ((cg, {}), (pcg, {"M": M}), (fcg, {"M": M, "m": 2})):
        res = solver(A_t, B, rtol=1e-10, **kw)
        assert res.x.shape == (3, 144) and res.iterations.shape == (3,)
        for i in range(3):
            one = solver(A_t, B[i], rtol=1e-10, **kw)
            # a single system runs the numpy kernel, the batch the torch loop: the same
            # recurrence up to round-off, which plain CG amplifies mid-run on this rough
            # coefficient (SciPy's residual history departs from both in the same iterations);
            # the preconditioned ones stay identical
            exact = solver is not cg
            assert abs(one.iterations - int(res.iterations[i])) <= (0 if exact else 1)
            ref = res.x[i].abs().max()
            torch.testing.assert_close(res.x[i], one.x, rtol=0,
                                       atol=(1e-12 if exact else 1e-8) * ref)
            k = one.iterations + 1 if exact else 15
            torch.testing.assert_close(res.residuals[:k, i], one.residuals[:k], rtol=1e-8, atol=0)
    # a batch of different matrices
    shifts = [0.0, 0.5, 3.0]
    Ab = torch.stack([gallery.shifted_laplacian(8, c, format="dense") for c in shifts])
    res = cg(Ab, B[:, :64], rtol=1e-10)
    for i, c in enumerate(shifts):
        one = cg(gallery.shifted_laplacian(8, c), B[i, :64], rtol=1e-10)
        assert one.iterations == int(res.iterations[i])


def test_matrix_free_stencil_equals_assembled():
    a, A, b = _diffusion(14, seed=6)
    op = StencilOperator(a, Grid(a.shape))
    r1, r2 = cg(op, b, rtol=1e-10), cg(A, b, rtol=1e-10)
    assert abs(r1.iterations - r2.iterations) <= 1  # same operator up to round-off
    np.testing.assert_allclose(r1.x, r2.x, rtol=0, atol=1e-9 * np.abs(r2.x).max())


def test_non_convergence_and_warm_start():
    A = gallery.poisson2d(16)
    b = np.ones(256)
    res = cg(A, b, maxiter=5)
    assert res.converged is False and res.iterations == 5 and res.residuals.shape == (6,)
    assert np.all(np.diff(res.residuals) != 0)
    res = fcg(A, b, maxiter=5)
    assert res.converged is False and res.iterations == 5
    exact = spla.spsolve(gallery.poisson2d(16, format="scipy").tocsc(), b)
    warm = cg(A, b, x0=exact, rtol=1e-8)
    assert warm.converged and warm.iterations == 0


def test_types_dtypes_and_scipy_operator_preconditioner():
    A = gallery.poisson2d(8)
    b32 = torch.ones(64, dtype=torch.float32)
    res = cg(A, b32, rtol=1e-5)
    assert res.x.dtype == torch.float32 and res.converged and isinstance(res.iterations, int)
    Ms = SSORPreconditioner(A, 1.2)
    r1 = pcg(A, np.ones(64), M=Ms.as_linear_operator(), rtol=1e-10)
    r2 = pcg(A, np.ones(64), M=Ms, rtol=1e-10)
    assert isinstance(r1.x, np.ndarray) and r1.iterations == r2.iterations
    with pytest.raises(ValueError, match=r"M has shape \(3, 3\), expected \(64, 64\)"):
        pcg(A, np.ones(64), M=np.eye(3))
    with pytest.raises(ValueError, match="m must be an integer >= 1"):
        fcg(A, np.ones(64), m=0)


class _GridPreconditioner(Preconditioner):
    """Overrides ``apply`` wholesale and keeps its own ``shape`` (a grid), as learned
    preconditioners do; never calls ``Preconditioner.__init__``."""

    linear = False
    symmetric = False

    def __init__(self, shape, diagonal):
        self.shape = shape
        self.diagonal = diagonal

    def apply(self, r):
        return r / self.diagonal


def test_preconditioner_subclass_overriding_apply_works_in_fcg():
    _, A, b = _diffusion(10, seed=7)
    M = _GridPreconditioner((10, 10), torch.from_numpy(A.diagonal()))
    res = fcg(A, torch.from_numpy(b), M=M, rtol=1e-10)
    ref = fcg(A, torch.from_numpy(b), M=JacobiPreconditioner(A), rtol=1e-10)
    assert res.converged and res.iterations == ref.iterations
    with pytest.raises(TypeError, match="Preconditioner.__init__"):
        M.as_linear_operator() if M.linear else Preconditioner.apply(M, b)
    with pytest.raises(ValueError, match="size 5, but A is 100 x 100"):
        fcg(A, b, M=JacobiPreconditioner(gallery.poisson1d(5)))


class _Stagnating(Preconditioner):
    """Nonlinear: nearly the same direction whatever the residual, plus a tiny multiple of r.
    Each FCG step along it descends (p.r > 0) but removes almost nothing."""

    linear = False

    def __init__(self, direction: torch.Tensor) -> None:
        super().__init__(direction.shape[0])
        self.direction = direction

    def _apply(self, R):
        return self.direction.to(R.dtype) * torch.linalg.vector_norm(R, dim=1, keepdim=True) + 1e-7 * R


def test_fcg_restarts_a_stagnating_nonlinear_preconditioner():
    _, A, b = _diffusion(16, seed=1)
    M = _Stagnating(torch.from_numpy(np.random.default_rng(0).standard_normal(A.shape[0])))
    stuck = fcg(A, b, M=M, m=2, rtol=1e-6, maxiter=300, stagnation=None)
    saved = fcg(A, b, M=M, m=2, rtol=1e-6, maxiter=300)  # "auto": 0.01 for a nonlinear M
    assert saved.converged and int(saved.info["restarts"]) > 0
    assert not stuck.converged or saved.iterations < 0.6 * stuck.iterations  # measured: 110 vs 214
    assert _rel(saved.x, spla.spsolve(A.tocsc(), b)) < 1e-5
    with pytest.raises(ValueError, match="stagnation"):
        fcg(A, b, M=M, stagnation=1.5)
