"""Deep conjugate direction method (DCDM): a network that proposes search directions.

Kaneda, Akar, Chen, Kim, Teran, "A Deep Conjugate Direction Method for Iteratively Solving Linear
Systems", ICML 2023. A convolutional network ``f`` on the grid maps a normalised residual
``r / ||r||`` to a vector that approximates ``A^-1 r`` up to scale. Inside the solver the proposal is
A-orthogonalised against the last two search directions and followed by an exact line search, which
is flexible CG with truncation ``m = 2`` (:func:`pdesurrogates.linalg.fcg`). Because ``f`` is nonlinear
(ReLU), the preconditioner is flagged ``linear = False`` and is refused by plain PCG.

Training follows the paper: right-hand sides are random unit combinations of Ritz vectors of ``A``
(from Lanczos), with the low end of the spectrum weighted more heavily, and the loss is scale free:
for ``q = f(b)``, ``x = q (q.b) / (q.A q)`` and ``loss = ||b - A x||^2``.

Where we differ from the paper: 2D as well as 3D; the matrix is applied matrix-free with the
finite-volume stencil of :mod:`pdesurrogates.physics.operators`, so one network serves every grid
size; training sizes and step counts are small enough for a CPU.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from pdesurrogates.linalg.preconditioners import Preconditioner
from pdesurrogates.models import NETWORKS, save_checkpoint
from pdesurrogates.physics.grid import Grid
from pdesurrogates.physics.operators import apply_diffusion, diffusion_matrix, pad_dirichlet
from pdesurrogates.solvers.learned._checkpoint import load_network

__all__ = [
    "ConjugateDirectionNet",
    "DCDMConfig",
    "GridDiffusionOperator",
    "LearnedPreconditioner",
    "dcdm",
    "dcdm_loss",
    "ritz_training_set",
    "ritz_vectors",
]


@dataclass(frozen=True)
class DCDMConfig:
    """Architecture of :class:`ConjugateDirectionNet`.

    Attributes:
        ndim: 2 or 3 spatial dimensions.
        channels: feature channels (the paper uses 16).
        fine_blocks: residual blocks before the coarsening and after the upsampling (each).
        coarse_blocks: residual blocks on the coarse level.
        skip_levels: levels of a fixed multilevel skip path ``output = net(r) + s * smooth(r)`` with
            a learned scalar ``s`` (init 1), where ``smooth(r) = sum_l 4^(l - L) U_l P_l r``,
            ``l = 0..L``, ``P_l`` the ``2^l``-block average and ``U_l`` its piecewise-constant
            prolongation (a BPX-like preconditioner: SPD, eigenvalues in ``[4^-L, 4/3]`` where the
            blocks tile the grid). ``0`` disables the path (checkpoints written before this field).
        bias: convolution biases. Without biases the network is positively homogeneous
            (``f(c r) = c f(r)`` for ``c > 0``), so its output does not depend on how the input is
            scaled, which differs between grid sizes for a unit-norm residual.
    """

    name: str = "dcdm"
    ndim: int = 2
    channels: int = 16
    fine_blocks: int = 2
    coarse_blocks: int = 3
    skip_levels: int = 3
    bias: bool = False

    def __post_init__(self) -> None:
        if self.ndim not in (2, 3):
            raise ValueError(f"DCDMConfig.ndim must be 2 or 3, got {self.ndim}")
        if self.channels < 1 or self.fine_blocks < 0 or self.coarse_blocks < 0 or self.skip_levels < 0:
            raise ValueError(f"DCDMConfig sizes must be positive: {self}")


class _ResidualBlock(nn.Module):
    def __init__(self, conv: Callable[..., nn.Module], channels: int) -> None:
        super().__init__()
        self.conv1 = conv(channels, channels, 3, padding=1)
        self.conv2 = conv(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x + self.conv2(torch.relu(self.conv1(x))))


class ConjugateDirectionNet(nn.Module):
    """Residual CNN ``(B, 1, *spatial) -> (B, 1, *spatial)`` with one coarsening level.

    Zero padding matches the homogeneous Dirichlet boundary of the systems it is trained on.
    Any grid size works (odd sizes included): the coarse features are interpolated back to the
    fine size. With ``config.skip_levels > 0`` a fixed multilevel average of the input, scaled by a
    learned scalar, is added to the output and the final projection starts small, so an untrained
    network is already an SPD (BPX-like) preconditioner whose output is correlated with ``b``, so
    the gradient does not vanish as it does where ``f(b)`` is uncorrelated with ``b``. (On the
    low-mode-weighted Ritz samples the loss of this start is above 1, about 2-3 at 16^2 and 32^2,
    and training passes through 1 on the way down.)

    >>> net = ConjugateDirectionNet(DCDMConfig(ndim=2))
    >>> net(torch.randn(2, 1, 9, 11)).shape
    torch.Size([2, 1, 9, 11])
    """

    def __init__(self, config: DCDMConfig = DCDMConfig()) -> None:
        super().__init__()
        self.config = config
        conv_type = nn.Conv2d if config.ndim == 2 else nn.Conv3d
        conv = functools.partial(conv_type, bias=config.bias)
        c = config.channels
        self.lift = conv(1, c, 3, padding=1)
        self.fine_in = nn.Sequential(*[_ResidualBlock(conv, c) for _ in range(config.fine_blocks)])
        self.coarse = nn.Sequential(*[_ResidualBlock(conv, c) for _ in range(config.coarse_blocks)])
        self.fine_out = nn.Sequential(*[_ResidualBlock(conv, c) for _ in range(config.fine_blocks)])
        self.project = conv(c, 1, 1)
        self._pool = nn.functional.avg_pool2d if config.ndim == 2 else nn.functional.avg_pool3d
        self._mode = "bilinear" if config.ndim == 2 else "trilinear"
        if config.skip_levels > 0:
            self.skip_scale = nn.Parameter(torch.ones(()))
            with torch.no_grad():
                self.project.weight.mul_(1e-2)
                if self.project.bias is not None:
                    self.project.bias.zero_()

    def smooth(self, r: torch.Tensor) -> torch.Tensor:
        """The fixed skip path ``sum_l 4^(l - L) U_l P_l r`` (see :class:`DCDMConfig`)."""
        levels = self.config.skip_levels
        out = r * 4.0**-levels
        for level in range(1, levels + 1):
            block = tuple(min(2**level, n) for n in r.shape[2:])
            coarse = self._pool(r, block, ceil_mode=True)  # a partial edge block averages its own nodes
            for d in range(2, r.ndim):  # piecewise-constant prolongation: U_l P_l is an orthogonal projection
                coarse = coarse.repeat_interleave(block[d - 2], dim=d).narrow(d, 0, r.shape[d])
            out = out + 4.0 ** (level - levels) * coarse
        return out

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        nd = self.config.ndim
        if r.ndim != nd + 2 or r.shape[1] != 1:
            raise ValueError(
                f"ConjugateDirectionNet expects (batch, 1, *spatial) with {nd} spatial dims, "
                f"got shape {tuple(r.shape)}"
            )
        x = torch.relu(self.lift(r))
        fine = self.fine_in(x)
        coarse = self._pool(fine, 2, ceil_mode=True)
        coarse = self.coarse(coarse)
        up = nn.functional.interpolate(coarse, size=fine.shape[2:], mode=self._mode, align_corners=False)
        out = self.project(self.fine_out(fine + up))
        if self.config.skip_levels > 0:
            out = out + self.skip_scale * self.smooth(r)
        return out


class GridDiffusionOperator:
    """Matrix-free ``A = -div(a grad .)`` on the interior of a Dirichlet grid, on torch tensors.

    Applies exactly :func:`pdesurrogates.physics.operators.diffusion_matrix` (same stencil) to
    vectors shaped ``(B, n)`` or fields ``(B, 1, *interior)``.

    Args:
        grid: Dirichlet grid (boundary nodes included in ``grid.shape``).
        coefficient: node values ``grid.shape``; ``None`` for the Laplacian.
    """

    def __init__(self, grid: Grid, coefficient: np.ndarray | torch.Tensor | None = None) -> None:
        if grid.boundary != "dirichlet":
            raise ValueError(f"GridDiffusionOperator needs a Dirichlet grid, got {grid.boundary!r}")
        self.grid = grid
        a = np.ones(grid.shape) if coefficient is None else coefficient
        self.coefficient = torch.as_tensor(a, dtype=torch.float64)
        self.shape = grid.interior_shape
        self.n = math.prod(self.shape)

    def to_scipy(self) -> sp.csr_matrix:
        return diffusion_matrix(self.coefficient.cpu().numpy(), self.grid)

    def __call__(self, u: torch.Tensor) -> torch.Tensor:
        flat = u.ndim <= 2
        field = u.reshape(-1, 1, *self.shape) if flat else u
        a = self.coefficient.to(device=field.device, dtype=field.dtype)
        out = apply_diffusion(a, pad_dirichlet(field, self.grid.ndim), self.grid)
        return out.reshape(u.shape)


def ritz_vectors(
    matvec: Callable[[np.ndarray], np.ndarray], n: int, k: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Ritz pairs of an SPD operator from ``k`` Lanczos steps with full reorthogonalisation.

    Args:
        matvec: ``v (n,) -> A v (n,)``.
        n: size of ``A``.
        k: Lanczos steps (``k <= n``).
        seed: start vector seed.

    Returns:
        ``(values (k,), vectors (n, k))`` in ascending order of the Ritz values.
    """
    if not 1 <= k <= n:
        raise ValueError(f"ritz_vectors: need 1 <= k <= n, got k={k}, n={n}")
    rng = np.random.default_rng(seed)
    Q = np.zeros((n, k))
    alpha = np.zeros(k)
    beta = np.zeros(k)
    q = rng.standard_normal(n)
    q /= np.linalg.norm(q)
    for j in range(k):
        Q[:, j] = q
        w = matvec(q)
        alpha[j] = q @ w
        w -= Q[:, : j + 1] @ (Q[:, : j + 1].T @ w)  # full reorthogonalisation (twice is enough)
        w -= Q[:, : j + 1] @ (Q[:, : j + 1].T @ w)
        beta[j] = np.linalg.norm(w)
        if beta[j] < 1e-12 * max(1.0, abs(alpha[j])):
            Q, alpha, beta = Q[:, : j + 1], alpha[: j + 1], beta[: j + 1]
            break
        q = w / beta[j]
    T = np.diag(alpha) + np.diag(beta[:-1], 1) + np.diag(beta[:-1], -1)
    values, S = np.linalg.eigh(T)
    return values, Q @ S


