"""Linear operators: conversion between matrix formats, matrix-free stencils, a SciPy bridge.

Every solver in :mod:`pdesurrogates.linalg` accepts ``A`` as

* a torch sparse CSR (or COO) tensor ``(n, n)`` (what :mod:`~pdesurrogates.linalg.gallery`
  returns),
* a torch dense tensor ``(n, n)`` or a batch of dense matrices ``(B, n, n)``,
* a SciPy sparse matrix/array or a numpy array ``(n, n)`` (or ``(B, n, n)``),
* a :class:`StencilOperator` (matrix-free ``-div(a grad .)`` on a grid).

The Krylov solvers (:mod:`~pdesurrogates.linalg.krylov`) also take matrix-free operators:

* a :class:`scipy.sparse.linalg.LinearOperator` (or any object with ``shape`` and ``matvec``,
  as :func:`scipy.sparse.linalg.aslinearoperator` accepts), applied to float64 numpy vectors,
* a plain callable ``A(x)``, which sees vectors in the caller's convention: with a numpy ``b``
  it receives 1-D numpy vectors ``(n,)`` (SciPy's convention, one call per system), with a torch
  ``b`` the batch ``(B, n)`` as a torch tensor on ``b``'s device. Its size is ``A.shape`` when
  it has one, else ``b``'s length.

Real floating-point data only: complex ``A``, ``b`` or ``x0`` are refused (the solvers here are
for real symmetric systems; for a real ``A`` and complex ``b``, solve the real and imaginary
parts as a batch ``(2, n)``).

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
from pdesurrogates.physics.operators import (
    apply_diffusion,
    diffusion_matrix,
    harmonic_face_average,
    pad_dirichlet,
)

__all__ = [
    "StencilOperator",
    "TorchOperator",
    "as_linear_operator",
    "to_scipy_csr",
    "to_torch_csr",
]


def _is_scipy_sparse(A) -> bool:
    return sp.issparse(A)


def _is_complex(x) -> bool:
    """Whether ``x`` (torch tensor, numpy array, SciPy matrix, LinearOperator) holds complex data."""
    if isinstance(x, torch.Tensor):
        return x.is_complex()
    dtype = getattr(x, "dtype", None)
    return dtype is not None and np.issubdtype(np.dtype(dtype), np.complexfloating)


def _refuse_complex(x, what: str, name: str = "A") -> None:
    if _is_complex(x):
        raise TypeError(
            f"{name}: {what} has complex dtype {x.dtype}; the solvers in pdesurrogates.linalg are "
            "for real systems (complex values are not silently dropped). For a real A and a "
            "complex b, solve the real and imaginary parts as one batch of 2 right-hand sides."
        )


def _is_matrix_free(A) -> bool:
    """A SciPy LinearOperator, an object with ``shape`` and ``matvec``, or a plain callable."""
    if isinstance(A, (torch.Tensor, np.ndarray, StencilOperator, TorchOperator)) or _is_scipy_sparse(A):
        return False
    if isinstance(A, spla.LinearOperator):
        return True
    return (hasattr(A, "shape") and hasattr(A, "matvec")) or callable(A)


def to_torch_csr(A, dtype: torch.dtype = torch.float64, device=None) -> torch.Tensor:
    """Convert ``A`` (SciPy sparse, numpy, torch dense/sparse, :class:`StencilOperator`) to
    a torch sparse CSR tensor ``(n, n)``.

    >>> to_torch_csr(np.eye(3)).layout
    torch.sparse_csr
    """
    _refuse_complex(A, "the matrix")
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
    if not A.has_sorted_indices:
        A = A.sorted_indices()  # a copy: the caller's matrix is left as it is
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
    _refuse_complex(A, "the matrix")
    if isinstance(A, StencilOperator):
        return A.to_scipy()
    if isinstance(A, TorchOperator):
        return A.to_scipy()
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
    (harmonic face averages), applied with tensor shifts so that it runs batched on any device,
    and differentiable in ``a`` (the Krylov solvers give ``x = A(a)^{-1} b`` a gradient with
    respect to ``a`` when ``a`` requires one).

    Parameters
    ----------
    a : array ``grid.shape`` or ``(B, *grid.shape)``
        Positive coefficient at every node (boundary nodes included). A leading axis makes a
        batch of ``B`` operators, one per coefficient, applied to ``x`` of shape ``(B, n)`` (a
        batch of systems for the batched solvers, like a batch of dense matrices).
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
        _refuse_complex(a, "the coefficient a", "StencilOperator")
        if not isinstance(a, torch.Tensor):
            a = torch.as_tensor(np.asarray(a, dtype=np.float64))
        if tuple(a.shape[-self.grid.ndim:]) != self.grid.shape or a.ndim > self.grid.ndim + 1:
            raise ValueError(
                f"StencilOperator: coefficient a has shape {tuple(a.shape)}, "
                f"grid needs {self.grid.shape} (or a batch (B, *{self.grid.shape}))"
            )
        if self.grid.boundary != "dirichlet":
            raise ValueError(f"StencilOperator needs a Dirichlet grid, got {self.grid.boundary!r}")
        check = a.detach()
        if not bool(torch.isfinite(check).all()) or not bool((check > 0).all()):
            raise ValueError("StencilOperator: coefficient a must be finite and positive")
        object.__setattr__(self, "a", a)

    @property
    def shape(self) -> tuple[int, int]:
        n = math.prod(self.grid.interior_shape)
        return (n, n)

    @property
    def batch(self) -> int | None:
        """``B`` for a batch of coefficients ``(B, *grid.shape)``, else ``None``."""
        return self.a.shape[0] if self.a.ndim > self.grid.ndim else None

    def matvec(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the operator to ``x`` of shape ``(n,)`` or ``(B, n)``."""
        n = self.shape[0]
        if x.ndim not in (1, 2) or x.shape[-1] != n:
            raise ValueError(
                f"StencilOperator.matvec: expected x of shape ({n},) or (B, {n}) for the grid "
                f"{self.grid.shape}, found {tuple(x.shape)}"
            )
        nd = self.grid.ndim
        lead = x.shape[:-1]
        u = x.reshape(*lead, *self.grid.interior_shape)
        u = pad_dirichlet(u, nd)
        a = self.a.to(dtype=x.dtype, device=x.device)
        return apply_diffusion(a, u, self.grid).reshape(*lead, -1)

    def diagonal(self) -> torch.Tensor:
        """Diagonal ``(n,)`` (``(B, n)`` for a batch) on ``a``'s device, equal bit for bit to
        :meth:`to_scipy`'s.

        (:func:`~pdesurrogates.physics.operators.diffusion_diagonal` in the summation order of
        :func:`~pdesurrogates.physics.operators.diffusion_matrix`.)
        """
        a = self.a.detach()
        nd = self.grid.ndim
        lead = [slice(None)] * (a.ndim - nd)  # the batch axis, if any
        diag = 0.0
        for axis, h in enumerate(self.grid.spacing):
            face = harmonic_face_average(a, a.ndim - nd + axis)
            cut = [slice(1, -1)] * nd
            cut[axis] = slice(None)
            face = face[tuple(lead + cut)] / h**2
            m = face.shape[a.ndim - nd + axis]
            west = [slice(None)] * nd
            east = [slice(None)] * nd
            west[axis], east[axis] = slice(0, m - 1), slice(1, m)
            diag = diag + (face[tuple(lead + west)] + face[tuple(lead + east)])
        return diag.reshape(-1) if self.batch is None else diag.reshape(self.batch, -1)

    def to_scipy(self) -> sp.csr_matrix:
        """The assembled SciPy CSR matrix (``physics.operators.diffusion_matrix``)."""
        if self.batch is not None:
            raise ValueError(f"a batch of {self.batch} stencil operators has no single SciPy "
                             "matrix; index the coefficient (StencilOperator(a[i], grid))")
        return diffusion_matrix(self.a.detach().cpu().numpy(), self.grid)

    def colors(self) -> np.ndarray:
        """Red-black colouring of the interior nodes: parity of the sum of their indices."""
        idx = np.indices(self.grid.interior_shape).sum(axis=0)
        return (idx % 2).ravel()


