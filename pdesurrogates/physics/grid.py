"""Uniform Cartesian grids in 1D, 2D and 3D.

A :class:`Grid` is node based. For ``"dirichlet"`` and ``"neumann"`` boundaries the nodes
include both ends of each interval, so ``spacing = length / (n - 1)`` (this is the FNO-paper
Darcy convention: a 421-point grid on [0, 1] has h = 1/420). For ``"periodic"`` boundaries the
last node is identified with the first, so ``spacing = length / n``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BOUNDARY_TYPES = ("dirichlet", "neumann", "periodic")


@dataclass(frozen=True)
class Grid:
    """A uniform grid.

    Args:
        shape: number of nodes per dimension, e.g. ``(64, 64)``.
        length: physical length per dimension (a float applies to every dimension).
        boundary: one of ``"dirichlet"``, ``"neumann"``, ``"periodic"``.

    >>> g = Grid((5, 5))
    >>> g.spacing
    (0.25, 0.25)
    >>> Grid((4,), boundary="periodic").spacing
    (0.25,)
    """

    shape: tuple[int, ...]
    length: tuple[float, ...] | float = 1.0
    boundary: str = "dirichlet"

    def __post_init__(self) -> None:
        shape = tuple(int(s) for s in self.shape)
        if not 1 <= len(shape) <= 3:
            raise ValueError(f"Grid supports 1 to 3 dimensions, got shape {shape}")
        minimum = 2 if self.boundary == "periodic" else 3
        if any(s < minimum for s in shape):
            raise ValueError(
                f"Grid shape {shape} too small: need at least {minimum} nodes per dimension "
                f"for boundary {self.boundary!r}"
            )
        if self.boundary not in BOUNDARY_TYPES:
            raise ValueError(
                f"unknown boundary {self.boundary!r}; valid: {', '.join(BOUNDARY_TYPES)}"
            )
        length = self.length
        if isinstance(length, (int, float)):
            length = (float(length),) * len(shape)
        length = tuple(float(v) for v in length)
        if len(length) != len(shape):
            raise ValueError(f"length {length} does not match shape {shape}")
        if any(v <= 0 for v in length):
            raise ValueError(f"lengths must be positive, got {length}")
        object.__setattr__(self, "shape", shape)
        object.__setattr__(self, "length", length)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def spacing(self) -> tuple[float, ...]:
        if self.boundary == "periodic":
            return tuple(L / n for L, n in zip(self.length, self.shape))
        return tuple(L / (n - 1) for L, n in zip(self.length, self.shape))

    @property
    def interior_shape(self) -> tuple[int, ...]:
        """Shape of the unknowns: interior nodes for Dirichlet, all nodes otherwise."""
        if self.boundary == "dirichlet":
            return tuple(n - 2 for n in self.shape)
        return self.shape

    def coords(self) -> tuple[np.ndarray, ...]:
        """1D coordinate arrays, one per dimension (float64)."""
        return tuple(np.arange(n) * h for n, h in zip(self.shape, self.spacing))

    def mesh(self) -> tuple[np.ndarray, ...]:
        """``np.meshgrid(..., indexing="ij")`` of :meth:`coords`."""
        return tuple(np.meshgrid(*self.coords(), indexing="ij"))

    def subsample(self, stride: int) -> Grid:
        """The grid seen by taking every ``stride``-th node (boundary nodes kept)."""
        if stride < 1:
            raise ValueError(f"stride must be >= 1, got {stride}")
        if self.boundary == "periodic":
            if any(n % stride for n in self.shape):
                raise ValueError(f"stride {stride} does not divide periodic grid {self.shape}")
            return Grid(tuple(n // stride for n in self.shape), self.length, self.boundary)
        if any((n - 1) % stride for n in self.shape):
            raise ValueError(
                f"stride {stride} does not divide the {self.shape} grid: need (n - 1) % stride == 0"
            )
        return Grid(tuple((n - 1) // stride + 1 for n in self.shape), self.length, self.boundary)
