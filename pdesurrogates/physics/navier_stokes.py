"""2D incompressible Navier–Stokes in vorticity form on a periodic box, pseudo-spectral.

    w_t + u . grad w = nu Laplace w + f,    u = (d psi/dy, -d psi/dx),    -Laplace psi = w,

on ``[0, L)^2`` (the unit torus by default), fields sampled at nodes ``(i L / n, j L / n)`` with
``x`` along the first spatial axis. Space: Fourier collocation, the advection term formed in
physical space and truncated by the 2/3 rule. Time: Crank–Nicolson for the viscous term and Heun's
explicit trapezoidal rule for advection and forcing (predictor–corrector), second order overall;
``scheme="euler"`` gives the first-order CN/forward-Euler step of the FNO reference solver (one
advection evaluation per step, half the cost). All trajectories in the batch advance together, on
the device of ``w0``.

Time step: a fixed ``dt``, or by default a step per trajectory and output interval from the CFL
bound at the solver resolution (safety factor 0.5) and an accuracy bound on the flow's rotation
rate (:func:`default_time_step`); on the FNO setting the default matches ``dt = 1e-4`` to about
``1e-4`` relative over a time unit at a few hundred times fewer steps.

The FNO-paper setting (Li et al., ICLR 2021): forcing ``0.1 (sin 2 pi (x + y) + cos 2 pi (x + y))``,
``w0 ~ N(0, 7^(3/2) (-Laplace + 49 I)^(-2.5))``, ``nu`` in {1e-3, 1e-4, 1e-5}, ``dt = 1e-4``,
solved at 256^2 and subsampled to 64^2.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch

from pdesurrogates.physics import spectral

CFL_LIMIT = 1.0  # dt * max|u| / h; the explicit advection needs it (we refuse larger steps)
SCHEMES = ("heun", "euler")
DEFAULT_CFL = 0.5
# dt * (max|w| + sqrt(max|f|)) per scheme: the step the default time step allows for accuracy
DEFAULT_ACCURACY = {"heun": 0.05, "euler": 0.005}


def fno_forcing(n: int, length: float = 1.0, *, device=None, dtype=torch.float64) -> torch.Tensor:
    """``0.1 (sin 2 pi (x + y) + cos 2 pi (x + y))`` at the nodes of an ``n x n`` periodic grid (unit torus scaling)."""
    x = torch.arange(n, device=device, dtype=dtype) * (length / n)
    s = 2.0 * math.pi * (x[:, None] + x[None, :]) / length
    return 0.1 * (torch.sin(s) + torch.cos(s))


def velocity_from_vorticity(w: torch.Tensor, length=1.0) -> torch.Tensor:
    """Divergence-free velocity of a periodic vorticity field.

    Parameters
    ----------
    w : torch.Tensor
        ``(..., H, W)`` vorticity.

    Returns
    -------
    torch.Tensor
        ``(..., 2, H, W)``: ``(u_x, u_y) = (d psi/dy, -d psi/dx)`` with ``psi`` the zero-mean
        solution of ``-Laplace psi = w``.
    """
    psi = -spectral.inverse_laplacian(w, 2, length)
    grad = spectral.gradient(psi, 2, length)
    return torch.stack([grad[..., 1, :, :], -grad[..., 0, :, :]], dim=-3)


def kinetic_energy(w: torch.Tensor, length=1.0) -> torch.Tensor:
    """Mean kinetic energy ``<|u|^2> / 2`` of each field, ``(..., H, W) -> (...)``."""
    u = velocity_from_vorticity(w, length)
    return 0.5 * (u**2).sum(-3).mean(dim=(-2, -1))


def enstrophy(w: torch.Tensor) -> torch.Tensor:
    """Mean enstrophy ``<w^2> / 2``, ``(..., H, W) -> (...)``."""
    return 0.5 * (w**2).mean(dim=(-2, -1))


def max_stable_dt(u_max: float, n: int, length: float = 1.0) -> float:
    """Largest step with ``dt * u_max / h <= CFL_LIMIT`` (``h = L / n``)."""
    return math.inf if u_max == 0 else CFL_LIMIT * (length / n) / u_max


def default_time_step(w: torch.Tensor, nu: float, forcing: torch.Tensor | None = None, *,
                      length: float = 1.0, scheme: str = "heun", cfl: float = DEFAULT_CFL,
                      accuracy: float | None = None) -> torch.Tensor:
    """The largest step the default time stepping takes from the state ``w``, per trajectory.

    ``dt = min(cfl h / U, dt_visc, accuracy / (max|w| + sqrt(max|f|)))`` with ``h = L / n`` and
    ``U = max|u|``:

    * **advective stability (CFL)**: the explicit advection needs ``dt U / h <= CFL_LIMIT``;
      ``cfl`` (default ``0.5``) is the safety factor in front of it;
    * **viscous bound**: the explicit schemes are not stable on the imaginary axis by themselves
      (Heun amplifies a purely advected Fourier mode by ``|G|^2 = 1 + y^4 / 4`` per step, forward
      Euler by ``1 + y^2``, with ``y = dt k . u``); the Crank–Nicolson viscous factor must damp what
      they amplify, ``|G| - 1 <= dt nu |k|^2`` on every kept mode. With ``|k . u| <= sqrt(2) |k| U``
      and ``|k|^2 <= 2 k_max^2`` (``k_max = 2 pi n / (3 L)``, the 2/3 rule) this holds when
      ``dt^3 <= nu / (k_max^2 U^4)`` (Heun) or ``dt <= nu / U^2`` (Euler). It matters only at low
      viscosity (``nu = 1e-5``); at ``nu = 1e-3`` the CFL bound is the smaller one;
    * **accuracy**: ``max|w|`` is the fastest rotation rate of the flow and ``sqrt(max|f|)`` the
      rate the forcing sets from rest (``f`` has units of ``w`` per time); a step of ``accuracy``
      (default ``0.05`` for Heun, ``0.005`` for the first-order Euler scheme) times the shortest
      of these time scales keeps the time-stepping error of the FNO setting near ``1e-4``
      relative per time unit.

    Parameters
    ----------
    w : torch.Tensor
        ``(B, n, n)`` vorticity.
    nu : float
        Viscosity.
    forcing : torch.Tensor, optional
        ``(n, n)`` or ``(B, n, n)``.

    Returns
    -------
    torch.Tensor
        ``(B,)`` float64 steps on ``w``'s device (``inf`` for a zero state without forcing).

    >>> w = torch.zeros(1, 8, 8)
    >>> default_time_step(w, 1e-3)
    tensor([inf], dtype=torch.float64)
    """
    if scheme not in SCHEMES:
        raise ValueError(f"unknown scheme {scheme!r}; valid: {', '.join(SCHEMES)}")
    if not 0 < cfl <= CFL_LIMIT:
        raise ValueError(f"cfl must be in (0, {CFL_LIMIT}], got {cfl}")
    accuracy = DEFAULT_ACCURACY[scheme] if accuracy is None else accuracy
    if not accuracy > 0:
        raise ValueError(f"accuracy must be > 0, got {accuracy}")
    if not nu > 0:
        raise ValueError(f"viscosity nu must be > 0, got {nu}")
    w = w.to(torch.float64)
    n = w.shape[-1]
    u_max = velocity_from_vorticity(w, length).abs().amax(dim=(-3, -2, -1))
    rate = w.abs().amax(dim=(-2, -1))
    if forcing is not None:
        f = forcing.to(device=w.device, dtype=torch.float64)
        rate = rate + f.abs().amax(dim=(-2, -1)).sqrt().expand_as(rate)
    inf = torch.full_like(rate, math.inf)
    moving = u_max > 0
    u_safe = torch.where(moving, u_max, torch.ones_like(u_max))
    stable = torch.where(moving, cfl * (length / n) / u_safe, inf)
    if scheme == "heun":
        k_max = 2.0 * math.pi * n / (3.0 * length)
        viscous = (nu / (k_max**2 * u_safe**4)) ** (1.0 / 3.0)
    else:
        viscous = nu / u_safe**2
    stable = torch.minimum(stable, torch.where(moving, viscous, inf))
    accurate = torch.where(rate > 0, accuracy / torch.where(rate > 0, rate, torch.ones_like(rate)), inf)
    return torch.minimum(stable, accurate)


def _output_steps(times: list[float], dt: float) -> list[int]:
    steps_at = []
    for t in times:
        k = round(t / dt)
        if abs(k * dt - t) > 1e-6 * max(t, 1.0):
            raise ValueError(f"solve_navier_stokes: output time {t} is not a multiple of dt={dt}")
        steps_at.append(k)
    return steps_at


def solve_navier_stokes(
    w0: torch.Tensor,
    nu: float,
    times: Sequence[float],
    *,
    dt: float | None = None,
    forcing: torch.Tensor | None = None,
    length: float = 1.0,
    scheme: str = "heun",
    cfl: float = DEFAULT_CFL,
    accuracy: float | None = None,
    return_steps: bool = False,
):
    """Integrate the vorticity equation and return ``w`` at the requested ``times``.

    Parameters
    ----------
    w0 : torch.Tensor
        ``(B, n, n)`` or ``(n, n)`` initial vorticity (float32 or float64), any device.
    nu : float
        Viscosity, > 0.
    times : sequence of float
        Increasing output times ``> 0``; with a fixed ``dt`` each must be a whole number of steps
        (to 1e-6).
    dt : float, optional
        Fixed time step; refused if ``dt * max|u0| / h > CFL_LIMIT``. Default: each trajectory
        takes, between consecutive output times, equal steps no longer than
        :func:`default_time_step` of its state at the start of the interval (stability and
        accuracy bounds, recomputed at every output time), so a trajectory's steps depend on its
        own state only, never on the other trajectories of the batch.
    forcing : torch.Tensor, optional
        ``(n, n)`` or ``(B, n, n)`` time-independent forcing ``f``; default none.
    length : float
        Box side ``L``.
    scheme : {"heun", "euler"}
        Explicit part: Heun (second order) or forward Euler (FNO reference, first order).
    cfl, accuracy : float
        Safety factor and accuracy constant of the default step (see :func:`default_time_step`);
        unused with a fixed ``dt``.
    return_steps : bool
        Also return the number of steps each trajectory took.

    Returns
    -------
    torch.Tensor
        ``(B, len(times), n, n)`` (or ``(len(times), n, n)``), dtype and device of ``w0``;
        with ``return_steps``, a pair ``(w, steps)``, ``steps`` an int64 CPU tensor ``(B,)`` (or a
        0-d one).
    """
    if not nu > 0:
        raise ValueError(f"solve_navier_stokes: viscosity nu must be > 0, got {nu}")
    if scheme not in SCHEMES:
        raise ValueError(f"unknown scheme {scheme!r}; valid: {', '.join(SCHEMES)}")
    squeeze = w0.ndim == 2
    w = w0[None] if squeeze else w0
    if w.ndim != 3 or w.shape[-1] != w.shape[-2]:
        raise ValueError(f"solve_navier_stokes: w0 must be (B, n, n) or (n, n), got {tuple(w0.shape)}")
    if dt is not None and not dt > 0:
        raise ValueError(f"solve_navier_stokes: dt must be > 0, got {dt}")
    n = w.shape[-1]
    times = [float(t) for t in times]
    if not times or times[0] <= 0 or any(b <= a for a, b in itertools.pairwise(times)):
        raise ValueError(f"solve_navier_stokes: times must be non-empty, > 0 and increasing, got {times}")
    if dt is not None:
        steps_at = _output_steps(times, dt)
        u_max = float(velocity_from_vorticity(w.to(torch.float64), length).abs().max())
        limit = max_stable_dt(u_max, n, length)
        if dt > limit:
            raise ValueError(
                f"solve_navier_stokes: dt={dt:.3g} violates the CFL bound dt * max|u0| / h <= {CFL_LIMIT} "
                f"(max|u0|={u_max:.3g}, h={length / n:.3g}): use dt <= {limit:.3g}")
    else:
        default_time_step(w[:1], nu, None, scheme=scheme, cfl=cfl, accuracy=accuracy)  # checks arguments

    dtype = w.dtype
    real = torch.float64 if dtype == torch.float64 else torch.float32
    kx, ky = spectral.wavenumbers((n, n), length, device=w.device, dtype=real)
    k2 = kx**2 + ky**2
    inv_k2 = torch.where(k2 == 0, torch.zeros_like(k2), 1.0 / torch.where(k2 == 0, torch.ones_like(k2), k2))
    # odd derivatives drop the Nyquist rows/columns (already outside the 2/3 mask for products)
    ikx = 1j * spectral._odd_filter(kx, n, 0, 2, True)
    iky = 1j * spectral._odd_filter(ky, n, 1, 2, True)
    mask = spectral.dealias_mask((n, n), device=w.device)
    f_hat = 0.0 if forcing is None else torch.fft.rfft2(forcing.to(device=w.device, dtype=dtype))

    def explicit(w_hat):
        psi_hat = w_hat * inv_k2
        ux = torch.fft.irfft2(iky * psi_hat, s=(n, n))
        uy = torch.fft.irfft2(-ikx * psi_hat, s=(n, n))
        wx = torch.fft.irfft2(ikx * w_hat, s=(n, n))
        wy = torch.fft.irfft2(iky * w_hat, s=(n, n))
        return f_hat - torch.fft.rfft2(ux * wx + uy * wy) * mask

    def step(w_hat, step_dt, numer, denom):
        n0 = explicit(w_hat)
        if scheme == "euler":
            return (numer * w_hat + step_dt * n0) * denom
        pred = (numer * w_hat + step_dt * n0) * denom
        return (numer * w_hat + (0.5 * step_dt) * (n0 + explicit(pred))) * denom

    w_hat = torch.fft.rfft2(w)
    out = []
    taken = torch.zeros(w.shape[0], dtype=torch.int64)
    if dt is not None:
        half_visc = 0.5 * dt * nu * k2
        numer, denom = 1.0 - half_visc, 1.0 / (1.0 + half_visc)
        done = 0
        for target in steps_at:
            for _ in range(target - done):
                w_hat = step(w_hat, dt, numer, denom)
            done = target
            out.append(_snapshot(w_hat, n, dtype, target * dt))
        taken += done
    else:
        t_prev = 0.0
        for t in times:
            interval = t - t_prev
            state = torch.fft.irfft2(w_hat, s=(n, n))
            bound = default_time_step(state, nu, forcing, length=length, scheme=scheme, cfl=cfl,
                                      accuracy=accuracy)
            counts = torch.ceil(interval / bound).clamp(min=1)  # (B,) steps of this interval
            step_dt = (interval / counts).to(real)[:, None, None]
            half_visc = 0.5 * step_dt * nu * k2
            numer, denom = 1.0 - half_visc, 1.0 / (1.0 + half_visc)
            n_max = int(counts.max())
            uniform = bool((counts == n_max).all())
            taken += counts.cpu().to(torch.int64)
            counts = counts.to(w.device)[:, None, None]
            for k in range(n_max):
                new = step(w_hat, step_dt, numer, denom)
                # a trajectory that has taken its steps of this interval waits for the others
                w_hat = new if uniform else torch.where(counts > k, new, w_hat)
            t_prev = t
            out.append(_snapshot(w_hat, n, dtype, t))
    result = torch.stack(out, dim=1)
    if squeeze:
        result, taken = result[0], taken[0]
    return (result, taken) if return_steps else result


def _snapshot(w_hat: torch.Tensor, n: int, dtype: torch.dtype, t: float) -> torch.Tensor:
    snap = torch.fft.irfft2(w_hat, s=(n, n)).to(dtype)
    if not torch.isfinite(snap).all():
        raise RuntimeError(f"solve_navier_stokes: the solution blew up before t={t:.4g}; "
                           "reduce dt (CFL) or raise the resolution")
    return snap
