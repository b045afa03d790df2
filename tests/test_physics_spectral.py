"""Spectral calculus against analytic derivatives; identities; float64 gradcheck."""

from __future__ import annotations

import math

import pytest
import torch

from pdesurrogates.physics import spectral


def _mesh2d(n, length=1.0):
    x = torch.arange(n, dtype=torch.float64) * length / n
    return torch.meshgrid(x, x, indexing="ij")


def test_derivatives_of_smooth_periodic_function_are_spectrally_exact() -> None:
    """u = exp(sin(2 pi x) + cos(2 pi y)) on the unit torus: analytic du/dx, du/dy, Laplacian."""
    n = 48
    x, y = _mesh2d(n)
    s, c = torch.sin(2 * math.pi * x), torch.cos(2 * math.pi * y)
    u = torch.exp(s + c)
    ux = 2 * math.pi * torch.cos(2 * math.pi * x) * u
    uy = -2 * math.pi * torch.sin(2 * math.pi * y) * u
    uxx = (4 * math.pi**2) * (torch.cos(2 * math.pi * x) ** 2 - s) * u
    uyy = (4 * math.pi**2) * (torch.sin(2 * math.pi * y) ** 2 - c) * u
    batch = torch.stack([u, 2 * u])[:, None]  # (B, C, H, W)
    grad = spectral.gradient(batch, 2)
    assert grad.shape == (2, 1, 2, n, n)
    assert torch.allclose(grad[0, 0, 0], ux, atol=1e-9 * ux.abs().max())
    assert torch.allclose(grad[1, 0, 1], 2 * uy, atol=2e-9 * uy.abs().max())
    lap = spectral.laplacian(batch, 2)
    assert torch.allclose(lap[0, 0], uxx + uyy, atol=1e-8 * (uxx + uyy).abs().max())
    assert torch.allclose(spectral.derivative(u, (2, 0)), uxx, atol=1e-8 * uxx.abs().max())


def test_error_decays_spectrally_with_resolution() -> None:
    errors = []
    for n in (8, 16, 32):
        x = torch.arange(n, dtype=torch.float64) / n
        u = torch.exp(torch.sin(2 * math.pi * x))
        exact = 2 * math.pi * torch.cos(2 * math.pi * x) * u
        errors.append(float((spectral.derivative(u, (1,)) - exact).abs().max()))
    assert errors[1] < 1e-3 * errors[0] and errors[2] < 1e-10


def test_inverse_laplacian_inverts_laplacian_and_solves_poisson() -> None:
    n, L = 32, 2 * math.pi
    x, y = _mesh2d(n, L)
    f = torch.sin(3 * x) * torch.cos(2 * y) + 0.7  # the constant is removed
    u = spectral.inverse_laplacian(f, 2, length=L)
    assert torch.allclose(u, -torch.sin(3 * x) * torch.cos(2 * y) / 13.0, atol=1e-12)
    g = torch.randn(3, n, n, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    g = g - g.mean(dim=(-2, -1), keepdim=True)
    assert torch.allclose(spectral.laplacian(spectral.inverse_laplacian(g, 2), 2), g, atol=1e-10)


def test_divergence_of_curl_free_and_3d() -> None:
    n = 12
    grid1 = torch.arange(n, dtype=torch.float64) / n
    x, y, z = torch.meshgrid(grid1, grid1, grid1, indexing="ij")
    u = torch.sin(2 * math.pi * x) * torch.cos(4 * math.pi * y) * torch.sin(2 * math.pi * z)
    # div grad = Laplacian
    assert torch.allclose(spectral.divergence(spectral.gradient(u, 3), 3), spectral.laplacian(u, 3),
                          atol=1e-9)
    assert torch.allclose(spectral.laplacian(u, 3), -(4 + 16 + 4) * math.pi**2 * u, atol=1e-9)


def test_dealias_mask_two_thirds_rule() -> None:
    mask = spectral.dealias_mask((64, 64))
    assert mask.shape == (64, 33)
    assert int(mask[:, 0].sum()) == 43 and int(mask[0].sum()) == 22  # |m| <= 21
    # a product of two kept modes never aliases onto a kept mode: check 1D by brute force
    n = 12
    m1d = spectral.dealias_mask((n,), half=False)
    kept = [m for m in range(-(n // 2), n - n // 2) if m1d[m % n]]
    for a in kept:
        for b in kept:
            s = a + b
            if abs(s) >= n / 2:  # would alias onto s -/+ n
                alias = s - n if s > 0 else s + n
                assert alias not in kept


def test_gradcheck_float64() -> None:
    u = torch.randn(2, 6, 5, dtype=torch.float64, requires_grad=True,
                    generator=torch.Generator().manual_seed(1))
    assert torch.autograd.gradcheck(lambda v: spectral.gradient(v, 2), (u,))
    assert torch.autograd.gradcheck(lambda v: spectral.inverse_laplacian(v, 2), (u,))
    assert torch.autograd.gradcheck(lambda v: spectral.dealias(v, 2), (u,))


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="fewer than"):
        spectral.laplacian(torch.zeros(4), 2)
    with pytest.raises(ValueError, match="components"):
        spectral.divergence(torch.zeros(3, 8, 8), 2)
