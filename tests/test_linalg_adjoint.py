"""Gradients through cg/pcg/fcg by one adjoint solve, against dense direct solves and gradcheck."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pdesurrogates.linalg import (
    IC0Preconditioner,
    JacobiPreconditioner,
    StencilOperator,
    cg,
    fcg,
    gallery,
    pcg,
)
from pdesurrogates.physics.darcy import sample_coefficient
from pdesurrogates.physics.grid import Grid

RTOL = 1e-12
TOL = 1e-8  # relative error of gradients against the dense direct solve


def _rel(a: torch.Tensor, ref: torch.Tensor) -> float:
    return float((a - ref).norm() / ref.norm())


def _solvers(A_scipy):
    """(name, solver, kwargs): plain, preconditioned, flexible with and without M."""
    return [("cg", cg, {}), ("pcg_ic0", pcg, {"M": IC0Preconditioner(A_scipy)}),
            ("fcg", fcg, {}), ("fcg_jacobi", fcg, {"M": JacobiPreconditioner(A_scipy), "m": 2})]


def _loss(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return (w * x).sum() + (x ** 2).sum()  # a nonlinear loss: dL/dx depends on x


@pytest.mark.parametrize("batched", [False, True])
def test_gradient_wrt_b_and_sparse_values_matches_dense_solve(batched):
    rng = np.random.default_rng(0)
    a = np.exp(rng.standard_normal((14, 14)))
    S = gallery.diffusion(a)  # 144 unknowns, torch CSR
    A_scipy = gallery.diffusion(a, format="scipy")
    shape = (3, 144) if batched else (144,)
    b0 = torch.from_numpy(rng.standard_normal(shape))
    w = torch.from_numpy(rng.standard_normal(shape))
    vals_ref = S.values().clone().requires_grad_()
    b_ref = b0.clone().requires_grad_()
    Ad = torch.sparse_csr_tensor(S.crow_indices(), S.col_indices(), vals_ref, S.shape).to_dense()
    x_ref = torch.linalg.solve(Ad, b_ref.T).T if batched else torch.linalg.solve(Ad, b_ref)
    _loss(x_ref, w).backward()
    for name, solver, kw in _solvers(A_scipy):
        vals = S.values().clone().requires_grad_()
        b = b0.clone().requires_grad_()
        A = torch.sparse_csr_tensor(S.crow_indices(), S.col_indices(), vals, S.shape)
        res = solver(A, b, rtol=RTOL, **kw)
        assert res.x.requires_grad and bool(np.all(np.asarray(res.converged)))
        _loss(res.x, w).backward()
        assert _rel(b.grad, b_ref.grad) <= TOL, name
        assert _rel(vals.grad, vals_ref.grad) <= TOL, name
    # COO values (uncoalesced: a duplicate entry splits one value in two) get theirs too
    rows, cols, v = (t.clone() for t in (torch.repeat_interleave(
        torch.arange(144), S.crow_indices()[1:] - S.crow_indices()[:-1]), S.col_indices(), S.values()))
    idx = torch.cat([torch.stack([rows, cols]), torch.stack([rows[:1], cols[:1]])], dim=1)
    v = torch.cat([v, v[:1]]).clone()
    v[0] *= 0.5
    v[-1] *= 0.5
    v = v.requires_grad_()
    x = cg(torch.sparse_coo_tensor(idx, v, S.shape), b0, rtol=RTOL).x
    _loss(x, w).backward()
    expected = torch.cat([vals_ref.grad, vals_ref.grad[:1]])
    assert _rel(v.grad, expected) <= TOL


def test_gradient_wrt_dense_and_batched_dense_A():
    torch.manual_seed(0)
    n = 40
    A0 = gallery.random_spd(n, condition=1e3, seed=1)
    B0 = torch.stack([gallery.random_spd(n, condition=1e2, seed=s) for s in (2, 3)])
    b0 = torch.randn(2, n, dtype=torch.float64)
    w = torch.randn(2, n, dtype=torch.float64)
    for A_init in (A0, B0):
        A_ref, b_ref = A_init.clone().requires_grad_(), b0.clone().requires_grad_()
        x_ref = torch.linalg.solve(A_ref, b_ref.unsqueeze(-1)).squeeze(-1) if A_init.ndim == 3 \
            else torch.linalg.solve(A_ref, b_ref.T).T
        _loss(x_ref, w).backward()
        for solver in (cg, pcg, fcg):
            A, b = A_init.clone().requires_grad_(), b0.clone().requires_grad_()
            _loss(solver(A, b, rtol=RTOL).x, w).backward()
            assert _rel(A.grad, A_ref.grad) <= TOL and _rel(b.grad, b_ref.grad) <= TOL
    # one b shared by a batch of matrices: its gradient sums over the batch
    b1 = b0[0].clone().requires_grad_()
    B = B0.clone().requires_grad_()
    cg(B, b1, rtol=RTOL).x.sum().backward()
    b2 = b0[0].clone().requires_grad_()
    torch.linalg.solve(B0, b2.expand(2, n).unsqueeze(-1)).sum().backward()
    assert _rel(b1.grad, b2.grad) <= TOL


def _dense_stencil(a: torch.Tensor, grid: Grid) -> torch.Tensor:
    """The stencil's matrix, assembled differentiably in ``a`` (reference only)."""
    n = StencilOperator(a.detach(), grid).shape[0]
    return StencilOperator(a, grid).matvec(torch.eye(n, dtype=a.dtype)).T


