"""Learned accelerators for linear solvers.

- :class:`SORBandit`, :class:`LearnedSORSolver` (``sor_bandit``): online choice of the SOR
  relaxation factor across a sequence of systems (Khodak et al., ICLR 2024), with the bandit
  learners (:class:`TsallisINF` and the contextual ones) in ``bandits``.
- :class:`ConjugateDirectionNet`, :class:`LearnedPreconditioner` (``conjugate_direction``): a network
  approximating ``A^-1 r`` used as a nonlinear preconditioner inside flexible CG
  (Kaneda et al., ICML 2023).
- :class:`NeuralOperatorPreconditioner` (``neural_preconditioner``): a trained surrogate used the same way.
- :class:`MultigridNeuralOperator`, :class:`NeuralMultigridPreconditioner` (``multigrid_preconditioner``):
  an MgNO-style learned V-cycle that applies the system's own operator on every level (linear in
  the residual, nonlinear in the coefficient), trained to minimise the V-cycle's error in energy norm.
- :func:`pretrained`, :class:`LearnedAMG`, :class:`LearnedAMGPreconditioner` (``amg``): an algebraic
  learned multigrid that needs only the matrix: ``pretrained().setup(A)`` for any SPD ``A``.

Names are imported lazily so that using one accelerator does not import the others.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "SORBandit": "sor_bandit",
    "LearnedSORSolver": "sor_bandit",
    "TsallisINF": "bandits",
    "ConjugateDirectionNet": "conjugate_direction",
    "LearnedPreconditioner": "conjugate_direction",
    "dcdm": "conjugate_direction",
    "NeuralOperatorPreconditioner": "neural_preconditioner",
    "MultigridNeuralOperator": "multigrid_preconditioner",
    "NeuralMultigridPreconditioner": "multigrid_preconditioner",
    "LearnedAMG": "amg",
    "LearnedAMGPreconditioner": "amg",
    "pretrained": "amg",
}

__all__ = sorted(_EXPORTS)  # noqa: PLE0605 -- the lazily imported names


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'pdesurrogates.solvers.learned' has no attribute {name!r}")
    module = importlib.import_module(f"pdesurrogates.solvers.learned.{_EXPORTS[name]}")
    return getattr(module, name)
