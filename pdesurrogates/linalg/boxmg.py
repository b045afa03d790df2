"""Black-box multigrid numerics: structured stencils, operator-dependent interpolation and
Galerkin coarse operators, matrix-free, batched and on any device.

Geometric multigrid that averages the coefficient onto coarse grids fails when the coefficient
jumps by orders of magnitude: the coarse operator no longer sees the interfaces, and linear
interpolation smears the error across them. Black-box multigrid (BoxMG: Alcouffe, Brandt, Dendy
and Painter, SIAM J. Sci. Stat. Comput. 2, 1981; Dendy, J. Comput. Phys. 48, 1982; in 3D Dendy and
Moulton, Numer. Linear Algebra Appl. 17, 2010) keeps the grid hierarchy but builds both from the
matrix:

* **Interpolation from the stencil.** Coarse points are every other interior node along each axis.
  A fine point that lies between coarse points along the axes in a set ``F`` takes its value from
  its own equation, after summing ("collapsing") the stencil over the other axes:
  ``u_y = -(sum_{k != 0} S_c[k](y) u_{y+k}) / S_c[0](y)``, with ``S_c`` the collapsed stencil and the
  neighbours ``y + k`` already interpolated (fewer axes in ``F``). On a line between two coarse
  points this is the exact 1D harmonic interpolation, ``w_west = a_west / (a_west + a_east)``; in a
  cell centre (2D) it is the point's full 9-point equation.
* **Galerkin coarse operators** ``A_c = P^T A P``, again a 9-point (2D) or 27-point (3D) stencil,
  computed by probing: ``P^T A P`` applied to the ``3^d`` indicator vectors of the coarse points of
  each residue class mod 3 gives every stencil entry at once (two points of one class are three
  apart, so each stencil offset meets exactly one of them).

Any number of interior nodes ``m`` per axis is accepted: the coarse points are the odd fine
positions ``1, 3, ..., 2 m_c - 1`` (0-based, ``m_c = m // 2``); on nested grids (``m = 2^k - 1``,
i.e. ``2^k + 1`` nodes) these are the coarse nodes of the geometric hierarchy, for even ``m`` the
last coarse point is next to the boundary. The coarse levels are algebraic (no coefficient or
spacing is needed), so nothing is padded or interpolated.

Stencils are ``(B, 3^d, *m)`` tensors of the couplings ``A[i, i + k]`` for the offsets ``k`` of
:func:`stencil_offsets` (zero where ``i + k`` is outside the interior); everything is batched over
``B`` systems and over channels.

>>> import torch
>>> from pdesurrogates.physics.grid import Grid
>>> A = diffusion_stencil(torch.ones(1, 1, 9, 9, dtype=torch.float64), Grid((9, 9)))
>>> P = BoxMGInterpolation.from_stencil(A)
>>> A_c = galerkin_product(A, P)
>>> A.shape, A_c.shape
((7, 7), (3, 3))
>>> round(float(A_c.values[0, 4, 1, 1] / A_c.values[0, 0, 1, 1]), 6)  # 5-point Laplacian, bilinear P: 3 : -1/4
-12.0
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import scipy.sparse as sp
import torch

from pdesurrogates.physics.grid import Grid
from pdesurrogates.physics.operators import harmonic_face_average

__all__ = [
    "BoxMGHierarchy",
    "BoxMGInterpolation",
    "Stencil",
    "diffusion_stencil",
    "galerkin_product",
    "stencil_offsets",
]

_PROBE_ELEMENTS = 2**24  # fine-grid values per chunk of Galerkin probes (bounds the setup's memory)


def stencil_offsets(ndim: int) -> tuple[tuple[int, ...], ...]:
    """The ``3^ndim`` offsets of a compact stencil in C order; the centre is at index ``3^ndim // 2``."""
    return tuple(itertools.product((-1, 0, 1), repeat=ndim))


def _shifted(padded: torch.Tensor, offset: tuple[int, ...], shape: tuple[int, ...]) -> torch.Tensor:
    """``u[i + offset]`` for a field padded by one zero layer per side."""
    return padded[(Ellipsis,) + tuple(slice(1 + o, 1 + o + n) for o, n in zip(offset, shape))]


