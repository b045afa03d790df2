"""Reproducible randomness and Gaussian random fields.

Every random draw of a dataset sample comes from :func:`sample_generator`, a ``torch.Generator``
that depends only on ``(seed, index)``. A sample therefore has the same arrays whether it is
generated alone, in a batch, in another worker, or after a resume.

:func:`gaussian_random_field` samples a zero-mean Gaussian field with covariance operator
``sigma^2 (-Laplace + tau^2 I)^(-alpha)`` spectrally: the field is expanded in the eigenfunctions of
the Laplacian on the domain (Fourier modes for periodic boundaries, cosines for Neumann
boundaries), each coefficient an independent normal scaled by the square root of the covariance
eigenvalue. This is the prior of the FNO datasets (Li et al., "Fourier Neural Operator for
Parametric Partial Differential Equations", ICLR 2021); its default amplitude
``sigma = tau^(alpha - d/2)`` follows their generators and keeps the field of order one.
``sigma`` is the amplitude in front of the square-root operator, as in their code
(``GaussianRF``/``GRF1``, whose ``sqrt(2)`` and coefficient normalisation give this same
covariance in the versions that draw complex normals with unit total variance; older variants of
their script differ by a factor ``sqrt(2)`` in amplitude).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

_MASK63 = (1 << 63) - 1


def _check_nonnegative_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    return int(value)


def sample_seed(seed: int, index: int) -> int:
    """The 63-bit integer seed of sample ``index`` of a dataset generated with ``seed``.

    Derived with :class:`numpy.random.SeedSequence` (entropy ``seed``, spawn key ``(index,)``), so
    neighbouring ``(seed, index)`` pairs give statistically independent streams.

    >>> sample_seed(0, 1) == sample_seed(0, 1) != sample_seed(0, 2)
    True
    """
    seed = _check_nonnegative_int(seed, "seed")
    index = _check_nonnegative_int(index, "index")
    words = np.random.SeedSequence(entropy=seed, spawn_key=(index,)).generate_state(2, np.uint32)
    return ((int(words[0]) << 32) | int(words[1])) & _MASK63


def sample_generator(seed: int, index: int, device="cpu") -> torch.Generator:
    """A fresh ``torch.Generator`` for sample ``index`` of a dataset generated with ``seed``.

    Parameters
    ----------
    seed, index : int
        Non-negative integers.
    device : str or torch.device
        Device of the generator. Note that CPU and CUDA generators seeded alike give different
        streams; the problems in :mod:`pdesurrogates.physics.problems` always draw on the CPU and
        move the draws, so their samples do not depend on the device either.

    >>> g1, g2 = sample_generator(3, 7), sample_generator(3, 7)
    >>> bool(torch.equal(torch.randn(4, generator=g1), torch.randn(4, generator=g2)))
    True
    """
    gen = torch.Generator(device=torch.device(device))
    gen.manual_seed(sample_seed(seed, index))
    return gen


def _default_sigma(alpha: float, tau: float, ndim: int) -> float:
    return float(tau) ** (alpha - ndim / 2.0)


def covariance_eigenvalues(
    shape: Sequence[int], alpha: float, tau: float, sigma: float | None = None,
    boundary: str = "periodic", length: float = 1.0,
) -> np.ndarray:
    """Eigenvalues ``sigma^2 (|k|^2 + tau^2)^(-alpha)`` of the covariance, one per mode.

    Modes are indexed like :func:`gaussian_random_field` draws them: FFT order for periodic
    (``|k|^2 = (2 pi / L)^2 sum m_d^2``), cosine order ``m = 0..n-1`` for Neumann
    (``|k|^2 = (pi / L)^2 sum m_d^2``). The zero mode is included (it is removed from samples when
    ``zero_mean``).
    """
    shape = tuple(int(s) for s in shape)
    sigma = _default_sigma(alpha, tau, len(shape)) if sigma is None else float(sigma)
    if boundary == "periodic":
        freqs = [np.fft.fftfreq(n, d=1.0 / n) * (2.0 * math.pi / length) for n in shape]
    elif boundary == "neumann":
        freqs = [np.arange(n) * (math.pi / length) for n in shape]
    else:
        raise ValueError(f"boundary must be 'periodic' or 'neumann', got {boundary!r}")
    k2 = sum(k**2 for k in np.meshgrid(*freqs, indexing="ij"))
    return sigma**2 * (k2 + tau**2) ** (-alpha)


def gaussian_random_field(
    shape: Sequence[int],
    alpha: float,
    tau: float,
    sigma: float | None = None,
    boundary: str = "periodic",
    generator: torch.Generator | None = None,
    *,
    batch_size: int | None = None,
    length: float = 1.0,
    zero_mean: bool = True,
    dtype: torch.dtype = torch.float64,
    device=None,
) -> torch.Tensor:
    """Sample a Gaussian random field with covariance ``sigma^2 (-Laplace + tau^2 I)^(-alpha)``.

    The field is ``u(x) = sum_k sqrt(lambda_k) xi_k phi_k(x)`` with ``phi_k`` the
    ``L^2``-orthonormal eigenfunctions of ``-Laplace`` on the domain, ``lambda_k`` the covariance
    eigenvalues (:func:`covariance_eigenvalues`) and ``xi_k`` independent standard normals,
    evaluated at the nodes of the grid:

    * ``"periodic"``: the torus ``[0, L)^d`` at nodes ``j L / n``; Fourier modes
      ``|k| = 2 pi m / L`` for the ``n`` FFT frequencies ``m`` per axis (an inverse FFT).
    * ``"neumann"``: the box ``[0, L]^d`` at nodes ``j L / (n - 1)`` (both ends); cosine modes
      ``prod_d c_m cos(pi m x_d / L)``, ``c_0 = 1``, ``c_m = sqrt(2)``, ``m = 0..n-1`` (a DCT-I,
      applied here as a matrix product per axis so it runs on any device). This is the prior of the
      FNO Darcy coefficient.

    The pointwise variance is therefore ``sum_k lambda_k`` over the represented modes.

    Parameters
    ----------
    shape : sequence of int
        Grid nodes per dimension, 1 to 3 dimensions.
    alpha, tau : float
        Smoothness exponent (> d/2 for a field with finite variance) and inverse length scale
        (>= 0; > 0 when the zero mode is kept).
    sigma : float, optional
        Amplitude; default ``tau^(alpha - d/2)``.
    boundary : {"periodic", "neumann"}
    generator : torch.Generator, optional
        Source of the normal draws; the draws are made on the generator's device.
    batch_size : int, optional
        Draw this many independent fields; the result then has a leading batch axis.
    length : float
        Side length of the domain.
    zero_mean : bool
        Drop the constant mode (as the FNO generators do).
    dtype : torch.dtype
        Floating dtype of the result (computation is in float64).
    device : optional
        Device of the result; default the generator's device.

    Returns
    -------
    torch.Tensor
        ``(*shape)`` or ``(batch_size, *shape)``.

    >>> u = gaussian_random_field((32, 32), alpha=2.0, tau=3.0, generator=sample_generator(0, 0))
    >>> tuple(u.shape), abs(float(u.mean())) < 1e-12
    ((32, 32), True)
    """
    shape = tuple(int(s) for s in shape)
    ndim = len(shape)
    if not 1 <= ndim <= 3 or any(s < 2 for s in shape):
        raise ValueError(f"gaussian_random_field: shape must have 1-3 axes of >= 2 nodes, got {shape}")
    if not alpha > ndim / 2.0:
        raise ValueError(f"gaussian_random_field: alpha must exceed d/2 = {ndim / 2} for a field "
                         f"with finite variance, got {alpha}")
    if tau < 0 or (tau == 0 and not zero_mean):
        raise ValueError(f"gaussian_random_field: tau must be > 0 (>= 0 with zero_mean), got {tau}")
    if sigma is not None and sigma < 0:
        raise ValueError(f"gaussian_random_field: sigma must be >= 0, got {sigma}")
    if length <= 0:
        raise ValueError(f"gaussian_random_field: length must be positive, got {length}")
    gen_device = generator.device if generator is not None else torch.device("cpu")
    out_device = torch.device(device) if device is not None else gen_device
    batch = 1 if batch_size is None else int(batch_size)
    with np.errstate(divide="ignore"):
        eig = covariance_eigenvalues(shape, alpha, tau, sigma, boundary, length)
    sqrt_eig = torch.as_tensor(np.sqrt(eig), dtype=torch.float64)
    if zero_mean:
        sqrt_eig.view(-1)[0] = 0.0
    sqrt_eig = sqrt_eig.to(out_device)
    n_total = math.prod(shape)
    if boundary == "periodic":
        noise = torch.randn((batch, *shape, 2), generator=generator, dtype=torch.float64,
                            device=gen_device).to(out_device)
        coeff = torch.complex(noise[..., 0], noise[..., 1]) * sqrt_eig
        # Re(sum_k xi_k e^{ikx}) with complex standard xi_k has exactly covariance sum_k lambda_k
        # cos(k (x - y)); ifftn divides by n_total, which we undo.
        field = torch.fft.ifftn(coeff, dim=tuple(range(1, ndim + 1))).real * n_total
    else:
        noise = torch.randn((batch, *shape), generator=generator, dtype=torch.float64,
                            device=gen_device).to(out_device)
        field = noise * sqrt_eig
        for axis, n in enumerate(shape):
            basis = _cosine_basis(n, out_device)  # (nodes, modes)
            field = torch.movedim(torch.tensordot(field, basis, dims=([axis + 1], [1])), -1, axis + 1)
    field = field.to(dtype)
    return field[0] if batch_size is None else field


def _cosine_basis(n: int, device) -> torch.Tensor:
    """``B[j, m] = c_m cos(pi m j / (n - 1))``: orthonormal cosines of ``[0, 1]`` at the nodes."""
    j = torch.arange(n, dtype=torch.float64, device=device)
    basis = torch.cos(math.pi * j[:, None] * j[None, :] / (n - 1))
    basis[:, 1:] *= math.sqrt(2.0)
    return basis
