"""The algebraic learned preconditioner: a trained network, set up on any SPD matrix.

>>> from pdesurrogates.linalg import fcg
>>> from pdesurrogates.physics.hard_systems import hard_system
>>> A = hard_system("two-phase", 48, seed=3, contrast=1e4).A   # any SPD matrix, SciPy or torch sparse
>>> M = pretrained().setup(A)                                     # hierarchy from A alone
>>> res = fcg(A, np.ones(A.shape[0]), M=M, rtol=1e-8)
>>> bool(res.converged), res.iterations < 20
(True, True)
>>> import scipy.sparse.linalg as spla                          # linear and symmetric: SciPy's CG too
>>> x, info = spla.cg(A, np.ones(A.shape[0]), M=M.as_linear_operator(), rtol=1e-8)
>>> info
0
"""

from __future__ import annotations

import time
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch

from pdesurrogates.linalg.preconditioners import Preconditioner
from pdesurrogates.solvers.learned.amg.hierarchy import (
    AggregationLevel,
    build_levels,
    multilevel_solver,
)
from pdesurrogates.solvers.learned.amg.network import (
    AlgebraicMultigridConfig,
    AlgebraicMultigridNet,
    check_cycle,
)

__all__ = ["PRETRAINED_DIR", "LearnedAMG", "LearnedAMGPreconditioner", "pretrained"]

PRETRAINED_DIR = "weights/algebraic_amg"
"""The shipped checkpoint, relative to the package ``pdesurrogates.solvers.learned``."""


def _matrix(A) -> sp.csr_matrix:
    """A float64 SciPy CSR copy of a SciPy sparse, torch (sparse or dense) or numpy matrix."""
    if isinstance(A, spla.LinearOperator):
        raise TypeError("A: the learned AMG preconditioner needs the matrix entries (SciPy sparse, torch "
                        "sparse or dense), not a LinearOperator")
    if isinstance(A, torch.Tensor):
        if A.ndim != 2:
            raise ValueError(f"A: expected a 2-D matrix, found shape {tuple(A.shape)}")
        if A.is_complex():
            raise TypeError("A: complex matrices are not supported")
        A = A.detach().cpu()
        if A.layout == torch.sparse_coo:
            A = A.coalesce()
            i, j = A.indices().numpy()
            return sp.csr_matrix((A.values().to(torch.float64).numpy(), (i, j)), shape=tuple(A.shape))
        if A.layout in (torch.sparse_csr, torch.sparse_csc, torch.sparse_bsr, torch.sparse_bsc):
            A = A.to_sparse_csr() if A.layout != torch.sparse_csr else A
            return sp.csr_matrix((A.values().to(torch.float64).numpy(), A.col_indices().numpy(),
                                  A.crow_indices().numpy()), shape=tuple(A.shape))
        return sp.csr_matrix(A.to(torch.float64).numpy())
    if sp.issparse(A):
        if np.issubdtype(A.dtype, np.complexfloating):
            raise TypeError("A: complex matrices are not supported")
        return sp.csr_matrix(A, dtype=np.float64)
    if isinstance(A, np.ndarray):
        if A.ndim != 2:
            raise ValueError(f"A: expected a 2-D matrix, found shape {A.shape}")
        if np.iscomplexobj(A):
            raise TypeError("A: complex matrices are not supported")
        return sp.csr_matrix(A.astype(np.float64))
    raise TypeError(f"A: expected a SciPy sparse matrix, a torch tensor or a numpy array, found {type(A).__name__}")


