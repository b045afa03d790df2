"""P1 finite elements: the 5-point identity on a structured mesh, energy of linear functions with a
jumping coefficient, second-order nodal convergence on random Delaunay meshes."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse.linalg as spla

from pdesurrogates.physics import fem
from pdesurrogates.physics.grid import Grid
from pdesurrogates.physics.operators import laplacian_matrix


def test_structured_mesh_gives_the_five_point_laplacian() -> None:
    """P1 on right triangles is the 5-point stencil (times h^2), a classical identity."""
    n = 9
    mesh = fem.structured_mesh(n)
    A, _, _ = fem.dirichlet_system(mesh, fem.stiffness_matrix(mesh), np.zeros(mesh.n_nodes))
    h = 1.0 / n
    L = laplacian_matrix(Grid((n + 1, n + 1))) * h**2
    assert abs(A - L).max() < 1e-12


def test_energy_of_linear_functions_with_a_jumping_coefficient() -> None:
    """u = p . x is exact in P1: u^T K u = sum_T c_T |T| |p|^2 and K 1 = 0."""
    rng = np.random.default_rng(3)
    mesh = fem.random_delaunay_mesh(300, rng)
    c = np.where(rng.random(len(mesh.triangles)) < 0.5, 1e4, 1.0)
    K = fem.stiffness_matrix(mesh, c)
    p = np.array([0.3, -1.7])
    u = mesh.points @ p
    assert np.isclose(u @ (K @ u), np.sum(c * mesh.areas) * (p @ p), rtol=1e-12)
    assert np.abs(K @ np.ones(mesh.n_nodes)).max() < 1e-9 * abs(K).max()
    # the mesh covers the square exactly, and the mass matrix integrates constants
    assert np.isclose(mesh.areas.sum(), 1.0, rtol=1e-12)
    assert np.isclose(fem.mass_matrix(mesh).sum(), 1.0, rtol=1e-12)


def test_poisson_on_random_meshes_converges_at_second_order() -> None:
    """-Laplace u = 2 pi^2 u, u = sin(pi x) sin(pi y): nodal L2 error ~ h^2, h = N^(-1/2)."""
    rng = np.random.default_rng(0)
    hs, errors = [], []
    for n in (500, 2000, 8000, 32000):
        mesh = fem.random_delaunay_mesh(n, rng)
        x, y = mesh.points.T
        exact = np.sin(np.pi * x) * np.sin(np.pi * y)
        M = fem.mass_matrix(mesh)
        A, b, interior = fem.dirichlet_system(mesh, fem.stiffness_matrix(mesh), M @ (2 * np.pi**2 * exact))
        u = spla.spsolve(A.tocsc(), b)
        weights = np.asarray(M.sum(axis=1)).ravel()[interior]  # lumped mass: discrete L2 at nodes
        errors.append(np.sqrt(np.sum(weights * (u - exact[interior]) ** 2)))
        hs.append(1.0 / np.sqrt(n))
    slope = np.polyfit(np.log(hs), np.log(errors), 1)[0]
    assert abs(slope - 2.0) < 0.2, (slope, errors)


def test_bad_meshes_and_coefficients_are_refused() -> None:
    mesh = fem.structured_mesh(2)
    with pytest.raises(ValueError, match="area"):
        fem.TriangleMesh(mesh.points, mesh.triangles[:, [0, 2, 1]], mesh.boundary)
    with pytest.raises(ValueError, match="one value per triangle"):
        fem.stiffness_matrix(mesh, np.ones(3))
    with pytest.raises(ValueError, match="positive"):
        fem.stiffness_matrix(mesh, -np.ones(len(mesh.triangles)))
    with pytest.raises(ValueError, match="n_interior"):
        fem.random_delaunay_mesh(0, np.random.default_rng(0))