def _pad(u: torch.Tensor, ndim: int, width: int | tuple[int, ...] = 1, before: bool = True) -> torch.Tensor:
    widths = (width,) * ndim if isinstance(width, int) else width
    pad = []
    for w in reversed(widths):
        pad += [w if before else 0, w]
    return torch.nn.functional.pad(u, pad)


class Stencil:
    """A structured operator on a box of interior nodes, one compact stencil per node and system.

    Args:
        values: ``(B, 3^d, *shape)``; ``values[b, j, i] = A_b[i, i + stencil_offsets(d)[j]]``,
            zero where ``i + offset`` is outside the box.
    """

    def __init__(self, values: torch.Tensor) -> None:
        ndim = values.ndim - 2
        if ndim < 1 or values.shape[1] != 3**ndim:
            raise ValueError(f"stencil values must be (batch, 3^d, *shape), got {tuple(values.shape)}")
        self.values = values
        self.ndim = ndim
        self.offsets = stencil_offsets(ndim)
        self.centre = len(self.offsets) // 2
        # couplings that are not zero everywhere (a 5-point stencil applies as 5 points, not 9)
        nonzero = values.detach().flatten(2).ne(0).any(2).any(0).tolist()
        self._active = [j for j, on in enumerate(nonzero) if on and j != self.centre]

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.values.shape[2:])

    @property
    def batch(self) -> int:
        return self.values.shape[0]

    def diagonal(self) -> torch.Tensor:
        """``(B, 1, *shape)``."""
        return self.values[:, self.centre : self.centre + 1]

    def apply(self, u: torch.Tensor) -> torch.Tensor:
        """``A u`` for ``u (B or 1, C, *shape)`` (the stencil's batch broadcasts against ``u``'s)."""
        if tuple(u.shape[2:]) != self.shape:
            raise ValueError(f"field {tuple(u.shape)} does not fit the stencil's grid {self.shape}")
        padded = _pad(u, self.ndim)
        values = self.values.to(u.dtype)
        out = values[:, self.centre : self.centre + 1] * u
        for j in self._active:
            out = out + values[:, j : j + 1] * _shifted(padded, self.offsets[j], self.shape)
        return out

    def dense(self) -> torch.Tensor:
        """``(B, n, n)`` matrices (unknowns in C order); for small coarsest grids."""
        n = math.prod(self.shape)
        eye = torch.eye(n, dtype=self.values.dtype, device=self.values.device).reshape(1, n, *self.shape)
        return self.apply(eye).reshape(-1, n, n).transpose(1, 2)

    def to_scipy(self, index: int = 0) -> sp.csr_matrix:
        """System ``index`` as a SciPy CSR matrix (unknowns in C order)."""
        values = self.values[index].detach().cpu().double().numpy()
        numbers = np.arange(math.prod(self.shape)).reshape(self.shape)
        rows, cols, vals = [], [], []
        for j, offset in enumerate(self.offsets):
            src = tuple(slice(max(0, -o), n - max(0, o)) for o, n in zip(offset, self.shape))
            dst = tuple(slice(max(0, o), n - max(0, -o)) for o, n in zip(offset, self.shape))
            rows.append(numbers[src].ravel())
            cols.append(numbers[dst].ravel())
            vals.append(values[j][src].ravel())
        n = numbers.size
        return sp.coo_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n)).tocsr()

    def normalised_couplings(self) -> torch.Tensor:
        """``(B, 3^d, *shape)`` scale-free features: the couplings of ``D^-1/2 A D^-1/2``,
        ``-A[i, i+k] / sqrt(A[i, i] A[i+k, i+k])``, for every ``k != 0`` and, in the centre's
        channel, the row sum over the diagonal (zero inside a pure diffusion operator, positive at a
        Dirichlet boundary or with a shift). Unchanged when the operator or the coefficient is
        multiplied by a constant, and bounded across jumps of the coefficient (a coupling between
        nodes of coefficients 1 and ``c`` is ``O(c^-1/2)``)."""
        diag = self.diagonal()
        root = diag.sqrt()
        padded = _pad(root, self.ndim, 1)
        channels = []
        for j, offset in enumerate(self.offsets):
            if j == self.centre:
                channels.append(self.values.sum(1, keepdim=True) / diag)
                continue
            neighbour = _shifted(padded, offset, self.shape)
            neighbour = torch.where(neighbour > 0, neighbour, torch.ones_like(neighbour))  # outside: no coupling
            channels.append(-self.values[:, j : j + 1] / (root * neighbour))
        return torch.cat(channels, 1)


