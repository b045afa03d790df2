"""SciPy users' objects in the Krylov solvers, our preconditioners in SciPy's and pyamg's, and
clear refusals of input the solvers cannot handle (complex, empty, malformed)."""

from __future__ import annotations

import numpy as np
import pyamg.krylov
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch

from pdesurrogates.linalg import (
    AMGPreconditioner,
    IC0Preconditioner,
    JacobiPreconditioner,
    Preconditioner,
    SSORPreconditioner,
    cg,
    fcg,
    gallery,
    jacobi,
    pcg,
    sor,
)
from pdesurrogates.physics.darcy import sample_coefficient
from pdesurrogates.physics.grid import Grid
from pdesurrogates.physics.operators import diffusion_matrix


def _system(m=20, seed=0):
    rng = np.random.default_rng(seed)
    a = np.exp(rng.standard_normal((m + 2, m + 2)))
    return gallery.diffusion(a, format="scipy"), rng.standard_normal(m * m)


def _scipy_cg(A, b, M, rtol):
    its = []
    x, info = spla.cg(A, b, rtol=rtol, M=M, maxiter=10 * A.shape[0],
                      callback=lambda xk: its.append(1))
    assert info == 0
    return x, len(its)


# -- preconditioners given the SciPy way ----------------------------------------------------------
def test_numpy_callable_preconditioner_in_pcg_and_fcg():
    A, b = _system()
    d = A.diagonal()
    seen = []

    def jacobi_numpy(r):  # what a SciPy user writes: 1-D numpy in, 1-D numpy out
        seen.append((type(r), r.shape))
        return r / d

    ref = pcg(A, b, M=JacobiPreconditioner(A), rtol=1e-10)
    x_sp, its_sp = _scipy_cg(A, b, spla.LinearOperator(A.shape, matvec=jacobi_numpy), 1e-10)
    for solver in (pcg, fcg):
        seen.clear()
        res = solver(A, b, M=jacobi_numpy, rtol=1e-10)
        assert res.converged and res.iterations == ref.iterations
        assert abs(res.iterations - its_sp) <= 1
        assert set(seen) == {(np.ndarray, (400,))}
        np.testing.assert_allclose(res.x, x_sp, rtol=0, atol=1e-8 * np.abs(x_sp).max())
    # a batch of numpy right-hand sides: one SciPy-style call per system
    B = np.stack([b, -2.0 * b])
    res = pcg(A, B, M=jacobi_numpy, rtol=1e-10)
    assert res.converged.all() and list(res.iterations) == [ref.iterations] * 2
    np.testing.assert_allclose(res.x[1], -2.0 * ref.x, rtol=1e-9, atol=1e-12)


def test_callable_preconditioner_with_torch_b_gets_the_batch_and_may_return_numpy():
    A, b = _system(seed=1)
    d = torch.from_numpy(A.diagonal())
    Bt = torch.from_numpy(np.stack([b, b[::-1].copy()]))
    shapes = []

    def batched(R):  # torch b: the (B, n) torch batch, as before
        shapes.append((type(R), tuple(R.shape)))
        return (R / d).numpy()  # returning numpy is accepted

    res = pcg(A, Bt, M=batched, rtol=1e-10)
    ref = pcg(A, Bt, M=JacobiPreconditioner(A), rtol=1e-10)
    assert shapes[0] == (torch.Tensor, (2, 400))
    assert torch.equal(res.iterations, ref.iterations)
    torch.testing.assert_close(res.x, ref.x, rtol=0, atol=1e-12 * float(ref.x.abs().max()))
    one = fcg(A, Bt[0], M=batched, rtol=1e-10)
    assert shapes[-1] == (torch.Tensor, (1, 400)) and one.iterations == int(ref.iterations[0])


def test_scipy_linear_operator_preconditioner_uses_matvec_on_vectors():
    A, b = _system(seed=2)
    ilu = spla.spilu(A.tocsc(), drop_tol=1e-2)
    calls = []

    def solve(r):
        calls.append(np.shape(r))
        return ilu.solve(r)

    L = spla.LinearOperator(A.shape, matvec=solve)
    res = fcg(A, b, M=L, rtol=1e-10)  # ILU is not symmetric: flexible CG
    assert res.converged and set(calls) == {(400,)}
    exact = spla.spsolve(A.tocsc(), b)
    np.testing.assert_allclose(res.x, exact, rtol=0, atol=1e-8 * np.abs(exact).max())


