"""PDE residuals and physics-informed losses built on the discretizations of :mod:`pdesurrogates.physics`.

Every residual is a pure function of tensors and grid parameters (house habit 2): batched over
leading axes, differentiable, float32 or float64. The spatial operators are the ones the reference
solvers use, so the residual of a reference solution vanishes up to the solver's own error:

======================  ==========================================================  =====================
PDE                     residual                                                    space / time
======================  ==========================================================  =====================
Darcy                   ``-div(a grad u) - f`` at interior nodes                    finite volume
                        (:func:`pdesurrogates.physics.operators.apply_diffusion`)
Poisson (Dirichlet)     ``-div(a grad u) - f`` (``a = 1`` by default)               finite volume
Poisson (periodic)      ``-Laplace u - (f - mean f)``                               spectral
Burgers                 ``u_t + (u^2/2)_x - nu u_xx``                               spectral or FD / FD
Navier--Stokes          ``w_t + v . grad w - nu Laplace w - f`` (vorticity)         spectral / FD
Heat                    Crank--Nicolson step residual of ``u_t = c(t) Laplace u + f``  FV / CN
======================  ==========================================================  =====================

Time derivatives over a predicted trajectory use finite-difference differentiation matrices of
order 2 or 4 on the uniformly spaced snapshots (:func:`time_derivative_matrix`); the output times of a
dataset are far coarser than the solver's internal step, so for time-dependent problems the
residual of a reference trajectory is ``O(dt^p)`` in the snapshot spacing ``dt`` (the tests fit the
order), while the spatial part is at spectral accuracy. Spectral differentiation in time is not
offered: the trajectories are not periodic in time.

The loss classes (:class:`DarcyLoss`, ...) turn a residual into a scalar *relative* residual norm,
``||r|| / ||s||`` per sample with a scale ``s`` computed from the inputs only (the forcing, or the
spatial operator applied to the initial condition), so the loss cannot be lowered by inflating the
prediction. They are callables ``loss(pred, inputs) -> scalar`` and are listed in
:data:`PHYSICS_LOSSES` for configuration files.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from pdesurrogates.physics import spectral
from pdesurrogates.physics.grid import Grid
from pdesurrogates.physics.heat import KhodakDiffusivity, MovingBump
from pdesurrogates.physics.navier_stokes import fno_forcing, velocity_from_vorticity
from pdesurrogates.physics.operators import apply_diffusion


# ----------------------------------------------------------------------------------------- helpers
def _check_finite(x: torch.Tensor, name: str, where: str) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{where}: {name} must be a torch.Tensor, got {type(x).__name__}")
    if not torch.isfinite(x).all():
        raise ValueError(f"{where}: {name} contains NaN or Inf")


def _as_field(x: torch.Tensor, ndim: int, name: str, where: str) -> torch.Tensor:
    """Accept ``(B, 1, *spatial)`` or ``(B, *spatial)``; return ``(B, *spatial)``."""
    if x.ndim == ndim + 2:
        if x.shape[1] != 1:
            raise ValueError(f"{where}: {name} {tuple(x.shape)} must have a single channel")
        return x[:, 0]
    if x.ndim == ndim + 1:
        return x
    raise ValueError(f"{where}: {name} must be (B, 1, *spatial) or (B, *spatial) with {ndim} spatial "
                     f"axes, got {tuple(x.shape)}")


def _forcing_interior(f, u: torch.Tensor, grid: Grid) -> torch.Tensor | float:
    """A scalar forcing stays a scalar; a field ``(..., *grid.shape)`` is cut to the interior."""
    if isinstance(f, (int, float)):
        return float(f)
    nd = grid.ndim
    if tuple(f.shape[-nd:]) != grid.shape:
        raise ValueError(f"forcing {tuple(f.shape)} must end in the grid shape {grid.shape}")
    return f[(Ellipsis,) + tuple(slice(1, -1) for _ in range(nd))]


def _unit_dirichlet_grid(shape: Sequence[int], length) -> Grid:
    return Grid(tuple(int(n) for n in shape), length=length, boundary="dirichlet")


def relative_norm(r: torch.Tensor, scale: torch.Tensor | float, batch_dims: int = 1,
                  eps: float = 1e-30) -> torch.Tensor:
    """Mean over the batch of ``||r_b|| / ||scale_b||`` (RMS norms; ``scale`` a tensor or a number)."""
    dims = tuple(range(batch_dims, r.ndim))
    num = r.pow(2).mean(dim=dims).sqrt()
    if isinstance(scale, (int, float)):
        den = abs(float(scale))
    else:
        den = scale.pow(2).mean(dim=tuple(range(batch_dims, scale.ndim))).sqrt()
    return (num / (den + eps)).mean()


# ------------------------------------------------------------- a fast Dirichlet Laplacian inverse
def dst1(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Type-I discrete sine transform ``X_k = sum_j x_j sin(pi (j+1)(k+1) / (m+1))`` along ``dim``.

    Computed with an FFT of the odd extension, so it is batched and differentiable. Applying it
    twice multiplies by ``(m + 1) / 2``.
    """
    x = torch.movedim(x, dim, -1)
    m = x.shape[-1]
    zero = torch.zeros(x.shape[:-1] + (1,), dtype=x.dtype, device=x.device)
    ext = torch.cat([zero, x, zero, -torch.flip(x, (-1,))], dim=-1)
    out = -0.5 * torch.fft.fft(ext, dim=-1).imag[..., 1:m + 1]
    return torch.movedim(out, -1, dim)