@pytest.mark.parametrize("ndim", [2, 3])
def test_gradient_wrt_darcy_coefficient_matches_dense_solve(ndim):
    """-div(a grad u) = f: dL/da through the matrix-free stencil, batched f, with and without a
    preconditioner, against a direct solve of the assembled (differentiable) matrix."""
    if ndim == 2:
        grid = Grid((18, 18))
        a0 = torch.from_numpy(sample_coefficient(18, torch.Generator().manual_seed(0)))  # 12 / 3
    else:
        grid = Grid((8, 8, 8))
        a0 = torch.exp(torch.randn(grid.shape, generator=torch.Generator().manual_seed(0),
                                   dtype=torch.float64))
    n = StencilOperator(a0, grid).shape[0]
    f = torch.randn(2, n, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    w = torch.randn(2, n, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    a_ref = a0.clone().requires_grad_()
    u_ref = torch.linalg.solve(_dense_stencil(a_ref, grid), f.T).T
    _loss(u_ref, w).backward()
    A_scipy = StencilOperator(a0, grid).to_scipy()
    for name, solver, kw in _solvers(A_scipy):
        a = a0.clone().requires_grad_()
        u = solver(StencilOperator(a, grid), f, rtol=RTOL, **kw).x
        assert _rel(u.detach(), u_ref.detach()) <= TOL
        _loss(u, w).backward()
        assert _rel(a.grad, a_ref.grad) <= TOL, name


def test_gradient_wrt_a_batch_of_coefficients():
    """One coefficient per system (``a: (B, *grid.shape)``), a batched f: each coefficient's
    gradient equals that of its own dense direct solve."""
    grid = Grid((10, 12))
    g = torch.Generator().manual_seed(7)
    a0 = torch.exp(torch.randn(3, *grid.shape, generator=g, dtype=torch.float64))
    f = torch.randn(3, 80, generator=g, dtype=torch.float64)
    for solver in (cg, fcg):
        a = a0.clone().requires_grad_()
        u = solver(StencilOperator(a, grid), f, rtol=RTOL).x
        (u ** 3).sum().backward()
        for i in range(3):
            ai = a0[i].clone().requires_grad_()
            ui = torch.linalg.solve(_dense_stencil(ai, grid), f[i])
            (ui ** 3).sum().backward()
            assert _rel(a.grad[i], ai.grad) <= TOL


def test_gradcheck_and_double_backward_on_small_systems():
    """float64 gradcheck (A symmetric by construction: the solvers refuse a non-symmetric one)
    and gradgradcheck: the adjoint solve is itself differentiated."""
    A0 = gallery.random_spd(5, condition=10, seed=4)
    P = A0.clone().requires_grad_()
    b = torch.randn(2, 5, generator=torch.Generator().manual_seed(3), dtype=torch.float64,
                    requires_grad=True)

    def dense(P, b):
        return cg((P + P.T) / 2, b, rtol=1e-13).x

    assert torch.autograd.gradcheck(dense, (P, b))
    assert torch.autograd.gradgradcheck(dense, (P, b))
    S = gallery.poisson2d(3)
    crow, col = S.crow_indices(), S.col_indices()
    rows = torch.repeat_interleave(torch.arange(9), crow[1:] - crow[:-1])
    transpose = torch.searchsorted(rows * 9 + col, col * 9 + rows)  # entry (j, i) of each (i, j)
    v = S.values().clone().requires_grad_()

    def sparse(v, b):
        sym = (v + v[transpose]) / 2
        return pcg(torch.sparse_csr_tensor(crow, col, sym, (9, 9)), b, rtol=1e-13,
                   M=JacobiPreconditioner(S)).x

    f = torch.randn(9, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(sparse, (v, f))
    # double backward with leaf sparse values: a Hessian-vector product against the dense solve
    # (gradgradcheck would perturb single values, i.e. leave the symmetric matrices)
    u = torch.randn(v.shape, generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    hvps = []
    for dense_reference in (False, True):
        vv = S.values().clone().requires_grad_()
        A = torch.sparse_csr_tensor(crow, col, vv, (9, 9))
        if dense_reference:  # assembled by index_put: torch's CSR constructor has no double backward
            D = torch.zeros(9, 9, dtype=torch.float64).index_put((rows, col), vv, accumulate=True)
            x = torch.linalg.solve(D, f)
        else:
            x = cg(A, f, rtol=1e-13).x
        (g,) = torch.autograd.grad((x ** 3).sum(), vv, create_graph=True)
        hvps.append(torch.autograd.grad((g * u).sum(), vv)[0])
    assert _rel(hvps[0], hvps[1]) <= TOL
    for grid in (Grid((4, 5)), Grid((4, 4, 4))):
        a = torch.exp(torch.randn(grid.shape, generator=torch.Generator().manual_seed(5),
                                  dtype=torch.float64)).requires_grad_()
        n = StencilOperator(a.detach(), grid).shape[0]
        f = torch.randn(n, generator=torch.Generator().manual_seed(6), dtype=torch.float64,
                        requires_grad=True)

        def stencil(a, f, grid=grid):
            return fcg(StencilOperator(a, grid), f, rtol=1e-13).x

        assert torch.autograd.gradcheck(stencil, (a, f))
        if grid.ndim == 2:
            assert torch.autograd.gradgradcheck(stencil, (a, f))


def test_no_graph_through_iterations_and_unconverged_solves_refuse_backward():
    A = gallery.poisson2d(12)
    b = torch.ones(144, dtype=torch.float64, requires_grad=True)
    res = cg(A, b, rtol=1e-10)
    assert type(res.x.grad_fn).__name__ == "_ImplicitSolveBackward"
    assert not res.residuals.requires_grad  # the rest of the result carries no graph
    res = cg(A, b, rtol=1e-10, maxiter=3)
    assert not res.converged
    with pytest.raises(RuntimeError, match="forward solve did not converge .*3 iterations"):
        res.x.sum().backward()
    b = torch.randn(144, generator=torch.Generator().manual_seed(0), dtype=torch.float64,
                    requires_grad=True)
    res = fcg(A, b, rtol=1e-6, maxiter=40, adjoint_rtol=1e-14)  # forward: 33 iterations, adjoint: 52
    assert res.converged
    with pytest.raises(RuntimeError, match="adjoint solve .* did not converge"):
        (res.x ** 2).sum().backward()
    with pytest.raises(TypeError, match="pass b as a torch tensor"):
        cg(gallery.poisson2d(4, format="dense").requires_grad_(), np.ones(16))
    with torch.no_grad():  # grad mode off: a plain solve
        assert cg(A, b, rtol=1e-10).x.grad_fn is None


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gradients_on_gpu_equal_cpu():
    grid = Grid((18, 18))
    a0 = torch.from_numpy(sample_coefficient(18, torch.Generator().manual_seed(0)))
    f = torch.randn(3, 256, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    grads = []
    for device in ("cpu", "cuda"):
        a = a0.to(device).requires_grad_()
        u = cg(StencilOperator(a, grid), f.to(device), rtol=1e-12).x
        (u ** 2).sum().backward()
        grads.append(a.grad.cpu())
    assert _rel(grads[1], grads[0]) <= 1e-8