def ritz_training_set(
    operator: GridDiffusionOperator,
    n_samples: int,
    n_ritz: int | None = None,
    low_fraction: float = 0.1,
    low_weight: float = 9.0,
    seed: int = 0,
) -> torch.Tensor:
    """Unit right-hand sides ``(n_samples, 1, *interior)`` built from Ritz vectors of ``A``.

    Each sample is ``sum_i w_i c_i v_i`` normalised, with ``c_i`` standard normal and
    ``w_i = low_weight`` for the lowest ``low_fraction`` of the Ritz values, 1 otherwise
    (the paper weights the low end of the spectrum nine times more).
    """
    n = operator.n
    k = min(n, n_ritz or min(n, 400))
    op64 = lambda v: operator(torch.from_numpy(v)[None]).numpy()[0]
    _, V = ritz_vectors(op64, n, k, seed=seed)
    weights = np.ones(k)
    weights[: max(1, round(low_fraction * k))] = low_weight
    rng = np.random.default_rng(seed + 1)
    coeffs = rng.standard_normal((n_samples, k)) * weights
    B = coeffs @ V.T
    B /= np.linalg.norm(B, axis=1, keepdims=True)
    return torch.from_numpy(B).float().reshape(n_samples, 1, *operator.shape)


def dcdm_loss(q: torch.Tensor, b: torch.Tensor, apply_A: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """Scale-free DCDM loss ``mean ||b - A x||^2`` with ``x = q (q.b)/(q.A q)``.

    Args:
        q: network outputs ``(B, 1, *spatial)``.
        b: right-hand sides ``(B, 1, *spatial)`` (unit norm).
        apply_A: batched operator on fields.
    """
    Aq = apply_A(q)
    dims = tuple(range(1, q.ndim))
    qb = (q * b).sum(dims, keepdim=True)
    qAq = (q * Aq).sum(dims, keepdim=True).clamp_min(1e-30)
    residual = b - (qb / qAq) * Aq
    return residual.pow(2).sum(dims).mean()


class LearnedPreconditioner(Preconditioner):
    """A trained :class:`ConjugateDirectionNet` as a (nonlinear) preconditioner for FCG.

    ``apply(r)`` reshapes ``r`` (``(n,)`` or ``(B, n)``) to the grid, normalises it, runs the network
    in float32 and returns the proposal scaled back by ``||r||`` in ``r``'s dtype, its sign chosen so
    that ``z.r >= 0`` (the scale-free loss cannot fix the sign). The grid shape is
    taken from the system it is attached to (:meth:`for_shape`), so one network serves all sizes.

    >>> M = LearnedPreconditioner(ConjugateDirectionNet(DCDMConfig()), shape=(7, 7))
    >>> M.apply(torch.ones(49, dtype=torch.float64)).shape
    torch.Size([49])
    """

    linear = False
    symmetric = False

    def __init__(self, network: ConjugateDirectionNet, shape: tuple[int, ...] | None = None) -> None:
        self.network = network.eval()
        self.shape = tuple(shape) if shape is not None else None

    def for_shape(self, shape: tuple[int, ...]) -> LearnedPreconditioner:
        """The same network attached to an interior grid of ``shape``."""
        if len(shape) != self.network.config.ndim:
            raise ValueError(
                f"network is {self.network.config.ndim}D but the grid shape {tuple(shape)} is {len(shape)}D"
            )
        return LearnedPreconditioner(self.network, shape)

    @torch.no_grad()
    def apply(self, r):
        if self.shape is None:
            raise ValueError("LearnedPreconditioner has no grid shape: call .for_shape(interior_shape) first")
        r_t = torch.as_tensor(r)
        n = math.prod(self.shape)
        if r_t.shape[-1] != n:
            raise ValueError(f"residual has length {r_t.shape[-1]}, the grid {self.shape} needs {n}")
        batch = r_t.reshape(-1, n)
        norm = batch.norm(dim=1, keepdim=True).clamp_min(torch.finfo(batch.dtype).tiny)
        param = next(self.network.parameters())
        field = (batch / norm).to(param.dtype).to(param.device).reshape(-1, 1, *self.shape)
        z = self.network(field).reshape(-1, n).to(device=batch.device, dtype=batch.dtype) * norm
        # The DCDM loss is blind to the sign of q; orient the proposal as a descent direction.
        sign = torch.where((z * batch).sum(dim=1, keepdim=True) < 0, -1.0, 1.0).to(z.dtype)
        z = (z * sign).reshape(r_t.shape)
        return z.numpy() if isinstance(r, np.ndarray) else z

    def save(self, path: str | Path, *, overwrite: bool = False, extra: dict | None = None) -> Path:
        """Write the network as a checkpoint directory (:func:`pdesurrogates.models.save_checkpoint`)."""
        return save_checkpoint(path, self.network, self.network.config, extra=extra, overwrite=overwrite)

    @classmethod
    def load(cls, path: str | Path, shape: tuple[int, ...] | None = None) -> LearnedPreconditioner:
        """Load a trained network: a run directory of ``pdesurrogates train`` (task ``dcdm``; its best
        checkpoint, i.e. the lowest validation loss) or a checkpoint directory."""
        return cls(load_network(path, ConjugateDirectionNet), shape)


def dcdm(A, b, network: ConjugateDirectionNet | LearnedPreconditioner, shape: tuple[int, ...], **kwargs):
    """Solve ``A x = b`` with the DCDM iteration: FCG with truncation 2 and the network as ``M``.

    Args:
        A: SPD matrix (any type :func:`pdesurrogates.linalg.fcg` accepts).
        b: ``(n,)`` or ``(B, n)``.
        network: a trained network or preconditioner.
        shape: interior grid shape of the system.
        **kwargs: passed to ``fcg`` (``rtol``, ``maxiter``, ``x0``, ``callback``).
    """
    from pdesurrogates.linalg import fcg

    M = network if isinstance(network, LearnedPreconditioner) else LearnedPreconditioner(network)
    kwargs.setdefault("m", 2)
    return fcg(A, b, M=M.for_shape(shape), **kwargs)


# Checkpoints written before the skip path and the bias switch existed were built with these values.
NETWORKS.register("dcdm", DCDMConfig, lambda **fields: ConjugateDirectionNet(DCDMConfig(**fields)),
                  legacy_defaults={"skip_levels": 0, "bias": True})
