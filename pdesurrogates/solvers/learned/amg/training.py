"""Training pieces of the algebraic learned preconditioner: systems, a differentiable cycle, the loss.

The network is trained on what the user gets: preconditioned CG with the learned cycle (the
network config's ``cycle``, W or V). For a
random error ``e_0`` and ``b = A e_0``, ``k`` steps of PCG from ``x_0 = 0`` leave the residual
``r_k``; ``L = log(r_k^T M r_k / r_0^T M r_0)`` (the error in the norm ``A M A``), averaged over
errors, is compared with the same quantity for classical smoothed aggregation (all weights 1, the
same strength threshold) on the same matrix, so that every family weighs alike:
``loss = (L_learned - L_SA) / |L_SA|`` (0 for an untrained network, -0.1 = 10% more reduction in
``log`` norm after ``k`` steps).

Unlike the error reduction of one cycle, this sees what CG sees: a few isolated bad eigenvalues
(high-contrast inclusions) cost CG a few iterations, not a slow rate. The cycle, ``P``, the Galerkin
operators and PCG are differentiated in float64 (dense matrices: the training systems have about a
thousand unknowns); the aggregation of each level is recomputed from the current weights without
gradient, as at setup time, and it and each level's ``omega`` are constants of the gradient.
The loss uses ``r_k^T M r_k`` of the recursively updated residual, which keeps falling below the
round-off level of the true error, so ten steps can be taken on systems that converge in ten.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from pdesurrogates.errors import UserInputError
from pdesurrogates.solvers.learned.amg.hierarchy import (
    AggregationLevel,
    build_levels,
    prolongator_values_torch,
)
from pdesurrogates.solvers.learned.amg.network import AlgebraicMultigridNet

__all__ = [
    "FAMILIES",
    "LOSSES",
    "AlgebraicTrainProblem",
    "cycle_error_log",
    "dense_hierarchy",
    "multigrid_cycle",
    "pcg_error_log",
    "relative_pcg_loss",
    "sample_system",
]

LOSSES = ("pcg", "cycle")
FAMILIES = ("two-phase", "two-phase-3d", "lognormal", "anisotropic", "fem-jump", "layered")


@dataclass(frozen=True)
class AlgebraicTrainProblem:
    """Random training systems (``[problem]`` table of task ``algebraic_preconditioner``).

    Step ``k`` draws family ``families[k mod len]`` with random parameters from its own seed.

    Attributes
    ----------
    families : tuple of str
        From :data:`FAMILIES` (``physics.hard_systems`` families; ``two-phase-3d`` is ``two-phase``
        with ``ndim=3``).
    size_2d, size_3d : (int, int)
        Unknowns per side, drawn uniformly (inclusive). ``fem-jump`` uses ``size_2d`` random points per side.
    max_log10_contrast : float
        Two-phase and FEM contrasts are ``10^U(1, max)``; layered ``10^U(2, max)``.
    lognormal_sigma : (float, float)
    anisotropy_log10_epsilon : (float, float)
        ``epsilon = 10^U(lo, hi)``, angle uniform in ``[0, pi)``.
    cg_steps : int
        PCG steps (``loss = "pcg"``) or stationary cycles (``loss = "cycle"``) in the loss.
    loss : {"pcg", "cycle"}
        ``"pcg"``: :func:`pcg_error_log`; ``"cycle"``: :func:`cycle_error_log`, the error reduction of
        the stationary cycle in the ``A``-norm (its asymptotic rate is what carries over to
        larger systems of a family; PCG on the small training systems converges in a few steps).
    n_errors : int
        Random errors per system.
    n_validation : int
        Fixed systems (drawn once, the same families in turn) on which ``val_loss`` is measured.
    """

    families: tuple[str, ...] = FAMILIES
    size_2d: tuple[int, int] = (24, 36)
    size_3d: tuple[int, int] = (8, 11)
    max_log10_contrast: float = 6.0
    lognormal_sigma: tuple[float, float] = (1.0, 3.0)
    anisotropy_log10_epsilon: tuple[float, float] = (-3.0, 0.0)
    cg_steps: int = 3
    loss: str = "pcg"
    n_errors: int = 16
    n_validation: int = 12

    def validate(self, where: str = "problem") -> None:
        unknown = sorted(set(self.families) - set(FAMILIES))
        if not self.families or unknown:
            raise UserInputError(f"{where}: families must be a non-empty list from {list(FAMILIES)}, "
                             f"found {list(self.families)}")
        for name, (lo, hi), least in (("size_2d", self.size_2d, 6), ("size_3d", self.size_3d, 4)):
            if not least <= lo <= hi:
                raise UserInputError(f"{where}: {name} must be (lo, hi) with {least} <= lo <= hi, got {(lo, hi)}")
        if not 1 <= self.max_log10_contrast <= 12:
            raise UserInputError(f"{where}: max_log10_contrast must lie in [1, 12], got {self.max_log10_contrast}")
        if self.loss not in LOSSES:
            raise UserInputError(f"{where}: loss must be one of {list(LOSSES)}, got {self.loss!r}")
        if self.cg_steps < 1 or self.n_errors < 1 or self.n_validation < 1:
            raise UserInputError(f"{where}: cg_steps, n_errors and n_validation must be >= 1")


def _uniform_int(rng: np.random.Generator, bounds: tuple[int, int]) -> int:
    return int(rng.integers(bounds[0], bounds[1] + 1))


def sample_system(problem: AlgebraicTrainProblem, seed: int, index: int):
    """``(family, A (scipy CSR), B (n, nb) or None, blocksize)`` of training step ``index``."""
    from pdesurrogates.physics.hard_systems import hard_system

    rng = np.random.default_rng([int(seed), int(index)])
    family = problem.families[index % len(problem.families)]
    contrast = 10.0 ** rng.uniform(1.0, problem.max_log10_contrast)
    if family == "two-phase":
        s = hard_system("two-phase", _uniform_int(rng, problem.size_2d), rng, contrast=contrast)
    elif family == "two-phase-3d":
        s = hard_system("two-phase", _uniform_int(rng, problem.size_3d), rng, ndim=3, contrast=contrast)
    elif family == "lognormal":
        s = hard_system("lognormal", _uniform_int(rng, problem.size_2d), rng,
                        sigma=rng.uniform(*problem.lognormal_sigma))
    elif family == "anisotropic":
        s = hard_system("anisotropic", _uniform_int(rng, problem.size_2d), rng,
                        epsilon=10.0 ** rng.uniform(*problem.anisotropy_log10_epsilon),
                        theta=rng.uniform(0.0, math.pi), stencil=("fd", "fe")[int(rng.integers(2))])
    elif family == "fem-jump":
        s = hard_system("fem-jump", _uniform_int(rng, problem.size_2d), rng, contrast=contrast,
                        field_resolution=64)
    else:  # layered
        s = hard_system("layered", _uniform_int(rng, problem.size_3d), rng,
                        contrast=10.0 ** rng.uniform(2.0, problem.max_log10_contrast))
    return family, s.A, s.near_nullspace, 1 if s.near_nullspace is None else 2


def _levels(A, B, blocksize: int, net: AlgebraicMultigridNet, unit_weights: bool = False):
    """Hierarchy structure (no gradient) with the network's current weights (``unit_weights``: SA
    with the network's hierarchy options)."""
    cfg = net.config

    def weights(level: AggregationLevel, depth: int):
        if unit_weights:
            return np.ones(level.rows.size), np.ones(level.n)
        with torch.no_grad():
            entry, row = net.log_weights(level)
        return np.exp(entry.double().numpy()), np.exp(row.double().numpy())

    if B is None:
        B = np.ones((A.shape[0], 1))
    return build_levels(A, B, weights, blocksize=blocksize, theta=cfg.theta, max_levels=cfg.max_levels,
                        max_coarse=cfg.max_coarse, improve_sweeps=cfg.improve_sweeps)