def checked_spd_matrix(A, *, symmetry_tol: float = 1e-10) -> sp.csr_matrix:
    """``A`` as canonical CSR after checking it is square, finite, symmetric and has a positive
    diagonal (what the hierarchy needs; indefiniteness that the diagonal does not show is caught on
    the coarsest level, see :meth:`LearnedAMG.setup`)."""
    S = _matrix(A)
    if S.shape[0] != S.shape[1]:
        raise ValueError(f"A must be square, found shape {S.shape}")
    if S.shape[0] == 0:
        raise ValueError("A is empty (0 x 0)")
    S.sum_duplicates()
    if not np.isfinite(S.data).all():
        bad = int(np.nonzero(~np.isfinite(S.data))[0][0])
        row = int(np.searchsorted(S.indptr, bad, side="right") - 1)
        raise ValueError(f"A has a NaN or infinite entry (row {row}, column {int(S.indices[bad])})")
    S.eliminate_zeros()
    S.sort_indices()
    scale = float(np.abs(S.data).max()) if S.nnz else 0.0
    asym = abs(S - S.T)
    worst = float(asym.data.max()) if asym.nnz else 0.0
    if worst > symmetry_tol * scale:
        raise ValueError(f"A is not symmetric: max |A - A^T| = {worst:.3e} exceeds {symmetry_tol:g} x max |A| "
                         f"= {symmetry_tol * scale:.3e}; the learned AMG preconditioner is for SPD matrices")
    d = S.diagonal()
    if not (d > 0).all():
        i = int(np.nonzero(~(d > 0))[0][0])
        raise ValueError(f"A is not positive definite: diagonal entry {i} is {d[i]:.6g} (must be > 0)")
    return S


