"""Black-box multigrid numerics (:mod:`pdesurrogates.linalg.boxmg`) against SciPy: the stencil is
the finite-volume matrix, the probed Galerkin stencil is ``P.T @ A @ P``, the interpolation equals
a point-by-point construction, reproduces constants and is exact for layered piecewise-linear
solutions; the untrained learned V-cycle is the classical BoxMG V-cycle with damped Jacobi written
with SciPy; the docstring examples run."""

from __future__ import annotations

import doctest
import itertools
import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from pdesurrogates.linalg import boxmg
from pdesurrogates.linalg.boxmg import BoxMGInterpolation, diffusion_stencil, galerkin_product
from pdesurrogates.physics.darcy import sample_coefficient
from pdesurrogates.physics.grid import Grid
from pdesurrogates.physics.operators import diffusion_matrix
from pdesurrogates.solvers.learned.multigrid_preconditioner import (
    BlackBoxHierarchy,
    MultigridNeuralOperator,
    MultigridPreconditionerConfig,
)


def _darcy(nodes: int, contrast: float, seed: int = 1) -> np.ndarray:
    return sample_coefficient(nodes, torch.Generator().manual_seed(seed), high=contrast, low=1.0)


def test_docstring_examples():
    result = doctest.testmod(boxmg)
    assert result.failed == 0 and result.attempted > 0


