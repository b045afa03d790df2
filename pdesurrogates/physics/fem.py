"""Linear (P1) finite elements on triangle meshes of the unit square, assembled without loops.

``-div(c grad u) = f`` with ``c`` constant on each triangle and Dirichlet values on the boundary
of the square. The stiffness matrix is ``K_ij = sum_T c_T |T| grad phi_i . grad phi_j`` and the
consistent mass matrix ``M_ij = sum_T |T| (1 + delta_ij) / 12``; both are assembled for all
triangles at once (one COO triple per local entry, duplicates summed by SciPy), so a mesh of a
million nodes assembles in seconds. Unknowns are the mesh nodes in the order of
``mesh.points``; :func:`dirichlet_system` keeps the interior ones.

>>> mesh = structured_mesh(4)                    # 5 x 5 nodes, each square cut in two
>>> K = stiffness_matrix(mesh)
>>> A, b, interior = dirichlet_system(mesh, K, np.zeros(mesh.n_nodes))
>>> A.shape, float(A[0, 0])                      # the 5-point Laplacian times h^2
((9, 9), 4.0)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.spatial import Delaunay


@dataclass(frozen=True)
class TriangleMesh:
    """A triangle mesh of the unit square.

    Attributes
    ----------
    points : np.ndarray
        ``(N, 2)`` node coordinates.
    triangles : np.ndarray
        ``(T, 3)`` node indices, counter-clockwise (positive area).
    boundary : np.ndarray
        ``(N,)`` bool, nodes on the boundary of the square.
    """

    points: np.ndarray
    triangles: np.ndarray
    boundary: np.ndarray

    def __post_init__(self) -> None:
        p, t = np.asarray(self.points, dtype=np.float64), np.asarray(self.triangles)
        if p.ndim != 2 or p.shape[1] != 2:
            raise ValueError(f"TriangleMesh: points must be (N, 2), got {p.shape}")
        if t.ndim != 2 or t.shape[1] != 3 or not np.issubdtype(t.dtype, np.integer):
            raise ValueError(f"TriangleMesh: triangles must be an int array (T, 3), got {t.dtype} {t.shape}")
        if t.size and (t.min() < 0 or t.max() >= len(p)):
            raise ValueError(f"TriangleMesh: triangle indices must lie in [0, {len(p)}), got "
                             f"[{t.min()}, {t.max()}]")
        b = np.asarray(self.boundary, dtype=bool)
        if b.shape != (len(p),):
            raise ValueError(f"TriangleMesh: boundary must be ({len(p)},) bool, got {b.shape}")
        area = _signed_areas(p, t)
        if np.any(area <= 0):
            i = int(np.argmin(area))
            raise ValueError(f"TriangleMesh: triangle {i} has area {area[i]:.3g} <= 0 (orient "
                             "triangles counter-clockwise; no degenerate triangles)")
        object.__setattr__(self, "points", p)
        object.__setattr__(self, "triangles", t.astype(np.int64))
        object.__setattr__(self, "boundary", b)

    @property
    def n_nodes(self) -> int:
        return len(self.points)

    @property
    def areas(self) -> np.ndarray:
        """``(T,)`` triangle areas."""
        return _signed_areas(self.points, self.triangles)

    @property
    def centroids(self) -> np.ndarray:
        """``(T, 2)`` triangle centroids."""
        return self.points[self.triangles].mean(axis=1)

    @property
    def h(self) -> float:
        """Longest edge of the mesh."""
        p = self.points[self.triangles]
        edges = p - np.roll(p, 1, axis=1)
        return float(np.sqrt((edges**2).sum(-1)).max())


def _signed_areas(p: np.ndarray, t: np.ndarray) -> np.ndarray:
    a, b, c = p[t[:, 0]], p[t[:, 1]], p[t[:, 2]]
    return 0.5 * ((b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0]))


def _on_boundary(points: np.ndarray) -> np.ndarray:
    return np.any((points == 0.0) | (points == 1.0), axis=1)


def structured_mesh(n: int) -> TriangleMesh:
    """``(n + 1)^2`` nodes ``(i / n, j / n)`` (C order, ``x`` first), each square cut by its
    ``(i, j) - (i + 1, j + 1)`` diagonal."""
    if int(n) != n or n < 1:
        raise ValueError(f"structured_mesh: n must be a positive int, got {n!r}")
    n = int(n)
    x = np.arange(n + 1) / n
    points = np.stack(np.meshgrid(x, x, indexing="ij"), axis=-1).reshape(-1, 2)
    idx = np.arange((n + 1) ** 2).reshape(n + 1, n + 1)
    a, b = idx[:-1, :-1].ravel(), idx[1:, :-1].ravel()
    c, d = idx[1:, 1:].ravel(), idx[:-1, 1:].ravel()
    triangles = np.concatenate([np.stack([a, b, c], 1), np.stack([a, c, d], 1)])
    return TriangleMesh(points, triangles, _on_boundary(points))


def random_delaunay_mesh(n_interior: int, rng: np.random.Generator, *,
                         boundary_per_side: int | None = None) -> TriangleMesh:
    """Delaunay triangulation of ``n_interior`` uniform random points in the open unit square plus
    ``boundary_per_side`` equally spaced points on each side (corners included; default
    ``round(sqrt(n_interior)) + 2``, the spacing of the interior points).

    Uniform random points make a quasi-uniform but irregular mesh with some poorly shaped
    triangles, which is what makes its linear systems hard.
    """
    if int(n_interior) != n_interior or n_interior < 1:
        raise ValueError(f"random_delaunay_mesh: n_interior must be a positive int, got {n_interior!r}")
    m = round(math.sqrt(n_interior)) + 2 if boundary_per_side is None else int(boundary_per_side)
    if m < 2:
        raise ValueError(f"random_delaunay_mesh: boundary_per_side must be >= 2, got {m}")
    interior = rng.uniform(0.0, 1.0, size=(int(n_interior), 2))
    # keep interior points off the boundary and away from its points (no slivers of zero area)
    margin = 0.25 / (m - 1)
    interior = margin + (1.0 - 2.0 * margin) * interior
    s = np.linspace(0.0, 1.0, m)
    zeros, ones = np.zeros(m - 1), np.ones(m - 1)
    boundary = np.concatenate([
        np.stack([s[:-1], zeros], 1), np.stack([ones, s[:-1]], 1),
        np.stack([s[:0:-1], ones], 1), np.stack([zeros, s[:0:-1]], 1),
    ])
    points = np.concatenate([interior, boundary])
    triangles = Delaunay(points).simplices.astype(np.int64)
    area = _signed_areas(points, triangles)
    flip = area < 0
    triangles[flip] = triangles[flip][:, [0, 2, 1]]
    keep = np.abs(area) > 1e-14 * np.abs(area).max()  # Qhull may return flat boundary slivers
    on_boundary = np.zeros(len(points), dtype=bool)
    on_boundary[len(interior):] = True
    return TriangleMesh(points, triangles[keep], on_boundary)


def _gradients(mesh: TriangleMesh) -> tuple[np.ndarray, np.ndarray]:
    """Gradients ``(T, 3, 2)`` of the three barycentric functions of every triangle, and areas."""
    p = mesh.points[mesh.triangles]  # (T, 3, 2)
    area = mesh.areas
    # grad phi_i = rot90(p_{i+2} - p_{i+1}) / (2 |T|), rot90(x, y) = (-y, x) ... with the sign
    # that makes sum_i grad phi_i = 0 and grad phi_i . (p_i - p_j) = 1
    edge = np.roll(p, -2, axis=1) - np.roll(p, -1, axis=1)  # p_{i+2} - p_{i+1}
    grad = np.stack([-edge[..., 1], edge[..., 0]], axis=-1) / (2.0 * area[:, None, None])
    return grad, area


def _assemble(mesh: TriangleMesh, local: np.ndarray) -> sp.csr_matrix:
    t = mesh.triangles
    rows = np.repeat(t, 3, axis=1).ravel()
    cols = np.tile(t, (1, 3)).ravel()
    n = mesh.n_nodes
    return sp.coo_matrix((local.ravel(), (rows, cols)), shape=(n, n)).tocsr()


def stiffness_matrix(mesh: TriangleMesh, coefficient=None) -> sp.csr_matrix:
    """P1 stiffness ``K`` of ``-div(c grad u)``, ``c`` constant per triangle.

    Parameters
    ----------
    mesh : TriangleMesh
    coefficient : array ``(T,)``, optional
        Positive value per triangle; default 1.

    Returns
    -------
    scipy.sparse.csr_matrix
        ``(N, N)`` symmetric positive semidefinite (constants in its kernel).
    """
    grad, area = _gradients(mesh)
    c = np.ones(len(area)) if coefficient is None else np.asarray(coefficient, dtype=np.float64)
    if c.shape != area.shape:
        raise ValueError(f"stiffness_matrix: coefficient must have one value per triangle "
                         f"({len(area)},), got {c.shape}")
    if not np.all(np.isfinite(c)) or np.any(c <= 0):
        raise ValueError("stiffness_matrix: coefficient must be finite and positive")
    local = (c * area)[:, None, None] * np.einsum("tid,tjd->tij", grad, grad)
    return _assemble(mesh, local)


def mass_matrix(mesh: TriangleMesh) -> sp.csr_matrix:
    """Consistent P1 mass matrix ``(N, N)``: ``|T| / 12`` off the diagonal, ``|T| / 6`` on it."""
    area = mesh.areas
    local = area[:, None, None] * (np.ones((3, 3)) + np.eye(3)) / 12.0
    return _assemble(mesh, local)


def dirichlet_system(mesh: TriangleMesh, K: sp.spmatrix, rhs: np.ndarray,
                     boundary_values: np.ndarray | None = None):
    """Eliminate the boundary nodes of ``K u = rhs``: ``(A, b, interior)`` with ``A`` the
    interior block (SPD when ``K`` is a stiffness matrix and the boundary is not empty), ``b`` the
    interior right-hand side minus the boundary values' contribution and ``interior`` the node
    indices of the unknowns."""
    rhs = np.asarray(rhs, dtype=np.float64)
    if rhs.shape != (mesh.n_nodes,):
        raise ValueError(f"dirichlet_system: rhs must be ({mesh.n_nodes},), got {rhs.shape}")
    K = sp.csr_matrix(K)
    interior = np.flatnonzero(~mesh.boundary)
    A = K[interior][:, interior].tocsr()
    b = rhs[interior]
    if boundary_values is not None:
        g = np.asarray(boundary_values, dtype=np.float64)
        if g.shape != (mesh.n_nodes,):
            raise ValueError(f"dirichlet_system: boundary_values must be ({mesh.n_nodes},), got {g.shape}")
        g = np.where(mesh.boundary, g, 0.0)
        b = b - (K @ g)[interior]
    return A, b, interior