def _checked_output(y, shape: tuple, what: str):
    """Validate what a user's operator or preconditioner returned: not None, real, ``shape``."""
    if y is None:
        raise ValueError(f"{what} returned None; expected an array of shape {shape}")
    if not isinstance(y, (torch.Tensor, np.ndarray)):
        try:
            y = np.asarray(y)
        except (TypeError, ValueError) as err:
            raise TypeError(
                f"{what} returned {type(y).__name__}; expected an array of shape {shape}"
            ) from err
    if _is_complex(y):
        raise TypeError(f"{what} returned complex values (dtype {y.dtype}); expected real {shape}")
    if tuple(y.shape) != tuple(shape):
        raise ValueError(f"{what} returned shape {tuple(y.shape)}; expected {tuple(shape)}")
    return y


class TorchOperator:
    """A matrix or stencil made ready for a solve on one device in one dtype.

    Parameters
    ----------
    A : any supported matrix format, see the module docstring.
    dtype : torch.dtype
    device : torch.device
    n : int, optional
        Size of a plain callable ``A`` that has no ``shape``.
    numpy_convention : bool
        For a plain callable ``A``: called on 1-D numpy vectors (``True``, SciPy's convention) or
        on ``(B, n)`` torch tensors (``False``).

    Attributes
    ----------
    n : int
        Number of unknowns.
    batch : int or None
        ``B`` when ``A`` is a batch of dense matrices ``(B, n, n)`` or a
        :class:`StencilOperator` with a batch of coefficients, else ``None``.
    kind : str
        ``"csr"``, ``"dense"``, ``"batched"``, ``"stencil"``, ``"linear_operator"`` (SciPy
        LinearOperator or duck-typed) or ``"callable"``.
    matrix_free : bool
        ``True`` for the last two: no entries, hence no diagonal or sparse form.
    """

    def __init__(self, A, dtype: torch.dtype = torch.float64, device=None, *, n: int | None = None,
                 numpy_convention: bool = True) -> None:
        self.dtype = dtype
        self.stencil = None
        self.batch = None
        self._matrix = None
        self.linop = None
        self.function = None
        self._host = None
        self._dense_np = None
        if isinstance(A, TorchOperator):
            A = A.source
        self.source = A
        _refuse_complex(A, "the matrix")
        if isinstance(A, StencilOperator):
            self.kind = "stencil"
            self.stencil = A
            self.batch = A.batch
            self.device = torch.device(device) if device is not None else A.a.device
            self.n = A.shape[0]
            return
        if _is_matrix_free(A):
            self._init_matrix_free(A, device, n, numpy_convention)
            return
        on_host = (device is None or torch.device(device).type == "cpu") and dtype in (
            torch.float32, torch.float64)
        if _is_scipy_sparse(A) and on_host:
            self._init_scipy_host(A, dtype)
            return
        if isinstance(A, np.ndarray) or _is_scipy_sparse(A):
            if _is_scipy_sparse(A):
                _check_square(A.shape)
                A = _scipy_to_torch_csr(sp.csr_matrix(A, dtype=np.float64), dtype, device)
            else:
                if not np.issubdtype(A.dtype, np.number):
                    raise TypeError(f"A: expected a numeric array, found dtype {A.dtype}")
                A = torch.from_numpy(np.ascontiguousarray(A, dtype=np.float64))
        if not isinstance(A, torch.Tensor):
            raise TypeError(
                "A: expected a torch tensor, SciPy sparse matrix, numpy array, StencilOperator, "
                f"SciPy LinearOperator or callable, found {type(A).__name__}"
            )
        self.device = torch.device(device) if device is not None else A.device
        _check_square(tuple(A.shape))
        A = A.detach()
        if A.layout == torch.strided:
            A = A.to(dtype=dtype, device=self.device)
            self.kind = "batched" if A.ndim == 3 else "dense"
            if A.ndim == 3:
                self.batch = A.shape[0]
            elif self.device.type == "cpu" and dtype in (torch.float32, torch.float64):
                self._dense_np = A.numpy()
        else:
            if A.layout != torch.sparse_csr:
                A = A.to_sparse_csr()
            A = A.to(dtype=dtype, device=self.device)
            self.kind = "csr"
        self.matrix = A
        self.n = A.shape[-1]
        if not bool(torch.isfinite(self.values()).all()):
            raise ValueError("A contains NaN or Inf entries")
        if self.kind == "csr" and self.device.type == "cpu" and dtype in (torch.float32,
                                                                          torch.float64):
            # a SciPy view of the same memory, for fast CPU mat-vecs
            self._host = sp.csr_matrix(
                (A.values().numpy(), A.col_indices().numpy(), A.crow_indices().numpy()),
                shape=(self.n, self.n),
            )

    def _init_scipy_host(self, A, dtype) -> None:
        """A SciPy matrix for a CPU solve: its own CSR arrays serve the mat-vecs (no copy, int32
        indices as SciPy keeps them); the torch CSR tensor is made only if asked for."""
        _check_square(A.shape)
        self.kind = "csr"
        self.device = torch.device("cpu")
        host = A.tocsr() if A.format != "csr" else A
        want = np.float64 if dtype == torch.float64 else np.float32
        if host.dtype != want:
            host = host.astype(want)
        self._host = sp.csr_matrix(host) if not isinstance(host, sp.csr_matrix) else host
        self.n = int(A.shape[0])
        if not np.isfinite(self._host.data).all():
            raise ValueError("A contains NaN or Inf entries")

    @property
    def matrix(self):
        """The torch form of ``A`` (CSR, dense or a batch), made on first use for SciPy input."""
        if self._matrix is None and self.kind == "csr" and self._host is not None:
            self._matrix = _scipy_to_torch_csr(self._host, self.dtype, self.device)
        return self._matrix

    @matrix.setter
    def matrix(self, value) -> None:
        self._matrix = value

    def _init_matrix_free(self, A, device, n, numpy_convention) -> None:
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        shape = getattr(A, "shape", None)
        if isinstance(A, spla.LinearOperator) or (shape is not None and hasattr(A, "matvec")):
            self.kind = "linear_operator"
            self.linop = spla.aslinearoperator(A)
            _check_square(tuple(self.linop.shape))
            self.n = int(self.linop.shape[0])
            self._numpy_fn = self.linop.matvec
            self._numpy_convention = True
            return
        self.kind = "callable"
        self.function = A
        if shape is not None:
            _check_square(tuple(shape))
            n = int(tuple(shape)[-1])
        if n is None:
            raise ValueError(
                "A: a callable A needs its size: give it a shape attribute (n, n), or pass a "
                "right-hand side b"
            )
        _check_square((n, n))
        self.n = int(n)
        self._numpy_fn = A
        self._numpy_convention = bool(numpy_convention)

    @property
    def matrix_free(self) -> bool:
        return self.kind in ("linear_operator", "callable")

    def _refuse_matrix_free(self, what: str):
        raise ValueError(
            f"A is a matrix-free {type(self.source).__name__} (only its action is known), so it "
            f"has no {what}; give A as a matrix (torch/SciPy sparse, dense) or a StencilOperator"
        )

    # -- basic actions -------------------------------------------------------------------
    def values(self) -> torch.Tensor:
        if self.kind == "csr":
            return self.matrix.values()
        if self.matrix_free or self.kind == "stencil":
            self._refuse_matrix_free("entries")
        return self.matrix

    def matvec(self, X: torch.Tensor) -> torch.Tensor:
        """``A x`` for every row of ``X`` ``(B, n)``; returns ``(B, n)``."""
        if self.kind == "stencil":
            return self.stencil.matvec(X)
        if self.kind == "batched":
            return torch.bmm(self.matrix, X.unsqueeze(-1)).squeeze(-1)
        if self.matrix_free:
            return self._matvec_free(X)
        if self._host is not None and X.device.type == "cpu" and not X.requires_grad:
            # on the CPU SciPy's CSR kernels are several times faster than torch's
            Xn = X.numpy()
            if Xn.shape[0] == 1:
                return torch.from_numpy(self._host @ Xn[0]).unsqueeze(0)
            return torch.from_numpy(np.ascontiguousarray((self._host @ Xn.T).T))
        return (self.matrix @ X.T).T

    def _matvec_free(self, X: torch.Tensor) -> torch.Tensor:
        what = f"A ({type(self.source).__name__})"
        if not self._numpy_convention:
            Y = _checked_output(self.function(X), tuple(X.shape), what)
            if isinstance(Y, np.ndarray):
                Y = torch.from_numpy(np.ascontiguousarray(Y))
            return Y.to(dtype=X.dtype, device=X.device)
        Xn = X.detach().to(device="cpu", dtype=torch.float64).numpy()
        if self.kind == "linear_operator" and Xn.shape[0] > 1:
            Y = _checked_output(self.linop.matmat(np.ascontiguousarray(Xn.T)), Xn.T.shape, what)
            Y = np.ascontiguousarray(np.asarray(Y).T)
        else:
            Y = np.stack([self.numpy_matvec(x) for x in Xn])
        return torch.from_numpy(Y).to(dtype=X.dtype, device=X.device)

    def numpy_matvec(self, x: np.ndarray) -> np.ndarray:
        """``A x`` for one 1-D numpy vector on the CPU (the single-system fast path)."""
        if self._host is not None:
            return self._host @ x
        if self._dense_np is not None:
            return self._dense_np @ x
        if self.matrix_free and self._numpy_convention:
            what = f"A ({type(self.source).__name__})"
            y = _checked_output(self._numpy_fn(x), x.shape, what)
            if isinstance(y, torch.Tensor):
                y = y.detach().cpu().numpy()
            return np.asarray(y, dtype=x.dtype)
        X = torch.from_numpy(x).unsqueeze(0)
        if self.device.type != "cpu":
            X = X.to(self.device)
        return self.matvec(X)[0].to("cpu").numpy()

    def diagonal(self) -> torch.Tensor:
        """Diagonal ``(n,)`` (or ``(B, n)`` for a batch of matrices or stencils)."""
        if self.matrix_free:
            self._refuse_matrix_free("diagonal")
        if self.kind == "stencil":
            return self.stencil.diagonal().to(dtype=self.dtype, device=self.device)
        if self.kind in ("dense", "batched"):
            return torch.diagonal(self.matrix, dim1=-2, dim2=-1).clone()
        if self._host is not None:
            return torch.from_numpy(np.ascontiguousarray(self._host.diagonal())).to(self.dtype)
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
        if self.matrix_free:
            self._refuse_matrix_free("sparse form")
        if self.kind == "stencil":
            return TorchOperator(self.stencil.to_scipy(), self.dtype, self.device)
        return TorchOperator(self.matrix.to_sparse_csr(), self.dtype, self.device)

    def to_scipy(self) -> sp.csr_matrix:
        """Float64 SciPy CSR copy on the CPU."""
        if self.kind == "stencil":
            return self.stencil.to_scipy()
        if self.kind == "batched":
            raise ValueError("a batch of matrices (B, n, n) has no single SciPy form")
        if self.matrix_free:
            self._refuse_matrix_free("SciPy sparse form")
        if self._host is not None:
            return sp.csr_matrix(self._host, dtype=np.float64)
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
        if self.matrix_free:
            self._refuse_matrix_free("dense form")
        return self.matrix.to_dense()


