"""Preconditioner protocol and the classical preconditioners, against dense formulas."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from pdesurrogates.linalg import (
    AMGPreconditioner,
    IC0Preconditioner,
    JacobiPreconditioner,
    Preconditioner,
    SSORPreconditioner,
    gallery,
    pcg,
)
from pdesurrogates.linalg.preconditioners import incomplete_cholesky

# Kershaw's SPD matrix (J. Comput. Phys. 1978), on which IC(0) breaks down
KERSHAW = np.array([[3.0, -2, 0, 2], [-2, 3, -2, 0], [0, -2, 3, -2], [2, 0, -2, 3]])


def _variable(m=12, seed=0):
    rng = np.random.default_rng(seed)
    a = np.exp(rng.standard_normal((m + 2, m + 2)))
    return gallery.diffusion(a, format="scipy")


def _matrix_of(M, n):
    """Dense matrix of a preconditioner, by applying it to the identity (batched)."""
    return M.apply(np.eye(n)).T


def test_jacobi_and_base_protocol():
    A = _variable(5)
    M = JacobiPreconditioner(A)
    r = np.random.default_rng(0).standard_normal((2, 25))
    np.testing.assert_allclose(M.apply(r), r / A.diagonal(), rtol=1e-15)
    z = M.apply(torch.from_numpy(r[0]).float())
    assert z.dtype == torch.float32 and z.shape == (25,)
    with pytest.raises(ValueError, match=r"expected r of shape \(25,\) or \(B, 25\), found \(3,\)"):
        M.apply(np.ones(3))
    with pytest.raises(ValueError, match="positive diagonal"):
        JacobiPreconditioner(-A)

    class Incomplete(Preconditioner):
        pass

    with pytest.raises(NotImplementedError, match="must implement _apply"):
        Incomplete(3).apply(np.ones(3))
    L = M.as_linear_operator()
    np.testing.assert_allclose(L.matvec(r[1]), M.apply(r[1]), rtol=1e-15)


@pytest.mark.parametrize("omega", [0.7, 1.0, 1.5])
def test_ssor_matches_dense_formula_and_is_symmetric(omega):
    A = _variable(6, seed=1)
    Ad = A.toarray()
    D = np.diag(np.diag(Ad))
    L, U = np.tril(Ad, -1), np.triu(Ad, 1)
    # M^{-1} = w (2 - w) (D + w U)^{-1} D (D + w L)^{-1}
    ref = omega * (2 - omega) * np.linalg.solve(D + omega * U, D @ np.linalg.inv(D + omega * L))
    Minv = _matrix_of(SSORPreconditioner(A, omega), 36)
    np.testing.assert_allclose(Minv, ref, rtol=1e-10, atol=1e-14 * np.abs(ref).max())
    np.testing.assert_allclose(Minv, Minv.T, rtol=1e-10, atol=1e-14 * np.abs(ref).max())
    assert np.linalg.eigvalsh(0.5 * (Minv + Minv.T)).min() > 0
    with pytest.raises(ValueError, match=r"omega must lie in \(0, 2\)"):
        SSORPreconditioner(A, 2.0)


def test_ic0_is_exact_cholesky_on_a_tridiagonal_matrix():
    A = gallery.poisson1d(9, format="numpy")
    L = incomplete_cholesky(A).toarray()
    np.testing.assert_allclose(L, np.linalg.cholesky(A), rtol=1e-12)


def test_ic0_matches_a_on_its_pattern_and_applies_llt_inverse():
    A = _variable(8, seed=2)
    L = incomplete_cholesky(A)
    lower = sp.tril(A).tocsr()
    assert (abs(L).sign() != abs(lower).sign()).nnz == 0  # zero fill: the pattern of tril(A)
    LLt = (L @ L.T).toarray()
    Ad = A.toarray()
    mask = Ad != 0
    np.testing.assert_allclose(LLt[mask], Ad[mask], rtol=1e-12, atol=1e-12 * np.abs(Ad).max())
    assert np.abs(LLt[~mask]).max() > 0  # the dropped fill shows up outside the pattern
    M = IC0Preconditioner(A)
    assert M.shift == 0.0
    r = np.random.default_rng(3).standard_normal((2, 64))
    np.testing.assert_allclose(M.apply(r), np.linalg.solve(LLt, r.T).T, rtol=1e-9)


def test_ic0_breakdown_error_and_automatic_shift():
    assert np.linalg.eigvalsh(KERSHAW).min() > 0
    with pytest.raises(ValueError, match="non-positive pivot .* in row 3"):
        IC0Preconditioner(KERSHAW, shift=0.0)
    M = IC0Preconditioner(KERSHAW)
    assert M.shift > 0
    L = M.factor.toarray()
    shifted = KERSHAW + M.shift * np.diag(np.diag(KERSHAW))
    mask = KERSHAW != 0
    np.testing.assert_allclose((L @ L.T)[mask], shifted[mask], rtol=1e-12)
    res = pcg(KERSHAW, np.ones(4), M=M, rtol=1e-10)
    assert res.converged
    np.testing.assert_allclose(res.x, np.linalg.solve(KERSHAW, np.ones(4)), rtol=1e-8)


def test_amg_is_linear_and_symmetric():
    A = gallery.poisson2d(24)
    M = AMGPreconditioner(A)
    rng = np.random.default_rng(4)
    x, y = rng.standard_normal((2, 576))
    np.testing.assert_allclose(M.apply(2.0 * x + y), 2.0 * M.apply(x) + M.apply(y), rtol=1e-10,
                               atol=1e-12 * np.abs(M.apply(y)).max())
    assert abs(x @ M.apply(y) - y @ M.apply(x)) < 1e-10 * abs(x @ M.apply(y))
    Z = M.apply(torch.from_numpy(np.stack([x, y])))
    assert isinstance(Z, torch.Tensor)
    np.testing.assert_allclose(Z[1].numpy(), M.apply(y), rtol=1e-14)


@pytest.mark.parametrize("make", [JacobiPreconditioner, SSORPreconditioner, IC0Preconditioner])
def test_batched_apply_equals_single(make):
    A = _variable(6, seed=5)
    M = make(A)
    R = torch.from_numpy(np.random.default_rng(6).standard_normal((3, 36)))
    Z = M.apply(R)
    for i in range(3):
        torch.testing.assert_close(Z[i], M.apply(R[i]), rtol=1e-12, atol=1e-14 * Z.abs().max())
    np.testing.assert_allclose(M.as_linear_operator().matmat(R.numpy().T), Z.numpy().T,
                               rtol=1e-12, atol=1e-14 * float(Z.abs().max()))


def test_classical_pcg_iterations_on_poisson_64_match_reference_table():
    """REFERENCES.md (pyamg 5.4, SciPy 1.17, rtol 1e-6): CG 168, IC(0) 51, SA-AMG 6.
    The right-hand side is not recorded there; a random one lands within a few iterations."""
    A = gallery.poisson2d(64)
    b = np.random.default_rng(0).standard_normal(4096)
    its = {name: pcg(A, b, M=M, rtol=1e-6).iterations
           for name, M in (("cg", None), ("ic0", IC0Preconditioner(A)),
                           ("amg", AMGPreconditioner(A)))}
    assert abs(its["cg"] - 168) <= 10
    assert abs(its["ic0"] - 51) <= 5
    assert 4 <= its["amg"] <= 8


def test_numpy_kernels_equal_apply_and_are_used_only_when_they_match():
    """Jacobi and AMG have a one-vector numpy kernel for the CPU fast path; it is the same map
    as apply(), and a subclass that changes _apply does not inherit it."""
    from pdesurrogates.linalg._dispatch import resolve_preconditioner

    A = _variable(7, seed=8)
    r = np.random.default_rng(9).standard_normal(49)
    for M in (JacobiPreconditioner(A), AMGPreconditioner(A)):
        np.testing.assert_allclose(M._apply_numpy(r), M.apply(r), rtol=1e-14, atol=1e-300)
        z32 = M._apply_numpy(r.astype(np.float32))
        assert z32.dtype == np.float32
        np.testing.assert_allclose(z32, M.apply(r), rtol=0, atol=1e-6 * np.abs(M.apply(r)).max())
        assert resolve_preconditioner(M, 49).convention == "torch+numpy"

    class Scaled(JacobiPreconditioner):
        def _apply(self, R):
            return 2.0 * super()._apply(R)

    P = resolve_preconditioner(Scaled(A), 49)
    assert P.convention == "torch"
    np.testing.assert_allclose(P.single(r), 2.0 * r / A.diagonal(), rtol=1e-14)
