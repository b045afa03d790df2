"""Gradients through linear solves by implicit differentiation (one adjoint solve).

``x = A^{-1} b`` depends on ``b`` and on the entries of ``A``; for a loss ``L(x)`` with
``g = dL/dx``, differentiating ``A x = b`` gives

    A^T lambda = g,        dL/db = lambda,        dL/dA = -lambda x^T,

so the whole backward pass is *one more solve* with the same solver and preconditioner (``A`` is
symmetric for CG, so ``A^T = A``), whatever number of iterations the forward solve took. The
forward iterations run without autograd: memory does not grow with them, and the gradient is
that of the exact solution (to the solver's tolerance), not of the truncated iteration.

Which entries of ``A`` get a gradient (``dL/dA`` restricted to what ``A`` stores):

* a dense torch tensor ``(n, n)``: ``-sum_b lambda_b x_b^T``; a batch ``(B, n, n)``: one outer
  product per system;
* a torch sparse CSR or COO tensor: ``-lambda_i x_j`` for every stored entry ``(i, j)`` (its
  values' gradient, same sparsity pattern);
* a :class:`~pdesurrogates.linalg.operators.StencilOperator`: the coefficient ``a``'s gradient
  ``-d/da (lambda^T A(a) x)``, by autograd through the stencil itself, so PDE-constrained
  problems (``-div(a grad u) = f``, 2D or 3D) take a few lines.

A SciPy/numpy ``A``, a LinearOperator or a callable give ``b`` a gradient only (a callable's own
parameters get none: it is applied without autograd). A solve that did not converge raises on
backward rather than return a wrong gradient. Double backward (``create_graph=True``)
differentiates the adjoint solve itself (as the transposed solve it stands for), so
Hessian-vector products work as well; the one exception is a sparse ``A`` built by torch's
constructor from values that are not leaves, which torch cannot differentiate twice.

Sparse ``A`` built as ``torch.sparse_csr_tensor(crow, col, values)`` (or COO) from leaf
``values``: the gradient goes to ``values`` directly, in ``O(nnz)``. Through non-leaf values it
passes torch's constructor backward, which forms a dense ``(n, n)`` matrix (2.4 GB for the 128^2
Laplacian); for values computed from other parameters, solve with a leaf copy
``v = values.detach().requires_grad_()`` and pass its gradient on, ``values.backward(v.grad)``.

>>> import torch
>>> from pdesurrogates.linalg import StencilOperator, cg
>>> from pdesurrogates.physics.grid import Grid
>>> grid = Grid((17, 17))
>>> a = torch.ones(grid.shape, dtype=torch.float64, requires_grad=True)  # coefficient
>>> f = torch.ones(15 * 15, dtype=torch.float64)                          # source
>>> u = cg(StencilOperator(a, grid), f, rtol=1e-12).x                    # -div(a grad u) = f
>>> loss = (u ** 2).sum()
>>> loss.backward()                                                       # one adjoint solve
>>> a.grad.shape, bool(a.grad[8, 8] < 0)   # more conductivity in the middle lowers u there
(torch.Size([17, 17]), True)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from pdesurrogates.linalg.operators import StencilOperator

__all__ = ["differentiable_solve", "solve_parameter"]


def solve_parameter(A) -> torch.Tensor | None:
    """The tensor holding ``A``'s differentiable entries (see the module docstring), or ``None``."""
    if isinstance(A, StencilOperator):
        return A.a
    if isinstance(A, torch.Tensor):
        return A
    return None


_CONSTRUCTORS = ("SparseCompressedTensorBackward0", "SparseCooTensorWithDimsAndTensorsBackward0")


def _leaf_values(A: torch.Tensor) -> torch.Tensor | None:
    """The leaf ``values`` a sparse ``A`` was built from (``torch.sparse_csr_tensor(crow, col,
    values)`` / ``torch.sparse_coo_tensor(indices, values)``), if so.

    Gradients are then returned for ``values`` directly, ``O(nnz)``: torch's own backward of those
    constructors goes through a dense ``(n, n)`` matrix (measured: 2.4 GB and 5 s for the 128^2
    Laplacian), which would defeat the purpose for large systems.
    """
    fn = A.grad_fn
    if fn is None or type(fn).__name__ not in _CONSTRUCTORS:
        return None
    leaves = [node.variable for node, _ in fn.next_functions
              if node is not None and type(node).__name__ == "AccumulateGrad"]
    if len(leaves) == 1 and leaves[0].ndim == 1 and leaves[0].numel() == A._nnz():
        return leaves[0]
    return None


