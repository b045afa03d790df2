"""Data for benchmark sweeps, loaded once and held in memory.

Two sources, both Darcy flow ``a -> u`` on the unit square:

* ``"neuralop"``: the small files neuraloperator ships (``darcy_train_16.pt`` with 1000 samples at
  16², ``darcy_test_16.pt`` and ``darcy_test_32.pt`` with 50 each), produced by a solver that is not
  ours, kept in the repository under ``datasets/neuralop_small/`` and read through
  :mod:`pdesurrogates.data.neuralop_small` (checksums verified). Used by every ``smoke`` size: no
  generation cost.
* ``"generated"``: our own generator, :func:`pdesurrogates.physics.problems.get_problem` ``("darcy",
  resolution=...)``, cached once per (resolution, seed, split) under ``datasets/generated/``
  (git-ignored). Training samples use indices ``0..n-1``, test samples indices from
  :data:`TEST_OFFSET`, so the test set does not change when the training set grows.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from pdesurrogates.bench.report import REPO
from pdesurrogates.data import neuralop_small

NEURALOP_SMALL = neuralop_small.ROOT
CACHE = REPO / "datasets" / "generated"
TEST_OFFSET = 1_000_000


@dataclass(frozen=True)
class SweepData:
    """Training pair and named test pairs, all ``(N, C, H, W)`` float32 tensors."""

    train: tuple[torch.Tensor, torch.Tensor]
    tests: dict[str, tuple[torch.Tensor, torch.Tensor]]
    source: str

    def subset(self, n_train: int) -> SweepData:
        """The first ``n_train`` training samples (same tests)."""
        if n_train > self.train[0].shape[0]:
            raise ValueError(f"asked for {n_train} training samples, only {self.train[0].shape[0]} loaded")
        return SweepData((self.train[0][:n_train], self.train[1][:n_train]), self.tests, self.source)


def _neuralop_pair(name: str, root: Path | str | None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x, y)`` of one neuraloperator file as ``(N, 1, H, W)`` float32 tensors."""
    x, y = neuralop_small.open_dataset(name, root).arrays()
    return torch.from_numpy(x), torch.from_numpy(y)


def neuralop_darcy(
    n_train: int, n_test: int, *, test_resolutions: tuple[int, ...] = (16,), root: Path | str | None = None
) -> SweepData:
    """neuraloperator's Darcy: train at 16², test at 16² and/or 32² (zero-shot).

    ``root``: folder holding the files (default the repository's ``datasets/neuralop_small/``).
    """
    x, y = _neuralop_pair("darcy_train_16.pt", root)
    if not 1 <= n_train <= x.shape[0]:
        raise ValueError(f"neuralop_darcy: n_train must be in [1, {x.shape[0]}], got {n_train}")
    tests = {}
    for r in test_resolutions:
        if r not in (16, 32):
            raise ValueError(f"neuralop_darcy: test resolutions are 16 and 32, got {r}")
        tx, ty = _neuralop_pair(f"darcy_test_{r}.pt", root)
        if not 1 <= n_test <= tx.shape[0]:
            raise ValueError(f"neuralop_darcy: n_test must be in [1, {tx.shape[0]}], got {n_test}")
        tests[str(r)] = (tx[:n_test], ty[:n_test])
    return SweepData((x[:n_train], y[:n_train]), tests, "neuralop darcy_*_16/32.pt")


def generate_darcy(
    resolution: int, n: int, *, seed: int, split: str = "train", cache: Path | str | None = CACHE
) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` Darcy samples from our generator, cached under ``cache`` (``None``: no cache).

    Returns ``(a, u)`` as ``(n, 1, resolution, resolution)`` float32 tensors.
    """
    if split not in ("train", "test"):
        raise ValueError(f"generate_darcy: split must be 'train' or 'test', got {split!r}")
    path = None
    if cache is not None:
        cache = Path(cache)
        for f in sorted(cache.glob(f"darcy_r{resolution}_s{seed}_{split}_n*.pt")):
            if int(f.stem.rsplit("_n", 1)[1]) >= n:
                d = torch.load(f, weights_only=True)
                return d["x"][:n], d["y"][:n]
        path = cache / f"darcy_r{resolution}_s{seed}_{split}_n{n}.pt"
    start = 0 if split == "train" else TEST_OFFSET
    x, y = darcy_samples(resolution, list(range(start, start + n)), seed)
    x = torch.as_tensor(x).float()
    y = torch.as_tensor(y).float()
    if x.ndim == 3:
        x, y = x.unsqueeze(1), y.unsqueeze(1)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        torch.save({"x": x, "y": y}, tmp)
        tmp.replace(path)  # atomic: a concurrent reader never sees half a file
    return x, y


def darcy_samples(resolution: int, indices: list[int], seed: int):
    """Darcy samples ``indices`` of the dataset with ``seed``: the registered problem's ``generate``.

    Falls back to :mod:`pdesurrogates.physics.darcy` (same per-sample generators) when
    ``physics.problems`` is not available.
    """
    try:
        from pdesurrogates.physics.problems import get_problem
    except ImportError:
        import numpy as np

        from pdesurrogates.physics.darcy import sample_coefficient, solve_darcy
        from pdesurrogates.physics.random import sample_generator

        a = [sample_coefficient(resolution, sample_generator(seed, i)) for i in indices]
        u = [solve_darcy(ai) for ai in a]
        return np.stack(a).astype(np.float32), np.stack(u).astype(np.float32)
    return get_problem("darcy", resolution=resolution).generate(indices, seed, "cpu")


def generated_darcy(
    resolution: int, n_train: int, n_test: int, *, seed: int = 0,
    test_resolutions: tuple[int, ...] = (), cache: Path | str | None = CACHE,
) -> SweepData:
    """Our generator's Darcy at ``resolution`` (train and test), plus tests at other resolutions."""
    train = generate_darcy(resolution, n_train, seed=seed, split="train", cache=cache)
    tests = {str(resolution): generate_darcy(resolution, n_test, seed=seed, split="test", cache=cache)}
    for r in test_resolutions:
        if r != resolution:
            tests[str(r)] = generate_darcy(r, n_test, seed=seed, split="test", cache=cache)
    return SweepData(train, tests, f"pdesurrogates.physics darcy (seed {seed}, cached in datasets/generated)")


def load(spec: dict) -> SweepData:
    """Data from a suite config's ``data`` entry (``{"source": "neuralop"|"generated", ...}``)."""
    spec = dict(spec)
    source = spec.pop("source", None)
    if source == "neuralop":
        return neuralop_darcy(
            spec["n_train"], spec["n_test"], test_resolutions=tuple(spec.get("test_resolutions", (16,)))
        )
    if source == "generated":
        return generated_darcy(
            spec["resolution"], spec["n_train"], spec["n_test"], seed=spec.get("seed", 0),
            test_resolutions=tuple(spec.get("test_resolutions", ())),
        )
    raise ValueError(f"data source must be 'neuralop' or 'generated', got {source!r}")
