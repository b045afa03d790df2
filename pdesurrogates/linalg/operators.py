"""Linear operators: conversion between matrix formats, matrix-free stencils, a SciPy bridge.

Every solver in :mod:`pdesurrogates.linalg` accepts ``A`` as

* a torch sparse CSR tensor ``(n, n)`` (what :mod:`~pdesurrogates.linalg.gallery` returns),
* a torch dense tensor ``(n, n)`` or a batch of dense matrices ``(B, n, n)``,
* a SciPy sparse matrix/array or a numpy array ``(n, n)`` (or ``(B, n, n)``),
* a :class:`StencilOperator` (matrix-free ``-div(a grad .)`` on a grid).

Internally each is wrapped in a :class:`TorchOperator` living on the device and dtype the solve
runs in. :func:`as_linear_operator` goes the other way, to a
:class:`scipy.sparse.linalg.LinearOperator` acting on numpy vectors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch

from pdesurrogates.physics.grid import Grid
from pdesurrogates.physics.operators import apply_diffusion, diffusion_matrix, pad_dirichlet

__all__ = [
    "StencilOperator",
    "TorchOperator",
    "as_linear_operator",
    "to_scipy_csr",
    "to_torch_csr",
]


def _is_scipy_sparse(A) -> bool:
    return sp.issparse(A)


def to_torch_csr(A, dtype: torch.dtype = torch.float64, device=None) -> torch.Tensor:
    """Convert ``A`` (SciPy sparse, numpy, torch dense/sparse, :class:`StencilOperator`) to
    a torch sparse CSR tensor ``(n, n)``.

    >>> to_torch_csr(np.eye(3)).layout
    torch.sparse_csr
    """
    if isinstance(A, StencilOperator):
        A = A.to_scipy()
    if isinstance(A, torch.Tensor):
        if A.ndim != 2:
            raise ValueError(f"A: expected a 2-D matrix, found shape {tuple(A.shape)}")
        A = A.to(dtype=dtype, device=device if device is not None else A.device)
        return A if A.layout == torch.sparse_csr else A.to_sparse_csr()
    A = to_scipy_csr(A)
    return _scipy_to_torch_csr(A, dtype, device)


def _scipy_to_torch_csr(A: sp.csr_matrix, dtype, device) -> torch.Tensor:
    A = sp.csr_matrix(A)
    A.sort_indices()
    return torch.sparse_csr_tensor(
        torch.from_numpy(A.indptr.astype(np.int64)),
        torch.from_numpy(A.indices.astype(np.int64)),
        torch.from_numpy(np.ascontiguousarray(A.data)).to(dtype),
        size=A.shape,
        device=device,
        check_invariants=False,
    )


def to_scipy_csr(A) -> sp.csr_matrix:
    """Convert ``A`` (any supported matrix format) to a float64 SciPy CSR matrix on the CPU.

    >>> to_scipy_csr(torch.eye(2).to_sparse_csr()).toarray()
    array([[1., 0.],
           [0., 1.]])
    """
    if isinstance(A, StencilOperator):
        return A.to_scipy()
    if isinstance(A, TorchOperator):
        A = A.matrix
    if isinstance(A, torch.Tensor):
        if A.ndim != 2:
            raise ValueError(f"A: expected a 2-D matrix, found shape {tuple(A.shape)}")
        A = A.detach().cpu()
        if A.layout == torch.sparse_csr:
            return sp.csr_matrix(
                (
                    A.values().to(torch.float64).numpy(),
                    A.col_indices().numpy(),
                    A.crow_indices().numpy(),
                ),
                shape=tuple(A.shape),
            )
        if A.layout != torch.strided:
            A = A.to_dense()
        return sp.csr_matrix(A.to(torch.float64).numpy())
    if _is_scipy_sparse(A):
        return sp.csr_matrix(A, dtype=np.float64)
    if isinstance(A, np.ndarray):
        if A.ndim != 2:
            raise ValueError(f"A: expected a 2-D matrix, found shape {A.shape}")
        return sp.csr_matrix(A.astype(np.float64))
    raise TypeError(
        "A: expected a torch tensor, SciPy sparse matrix, numpy array or StencilOperator, "
        f"found {type(A).__name__}"
    )


@dataclass(frozen=True, eq=False)
class StencilOperator:
    """Matrix-free ``-div(a grad u)`` on the interior nodes of a Dirichlet grid.

    The same finite-volume stencil as :func:`pdesurrogates.physics.operators.diffusion_matrix`
    (harmonic face averages), applied with tensor shifts so that it runs batched on any device.

    Parameters
    ----------
    a : array ``grid.shape``
        Positive coefficient at every node (boundary nodes included).
    grid : Grid
        A Dirichlet grid; the unknowns are its interior nodes in C order,
        ``n = prod(grid.interior_shape)``.

    >>> op = StencilOperator(np.ones((5, 5)), Grid((5, 5)))
    >>> x = torch.rand(2, 9, dtype=torch.float64)
    >>> bool(torch.allclose(op.matvec(x), (to_torch_csr(op) @ x.T).T))
    True
    """

    a: Any
    grid: Grid

    def __post_init__(self) -> None:
        a = self.a
        if not isinstance(a, torch.Tensor):
            a = torch.as_tensor(np.asarray(a, dtype=np.float64))
        if tuple(a.shape) != self.grid.shape:
            raise ValueError(
                f"StencilOperator: coefficient a has shape {tuple(a.shape)}, "
                f"grid needs {self.grid.shape}"
            )
        if self.grid.boundary != "dirichlet":
            raise ValueError(f"StencilOperator needs a Dirichlet grid, got {self.grid.boundary!r}")
        if not bool(torch.isfinite(a).all()) or not bool((a > 0).all()):
            raise ValueError("StencilOperator: coefficient a must be finite and positive")
        object.__setattr__(self, "a", a)

    @property
    def shape(self) -> tuple[int, int]:
        n = math.prod(self.grid.interior_shape)
        return (n, n)

    def matvec(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the operator to ``x`` of shape ``(n,)`` or ``(B, n)``."""
        nd = self.grid.ndim
        lead = x.shape[:-1]
        u = x.reshape(*lead, *self.grid.interior_shape)
        u = pad_dirichlet(u, nd)
        a = self.a.to(dtype=x.dtype, device=x.device)
        return apply_diffusion(a, u, self.grid).reshape(*lead, -1)

    def to_scipy(self) -> sp.csr_matrix:
        """The assembled SciPy CSR matrix (``physics.operators.diffusion_matrix``)."""
        return diffusion_matrix(self.a.detach().cpu().numpy(), self.grid)

    def colors(self) -> np.ndarray:
        """Red-black colouring of the interior nodes: parity of the sum of their indices."""
        idx = np.indices(self.grid.interior_shape).sum(axis=0)
        return (idx % 2).ravel()