@dataclass
class _Spec:
    """Everything the autograd node needs besides tensors."""

    name: str
    run: Callable  # run(A, b, x0, **kwargs) -> SolveResult (no autograd inside)
    A: Any
    x0: Any
    kwargs: dict
    adjoint_kwargs: dict
    b_shape: tuple
    result: Any = None  # handed back by differentiable_solve, then dropped (no reference cycle)
    status: tuple = ()  # (converged, iterations) of the forward solve, for backward
    values_only: bool = False  # sparse A: return the gradient of its leaf values (1-D)
    transposed: bool = False  # the solve stands for A^T x = b (see differentiable_solve)


def differentiable_solve(name: str, run: Callable, A, b, x0, kwargs: dict,
                         adjoint_rtol: float | None, *, transposed: bool = False):
    """``run(A, b, x0, **kwargs)``, differentiable in ``b`` and ``A``'s entries when they need it.

    ``transposed``: the solve stands for ``A^T x = b`` (the adjoint solve, when it is itself
    differentiated): the same numbers for a symmetric ``A``, but the gradient with respect to
    ``A``'s entries is transposed, ``-x lambda^T``.

    Without autograd in play (grad mode off, or neither ``b`` nor ``A``'s entries requiring a
    gradient) this is ``run`` itself.
    """
    param = solve_parameter(A)
    b_grad = isinstance(b, torch.Tensor) and b.requires_grad
    p_grad = param is not None and param.requires_grad
    if not torch.is_grad_enabled() or not (b_grad or p_grad):
        return run(A, b, x0, **kwargs)
    if not isinstance(b, torch.Tensor):
        raise TypeError(
            f"{name}: A's entries require a gradient but b is a {type(b).__name__}; pass b as a "
            "torch tensor to get a differentiable solution x"
        )
    if param is not None and param.layout not in (torch.strided, torch.sparse_csr, torch.sparse_coo):
        raise TypeError(f"{name}: gradients with respect to a {param.layout} matrix are not supported; "
                        "use a dense, sparse CSR or sparse COO tensor")
    adjoint_kwargs = dict(kwargs)
    # the forward solve has checked A's symmetry; the adjoint solve of the same A skips it
    adjoint_kwargs.update(callback=None, atol=0.0, check_symmetry=False,
                          rtol=kwargs["rtol"] if adjoint_rtol is None else adjoint_rtol)
    spec = _Spec(name, run, A, x0, kwargs, adjoint_kwargs, tuple(b.shape), transposed=transposed)
    if param is not None and param.layout != torch.strided:
        values = _leaf_values(param)
        if values is not None:  # differentiate the values themselves (O(nnz))
            param, spec.values_only = values, True
    dummy = param if param is not None else torch.empty(0)
    x = _ImplicitSolve.apply(spec, b, dummy)
    result, spec.result = spec.result, None
    result.x = x
    return result


class _ImplicitSolve(torch.autograd.Function):
    @staticmethod
    def forward(ctx, spec: _Spec, b: torch.Tensor, param: torch.Tensor):
        with torch.no_grad():
            res = spec.run(spec.A, b.detach(), spec.x0, **spec.kwargs)
        spec.result = res
        spec.status = (res.converged, res.iterations)
        ctx.spec = spec
        x = res.x
        ctx.save_for_backward(x)
        return x

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        spec: _Spec = ctx.spec
        (x,) = ctx.saved_tensors
        _check_converged(spec.name, *spec.status, "forward solve")
        create_graph = torch.is_grad_enabled()
        if create_graph:  # double backward: the adjoint solve is itself differentiated
            adj = differentiable_solve(spec.name, spec.run, spec.A, g, None, spec.adjoint_kwargs, None,
                                       transposed=not spec.transposed)
        else:
            adj = spec.run(spec.A, g.detach(), None, **spec.adjoint_kwargs)
        _check_converged(spec.name, adj.converged, adj.iterations,
                         "adjoint solve A^T lambda = dL/dx")
        lam = adj.x
        grad_b = None
        if ctx.needs_input_grad[1]:
            grad_b = lam
            if len(spec.b_shape) == 1 and lam.ndim == 2:  # one b broadcast over a batch of A
                grad_b = lam.sum(0)
        grad_param = None
        if ctx.needs_input_grad[2]:
            left, right = (x, lam) if spec.transposed else (lam, x)  # -left right^T
            grad_param = _parameter_gradient(spec.A, left, right, create_graph, spec.values_only)
        return None, grad_b, grad_param