def inverse_dirichlet_laplacian(r: torch.Tensor, grid: Grid) -> torch.Tensor:
    """Solve ``L_h v = r`` at the interior nodes, ``L_h`` the FV ``-Laplace`` with ``v = 0`` on the boundary.

    ``L_h`` is :func:`~pdesurrogates.physics.operators.laplacian_matrix` (``apply_diffusion`` with
    ``a = 1``); it is diagonalised by the sine transform, eigenvalues
    ``sum_d (2 - 2 cos(pi k_d / (m_d + 1))) / h_d^2``.

    Parameters
    ----------
    r : Tensor ``(..., *grid.interior_shape)``
    grid : Grid (Dirichlet)
    """
    nd = grid.ndim
    m = grid.interior_shape
    if tuple(r.shape[-nd:]) != m:
        raise ValueError(f"inverse_dirichlet_laplacian: r {tuple(r.shape)} must end in {m}")
    lam = 0.0
    for d, (n_d, h) in enumerate(zip(m, grid.spacing)):
        k = torch.arange(1, n_d + 1, dtype=r.dtype, device=r.device)
        ev = (2.0 - 2.0 * torch.cos(math.pi * k / (n_d + 1))) / h**2
        lam = lam + ev.reshape((n_d,) + (1,) * (nd - d - 1))
    v = r
    for d in range(nd):
        v = dst1(v, dim=r.ndim - nd + d)
    v = v / lam
    for d in range(nd):
        v = dst1(v, dim=r.ndim - nd + d) * (2.0 / (m[d] + 1))
    return v


# --------------------------------------------------------------------------- elliptic (Darcy, Poisson)
def darcy_residual(a: torch.Tensor, u: torch.Tensor, grid: Grid | None = None,
                   forcing: float | torch.Tensor = 1.0) -> torch.Tensor:
    """Finite-volume residual ``-div(a grad u) - f`` of Darcy flow at the interior nodes.

    The stencil is :func:`~pdesurrogates.physics.operators.apply_diffusion`, the operator whose
    matrix (:func:`~pdesurrogates.physics.operators.diffusion_matrix`) the Darcy generator solves, so
    a reference solution has a residual at round-off level. Boundary values are taken from ``u``
    (impose ``u = 0`` with :class:`~pdesurrogates.losses.boundary.ZeroDirichletOutput` or add
    :func:`~pdesurrogates.losses.boundary.dirichlet_boundary_loss`).

    Parameters
    ----------
    a : Tensor ``(B, 1, *spatial)`` or ``(B, *spatial)``
        Positive coefficient at every node.
    u : Tensor, same shape as ``a``
        Pressure at every node, boundary included.
    grid : Grid, optional
        Dirichlet grid of the spatial shape; default the node-based unit square/cube.
    forcing : float or Tensor ``(..., *spatial)``
        Right-hand side ``f`` (default 1, the FNO-paper setting).

    Returns
    -------
    Tensor ``(B, *interior)``
    """
    where = "darcy_residual"
    nd = (grid.ndim if grid is not None else u.ndim - 2 if u.ndim >= 4 else u.ndim - 1)
    a = _as_field(a, nd, "a", where)
    u = _as_field(u, nd, "u", where)
    if a.shape != u.shape:
        raise ValueError(f"{where}: a {tuple(a.shape)} and u {tuple(u.shape)} differ")
    grid = grid or _unit_dirichlet_grid(u.shape[1:], 1.0)
    return apply_diffusion(a, u, grid) - _forcing_interior(forcing, u, grid)


