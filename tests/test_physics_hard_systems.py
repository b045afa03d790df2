"""Hard SPD families: SPD on small sizes, exact stencils, rigid-body kernel, contrasts, seeds."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg as sla
import scipy.sparse as sp

from pdesurrogates.physics.hard_systems import HARD_SYSTEMS, hard_system

SMALL = {
    "two-phase": [{"ndim": 2}, {"ndim": 3, "contrast": 1e6}],
    "lognormal": [{"sigma": 4.0}, {"ndim": 3}],
    "layered": [{}],
    "anisotropic": [{"stencil": "fd"}, {"stencil": "fe", "epsilon": 1e-2, "theta": 1.0}],
    "fem-jump": [{"contrast": 1e6}],
    "elasticity": [{}],
}


def _cases():
    for family, variants in SMALL.items():
        for params in variants:
            yield family, params


@pytest.mark.parametrize("family,params", list(_cases()))
def test_symmetric_positive_definite(family, params) -> None:
    size = 6 if family == "layered" or params.get("ndim") == 3 else 14
    s = hard_system(family, size, seed=5, **params)
    assert isinstance(s.A, sp.csr_matrix) and s.A.dtype == np.float64
    assert s.coordinates.shape == (s.n, 3 if size == 6 else 2)
    A = s.A.toarray()
    assert np.array_equal(A, A.T)
    eig = sla.eigvalsh(A)
    assert eig[0] > 0, (family, eig[0])
    # hard: the condition number grows with the contrast / anisotropy (sanity, not a bound)
    assert eig[-1] / eig[0] > 50


def test_registry_covers_the_families_and_errors_list_valid_names() -> None:
    assert set(HARD_SYSTEMS) == set(SMALL)
    with pytest.raises(ValueError, match="valid: two-phase, lognormal, layered"):
        hard_system("spe10", 8)
    with pytest.raises(ValueError, match="unknown parameter.*eps.*valid: epsilon, theta, stencil"):
        hard_system("anisotropic", 8, eps=1e-3)
    with pytest.raises(ValueError, match="size must be an int >= 2"):
        hard_system("two-phase", 1)
    with pytest.raises(ValueError, match="epsilon must be in"):
        hard_system("anisotropic", 8, epsilon=0.0)
    with pytest.raises(ValueError, match="seed"):
        hard_system("two-phase", 8, seed=-1)


@pytest.mark.parametrize("family", sorted(SMALL))
def test_seeds_reproduce(family) -> None:
    size = 5 if family == "layered" else 12
    a = hard_system(family, size, seed=11)
    b = hard_system(family, size, seed=np.random.default_rng(11))
    assert (a.A != b.A).nnz == 0
    c = hard_system(family, size, seed=12)
    if family in ("anisotropic", "elasticity"):  # deterministic operators
        assert (a.A != c.A).nnz == 0
    else:
        assert (a.A != c.A).nnz > 0


@pytest.mark.parametrize("contrast", [1e1, 1e3, 1e6])
def test_contrasts_are_what_was_asked(contrast) -> None:
    for family, kw in (("two-phase", {}), ("two-phase", {"ndim": 3}), ("fem-jump", {})):
        s = hard_system(family, 10, seed=0, contrast=contrast, **kw)
        assert set(np.unique(s.coefficient)) == {1.0, contrast}
        assert s.params["measured_contrast"] == contrast
    layered = hard_system("layered", 8, seed=0, contrast=contrast, layers=4)
    assert math.isclose(layered.params["measured_contrast"], contrast, rel_tol=1e-9)
    # layered along z: the planes of one slab share their field, neighbouring slabs differ
    a = layered.coefficient
    which = (np.arange(10) * 4) // 10
    for k in range(9):
        same = np.array_equal(a[:, :, k], a[:, :, k + 1])
        assert same == (which[k] == which[k + 1]), k


def test_lognormal_log_coefficient_has_the_asked_standard_deviation() -> None:
    """Pointwise variance of log a is sigma^2 (measured over 40 seeds, averaged over nodes: 0.98)."""
    sigma = 3.0
    logs = np.stack([np.log(hard_system("lognormal", 30, seed=s, sigma=sigma).coefficient)
                     for s in range(40)])
    ratio = logs.var(axis=0).mean() / sigma**2
    assert abs(ratio - 1.0) < 0.1, ratio


@pytest.mark.parametrize("stencil", ["fd", "fe"])
@pytest.mark.parametrize("epsilon,theta", [(1e-3, math.pi / 6), (0.1, 1.1), (1.0, 0.0)])
def test_anisotropic_stencil_is_exact_on_quadratics(stencil, epsilon, theta) -> None:
    """Away from the boundary, A u = -div(K grad u) exactly for quadratic u, with
    K = Q diag(1, epsilon) Q^T, Q the counter-clockwise rotation by theta."""
    n = 12
    s = hard_system("anisotropic", n, epsilon=epsilon, theta=theta, stencil=stencil)
    Q = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    K = Q @ np.diag([1.0, epsilon]) @ Q.T
    x, y = s.coordinates.T
    c = np.array([0.7, -1.3, 2.1, 0.4, -0.9, 1.5])  # u = c0 x^2 + c1 x y + c2 y^2 + c3 x + c4 y + c5
    u = c[0] * x**2 + c[1] * x * y + c[2] * y**2 + c[3] * x + c[4] * y + c[5]
    exact = -(K[0, 0] * 2 * c[0] + 2 * K[0, 1] * c[1] + K[1, 1] * 2 * c[2])
    inner = np.all((s.coordinates > 1.5 / (n + 1)) & (s.coordinates < 1 - 1.5 / (n + 1)), axis=1)
    assert np.allclose((s.A @ u)[inner], exact, rtol=0, atol=1e-8 * np.abs(s.A).max())


def test_elasticity_rigid_body_modes_span_the_free_operators_kernel() -> None:
    """pyamg's B is the kernel of the unconstrained (free) stiffness matrix; the clamped system's
    B is its restriction, and the rotation mode is (-(y - 1/2), x - 1/2) at the coordinates."""
    from pyamg.gallery.elasticity import q12d

    n = 10
    h = 1.0 / (n + 1)
    free, B_free = q12d((n, n), spacing=(h, h), dirichlet_boundary=False)
    free = sp.csr_matrix(free)
    assert np.abs(free @ B_free).max() < 1e-10 * abs(free).max()
    assert np.linalg.matrix_rank(B_free) == 3
    s = hard_system("elasticity", n)
    B = s.near_nullspace
    x, y = s.coordinates.T
    assert np.allclose(B[0::2, 0], 1) and np.allclose(B[1::2, 0], 0)
    assert np.allclose(B[1::2, 1], 1) and np.allclose(B[0::2, 1], 0)
    assert np.allclose(B[0::2, 2], -(y[0::2] - 0.5)) and np.allclose(B[1::2, 2], x[1::2] - 0.5)
    # interior unknowns whose stencil avoids the clamped nodes see the rigid modes as a kernel
    away = np.all((s.coordinates > 1.5 * h) & (s.coordinates < 1 - 1.5 * h), axis=1)
    assert np.abs((s.A @ B)[away]).max() < 1e-10 * abs(s.A).max()
    assert np.abs((s.A @ B)[~away]).max() > 1e-3 * abs(s.A).max()  # the clamp pins them


def test_fem_jump_coordinates_and_mesh_agree() -> None:
    s = hard_system("fem-jump", 12, seed=2)
    assert s.n == 144 and s.mesh is not None
    assert np.array_equal(s.coordinates, s.mesh.points[~s.mesh.boundary])
    assert len(s.coefficient) == len(s.mesh.triangles)


def test_elasticity_near_nullspace_is_what_smoothed_aggregation_needs() -> None:
    import pyamg

    e = hard_system("elasticity", 32)
    b = np.random.default_rng(0).random(e.n)
    iterations = {}
    for label, B in (("constants", None), ("rigid", e.near_nullspace)):
        residuals: list[float] = []
        x = pyamg.smoothed_aggregation_solver(e.A, B=B).solve(b, tol=1e-8, accel="cg",
                                                              residuals=residuals, maxiter=500)
        assert np.linalg.norm(b - e.A @ x) <= 1e-7 * np.linalg.norm(b)
        iterations[label] = len(residuals)
    assert iterations["rigid"] * 2 < iterations["constants"], iterations
