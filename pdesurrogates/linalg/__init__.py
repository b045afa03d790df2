"""Linear algebra for PDE systems: operators, a gallery of test matrices, relaxation and Krylov
solvers, and the preconditioner protocol.

Every solver has the SciPy shape ``solve(A, b, x0=None, rtol=1e-8, atol=0.0, maxiter=None,
M=None, callback=None, ...) -> SolveResult(x, converged, iterations, residuals)``, accepts a
batch of right-hand sides ``(B, n)`` and runs on the device of its inputs. The Krylov solvers
also take SciPy's objects (a ``LinearOperator`` or callable ``A`` and ``M``), and their ``x`` is
differentiable in ``b`` and in ``A``'s entries by one adjoint solve
(:mod:`pdesurrogates.linalg.adjoint`).

>>> from pdesurrogates.linalg import gallery, gauss_seidel
>>> A = gallery.poisson1d(8)
>>> res = gauss_seidel(A, np.ones(8), rtol=1e-10, maxiter=1000)
>>> bool(res.converged), bool(np.allclose(A.to_dense().numpy() @ res.x, 1.0))
(True, True)
"""

import numpy as np  # noqa: F401  (doctest)

from pdesurrogates.linalg import gallery
from pdesurrogates.linalg.krylov import cg, fcg, pcg
from pdesurrogates.linalg.operators import (
    StencilOperator,
    as_linear_operator,
    to_scipy_csr,
    to_torch_csr,
)
from pdesurrogates.linalg.preconditioners import (
    AMGPreconditioner,
    IC0Preconditioner,
    JacobiPreconditioner,
    Preconditioner,
    SSORPreconditioner,
)
from pdesurrogates.linalg.relaxation import gauss_seidel, jacobi, sor, ssor
from pdesurrogates.linalg.result import SolveResult

__all__ = [
    "AMGPreconditioner",
    "IC0Preconditioner",
    "JacobiPreconditioner",
    "Preconditioner",
    "SSORPreconditioner",
    "SolveResult",
    "StencilOperator",
    "as_linear_operator",
    "cg",
    "fcg",
    "gallery",
    "gauss_seidel",
    "jacobi",
    "pcg",
    "sor",
    "ssor",
    "to_scipy_csr",
    "to_torch_csr",
]
