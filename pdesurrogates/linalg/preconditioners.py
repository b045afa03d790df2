"""The preconditioner protocol and classical preconditioners.

A preconditioner ``M`` approximates the action of ``A^{-1}``: ``z = M.apply(r)``. Two flags say
which Krylov method may use it:

* ``linear``: ``apply`` is a fixed linear map (a matrix). Learned preconditioners (a network)
  and inner iterative solves stopped at a tolerance are *not* linear.
* ``symmetric``: that matrix is symmetric (positive definite is assumed for preconditioners).

Plain :func:`~pdesurrogates.linalg.krylov.pcg` needs both; anything else goes to the flexible
:func:`~pdesurrogates.linalg.krylov.fcg`, which stays correct when the preconditioner changes
from one iteration to the next (Notay, SIAM J. Sci. Comput. 2000).

Writing a preconditioner
------------------------
Subclass :class:`Preconditioner`, set the flags, and implement ``_apply(R)`` for a batch
``R: (B, n)`` torch tensor, returning ``(B, n)`` on the same device. The base class's
:meth:`Preconditioner.apply` adds the rest: single vectors ``(n,)``, numpy in and out, shape
checks, and :meth:`Preconditioner.as_linear_operator` for SciPy. Optionally implement
``_apply_numpy(r)`` for one 1-D float32/float64 numpy vector (same dtype out): the Krylov solvers'
single-system CPU path then calls it directly, without torch in the loop.

>>> from pdesurrogates.linalg import gallery
>>> M = JacobiPreconditioner(gallery.poisson1d(3))
>>> M.apply(np.array([32.0, 0.0, 64.0]))
array([1., 0., 2.])
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch

from pdesurrogates.linalg.operators import TorchOperator, _scipy_to_torch_csr, to_scipy_csr

__all__ = [
    "AMGPreconditioner",
    "IC0Preconditioner",
    "JacobiPreconditioner",
    "Preconditioner",
    "SSORPreconditioner",
    "incomplete_cholesky",
]


class Preconditioner:
    """Base class: ``apply(r) -> z`` approximating ``A^{-1} r``.

    Attributes
    ----------
    n : int
        Size of the vectors it acts on (set by ``Preconditioner.__init__(n)``). Subclasses that
        override :meth:`apply` wholesale need not set it; the solvers then trust their shapes.
    linear, symmetric : bool
        See the module docstring. Class attributes; override in subclasses.
    """

    linear: bool = True
    symmetric: bool = True

    def __init__(self, n: int) -> None:
        self.n = int(n)

    def _apply(self, R: torch.Tensor) -> torch.Tensor:
        """Act on a batch ``R: (B, n)``; return ``(B, n)`` (same device). Subclasses implement."""
        raise NotImplementedError(f"{type(self).__name__} must implement _apply(R) for R (B, n)")

    def apply(self, r):
        """``z = M r`` for ``r`` of shape ``(n,)`` or ``(B, n)``, torch or numpy (same out).

        Parameters
        ----------
        r : torch.Tensor or np.ndarray, ``(n,)`` or ``(B, n)``

        Returns
        -------
        z : same type, shape, dtype and device as ``r``.
        """
        numpy_in = not isinstance(r, torch.Tensor)
        R = torch.from_numpy(np.asarray(r, dtype=np.float64)) if numpy_in else r
        if not hasattr(self, "n"):
            raise TypeError(
                f"{type(self).__name__} did not call Preconditioner.__init__(n); the base "
                "apply() needs n"
            )
        if R.ndim not in (1, 2) or R.shape[-1] != self.n:
            raise ValueError(
                f"{type(self).__name__}.apply: expected r of shape ({self.n},) or (B, {self.n}), "
                f"found {tuple(R.shape)}"
            )
        R2 = R.reshape(-1, self.n)
        Z = self._apply(R2)
        if not isinstance(Z, torch.Tensor) or tuple(Z.shape) != tuple(R2.shape):
            found = tuple(Z.shape) if hasattr(Z, "shape") else type(Z).__name__
            raise ValueError(
                f"M ({type(self).__name__}) returned shape {found}; expected {tuple(R2.shape)} "
                "from _apply"
            )
        Z = Z.to(dtype=R.dtype, device=R.device).reshape(R.shape)
        return Z.numpy() if numpy_in else Z

    def __call__(self, r):
        return self.apply(r)

    def as_linear_operator(self) -> spla.LinearOperator:
        """This preconditioner as a :class:`scipy.sparse.linalg.LinearOperator` (float64, CPU).

        Raises
        ------
        ValueError
            If the preconditioner is not linear: a LinearOperator promises ``M(a x + y) =
            a M x + M y``, which a nonlinear map breaks, and SciPy's Krylov solvers (like plain
            PCG) then lose their guarantees. Use :func:`pdesurrogates.linalg.fcg` instead.
        """
        if not self.linear:
            raise ValueError(
                f"{type(self).__name__} is a nonlinear preconditioner (linear=False): its output "
                "is not a fixed matrix times r, so it cannot be a scipy LinearOperator and must "
                "not be used by plain CG/PCG. Use pdesurrogates.linalg.fcg (flexible CG), which "
                "is designed for such preconditioners."
            )

        def matmat(V):
            V = np.asarray(V, dtype=np.float64)
            return self.apply(np.ascontiguousarray(V.T)).T

        def matvec(v):
            return self.apply(np.asarray(v, dtype=np.float64).reshape(-1))

        n = getattr(self, "n", None)
        if n is None:
            raise TypeError(f"{type(self).__name__} has no size n; call Preconditioner.__init__(n)")
        return spla.LinearOperator((n, n), matvec=matvec, matmat=matmat, dtype=np.float64)

    def __repr__(self) -> str:
        n = getattr(self, "n", "?")
        return f"{type(self).__name__}(n={n}, linear={self.linear}, symmetric={self.symmetric})"


class _DeviceCache:
    """Copies of a tensor per (device, dtype), made on first use."""

    def __init__(self, t: torch.Tensor) -> None:
        self._base = t
        self._copies: dict = {}

    def get(self, like: torch.Tensor) -> torch.Tensor:
        key = (like.device, like.dtype)
        if key not in self._copies:
            self._copies[key] = self._base.to(device=like.device, dtype=like.dtype)
        return self._copies[key]


def _diagonal_checked(A, name: str) -> tuple[TorchOperator, torch.Tensor]:
    op = TorchOperator(A, dtype=torch.float64)
    if op.kind == "batched":
        raise ValueError(f"{name}: needs one matrix (n, n), found a batch {tuple(op.matrix.shape)}")
    d = op.diagonal()
    if not bool((d > 0).all()):
        i = int(torch.nonzero(~(d > 0))[0])
        raise ValueError(
            f"{name}: A needs a positive diagonal (SPD); entry {i} is {float(d[i]):.6g}"
        )
    return op, d


class JacobiPreconditioner(Preconditioner):
    """``z = D^{-1} r`` with ``D = diag(A)``; linear and symmetric.

    Parameters
    ----------
    A : matrix ``(n, n)`` in any supported format, with a positive diagonal.
    """

    def __init__(self, A) -> None:
        op, d = _diagonal_checked(A, "JacobiPreconditioner")
        super().__init__(op.n)
        self._inv = _DeviceCache((1.0 / d).cpu())

    def _apply(self, R: torch.Tensor) -> torch.Tensor:
        return R * self._inv.get(R)

    def _apply_numpy(self, r: np.ndarray) -> np.ndarray:
        return r * self._inv.get(torch.from_numpy(r)).numpy()


class _TriangularPair(Preconditioner):
    """``z = U^{-1} (S (L^{-1} r))`` with sparse triangular ``L``, ``U`` and diagonal ``S``."""

    def _setup(self, lower: sp.csr_matrix, upper: sp.csr_matrix, middle: np.ndarray | None):
        self._lower = _scipy_to_torch_csr(lower, torch.float64, "cpu")
        self._upper = _scipy_to_torch_csr(upper, torch.float64, "cpu")
        self._middle = None if middle is None else _DeviceCache(torch.from_numpy(middle))
        self._mats: dict = {}

    def _factors(self, like: torch.Tensor):
        key = (like.device, like.dtype)
        if key not in self._mats:
            self._mats[key] = (
                self._lower.to(device=like.device, dtype=like.dtype),
                self._upper.to(device=like.device, dtype=like.dtype),
            )
        return self._mats[key]

    def _apply(self, R: torch.Tensor) -> torch.Tensor:
        L, U = self._factors(R)
        Y = torch.triangular_solve(R.T.contiguous(), L, upper=False).solution
        if self._middle is not None:
            Y = Y * self._middle.get(R).unsqueeze(1)
        return torch.triangular_solve(Y, U, upper=True).solution.T


class SSORPreconditioner(_TriangularPair):
    """Symmetric SOR preconditioner; linear and symmetric (positive definite for SPD ``A``).

    ``M^{-1} = omega (2 - omega) (D + omega U)^{-1} D (D + omega L)^{-1}``, i.e. one forward and
    one backward SOR sweep from a zero initial guess. ``A = L + D + U``.

    Parameters
    ----------
    A : SPD matrix ``(n, n)`` in any supported format.
    omega : float in ``(0, 2)``.
    """

    def __init__(self, A, omega: float = 1.0) -> None:
        if not (isinstance(omega, (int, float)) and 0.0 < omega < 2.0):
            raise ValueError(f"SSORPreconditioner: omega must lie in (0, 2), found {omega!r}")
        op, d = _diagonal_checked(A, "SSORPreconditioner")
        super().__init__(op.n)
        self.omega = float(omega)
        S = op.to_scipy()
        D = sp.diags(d.cpu().numpy())
        lower = (sp.tril(S, -1) + D / omega).tocsr()
        upper = (sp.triu(S, 1) + D / omega).tocsr()
        # (D + wL)^{-1} = (1/w) lower^{-1}; the constant w(2-w)/w^2 = (2-w)/w goes in the middle
        self._setup(lower, upper, (2.0 - omega) / omega * d.cpu().numpy())


def incomplete_cholesky(A, shift: float = 0.0) -> sp.csr_matrix:
    """Zero-fill incomplete Cholesky factor ``L`` (lower, CSR) of ``A + shift diag(A)``.

    ``L`` has the sparsity pattern of ``tril(A)`` and ``(L L^T)_{ij} = A_{ij}`` on that pattern
    (Meijerink & van der Vorst, Math. Comp. 1977). Row-by-row (up-looking) factorisation in
    ``O(sum over rows of (row length)^2)`` operations.

    Raises
    ------
    ValueError
        On a non-positive pivot (``A`` not SPD, or IC(0) breakdown for a non-M-matrix).

    >>> from pdesurrogates.linalg import gallery
    >>> L = incomplete_cholesky(gallery.poisson1d(4, scaled=False, format="scipy"))
    >>> bool(np.allclose(L.toarray(), np.linalg.cholesky(gallery.poisson1d(4, scaled=False, format="numpy"))))
    True
    """
    S = to_scipy_csr(A)
    if S.shape[0] != S.shape[1]:
        raise ValueError(f"incomplete_cholesky: A must be square, found {S.shape}")
    L = sp.tril(S, format="csr")
    L.sum_duplicates()
    L.sort_indices()
    n = L.shape[0]
    indptr = L.indptr.tolist()
    indices = L.indices.tolist()
    data = L.data.tolist()
    for i in range(n):
        e = indptr[i + 1]
        if e == indptr[i] or indices[e - 1] != i:
            raise ValueError(f"incomplete_cholesky: A has no diagonal entry in row {i}")
        data[e - 1] *= 1.0 + shift
    for i in range(n):
        s, e = indptr[i], indptr[i + 1]
        position = {indices[p]: p for p in range(s, e - 1)}
        total = 0.0
        for p in range(s, e - 1):
            j = indices[p]
            acc = data[p]
            for q in range(indptr[j], indptr[j + 1] - 1):
                pk = position.get(indices[q])
                if pk is not None:
                    acc -= data[pk] * data[q]
            acc /= data[indptr[j + 1] - 1]
            data[p] = acc
            total += acc * acc
        pivot = data[e - 1] - total
        if not pivot > 0:
            raise ValueError(
                f"incomplete_cholesky: non-positive pivot {pivot:.6g} in row {i} "
                f"(shift {shift:g}); A is not SPD or IC(0) broke down"
            )
        data[e - 1] = math.sqrt(pivot)
    return sp.csr_matrix((np.array(data), L.indices.copy(), L.indptr.copy()), shape=L.shape)


class IC0Preconditioner(_TriangularPair):
    """Zero-fill incomplete Cholesky: ``M^{-1} = (L L^T)^{-1}``; linear and symmetric.

    Parameters
    ----------
    A : SPD matrix ``(n, n)`` in any supported format.
    shift : float or None
        Factor ``A + shift diag(A)`` instead of ``A``. ``None`` (default): try ``0`` and, on a
        breakdown (non-positive pivot), retry with ``shift = 1e-3, 2e-3, 4e-3, ...`` up to 1
        (Manteuffel's shifted IC, Math. Comp. 1980). The shift used is in ``self.shift``.
    """

    def __init__(self, A, shift: float | None = None) -> None:
        S = to_scipy_csr(A)
        _diagonal_checked(S, "IC0Preconditioner")
        super().__init__(S.shape[0])
        if shift is not None:
            factor = incomplete_cholesky(S, shift)
            self.shift = float(shift)
        else:
            trial, factor = 0.0, None
            while factor is None:
                try:
                    factor = incomplete_cholesky(S, trial)
                except ValueError as err:
                    if trial >= 1.0:
                        raise ValueError(
                            f"IC0Preconditioner: breakdown even with shift {trial:g}: {err}"
                        ) from err
                    trial = 1e-3 if trial == 0.0 else 2.0 * trial
            self.shift = trial
        self.factor = factor
        self._setup(factor, factor.T.tocsr(), None)


class AMGPreconditioner(Preconditioner):
    """One V-cycle of pyamg's smoothed-aggregation AMG; linear and symmetric (default smoothers).

    The hierarchy is built on the CPU (``pyamg.smoothed_aggregation_solver(A, **kwargs)``); each
    application moves the residuals to numpy and the result back to their device.

    Parameters
    ----------
    A : SPD matrix ``(n, n)`` in any supported format.
    **kwargs : passed to ``pyamg.smoothed_aggregation_solver``.
    """

    def __init__(self, A, cycle: str = "V", **kwargs) -> None:
        import pyamg  # heavy import, only when used

        S = to_scipy_csr(A)
        super().__init__(S.shape[0])
        self.hierarchy = pyamg.smoothed_aggregation_solver(S, **kwargs)
        self._op = self.hierarchy.aspreconditioner(cycle=cycle)

    def _apply_numpy(self, r: np.ndarray) -> np.ndarray:
        z = self._op.matvec(r if r.dtype == np.float64 else r.astype(np.float64))
        return z if z.dtype == r.dtype else z.astype(r.dtype)

    def _apply(self, R: torch.Tensor) -> torch.Tensor:
        Rn = R.detach().to(device="cpu", dtype=torch.float64).numpy()
        if Rn.shape[0] == 1:  # one V-cycle on the vector itself, no copies
            Z = self._op.matvec(Rn[0])[None]
        else:
            Z = np.stack([self._op.matvec(r) for r in Rn])
        return torch.from_numpy(Z).to(device=R.device, dtype=R.dtype)