def _check_square(shape: tuple) -> None:
    if len(shape) not in (2, 3) or shape[-1] != shape[-2]:
        raise ValueError(f"A must be square (n, n) or a batch (B, n, n), found shape {shape}")
    if shape[-1] == 0:
        raise ValueError(f"A is empty (shape {shape}): a system needs at least one unknown")


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


def prepare_system(A, b, x0=None, *, name: str = "solver", matrix_free: bool = False) -> System:
    """Validate ``A``, ``b`` and ``x0`` and bring them to one device and dtype.

    The solve runs on ``b``'s device when ``b`` is a torch tensor, else on ``A``'s device (CPU
    for SciPy/numpy). The dtype is ``b``'s when it is a floating torch tensor, else float64.
    ``matrix_free=True`` admits a SciPy LinearOperator or a callable ``A`` (the Krylov solvers);
    solvers that need the entries of ``A`` (relaxation) leave it ``False`` and refuse them.
    Complex ``A``, ``b`` or ``x0`` are refused.
    """
    numpy_out = not isinstance(b, torch.Tensor)
    _refuse_complex(b, "b", name)
    _refuse_complex(x0, "x0", name)
    if _is_matrix_free(A) and not matrix_free:
        raise TypeError(
            f"{name}: A is a matrix-free {type(A).__name__}, but {name} needs the entries of A "
            "(its diagonal and triangles); give a matrix (torch/SciPy sparse, dense, numpy) or a "
            "StencilOperator, or use the Krylov solvers cg/pcg/fcg, which accept operators"
        )
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
    if bt.ndim not in (1, 2):
        raise ValueError(f"{name}: b must have shape (n,) or (B, n), found {tuple(bt.shape)}")
    op = TorchOperator(A, dtype=dtype, device=device, n=bt.shape[-1], numpy_convention=numpy_out)
    if bt.shape[-1] != op.n:
        raise ValueError(
            f"{name}: A is {op.n} x {op.n} but b has shape {tuple(bt.shape)} "
            f"(expected last dimension {op.n})"
        )
    single = bt.ndim == 1
    B = bt.reshape(-1, op.n)
    if B.shape[0] == 0:
        raise ValueError(f"{name}: b has no rows (shape {tuple(bt.shape)})")
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
        return op.numpy_matvec(np.ascontiguousarray(np.asarray(v, dtype=np.float64).reshape(-1)))

    return spla.LinearOperator(
        (op.n, op.n), matvec=matvec, matmat=matmat, dtype=np.float64
    )