def poisson_residual(u: torch.Tensor, f: torch.Tensor | float, grid: Grid | None = None,
                     a: torch.Tensor | None = None) -> torch.Tensor:
    """Finite-volume residual ``-div(a grad u) - f`` (``a = 1``: ``-Laplace u - f``) on a Dirichlet grid.

    Parameters
    ----------
    u : Tensor ``(B, 1, *spatial)`` or ``(B, *spatial)``, boundary values included.
    f : float or Tensor ``(..., *spatial)`` (interior nodes used).
    grid : Grid, optional (node-based unit box).
    a : Tensor like ``u``, optional coefficient.

    Returns
    -------
    Tensor ``(B, *interior)``
    """
    nd = grid.ndim if grid is not None else (u.ndim - 2 if u.ndim >= 4 else u.ndim - 1)
    u = _as_field(u, nd, "u", "poisson_residual")
    grid = grid or _unit_dirichlet_grid(u.shape[1:], 1.0)
    if a is None:
        a = torch.ones(grid.shape, dtype=u.dtype, device=u.device)
    else:
        a = _as_field(a, nd, "a", "poisson_residual") if a.ndim > nd else a
    if isinstance(f, torch.Tensor) and f.ndim == nd + 2:
        f = f[:, 0]
    return apply_diffusion(a, u, grid) - _forcing_interior(f, u, grid)


def poisson_residual_neumann(u: torch.Tensor, f: torch.Tensor, grid: Grid) -> torch.Tensor:
    """Residual ``K u / M - f`` of ``-Laplace u = f`` with ``du/dn = 0`` at every node of a Neumann grid.

    ``K`` and ``M`` are the vertex-centred finite-volume stiffness and control-volume fractions of
    :func:`pdesurrogates.physics.poisson.neumann_laplacian_matrix`, the operator the Poisson generator
    solves (applied here as a torch sparse matrix, so the residual is differentiable in ``u``).

    Parameters
    ----------
    u, f : Tensor ``(B, *grid.shape)``

    Returns
    -------
    Tensor ``(B, *grid.shape)``
    """
    from pdesurrogates.physics.poisson import neumann_laplacian_matrix

    if grid.boundary != "neumann":
        raise ValueError(f"poisson_residual_neumann needs a Neumann grid, got {grid.boundary!r}")
    nd = grid.ndim
    if tuple(u.shape[-nd:]) != grid.shape or tuple(f.shape[-nd:]) != grid.shape:
        raise ValueError(f"poisson_residual_neumann: u {tuple(u.shape)} and f {tuple(f.shape)} must end in {grid.shape}")
    K, M = neumann_laplacian_matrix(grid)
    K = K.tocoo()
    Kt = torch.sparse_coo_tensor(np.vstack([K.row, K.col]), K.data, K.shape, dtype=u.dtype, device=u.device,
                                 check_invariants=True)
    flat = u.reshape(-1, K.shape[0]).T
    Ku = torch.sparse.mm(Kt, flat).T.reshape(u.shape)
    return Ku / torch.as_tensor(M.reshape(grid.shape), dtype=u.dtype, device=u.device) - f


def poisson_residual_spectral(u: torch.Tensor, f: torch.Tensor, ndim: int, length=1.0) -> torch.Tensor:
    """Spectral residual ``-Laplace u - (f - mean f)`` on a periodic grid (every node).

    Parameters
    ----------
    u, f : Tensor ``(..., *spatial)`` with ``ndim`` spatial axes.
    """
    if u.shape[-ndim:] != f.shape[-ndim:]:
        raise ValueError(f"poisson_residual_spectral: u {tuple(u.shape)} and f {tuple(f.shape)} differ")
    f0 = f - f.mean(dim=tuple(range(-ndim, 0)), keepdim=True)
    return -spectral.laplacian(u, ndim, length) - f0


# ----------------------------------------------------------------------------------- time stepping
def fd_weights(offsets: Sequence[int], derivative: int = 1) -> np.ndarray:
    """Finite-difference weights for ``d^m/dt^m`` at 0 from values at integer ``offsets`` (unit step).

    Solves the Vandermonde system ``sum_j w_j o_j^k / k! = delta_{k m}`` (Fornberg 1988 gives the
    same weights recursively).

    >>> fd_weights([-1, 0, 1]).round(12).tolist()
    [-0.5, 0.0, 0.5]
    """
    o = np.asarray(offsets, dtype=np.float64)
    n = o.size
    if n <= derivative:
        raise ValueError(f"fd_weights: {n} points cannot give a derivative of order {derivative}")
    V = np.stack([o**k / math.factorial(k) for k in range(n)])
    rhs = np.zeros(n)
    rhs[derivative] = 1.0
    return np.linalg.solve(V, rhs)


def time_derivative_matrix(n_times: int, dt: float, order: int = 2) -> np.ndarray:
    """``(n_times, n_times)`` matrix ``D`` with ``(D u)_k ~ u_t(t_k)`` to ``O(dt^order)``.

    Centred ``order + 1``-point stencils in the interior, shifted (one-sided) stencils of the same
    width near the ends.
    """
    if order not in (2, 4):
        raise ValueError(f"time_derivative_matrix: order must be 2 or 4, got {order}")
    width = order + 1
    if n_times < width:
        raise ValueError(f"time_derivative_matrix: need at least {width} snapshots for order {order}, "
                         f"got {n_times}")
    if not dt > 0:
        raise ValueError(f"time_derivative_matrix: dt must be > 0, got {dt}")
    D = np.zeros((n_times, n_times))
    half = order // 2
    for k in range(n_times):
        start = min(max(k - half, 0), n_times - width)
        offsets = np.arange(start, start + width) - k
        D[k, start:start + width] = fd_weights(offsets) / dt
    return D