def diffusion_stencil(a: torch.Tensor, grid: Grid, shift: float = 0.0) -> Stencil:
    """The finite-volume stencil of ``-div(a grad .) + shift`` on the interior of a Dirichlet grid.

    The same operator as :func:`pdesurrogates.physics.operators.diffusion_matrix` and
    :func:`~pdesurrogates.physics.operators.apply_diffusion` (harmonic face averages), with zero
    corner entries.

    Args:
        a: ``(B, 1, *grid.shape)`` positive node values.
        grid: a Dirichlet grid.
        shift: ``c >= 0`` added to the diagonal.
    """
    nd = grid.ndim
    if a.ndim != nd + 2 or tuple(a.shape[2:]) != grid.shape:
        raise ValueError(f"coefficient {tuple(a.shape)} must be (batch, 1, *{grid.shape})")
    m = grid.interior_shape
    offsets = stencil_offsets(nd)
    values = torch.zeros(a.shape[0], len(offsets), *m, dtype=a.dtype, device=a.device)
    centre = len(offsets) // 2
    for d, h in enumerate(grid.spacing):
        face = harmonic_face_average(a[:, 0], d + 1) / h**2
        cut = tuple(slice(None) if e == d else slice(1, -1) for e in range(nd))
        face = face[(slice(None),) + cut]  # m[d] + 1 faces along d, interior across
        west = face[(slice(None),) + tuple(slice(0, m[d]) if e == d else slice(None) for e in range(nd))]
        east = face[(slice(None),) + tuple(slice(1, m[d] + 1) if e == d else slice(None) for e in range(nd))]
        values[:, centre] += west + east
        low, high = [0] * nd, [0] * nd
        low[d], high[d] = -1, 1
        j_low, j_high = offsets.index(tuple(low)), offsets.index(tuple(high))
        first = tuple(slice(1, None) if e == d else slice(None) for e in range(nd))
        last = tuple(slice(0, m[d] - 1) if e == d else slice(None) for e in range(nd))
        values[(slice(None), j_low) + first] = -west[(slice(None),) + first]
        values[(slice(None), j_high) + last] = -east[(slice(None),) + last]
    if shift:
        values[:, centre] += shift
    return Stencil(values)