class TorchOperator:
    """A matrix or stencil made ready for a solve on one device in one dtype.

    Parameters
    ----------
    A : any supported matrix format, see the module docstring.
    dtype : torch.dtype
    device : torch.device

    Attributes
    ----------
    n : int
        Number of unknowns.
    batch : int or None
        ``B`` when ``A`` is a batch of dense matrices ``(B, n, n)``, else ``None``.
    kind : str
        ``"csr"``, ``"dense"``, ``"batched"`` or ``"stencil"``.
    """

    def __init__(self, A, dtype: torch.dtype = torch.float64, device=None) -> None:
        self.dtype = dtype
        self.stencil = None
        self.batch = None
        if isinstance(A, TorchOperator):
            A = A.source
        self.source = A
        if isinstance(A, StencilOperator):
            self.kind = "stencil"
            self.stencil = A
            self.device = torch.device(device) if device is not None else A.a.device
            self.n = A.shape[0]
            self.matrix = None
            self._host = None
            return
        if isinstance(A, np.ndarray) or _is_scipy_sparse(A):
            if _is_scipy_sparse(A):
                shape = A.shape
                _check_square(shape)
                A = _scipy_to_torch_csr(sp.csr_matrix(A, dtype=np.float64), dtype, device)
            else:
                A = torch.from_numpy(np.ascontiguousarray(A, dtype=np.float64))
        if not isinstance(A, torch.Tensor):
            raise TypeError(
                "A: expected a torch tensor, SciPy sparse matrix, numpy array or "
                f"StencilOperator, found {type(A).__name__}"
            )
        self.device = torch.device(device) if device is not None else A.device
        _check_square(tuple(A.shape))
        if A.layout == torch.strided:
            A = A.to(dtype=dtype, device=self.device)
            self.kind = "batched" if A.ndim == 3 else "dense"
            if A.ndim == 3:
                self.batch = A.shape[0]
        else:
            if A.layout != torch.sparse_csr:
                A = A.to_sparse_csr()
            A = A.to(dtype=dtype, device=self.device)
            self.kind = "csr"
        self.matrix = A
        self.n = A.shape[-1]
        if not bool(torch.isfinite(self.values()).all()):
            raise ValueError("A contains NaN or Inf entries")
        self._host = None
        if self.kind == "csr" and self.device.type == "cpu" and dtype in (torch.float32,
                                                                          torch.float64):
            # a SciPy view of the same memory, for fast CPU mat-vecs
            self._host = sp.csr_matrix(
                (A.values().numpy(), A.col_indices().numpy(), A.crow_indices().numpy()),
                shape=(self.n, self.n),
            )

    # -- basic actions -------------------------------------------------------------------
    def values(self) -> torch.Tensor:
        if self.kind == "csr":
            return self.matrix.values()
        return self.matrix

    def matvec(self, X: torch.Tensor) -> torch.Tensor:
        """``A x`` for every row of ``X`` ``(B, n)``; returns ``(B, n)``."""
        if self.kind == "stencil":
            return self.stencil.matvec(X)
        if self.kind == "batched":
            return torch.bmm(self.matrix, X.unsqueeze(-1)).squeeze(-1)
        if self._host is not None and X.device.type == "cpu" and not X.requires_grad:
            # on the CPU SciPy's CSR kernels are several times faster than torch's
            Xn = X.numpy()
            if Xn.shape[0] == 1:
                return torch.from_numpy(self._host @ Xn[0]).unsqueeze(0)
            return torch.from_numpy(np.ascontiguousarray((self._host @ Xn.T).T))
        return (self.matrix @ X.T).T

    def diagonal(self) -> torch.Tensor:
        """Diagonal ``(n,)`` (or ``(B, n)`` for a batch of dense matrices)."""
        if self.kind == "stencil":
            d = torch.from_numpy(self.stencil.to_scipy().diagonal())
            return d.to(dtype=self.dtype, device=self.device)
        if self.kind in ("dense", "batched"):
            return torch.diagonal(self.matrix, dim1=-2, dim2=-1).clone()
        rows, cols, vals = self.coo()
        d = torch.zeros(self.n, dtype=self.dtype, device=self.device)
        on = rows == cols
        return d.index_add_(0, rows[on], vals[on])

    def coo(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Row indices, column indices and values of a CSR operator."""
        if self.kind != "csr":
            return self.sparse().coo()
        crow = self.matrix.crow_indices()
        counts = crow[1:] - crow[:-1]
        rows = torch.repeat_interleave(torch.arange(self.n, device=self.device), counts)
        return rows, self.matrix.col_indices(), self.matrix.values()

    def sparse(self) -> TorchOperator:
        """The same operator as a CSR :class:`TorchOperator` (refuses a batch of matrices)."""
        if self.kind == "csr":
            return self
        if self.kind == "batched":
            raise ValueError("a batch of matrices (B, n, n) has no single sparse form")
        if self.kind == "stencil":
            return TorchOperator(self.stencil.to_scipy(), self.dtype, self.device)
        return TorchOperator(self.matrix.to_sparse_csr(), self.dtype, self.device)

    def to_scipy(self) -> sp.csr_matrix:
        """Float64 SciPy CSR copy on the CPU."""
        if self.kind == "stencil":
            return self.stencil.to_scipy()
        if self.kind == "batched":
            raise ValueError("a batch of matrices (B, n, n) has no single SciPy form")
        return to_scipy_csr(self.matrix)

    def pattern_scipy(self) -> sp.csr_matrix:
        """Sparsity pattern (union over a batch) as a SciPy CSR matrix."""
        if self.kind == "batched":
            nz = (self.matrix != 0).any(dim=0)
            return sp.csr_matrix(nz.cpu().numpy().astype(np.float64))
        return self.to_scipy()

    def dense(self) -> torch.Tensor:
        """Dense ``(n, n)`` or ``(B, n, n)`` tensor."""
        if self.kind in ("dense", "batched"):
            return self.matrix
        if self.kind == "stencil":
            return self.sparse().dense()
        return self.matrix.to_dense()


def _check_square(shape: tuple) -> None:
    if len(shape) not in (2, 3) or shape[-1] != shape[-2]:
        raise ValueError(f"A must be square (n, n) or a batch (B, n, n), found shape {shape}")


# -- systems: A, b, x0 ------------------------------------------------------------------------
@dataclass
class System:
    """A validated linear system in batched torch form (internal to the solvers)."""

    op: TorchOperator
    b: torch.Tensor  # (B, n)
    x0: torch.Tensor  # (B, n)
    numpy_out: bool
    single: bool
    out_dtype: Any

    def output(self, X: torch.Tensor):
        """Turn a batched ``(B, n)`` tensor back into the caller's type and shape."""
        X = X[0] if self.single else X
        if self.numpy_out:
            return X.detach().cpu().numpy().astype(self.out_dtype, copy=False)
        return X.to(self.out_dtype)

    def field(self, v: torch.Tensor):
        """Per-system vector ``(B,)`` or history ``(K, B)`` in the caller's convention."""
        v = v[..., 0] if self.single else v
        if self.numpy_out:
            v = v.detach().cpu().numpy()
            return v.item() if v.ndim == 0 else v
        return v.item() if v.ndim == 0 else v


def prepare_system(A, b, x0=None, *, name: str = "solver") -> System:
    """Validate ``A``, ``b`` and ``x0`` and bring them to one device and dtype.

    The solve runs on ``b``'s device when ``b`` is a torch tensor, else on ``A``'s device (CPU
    for SciPy/numpy). The dtype is ``b``'s when it is a floating torch tensor, else float64.
    """
    numpy_out = not isinstance(b, torch.Tensor)
    if numpy_out:
        b_arr = np.asarray(b)
        if not np.issubdtype(b_arr.dtype, np.number):
            raise TypeError(f"{name}: b must be numeric, found dtype {b_arr.dtype}")
        out_dtype = b_arr.dtype if np.issubdtype(b_arr.dtype, np.floating) else np.float64
        dtype = torch.float64
        device = A.device if isinstance(A, torch.Tensor) else (
            A.a.device if isinstance(A, StencilOperator) else torch.device("cpu"))
        bt = torch.from_numpy(np.ascontiguousarray(b_arr, dtype=np.float64)).to(device)
    else:
        dtype = b.dtype if b.is_floating_point() else torch.float64
        out_dtype = dtype
        device = b.device
        bt = b.detach().to(dtype)
    op = TorchOperator(A, dtype=dtype, device=device)
    if bt.ndim not in (1, 2):
        raise ValueError(f"{name}: b must have shape (n,) or (B, n), found {tuple(bt.shape)}")
    if bt.shape[-1] != op.n:
        raise ValueError(
            f"{name}: A is {op.n} x {op.n} but b has shape {tuple(bt.shape)} "
            f"(expected last dimension {op.n})"
        )
    single = bt.ndim == 1
    B = bt.reshape(-1, op.n)
    if op.batch is not None and B.shape[0] != op.batch:
        if single:
            B = B.expand(op.batch, op.n)
            single = False
        else:
            raise ValueError(
                f"{name}: A is a batch of {op.batch} matrices but b has {B.shape[0]} rows"
            )
    if not bool(torch.isfinite(B).all()):
        raise ValueError(f"{name}: b contains NaN or Inf")
    if x0 is None:
        X0 = torch.zeros_like(B)
    else:
        xt = x0 if isinstance(x0, torch.Tensor) else torch.from_numpy(
            np.ascontiguousarray(np.asarray(x0), dtype=np.float64))
        xt = xt.detach().to(dtype=dtype, device=device)
        if tuple(xt.shape) != tuple(bt.shape):
            raise ValueError(
                f"{name}: x0 has shape {tuple(xt.shape)}, expected b's shape {tuple(bt.shape)}"
            )
        if not bool(torch.isfinite(xt).all()):
            raise ValueError(f"{name}: x0 contains NaN or Inf")
        X0 = xt.reshape(-1, op.n).expand_as(B).clone()
    return System(op, B.contiguous(), X0, numpy_out, single, out_dtype)


# -- SciPy bridge ------------------------------------------------------------------------------
def as_linear_operator(A) -> spla.LinearOperator:
    """A :class:`scipy.sparse.linalg.LinearOperator` (float64, numpy vectors) for ``A``.

    ``A`` may be any supported matrix format, a :class:`StencilOperator`, or a preconditioner
    object (anything with an ``as_linear_operator()`` method, e.g.
    :class:`~pdesurrogates.linalg.preconditioners.Preconditioner`; nonlinear ones refuse).

    >>> L = as_linear_operator(torch.eye(3, dtype=torch.float64).to_sparse_csr())
    >>> L.matvec(np.arange(3.0))
    array([0., 1., 2.])
    """
    if isinstance(A, spla.LinearOperator):
        return A
    if hasattr(A, "as_linear_operator") and not isinstance(A, TorchOperator):
        return A.as_linear_operator()
    op = TorchOperator(A, dtype=torch.float64, device="cpu")
    if op.kind == "batched":
        raise ValueError("as_linear_operator: a batch of matrices (B, n, n) is not one operator")

    def matmat(V: np.ndarray) -> np.ndarray:
        X = torch.from_numpy(np.ascontiguousarray(np.asarray(V, dtype=np.float64).T))
        return op.matvec(X).numpy().T

    def matvec(v: np.ndarray) -> np.ndarray:
        return matmat(np.asarray(v).reshape(-1, 1)).reshape(-1)

    return spla.LinearOperator(
        (op.n, op.n), matvec=matvec, matmat=matmat, dtype=np.float64
    )
