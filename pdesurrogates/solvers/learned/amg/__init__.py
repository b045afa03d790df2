"""Algebraic learned multigrid: a preconditioner built from the matrix alone.

``pretrained().setup(A)`` (or ``LearnedAMG.load(run_dir).setup(A, B)``) gives a linear, symmetric
preconditioner for :func:`pdesurrogates.linalg.pcg`/:func:`~pdesurrogates.linalg.fcg` and, through
``as_linear_operator()``, SciPy and pyamg. Modules:

* :mod:`.hierarchy`: smoothed-aggregation levels with per-entry prolongation-smoothing weights
  (pyamg's aggregation and cycle);
* :mod:`.network`: the graph network that predicts those weights from the matrix entries;
* :mod:`.preconditioner`: :class:`LearnedAMG`, :class:`LearnedAMGPreconditioner`, :func:`pretrained`;
* :mod:`.training`: training systems, the differentiable cycle and the relative PCG loss
  (task ``algebraic_preconditioner``).
"""

from pdesurrogates.solvers.learned.amg.network import (
    AlgebraicMultigridConfig,
    AlgebraicMultigridNet,
)
from pdesurrogates.solvers.learned.amg.preconditioner import (
    LearnedAMG,
    LearnedAMGPreconditioner,
    pretrained,
)

__all__ = ["AlgebraicMultigridConfig", "AlgebraicMultigridNet", "LearnedAMG", "LearnedAMGPreconditioner", "pretrained"]
