"""Steady Darcy flow ``-div(a grad u) = f`` on the unit square, ``u = 0`` on the boundary.

The setting of the FNO Darcy benchmark (Li et al., ICLR 2021): the coefficient ``a`` is a
Gaussian random field with covariance ``(-Laplace + tau^2 I)^(-alpha)`` (Neumann Laplacian,
``tau = 3``, ``alpha = 2``) mapped to two values, ``high`` where the field is ``>= 0`` and ``low``
where it is negative (paper: 12 and 3), or a log-normal ``a = exp(field)``; ``f = 1``. The solution
uses the finite-volume 5-point operator of :func:`~pdesurrogates.physics.operators.diffusion_matrix`
(harmonic face averages of ``a``) on the node grid ``h = 1 / (s - 1)``, so a 421-node solution
subsampled by 2, 3, 4, 5 gives the 211, 141, 106, 85-node views of the paper.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch

from pdesurrogates.physics.grid import Grid
from pdesurrogates.physics.operators import diffusion_matrix
from pdesurrogates.physics.random import gaussian_random_field

COEFFICIENT_KINDS = ("threshold", "lognormal")
SOLVERS = ("direct", "amg", "cg")
CPU_SOLVERS = ("direct", "amg")  # SciPy / pyamg: CPU only; "cg" runs batched on any device
CG_RTOL = 1e-10  # relative residual of the batched solver ("cg")


def sample_coefficient(
    resolution: int,
    generator: torch.Generator,
    *,
    kind: str = "threshold",
    alpha: float = 2.0,
    tau: float = 3.0,
    sigma: float | None = None,
    high: float = 12.0,
    low: float = 3.0,
) -> np.ndarray:
    """Draw one Darcy coefficient on the ``resolution x resolution`` node grid.

    Parameters
    ----------
    resolution : int
        Nodes per side (boundary included).
    generator : torch.Generator
        Source of randomness (e.g. :func:`~pdesurrogates.physics.random.sample_generator`).
    kind : {"threshold", "lognormal"}
        ``"threshold"``: ``high`` where the Neumann GRF is ``>= 0``, else ``low``.
        ``"lognormal"``: ``exp(field)``.
    alpha, tau, sigma : float
        GRF parameters (see :func:`~pdesurrogates.physics.random.gaussian_random_field`).
    high, low : float
        The two values of the thresholded coefficient (> 0).

    Returns
    -------
    np.ndarray
        ``(resolution, resolution)`` float64, positive.
    """
    if kind not in COEFFICIENT_KINDS:
        raise ValueError(f"unknown coefficient kind {kind!r}; valid: {', '.join(COEFFICIENT_KINDS)}")
    field = gaussian_random_field((resolution, resolution), alpha, tau, sigma, boundary="neumann",
                                  generator=generator, device="cpu").numpy()
    if kind == "threshold":
        return np.where(field >= 0.0, float(high), float(low))
    return np.exp(field)


def darcy_system(a, forcing=1.0):
    """Matrix and right-hand side of the Darcy problem on the node grid of ``a``.

    Parameters
    ----------
    a : array ``(s, s)``
        Positive coefficient at every node.
    forcing : float or array ``(s, s)``
        ``f`` at the nodes.

    Returns
    -------
    A : scipy.sparse.csr_matrix
        ``((s-2)^2, (s-2)^2)`` SPD.
    b : np.ndarray
        ``((s-2)^2,)``.
    """
    a = np.asarray(a, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"Darcy coefficient must be 2D (s, s), got shape {a.shape}")
    grid = Grid(a.shape)
    A = diffusion_matrix(a, grid)
    f = np.broadcast_to(np.asarray(forcing, dtype=np.float64), a.shape)
    return A, np.ascontiguousarray(f[1:-1, 1:-1]).ravel()


def solve_darcy(a, forcing=1.0, *, solver: str = "direct", rtol: float = 1e-10) -> np.ndarray:
    """Solve ``-div(a grad u) = f``, ``u = 0`` on the boundary, on the node grid of ``a``.

    Parameters
    ----------
    a : array ``(s, s)``
        Positive coefficient at the nodes.
    forcing : float or array ``(s, s)``
    solver : {"direct", "amg", "cg"}
        SciPy's sparse LU (SuperLU ``spsolve``, minimum-degree ordering of ``A^T + A``), pyamg
        smoothed aggregation (CG-accelerated) to ``rtol``, or :func:`solve_darcy_batch` (Jacobi-PCG,
        batched and device-agnostic) to ``rtol``.

    Returns
    -------
    np.ndarray
        ``u`` ``(s, s)`` float64 including the zero boundary.

    >>> u = solve_darcy(np.ones((33, 33)))
    >>> abs(float(u.max()) - 0.07367) < 2e-4  # -Laplace u = 1 on the unit square: max u = 0.07367
    True
    """
    if solver not in SOLVERS:
        raise ValueError(f"unknown solver {solver!r}; valid: {', '.join(SOLVERS)}")
    if solver == "cg":
        coefficient = torch.as_tensor(np.asarray(a, dtype=np.float64))[None]
        f = torch.as_tensor(np.asarray(forcing, dtype=np.float64))
        return solve_darcy_batch(coefficient, f, rtol=rtol)[0].numpy()
    A, b = darcy_system(a, forcing)
    if solver == "direct":
        # A is symmetric, so its CSR arrays are also its CSC arrays (no conversion); minimum degree
        # on A^T + A gives far less fill than the default COLAMD ordering
        csc = sp.csc_matrix((A.data, A.indices, A.indptr), shape=A.shape)
        x = spla.spsolve(csc, b, permc_spec="MMD_AT_PLUS_A")
    else:
        import pyamg

        ml = pyamg.smoothed_aggregation_solver(A)
        x = ml.solve(b, tol=rtol, accel="cg", maxiter=500)
    s = np.asarray(a).shape
    u = np.zeros(s)
    u[1:-1, 1:-1] = x.reshape(s[0] - 2, s[1] - 2)
    return u


def solve_darcy_batch(a: torch.Tensor, forcing=1.0, *, rtol: float = CG_RTOL,
                      maxiter: int | None = None) -> torch.Tensor:
    """Solve a batch of Darcy problems at once on the device of ``a``.

    Jacobi-preconditioned conjugate gradients (:func:`pdesurrogates.linalg.pcg`) on the matrix-free
    :class:`~pdesurrogates.linalg.operators.StencilOperator` of the batch of coefficients, the same
    finite-volume stencil as :func:`solve_darcy`'s matrix, so the two agree to the solver
    tolerance. Every system
    of the batch has its own coefficient; converged systems stop changing while the others
    iterate.

    Parameters
    ----------
    a : torch.Tensor
        ``(B, s, s)`` positive coefficients at the nodes (float64 recommended), any device.
    forcing : float or torch.Tensor
        ``f``: a constant, or nodal values broadcastable to ``(B, s, s)``.
    rtol : float
        Relative residual ``||f - A u|| / ||f||`` to reach (default ``1e-10``).
    maxiter : int, optional
        Default ``10 (s - 2)^2``.

    Returns
    -------
    torch.Tensor
        ``(B, s, s)`` solutions including the zero boundary, dtype and device of ``a``.

    Raises
    ------
    RuntimeError
        When a system does not reach ``rtol`` (naming it and its residual).

    >>> u = solve_darcy_batch(torch.ones(2, 33, 33, dtype=torch.float64))
    >>> abs(float(u.max()) - 0.07367) < 2e-4
    True
    """
    # linalg is imported here only: the batched Krylov solver and the matrix-free form of the
    # shared finite-volume stencil live in the linear-algebra layer
    from pdesurrogates.linalg.krylov import pcg
    from pdesurrogates.linalg.operators import StencilOperator

    if not isinstance(a, torch.Tensor) or a.ndim != 3 or a.shape[-1] != a.shape[-2]:
        raise ValueError(f"solve_darcy_batch: a must be a torch tensor (B, s, s), got "
                         f"{type(a).__name__} {tuple(getattr(a, 'shape', ()))}")
    batch, s = a.shape[0], a.shape[-1]
    m = s - 2
    op = StencilOperator(a, Grid((s, s)))  # checks a is finite and positive
    inverse_diagonal = 1.0 / op.diagonal()
    f = torch.as_tensor(forcing, dtype=a.dtype, device=a.device)
    try:
        f = torch.broadcast_to(f, a.shape)
    except RuntimeError:
        raise ValueError(f"solve_darcy_batch: forcing of shape {tuple(f.shape)} does not broadcast "
                         f"to the coefficients' {tuple(a.shape)}") from None
    b = f[:, 1:-1, 1:-1].reshape(batch, m * m).contiguous()
    result = pcg(op, b, rtol=rtol, maxiter=maxiter, M=lambda R: R * inverse_diagonal)
    converged = torch.as_tensor(result.converged, device="cpu").reshape(-1)
    if not bool(converged.all()):
        i = int(torch.nonzero(~converged)[0])
        residual = torch.as_tensor(result.info["true_residual"]).reshape(-1)[i]
        raise RuntimeError(f"solve_darcy_batch: system {i} of {batch} did not reach rtol={rtol} "
                           f"(relative residual {float(residual):.3g} after {result.iterations} "
                           "iterations)")
    u = torch.zeros_like(a)
    u[:, 1:-1, 1:-1] = result.x.reshape(batch, m, m)
    return u


def downsample(u: np.ndarray, stride: int) -> np.ndarray:
    """Every ``stride``-th node of the last two axes; needs ``(s - 1) % stride == 0``.

    ``421 -> 211, 141, 106, 85`` for strides ``2, 3, 4, 5``.
    """
    s = u.shape[-1]
    if stride < 1 or (s - 1) % stride or (u.shape[-2] - 1) % stride:
        raise ValueError(f"stride {stride} does not divide the grid {u.shape[-2:]} (need (s-1) % stride == 0)")
    return u[..., ::stride, ::stride]