# -- A given the SciPy way -------------------------------------------------------------------------
def test_linear_operator_and_callable_as_A():
    A, b = _system(seed=3)
    ref = cg(A, b, rtol=1e-10)
    ref_p = pcg(A, b, M=IC0Preconditioner(A), rtol=1e-10)
    for A_free in (spla.aslinearoperator(A), spla.LinearOperator(A.shape, matvec=lambda v: A @ v),
                   lambda v: A @ v):
        res = cg(A_free, b, rtol=1e-10)
        assert res.converged and abs(res.iterations - ref.iterations) <= 1
        np.testing.assert_allclose(res.x, ref.x, rtol=0, atol=1e-8 * np.abs(ref.x).max())
        res = pcg(A_free, b, M=IC0Preconditioner(A), rtol=1e-10)
        assert res.iterations == ref_p.iterations
        res = fcg(A_free, b, rtol=1e-10)  # fallback direction r: A has no known diagonal
        assert res.converged and abs(res.iterations - ref.iterations) <= 2
    # a batch through a LinearOperator (matmat), and a torch callable on the torch batch
    B = np.stack([b, 3.0 * b])
    res = cg(spla.aslinearoperator(A), B, rtol=1e-10)
    assert res.converged.all()
    np.testing.assert_allclose(res.x[1], 3.0 * ref.x, rtol=0, atol=1e-8 * np.abs(ref.x).max())
    At = gallery.diffusion(np.exp(np.random.default_rng(3).standard_normal((22, 22))))
    Bt = torch.from_numpy(B)
    res = cg(lambda X: (At @ X.T).T, Bt, rtol=1e-10)
    assert res.converged.all() and torch.allclose(res.x[0], torch.from_numpy(ref.x), atol=1e-8)
    with pytest.raises(TypeError, match="sor needs the entries of A"):
        sor(spla.aslinearoperator(A), b, omega=1.5)
    with pytest.raises(ValueError, match=r"A \(function\) returned shape \(3,\); expected \(400,\)"):
        cg(lambda v: v[:3], b)


# -- our preconditioners in SciPy's and pyamg's solvers ----------------------------------------------
def _neural_multigrid(grid, a):
    from pdesurrogates.solvers.learned.multigrid_preconditioner import (
        MultigridNeuralOperator,
        NeuralMultigridPreconditioner,
    )

    # untrained: classical geometric multigrid with damped-Jacobi smoothing, symmetric in float64
    return NeuralMultigridPreconditioner(MultigridNeuralOperator().double(), grid, a)


@pytest.mark.parametrize("kind", ["jacobi", "ssor", "ic0", "amg", "neural_multigrid"])
def test_every_linear_preconditioner_works_in_scipy_and_pyamg_cg(kind):
    grid = Grid((33, 33))
    a = sample_coefficient(33, torch.Generator().manual_seed(0), high=100.0, low=1.0)
    A = diffusion_matrix(a, grid)
    b = np.random.default_rng(0).standard_normal(A.shape[0])
    M = {"jacobi": lambda: JacobiPreconditioner(A), "ssor": lambda: SSORPreconditioner(A, 1.5),
         "ic0": lambda: IC0Preconditioner(A), "amg": lambda: AMGPreconditioner(A),
         "neural_multigrid": lambda: _neural_multigrid(grid, a)}[kind]()
    rtol = 1e-8
    ours = (pcg if M.symmetric else fcg)(A, b, M=M, rtol=rtol)
    assert ours.converged
    L = M.as_linear_operator()
    assert isinstance(L, spla.LinearOperator) and L.shape == A.shape
    x_sp, its_sp = _scipy_cg(A, b, L, rtol)
    residuals = []
    x_pa, flag = pyamg.krylov.cg(A, b, tol=rtol, M=L, maxiter=2000, residuals=residuals)
    assert flag == 0
    assert abs(its_sp - ours.iterations) <= 1
    assert abs(len(residuals) - 1 - ours.iterations) <= 1
    for x in (x_sp, x_pa):
        np.testing.assert_allclose(x, ours.x, rtol=0, atol=1e-6 * np.abs(ours.x).max())


def test_neural_multigrid_has_its_size_and_refuses_without_a_system():
    from pdesurrogates.solvers.learned.multigrid_preconditioner import (
        MultigridNeuralOperator,
        NeuralMultigridPreconditioner,
    )

    grid = Grid((17, 17))
    M = NeuralMultigridPreconditioner(MultigridNeuralOperator(), grid)
    assert M.n == 15 * 15
    with pytest.raises(ValueError, match="size 225, but A is 100 x 100"):
        fcg(gallery.poisson2d(10), np.ones(100), M=M)
    with pytest.raises(ValueError, match="no system"):
        NeuralMultigridPreconditioner(MultigridNeuralOperator()).as_linear_operator()