def _near_nullspace(B, n: int, blocksize: int) -> np.ndarray:
    if B is None:
        return np.kron(np.ones((n // blocksize, 1)), np.eye(blocksize))
    B = np.asarray(B.detach().cpu().numpy() if isinstance(B, torch.Tensor) else B, dtype=np.float64)
    if B.ndim == 1:
        B = B[:, None]
    if B.ndim != 2 or B.shape[0] != n or B.shape[1] < 1:
        raise ValueError(f"B (near-nullspace) must have shape ({n}, k) with k >= 1, found {B.shape}")
    if not np.isfinite(B).all():
        raise ValueError("B (near-nullspace) contains NaN or infinite values")
    if np.linalg.matrix_rank(B) < B.shape[1]:
        raise ValueError(f"B (near-nullspace) has linearly dependent columns (rank < {B.shape[1]})")
    return np.ascontiguousarray(B)


class LearnedAMGPreconditioner(Preconditioner):
    """One cycle (W or V) of a learned smoothed-aggregation hierarchy of one matrix; linear and symmetric.

    Made by :meth:`LearnedAMG.setup`. The cycle is pyamg's (symmetric Gauss–Seidel smoothing,
    ``R = P^T``, exact coarsest solve), so it is a symmetric positive definite preconditioner for
    SPD ``A``: use it in :func:`pdesurrogates.linalg.pcg`, :func:`~pdesurrogates.linalg.fcg`,
    SciPy's CG (:meth:`as_linear_operator`) or pyamg's Krylov solvers.

    Attributes
    ----------
    hierarchy : pyamg.multilevel.MultilevelSolver
        The levels (``A``, ``P``, ``R``) and smoothers; ``hierarchy.solve(b, accel="cg")`` works too.
    levels : list of AggregationLevel
        Aggregates, tentative prolongators, ``omega`` of each level.
    setup_seconds : float
    cycle : {"W", "V"}
    """

    linear = True
    symmetric = True

    def __init__(self, hierarchy, levels: list[AggregationLevel], setup_seconds: float, cycle: str = "W") -> None:
        super().__init__(hierarchy.levels[0].A.shape[0])
        self.hierarchy = hierarchy
        self.levels = levels
        self.setup_seconds = float(setup_seconds)
        self.cycle = check_cycle(cycle)
        self._cycle = hierarchy.aspreconditioner(cycle=cycle)

    def operator_complexity(self) -> float:
        """Nonzeros of all levels' matrices over those of ``A`` (cost of a cycle relative to a smoothing)."""
        return float(self.hierarchy.operator_complexity())

    def _check(self, r: np.ndarray) -> None:
        if not np.isfinite(r).all():
            raise ValueError("LearnedAMGPreconditioner.apply: the residual contains NaN or infinite values")

    def _apply(self, R: torch.Tensor) -> torch.Tensor:
        Rn = R.detach().to(device="cpu", dtype=torch.float64).numpy()
        self._check(Rn)
        Z = np.stack([self._cycle.matvec(r) for r in Rn])
        return torch.from_numpy(Z).to(device=R.device, dtype=R.dtype)

    def as_linear_operator(self) -> spla.LinearOperator:
        """The cycle as a :class:`scipy.sparse.linalg.LinearOperator` (float64), straight on pyamg's
        cycle (no torch conversion), with the same size and NaN checks as :meth:`apply`."""
        n = self.n

        def matvec(v):
            v = np.asarray(v, dtype=np.float64).reshape(-1)
            if v.shape[0] != n:
                raise ValueError(f"LearnedAMGPreconditioner: expected a vector of length {n}, found {v.shape[0]}")
            self._check(v)
            return self._cycle.matvec(v)

        return spla.LinearOperator((n, n), matvec=matvec, rmatvec=matvec, dtype=np.float64)


class LearnedAMG:
    """A trained algebraic learned multigrid; :meth:`setup` turns a matrix into a preconditioner.

    Parameters
    ----------
    network : AlgebraicMultigridNet, optional
        Default: an untrained network, i.e. classical smoothed aggregation with the network's
        hierarchy options (strength threshold ``theta``).
    info : dict, optional
        What the checkpoint says about its training (shown by ``repr``, saved by :meth:`save`).
    """

    def __init__(self, network: AlgebraicMultigridNet | None = None, info: dict | None = None) -> None:
        self.network = (network if network is not None else AlgebraicMultigridNet()).eval()
        self.info = dict(info or {})

    @property
    def config(self) -> AlgebraicMultigridConfig:
        return self.network.config

    def weights(self, level: AggregationLevel, depth: int) -> tuple[np.ndarray, np.ndarray]:
        """Predicted ``(entry weights, row weights)`` of ``level`` (float64 numpy)."""
        if self.network.predicts_unit_weights():  # exact: zero output layers give weights e^0 = 1
            return np.ones(level.rows.size), np.ones(level.n)
        with torch.no_grad():
            entry, row = self.network.log_weights(level)
        entry, row = np.exp(entry.double().cpu().numpy()), np.exp(row.double().cpu().numpy())
        if not (np.isfinite(entry).all() and np.isfinite(row).all()):
            raise ValueError(f"the network predicted non-finite prolongation weights on level {depth}")
        return entry, row

    def setup(self, A, B=None, *, blocksize: int | None = None, symmetry_tol: float = 1e-10,
              cycle: str | None = None) -> LearnedAMGPreconditioner:
        """Build the learned hierarchy of ``A``.

        Parameters
        ----------
        A : SPD matrix ``(n, n)``: SciPy sparse (any format; BSR sets ``blocksize``), torch sparse
            (COO/CSR) or dense, or numpy.
        B : ``(n, k)`` near-nullspace vectors, optional
            What ``A`` nearly annihilates (pyamg's ``B``): e.g. the rigid-body modes for
            elasticity. Default: the constants (per unknown of a block).
        blocksize : int, optional
            Unknowns per node (2 for 2D elasticity ordered ``(u_x, u_y)`` per node); aggregates are
            formed on nodes. Default 1, or the blocksize of a BSR ``A``.
        symmetry_tol : float
            ``A`` is refused when ``max |A - A^T| > symmetry_tol max |A|``.
        cycle : {"W", "V"}, optional
            Default: the network config's (``"W"`` for the shipped weights). The V-cycle costs less
            per iteration and needs as many or more iterations (``hard_systems.md``).

        Raises
        ------
        ValueError
            ``A`` not square, not symmetric, with NaN/Inf, a non-positive diagonal or found
            indefinite on the coarsest level; ``B`` of the wrong shape; ``n`` not a multiple of
            ``blocksize``.
        """
        start = time.perf_counter()
        cycle = check_cycle(self.config.cycle if cycle is None else cycle)  # before the set-up's work
        if blocksize is None:
            blocksize = int(A.blocksize[0]) if sp.issparse(A) and A.format == "bsr" else 1
        if isinstance(blocksize, bool) or not isinstance(blocksize, (int, np.integer)) or blocksize < 1:
            raise ValueError(f"blocksize must be a positive int, got {blocksize!r}")
        S = checked_spd_matrix(A, symmetry_tol=symmetry_tol)
        n = S.shape[0]
        if n % blocksize:
            raise ValueError(f"A has {n} rows, not a multiple of blocksize {blocksize}")
        Bv = _near_nullspace(B, n, blocksize)
        cfg = self.config
        levels, prolongators, coarsest = build_levels(
            S, Bv, self.weights, blocksize=blocksize, theta=cfg.theta, max_levels=cfg.max_levels,
            max_coarse=cfg.max_coarse, improve_sweeps=cfg.improve_sweeps)
        if 0 < coarsest.shape[0] <= 2000:
            eig = np.linalg.eigvalsh(coarsest.toarray())
            if eig[0] < -1e-8 * max(abs(eig[-1]), np.finfo(float).tiny):
                raise ValueError(f"A is not positive definite: its Galerkin coarse operator (size "
                                 f"{coarsest.shape[0]}) has the eigenvalue {eig[0]:.3e} < 0")
        hierarchy = multilevel_solver(levels, prolongators, coarsest)
        return LearnedAMGPreconditioner(hierarchy, levels, time.perf_counter() - start, cycle)

    # ---- persistence
    def save(self, path: str | Path, *, overwrite: bool = False, extra: dict[str, Any] | None = None) -> Path:
        """Write a checkpoint directory (``weights.pt`` + ``config.json``; :func:`pdesurrogates.models.save_checkpoint`)."""
        from pdesurrogates.models import save_checkpoint

        return save_checkpoint(path, self.network, self.config, extra={**self.info, **(extra or {})},
                               overwrite=overwrite)

    @classmethod
    def load(cls, path: str | Path) -> LearnedAMG:
        """Load a checkpoint directory or a training run directory (its best checkpoint); weights are
        read with ``torch.load(weights_only=True)``."""
        from pdesurrogates.models import find_checkpoint, load_checkpoint

        checkpoint = load_checkpoint(find_checkpoint(path))
        if not isinstance(checkpoint.model, AlgebraicMultigridNet):
            raise ValueError(  # noqa: TRY004 (a user file of the wrong kind)
                f"{path} holds a {type(checkpoint.model).__name__}, not an algebraic_amg network")
        return cls(checkpoint.model.float(), checkpoint.extra)

    def __repr__(self) -> str:
        trained = self.info.get("training", {}).get("families")
        return f"LearnedAMG({self.config}, trained on {trained or 'nothing (classical SA weights)'})"


def pretrained() -> LearnedAMG:
    """The package's general algebraic preconditioner (shipped weights, CPU).

    Its hierarchy options (strength threshold ``theta = 0.1``) and weights were selected on
    validation systems of the diffusion families (two-phase and log-normal coefficients in 2D/3D,
    layered 3D, rotated anisotropy, P1 FEM with jumps; seeds used neither in training nor in the
    benchmark). ``pretrained().info`` holds the training run (config, command, git revision,
    metrics) and the selection: the trained network weights did not beat their initialisation in
    validation (up to 2.4x more iterations at contrast 1e6), so the shipped weights are the
    initial ones, i.e. classical smoothed-aggregation prolongation smoothing on the tuned
    aggregation.

    Raises
    ------
    FileNotFoundError
        The package was installed without its data files.
    """
    root = resources.files("pdesurrogates.solvers.learned")
    target = root.joinpath(*PRETRAINED_DIR.split("/"))
    with resources.as_file(target) as path:
        if not (Path(path) / "weights.pt").is_file():
            raise FileNotFoundError(f"the shipped weights {PRETRAINED_DIR}/weights.pt are missing from the "
                                    "installed package (package data not installed?)")
        model = LearnedAMG.load(path)
    return model
