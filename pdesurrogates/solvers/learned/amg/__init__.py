"""Algebraic learned multigrid: a preconditioner built from the matrix alone.

See :mod:`pdesurrogates.solvers.learned.amg.preconditioner` for the user-facing objects.
"""
