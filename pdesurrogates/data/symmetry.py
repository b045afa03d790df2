"""Training-data augmentation by exact symmetries of a problem.

Many datasets are invariant under a symmetry of the domain: Darcy flow ``-div(a grad u) = f`` with
a constant ``f``, zero Dirichlet data and an isotropic coefficient prior on the unit square is
unchanged when ``x`` and ``y`` are swapped (``u[a^T] = u[a]^T``), and under reflections when the
grid is symmetric too (node grids with both ends, cell-centred grids; *not* the half-open grids
``i / n`` of neuraloperator's Darcy files, whose first row lies on the boundary and whose last does
not). Applying such a map to an input and its target gives another exact sample for free.

:func:`random_symmetries` applies, independently to every sample of a batch, each of the named maps
with probability 1/2; the same map to the input and to the target. Only scalar fields: a vector
field's components would have to be permuted or negated as well.

>>> x = torch.arange(2 * 1 * 3 * 3, dtype=torch.float32).reshape(2, 1, 3, 3)
>>> xs, ys = random_symmetries(x, 10 * x, ("transpose",), torch.Generator().manual_seed(0))
>>> bool(torch.equal(ys, 10 * xs))   # the target follows the input
True
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np
import torch

from pdesurrogates.errors import UserInputError

__all__ = ["SYMMETRIES", "check_symmetries", "random_symmetries", "symmetry_generator"]

SYMMETRIES = ("transpose", "flip")
"""``"transpose"``: swap the last two spatial axes (square grids); ``"flip"``: reverse each spatial
axis, independently, each with probability 1/2."""


def check_symmetries(names: Sequence[str], spatial: Sequence[int] | None = None, where: str = "symmetries",
                     target_shape: Sequence[int] | None = None) -> tuple[str, ...]:
    """The names as a tuple, after checking they are known and, given the inputs' ``spatial`` shape,
    that they fit it and that the targets (``target_shape`` without the batch axis) end in it."""
    names = tuple(names)
    unknown = sorted(set(names) - set(SYMMETRIES))
    if unknown:
        raise UserInputError(f"{where}: unknown symmetries {unknown}; choose from {list(SYMMETRIES)}")
    if len(set(names)) != len(names):
        raise UserInputError(f"{where}: {list(names)} names a symmetry twice")
    if spatial is None or not names:
        return names
    spatial = tuple(spatial)
    if "transpose" in names and (len(spatial) < 2 or spatial[-1] != spatial[-2]):
        raise UserInputError(f"{where}: 'transpose' needs at least 2 spatial axes of equal size, the data's "
                             f"spatial shape is {spatial}")
    if target_shape is not None and tuple(target_shape[len(target_shape) - len(spatial):]) != spatial:
        raise UserInputError(f"{where}: inputs have spatial shape {spatial} but targets have shape "
                             f"{tuple(target_shape)}; both must live on the same grid")
    return names


def symmetry_generator(seed: int, epoch: int, indices) -> torch.Generator:
    """A generator fixed by the run's seed, the epoch and the batch's sample indices (so a resumed run
    draws the same maps)."""
    key = np.asarray(indices, dtype=np.int64).tobytes() + np.asarray([seed, epoch], dtype=np.int64).tobytes()
    return torch.Generator().manual_seed(zlib.crc32(key))


def random_symmetries(x: torch.Tensor, y: torch.Tensor | None, names: Sequence[str],
                      generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(x, y)``, ``x`` of shape ``(N, C, *spatial)``, with each named map applied to each sample
    with probability 1/2 (``y`` may be None; its trailing axes must be ``x``'s spatial ones, e.g.
    ``(N, C_out, *spatial)``)."""
    if not names:
        return x, y
    spatial = tuple(x.shape[2:])
    check_symmetries(names, spatial, target_shape=None if y is None else tuple(y.shape[1:]))
    n = x.shape[0]
    for name in names:
        axes_sets = [(-1, -2)] if name == "transpose" else [(-k,) for k in range(1, len(spatial) + 1)]
        for axes in axes_sets:
            mask = torch.rand(n, generator=generator) < 0.5
            if not mask.any():
                continue

            def apply(t, axes=axes, mask=mask, name=name):
                where = mask.nonzero().squeeze(1).to(t.device)
                t = t.clone()
                t[where] = t[where].transpose(-1, -2) if name == "transpose" else t[where].flip(axes)
                return t

            x = apply(x)
            y = apply(y) if y is not None else None
    return x, y