def dense_hierarchy(levels: list[AggregationLevel], net: AlgebraicMultigridNet | None,
                    dtype: torch.dtype = torch.float64) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
    """``[(A_l dense, P_l dense), ..., (A_coarsest, None)]``, differentiable in the network's weights
    (through ``P`` and the Galerkin products) for the structure in ``levels``."""
    A = torch.as_tensor(levels[0].A.toarray(), dtype=dtype)
    out = []
    for level in levels:
        maps = level.torch_maps()
        values = A[maps["rows"], maps["cols"]]
        if net is None:
            entry = torch.ones(level.rows.size, dtype=dtype)
            row = torch.ones(level.n, dtype=dtype)
        else:
            entry, row = net.log_weights(level)
            entry, row = torch.exp(entry.to(dtype)), torch.exp(row.to(dtype))
        vals = prolongator_values_torch(level, values, entry, row)
        P = torch.zeros(level.n, level.n_coarse, dtype=dtype).index_put(
            (maps["pattern_row"], maps["pattern_col"]), vals, accumulate=True)
        if level.kept_columns is not None:
            P = P[:, torch.as_tensor(level.kept_columns)]
        out.append((A, P))
        A = P.T @ A @ P
    out.append((A, None))
    return out


def _gauss_seidel_symmetric(A, lower, upper, x, b):
    x = x + torch.linalg.solve_triangular(lower, b - A @ x, upper=False)
    return x + torch.linalg.solve_triangular(upper, b - A @ x, upper=True)