def time_derivative(u: torch.Tensor, dt: float, order: int = 2, axis: int = 1) -> torch.Tensor:
    """Finite-difference ``du/dt`` of snapshots ``u`` spaced ``dt`` apart along ``axis``."""
    D = torch.as_tensor(time_derivative_matrix(u.shape[axis], dt, order), dtype=u.dtype, device=u.device)
    moved = torch.movedim(u, axis, -1)
    return torch.movedim(moved @ D.T, -1, axis)


def _trajectory(pred: torch.Tensor, u0: torch.Tensor | None, ndim: int, where: str) -> torch.Tensor:
    """``(B, T, *spatial)`` or ``(B, 1, T, *spatial)`` with ``u0`` ``(B, [1,] *spatial)`` prepended."""
    if pred.ndim == ndim + 3:
        if pred.shape[1] != 1:
            raise ValueError(f"{where}: pred {tuple(pred.shape)} must have one channel")
        pred = pred[:, 0]
    if pred.ndim != ndim + 2:
        raise ValueError(f"{where}: pred must be (B, T, *spatial) with {ndim} spatial axes, got "
                         f"{tuple(pred.shape)}")
    if u0 is not None:
        u0 = _as_field(u0, ndim, "u0", where)
        if u0.shape[0] != pred.shape[0] or u0.shape[1:] != pred.shape[2:]:
            raise ValueError(f"{where}: u0 {tuple(u0.shape)} does not match pred {tuple(pred.shape)}")
        pred = torch.cat([u0.unsqueeze(1), pred], dim=1)
    return pred


# ------------------------------------------------------------------------------------------ Burgers
def burgers_spatial(u: torch.Tensor, nu: float, length: float = 1.0, *, space: str = "spectral",
                    dealias: bool = True) -> torch.Tensor:
    """Right-hand side ``-(u^2/2)_x + nu u_xx`` of periodic Burgers over the last axis.

    ``space="spectral"``: Fourier derivatives of :mod:`pdesurrogates.physics.spectral`; with
    ``dealias`` the flux is ``P[(P u)^2] / 2``, ``P`` the 2/3-rule projection, exactly the nonlinear
    term of :func:`pdesurrogates.physics.burgers.solve_burgers`.
    ``space="fd"``: second-order central differences with wrap-around.
    """
    n = u.shape[-1]
    h = length / n
    if space == "spectral":
        if dealias:  # as the reference solver: -(1/2) d/dx P[(P u)^2], P the 2/3-rule projection
            v = spectral.dealias(u, 1)
            flux = spectral.dealias(0.5 * v * v, 1)
        else:
            flux = 0.5 * u * u
        return -spectral.derivative(flux, (1,), length) + nu * spectral.derivative(u, (2,), length)
    if space == "fd":
        up, um = torch.roll(u, -1, -1), torch.roll(u, 1, -1)
        flux = 0.5 * u * u
        return -(torch.roll(flux, -1, -1) - torch.roll(flux, 1, -1)) / (2 * h) + nu * (up - 2 * u + um) / h**2
    raise ValueError(f"burgers_spatial: space must be 'spectral' or 'fd', got {space!r}")


def burgers_residual(u: torch.Tensor, nu: float, dt: float, *, u0: torch.Tensor | None = None,
                     length: float = 1.0, time_order: int = 2, space: str = "spectral",
                     dealias: bool = True) -> torch.Tensor:
    """Residual ``u_t + (u^2/2)_x - nu u_xx`` of a periodic Burgers trajectory.

    Parameters
    ----------
    u : Tensor ``(B, T, N)`` or ``(B, 1, T, N)``
        Snapshots at ``t_k = t_0 + k dt`` (``k = 1..T`` when ``u0`` is given, else ``0..T-1``).
    nu : float
        Viscosity.
    dt : float
        Snapshot spacing.
    u0 : Tensor ``(B, N)`` or ``(B, 1, N)``, optional
        Initial condition, prepended to the trajectory (the residual is then evaluated at the
        predicted times only).
    length : float
        Period.
    time_order : 2 or 4
        Accuracy of the finite-difference time derivative.
    space, dealias
        See :func:`burgers_spatial`.

    Returns
    -------
    Tensor ``(B, T, N)``
    """
    where = "burgers_residual"
    if not nu > 0:
        raise ValueError(f"{where}: nu must be > 0, got {nu}")
    traj = _trajectory(u, u0, 1, where)
    r = time_derivative(traj, dt, time_order, axis=1) - burgers_spatial(
        traj, nu, length, space=space, dealias=dealias)
    return r[:, 1:] if u0 is not None else r