def _check_converged(name: str, converged, iterations, what: str) -> None:
    flags = torch.as_tensor(np.asarray(converged.cpu() if isinstance(converged, torch.Tensor)
                                       else converged)).reshape(-1)
    if not bool(flags.all()):
        i = int(torch.nonzero(~flags)[0])
        its = torch.as_tensor(np.asarray(iterations.cpu() if isinstance(iterations, torch.Tensor)
                                         else iterations)).reshape(-1)
        raise RuntimeError(
            f"{name}: the {what} did not converge (system {i}, {int(its[i])} iterations), so the "
            "gradient by implicit differentiation would be wrong; raise maxiter, loosen rtol (or "
            "adjoint_rtol), or improve the preconditioner"
        )


def _parameter_gradient(A, lam: torch.Tensor, x: torch.Tensor, create_graph: bool,
                        values_only: bool = False):
    """``-lambda x^T`` restricted to what ``A`` stores (rows of ``lam``, ``x``: systems); for a
    sparse ``A`` the gradient of its values (``values_only``) or a sparse tensor like ``A``."""
    lam2 = lam.reshape(-1, lam.shape[-1])
    x2 = x.reshape(-1, x.shape[-1])
    if isinstance(A, StencilOperator):
        # only the explicit dependence on a (lambda, x held fixed) is wanted
        def explicit(a):
            return (lam2 * StencilOperator(a, A.grid).matvec(x2)).sum()

        if create_graph:  # differentiable in a, lambda and x: a functional transform
            return -torch.func.grad(explicit)(A.a)
        with torch.enable_grad():
            a = A.a.detach().requires_grad_(True)
            lam2, x2 = lam2.detach(), x2.detach()
            (grad,) = torch.autograd.grad(explicit(a), a)
        return -grad
    if A.layout == torch.strided:
        lam2, x2 = lam2.to(A.dtype), x2.to(A.dtype)
        if A.ndim == 3:
            return -lam2.unsqueeze(2) * x2.unsqueeze(1)
        return -(lam2.T @ x2)
    if A.layout == torch.sparse_csr:
        crow, col = A.crow_indices(), A.col_indices()
        vals = _csr_values_gradient(crow, col, lam2, x2, create_graph).to(A.dtype)
        if values_only:
            return vals
        return torch.sparse_csr_tensor(crow, col, vals, tuple(A.shape), device=A.device)
    if values_only:  # the values as given, duplicates included: each gets its entry's gradient
        idx = A._indices()
        return -(lam2[:, idx[0]] * x2[:, idx[1]]).sum(0).to(A.dtype)
    # on the coalesced pattern: duplicates of an entry each receive its full gradient
    idx = A.detach().coalesce().indices()
    vals = -(lam2[:, idx[0]] * x2[:, idx[1]]).sum(0).to(A.dtype)
    return torch.sparse_coo_tensor(idx, vals, tuple(A.shape), device=A.device, is_coalesced=True)


def _csr_values_gradient(crow, col, lam2, x2, create_graph: bool) -> torch.Tensor:
    """``-sum_b lambda_b[i] x_b[j]`` for every stored entry ``(i, j)`` of a CSR pattern."""
    if create_graph or lam2.device.type != "cpu":
        rows = torch.repeat_interleave(torch.arange(crow.numel() - 1, device=crow.device),
                                       crow[1:] - crow[:-1])
        return -(lam2[:, rows] * x2[:, col]).sum(0)
    # CPU, no graph: this is the whole backward pass besides the adjoint solve. Repeating each
    # lambda_i over its row's entries and one gather of x cost 0.4x the two index gathers
    counts = np.diff(crow.numpy())
    cols = col.numpy()
    lam_np, x_np = lam2.detach().numpy(), x2.detach().numpy()
    vals = np.repeat(lam_np[0], counts)
    vals *= np.take(x_np[0], cols)
    for k in range(1, lam_np.shape[0]):
        vals += np.repeat(lam_np[k], counts) * np.take(x_np[k], cols)
    return torch.from_numpy(np.negative(vals, out=vals))
