"""2D incompressible Navier–Stokes in vorticity form on a periodic box, pseudo-spectral.

    w_t + u . grad w = nu Laplace w + f,    u = (d psi/dy, -d psi/dx),    -Laplace psi = w,

on ``[0, L)^2`` (the unit torus by default), fields sampled at nodes ``(i L / n, j L / n)`` with
``x`` along the first spatial axis. Space: Fourier collocation, the advection term formed in
physical space and truncated by the 2/3 rule. Time: Crank–Nicolson for the viscous term and Heun's
explicit trapezoidal rule for advection and forcing (predictor–corrector), second order overall;
``scheme="euler"`` gives the first-order CN/forward-Euler step of the FNO reference solver (one
advection evaluation per step, half the cost). All trajectories in the batch advance together, on
the device of ``w0``.

The FNO-paper setting (Li et al., ICLR 2021): forcing ``0.1 (sin 2 pi (x + y) + cos 2 pi (x + y))``,
``w0 ~ N(0, 7^(3/2) (-Laplace + 49 I)^(-2.5))``, ``nu`` in {1e-3, 1e-4, 1e-5}, ``dt = 1e-4``,
solved at 256^2 and subsampled to 64^2.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from pdesurrogates.physics import spectral

CFL_LIMIT = 1.0  # dt * max|u| / h; the explicit advection needs it (we refuse larger steps)
SCHEMES = ("heun", "euler")


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


def solve_navier_stokes(
    w0: torch.Tensor,
    nu: float,
    times: Sequence[float],
    *,
    dt: float = 1e-4,
    forcing: torch.Tensor | None = None,
    length: float = 1.0,
    scheme: str = "heun",
) -> torch.Tensor:
    """Integrate the vorticity equation and return ``w`` at the requested ``times``.

    Parameters
    ----------
    w0 : torch.Tensor
        ``(B, n, n)`` or ``(n, n)`` initial vorticity (float32 or float64), any device.
    nu : float
        Viscosity, > 0.
    times : sequence of float
        Increasing output times ``> 0``; each must be a whole number of steps ``dt`` (to 1e-6).
    dt : float
        Time step; refused if ``dt * max|u0| / h > CFL_LIMIT``.
    forcing : torch.Tensor, optional
        ``(n, n)`` or ``(B, n, n)`` time-independent forcing ``f``; default none.
    length : float
        Box side ``L``.
    scheme : {"heun", "euler"}
        Explicit part: Heun (second order) or forward Euler (FNO reference, first order).

    Returns
    -------
    torch.Tensor
        ``(B, len(times), n, n)`` (or ``(len(times), n, n)``), dtype and device of ``w0``.
    """
    if not nu > 0:
        raise ValueError(f"solve_navier_stokes: viscosity nu must be > 0, got {nu}")
    if scheme not in SCHEMES:
        raise ValueError(f"unknown scheme {scheme!r}; valid: {', '.join(SCHEMES)}")
    squeeze = w0.ndim == 2
    w = w0[None] if squeeze else w0
    if w.ndim != 3 or w.shape[-1] != w.shape[-2]:
        raise ValueError(f"solve_navier_stokes: w0 must be (B, n, n) or (n, n), got {tuple(w0.shape)}")
    if not dt > 0:
        raise ValueError(f"solve_navier_stokes: dt must be > 0, got {dt}")
    n = w.shape[-1]
    times = [float(t) for t in times]
    if not times or times[0] <= 0 or any(b <= a for a, b in zip(times, times[1:])):
        raise ValueError(f"solve_navier_stokes: times must be non-empty, > 0 and increasing, got {times}")
    steps_at = []
    for t in times:
        k = round(t / dt)
        if abs(k * dt - t) > 1e-6 * max(t, 1.0):
            raise ValueError(f"solve_navier_stokes: output time {t} is not a multiple of dt={dt}")
        steps_at.append(k)
    u_max = float(velocity_from_vorticity(w.to(torch.float64), length).abs().max())
    limit = max_stable_dt(u_max, n, length)
    if dt > limit:
        raise ValueError(
            f"solve_navier_stokes: dt={dt:.3g} violates the CFL bound dt * max|u0| / h <= {CFL_LIMIT} "
            f"(max|u0|={u_max:.3g}, h={length / n:.3g}): use dt <= {limit:.3g}")

    dtype = w.dtype
    real = torch.float64 if dtype == torch.float64 else torch.float32
    kx, ky = spectral.wavenumbers((n, n), length, device=w.device, dtype=real)
    k2 = kx**2 + ky**2
    inv_k2 = torch.where(k2 == 0, torch.zeros_like(k2), 1.0 / torch.where(k2 == 0, torch.ones_like(k2), k2))
    # odd derivatives drop the Nyquist rows/columns (already outside the 2/3 mask for products)
    ikx = 1j * spectral._odd_filter(kx, n, 0, 2, True)
    iky = 1j * spectral._odd_filter(ky, n, 1, 2, True)
    mask = spectral.dealias_mask((n, n), device=w.device)
    half_visc = 0.5 * dt * nu * k2
    numer = 1.0 - half_visc
    denom = 1.0 / (1.0 + half_visc)
    f_hat = 0.0 if forcing is None else torch.fft.rfft2(forcing.to(device=w.device, dtype=dtype))

    def explicit(w_hat):
        psi_hat = w_hat * inv_k2
        ux = torch.fft.irfft2(iky * psi_hat, s=(n, n))
        uy = torch.fft.irfft2(-ikx * psi_hat, s=(n, n))
        wx = torch.fft.irfft2(ikx * w_hat, s=(n, n))
        wy = torch.fft.irfft2(iky * w_hat, s=(n, n))
        return f_hat - torch.fft.rfft2(ux * wx + uy * wy) * mask

    w_hat = torch.fft.rfft2(w)
    out = []
    step = 0
    for target in steps_at:
        while step < target:
            n0 = explicit(w_hat)
            if scheme == "euler":
                w_hat = (numer * w_hat + dt * n0) * denom
            else:
                pred = (numer * w_hat + dt * n0) * denom
                w_hat = (numer * w_hat + (0.5 * dt) * (n0 + explicit(pred))) * denom
            step += 1
        snap = torch.fft.irfft2(w_hat, s=(n, n)).to(dtype)
        if not torch.isfinite(snap).all():
            raise RuntimeError(f"solve_navier_stokes: the solution blew up before t={target * dt:.4g}; "
                               "reduce dt (CFL) or raise the resolution")
        out.append(snap)
    result = torch.stack(out, dim=1)
    return result[0] if squeeze else result
