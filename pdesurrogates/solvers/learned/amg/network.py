"""A graph network on a matrix's sparsity pattern that predicts prolongation smoothing weights.

Every input is a scale-free function of the matrix entries and the aggregates, so one trained network
applies to any matrix size, mesh and scaling (``A`` and ``c A`` give the same weights):

* **edge** ``i -> k`` (a stored ``a_ik``, ``i != k``): ``s = a_ik / sqrt(a_ii a_kk)``, ``|s|``, the
  share of the row's largest coupling ``|a_ik| / max_j |a_ij|`` and of the column's, whether ``i``
  and ``k`` share an aggregate, ``tanh(log(a_kk / a_ii) / 4)`` (a coefficient jump);
* **node** ``i``: ``sum_{j != i} |a_ij| / a_ii`` (diagonal dominance), ``|(D^-1 A B)_i| / |B_i|``
  (how much the near-nullspace is not annihilated: boundaries), the log of its aggregate's size
  and of its degree.

Layers are node-wise MLPs that read their neighbours through two row-normalised matrices of the
pattern (couplings ``|a_ik|`` inside the aggregate and to other aggregates), i.e. sparse products,
not per-edge MLPs; the edge head is a small MLP of the edge's features plus the product of
projections of its two end nodes' embeddings. Cost per level: a few sparse
matrix-times-``(n, hidden)`` products and ``O(nnz(A) hidden)`` gathers.

Outputs are logarithms of weights, bounded by ``limit`` (``limit tanh(x / limit)``); the final
layers start at zero, so an untrained network gives all weights 1: classical smoothed aggregation.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from pdesurrogates.models import NETWORKS
from pdesurrogates.solvers.learned.amg.hierarchy import AggregationLevel

__all__ = ["CYCLES", "AlgebraicMultigridConfig", "AlgebraicMultigridNet", "LevelGraph", "check_cycle", "level_graph"]

NODE_FEATURES = 4
CYCLES = ("W", "V")
"""Cycles of the preconditioner: symmetric ones only, so that plain CG applies (pyamg's F-cycle, a
V-cycle after an F-cycle on each coarse level, is not symmetric)."""
EDGE_FEATURES = 6


def check_cycle(cycle: str) -> str:
    """``cycle`` if it is one of :data:`CYCLES`, else a ``ValueError`` naming them."""
    if cycle not in CYCLES:
        raise ValueError(f"cycle must be one of {list(CYCLES)}, got {cycle!r}")
    return cycle


@dataclass(frozen=True)
class AlgebraicMultigridConfig:
    """Network and hierarchy of the algebraic learned preconditioner (saved with its weights).

    Attributes
    ----------
    hidden : int
        Width of the node embeddings.
    rounds : int
        Message-passing layers.
    edge_hidden : int
        Width of the edge head's hidden layer.
    limit : float
        Bound on ``|log weight|`` (weights lie in ``[e^-limit, e^limit]``).
    theta : float
        Strength threshold of the aggregation (``|a_ij| >= theta sqrt(a_ii a_jj)``; pyamg's
        default is 0, keeping every connection).
    max_levels, max_coarse : int
        Coarsening stops after ``max_levels`` levels or at ``max_coarse`` nodes (pyamg's defaults).
    improve_sweeps : int
        Symmetric Gauss–Seidel sweeps on ``A B = 0`` applied to the near-nullspace on the finest
        level (pyamg's ``improve_candidates`` default: 4).
    cycle : {"W", "V"}
        The multigrid cycle of the preconditioner and of the training loss. Both are linear and
        symmetric. Aggregation coarsens by about ``3^d`` per level, so visiting each coarse level
        twice (W) adds little work; configs saved before this field load as ``"W"``.
    """

    name: str = "algebraic_amg"
    hidden: int = 16
    rounds: int = 2
    edge_hidden: int = 8
    limit: float = 2.0
    theta: float = 0.1
    max_levels: int = 10
    max_coarse: int = 10
    improve_sweeps: int = 4
    cycle: str = "W"

    def __post_init__(self) -> None:
        if self.hidden < 1 or self.rounds < 0 or self.edge_hidden < 1:
            raise ValueError(f"hidden and edge_hidden must be >= 1 and rounds >= 0, got {self.hidden}, "
                             f"{self.edge_hidden}, {self.rounds}")
        if not self.limit > 0:
            raise ValueError(f"limit must be > 0, got {self.limit}")
        if not 0 <= self.theta < 1:
            raise ValueError(f"theta must lie in [0, 1), got {self.theta}")
        if self.max_levels < 2 or self.max_coarse < 1 or self.improve_sweeps < 0:
            raise ValueError(f"need max_levels >= 2, max_coarse >= 1, improve_sweeps >= 0, got "
                             f"{self.max_levels}, {self.max_coarse}, {self.improve_sweeps}")
        check_cycle(self.cycle)


@dataclass
class LevelGraph:
    """Inputs of the network for one level (float32 unless converted)."""

    node: torch.Tensor  # (n, NODE_FEATURES)
    edge: torch.Tensor  # (m, EDGE_FEATURES), off-diagonal stored entries
    src: torch.Tensor  # (m,) row i
    dst: torch.Tensor  # (m,) column k
    relations: list[torch.Tensor]  # sparse CSR (n, n), row-normalised
    off_diagonal: np.ndarray  # (nnz,) bool: which stored entries of A are the edges
    n: int


def _row_normalised(crow: torch.Tensor, cols: torch.Tensor, rows: np.ndarray, weights: np.ndarray, n: int,
                    dtype) -> torch.Tensor:
    """CSR ``(n, n)`` with the given entries (row-major order) divided by their row sums."""
    total = np.bincount(rows, weights=weights, minlength=n)
    w = weights / np.where(total > 0, total, 1.0)[rows]
    with warnings.catch_warnings():  # torch notes once that sparse CSR is "beta"; it is what we want here
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(crow, cols, torch.as_tensor(w, dtype=dtype), size=(n, n),
                                       check_invariants=False)


def level_graph(level: AggregationLevel, dtype: torch.dtype = torch.float32) -> LevelGraph:
    """Scale-free features of ``level`` (see the module docstring)."""
    n = level.n
    off = level.rows != level.cols  # the stored entries are row-major with sorted columns
    i_np = level.rows[off]
    i, k = torch.as_tensor(i_np), torch.as_tensor(level.cols[off])
    d = torch.as_tensor(level.diagonal)
    a = torch.as_tensor(level.values[off])
    absa = a.abs()
    degree_np = np.bincount(i_np, minlength=n)
    crow_np = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(degree_np, out=crow_np[1:])
    nonempty = degree_np > 0
    row_max = np.ones(n)
    if i_np.size:
        row_max[nonempty] = np.maximum.reduceat(absa.numpy(), crow_np[:-1][nonempty])
    row_max = torch.as_tensor(row_max)
    aggregate = torch.as_tensor(level.aggregate)
    same = (aggregate[i] == aggregate[k]) & (aggregate[i] >= 0)
    edge = torch.stack([a / torch.sqrt(d[i] * d[k]), absa / torch.sqrt(d[i] * d[k]), absa / row_max[i],
                        absa / row_max[k], same.to(torch.float64), torch.tanh(torch.log(d[k] / d[i]) / 4.0)], dim=1)
    row_abs = torch.zeros(n, dtype=torch.float64).index_add_(0, i, absa)
    AB = level.A @ level.B
    b_norm = np.linalg.norm(level.B, axis=1)
    defect = torch.as_tensor(np.linalg.norm(AB, axis=1) / (level.diagonal * np.where(b_norm > 0, b_norm, 1.0)))
    degree = torch.as_tensor(degree_np, dtype=torch.float64)
    node = torch.stack([row_abs / d, torch.tanh(defect), torch.log(torch.as_tensor(level.aggregate_size, dtype=torch.float64)) / 3.0,
                        torch.log1p(degree) / 3.0], dim=1)
    crow = torch.as_tensor(crow_np)
    relations = [_row_normalised(crow, k, i_np, w.numpy(), n, dtype) for w in (absa * same, absa * ~same)]
    return LevelGraph(node.to(dtype), edge.to(dtype), i, k, relations, off, n)


def _mlp(n_in: int, hidden: int, n_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, n_out))


class _Round(nn.Module):
    def __init__(self, hidden: int, n_relations: int) -> None:
        super().__init__()
        self.update = _mlp(hidden * (1 + n_relations), hidden, hidden)

    def forward(self, h: torch.Tensor, relations: list[torch.Tensor]) -> torch.Tensor:
        parts = [h] + [torch.sparse.mm(R, h) for R in relations]
        return h + self.update(torch.cat(parts, dim=1))


class AlgebraicMultigridNet(nn.Module):
    """``LevelGraph -> (log entry weights (nnz(A),), log row weights (n,))``.

    The weights of a level's prolongator (:func:`~pdesurrogates.solvers.learned.amg.hierarchy.prolongator`):
    one per stored entry of ``A`` (the diagonal entry's from the node head) and one per row.

    >>> import scipy.sparse as sp
    >>> from pdesurrogates.solvers.learned.amg.hierarchy import AggregationLevel
    >>> A = sp.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(30, 30), format="csr")
    >>> level = AggregationLevel(A, np.ones((30, 1)))
    >>> entry, row = AlgebraicMultigridNet()(level_graph(level))
    >>> entry.shape, row.shape, float(entry.abs().max())  # untrained: all weights exp(0) = 1
    (torch.Size([88]), torch.Size([30]), 0.0)
    """

    def __init__(self, hidden: int = 16, rounds: int = 2, edge_hidden: int = 8, limit: float = 2.0,
                 theta: float = 0.1, max_levels: int = 10, max_coarse: int = 10, improve_sweeps: int = 4,
                 cycle: str = "W") -> None:
        super().__init__()
        self.config = AlgebraicMultigridConfig(hidden=hidden, rounds=rounds, edge_hidden=edge_hidden, limit=limit,
                                               theta=theta, max_levels=max_levels, max_coarse=max_coarse,
                                               improve_sweeps=improve_sweeps, cycle=cycle)
        self.embed = _mlp(NODE_FEATURES, hidden, hidden)
        self.rounds = nn.ModuleList(_Round(hidden, 2) for _ in range(rounds))
        self.source = nn.Linear(hidden, edge_hidden, bias=False)
        self.target = nn.Linear(hidden, edge_hidden, bias=False)
        self.edge_in = nn.Linear(EDGE_FEATURES, edge_hidden)
        self.edge_head = nn.Sequential(nn.ReLU(), nn.Linear(edge_hidden, 1))
        self.node_head = _mlp(hidden, hidden, 2)
        for head in (self.edge_head, self.node_head):
            nn.init.zeros_(head[-1].weight)
            nn.init.zeros_(head[-1].bias)

    def forward(self, graph: LevelGraph) -> tuple[torch.Tensor, torch.Tensor]:
        dtype = self.embed[0].weight.dtype
        relations = [R.to(dtype) for R in graph.relations]
        h = self.embed(graph.node.to(dtype))
        for layer in self.rounds:
            h = layer(h, relations)
        pair = self.source(h)[graph.src] * self.target(h)[graph.dst]
        edge = self.edge_head(self.edge_in(graph.edge.to(dtype)) + pair)[:, 0]
        node = self.node_head(h)
        c = self.config.limit
        edge, node = c * torch.tanh(edge / c), c * torch.tanh(node / c)
        off = torch.as_tensor(graph.off_diagonal)
        entry = torch.zeros(off.shape[0], dtype=dtype)
        entry = entry.masked_scatter(off, edge)
        entry = entry.masked_scatter(~off, node[:, 0])  # diagonal entries are stored row-major, one per row
        return entry, node[:, 1]

    def log_weights(self, level: AggregationLevel) -> tuple[torch.Tensor, torch.Tensor]:
        """``forward`` on the features of ``level``, computed in the network's dtype."""
        return self(level_graph(level, dtype=self.embed[0].weight.dtype))

    def predicts_unit_weights(self) -> bool:
        """True when the output layers are zero, so every weight is exactly 1 whatever the input
        (the set-up may then skip the network)."""
        return all(not p.detach().any() for head in (self.edge_head, self.node_head) for p in head[-1].parameters())


NETWORKS.register("algebraic_amg", AlgebraicMultigridConfig,
                  lambda **fields: AlgebraicMultigridNet(**fields))
