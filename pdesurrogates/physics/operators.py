"""Finite-volume diffusion operators, shared by the generators, the linear-algebra gallery
and the physics-informed losses.

The operator is ``L(a) u = -div(a grad u)`` discretised with the standard 5-point (2D),
3-point (1D) or 7-point (3D) finite-volume stencil on a node-based :class:`Grid` with
homogeneous-or-given Dirichlet boundary values. The coefficient ``a`` is given at the nodes and
averaged harmonically onto the cell faces::

    a_{k+1/2} = 2 a_k a_{k+1} / (a_k + a_{k+1})
    (L u)_k   = -( a_{k+1/2} (u_{k+1} - u_k) - a_{k-1/2} (u_k - u_{k-1}) ) / h^2   (summed over axes)

:func:`diffusion_matrix` assembles exactly the same operator as a SciPy CSR matrix on the
interior unknowns (C order), so a reference solution from a sparse solve has a
:func:`apply_diffusion` residual of zero up to round-off.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp
import torch

from pdesurrogates.physics.grid import Grid


def harmonic_face_average(a, axis: int):
    """Harmonic mean of neighbouring node values along ``axis`` (numpy or torch)."""
    n = a.shape[axis]
    lo = _take(a, 0, n - 1, axis)
    hi = _take(a, 1, n, axis)
    return 2.0 * lo * hi / (lo + hi)


def _take(x, start: int, stop: int, axis: int):
    index = [slice(None)] * x.ndim
    index[axis] = slice(start, stop)
    return x[tuple(index)]


def _check_coefficient(a: np.ndarray, grid: Grid, name: str = "a") -> None:
    if tuple(a.shape) != grid.shape:
        raise ValueError(f"coefficient {name!r} has shape {tuple(a.shape)}, grid needs {grid.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"coefficient {name!r} contains NaN or Inf")
    if np.any(a <= 0):
        raise ValueError(f"coefficient {name!r} must be positive everywhere (min {a.min():.3g})")


def diffusion_matrix(a, grid: Grid) -> sp.csr_matrix:
    """SciPy CSR matrix of ``-div(a grad .)`` on the interior nodes of a Dirichlet ``grid``.

    Args:
        a: positive coefficient at every node, shape ``grid.shape`` (boundary nodes included).
        grid: a Dirichlet grid.

    Returns:
        SPD matrix of size ``prod(grid.interior_shape)``, unknowns in C order.

    >>> A = diffusion_matrix(np.ones((5, 5)), Grid((5, 5)))
    >>> A.shape, float(A[0, 0])
    ((9, 9), 64.0)
    """
    if grid.boundary != "dirichlet":
        raise ValueError(f"diffusion_matrix needs a Dirichlet grid, got {grid.boundary!r}")
    a = np.asarray(a, dtype=np.float64)
    _check_coefficient(a, grid)
    m = grid.interior_shape
    size = math.prod(m)
    index = np.arange(size).reshape(m)
    diag = np.zeros(m)
    rows, cols, vals = [], [], []
    interior = tuple(slice(1, -1) for _ in range(grid.ndim))
    for axis, h in enumerate(grid.spacing):
        face = harmonic_face_average(a, axis)
        cut = list(interior)
        cut[axis] = slice(None)
        face = face[tuple(cut)] / h**2  # n-1 faces along axis, interior across
        n_faces = face.shape[axis]
        west = _take(face, 0, n_faces - 1, axis)
        east = _take(face, 1, n_faces, axis)
        diag += west + east
        couple = _take(east, 0, m[axis] - 1, axis).ravel()
        i = _take(index, 0, m[axis] - 1, axis).ravel()
        j = _take(index, 1, m[axis], axis).ravel()
        rows += [i, j]
        cols += [j, i]
        vals += [-couple, -couple]
    rows.append(index.ravel())
    cols.append(index.ravel())
    vals.append(diag.ravel())
    A = sp.coo_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(size, size)
    )
    return A.tocsr()


def laplacian_matrix(grid: Grid) -> sp.csr_matrix:
    """``-Laplace`` on the interior of a Dirichlet grid (``diffusion_matrix`` with ``a = 1``)."""
    return diffusion_matrix(np.ones(grid.shape), grid)


def apply_diffusion(a: torch.Tensor, u: torch.Tensor, grid: Grid) -> torch.Tensor:
    """Matrix-free ``-div(a grad u)`` at the interior nodes, batched and differentiable.

    Args:
        a: coefficient ``(..., *grid.shape)``, positive.
        u: field ``(..., *grid.shape)`` including its boundary values.
        grid: a Dirichlet grid.

    Returns:
        ``(..., *grid.interior_shape)``.
    """
    nd = grid.ndim
    if tuple(u.shape[-nd:]) != grid.shape or tuple(a.shape[-nd:]) != grid.shape:
        raise ValueError(
            f"apply_diffusion: a {tuple(a.shape)} and u {tuple(u.shape)} must end in {grid.shape}"
        )
    out = 0.0
    for d, h in enumerate(grid.spacing):
        axis = u.ndim - nd + d
        face = harmonic_face_average(a, a.ndim - nd + d)
        n = u.shape[axis]
        grad = (_take(u, 1, n, axis) - _take(u, 0, n - 1, axis)) / h
        flux = face * grad
        div = (_take(flux, 1, n - 1, axis) - _take(flux, 0, n - 2, axis)) / h
        index = [slice(None)] * div.ndim
        for e in range(nd):
            if e != d:
                index[div.ndim - nd + e] = slice(1, -1)
        out = out - div[tuple(index)]
    return out


def diffusion_diagonal(a: torch.Tensor, grid: Grid) -> torch.Tensor:
    """Diagonal of :func:`apply_diffusion`'s operator at the interior nodes.

    Args:
        a: coefficient ``(..., *grid.shape)``, positive.
        grid: a Dirichlet grid.

    Returns:
        ``(..., *grid.interior_shape)``, equal to ``diffusion_matrix(a, grid).diagonal()``.
    """
    nd = grid.ndim
    diag = 0.0
    for d, h in enumerate(grid.spacing):
        axis = a.ndim - nd + d
        face = harmonic_face_average(a, axis)
        n = face.shape[axis]
        index = [slice(None)] * a.ndim
        for e in range(nd):
            index[a.ndim - nd + e] = slice(1, -1)
        west_idx, east_idx = list(index), list(index)
        west_idx[axis] = slice(0, n - 1)
        east_idx[axis] = slice(1, n)
        diag = diag + (face[tuple(west_idx)] + face[tuple(east_idx)]) / h**2
    return diag


def pad_dirichlet(u_interior: torch.Tensor, ndim: int, value: float = 0.0) -> torch.Tensor:
    """Surround the last ``ndim`` axes of ``u_interior`` with a layer of boundary ``value``."""
    pad = (1, 1) * ndim
    return torch.nn.functional.pad(u_interior, pad, mode="constant", value=value)