def burgers_step_residual(u: torch.Tensor, nu: float, dt: float, *, u0: torch.Tensor | None = None,
                          length: float = 1.0) -> torch.Tensor:
    """One-step residual ``(u_{k+1} - S_dt(u_k)) / dt`` with ``S_dt`` the reference solver's propagator.

    ``S_dt`` is :func:`pdesurrogates.physics.burgers.solve_burgers` over one snapshot interval
    (pseudo-spectral, 2/3 dealiasing, ETDRK4 with a CFL-limited inner step), applied to every snapshot
    at once and differentiated through. Unlike finite differences over coarse snapshots, this
    residual vanishes on the generator's trajectories up to the solver's own error, at any snapshot
    spacing -- the generator's discretization in space *and* time serves as the loss.

    Parameters
    ----------
    u : Tensor ``(B, T, N)`` or ``(B, 1, T, N)``
    nu, dt : float
        Viscosity and snapshot spacing.
    u0 : Tensor ``(B, [1,] N)``, optional, prepended.
    length : float

    Returns
    -------
    Tensor ``(B, T - 1, N)`` (``(B, T, N)`` with ``u0``)
    """
    from pdesurrogates.physics.burgers import solve_burgers

    where = "burgers_step_residual"
    if not nu > 0 or not dt > 0:
        raise ValueError(f"{where}: nu and dt must be > 0, got {nu}, {dt}")
    traj = _trajectory(u, u0, 1, where)
    B, T, N = traj.shape
    if T < 2:
        raise ValueError(f"{where}: need at least two snapshots, got {T}")
    nxt = solve_burgers(traj[:, :-1].reshape(-1, N), nu, [dt], length=length)
    return (traj[:, 1:] - nxt.reshape(B, T - 1, N).to(traj.dtype)) / dt


# ---------------------------------------------------------------------------------- Navier-Stokes
def vorticity_advection(w: torch.Tensor, length: float = 1.0, dealias: bool = True) -> torch.Tensor:
    """``v . grad w`` for the 2D vorticity ``w`` ``(..., H, W)``, ``v`` from
    :func:`pdesurrogates.physics.navier_stokes.velocity_from_vorticity` (``v = (psi_y, -psi_x)``,
    ``-Laplace psi = w``); the product is formed in physical space and truncated by the 2/3 rule when
    ``dealias``, as in :func:`~pdesurrogates.physics.navier_stokes.solve_navier_stokes`.
    """
    v = velocity_from_vorticity(w, length)
    grad = spectral.gradient(w, 2, length)
    adv = (v * grad).sum(dim=-3)
    return spectral.dealias(adv, 2) if dealias else adv


def navier_stokes_residual(w: torch.Tensor, nu: float, dt: float, *, w0: torch.Tensor | None = None,
                           forcing: torch.Tensor | float | None = None, length: float = 1.0,
                           time_order: int = 2, dealias: bool = True) -> torch.Tensor:
    """Residual ``w_t + v . grad w - nu Laplace w - f`` of 2D incompressible flow in vorticity form.

    Parameters
    ----------
    w : Tensor ``(B, T, H, W)`` or ``(B, 1, T, H, W)``
        Vorticity snapshots ``dt`` apart on a periodic grid.
    nu, dt : float
    w0 : Tensor ``(B, [1,] H, W)``, optional
        Initial vorticity, prepended (see :func:`burgers_residual`).
    forcing : Tensor ``(H, W)`` or float, optional
        Default none (0); use :func:`pdesurrogates.physics.navier_stokes.fno_forcing` for the FNO setting.
    length : float
        Side of the periodic box.
    time_order : 2 or 4
    dealias : bool

    Returns
    -------
    Tensor ``(B, T, H, W)``
    """
    where = "navier_stokes_residual"
    if not nu > 0:
        raise ValueError(f"{where}: nu must be > 0, got {nu}")
    traj = _trajectory(w, w0, 2, where)
    r = (time_derivative(traj, dt, time_order, axis=1) + vorticity_advection(traj, length, dealias)
         - nu * spectral.laplacian(traj, 2, length))
    if forcing is not None:
        r = r - forcing
    return r[:, 1:] if w0 is not None else r