def _boxmg_interpolation_reference(A: sp.csr_matrix, shape: tuple[int, ...]) -> sp.csr_matrix:
    """BoxMG interpolation built point by point from the assembled matrix (Dendy 1982).

    Coarse points are the odd 0-based interior positions; a fine point that is even along the axes
    ``F`` solves its own equation with the stencil summed over the other axes, its neighbours
    along ``F`` taken from their own interpolation (fewer even axes first)."""
    nd = len(shape)
    coarse = tuple(m // 2 for m in shape)
    A = A.todok()

    def entry(y, k):
        z = tuple(a + b for a, b in zip(y, k))
        if any(c < 0 or c >= m for c, m in zip(z, shape)):
            return 0.0
        return A.get((np.ravel_multi_index(y, shape), np.ravel_multi_index(z, shape)), 0.0)

    weights = {}
    for y in sorted(itertools.product(*[range(m) for m in shape]), key=lambda y: sum(c % 2 == 0 for c in y)):
        free = [d for d in range(nd) if y[d] % 2 == 0]
        if not free:
            weights[y] = {tuple((c - 1) // 2 for c in y): 1.0}
            continue
        collapsed = {}
        for k in itertools.product((-1, 0, 1), repeat=nd):
            key = tuple(k[d] for d in free)
            collapsed[key] = collapsed.get(key, 0.0) + entry(y, k)
        w = {}
        for key, value in collapsed.items():
            if not any(key) or value == 0.0:
                continue
            z = list(y)
            for d, kd in zip(free, key):
                z[d] += kd
            if any(c < 0 or c >= m for c, m in zip(z, shape)):
                continue  # a boundary node: zero
            for I, wz in weights[tuple(z)].items():
                w[I] = w.get(I, 0.0) - value * wz / collapsed[(0,) * len(free)]
        weights[y] = w
    P = sp.lil_matrix((math.prod(shape), math.prod(coarse)))
    for y, w in weights.items():
        for I, value in w.items():
            if all(0 <= c < m for c, m in zip(I, coarse)):
                P[np.ravel_multi_index(y, shape), np.ravel_multi_index(I, coarse)] = value
    return P.tocsr()


def _scipy_boxmg_vcycle(A: sp.csr_matrix, shape: tuple[int, ...], f: np.ndarray, omega: float, coarsest: int) -> np.ndarray:
    """Damped-Jacobi V(1,1) with BoxMG interpolation and Galerkin coarse matrices, written with SciPy."""
    if max(shape) + 2 <= coarsest or min(shape) < 2:
        return np.linalg.solve(A.toarray(), f)
    P = _boxmg_interpolation_reference(A, shape)
    dinv = 1.0 / A.diagonal()
    u = omega * dinv * f
    u = u + P @ _scipy_boxmg_vcycle((P.T @ A @ P).tocsr(), tuple(m // 2 for m in shape), P.T @ (f - A @ u),
                                    omega, coarsest)
    return u + omega * dinv * (f - A @ u)


def _lognormal(shape, seed=0, sigma=2.0):
    return np.exp(sigma * np.random.default_rng(seed).standard_normal(shape))


@pytest.mark.parametrize("shape,shift", [((9, 12), 0.0), ((6, 7, 5), 3.0)])
def test_stencil_is_the_finite_volume_matrix(shape, shift):
    grid = Grid(shape)
    a = _lognormal(shape)
    A = diffusion_matrix(a, grid) + shift * sp.identity(math.prod(grid.interior_shape))
    S = diffusion_stencil(torch.from_numpy(a)[None, None], grid, shift)
    assert abs(S.to_scipy() - A).max() == 0.0
    u = np.random.default_rng(1).standard_normal(grid.interior_shape)
    np.testing.assert_allclose(S.apply(torch.from_numpy(u)[None, None]).numpy().ravel(), A @ u.ravel(), rtol=1e-13,
                               atol=1e-13 * abs(A).max())


@pytest.mark.parametrize("shape", [(9, 9), (10, 13), (8, 7, 9)])
def test_galerkin_stencil_equals_scipy_triple_product(shape):
    """P^T A P by probing equals SciPy's product with the assembled P; prolong/restrict are P and P^T;
    P equals the point-by-point construction; batched systems are independent."""
    grid = Grid(shape)
    coeffs = [_lognormal(shape, seed) for seed in (0, 1)]
    S = diffusion_stencil(torch.from_numpy(np.stack(coeffs))[:, None], grid, shift=0.5)
    P = BoxMGInterpolation.from_stencil(S)
    coarse = galerkin_product(S, P)
    assert coarse.shape == tuple(m // 2 for m in grid.interior_shape)
    e = torch.randn(2, 1, *P.coarse_shape, dtype=torch.float64)
    r = torch.randn(2, 1, *P.fine_shape, dtype=torch.float64)
    for b, a in enumerate(coeffs):
        A = diffusion_matrix(a, grid) + 0.5 * sp.identity(math.prod(grid.interior_shape))
        P_ref = _boxmg_interpolation_reference(A, grid.interior_shape)
        Pb = P.to_scipy(b)
        assert abs(Pb - P_ref).max() < 1e-14
        expected = (P_ref.T @ A @ P_ref).toarray()
        np.testing.assert_allclose(coarse.to_scipy(b).toarray(), expected, rtol=0, atol=1e-12 * abs(expected).max())
        np.testing.assert_allclose(P.prolong(e)[b, 0].numpy().ravel(), P_ref @ e[b, 0].numpy().ravel(), atol=1e-14)
        np.testing.assert_allclose(P.restrict(r)[b, 0].numpy().ravel(), P_ref.T @ r[b, 0].numpy().ravel(), atol=1e-13)


def _away_from_boundaries(shape):
    """Fine points whose interpolation uses no equation of a node next to the boundary: one layer
    off each side, two at the far end of an even axis (whose last coarse line is next to it)."""
    return tuple(slice(1, m - 1 - (m % 2 == 0)) for m in shape)


@pytest.mark.parametrize("shape", [(17, 17), (18, 15), (9, 11, 9)])
def test_interpolation_reproduces_constants_away_from_boundaries(shape):
    """Zero row sums away from the boundary: P 1 = 1 there, so the Galerkin operator keeps zero row sums."""
    grid = Grid(shape)
    a = _lognormal(shape, sigma=3.0)
    S = diffusion_stencil(torch.from_numpy(a)[None, None], grid)
    P = BoxMGInterpolation.from_stencil(S)
    ones = P.prolong(torch.ones(1, 1, *P.coarse_shape, dtype=torch.float64))[0, 0].numpy()
    np.testing.assert_allclose(ones[_away_from_boundaries(P.fine_shape)], 1.0, rtol=1e-13)
    assert np.abs(ones - 1).max() > 0.1  # next to the Dirichlet boundary it is not 1
    coarse = galerkin_product(S, P)
    row_sums = coarse.values.sum(1)[0].numpy()
    scale = coarse.diagonal().abs().max().item()
    np.testing.assert_allclose(row_sums[_away_from_boundaries(coarse.shape)], 0.0, atol=1e-12 * scale)


@pytest.mark.parametrize("nodes", [33, 34])
def test_interpolation_is_exact_for_layered_piecewise_linear_solutions(nodes):
    """a(x) in layers with jumps of 1e4: the discrete solution of -(a u')' = 0 (piecewise linear,
    constant flux) is interpolated exactly from its coarse values; linear interpolation is not."""
    grid = Grid((nodes, nodes))
    x = np.arange(nodes)
    layer = np.where((x // 5) % 2 == 0, 1.0, 1e4)  # node values by column
    a = np.broadcast_to(layer, (nodes, nodes)).copy()
    face = 2 * layer[:-1] * layer[1:] / (layer[:-1] + layer[1:])
    u_line = np.concatenate([[0.0], np.cumsum(1.0 / face)])  # u_{i+1} - u_i = flux / a_{i+1/2}
    u = np.broadcast_to(u_line, (nodes, nodes))[1:-1, 1:-1]  # x along the last axis, constant in y
    S = diffusion_stencil(torch.from_numpy(a)[None, None], grid)
    P = BoxMGInterpolation.from_stencil(S)
    coarse_values = u[1 : 2 * P.coarse_shape[0] : 2, 1 : 2 * P.coarse_shape[1] : 2]  # injection
    fine = P.prolong(torch.from_numpy(np.ascontiguousarray(coarse_values))[None, None])[0, 0].numpy()
    inner = _away_from_boundaries(P.fine_shape)  # next to the y boundaries u is not 0, as P assumes
    np.testing.assert_allclose(fine[inner], u[inner], rtol=1e-12)
    linear = BoxMGInterpolation.from_stencil(diffusion_stencil(torch.ones(1, 1, nodes, nodes, dtype=torch.float64), grid))
    smeared = linear.prolong(torch.from_numpy(np.ascontiguousarray(coarse_values))[None, None])[0, 0].numpy()
    assert np.abs(smeared[inner] - u[inner]).max() > 0.1  # u grows by 1 a cell in the low layers


@pytest.mark.parametrize("shape,shift,contrast", [((33, 33), 0.0, 1e6), ((34, 30), 5.0, 1e3), ((17, 17, 17), 0.0, 1.0)])
def test_untrained_network_is_the_classical_boxmg_jacobi_vcycle(shape, shift, contrast):
    grid = Grid(shape)
    if len(shape) == 2:
        a = _darcy(max(shape), contrast)[: shape[0], : shape[1]]
    else:
        a = _lognormal(shape)
    A = diffusion_matrix(a, grid) + shift * sp.identity(math.prod(grid.interior_shape))
    net = MultigridNeuralOperator(MultigridPreconditionerConfig(ndim=len(shape))).double()
    f = np.random.default_rng(1).standard_normal(grid.interior_shape)
    H = net.hierarchy_for(grid, a, shift)
    assert isinstance(H, BlackBoxHierarchy)
    z = net(H, torch.from_numpy(f)[None, None])
    omega = float(np.float32({2: 0.8, 3: 6 / 7}[len(shape)]))  # the float32 initial weight
    ref = _scipy_boxmg_vcycle(A, grid.interior_shape, f.ravel(), omega, coarsest=5)
    np.testing.assert_allclose(z.detach().numpy().ravel(), ref, rtol=1e-9, atol=1e-11 * np.abs(ref).max())