# -- refusals ---------------------------------------------------------------------------------------
def test_complex_input_is_refused_not_truncated():
    A, b = _system(8, seed=4)
    bc = b + 1j * np.random.default_rng(5).standard_normal(b.shape)
    for call in (lambda: cg(A, bc), lambda: pcg(A, bc, M=JacobiPreconditioner(A)),
                 lambda: fcg(A, bc), lambda: sor(A, bc, omega=1.2), lambda: jacobi(A, bc),
                 lambda: cg(A, torch.from_numpy(bc))):
        with pytest.raises(TypeError, match="b has complex dtype"):
            call()
    for Ac in (A.astype(complex) * (1 + 1j), A.toarray() * 1j, torch.from_numpy(A.toarray() * 1j),
               spla.aslinearoperator(A.astype(complex))):
        with pytest.raises(TypeError, match="complex dtype"):
            cg(Ac, b)
    with pytest.raises(TypeError, match="complex"):
        IC0Preconditioner(A.astype(complex))
    with pytest.raises(TypeError, match="x0 has complex dtype"):
        cg(A, b, x0=bc)
    with pytest.raises(TypeError, match=r"M \(function\) returned complex"):
        cg(A, b, M=lambda r: r + 0j)
    # the route the message suggests, against a complex direct solve
    res = cg(A, np.stack([bc.real, bc.imag]), rtol=1e-12)
    exact = spla.spsolve(A.astype(complex).tocsc(), bc)
    x = res.x[0] + 1j * res.x[1]
    assert np.linalg.norm(x - exact) <= 1e-9 * np.linalg.norm(exact)


def test_bad_preconditioner_outputs_name_M_expected_and_found():
    A, b = _system(8, seed=6)
    with pytest.raises(ValueError, match=r"M \(function\) returned None; expected .*\(64,\)"):
        pcg(A, b, M=lambda r: None)
    with pytest.raises(ValueError, match=r"M \(function\) returned shape \(3,\); expected \(64,\)"):
        fcg(A, b, M=lambda r: r[:3])
    with pytest.raises(ValueError, match=r"returned shape \(1, 3\); expected \(1, 64\)"):
        pcg(A, torch.from_numpy(b), M=lambda R: R[:, :3])
    with pytest.raises(ValueError, match=r"iteration 0 .*M returned NaN/Inf"):
        pcg(A, b, M=lambda r: r * np.nan)

    class Broken(Preconditioner):
        def _apply(self, R):
            return R[:, :5]

    with pytest.raises(ValueError, match=r"M \(Broken\) returned shape \(1, 5\); expected \(1, 64\)"):
        pcg(A, b, M=Broken(64))
    # fcg steps around a NaN direction (documented fallback), or names it when asked not to
    res = fcg(A, b, M=lambda r: r * np.nan, rtol=1e-10)
    assert res.converged and res.fallbacks == res.iterations
    with pytest.raises(ValueError, match="NaN/Inf"):
        fcg(A, b, M=lambda r: r * np.nan, fallback=False)


@pytest.mark.parametrize("empty", [np.zeros((0, 0)), sp.csr_matrix((0, 0)), torch.zeros(0, 0)])
def test_empty_matrix_is_refused(empty):
    for solver in (cg, fcg, lambda A, b: sor(A, b, omega=1.0)):
        with pytest.raises(ValueError, match=r"A is empty \(shape \(0, 0\)\)"):
            solver(empty, np.zeros(0))


def test_malformed_systems_have_clear_errors():
    A, b = _system(6, seed=7)
    with pytest.raises(ValueError, match="square"):
        cg(np.ones((3, 4)), np.ones(3))
    with pytest.raises(ValueError, match="A contains NaN"):
        cg(np.array([[1.0, np.nan], [np.nan, 1.0]]), np.ones(2))
    with pytest.raises(ValueError, match="b contains NaN"):
        fcg(A, np.full(36, np.nan))
    with pytest.raises(ValueError, match=r"A is 36 x 36 but b has shape \(35,\)"):
        pcg(A, np.ones(35))
    with pytest.raises(ValueError, match=r"M has shape \(3, 3\), expected \(36, 36\)"):
        pcg(A, b, M=spla.aslinearoperator(np.eye(3)))
