"""Gaussian random fields against their analytic covariance; per-sample determinism."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pdesurrogates.physics.random import (
    covariance_eigenvalues,
    gaussian_random_field,
    sample_generator,
    sample_seed,
)


def test_sample_generator_is_a_function_of_seed_and_index() -> None:
    a = torch.randn(5, generator=sample_generator(11, 3))
    b = torch.randn(5, generator=sample_generator(11, 3))
    c = torch.randn(5, generator=sample_generator(11, 4))
    d = torch.randn(5, generator=sample_generator(12, 3))
    assert torch.equal(a, b)
    assert not torch.equal(a, c) and not torch.equal(a, d)
    assert 0 <= sample_seed(2**40, 10**9) < 2**63


@pytest.mark.parametrize("bad", [-1, 1.5, True])
def test_sample_generator_refuses_bad_seed(bad) -> None:
    with pytest.raises((ValueError, TypeError), match="seed"):
        sample_generator(bad, 0)


def test_periodic_covariance_matches_analytic_cosine_series() -> None:
    """Empirical covariance of a 1D periodic field vs sum_k lambda_k cos(2 pi k (x - y))."""
    n, alpha, tau, sigma = 8, 1.5, 2.0, 1.7
    u = gaussian_random_field((n,), alpha, tau, sigma, generator=sample_generator(0, 0),
                              batch_size=40000).numpy()
    empirical = u.T @ u / u.shape[0]
    x = np.arange(n) / n
    exact = np.zeros((n, n))
    for m in range(-(n // 2), (n + 1) // 2):  # the n represented frequencies
        if m == 0:
            continue
        lam = sigma**2 * ((2 * math.pi * m) ** 2 + tau**2) ** (-alpha)
        exact += lam * np.cos(2 * math.pi * m * (x[:, None] - x[None, :]))
    scale = exact[0, 0]
    assert np.max(np.abs(empirical - exact)) < 0.04 * scale  # ~ 5 standard errors


def test_neumann_covariance_matches_analytic_cosine_series() -> None:
    n, alpha, tau = 6, 2.0, 3.0
    sigma = tau ** (alpha - 0.5)
    u = gaussian_random_field((n,), alpha, tau, boundary="neumann", generator=sample_generator(0, 1),
                              batch_size=40000).numpy()
    empirical = u.T @ u / u.shape[0]
    x = np.linspace(0.0, 1.0, n)
    exact = np.zeros((n, n))
    for m in range(1, n):
        lam = sigma**2 * ((math.pi * m) ** 2 + tau**2) ** (-alpha)
        phi = math.sqrt(2.0) * np.cos(math.pi * m * x)
        exact += lam * np.outer(phi, phi)
    assert np.max(np.abs(empirical - exact)) < 0.04 * np.max(np.diag(exact))


def test_2d_field_variance_and_dtype() -> None:
    shape, alpha, tau = (16, 16), 2.5, 7.0
    u = gaussian_random_field(shape, alpha, tau, generator=sample_generator(1, 0), batch_size=2000,
                              dtype=torch.float32)
    assert u.dtype == torch.float32 and u.shape == (2000, 16, 16)
    lam = covariance_eigenvalues(shape, alpha, tau)
    expected = lam.sum() - lam.flat[0]
    assert abs(float(u.double().pow(2).mean()) / expected - 1.0) < 0.05
    assert torch.allclose(u.mean(dim=(1, 2)), torch.zeros(2000), atol=1e-5)


def test_field_refuses_nonphysical_parameters() -> None:
    with pytest.raises(ValueError, match="alpha"):
        gaussian_random_field((8, 8), alpha=1.0, tau=3.0)
    with pytest.raises(ValueError, match="boundary"):
        gaussian_random_field((8,), alpha=2.0, tau=3.0, boundary="dirichlet")