class BoxMGInterpolation:
    """Operator-dependent interpolation ``P`` from ``m // 2`` to ``m`` interior nodes per axis.

    ``weights[b, j, I]`` is the weight of coarse point ``I`` in the value of the fine point
    ``2 I + 1 + offsets[j]`` (0-based interior positions). Build it with :meth:`from_stencil`.
    """

    def __init__(self, weights: torch.Tensor, fine_shape: tuple[int, ...]) -> None:
        self.weights = weights
        self.ndim = weights.ndim - 2
        self.offsets = stencil_offsets(self.ndim)
        self.fine_shape = tuple(fine_shape)
        self.coarse_shape = tuple(weights.shape[2:])
        self._padded = tuple(2 * c + 1 for c in self.coarse_shape)
        if any(p - f not in (0, 1) for p, f in zip(self._padded, self.fine_shape)):
            raise ValueError(f"coarse grid {self.coarse_shape} does not fit fine grid {self.fine_shape} (m // 2 per axis)")

    @staticmethod
    def coarse_shape_of(fine_shape: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(m // 2 for m in fine_shape)

    def _slices(self, offset: tuple[int, ...]) -> tuple:
        return (Ellipsis,) + tuple(slice(1 + o, 1 + o + 2 * c, 2) for o, c in zip(offset, self.coarse_shape))

    @classmethod
    def from_stencil(cls, stencil: Stencil) -> BoxMGInterpolation:
        """BoxMG interpolation for ``stencil`` (vectorised over nodes and systems)."""
        nd, m = stencil.ndim, stencil.shape
        coarse = cls.coarse_shape_of(m)
        if min(coarse) < 1:
            raise ValueError(f"cannot coarsen a grid of {m} interior nodes (need >= 2 per axis)")
        offsets = stencil.offsets
        padded_shape = tuple(2 * c + 1 for c in coarse)
        # pad the fine stencil to 2 m_c + 1 nodes (one phantom node when m is even: no couplings,
        # unit diagonal, so its weights come out zero)
        values = _pad(stencil.values, nd, tuple(p - n for p, n in zip(padded_shape, m)), before=False)
        if padded_shape != m:
            phantom = torch.ones(padded_shape, dtype=torch.bool, device=values.device)
            phantom[tuple(slice(0, n) for n in m)] = False
            values[:, stencil.centre][:, phantom] = 1.0
        out = cls.__new__(cls)
        out.ndim, out.offsets, out.fine_shape, out.coarse_shape, out._padded = nd, offsets, tuple(m), coarse, padded_shape
        weights = {(0,) * nd: torch.ones(values.shape[0], *coarse, dtype=values.dtype, device=values.device)}
        for offset in sorted(offsets, key=lambda o: sum(x != 0 for x in o)):
            free = [d for d in range(nd) if offset[d] != 0]
            if not free:
                continue
            at = out._slices(offset)  # the fine points 2I + 1 + offset
            acc = 0.0
            # neighbours y + k towards the coarse point: k_d in {0, -offset_d} on the free axes
            for choice in itertools.product((0, 1), repeat=len(free)):
                if not any(choice):
                    continue
                k = [0] * nd
                for d, c in zip(free, choice):
                    k[d] = -offset[d] * c
                target = tuple(o + kk for o, kk in zip(offset, k))
                acc = acc + _collapsed(values, offsets, free, k, at) * weights[target]
            weights[offset] = -acc / _collapsed(values, offsets, free, [0] * nd, at)
        out.weights = torch.stack([weights[o] for o in offsets], 1)
        return out

    def prolong(self, e: torch.Tensor) -> torch.Tensor:
        """``P e``: coarse ``(B, C, *coarse_shape)`` -> fine ``(B, C, *fine_shape)``."""
        w = self.weights.to(e.dtype)
        batch = max(e.shape[0], w.shape[0])
        out = torch.zeros(batch, e.shape[1], *self._padded, dtype=e.dtype, device=e.device)
        for j, offset in enumerate(self.offsets):
            out[self._slices(offset)] += w[:, j : j + 1] * e
        return out[(Ellipsis,) + tuple(slice(0, n) for n in self.fine_shape)]

    def restrict(self, r: torch.Tensor) -> torch.Tensor:
        """``P^T r``: fine ``(B, C, *fine_shape)`` -> coarse ``(B, C, *coarse_shape)``."""
        w = self.weights.to(r.dtype)
        r = _pad(r, self.ndim, tuple(p - n for p, n in zip(self._padded, self.fine_shape)), before=False)
        out = 0.0
        for j, offset in enumerate(self.offsets):
            out = out + w[:, j : j + 1] * r[self._slices(offset)]
        return out

    def to_scipy(self, index: int = 0) -> sp.csr_matrix:
        """``P`` of system ``index`` as a SciPy CSR matrix ``(prod(fine), prod(coarse))``."""
        w = self.weights[index].detach().cpu().double().numpy()
        fine_numbers = np.full(self._padded, -1)
        fine_numbers[tuple(slice(0, n) for n in self.fine_shape)] = np.arange(math.prod(self.fine_shape)).reshape(self.fine_shape)
        coarse_numbers = np.arange(math.prod(self.coarse_shape)).reshape(self.coarse_shape)
        rows, cols, vals = [], [], []
        for j, offset in enumerate(self.offsets):
            fine = fine_numbers[self._slices(offset)[1:]].ravel()
            keep = (fine >= 0) & (w[j].ravel() != 0)
            rows.append(fine[keep])
            cols.append(coarse_numbers.ravel()[keep])
            vals.append(w[j].ravel()[keep])
        shape = (math.prod(self.fine_shape), math.prod(self.coarse_shape))
        return sp.coo_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=shape).tocsr()


def _collapsed(values: torch.Tensor, offsets, free: list[int], k, at: tuple) -> torch.Tensor:
    """Stencil entry ``k`` (on the axes ``free``) summed over the other axes, at the points ``at``."""
    total = 0.0
    for j, full in enumerate(offsets):
        if all(full[d] == k[d] for d in free):
            total = total + values[:, j][at]
    return total


def galerkin_product(stencil: Stencil, interpolation: BoxMGInterpolation) -> Stencil:
    """The coarse stencil of ``P^T A P`` (Galerkin), by probing with the ``3^d`` residue classes mod 3."""
    nd = stencil.ndim
    coarse = interpolation.coarse_shape
    device, dtype = stencil.values.device, stencil.values.dtype
    grids = torch.meshgrid(*[torch.arange(c, device=device) for c in coarse], indexing="ij")
    classes = stencil_offsets(nd)  # reuse the 3^d tuples; the class of I is I mod 3
    colour = torch.zeros(coarse, dtype=torch.long, device=device)
    for d in range(nd):
        colour = colour * 3 + grids[d] % 3
    probes = torch.stack([colour == j for j in range(len(classes))]).to(dtype)[None]  # (1, 3^d, *coarse)
    chunk = max(1, _PROBE_ELEMENTS // max(1, stencil.batch * math.prod(stencil.shape)))
    parts = [interpolation.restrict(stencil.apply(interpolation.prolong(probes[:, i : i + chunk])))
             for i in range(0, probes.shape[1], chunk)]
    response = torch.cat(parts, 1)  # (B, 3^d, *coarse): (P^T A P e_c)(I) for every class c
    values = torch.zeros(response.shape[0], len(classes), *coarse, dtype=dtype, device=device)
    for j, offset in enumerate(stencil_offsets(nd)):
        # A_c[I, I + k] sits in the response to the class of I + k
        target_colour = torch.zeros(coarse, dtype=torch.long, device=device)
        inside = torch.ones(coarse, dtype=torch.bool, device=device)
        for d in range(nd):
            neighbour = grids[d] + offset[d]
            target_colour = target_colour * 3 + neighbour % 3
            inside &= (neighbour >= 0) & (neighbour < coarse[d])
        index = target_colour.expand(response.shape[0], 1, *coarse)
        values[:, j] = torch.where(inside, response.gather(1, index)[:, 0], torch.zeros((), dtype=dtype, device=device))
    return Stencil(values)


class BoxMGHierarchy:
    """The black-box multigrid hierarchy of one or more systems ``-div(a grad u) + shift u = f``.

    Level 0 is the finite-volume stencil of the fine grid; each coarser level has the
    operator-dependent interpolation to it and the Galerkin stencil ``P^T A P``. Coarsening halves
    the interior nodes per axis (``m -> m // 2``) until a side has at most ``coarsest_nodes`` nodes
    (boundary included, i.e. ``m + 2``) or an axis has a single interior node; the coarsest
    system is inverted densely.

    Args:
        grid: fine Dirichlet grid.
        coefficient: ``(B, 1, *grid.shape)`` positive node values.
        coarsest_nodes: stop coarsening at this many nodes per side.
        shift: ``c >= 0`` of ``-div(a grad .) + c I`` (the Galerkin products carry it down).

    Attributes:
        stencils: one :class:`Stencil` per level, finest first.
        interpolations: ``interpolations[l]`` maps level ``l + 1`` to level ``l``.
        coarse_inverse: ``(B, n_c, n_c)`` inverse of the coarsest operator.
    """

    def __init__(self, grid: Grid, coefficient: torch.Tensor, coarsest_nodes: int = 5, shift: float = 0.0) -> None:
        self.grid = grid
        self.stencils = [diffusion_stencil(coefficient, grid, shift)]
        self.interpolations: list[BoxMGInterpolation] = []
        while True:
            m = self.stencils[-1].shape
            if max(m) + 2 <= coarsest_nodes or min(m) < 2:
                break
            P = BoxMGInterpolation.from_stencil(self.stencils[-1])
            self.interpolations.append(P)
            self.stencils.append(galerkin_product(self.stencils[-1], P))
        self.coarse_inverse = torch.linalg.inv(self.stencils[-1].dense())

    def coarse_solve(self, f: torch.Tensor) -> torch.Tensor:
        """``A_coarsest^-1 f`` for ``f (B or 1, 1, *coarsest shape)``."""
        k = self.coarse_inverse.shape[-1]
        return (self.coarse_inverse.to(f.dtype) @ f.reshape(f.shape[0], k, 1)).reshape(-1, *f.shape[1:])