# --------------------------------------------------------------------------------------------- heat
def heat_residual(u: torch.Tensor, dt: float, diffusivity: torch.Tensor | Sequence[float],
                  forcing: torch.Tensor | None = None, grid: Grid | None = None) -> torch.Tensor:
    """Crank--Nicolson residual of ``u_t = c(t) Laplace u + f`` with ``u = 0`` on the boundary.

    For consecutive snapshots ``u_k, u_{k+1}`` (interior nodes)::

        r_k = (u_{k+1} - u_k)/dt + (c_{k+1} L u_{k+1} + c_k L u_k)/2 - (f_k + f_{k+1})/2,

    with ``L = -Laplace_h`` the finite-volume operator of
    :func:`~pdesurrogates.physics.operators.apply_diffusion` -- exactly the step of
    :class:`~pdesurrogates.physics.heat.HeatSequence`, whose solutions give ``r = 0`` to round-off.

    Parameters
    ----------
    u : Tensor ``(B, T, n, n)``
        Interior-node snapshots at ``t_0, t_0 + dt, ...`` (the boundary is zero).
    dt : float
    diffusivity : Tensor or sequence ``(T,)``
        ``c(t_k)``.
    forcing : Tensor ``(T, n, n)`` or ``(B, T, n, n)``, optional
    grid : Grid, optional
        Full grid including the boundary, default the node-based unit square of ``n + 2`` nodes.

    Returns
    -------
    Tensor ``(B, T - 1, n, n)``
    """
    where = "heat_residual"
    if u.ndim != 4:
        raise ValueError(f"{where}: u must be (B, T, n, n), got {tuple(u.shape)}")
    T = u.shape[1]
    c = torch.as_tensor(diffusivity, dtype=u.dtype, device=u.device)
    if c.shape != (T,):
        raise ValueError(f"{where}: diffusivity has shape {tuple(c.shape)}, expected ({T},)")
    grid = grid or Grid(tuple(n + 2 for n in u.shape[2:]))
    full = torch.nn.functional.pad(u, (1, 1, 1, 1))
    Lu = apply_diffusion(torch.ones(grid.shape, dtype=u.dtype, device=u.device), full, grid)
    cLu = c[None, :, None, None] * Lu
    r = (u[:, 1:] - u[:, :-1]) / dt + 0.5 * (cLu[:, 1:] + cLu[:, :-1])
    if forcing is not None:
        r = r - 0.5 * (forcing[..., 1:, :, :] + forcing[..., :-1, :, :])
    return r


# ------------------------------------------------------------------------------------ loss objects
RESIDUAL_NORMS = ("l2", "h-1")


