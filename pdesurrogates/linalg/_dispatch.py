"""How the Krylov solvers apply a preconditioner ``M``, whatever form the user gives it.

The convention is decided by the type of ``M``, never by trial calls:

=====================================================  ========================================
``M``                                                  called with
=====================================================  ========================================
``None``                                               (identity, no call)
an object with ``apply`` (a ``Preconditioner``)        ``M.apply(R)``, ``R: (B, n)`` torch tensor
                                                       on the solve's device and dtype
a torch tensor ``(n, n)`` (dense or sparse)            ``M @ r`` on the solve's device
a SciPy ``LinearOperator`` (or anything with ``shape``  ``M.matvec(r)``, ``r: (n,)`` float64 numpy
and ``matvec``), SciPy sparse matrix, numpy array      (``matmat`` for a batch)
a plain callable                                       the caller's convention: with a numpy ``b``
                                                       ``M(r)``, ``r: (n,)`` float64 numpy
                                                       (SciPy's, one call per system); with a
                                                       torch ``b``, ``M(R)``, ``R: (B, n)`` torch
=====================================================  ========================================

Whatever ``M`` returns is checked (not ``None``, real, the expected shape: a clear error naming
``M`` otherwise) and may be a numpy array or a torch tensor in either convention.

Each resolved preconditioner offers two entry points: ``batched(R)`` on ``(B, n)`` torch tensors
(the general loop, any device) and ``single(r)`` on one 1-D numpy vector (the CPU fast path for a
single right-hand side, which works on numpy buffers directly; for ``apply`` objects it passes a
zero-copy torch view).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch

from pdesurrogates.linalg.operators import TorchOperator, _checked_output, _refuse_complex

__all__ = ["ResolvedPreconditioner", "resolve_preconditioner"]


class ResolvedPreconditioner:
    """``M`` made ready for a solve of size ``n`` (see the module docstring).

    Attributes
    ----------
    identity, linear, symmetric : bool
    convention : str
        ``"identity"``, ``"torch"`` (batched tensors), ``"torch+numpy"`` (a ``Preconditioner``
        with a ``_apply_numpy`` kernel for one vector) or ``"numpy"`` (SciPy's 1-D vectors).
    """

    def __init__(self, M, n: int, numpy_convention: bool) -> None:
        self.source = M
        self.n = n
        self.identity = M is None
        self.linear = bool(getattr(M, "linear", True))
        self.symmetric = bool(getattr(M, "symmetric", True))
        self.what = f"M ({type(M).__name__})"
        self._ops: dict = {}
        self._numpy_fn = None
        self._torch_fn = None
        if M is None:
            self.convention = "identity"
            return
        if hasattr(M, "apply") and not isinstance(M, (spla.LinearOperator, torch.Tensor)):
            size = getattr(M, "n", None)  # a preconditioner object: its own n, if it says
            if isinstance(size, int) and size != n:
                raise ValueError(f"M acts on vectors of size {size}, but A is {n} x {n}")
            self.convention = "torch"
            self._torch_fn = M.apply
            if _numpy_kernel(M):  # a numpy kernel for one vector
                self.convention = "torch+numpy"
                self._numpy_fn = M._apply_numpy
            return
        if isinstance(M, torch.Tensor):
            _refuse_complex(M, "the preconditioner matrix", "M")
            self._check_shape(tuple(M.shape))
            self.convention = "torch"
            self._torch_fn = self._tensor_matvec
            return
        is_operator = isinstance(M, spla.LinearOperator) or (
            hasattr(M, "shape") and hasattr(M, "matvec"))
        if is_operator or sp.issparse(M) or isinstance(M, np.ndarray):
            _refuse_complex(M, "the preconditioner", "M")
            self._check_shape(tuple(M.shape))
            L = spla.aslinearoperator(M)
            self.convention = "numpy"
            self._numpy_fn = L.matvec
            self._numpy_matmat = L.matmat
            return
        if callable(M):
            if numpy_convention:
                self.convention = "numpy"
                self._numpy_fn = M
                self._numpy_matmat = None
            else:
                self.convention = "torch"
                self._torch_fn = M
            return
        raise TypeError(
            "M: expected None, a Preconditioner (an object with apply), a scipy LinearOperator, "
            "a SciPy sparse matrix, a numpy array, a torch tensor or a callable, found "
            f"{type(M).__name__}"
        )

    def _check_shape(self, shape: tuple) -> None:
        if shape[-2:] != (self.n, self.n):
            raise ValueError(f"M has shape {shape}, expected ({self.n}, {self.n}) to match A")

    def _tensor_matvec(self, R: torch.Tensor) -> torch.Tensor:
        key = (R.device, R.dtype)
        if key not in self._ops:
            self._ops[key] = TorchOperator(self.source, dtype=R.dtype, device=R.device)
        return self._ops[key].matvec(R)

    # -- the two entry points ----------------------------------------------------------------
    def batched(self, R: torch.Tensor) -> torch.Tensor:
        """``Z = M R`` for ``R: (B, n)`` torch; returns ``(B, n)`` on ``R``'s device and dtype."""
        if self.identity:
            return R
        if self.convention in ("torch", "torch+numpy"):
            Z = _checked_output(self._torch_fn(R), tuple(R.shape), self.what)
            if isinstance(Z, np.ndarray):
                Z = torch.from_numpy(np.ascontiguousarray(Z))
            return Z.to(dtype=R.dtype, device=R.device)
        Rn = R.detach().to(device="cpu", dtype=torch.float64).numpy()
        if Rn.shape[0] == 1:
            Z = self.single(Rn[0])[None]
        elif self._numpy_matmat is not None:
            Z = _checked_output(self._numpy_matmat(np.ascontiguousarray(Rn.T)), Rn.T.shape,
                                self.what)
            Z = np.ascontiguousarray(np.asarray(Z).T)
        else:
            Z = np.stack([self.single(r) for r in Rn])
        return torch.from_numpy(Z).to(dtype=R.dtype, device=R.device)

    def single(self, r: np.ndarray) -> np.ndarray:
        """``z = M r`` for one 1-D numpy vector ``r`` (float32/64, CPU); same dtype out.

        ``z`` may share memory with ``r`` (identity) or with ``M``'s own buffers: callers
        consume it before they next change ``r`` or call ``M``.
        """
        if self.identity:
            return r
        if self.convention == "torch+numpy":
            z = _checked_output(self._numpy_fn(r), r.shape, self.what)
            return z if z.dtype == r.dtype else z.astype(r.dtype)
        if self.convention == "torch":
            Z = self.batched(torch.from_numpy(r).unsqueeze(0))
            return Z[0].numpy()
        v = r if r.dtype == np.float64 else r.astype(np.float64)
        z = _checked_output(self._numpy_fn(v), r.shape, self.what)
        if isinstance(z, torch.Tensor):
            z = z.detach().cpu().numpy()
        return z if z.dtype == r.dtype else z.astype(r.dtype)


def _defined_in(cls: type, name: str) -> type | None:
    return next((c for c in cls.__mro__ if name in vars(c)), None)


def _numpy_kernel(M) -> bool:
    """Whether ``M._apply_numpy`` is the same map as ``M.apply``: defined by the class that
    defines ``_apply``, and ``apply`` not overridden below it."""
    cls = type(M)
    home = _defined_in(cls, "_apply_numpy")
    return (home is not None and callable(getattr(M, "_apply_numpy", None))
            and _defined_in(cls, "_apply") is home and _defined_in(cls, "apply") in home.__mro__)


def resolve_preconditioner(M, n: int, numpy_convention: bool = True) -> ResolvedPreconditioner:
    """Wrap ``M`` for a solve of size ``n``; ``numpy_convention``: the caller's ``b`` was numpy
    (decides how a plain callable is called, see the module docstring)."""
    return ResolvedPreconditioner(M, n, numpy_convention)
