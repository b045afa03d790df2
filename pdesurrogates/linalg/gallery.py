"""Test matrices: Poisson in 1D/2D/3D, variable-coefficient diffusion, shifted Laplacians, random SPD.

Every constructor returns a float64 torch sparse CSR tensor by default; ``format`` picks another:

* ``"torch"``: torch sparse CSR (``device`` honoured),
* ``"dense"``: torch dense tensor,
* ``"scipy"``: SciPy CSR matrix,
* ``"numpy"``: numpy array.

The finite-volume operators come from :mod:`pdesurrogates.physics.operators` (the single
source of the discretisation); this module only wraps them.

>>> A = poisson2d(3, format="scipy")
>>> A.shape, float(A[0, 0])
((9, 9), 64.0)
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp
import torch

from pdesurrogates.linalg.operators import _scipy_to_torch_csr
from pdesurrogates.physics.grid import Grid
from pdesurrogates.physics.operators import diffusion_matrix, laplacian_matrix

__all__ = [
    "FORMATS",
    "diffusion",
    "poisson",
    "poisson1d",
    "poisson2d",
    "poisson3d",
    "poisson_eigenvalues",
    "random_spd",
    "shifted_laplacian",
]

FORMATS = ("torch", "dense", "scipy", "numpy")


def _convert(A: sp.csr_matrix, format: str, device=None, dtype=torch.float64):
    if format not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}; got {format!r}")
    A = sp.csr_matrix(A, dtype=np.float64)
    if format == "scipy":
        return A
    if format == "numpy":
        return A.toarray()
    if format == "dense":
        return torch.from_numpy(A.toarray()).to(dtype=dtype, device=device)
    return _scipy_to_torch_csr(A, dtype, device)


def _check_n(n, name="n") -> int:
    if int(n) != n or n < 1:
        raise ValueError(f"{name} must be a positive integer, got {n!r}")
    return int(n)


def poisson(n: int, ndim: int, *, scaled: bool = True, format: str = "torch", device=None):
    """Negative Laplacian on ``n`` interior nodes per dimension of the unit cube (Dirichlet).

    Parameters
    ----------
    n : int
        Interior nodes per dimension; the matrix is ``n**ndim`` square, ``h = 1 / (n + 1)``.
    ndim : int
        1, 2 or 3 (3-, 5- or 7-point stencil).
    scaled : bool
        ``True``: divided by ``h**2`` (diagonal ``2 ndim / h**2``); ``False``: the integer stencil
        (diagonal ``2 ndim``, off-diagonals ``-1``), as MATLAB's ``gallery('poisson', n)``.
    """
    n = _check_n(n)
    if ndim not in (1, 2, 3):
        raise ValueError(f"ndim must be 1, 2 or 3, got {ndim!r}")
    A = laplacian_matrix(Grid((n + 2,) * ndim))
    if not scaled:
        A = A * (1.0 / (n + 1)) ** 2
        A.data = np.round(A.data, 12)
    return _convert(A, format, device)


def poisson1d(n: int, **kwargs):
    """1D Poisson matrix ``(n, n)``: tridiagonal ``(-1, 2, -1) / h**2``. See :func:`poisson`."""
    return poisson(n, 1, **kwargs)


def poisson2d(n: int, **kwargs):
    """2D 5-point Poisson matrix ``(n**2, n**2)``. See :func:`poisson`."""
    return poisson(n, 2, **kwargs)


def poisson3d(n: int, **kwargs):
    """3D 7-point Poisson matrix ``(n**3, n**3)``. See :func:`poisson`."""
    return poisson(n, 3, **kwargs)


def poisson_eigenvalues(n: int, ndim: int, *, scaled: bool = True) -> np.ndarray:
    """Exact eigenvalues of :func:`poisson` (ascending), from the 1D ones
    ``4/h**2 sin**2(k pi h / 2)``, ``k = 1..n``, summed over the dimensions.

    >>> lam = poisson_eigenvalues(4, 1, scaled=False)
    >>> bool(np.allclose(lam, np.linalg.eigvalsh(poisson1d(4, scaled=False, format="numpy"))))
    True
    """
    n = _check_n(n)
    h = 1.0 / (n + 1)
    k = np.arange(1, n + 1)
    lam1 = 4.0 * np.sin(k * math.pi * h / 2) ** 2
    if scaled:
        lam1 = lam1 / h**2
    lam = lam1
    for _ in range(ndim - 1):
        lam = np.add.outer(lam, lam1).ravel()
    return np.sort(lam)


def diffusion(a, grid: Grid | None = None, *, format: str = "torch", device=None):
    """``-div(a grad .)`` with harmonic face averages (``physics.operators.diffusion_matrix``).

    Parameters
    ----------
    a : array ``grid.shape``
        Positive node coefficient, boundary nodes included.
    grid : Grid, optional
        Dirichlet grid; default ``Grid(a.shape)`` on the unit cube.
    """
    a = a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a, float)
    grid = Grid(a.shape) if grid is None else grid
    return _convert(diffusion_matrix(a, grid), format, device)


def shifted_laplacian(
    n: int, shift: float, *, ndim: int = 2, scaled: bool = False, format: str = "torch",
    device=None,
):
    """``A + shift * I`` with ``A`` the Poisson matrix (integer stencil by default).

    This is the synthetic sequence of "Learning to Relax" (Khodak et al., ICLR 2024): the
    5-point Laplacian on a 10 x 10 interior grid, shifted by ``c`` drawn from
    ``-0.15 + 0.6 Beta(0.5, 1.5)``. A shift at or below ``-lambda_min(A)`` would make the matrix
    indefinite and is refused.

    >>> A = shifted_laplacian(10, -0.15, format="numpy")
    >>> bool(np.linalg.eigvalsh(A).min() > 0)
    True
    """
    lam_min = poisson_eigenvalues(n, ndim, scaled=scaled)[0]
    shift = float(shift)
    if not math.isfinite(shift) or shift <= -lam_min:
        raise ValueError(
            f"shift must be finite and > -lambda_min = {-lam_min:.6g} so that A + shift I is SPD; "
            f"got {shift}"
        )
    A = poisson(n, ndim, scaled=scaled, format="scipy")
    A = (A + shift * sp.identity(A.shape[0], format="csr")).tocsr()
    return _convert(A, format, device)


def random_spd(
    n: int, *, condition: float = 100.0, seed: int = 0, format: str = "dense", device=None
):
    """Dense random SPD matrix ``Q diag(lambda) Q^T`` with eigenvalues log-spaced in
    ``[1, condition]`` and ``Q`` a Haar-random orthogonal matrix (``numpy`` generator ``seed``).

    The default format is ``"dense"`` (a torch dense tensor) since the matrix is full.

    >>> A = random_spd(20, condition=50.0, format="numpy")
    >>> bool(np.isclose(np.linalg.cond(A), 50.0))
    True
    """
    n = _check_n(n)
    if not condition >= 1.0:
        raise ValueError(f"condition must be >= 1, got {condition}")
    rng = np.random.default_rng(seed)
    Q, R = np.linalg.qr(rng.standard_normal((n, n)))
    Q = Q * np.sign(np.diag(R))
    lam = np.geomspace(1.0, condition, n)
    A = (Q * lam) @ Q.T
    A = 0.5 * (A + A.T)
    if format == "numpy":
        return A
    if format == "dense":
        return torch.from_numpy(A).to(device=device)
    return _convert(sp.csr_matrix(A), format, device)
