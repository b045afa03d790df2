"""Multigrid building blocks for MgNO: the paper's V-cycle ``MgConv`` and the mesh-consistent ``ConsistentMgConv``.

These follow He, Liu and Xu, "MgNO: Efficient parameterization of linear operators via multigrid",
ICLR 2024 (official code ``xlliu2017/MgNO``). A multigrid V-cycle for ``A u = f`` is a *linear*
operator ``f -> u``; MgNO learns its pieces.

:class:`MgConv` is the paper's form: every piece is a plain convolution,

* smoothing ``u <- u + S(f - A(u))`` with ``S`` and ``A`` 3x3 convolutions (no bias); the first
  step on the finest grid starts from ``u = 0`` and reduces to ``u = S(f)``;
* restriction of the pair ``(u, f) -> (Pi(u), R(f))`` with 3x3, stride-2 convolutions (no bias);
* prolongation ``u_fine <- u_fine + P(u_coarse)`` with a stride-2 transposed convolution;

with a number of levels fixed at build time. Its weights are tied to the mesh width they were
trained on: on a grid twice as fine every level acts at half the length scale and the coarsest
level no longer spans the domain, so it does not transfer to other resolutions.

:class:`ConsistentMgConv` keeps the V-cycle but makes the same weights mean the same continuous
operator on every grid:

* the coarse grids are fixed physical grids (:mod:`pdesurrogates.nn.hierarchy`): grid ``s`` has
  ``coarsest * 2**s`` cells per unit length and weight set ``s``; the input grid sits on top at the
  scale of its spacing. Grids of an input finer than the ``levels`` sets only pass data through
  (the right-hand side is restricted down, the result interpolated back up), as an FNO's Fourier
  layers see only their fixed modes: a finer input changes neither the grids the weights act on
  nor their meaning;
* ``A`` is a learned differential operator of order <= 2 discretised with the grid's spacing and
  ``S`` a learned stencil scaled by ``h**2`` (:mod:`pdesurrogates.nn.stencils`);
* transfers are fixed linear interpolation and its row-normalised transpose;
* by default the coarse grid receives the restricted *residual* ``R(f - A u)`` and its result is
  added as a correction (a true correction scheme); ``correction="rhs"`` restricts ``f`` itself,
  as the paper's default does, which makes the cycle an additive multilevel sum.

All blocks work for 1, 2 and 3 spatial axes and any grid size.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .hierarchy import Hierarchy, axis_kinds
from .layers import conv_class, conv_transpose_class
from .padding import crop_to
from .stencils import DifferenceOperator, ScaledStencil
from .stencils import check_padding_mode as _check_padding_mode

CORRECTIONS = ("residual", "rhs")


class Smoother(nn.Module):
    """One learned smoothing step ``u <- u + S(f - A(u))``.

    Parameters
    ----------
    u_channels, f_channels : int
        Channels of the iterate ``u`` and of the right-hand side ``f``.
    ndim : int
        Spatial axes (1, 2 or 3).
    padding_mode : str
        Boundary handling of the 3x3 convolutions: ``"zeros"`` (Dirichlet-like) or ``"circular"``
        (periodic), or ``"reflect"``/``"replicate"``.
    first : bool
        The first step of a V-cycle, from ``u = 0``: ``u = S(f)``, no ``A``.

    Notes
    -----
    Shapes: ``u`` ``(B, u_channels, *s)``, ``f`` ``(B, f_channels, *s)`` -> ``(B, u_channels, *s)``.
    """

    def __init__(self, u_channels: int, f_channels: int, ndim: int = 2, *, padding_mode: str = "zeros",
                 first: bool = False):
        super().__init__()
        conv = conv_class(ndim)
        _check_padding_mode(padding_mode)
        self.first = first
        self.S = conv(f_channels, u_channels, 3, padding=1, bias=False, padding_mode=padding_mode)
        self.A = None if first else conv(u_channels, f_channels, 3, padding=1, bias=False,
                                         padding_mode=padding_mode)

    def forward(self, u: torch.Tensor | None, f: torch.Tensor) -> torch.Tensor:
        if self.A is None:
            if u is not None:
                raise ValueError("Smoother(first=True) starts from u = 0; pass u=None")
            return self.S(f)
        if u is None:
            raise ValueError("Smoother(first=False) needs the current iterate u")
        return u + self.S(f - self.A(u))


class Restriction(nn.Module):
    """Restrict ``(u, f)`` to the next coarser grid with learned stride-2 3x3 convolutions.

    ``u (B, u_channels, *s) -> Pi(u) (B, u_channels, *ceil(s/2))`` and likewise ``f -> R(f)``.
    """

    def __init__(self, u_channels: int, f_channels: int, ndim: int = 2, *, padding_mode: str = "zeros"):
        super().__init__()
        conv = conv_class(ndim)
        _check_padding_mode(padding_mode)
        self.Pi = conv(u_channels, u_channels, 3, stride=2, padding=1, bias=False, padding_mode=padding_mode)
        self.R = conv(f_channels, f_channels, 3, stride=2, padding=1, bias=False, padding_mode=padding_mode)

    def forward(self, u: torch.Tensor, f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.Pi(u), self.R(f)


class Prolongation(nn.Module):
    """Learned prolongation: a stride-2 transposed convolution (kernel 4, as in MgNO), cropped.

    ``u (B, C, *m) -> (B, C, *fine_shape)``, valid when ``m == ceil(fine_shape / 2)``.

    With ``padding_mode="circular"`` the coarse grid is wrapped by one point before the transposed
    convolution, so contributions that cross the periodic boundary are kept (PyTorch's transposed
    convolutions only pad with zeros; the official MgNO code uses those as they are). Other modes
    use the zero-padded transposed convolution.
    """

    def __init__(self, channels: int, ndim: int = 2, *, padding_mode: str = "zeros"):
        super().__init__()
        self.circular = _check_padding_mode(padding_mode) == "circular"
        self.P = conv_transpose_class(ndim)(channels, channels, 4, stride=2, padding=1, bias=False)

    def forward(self, u: torch.Tensor, fine_shape: Sequence[int]) -> torch.Tensor:
        coarse = tuple(u.shape[2:])
        expected = tuple((n + 1) // 2 for n in fine_shape)
        if coarse != expected:
            raise ValueError(f"Prolongation: coarse grid {coarse} does not match fine grid {tuple(fine_shape)} "
                             f"(expected coarse {expected})")
        if not self.circular:
            return crop_to(self.P(u), fine_shape)
        # one wrapped point per side shifts the transposed-convolution output by 2
        u = F.pad(u, [1, 1] * len(coarse), mode="circular")
        index = (slice(None), slice(None)) + tuple(slice(2, 2 + n) for n in fine_shape)
        return self.P(u)[index]


def default_smoothing(levels: int, pre_smooth: int = 1, coarse_smooth: int = 2) -> tuple[int, ...]:
    """Pre-smoothing steps per level: ``pre_smooth`` on every level, ``coarse_smooth`` on the coarsest."""
    if levels < 1:
        raise ValueError(f"levels must be >= 1, got {levels}")
    return (pre_smooth,) * (levels - 1) + (coarse_smooth,)


class MgConv(nn.Module):
    """A learned linear operator ``f -> u`` parameterised as one multigrid V-cycle.

    Parameters
    ----------
    in_channels : int
        Channels of ``f`` (the layer input).
    channels : int
        Channels of ``u`` (the layer output).
    ndim : int
        Spatial axes (1, 2 or 3).
    levels : int
        Number of grids, the finest included (``levels=1``: smoothing only).
    smoothing : sequence of int, optional
        Pre-smoothing steps per level, finest first; default one per level and two on the coarsest
        (:func:`default_smoothing`). The first step on the finest grid is ``u = S(f)``.
    post_smooth : int
        Post-smoothing steps per level on the way up (MgNO's default: 0).
    padding_mode : str
        Boundary handling of the smoothing and restriction convolutions.

    Notes
    -----
    ``f (B, in_channels, *s) -> u (B, channels, *s)``; any grid size works (see module docstring).
    """

    def __init__(self, in_channels: int, channels: int, ndim: int = 2, *, levels: int = 4,
                 smoothing: Sequence[int] | None = None, post_smooth: int = 0, padding_mode: str = "zeros"):
        super().__init__()
        smoothing = tuple(default_smoothing(levels) if smoothing is None else smoothing)
        if len(smoothing) != levels:
            raise ValueError(f"smoothing must give one step count per level ({levels} levels), got {smoothing}")
        if smoothing[0] < 1 or any(s < 0 for s in smoothing) or post_smooth < 0:
            raise ValueError(f"smoothing steps must be >= 0 (>= 1 on the finest level), got {smoothing}, "
                             f"post_smooth={post_smooth}")
        self.levels = levels
        self.smoothing = smoothing
        kw = {"padding_mode": padding_mode}
        self.pre = nn.ModuleList()
        for level, steps in enumerate(smoothing):
            self.pre.append(nn.ModuleList(
                Smoother(channels, in_channels, ndim, first=(level == 0 and i == 0), **kw) for i in range(steps)
            ))
        self.restrict = nn.ModuleList(Restriction(channels, in_channels, ndim, **kw) for _ in range(levels - 1))
        self.prolong = nn.ModuleList(Prolongation(channels, ndim, **kw) for _ in range(levels - 1))
        self.post = nn.ModuleList(
            nn.ModuleList(Smoother(channels, in_channels, ndim, **kw) for _ in range(post_smooth))
            for _ in range(levels - 1)
        )

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        u: torch.Tensor | None = None
        pairs: list[tuple[torch.Tensor, torch.Tensor]] = []
        for level in range(self.levels):
            if level > 0:
                u, f = self.restrict[level - 1](u, f)
            for smoother in self.pre[level]:
                u = smoother(u, f)
            pairs.append((u, f))
        u = pairs[-1][0]
        for level in range(self.levels - 2, -1, -1):
            u_fine, f_fine = pairs[level]
            u = u_fine + self.prolong[level](u, u_fine.shape[2:])
            for smoother in self.post[level]:
                u = smoother(u, f_fine)
        return u

    def extra_repr(self) -> str:
        return f"levels={self.levels}, smoothing={self.smoothing}"


class ConsistentMgConv(nn.Module):
    """A learned V-cycle ``f -> u`` whose weights describe one continuous operator on every grid.

    Parameters
    ----------
    in_channels : int
        Channels of ``f`` (the layer input).
    channels : int
        Channels of ``u`` (the layer output).
    ndim : int
        Spatial axes (1, 2 or 3).
    levels : int
        Weight sets, one per scale counted from the coarsest: the grid of scale ``s`` (about
        ``coarsest * 2**s`` cells per unit length, :func:`pdesurrogates.nn.hierarchy.grid_hierarchy`)
        uses set ``s``. Finer grids of an input (``s >= levels``) are transfer-only; an input with
        fewer scales leaves the finest sets unused.
    smoothing : sequence of int, optional
        Pre-smoothing steps of each weight set, finest first (default one each, two on the
        coarsest). Every grid starts from ``u = S(f)``.
    post_smooth : int
        Post-smoothing steps after each coarse correction.
    padding_mode : str
        Boundary handling of the stencils; ``"circular"`` also makes the grid periodic.
    coarsest : int
        Cells per unit length of the coarsest grid (:func:`pdesurrogates.nn.hierarchy.grid_hierarchy`).
    grid_kind : {"node", "cell", "half-open"}
        How points sit on each axis (:func:`pdesurrogates.nn.hierarchy.axis_kinds`).
    correction : {"residual", "rhs"}
        What the coarse grid receives: ``R(f - A u)`` (default) or ``R(f)``.

    Notes
    -----
    ``f (B, in_channels, *s) -> u (B, channels, *s)``. Spacings are measured in units of
    ``1 / coarsest`` of the domain, so the coarsest grid has spacing about one.
    """

    def __init__(self, in_channels: int, channels: int, ndim: int = 2, *, levels: int = 3,
                 smoothing: Sequence[int] | None = None, post_smooth: int = 0, padding_mode: str = "zeros",
                 coarsest: int = 4, grid_kind: str = "node", correction: str = "residual"):
        super().__init__()
        if isinstance(levels, bool) or not isinstance(levels, int) or levels < 1:
            raise ValueError(f"levels must be an int >= 1, got {levels!r}")
        smoothing = tuple(default_smoothing(levels) if smoothing is None else smoothing)
        if len(smoothing) != levels:
            raise ValueError(f"smoothing must give one step count per level ({levels} levels), got {smoothing}")
        if smoothing[0] < 1 or smoothing[-1] < 1 or any(s < 0 for s in smoothing) or post_smooth < 0:
            raise ValueError(f"smoothing steps must be >= 0 (>= 1 on the finest and the coarsest level), "
                             f"got {smoothing}, post_smooth={post_smooth}")
        if correction not in CORRECTIONS:
            raise ValueError(f"correction must be one of {CORRECTIONS}, got {correction!r}")
        axis_kinds((1,) * ndim, grid_kind)  # validates grid_kind
        self.ndim, self.levels, self.smoothing = ndim, levels, smoothing
        self.coarsest, self.grid_kind, self.correction = coarsest, grid_kind, correction
        self.periodic = _check_padding_mode(padding_mode) == "circular"
        kw = {"padding_mode": padding_mode, "unit": 1.0 / coarsest}
        # weight sets, coarsest first
        self.A = nn.ModuleList(DifferenceOperator(channels, in_channels, ndim, **kw) for _ in range(levels))
        self.pre = nn.ModuleList(
            nn.ModuleList(ScaledStencil(in_channels, channels, ndim, **kw) for _ in range(smoothing[levels - 1 - s]))
            for s in range(levels))
        self.post = nn.ModuleList(
            nn.ModuleList(ScaledStencil(in_channels, channels, ndim, **kw)
                          for _ in range(post_smooth if (s > 0 or levels == 1) else 0))
            for s in range(levels))

    def hierarchy(self, x: torch.Tensor) -> Hierarchy:
        """The grids and transfers for an input ``x (B, C, *s)`` on the unit box."""
        shape = tuple(x.shape[2:])
        return Hierarchy(shape, axis_kinds(shape, self.grid_kind, self.periodic), self.coarsest,
                         device=x.device, dtype=x.dtype)

    @staticmethod
    def _residual(A, u, f, H: Hierarchy, k: int) -> torch.Tensor:
        """``f - A u`` on grid ``k``, zero on the outermost points of non-periodic axes: those carry
        boundary data, where the stencil would read the padding and blow up like ``1/h``."""
        r = f - A(u, H.levels[k].spacing)
        mask = H.interior_mask(k)
        return r if mask is None else r * mask

    def _smooth(self, steps, A, u, f, H: Hierarchy, k: int):
        spacing = H.levels[k].spacing
        for S in steps:
            u = S(f, spacing) if u is None else u + S(self._residual(A, u, f, H, k), spacing)
        return u

    def forward(self, f: torch.Tensor, hierarchy: Hierarchy | None = None) -> torch.Tensor:
        """``f (B, in_channels, *s)`` -> ``u (B, channels, *s)``; ``hierarchy`` defaults to :meth:`hierarchy`."""
        H = self.hierarchy(f) if hierarchy is None else hierarchy
        if tuple(f.shape[2:]) != H.levels[0].shape:
            raise ValueError(f"ConsistentMgConv: input grid {tuple(f.shape[2:])} does not match the "
                             f"hierarchy's finest grid {H.levels[0].shape}")
        n = len(H)
        # weight set of grid k (finest first): its scale; >= levels: the grid only passes data through
        sets = [level.scale for level in H.levels]
        us: list[torch.Tensor | None] = []
        fs: list[torch.Tensor] = []
        for k in range(n):
            if k > 0:
                u_fine, f_fine = us[-1], fs[-1]
                if self.correction == "residual" and u_fine is not None:
                    f_fine = self._residual(self.A[sets[k - 1]], u_fine, f_fine, H, k - 1)
                f = H.transfers[k - 1].restrict(f_fine)
            s = sets[k]
            us.append(self._smooth(self.pre[s], self.A[s], None, f, H, k) if s < self.levels else None)
            fs.append(f)
        u = us[-1]
        for k in range(n - 2, -1, -1):
            up = H.transfers[k].prolong(u)
            u = up if us[k] is None else us[k] + up
            if sets[k] < self.levels:
                u = self._smooth(self.post[sets[k]], self.A[sets[k]], u, fs[k], H, k)
        return u

    def extra_repr(self) -> str:
        return (f"levels={self.levels}, smoothing={self.smoothing}, coarsest={self.coarsest}, "
                f"grid_kind={self.grid_kind!r}, correction={self.correction!r}, periodic={self.periodic}")
