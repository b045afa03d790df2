"""Viscous Burgers equation ``u_t + u u_x = nu u_xx`` on a periodic interval, pseudo-spectral.

Space: Fourier collocation at ``n`` nodes of ``[0, L)``; the nonlinear term ``-(u^2 / 2)_x`` is
formed from the 2/3-dealiased field and dealiased again (Orszag's rule). Time: the fourth-order
exponential time-differencing Runge–Kutta scheme ETDRK4 of Cox & Matthews (2002), with its
coefficients evaluated by the contour integrals of Kassam & Trefethen (2005), which treats the stiff
diffusion exactly. The advection is explicit: the step must satisfy
``dt * max|u| * k_eff <= CFL_LIMIT`` where ``k_eff = min(k_max, 2 max|u| / nu)``, with
``k_max = 2 pi (n / 3) / L`` the largest kept wavenumber. Above ``k ~ max|u| / nu`` diffusion
dominates advection and the exponential integrator damps those modes, so only the advective modes
below it limit the step. :func:`solve_burgers` picks such a step (``max|u|`` cannot grow for
Burgers) and refuses a user step that violates it.

The FNO-paper setting (Li et al., ICLR 2021): ``L = 1``, ``nu = 0.1``,
``u0 ~ N(0, 625 (-Laplace + 25 I)^(-2))``, 8192 nodes, ``t = 1``. As in their NS prior, whose
``7^(3/2)`` is the amplitude ``sigma`` of their generator code, we read 625 as the amplitude:
``sigma = 625, tau = 5, alpha = 2`` in :func:`~pdesurrogates.physics.random.gaussian_random_field`.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch

from pdesurrogates.physics import spectral

CFL_LIMIT = 2.0  # ETDRK4 along the imaginary axis is stable to about 2.8; keep a margin


def _etdrk4_coefficients(lin: torch.Tensor, h: float, contour_points: int = 32):
    """ETDRK4 coefficient arrays for the diagonal linear operator ``lin`` (real, <= 0)."""
    lin = lin.to(torch.float64)
    hl = h * lin
    j = torch.arange(1, contour_points + 1, dtype=torch.float64, device=lin.device)
    roots = torch.exp(1j * math.pi * (j - 0.5) / contour_points)
    r = hl[..., None].to(torch.complex128) + roots
    er = torch.exp(r)
    q = h * ((torch.exp(r / 2) - 1) / r).mean(-1).real
    f1 = h * ((-4 - r + er * (4 - 3 * r + r**2)) / r**3).mean(-1).real
    f2 = h * ((2 + r + er * (r - 2)) / r**3).mean(-1).real
    f3 = h * ((-4 - 3 * r - r**2 + er * (4 - r)) / r**3).mean(-1).real
    return torch.exp(hl), torch.exp(hl / 2), q, f1, f2, f3


def max_stable_dt(u_max: float, n: int, length: float = 1.0, nu: float = 0.0) -> float:
    """Largest step with ``dt * u_max * k_eff <= CFL_LIMIT``, ``k_eff = min(k_max, 2 u_max / nu)``."""
    k_eff = 2.0 * math.pi * (n // 3) / length
    if nu > 0:
        k_eff = min(k_eff, 2.0 * u_max / nu)
    return math.inf if u_max == 0 else CFL_LIMIT / (u_max * k_eff)


def solve_burgers(
    u0: torch.Tensor,
    nu: float,
    times: Sequence[float],
    *,
    dt: float | None = None,
    length: float = 1.0,
) -> torch.Tensor:
    """Integrate Burgers from ``u0`` and return the solution at ``times``.

    Parameters
    ----------
    u0 : torch.Tensor
        ``(B, n)`` or ``(n,)`` initial values at nodes ``j L / n``; any device; computed in float64.
    nu : float
        Viscosity, > 0.
    times : sequence of float
        Increasing output times, ``>= 0``.
    dt : float, optional
        Maximal time step; default ``0.5 * max_stable_dt`` (and at most ``1e-2``). Each interval
        between output times is split into equal steps no longer than ``dt``.
    length : float
        Period ``L``.

    Returns
    -------
    torch.Tensor
        ``(B, len(times), n)`` (or ``(len(times), n)``), float64, on ``u0``'s device.
    """
    if not nu > 0:
        raise ValueError(f"solve_burgers: viscosity nu must be > 0, got {nu}")
    squeeze = u0.ndim == 1
    u = u0[None] if squeeze else u0
    if u.ndim != 2:
        raise ValueError(f"solve_burgers: u0 must be (B, n) or (n,), got {tuple(u0.shape)}")
    u = u.to(torch.float64)
    n = u.shape[-1]
    times = [float(t) for t in times]
    if not times or times[0] < 0 or any(b <= a for a, b in itertools.pairwise(times)):
        raise ValueError(f"solve_burgers: times must be non-empty, >= 0 and increasing, got {times}")
    u_max = float(u.detach().abs().max())
    limit = max_stable_dt(u_max, n, length, nu)
    if dt is None:
        dt = min(0.5 * limit, 1e-2)
    elif not dt > 0:
        raise ValueError(f"solve_burgers: dt must be > 0, got {dt}")
    elif dt > limit:
        raise ValueError(
            f"solve_burgers: dt={dt:.3g} violates the CFL bound dt * max|u0| * k_eff <= {CFL_LIMIT} "
            f"(max|u0|={u_max:.3g}, n={n}): use dt <= {limit:.3g}")
    k = spectral.wavenumbers((n,), length, device=u.device)[0]
    mask = spectral.dealias_mask((n,), device=u.device)
    lin = -nu * k**2
    ik_half = -0.5j * k * mask  # N(v) = -1/2 i k FFT(u^2), dealiased
    if n % 2 == 0:
        ik_half[..., n // 2] = 0.0

    def nonlinear(v_hat):
        w = torch.fft.irfft(v_hat * mask, n=n)
        return ik_half * torch.fft.rfft(w * w)

    v = torch.fft.rfft(u)
    out = []
    t_now, cache = 0.0, {}
    for t_out in times:
        span = t_out - t_now
        if span > 0:
            steps = max(1, math.ceil(span / dt - 1e-9))
            h = span / steps
            key = round(h, 15)
            if key not in cache:
                cache = {key: _etdrk4_coefficients(lin, h)}
            e, e2, q, f1, f2, f3 = cache[key]
            for _ in range(steps):
                nv = nonlinear(v)
                a = e2 * v + q * nv
                na = nonlinear(a)
                b = e2 * v + q * na
                nb = nonlinear(b)
                c = e2 * a + q * (2 * nb - nv)
                nc = nonlinear(c)
                v = e * v + nv * f1 + 2 * (na + nb) * f2 + nc * f3
            t_now = t_out
        out.append(torch.fft.irfft(v, n=n))
    result = torch.stack(out, dim=1)
    if not torch.isfinite(result).all():
        raise RuntimeError("solve_burgers: the solution blew up; reduce dt")
    return result[0] if squeeze else result
