"""Relaxation solvers checked against SciPy triangular solves and classical convergence rates."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch

from pdesurrogates.linalg import StencilOperator, gallery, gauss_seidel, jacobi, sor, ssor
from pdesurrogates.linalg.relaxation import red_black_colors
from pdesurrogates.physics.grid import Grid


def _scipy_sor(A: sp.csr_matrix, b, omega, sweeps, symmetric=False):
    """Reference SOR/SSOR with ``scipy.sparse.linalg.spsolve_triangular``."""
    D = sp.diags(A.diagonal())
    lower = (sp.tril(A, -1) + D / omega).tocsr()
    upper = (sp.triu(A, 1) + D / omega).tocsr()
    x = np.zeros_like(b)
    for _ in range(sweeps):
        x = x + spla.spsolve_triangular(lower, b - A @ x, lower=True)
        if symmetric:
            x = x + spla.spsolve_triangular(upper, b - A @ x, lower=False)
    return x


def _rhs(n, seed=0, batch=None):
    rng = np.random.default_rng(seed)
    return rng.standard_normal(n if batch is None else (batch, n))


@pytest.mark.parametrize("m", [6, 33])  # n = 36 (dense triangular path), 1089 (sparse path)
def test_sor_omega_one_equals_scipy_gauss_seidel(m):
    A = gallery.poisson2d(m, format="scipy")
    b = _rhs(A.shape[0])
    ref = _scipy_sor(A, b, 1.0, 7)
    for solver in (lambda **k: sor(gallery.poisson2d(m), b, omega=1.0, **k),
                   lambda **k: gauss_seidel(A, b, **k)):
        res = solver(rtol=0.0, maxiter=7)
        assert res.iterations == 7 and not res.converged
        np.testing.assert_allclose(res.x, ref, rtol=0, atol=1e-12 * np.abs(ref).max())


@pytest.mark.parametrize("m", [6, 33])
def test_sor_and_ssor_sweeps_equal_scipy_reference(m):
    A = gallery.poisson2d(m, format="scipy")
    b = _rhs(A.shape[0], 1)
    for omega in (0.7, 1.6):
        ref = _scipy_sor(A, b, omega, 4)
        got = sor(A, b, omega=omega, rtol=0.0, maxiter=4).x
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-12 * np.abs(ref).max())
        ref = _scipy_sor(A, b, omega, 3, symmetric=True)
        got = ssor(A, b, omega=omega, rtol=0.0, maxiter=3).x
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-12 * np.abs(ref).max())


def test_jacobi_step_and_residual_history():
    A = gallery.poisson1d(10, format="numpy")
    b = _rhs(10)
    x = np.zeros(10)
    hist = [1.0]
    for _ in range(5):
        x = x + 0.8 * (b - A @ x) / np.diag(A)
        hist.append(np.linalg.norm(b - A @ x) / np.linalg.norm(b))
    res = jacobi(A, b, omega=0.8, rtol=0.0, maxiter=5)
    np.testing.assert_allclose(res.x, x, rtol=1e-13)
    np.testing.assert_allclose(res.residuals, hist, rtol=1e-10)


def test_red_black_sweep_is_gauss_seidel_in_colour_order():
    """One red-black GS sweep = lexicographic GS on the matrix permuted red-first."""
    m = 7
    A = gallery.poisson2d(m, format="scipy")
    colors = red_black_colors(A)
    assert set(np.unique(colors)) == {0, 1}
    perm = np.argsort(colors, kind="stable")
    P = A[perm][:, perm].tocsr()
    b = _rhs(m * m, 2)
    ref_perm = _scipy_sor(P, b[perm], 1.3, 3)
    ref = np.empty_like(ref_perm)
    ref[perm] = ref_perm
    got = sor(A, b, omega=1.3, ordering="red-black", rtol=0.0, maxiter=3).x
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-12 * np.abs(ref).max())
    got = ssor(A, b, omega=1.3, ordering="red-black", rtol=0.0, maxiter=1).x
    ref_perm = _scipy_sor(P, b[perm], 1.3, 1, symmetric=True)
    np.testing.assert_allclose(got[perm], ref_perm, rtol=0, atol=1e-12 * np.abs(ref).max())


def test_red_black_and_lexicographic_converge_to_same_solution():
    rng = np.random.default_rng(3)
    grid = Grid((14, 14))
    a = np.exp(rng.standard_normal(grid.shape))
    A = gallery.diffusion(a, grid, format="scipy")
    b = _rhs(A.shape[0], 4)
    exact = spla.spsolve(A.tocsc(), b)
    sols = []
    for ordering in ("lexicographic", "red-black"):
        for solver in (sor, ssor):
            res = solver(A, b, omega=1.5, ordering=ordering, rtol=1e-11, maxiter=5000)
            assert res.converged and res.residuals[-1] <= 1e-11
            sols.append(res.x)
    stencil = sor(StencilOperator(a, grid), b, omega=1.5, ordering="red-black", rtol=1e-11,
                  maxiter=5000)
    sols.append(stencil.x)
    for x in sols:
        np.testing.assert_allclose(x, exact, rtol=0, atol=1e-8 * np.abs(exact).max())


def test_gauss_seidel_and_optimal_sor_rates_match_theory():
    """GS contracts like cos^2(pi h) (Jacobi's radius squared); SOR at Young's omega like
    omega_opt - 1 (model problem, consistently ordered)."""
    m = 15
    h = 1.0 / (m + 1)
    A = gallery.poisson2d(m)
    b = torch.from_numpy(_rhs(m * m, 5))
    rho_j = math.cos(math.pi * h)
    res = gauss_seidel(A, b, rtol=1e-12, maxiter=5000)
    r = res.residuals.numpy()
    rate = (r[-1] / r[-41]) ** (1 / 40)
    assert rate == pytest.approx(rho_j**2, rel=5e-3)
    omega = 2 / (1 + math.sqrt(1 - rho_j**2))
    res = sor(A, b, omega=omega, rtol=1e-12, maxiter=5000)
    r = res.residuals.numpy()
    rate = (r[-1] / r[-41]) ** (1 / 40)
    # omega_opt is a defective eigenvalue: the rate approaches omega - 1 slowly from above
    assert omega - 1 <= rate <= (omega - 1) * 1.15
    assert res.iterations < 0.25 * gauss_seidel(A, b, rtol=1e-12, maxiter=5000).iterations


@pytest.mark.parametrize("ordering", ["lexicographic", "red-black"])
def test_batched_omegas_equal_per_system_solves(ordering):
    A = gallery.shifted_laplacian(10, 0.05)
    B = torch.from_numpy(_rhs(100, 6, batch=4))
    omegas = torch.tensor([1.0, 1.3, 1.6, 1.9], dtype=torch.float64)
    res = sor(A, B, omega=omegas, ordering=ordering, rtol=1e-8, maxiter=10_000)
    assert res.x.shape == (4, 100) and res.converged.shape == (4,)
    assert res.residuals.shape == (int(res.iterations.max()) + 1, 4)
    for i in range(4):
        one = sor(A, B[i], omega=float(omegas[i]), ordering=ordering, rtol=1e-8, maxiter=10_000)
        assert one.iterations == int(res.iterations[i])
        torch.testing.assert_close(res.x[i], one.x, rtol=0, atol=1e-13)
        torch.testing.assert_close(res.residuals[: one.iterations + 1, i], one.residuals,
                                   rtol=1e-12, atol=0)
        # past its own stop, a system's history repeats its last value
        assert bool((res.residuals[one.iterations:, i] == one.residuals[-1]).all())
    # one b with several omegas is the same batch
    many = sor(A, B[0], omega=omegas, ordering=ordering, rtol=1e-8, maxiter=10_000)
    assert many.iterations[0] == res.iterations[0] and many.x.shape == (4, 100)


def test_batch_of_dense_matrices_equals_per_system():
    shifts = [0.0, 0.2, 1.0]
    A = torch.stack([gallery.shifted_laplacian(6, c, format="dense") for c in shifts])
    b = torch.from_numpy(_rhs(36, 7))
    res = ssor(A, b, omega=1.4, rtol=1e-10)
    for i, c in enumerate(shifts):
        one = ssor(gallery.shifted_laplacian(6, c), b, omega=1.4, rtol=1e-10)
        assert one.iterations == int(res.iterations[i])
        torch.testing.assert_close(res.x[i], one.x, rtol=0, atol=1e-13)


def test_types_follow_b_and_float32():
    A = gallery.poisson1d(6)
    b_np = _rhs(6, 8)
    res = gauss_seidel(A, b_np, maxiter=1000)
    assert isinstance(res.x, np.ndarray) and isinstance(res.iterations, int)
    assert isinstance(res.residuals, np.ndarray) and isinstance(res.converged, bool)
    res32 = gauss_seidel(A, torch.from_numpy(b_np).float(), rtol=1e-5, maxiter=1000)
    assert res32.x.dtype == torch.float32 and res32.converged
    np.testing.assert_allclose(res32.x.numpy(), np.linalg.solve(A.to_dense().numpy(), b_np),
                               rtol=1e-3)


def test_callback_sees_every_iterate():
    A = gallery.poisson1d(5)
    seen = []
    res = sor(A, np.ones(5), omega=1.2, rtol=1e-6, callback=lambda x: seen.append(x.copy()))
    assert len(seen) == res.iterations
    np.testing.assert_array_equal(seen[-1], res.x)


def test_non_convergence_returns_history():
    # SPD, but Jacobi's iteration matrix has eigenvalue -1.8: Jacobi diverges
    A = np.full((3, 3), 0.9) + 0.1 * np.eye(3)
    b = np.array([1.0, -2.0, 0.5])
    res = jacobi(A, b, maxiter=40)
    assert res.converged is False and res.iterations == 40 and res.residuals.shape == (41,)
    assert res.residuals[-1] > 1e3 * res.residuals[0]
    res = sor(gallery.poisson2d(10), np.ones(100), omega=1.0, maxiter=3)
    assert res.converged is False and res.iterations == 3
    # an exactly zero right-hand side converges at once to x = 0
    res = sor(gallery.poisson2d(4), np.zeros(16), omega=1.5)
    assert res.converged and res.iterations == 0 and not res.x.any()


@pytest.mark.parametrize("omega", [0.0, 2.0, 2.5, -1.0, float("nan")])
def test_bad_omega(omega):
    with pytest.raises(ValueError, match=r"omega must lie in the open interval \(0, 2\)"):
        sor(gallery.poisson1d(4), np.ones(4), omega=omega)


def test_bad_input_errors():
    A = gallery.poisson1d(4)
    with pytest.raises(ValueError, match="square"):
        sor(np.ones((3, 4)), np.ones(3), omega=1.0)
    with pytest.raises(ValueError, match="expected last dimension 4"):
        gauss_seidel(A, np.ones(5))
    with pytest.raises(ValueError, match="b contains NaN"):
        ssor(A, np.array([1.0, np.nan, 0, 0]), omega=1.0)
    Z = np.eye(3)
    Z[1, 1] = 0.0
    with pytest.raises(ValueError, match="zero diagonal entry at index 1"):
        sor(Z, np.ones(3), omega=1.0)
    with pytest.raises(ValueError, match="omega has 3 values but there are 2 systems"):
        sor(A, np.ones((2, 4)), omega=[1.0, 1.1, 1.2])
    with pytest.raises(ValueError, match="ordering must be one of"):
        sor(A, np.ones(4), omega=1.0, ordering="random")
    with pytest.raises(ValueError, match="no preconditioner"):
        jacobi(A, np.ones(4), M=np.eye(4))
    with pytest.raises(ValueError, match="rtol must be a finite number"):
        jacobi(A, np.ones(4), rtol=-1.0)
    with pytest.raises(ValueError, match="two-colourable"):
        sor(gallery.random_spd(5), torch.ones(5, dtype=torch.float64), omega=1.0,
            ordering="red-black")


# -- the wavefront kernel -------------------------------------------------------------------------
def _random_sparse(n: int, seed: int) -> sp.csr_matrix:
    """Non-symmetric, diagonally dominant, unstructured sparsity (about 4 off-diagonals a row)."""
    rng = np.random.default_rng(seed)
    M = sp.random(n, n, density=4.0 / n, random_state=rng, format="csr")
    M.data = -rng.random(M.nnz)
    M.setdiag(0.0)
    M.eliminate_zeros()
    return (M + sp.diags(np.abs(M).sum(axis=1).A1 + 0.5 + rng.random(n))).tocsr()


def _kernels_agree(solver, A, b, **kw):
    """Solve with both kernels; iteration counts equal, iterates and histories equal to rounding."""
    tri = solver(A, b, kernel="triangular", **kw)
    wav = solver(A, b, kernel="wavefront", **kw)
    np.testing.assert_array_equal(np.asarray(wav.iterations), np.asarray(tri.iterations))
    np.testing.assert_array_equal(np.asarray(wav.converged), np.asarray(tri.converged))
    x_t, x_w = np.asarray(tri.x), np.asarray(wav.x)
    np.testing.assert_allclose(x_w, x_t, rtol=0, atol=1e-12 * np.abs(x_t).max())
    # relative residuals: b - A x cancels, so they agree to rounding relative to ||b||
    np.testing.assert_allclose(np.asarray(wav.residuals), np.asarray(tri.residuals), rtol=1e-12, atol=1e-14)
    return tri, wav


@pytest.mark.parametrize("symmetric", [False, True])
def test_wavefront_kernel_equals_triangular_on_many_omegas(symmetric):
    solver = ssor if symmetric else sor
    A = gallery.shifted_laplacian(10, -0.1, format="scipy")
    b = _rhs(100, 9)
    omegas = np.linspace(1.0, 1.95, 20)
    tri, _ = _kernels_agree(solver, A, b, omega=omegas, rtol=1e-8, maxiter=10_000)
    assert np.all(tri.converged) and np.ptp(tri.iterations) > 100  # systems stop far apart
    # fixed sweeps without a stopping test: the iterates of the SciPy reference
    fixed = solver(A, b, omega=1.3, rtol=0.0, maxiter=5, kernel="wavefront")
    ref = _scipy_sor(A, b, 1.3, 5, symmetric=symmetric)
    np.testing.assert_allclose(fixed.x, ref, rtol=0, atol=1e-12 * np.abs(ref).max())


@pytest.mark.parametrize("symmetric", [False, True])
def test_wavefront_kernel_on_unstructured_and_stencil_matrices(symmetric):
    solver = ssor if symmetric else sor
    A = _random_sparse(150, 3)
    _kernels_agree(solver, A, _rhs(150, 4, batch=6), omega=np.linspace(0.7, 1.2, 6), rtol=1e-10)
    a = np.exp(np.random.default_rng(5).standard_normal((9, 11)))  # rectangular grid
    op = StencilOperator(a, Grid((9, 11)))
    b = torch.from_numpy(_rhs(63, 6, batch=3))
    _kernels_agree(solver, op, b, omega=torch.tensor([1.0, 1.5, 1.8], dtype=torch.float64),
                   rtol=1e-9)


def test_wavefront_kernel_on_a_batch_of_matrices_with_warm_starts():
    shifts = np.linspace(-0.15, 0.45, 12)
    A = torch.stack([gallery.shifted_laplacian(8, c, format="dense") for c in shifts])
    b = torch.from_numpy(_rhs(64, 10, batch=12))
    x0 = 0.1 * torch.from_numpy(_rhs(64, 11, batch=12))
    omegas = torch.linspace(1.0, 1.9, 12, dtype=torch.float64)
    _, wav = _kernels_agree(sor, A, b, x0=x0, omega=omegas, rtol=1e-8, maxiter=10_000)
    for i in (0, 7):  # and each system is the one solved alone
        one = sor(A[i], b[i], x0=x0[i], omega=float(omegas[i]), rtol=1e-8, kernel="wavefront")
        assert one.iterations == int(wav.iterations[i])
        torch.testing.assert_close(one.x, wav.x[i], rtol=0, atol=1e-13)
    # float32 works too and keeps its dtype
    w32 = sor(A.float(), b.float(), omega=omegas.float(), rtol=1e-4, kernel="wavefront")
    assert w32.x.dtype == torch.float32 and bool(w32.converged.all())


def test_wavefront_kernel_callback_and_non_convergence():
    A = gallery.poisson2d(6)
    b = _rhs(36, 12, batch=3)
    seen_t, seen_w = [], []
    for kernel, seen in (("triangular", seen_t), ("wavefront", seen_w)):
        res = sor(A, b, omega=[1.0, 1.4, 1.7], rtol=1e-6, kernel=kernel,
                  callback=lambda x, seen=seen: seen.append(x.copy()))
    assert len(seen_w) == len(seen_t) == res.iterations.max()
    np.testing.assert_allclose(np.stack(seen_w), np.stack(seen_t), rtol=0, atol=1e-12)
    res = sor(A, b, omega=1.0, maxiter=3, kernel="wavefront")
    assert not res.converged.any() and (res.iterations == 3).all()
    res = sor(A, np.zeros((2, 36)), omega=1.5, kernel="wavefront")
    assert res.converged.all() and (res.iterations == 0).all() and not res.x.any()


def test_sweep_levels_are_a_valid_schedule():
    from pdesurrogates.linalg.relaxation import sweep_levels

    i, j = np.indices((5, 7))
    S = StencilOperator(np.ones((7, 9)), Grid((7, 9))).to_scipy()
    np.testing.assert_array_equal(sweep_levels(S), (i + j).ravel())  # anti-diagonals
    np.testing.assert_array_equal(sweep_levels(S, lower=False), (4 - i + 6 - j).ravel())
    np.testing.assert_array_equal(sweep_levels(gallery.poisson1d(6, format="scipy")), np.arange(6))
    A = _random_sparse(200, 1).tocoo()
    for lower in (True, False):
        lv = sweep_levels(A.tocsr(), lower=lower)
        dep = (A.col < A.row) if lower else (A.col > A.row)
        assert np.all(lv[A.row[dep]] > lv[A.col[dep]])  # every dependency lies in an earlier level
        # and no level is later than needed: each unknown above level 0 has a parent one below
        parent = np.zeros(200, dtype=bool)
        parent[A.row[dep][lv[A.row[dep]] == lv[A.col[dep]] + 1]] = True
        assert np.all(parent | (lv == 0))


def test_kernel_choice_and_bad_kernel():
    from pdesurrogates.linalg.operators import TorchOperator
    from pdesurrogates.linalg.relaxation import _choose_kernel

    op = TorchOperator(gallery.poisson2d(10))
    d = op.diagonal()
    few, many = torch.ones(20, dtype=torch.float64), torch.ones(2000, dtype=torch.float64)
    assert _choose_kernel("auto", op, d, few, False, "sor") is None  # small batch: triangular
    assert _choose_kernel("auto", op, d, many, False, "sor") is not None  # 2000 x 100 / 19 levels
    assert _choose_kernel("triangular", op, d, many, False, "sor") is None
    # a batch of matrices: wavefront when levels are wide (a grid), not for full matrices
    grids = TorchOperator(torch.stack([gallery.poisson2d(5, format="dense")] * 3))
    full = TorchOperator(torch.stack([gallery.random_spd(25)] * 3))
    three = torch.ones(3, dtype=torch.float64)
    assert _choose_kernel("auto", grids, grids.diagonal(), three, False, "sor") is not None
    assert _choose_kernel("auto", full, full.diagonal(), three, False, "sor") is None
    with pytest.raises(ValueError, match="kernel must be one of"):
        sor(gallery.poisson1d(4), np.ones(4), omega=1.0, kernel="fast")
    with pytest.raises(ValueError, match="ordering='lexicographic' only"):
        sor(gallery.poisson1d(4), np.ones(4), omega=1.0, ordering="red-black", kernel="wavefront")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_wavefront_kernel_on_gpu_equals_cpu():
    shifts = np.linspace(-0.15, 0.45, 40)
    A = torch.stack([gallery.shifted_laplacian(10, c, format="dense") for c in shifts])
    b = torch.from_numpy(_rhs(100, 13, batch=40))
    omegas = torch.linspace(1.0, 1.95, 40, dtype=torch.float64)
    cpu = ssor(A, b, omega=omegas, rtol=1e-9, kernel="wavefront")
    gpu = ssor(A.cuda(), b.cuda(), omega=omegas.cuda(), rtol=1e-9, kernel="wavefront")
    assert gpu.x.device.type == "cuda" and gpu.iterations.cpu().tolist() == cpu.iterations.tolist()
    torch.testing.assert_close(gpu.x.cpu(), cpu.x, rtol=0, atol=1e-10)


def test_docstring_examples():
    import doctest

    from pdesurrogates.linalg import _wavefront, relaxation

    for module in (relaxation, _wavefront):
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert result.failed == 0 and result.attempted > 0
