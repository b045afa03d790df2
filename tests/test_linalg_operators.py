"""linalg.operators and linalg.gallery: conversions, matrix-free stencils, exact spectra."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from pdesurrogates.linalg import StencilOperator, as_linear_operator, gallery, to_scipy_csr
from pdesurrogates.linalg.operators import TorchOperator, prepare_system, to_torch_csr
from pdesurrogates.physics.grid import Grid
from pdesurrogates.physics.operators import diffusion_matrix


def _tridiag(n: int) -> sp.csr_matrix:
    return sp.diags([-np.ones(n - 1), 2 * np.ones(n), -np.ones(n - 1)], [-1, 0, 1], format="csr")


@pytest.mark.parametrize("ndim", [1, 2, 3])
def test_poisson_is_kronecker_sum_and_has_known_spectrum(ndim):
    n = 5
    h = 1.0 / (n + 1)
    T, I = _tridiag(n), sp.identity(n)
    ref = {1: T, 2: sp.kron(T, I) + sp.kron(I, T),
           3: sp.kron(sp.kron(T, I), I) + sp.kron(sp.kron(I, T), I) + sp.kron(sp.kron(I, I), T)}
    A = gallery.poisson(n, ndim, format="scipy")
    np.testing.assert_allclose(A.toarray(), ref[ndim].toarray() / h**2, rtol=0, atol=1e-9)
    unscaled = gallery.poisson(n, ndim, scaled=False, format="numpy")
    np.testing.assert_array_equal(unscaled, ref[ndim].toarray())
    lam = np.linalg.eigvalsh(A.toarray())
    np.testing.assert_allclose(gallery.poisson_eigenvalues(n, ndim), lam, rtol=1e-12)


def test_gallery_formats_agree():
    A_t = gallery.poisson2d(4)
    assert A_t.layout == torch.sparse_csr and A_t.dtype == torch.float64
    A_s = gallery.poisson2d(4, format="scipy")
    A_d = gallery.poisson2d(4, format="dense")
    A_n = gallery.poisson2d(4, format="numpy")
    np.testing.assert_array_equal(A_t.to_dense().numpy(), A_s.toarray())
    np.testing.assert_array_equal(A_d.numpy(), A_n)
    with pytest.raises(ValueError, match="format must be one of"):
        gallery.poisson2d(4, format="csr")


def test_diffusion_wraps_physics_operator():
    rng = np.random.default_rng(0)
    a = np.exp(rng.standard_normal((7, 6)))
    grid = Grid((7, 6))
    A = gallery.diffusion(a, grid, format="scipy")
    assert (A != diffusion_matrix(a, grid)).nnz == 0
    A_t = gallery.diffusion(torch.from_numpy(a))
    np.testing.assert_array_equal(A_t.to_dense().numpy(), A.toarray())


def test_shifted_laplacian_and_random_spd():
    A = gallery.shifted_laplacian(10, 0.3, format="numpy")
    np.testing.assert_array_equal(A, gallery.poisson2d(10, scaled=False, format="numpy") + 0.3 * np.eye(100))
    lam_min = gallery.poisson_eigenvalues(10, 2, scaled=False)[0]
    with pytest.raises(ValueError, match="lambda_min"):
        gallery.shifted_laplacian(10, -lam_min)
    R = gallery.random_spd(30, condition=1e3, seed=1, format="numpy")
    np.testing.assert_array_equal(R, R.T)
    lam = np.linalg.eigvalsh(R)
    np.testing.assert_allclose([lam[0], lam[-1]], [1.0, 1e3], rtol=1e-9)
    np.testing.assert_array_equal(R, gallery.random_spd(30, condition=1e3, seed=1).numpy())
    assert not np.array_equal(R, gallery.random_spd(30, condition=1e3, seed=2, format="numpy"))


def test_conversions_round_trip():
    A = gallery.poisson2d(5, format="scipy")
    A_t = to_torch_csr(A)
    np.testing.assert_array_equal(to_scipy_csr(A_t).toarray(), A.toarray())
    np.testing.assert_array_equal(to_scipy_csr(A_t.to_dense()).toarray(), A.toarray())
    np.testing.assert_array_equal(to_scipy_csr(A.toarray()).toarray(), A.toarray())
    np.testing.assert_array_equal(to_torch_csr(A.toarray()).to_dense().numpy(), A.toarray())
    with pytest.raises(TypeError, match="found list"):
        to_scipy_csr([[1.0]])


def test_stencil_operator_matches_assembled_matrix_batched():
    rng = np.random.default_rng(1)
    grid = Grid((9, 8))
    a = np.exp(rng.standard_normal(grid.shape))
    op = StencilOperator(a, grid)
    A = diffusion_matrix(a, grid)
    X = rng.standard_normal((3, A.shape[0]))
    got = op.matvec(torch.from_numpy(X))
    np.testing.assert_allclose(got.numpy(), (A @ X.T).T, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(op.matvec(torch.from_numpy(X[0])).numpy(), A @ X[0], rtol=1e-12)
    d = TorchOperator(op).diagonal().numpy()
    np.testing.assert_array_equal(d, A.diagonal())
    with pytest.raises(ValueError, match="grid needs"):
        StencilOperator(np.ones((4, 4)), grid)


@pytest.mark.parametrize("fmt", ["torch", "dense", "scipy", "numpy"])
def test_as_linear_operator_matches_matrix(fmt):
    A = gallery.poisson2d(4, format=fmt)
    ref = gallery.poisson2d(4, format="numpy")
    L = as_linear_operator(A)
    v = np.arange(16.0)
    np.testing.assert_allclose(L.matvec(v), ref @ v, rtol=0, atol=1e-12 * np.abs(ref @ v).max())
    V = np.random.default_rng(0).standard_normal((16, 3))
    np.testing.assert_allclose(L.matmat(V), ref @ V, rtol=0, atol=1e-12 * np.abs(ref @ V).max())
    with pytest.raises(ValueError, match="batch"):
        as_linear_operator(torch.zeros(2, 3, 3))


def test_torch_operator_batched_dense_and_diagonal():
    A = torch.stack([gallery.shifted_laplacian(3, c, format="dense") for c in (0.0, 1.0)])
    op = TorchOperator(A)
    assert op.kind == "batched" and op.batch == 2
    X = torch.randn(2, 9, dtype=torch.float64)
    ref = torch.stack([A[i] @ X[i] for i in range(2)])
    torch.testing.assert_close(op.matvec(X), ref)
    torch.testing.assert_close(op.diagonal(), torch.stack([torch.full((9,), 4.0), torch.full((9,), 5.0)]).double())


def test_prepare_system_errors():
    A = gallery.poisson1d(4)
    with pytest.raises(ValueError, match="square"):
        prepare_system(torch.zeros(3, 4), torch.zeros(3))
    with pytest.raises(ValueError, match=r"expected last dimension 4"):
        prepare_system(A, torch.zeros(5))
    with pytest.raises(ValueError, match="b contains NaN"):
        prepare_system(A, torch.tensor([1.0, float("nan"), 0.0, 0.0]))
    with pytest.raises(ValueError, match="A contains NaN"):
        prepare_system(torch.full((2, 2), float("nan")), torch.zeros(2))
    with pytest.raises(ValueError, match="x0 has shape"):
        prepare_system(A, torch.zeros(4), x0=torch.zeros(3))
    with pytest.raises(ValueError, match=r"shape \(n,\) or \(B, n\)"):
        prepare_system(A, torch.zeros(1, 1, 4))