@dataclass(frozen=True)
class DarcyLoss:
    """Relative FV residual of Darcy flow: ``loss(pred, inputs)``.

    ``pred`` ``(B, 1, *spatial)`` is the pressure (boundary nodes included), ``inputs``
    ``(B, C, *spatial)`` has the coefficient ``a`` in channel ``coefficient_channel``.

    ``norm="l2"``: ``||r|| / ||f||`` (RMS over interior nodes), the PINO paper's choice.
    ``norm="h-1"``: ``||L_h^-1 r|| / ||L_h^-1 f||`` with ``L_h`` the Dirichlet ``-Laplace`` -- a
    discrete ``H^-1`` norm of the same residual, zero at the same discrete solution, but much better
    conditioned: the ``l2`` form weighs the error ``e`` like ``||A e||`` (condition number ``~h^-2``
    squared), the ``h-1`` form like ``||L_h^-1 A e||`` (condition number ~ the contrast of ``a``).
    It trains physics-only models far faster (see ``benchmarks/pino.py``).
    """

    forcing: float = 1.0
    length: float = 1.0
    coefficient_channel: int = 0
    norm: str = "l2"

    def __post_init__(self) -> None:
        if self.norm not in RESIDUAL_NORMS:
            raise ValueError(f"DarcyLoss: unknown norm {self.norm!r}; valid: {', '.join(RESIDUAL_NORMS)}")

    def residual(self, pred: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        _check_finite(pred, "pred", "DarcyLoss")
        a = inputs[:, self.coefficient_channel]
        grid = _unit_dirichlet_grid(pred.shape[2:], self.length)
        return darcy_residual(a, pred[:, 0] if pred.ndim == a.ndim + 1 else pred, grid, self.forcing)

    def __call__(self, pred: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        r = self.residual(pred, inputs)
        if self.norm == "l2":
            return relative_norm(r, self.forcing)
        grid = _unit_dirichlet_grid(pred.shape[2:], self.length)
        f = torch.full(grid.interior_shape, float(self.forcing), dtype=r.dtype, device=r.device)
        return relative_norm(inverse_dirichlet_laplacian(r, grid), inverse_dirichlet_laplacian(f, grid)[None])


@dataclass(frozen=True)
class PoissonLoss:
    """Relative FV residual of ``-Laplace u = f``: ``f`` in ``inputs[:, forcing_channel]``.

    ``boundary="dirichlet"``: interior nodes (:func:`poisson_residual`, boundary values from ``pred``);
    ``"neumann"``: every node (:func:`poisson_residual_neumann`), as in
    :class:`~pdesurrogates.physics.problems.PoissonProblem`.
    """

    length: float = 1.0
    forcing_channel: int = 0
    boundary: str = "dirichlet"

    def __post_init__(self) -> None:
        if self.boundary not in ("dirichlet", "neumann"):
            raise ValueError(f"PoissonLoss: boundary must be 'dirichlet' or 'neumann', got {self.boundary!r}")

    def _grid(self, pred: torch.Tensor) -> Grid:
        return Grid(tuple(pred.shape[2:]), length=self.length, boundary=self.boundary)

    def residual(self, pred: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        _check_finite(pred, "pred", "PoissonLoss")
        f = inputs[:, self.forcing_channel]
        if self.boundary == "neumann":
            return poisson_residual_neumann(pred[:, 0], f, self._grid(pred))
        return poisson_residual(pred[:, 0], f, self._grid(pred))

    def __call__(self, pred: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        f = inputs[:, self.forcing_channel]
        if self.boundary == "dirichlet":
            f = f[(Ellipsis,) + (slice(1, -1),) * (pred.ndim - 2)]
        return relative_norm(self.residual(pred, inputs), f)


@dataclass(frozen=True)
class BurgersLoss:
    """Relative residual of a predicted Burgers trajectory from its initial condition.

    ``inputs`` ``(B, 1, N)`` is ``u0``; ``pred`` ``(B, T, N)`` (or ``(B, 1, T, N)``, the layout of
    :class:`~pdesurrogates.physics.problems.BurgersProblem`) holds the snapshots at
    ``dt, 2 dt, ..., T dt`` with ``dt = t_final / n_times`` (parameter names as in the problem). The
    scale is the spatial operator at ``u0`` (``|u_t|`` at ``t = 0``).

    ``time_scheme="fd"``: :func:`burgers_residual` (finite differences of order ``time_order`` over the
    snapshots; biased by ``O(dt^p)``, badly so in the initial viscous layer of a rough ``u0``).
    ``time_scheme="solver"``: :func:`burgers_step_residual` (the generator's one-interval propagator;
    zero on the generator's data up to its error, and what the benchmark uses).
    """

    nu: float = 0.1
    t_final: float = 1.0
    n_times: int = 20
    length: float = 1.0
    time_order: int = 2
    space: str = "spectral"
    dealias: bool = True
    time_scheme: str = "fd"

    def __post_init__(self) -> None:
        if self.time_scheme not in ("fd", "solver"):
            raise ValueError(f"BurgersLoss: time_scheme must be 'fd' or 'solver', got {self.time_scheme!r}")

    def residual(self, pred: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        _check_finite(pred, "pred", "BurgersLoss")
        if pred.shape[-2] != self.n_times:
            raise ValueError(f"BurgersLoss: pred {tuple(pred.shape)} has {pred.shape[-2]} snapshots, "
                             f"n_times = {self.n_times}")
        if self.time_scheme == "solver":
            return burgers_step_residual(pred, self.nu, self.t_final / self.n_times, u0=inputs[:, :1],
                                         length=self.length)
        return burgers_residual(pred, self.nu, self.t_final / self.n_times, u0=inputs[:, :1], length=self.length,
                                time_order=self.time_order, space=self.space, dealias=self.dealias)

    def __call__(self, pred: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        scale = burgers_spatial(inputs[:, 0], self.nu, self.length, space=self.space, dealias=self.dealias)
        return relative_norm(self.residual(pred, inputs), scale)


@dataclass(frozen=True)
class NavierStokesLoss:
    """Relative vorticity residual from an initial vorticity ``inputs[:, 0]`` ``(B, H, W)``.

    ``pred`` ``(B, T, H, W)`` (or ``(B, 1, T, H, W)`` as in
    :class:`~pdesurrogates.physics.problems.NavierStokesProblem`) holds ``w`` at
    ``dt, ..., T dt`` with ``dt = record_every``; ``forcing="fno"`` uses
    :func:`pdesurrogates.physics.navier_stokes.fno_forcing`, ``"none"`` no forcing. With the
    dataset's ``record_every = 1`` the finite-difference time derivative is far from the solver's
    ``dt = 1e-4``: the loss is then a smoothness-in-time prior rather than a zero-at-truth residual.
    """

    nu: float = 1e-3
    record_every: float = 1.0
    length: float = 1.0
    forcing: str = "fno"
    time_order: int = 2

    def _forcing(self, like: torch.Tensor):
        if self.forcing == "none":
            return None
        if self.forcing == "fno":
            if like.shape[-1] != like.shape[-2]:
                raise ValueError(f"NavierStokesLoss: the FNO forcing needs a square grid, got {tuple(like.shape)}")
            return fno_forcing(like.shape[-1], self.length, dtype=like.dtype, device=like.device)
        raise ValueError(f"NavierStokesLoss: forcing must be 'fno' or 'none', got {self.forcing!r}")

    def residual(self, pred: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        _check_finite(pred, "pred", "NavierStokesLoss")
        return navier_stokes_residual(pred, self.nu, self.record_every, w0=inputs[:, :1], forcing=self._forcing(pred),
                                      length=self.length, time_order=self.time_order)

    def __call__(self, pred: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        w0 = inputs[:, 0]
        f = self._forcing(w0)
        scale = -vorticity_advection(w0, self.length) + self.nu * spectral.laplacian(w0, 2, self.length)
        if f is not None:
            scale = scale + f
        return relative_norm(self.residual(pred, inputs), scale)


@dataclass(frozen=True)
class HeatLoss:
    """Relative Crank--Nicolson residual for :class:`~pdesurrogates.physics.problems.HeatProblem` data.

    ``inputs`` ``(B, 1, s, s)`` is ``u0`` and ``pred`` ``(B, T, s, s)`` or ``(B, 1, T, s, s)`` the states
    at ``t_final k / n_times``, boundary nodes included (they are ignored: ``u = 0`` there). The
    diffusivity and forcing are the problem's (:class:`~pdesurrogates.physics.heat.KhodakDiffusivity`,
    :class:`~pdesurrogates.physics.heat.MovingBump`). When the problem's ``dt`` equals the snapshot
    spacing the reference residual is zero to round-off; otherwise it is ``O(spacing^2)``.
    Scale: the forcing's RMS.
    """

    t_final: float = 0.1
    n_times: int = 10
    diffusivity_floor: float = 1e-3
    forcing_amplitude: float = 1.0

    def _coefficients(self, s: int, dtype, device):
        grid = Grid((s, s))
        x, y = grid.mesh()
        times = [self.t_final * k / self.n_times for k in range(self.n_times + 1)]
        c = [KhodakDiffusivity(self.diffusivity_floor)(t) for t in times]
        bump = MovingBump(amplitude=self.forcing_amplitude)
        f = np.stack([bump(x[1:-1, 1:-1], y[1:-1, 1:-1], t) for t in times])
        return c, torch.as_tensor(f, dtype=dtype, device=device)

    def residual(self, pred: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        _check_finite(pred, "pred", "HeatLoss")
        traj = _trajectory(pred, inputs, 2, "HeatLoss")
        if traj.shape[1] != self.n_times + 1:
            raise ValueError(f"HeatLoss: pred has {traj.shape[1] - 1} snapshots, n_times = {self.n_times}")
        c, f = self._coefficients(traj.shape[-1], traj.dtype, traj.device)
        return heat_residual(traj[..., 1:-1, 1:-1], self.t_final / self.n_times, c, f)

    def __call__(self, pred: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        _, f = self._coefficients(pred.shape[-1], pred.dtype, pred.device)
        return relative_norm(self.residual(pred, inputs), f[None])


PHYSICS_LOSSES: dict[str, type] = {
    "darcy": DarcyLoss,
    "poisson": PoissonLoss,
    "burgers": BurgersLoss,
    "navier-stokes": NavierStokesLoss,
    "heat": HeatLoss,
}


def get_physics_loss(name: str, **params) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The physics loss ``name`` from :data:`PHYSICS_LOSSES` with ``params``; errors list valid choices."""
    if name not in PHYSICS_LOSSES:
        raise ValueError(f"unknown physics loss {name!r}; valid: {', '.join(sorted(PHYSICS_LOSSES))}")
    cls = PHYSICS_LOSSES[name]
    valid = set(cls.__dataclass_fields__)
    unknown = set(params) - valid
    if unknown:
        raise ValueError(f"physics loss {name!r} has no parameter(s) {sorted(unknown)}; "
                         f"valid: {', '.join(sorted(valid))}")
    return cls(**params)


def physics_loss_for(problem) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The physics loss matching a :mod:`pdesurrogates.physics.problems` problem, with the problem's
    parameters copied where the names agree (``nu``, ``t_final``, ``n_times``, ``forcing``, ...)."""
    name = getattr(problem, "name", None)
    if name not in PHYSICS_LOSSES:
        raise ValueError(f"no physics loss for problem {name!r}; valid: {', '.join(sorted(PHYSICS_LOSSES))}")
    fields = PHYSICS_LOSSES[name].__dataclass_fields__
    params = {k: v for k, v in problem.to_dict().items() if k in fields}
    if name == "darcy" and not isinstance(params.get("forcing", 1.0), (int, float)):
        params.pop("forcing")
    return get_physics_loss(name, **params)
