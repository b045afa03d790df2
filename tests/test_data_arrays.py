"""Datasets from arrays: the same dataset type as a file gives, checked at the boundary, and our
HDF5 file written from arrays reads back the same arrays."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from pdesurrogates.data import (
    FieldDataset,
    GaussianNormalizer,
    from_arrays,
    make_loader,
    open_dataset,
    write_arrays,
)
from pdesurrogates.physics.grid import Grid


def _pair(n: int = 12, time: int | None = 3,
          spatial: tuple[int, ...] = (9, 9)) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, 2, *spatial)).astype(np.float32)
    y = rng.standard_normal((n, 1, *((time,) if time else ()), *spatial)).astype(np.float32)
    return x, y


def test_same_dataset_type_and_meta_as_a_file(tmp_path: Path) -> None:
    x, y = _pair()
    grid = Grid((9, 9))
    ds = from_arrays(x, y, grid=grid, pde="toy", params={"k": 1})
    path = write_arrays(tmp_path / "toy.h5", x, y, pde="toy", params={"k": 1}, grid=grid)
    on_disk = open_dataset(path)
    assert isinstance(ds, FieldDataset) and set(ds.meta) == set(on_disk.meta)
    assert ds.meta["format"] == "arrays" and ds.meta["path"] is None and ds.meta["pde"] == "toy"
    assert ds.meta["provenance"]["params"] == {"k": 1}
    for key in ("n_samples", "input_shape", "output_shape", "spatial_shape", "stride"):
        assert ds.meta[key] == on_disk.meta[key], key
    for key in ("x", "y"):
        np.testing.assert_array_equal(ds.meta["grid"][key], on_disk.meta["grid"][key])
    np.testing.assert_array_equal(ds.meta["grid"]["x"], np.linspace(0, 1, 9))
    # the file holds exactly the arrays, with their provenance
    fx, fy = on_disk.arrays()
    np.testing.assert_array_equal(fx, x)
    np.testing.assert_array_equal(fy, y)
    assert on_disk.meta["provenance"]["source"] == "arrays" and on_disk.meta["provenance"]["seed"] == -1
    assert on_disk.meta["provenance"]["complete"]
    # what the training loop uses
    ax, ay = ds.arrays()
    np.testing.assert_array_equal(ax, x)
    np.testing.assert_array_equal(ay, y)
    items = ds.__getitems__([4, 1])
    assert torch.equal(items[0][1], torch.from_numpy(y[4])) and torch.equal(items[1][0], torch.from_numpy(x[1]))
    ds.close()


def test_stride_indices_loaders_and_normalizer() -> None:
    x, y = _pair(n=11)
    ds = from_arrays(x, y, indices=[7, 2, 3, 10], stride=2)
    assert ds.meta["spatial_shape"] == (5, 5) and len(ds) == 4
    bx, by = ds.arrays()
    np.testing.assert_array_equal(bx, x[[7, 2, 3, 10]][..., ::2, ::2])
    np.testing.assert_array_equal(by, y[[7, 2, 3, 10]][..., ::2, ::2])  # time is not strided
    fast = list(make_loader(ds, 3, shuffle=True, generator=torch.Generator().manual_seed(1)))
    plain = list(DataLoader(ds, 3, shuffle=True, generator=torch.Generator().manual_seed(1)))
    assert len(fast) == len(plain) == 2
    for (fx, fy), (px, py) in zip(fast, plain):
        assert torch.equal(fx, px) and torch.equal(fy, py)
    workers = DataLoader(from_arrays(x, y), batch_size=4, num_workers=2)
    np.testing.assert_array_equal(torch.cat([b[0] for b in workers]).numpy(), x)
    norm = GaussianNormalizer.fit(from_arrays(x, y), which="inputs", batch_size=4)
    ref = x.astype(np.float64)
    np.testing.assert_allclose(norm.mean.flatten().numpy(), ref.mean(axis=(0, 2, 3)), rtol=1e-10)
    np.testing.assert_allclose(norm.std.flatten().numpy(), ref.std(axis=(0, 2, 3)), rtol=1e-10)


def test_torch_bool_int_and_float64_inputs() -> None:
    mask = torch.rand(6, 1, 8) > 0.5
    u = torch.randn(6, 1, 8, dtype=torch.float64, requires_grad=True)
    ds = from_arrays(mask, u)
    x, y = ds[5]
    assert x.dtype == y.dtype == torch.float32
    assert torch.equal(x, mask[5].float())
    assert torch.equal(y, u[5].detach().float())
    counts = from_arrays(np.arange(48).reshape(6, 1, 8), np.ones((6, 1, 8), np.int16))
    assert counts[2][0][0, 3].item() == 19.0


def test_float32_arrays_are_shared_not_copied() -> None:
    x, y = _pair(n=3)
    ds = from_arrays(x, y)
    x[1, 0, 2, 2] = 42.0
    assert ds[1][0][0, 2, 2].item() == 42.0
    copied = from_arrays(x.astype(np.float64), y)
    x[1, 0, 2, 2] = 0.0
    assert copied[1][0][0, 2, 2].item() == 42.0


def test_bad_arrays_name_the_argument_and_sample() -> None:
    x, y = _pair(n=5, time=None, spatial=(6,))
    bad_x = x.copy()
    bad_x[3, 1, 2] = np.nan
    bad_y = y.copy()
    bad_y[1, 0, 0] = np.inf
    cases = [
        ((x.astype(np.complex64), y), ValueError,
         r"from_arrays: argument 'inputs' has dtype complex64 \(complex numbers\); expected real numbers"),
        ((x, y.astype(object)), ValueError, r"argument 'outputs' has dtype object \(Python objects\)"),
        ((np.array([["a"]] * 5), y), ValueError, r"argument 'inputs' has dtype <U1 \(strings\)"),
        ((bad_x, y), ValueError, r"from_arrays: inputs sample 3 contains NaN or Inf \(1 of 5 samples do\)"),
        ((x, bad_y), ValueError, r"outputs sample 1 contains NaN or Inf"),
        ((x[:, 0], y), ValueError, (r"inputs must be \(N, C_in, \*spatial\) with at least one spatial "
                                    r"axis, found shape \(5, 6\) \(add a channel axis: inputs\[:, None\]\)")),
        ((x, y[:4]), ValueError, (r"outputs must be \(N=5, C_out, \[T,\] 6\) to match inputs "
                                  r"\(5, 2, 6\), found \(4, 1, 6\)")),
        ((x, y[..., :5]), ValueError, r"found \(5, 1, 5\)"),
        ((x[:0], y[:0]), ValueError, r"empty arrays"),
        ((x.tolist(), y), TypeError, r"from_arrays: inputs must be a numpy array or a torch tensor, got list"),
    ]
    for args, error, match in cases:
        with pytest.raises(error, match=match):
            from_arrays(*args)
    with pytest.raises(ValueError, match=r"from_arrays: grid has shape \(7\), the arrays' spatial shape is \(6\)"):
        from_arrays(x, y, grid=Grid((7,)))
    with pytest.raises(ValueError, match=r"from_arrays: stride must be an int"):
        from_arrays(x, y, stride=1.5)


def test_write_arrays_checks_before_creating_the_file(tmp_path: Path) -> None:
    x, y = _pair(n=4)
    path = tmp_path / "a.h5"
    bad = y.copy()
    bad[2, 0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match=r"a\.h5\): outputs sample 2 contains NaN or Inf"):
        write_arrays(path, x, bad, pde="toy")
    assert not path.exists()
    write_arrays(path, torch.from_numpy(x) > 0, torch.from_numpy(y).double(), pde="toy", seed=3,
                 dtype="float64", batch_size=3)
    with h5py.File(path, "r") as f:
        assert f["inputs"].dtype == np.float64 and int(f.attrs["seed"]) == 3
        np.testing.assert_array_equal(f["inputs"][()], (x > 0).astype(np.float64))
        np.testing.assert_array_equal(f["outputs"][()], y.astype(np.float64))
    with pytest.raises(FileExistsError, match=r"a\.h5 already exists"):
        write_arrays(path, x, y, pde="toy")
    write_arrays(path, x[:2], y[:2], pde="toy", overwrite=True)
    assert len(open_dataset(path)) == 2
    with pytest.raises(ValueError, match=r"seed must be an int >= 0 or None, got -4"):
        write_arrays(tmp_path / "b.h5", x, y, pde="toy", seed=-4)
    assert not (tmp_path / "b.h5").exists()