def multigrid_cycle(mats, b: torch.Tensor, cycle: str = "V", depth: int = 0,
                    x: torch.Tensor | None = None) -> torch.Tensor:
    """pyamg's :class:`MultilevelSolver` cycle (``"V"`` or ``"W"``) with symmetric Gauss–Seidel
    pre/post smoothing and a pseudo-inverse coarsest solve, on columns of ``b (n, m)``, from ``x``
    (default 0). The W-cycle visits each coarse level twice (the second visit starts from the first's
    result), except the coarsest, solved once."""
    A, P = mats[depth]
    if P is None:
        return torch.linalg.pinv(A, hermitian=True) @ b
    lower, upper = torch.tril(A), torch.triu(A)
    x = _gauss_seidel_symmetric(A, lower, upper, torch.zeros_like(b) if x is None else x, b)
    coarse_b = P.T @ (b - A @ x)
    coarse = multigrid_cycle(mats, coarse_b, cycle, depth + 1)
    if cycle == "W" and mats[depth + 1][1] is not None:
        coarse = multigrid_cycle(mats, coarse_b, cycle, depth + 1, coarse)
    x = x + P @ coarse
    return _gauss_seidel_symmetric(A, lower, upper, x, b)


def pcg_error_log(mats, e0: torch.Tensor, steps: int, cycle: str = "V") -> torch.Tensor:
    """``log(r_k^T M r_k / r_0^T M r_0)`` per column after ``k = steps`` PCG steps from ``x = 0``
    with ``b = A e0`` and the multigrid ``cycle`` ``M`` as preconditioner (``r_k`` the recursively
    updated residual, which keeps decreasing below the round-off level of the true one, so many steps
    can be taken on small, quickly solved systems)."""
    A = mats[0][0]
    r = A @ e0
    z = multigrid_cycle(mats, r, cycle)
    p, rz = z, (r * z).sum(0)
    rz0 = rz
    for _ in range(steps):
        Ap = A @ p
        alpha = rz / (p * Ap).sum(0)
        r = r - alpha * Ap
        z = multigrid_cycle(mats, r, cycle)
        rz_new = (r * z).sum(0)
        p = z + (rz_new / rz) * p
        rz = rz_new
    return torch.log(rz / rz0)


def cycle_error_log(mats, e0: torch.Tensor, cycles: int, cycle: str = "V") -> torch.Tensor:
    """``log(e_k^T A e_k / e_0^T A e_0)`` per column after ``k = cycles`` stationary multigrid
    cycles ``e <- e - M A e`` (the error propagation of the multigrid iteration, in the energy norm)."""
    A = mats[0][0]
    e = e0
    for _ in range(cycles):
        e = e - multigrid_cycle(mats, A @ e, cycle)
    return torch.log((e * (A @ e)).sum(0) / (e0 * (A @ e0)).sum(0))


def relative_pcg_loss(net: AlgebraicMultigridNet, A, B, blocksize: int, steps: int, n_errors: int,
                      generator: torch.Generator, kind: str = "pcg") -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``(L_learned - L_SA) / |L_SA|`` with ``L`` the mean :func:`pcg_error_log` (``kind="pcg"``, see
    the module docstring) or :func:`cycle_error_log` (``kind="cycle"``), both with the network
    config's ``cycle``; parts: ``learned`` and ``sa`` (the two ``L``)."""
    error_log = {"pcg": pcg_error_log, "cycle": cycle_error_log}[kind]
    e0 = torch.randn(A.shape[0], n_errors, dtype=torch.float64, generator=generator)
    with torch.no_grad():
        sa_levels, _, _ = _levels(A, B, blocksize, net, unit_weights=True)
        ref = error_log(dense_hierarchy(sa_levels, None), e0, steps, net.config.cycle).mean()
        levels, _, _ = _levels(A, B, blocksize, net)
    learned = error_log(dense_hierarchy(levels, net), e0, steps, net.config.cycle).mean()
    return (learned - ref) / ref.abs(), {"learned": learned.detach(), "sa": ref}
