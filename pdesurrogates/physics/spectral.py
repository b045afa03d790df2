"""Spectral (Fourier) calculus on periodic grids, in torch: batched, differentiable, any device.

Fields are real tensors whose last ``ndim`` axes are a periodic grid of the box
``[0, L_1) x ... x [0, L_d)`` sampled at nodes ``j L / n`` (the :class:`~pdesurrogates.physics.grid.Grid`
``"periodic"`` convention); leading axes (batch, channel, time) are carried along. Derivatives are
exact for every represented Fourier mode, so they are spectrally accurate for smooth periodic
fields. Odd derivatives drop the Nyquist mode of an even-sized axis (it has no real derivative).

The same functions serve the reference solvers (Burgers, Navier–Stokes) and the physics-informed
losses, so a reference solution has a residual that vanishes up to time-stepping error.

>>> x = torch.arange(16, dtype=torch.float64) / 16
>>> u = torch.sin(2 * math.pi * x)
>>> bool(torch.allclose(derivative(u, (1,)), 2 * math.pi * torch.cos(2 * math.pi * x)))
True
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch


def _lengths(length, ndim: int) -> tuple[float, ...]:
    if isinstance(length, (int, float)):
        return (float(length),) * ndim
    length = tuple(float(v) for v in length)
    if len(length) != ndim:
        raise ValueError(f"length {length} does not match ndim {ndim}")
    return length


def _check(u: torch.Tensor, ndim: int, name: str = "u") -> None:
    if not 1 <= ndim <= 3:
        raise ValueError(f"ndim must be 1, 2 or 3, got {ndim}")
    if u.ndim < ndim:
        raise ValueError(f"{name} has shape {tuple(u.shape)}: fewer than ndim={ndim} axes")
    if u.is_complex():
        raise ValueError(f"{name} must be a real tensor, got {u.dtype}")


def wavenumbers(shape: Sequence[int], length=1.0, *, device=None, dtype=torch.float64,
                half: bool = True) -> list[torch.Tensor]:
    """Angular wavenumbers ``2 pi m / L`` per axis, shaped to broadcast over a spectrum.

    Parameters
    ----------
    shape : sequence of int
        Periodic grid shape ``(n_1, ..., n_d)``.
    length : float or sequence of float
        Box side lengths.
    half : bool
        If True the last axis holds the ``n_d // 2 + 1`` non-negative frequencies of ``rfftn``.

    Returns
    -------
    list of torch.Tensor
        ``d`` tensors, the ``i``-th of shape ``(1, .., m_i, .., 1)``.
    """
    shape = tuple(int(n) for n in shape)
    lengths = _lengths(length, len(shape))
    out = []
    for axis, (n, L) in enumerate(zip(shape, lengths)):
        if half and axis == len(shape) - 1:
            m = torch.fft.rfftfreq(n, d=1.0 / n, device=device, dtype=dtype)
        else:
            m = torch.fft.fftfreq(n, d=1.0 / n, device=device, dtype=dtype)
        view = [1] * len(shape)
        view[axis] = m.numel()
        out.append((2.0 * math.pi / L) * m.reshape(view))
    return out


def dealias_mask(shape: Sequence[int], *, device=None, half: bool = True) -> torch.Tensor:
    """Boolean mask of the modes kept by the 2/3 rule: ``|m_i| < n_i / 3`` on every axis.

    Quadratic products of fields restricted to these modes alias only onto discarded modes
    (Orszag 1971).

    Returns
    -------
    torch.Tensor
        bool, shape of the (``rfftn`` if ``half``) spectrum.
    """
    shape = tuple(int(n) for n in shape)
    mask = None
    for axis, n in enumerate(shape):
        if half and axis == len(shape) - 1:
            m = torch.fft.rfftfreq(n, d=1.0 / n, device=device)
        else:
            m = torch.fft.fftfreq(n, d=1.0 / n, device=device)
        view = [1] * len(shape)
        view[axis] = m.numel()
        keep = (3.0 * m.abs() < n).reshape(view)
        mask = keep if mask is None else mask & keep
    return mask


def _odd_filter(k: torch.Tensor, n: int, axis: int, ndim: int, half: bool) -> torch.Tensor:
    """Zero the Nyquist wavenumber of an even axis (for odd derivatives)."""
    if n % 2:
        return k
    k = k.clone()
    index = [0] * ndim
    index[axis] = n // 2
    k[tuple(index)] = 0.0
    return k


def rfft(u: torch.Tensor, ndim: int) -> torch.Tensor:
    """``rfftn`` over the last ``ndim`` axes."""
    return torch.fft.rfftn(u, dim=tuple(range(-ndim, 0)))


def irfft(u_hat: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """Inverse of :func:`rfft` onto the grid ``shape``."""
    shape = tuple(int(n) for n in shape)
    return torch.fft.irfftn(u_hat, s=shape, dim=tuple(range(-len(shape), 0)))


def derivative(u: torch.Tensor, orders: Sequence[int], length=1.0) -> torch.Tensor:
    """Mixed partial derivative ``d^{o_1}/dx_1^{o_1} ... u`` of a periodic field.

    Parameters
    ----------
    u : torch.Tensor
        ``(..., *spatial)`` real; ``len(orders)`` trailing axes are spatial.
    orders : sequence of int
        Derivative order per spatial axis, e.g. ``(1, 0)`` for ``d/dx`` in 2D.
    length : float or sequence

    Returns
    -------
    torch.Tensor
        Same shape and dtype as ``u``.
    """
    ndim = len(orders)
    _check(u, ndim)
    shape = tuple(u.shape[-ndim:])
    ks = wavenumbers(shape, length, device=u.device, dtype=_real_dtype(u))
    symbol = torch.ones((), dtype=torch.complex128 if u.dtype == torch.float64 else torch.complex64,
                        device=u.device)
    for axis, (order, k) in enumerate(zip(orders, ks)):
        if order < 0:
            raise ValueError(f"derivative orders must be >= 0, got {tuple(orders)}")
        if order == 0:
            continue
        if order % 2:
            k = _odd_filter(k, shape[axis], axis, ndim, half=True)
        symbol = symbol * (1j * k) ** order
    return irfft(rfft(u, ndim) * symbol, shape).to(u.dtype)


def gradient(u: torch.Tensor, ndim: int, length=1.0) -> torch.Tensor:
    """Spectral gradient: ``(..., *spatial) -> (..., ndim, *spatial)``."""
    _check(u, ndim)
    shape = tuple(u.shape[-ndim:])
    u_hat = rfft(u, ndim)
    ks = wavenumbers(shape, length, device=u.device, dtype=_real_dtype(u))
    parts = []
    for axis, k in enumerate(ks):
        k = _odd_filter(k, shape[axis], axis, ndim, half=True)
        parts.append(irfft(1j * k * u_hat, shape))
    return torch.stack(parts, dim=-ndim - 1).to(u.dtype)


def divergence(v: torch.Tensor, ndim: int, length=1.0) -> torch.Tensor:
    """Spectral divergence: ``(..., ndim, *spatial) -> (..., *spatial)``."""
    _check(v, ndim, "v")
    if v.ndim < ndim + 1 or v.shape[-ndim - 1] != ndim:
        raise ValueError(f"divergence: v has shape {tuple(v.shape)}; axis -{ndim + 1} must have "
                         f"{ndim} components")
    out = 0
    for axis in range(ndim):
        orders = [0] * ndim
        orders[axis] = 1
        out = out + derivative(v.select(-ndim - 1, axis), orders, length)
    return out


def laplacian_symbol(shape: Sequence[int], length=1.0, *, device=None,
                     dtype=torch.float64) -> torch.Tensor:
    """``-|k|^2`` on the ``rfftn`` spectrum of ``shape``."""
    ks = wavenumbers(shape, length, device=device, dtype=dtype)
    return -sum(k**2 for k in ks)


def laplacian(u: torch.Tensor, ndim: int, length=1.0) -> torch.Tensor:
    """Spectral Laplacian over the last ``ndim`` axes (same shape as ``u``)."""
    _check(u, ndim)
    shape = tuple(u.shape[-ndim:])
    sym = laplacian_symbol(shape, length, device=u.device, dtype=_real_dtype(u))
    return irfft(rfft(u, ndim) * sym, shape).to(u.dtype)


def inverse_laplacian(f: torch.Tensor, ndim: int, length=1.0) -> torch.Tensor:
    """The zero-mean ``u`` with ``Laplace u = f - mean(f)`` (periodic Poisson solve).

    The mean of ``f`` is removed first: a periodic ``Laplace u = f`` has a solution only when
    ``f`` has zero mean, and then one up to a constant, fixed here by ``mean(u) = 0``.
    """
    _check(f, ndim, "f")
    shape = tuple(f.shape[-ndim:])
    sym = laplacian_symbol(shape, length, device=f.device, dtype=_real_dtype(f))
    inv = torch.where(sym == 0, torch.zeros_like(sym), 1.0 / torch.where(sym == 0, torch.ones_like(sym), sym))
    return irfft(rfft(f, ndim) * inv, shape).to(f.dtype)


def dealias(u: torch.Tensor, ndim: int) -> torch.Tensor:
    """Project ``u`` onto the modes kept by the 2/3 rule (:func:`dealias_mask`)."""
    _check(u, ndim)
    shape = tuple(u.shape[-ndim:])
    return irfft(rfft(u, ndim) * dealias_mask(shape, device=u.device), shape).to(u.dtype)


def _real_dtype(u: torch.Tensor) -> torch.dtype:
    return torch.float64 if u.dtype == torch.float64 else torch.float32
