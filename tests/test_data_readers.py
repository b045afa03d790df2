"""Readers: our files, PDEBench layouts, FNO .mat (v7.3 and old), neuraloperator .pt.

Foreign files are written here in exactly their published layouts from arrays we know, and the
reader must give those arrays back in our ``(C, [T,] *spatial)`` layout.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io
import torch
from torch.utils.data import DataLoader

from pdesurrogates.data import DatasetWriter, detect_format, inspect_file, open_dataset


def _ours(path: Path, n: int = 10, spatial: tuple[int, ...] = (9, 9), time: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, 2, *spatial)).astype(np.float32)
    y = rng.standard_normal((n, 1, *((time,) if time else ()), *spatial)).astype(np.float32)
    with DatasetWriter.open(path, pde="toy", n_samples=n, input_shape=x.shape[1:],
                            output_shape=y.shape[1:], params={"k": 1}, seed=3,
                            grid={"x": np.linspace(0, 1, spatial[0])}) as w:
        w.append(x, y)
        w.finalize()
    return x, y


def _all(ds) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = zip(*(ds[i] for i in range(len(ds))))
    return torch.stack(xs).numpy(), torch.stack(ys).numpy()


def test_ours_values_meta_indices_stride(tmp_path: Path) -> None:
    path = tmp_path / "d.h5"
    x, y = _ours(path, time=3)
    ds = open_dataset(path)
    assert ds.meta["format"] == "pdesurrogates" and ds.meta["pde"] == "toy"
    assert ds.meta["provenance"]["params"] == {"k": 1} and ds.meta["provenance"]["seed"] == 3
    assert ds.meta["input_shape"] == (2, 9, 9) and ds.meta["output_shape"] == (1, 3, 9, 9)
    np.testing.assert_allclose(ds.meta["grid"]["x"], np.linspace(0, 1, 9))
    gx, gy = _all(ds)
    np.testing.assert_array_equal(gx, x)
    np.testing.assert_array_equal(gy, y)
    assert ds[0][0].dtype == torch.float32

    sub = open_dataset(path, indices=[7, 2, 3], stride=2)
    assert len(sub) == 3 and sub.meta["spatial_shape"] == (5, 5)
    gx, gy = _all(sub)
    np.testing.assert_array_equal(gx, x[[7, 2, 3]][..., ::2, ::2])
    np.testing.assert_array_equal(gy, y[[7, 2, 3]][..., ::2, ::2])  # time axis not strided
    batch = sub.__getitems__([1, 2, 0])
    np.testing.assert_array_equal(batch[0][1].numpy(), y[2][..., ::2, ::2])

    mem = open_dataset(path, indices=slice(2, 8), in_memory=True, stride=4)
    gx, _ = _all(mem)
    np.testing.assert_array_equal(gx, x[2:8, :, ::4, ::4])


def test_dataloader_with_workers(tmp_path: Path) -> None:
    path = tmp_path / "d.h5"
    x, y = _ours(path, n=13)
    ds = open_dataset(path, stride=2)
    loader = DataLoader(ds, batch_size=4, num_workers=2, shuffle=False)
    bx, by = zip(*loader)
    np.testing.assert_array_equal(torch.cat(bx).numpy(), x[..., ::2, ::2])
    np.testing.assert_array_equal(torch.cat(by).numpy(), y[..., ::2, ::2])
    ds[0]  # the handle is open now; a pickled copy (spawned workers) must reopen its own
    clone = pickle.loads(pickle.dumps(ds))
    assert clone._source._file is None
    np.testing.assert_array_equal(clone[12][1].numpy(), y[12][..., ::2, ::2])
    shuffled = DataLoader(ds, batch_size=5, num_workers=2, shuffle=True,
                          generator=torch.Generator().manual_seed(0))
    total = sum(float(b[0].sum()) for b in shuffled)
    assert total == pytest.approx(float(x[..., ::2, ::2].sum(dtype=np.float64)), rel=1e-5)


def test_pdebench_1d_tensor(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    tensor = rng.standard_normal((5, 6, 16)).astype(np.float32)  # (N, T, X)
    path = tmp_path / "1D_Advection_Sols_beta0.1.hdf5"
    with h5py.File(path, "w") as f:
        f["tensor"] = tensor
        f["x-coordinate"] = np.linspace(0, 1, 16, dtype=np.float32)
        f["t-coordinate"] = np.linspace(0, 2, 7, dtype=np.float32)
    assert detect_format(path) == "pdebench"
    ds = open_dataset(path, initial_step=2, stride=2)
    assert ds.meta["input_shape"] == (2, 8) and ds.meta["output_shape"] == (1, 4, 8)
    gx, gy = _all(ds)
    np.testing.assert_array_equal(gx, tensor[:, :2, ::2])
    np.testing.assert_array_equal(gy, tensor[:, None, 2:, ::2])
    np.testing.assert_array_equal(ds.meta["grid"]["x-coordinate"], np.linspace(0, 1, 16, dtype=np.float32))


def test_pdebench_darcy(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    nu = rng.uniform(0.1, 1, (4, 8, 8)).astype(np.float32)
    tensor = rng.standard_normal((4, 1, 8, 8)).astype(np.float32)
    path = tmp_path / "2D_DarcyFlow_beta1.0_Train.hdf5"
    with h5py.File(path, "w") as f:
        f["nu"], f["tensor"] = nu, tensor
        f["x-coordinate"] = np.linspace(0, 1, 8)
    ds = open_dataset(path)
    gx, gy = _all(ds)
    np.testing.assert_array_equal(gx, nu[:, None])
    np.testing.assert_array_equal(gy, tensor)


def test_pdebench_sample_groups(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    data = rng.standard_normal((3, 5, 8, 6, 2)).astype(np.float32)  # per sample (T, X, Y, C)
    path = tmp_path / "2D_diff-react_NA_NA.h5"
    with h5py.File(path, "w") as f:
        for i in range(3):
            g = f.create_group(f"{i:04d}")
            g["data"] = data[i]
            g["grid/x"] = np.linspace(0, 1, 8)
            g["grid/y"] = np.linspace(0, 1, 6)
            g["grid/t"] = np.linspace(0, 1, 5)
    ds = open_dataset(path, initial_step=1)
    assert ds.meta["input_shape"] == (2, 8, 6) and ds.meta["output_shape"] == (2, 4, 8, 6)
    gx, gy = _all(ds)
    np.testing.assert_array_equal(gx, np.moveaxis(data[:, 0], -1, 1))
    np.testing.assert_array_equal(gy, np.moveaxis(data[:, 1:], -1, 1))
    np.testing.assert_array_equal(ds.meta["grid"]["t"], np.linspace(0, 1, 5))
    two = open_dataset(path, initial_step=2, stride=(1, 2))
    x2, _ = two[1]
    # channels ordered step-major: (t0 c0, t0 c1, t1 c0, t1 c1)
    want = np.moveaxis(data[1, :2], -1, 1).reshape(4, 8, 6)[..., ::2]
    np.testing.assert_array_equal(x2.numpy(), want)


def _write_mat_v73(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """MATLAB v7.3 layout: HDF5 with a 512-byte user block and column-major (reversed) axes."""
    with h5py.File(path, "w", userblock_size=512) as f:
        for k, v in arrays.items():
            f[k] = np.asarray(v, dtype=np.float64).transpose()
    with open(path, "r+b") as fh:
        fh.write(b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: test HDF5 schema 1.00 .")


def test_fno_mat_v73_darcy_and_navier_stokes(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    coeff = rng.choice([3.0, 12.0], (6, 9, 9))
    sol = rng.standard_normal((6, 9, 9))
    path = tmp_path / "piececonst_r421_N1024_smooth1.mat"
    _write_mat_v73(path, {"coeff": coeff, "sol": sol, "Kcoeff": coeff})
    assert detect_format(path) == "fno-mat"
    ds = open_dataset(path, stride=4, indices=[5, 0])
    gx, gy = _all(ds)
    np.testing.assert_array_equal(gx, coeff[[5, 0], None, ::4, ::4].astype(np.float32))
    np.testing.assert_allclose(gy, sol[[5, 0], None, ::4, ::4], rtol=1e-6)
    assert ("sol", (6, 9, 9), "float64") in inspect_file(path)  # MATLAB order reported

    a = rng.standard_normal((3, 8, 8))
    u = rng.standard_normal((3, 8, 8, 5))  # (N, X, Y, T) in MATLAB order
    ns = tmp_path / "ns_V1e-3_N5000_T50.mat"
    _write_mat_v73(ns, {"a": a, "u": u, "t": np.arange(5.0)})
    ds = open_dataset(ns, in_memory=True)
    assert ds.meta["output_shape"] == (1, 5, 8, 8)
    _, gy = _all(ds)
    np.testing.assert_allclose(gy, np.moveaxis(u, -1, 1)[:, None], rtol=1e-6)


def test_fno_mat_old_version_via_scipy(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    a, u = rng.standard_normal((4, 32)), rng.standard_normal((4, 32))
    path = tmp_path / "burgers_data_R10.mat"
    scipy.io.savemat(path, {"a": a, "u": u})
    ds = open_dataset(path, stride=4)
    gx, gy = _all(ds)
    np.testing.assert_allclose(gx, a[:, None, ::4], rtol=1e-6)
    np.testing.assert_allclose(gy, u[:, None, ::4], rtol=1e-6)
    with pytest.raises(Exception, match="missing key 'coeff'"):
        open_dataset(path, input_key="coeff", output_key="u")


def test_neuralop_pt_darcy_real_files(neuralop_small: Path) -> None:
    raw = torch.load(neuralop_small / "darcy_test_32.pt", weights_only=True)
    ds = open_dataset(neuralop_small / "darcy_test_32.pt")
    assert ds.meta["format"] == "neuralop-pt" and len(ds) == 50
    x, y = ds[7]
    assert x.dtype == torch.float32 and x.shape == (1, 32, 32) and y.shape == (1, 32, 32)
    assert torch.equal(x[0], raw["x"][7].float()) and torch.equal(y[0], raw["y"][7])
    assert set(torch.unique(x).tolist()) <= {0.0, 1.0}
    coarse = open_dataset(neuralop_small / "darcy_test_32.pt", stride=2, indices=range(3))
    assert torch.equal(coarse[2][1][0], raw["y"][2, ::2, ::2])


def test_neuralop_pt_burgers_time_axis(neuralop_small: Path) -> None:
    raw = torch.load(neuralop_small / "burgers_test_16.pt", weights_only=True)
    ds = open_dataset(neuralop_small / "burgers_test_16.pt")
    assert ds.meta["input_shape"] == (1, 16) and ds.meta["output_shape"] == (1, 17, 16)
    x, y = ds[3]
    torch.testing.assert_close(y[0], raw["y"][3].float())
    torch.testing.assert_close(x[0], raw["x"][3].float())
    assert ds.meta["provenance"]["visc"] == [[pytest.approx(0.01)]]
    loader = DataLoader(ds, batch_size=64)
    assert sum(b[0].shape[0] for b in loader) == 400


def test_pdebench_cfd_fields(tmp_path: Path) -> None:
    rng = np.random.default_rng(6)
    fields = {k: rng.standard_normal((3, 5, 8)).astype(np.float32) for k in ("density", "pressure", "Vx")}
    path = tmp_path / "1D_CFD_Rand_Eta0.01_Zeta0.01_periodic_Train.hdf5"
    with h5py.File(path, "w") as f:
        for k, v in fields.items():
            f[k] = v
        f["x-coordinate"] = np.linspace(0, 1, 8)
        f["t-coordinate"] = np.linspace(0, 1, 6)
    ds = open_dataset(path, initial_step=2)
    assert ds.meta["input_shape"] == (6, 8) and ds.meta["output_shape"] == (3, 3, 8)
    stacked = np.stack([fields[k] for k in ("density", "pressure", "Vx")], axis=1)  # (N, C, T, X)
    x, y = ds[1]
    np.testing.assert_array_equal(y.numpy(), stacked[1, :, 2:])
    np.testing.assert_array_equal(x.numpy()[:3], stacked[1, :, 0])  # step 0: density, pressure, Vx
    np.testing.assert_array_equal(x.numpy()[3:], stacked[1, :, 1])


@pytest.mark.parametrize("workers, in_memory", [(0, False), (2, False), (0, True)])
def test_make_loader_equals_dataloader(tmp_path: Path, workers: int, in_memory: bool) -> None:
    from pdesurrogates.data import make_loader

    path = tmp_path / "d.h5"
    _ours(path, n=23, time=2)
    ds = open_dataset(path, stride=2, in_memory=in_memory)
    fast = make_loader(ds, 5, shuffle=True, num_workers=workers, generator=torch.Generator().manual_seed(4))
    plain = DataLoader(ds, 5, shuffle=True, generator=torch.Generator().manual_seed(4))
    pairs = list(zip(fast, plain))
    assert len(pairs) == 5
    for (fx, fy), (px, py) in pairs:
        assert fx.shape == px.shape and fy.shape == (px.shape[0], 1, 2, 5, 5)
        assert torch.equal(fx, px) and torch.equal(fy, py)


def test_public_names_importable_from_readers_as_before() -> None:
    from pdesurrogates import data
    from pdesurrogates.data import readers

    for name in ("FORMATS", "DataFormatError", "FieldDataset", "detect_format", "inspect_file",
                 "make_loader", "open_dataset"):
        assert getattr(readers, name) is getattr(data, name), name
    assert readers.FORMATS == ("pdesurrogates", "pdebench", "fno-mat", "neuralop-pt")
