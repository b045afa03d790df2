"""Bad input gives an error naming the file, the key, and what was expected versus found."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from pdesurrogates.data import DataFormatError, DatasetWriter, open_dataset


def _ours(path: Path, n: int = 6, shape: tuple[int, ...] = (1, 9, 9)) -> None:
    x = np.arange(n * int(np.prod(shape)), dtype=np.float32).reshape(n, *shape)
    with DatasetWriter.open(path, pde="toy", n_samples=n, input_shape=shape, output_shape=shape,
                            params={}, seed=0, compression="none") as w:
        w.append(x, -x)
        w.finalize()


def test_not_hdf5(tmp_path: Path) -> None:
    path = tmp_path / "notes.h5"
    path.write_text("just text\n")
    with pytest.raises(DataFormatError, match=r"notes\.h5 is not an HDF5 file"):
        open_dataset(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nothere\.h5"):
        open_dataset(tmp_path / "nothere.h5")


def test_truncated_metadata(tmp_path: Path) -> None:
    path = tmp_path / "t.h5"
    _ours(path)
    data = path.read_bytes()
    path.write_bytes(data[:1200])  # superblock survives, the rest is gone
    with pytest.raises(DataFormatError, match=r"t\.h5.*(truncated|cannot open)"):
        open_dataset(path)


def test_truncated_in_data_region(tmp_path: Path) -> None:
    path = tmp_path / "t.h5"
    _ours(path, n=40, shape=(1, 32, 32))
    with h5py.File(path, "r") as f:
        offset = f["outputs"].id.get_chunk_info(30).byte_offset
    with open(path, "r+b") as fh:
        fh.truncate(offset + 10)
    with pytest.raises(DataFormatError, match=r"t\.h5: cannot open the HDF5 file \(truncated"):
        open_dataset(path)


def test_damaged_chunk_names_samples(tmp_path: Path) -> None:
    """The per-chunk fletcher32 checksum turns a damaged chunk into an error, not silent garbage."""
    path = tmp_path / "c.h5"
    x = np.random.default_rng(0).standard_normal((8, 1, 16, 16)).astype(np.float32)
    with DatasetWriter.open(path, pde="toy", n_samples=8, input_shape=(1, 16, 16),
                            output_shape=(1, 16, 16), params={}, seed=0) as w:
        w.append(x, x)
        w.finalize()
    with h5py.File(path, "r") as f:
        info = f["inputs"].id.get_chunk_info(5)
    with open(path, "r+b") as fh:
        fh.seek(info.byte_offset + info.size // 2)  # flip bytes inside the chunk
        fh.write(b"\x5a" * 64)
    ds = open_dataset(path)
    np.testing.assert_array_equal(ds[4][0].numpy(), x[4])
    with pytest.raises(DataFormatError, match=r"c\.h5: cannot read samples 5\.\.5 of 'inputs'/'outputs'"):
        ds[5]


def test_missing_key(tmp_path: Path) -> None:
    path = tmp_path / "m.h5"
    _ours(path)
    with h5py.File(path, "r+") as f:
        del f["outputs"]
    with pytest.raises(DataFormatError, match=r"m\.h5: missing key 'outputs'; found \['grid', 'inputs'\]"):
        open_dataset(path, format="pdesurrogates")
    pdebench = tmp_path / "pb.h5"
    with h5py.File(pdebench, "w") as f:
        f["nu"] = np.zeros((2, 4, 4))
    with pytest.raises(DataFormatError, match=r"pb\.h5: missing key 'tensor'"):
        open_dataset(pdebench, format="pdebench")
    pt = tmp_path / "d.pt"
    torch.save({"x": torch.zeros(3, 4)}, pt)
    with pytest.raises(DataFormatError, match=r"d\.pt: missing key 'y'; found \['x'\]"):
        open_dataset(pt)


def test_unknown_layout_lists_keys(tmp_path: Path) -> None:
    path = tmp_path / "u.h5"
    with h5py.File(path, "w") as f:
        f["foo"] = np.zeros(3)
    with pytest.raises(DataFormatError, match=r"u\.h5: HDF5 file of unknown layout: found keys \['foo'\]"):
        open_dataset(path)


def test_wrong_rank_and_shape(tmp_path: Path) -> None:
    path = tmp_path / "r.h5"
    with h5py.File(path, "w") as f:
        f["tensor"] = np.zeros((4, 8))
    with pytest.raises(DataFormatError, match=r"r\.h5: key 'tensor' must be \(N, T, \*spatial\).*found \(4, 8\)"):
        open_dataset(path)
    ours = tmp_path / "o.h5"
    with h5py.File(ours, "w") as f:
        f.attrs["schema_version"] = 1
        f["inputs"] = np.zeros((4, 1, 8, 8), np.float32)
        f["outputs"] = np.zeros((3, 1, 8, 8), np.float32)
    with pytest.raises(DataFormatError, match=r"o\.h5: dataset 'outputs' must be \(N=4, C_out, \[T,\] 8, 8\), found \(3, 1, 8, 8\)"):
        open_dataset(ours)
    pt = tmp_path / "p.pt"
    torch.save({"x": torch.zeros(5, 8, 8), "y": torch.zeros(5, 8)}, pt)
    with pytest.raises(DataFormatError, match=r"p\.pt: key 'y' must be \(N=5, \[T,\] 8, 8\), found \(5, 8\)"):
        open_dataset(pt)
    coords = tmp_path / "c.h5"
    with h5py.File(coords, "w") as f:
        f["tensor"] = np.zeros((2, 3, 8))
        f["x-coordinate"] = np.zeros(7)
    with pytest.raises(DataFormatError, match=r"c\.h5: 'x-coordinate' must be \(8,\).*found \(7\)"):
        open_dataset(coords)


def test_nan_in_file_names_key_and_sample(tmp_path: Path) -> None:
    path = tmp_path / "n.h5"
    _ours(path)
    with h5py.File(path, "r+") as f:
        f["outputs"][4, 0, 3, 3] = np.nan
    ds = open_dataset(path)
    ds[3]
    with pytest.raises(DataFormatError, match=r"n\.h5: key 'outputs', sample 4 contains NaN or Inf"):
        ds[4]
    with pytest.raises(DataFormatError, match="sample 4"):
        open_dataset(path, in_memory=True)
    pt = tmp_path / "inf.pt"
    torch.save({"x": torch.tensor([[0.0, 1.0], [float("inf"), 0.0]]), "y": torch.zeros(2, 2)}, pt)
    with pytest.raises(DataFormatError, match=r"inf\.pt: key 'x', sample 1"):
        open_dataset(pt)[1]


def test_bad_stride(tmp_path: Path) -> None:
    path = tmp_path / "s.h5"
    _ours(path)  # 9 x 9 nodes: strides 2, 4, 8 fit ((n-1) % s == 0), 3 fits (n % s == 0), 5 fits neither
    for ok in (2, 3, 4, 8):
        assert open_dataset(path, stride=ok)[0][0].shape[-1] == -(-9 // ok)
    with pytest.raises(DataFormatError, match=r"s\.h5: stride 5 does not fit the spatial grid \(9, 9\)"):
        open_dataset(path, stride=5)
    with pytest.raises(ValueError, match="stride must be >= 1"):
        open_dataset(path, stride=0)
    with pytest.raises(ValueError, match="has 3 entries for 2 spatial dims"):
        open_dataset(path, stride=(1, 2, 2))


def test_bad_indices_and_options(tmp_path: Path) -> None:
    path = tmp_path / "i.h5"
    _ours(path)
    with pytest.raises(IndexError, match=r"i\.h5: indices must be in \[0, 6\), found min 0, max 6"):
        open_dataset(path, indices=[0, 6])
    with pytest.raises(TypeError, match=r"unknown option\(s\) \['initial_step'\]"):
        open_dataset(path, initial_step=2)
    with pytest.raises(ValueError, match="unknown format 'csv'"):
        open_dataset(path, format="csv")


def test_newer_schema_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "v.h5"
    _ours(path)
    with h5py.File(path, "r+") as f:
        f.attrs["schema_version"] = 2
    with pytest.raises(DataFormatError, match=r"v\.h5: schema_version 2 is newer than this reader's 1"):
        open_dataset(path)


def test_stride_must_be_an_int(tmp_path: Path) -> None:
    path = tmp_path / "s.h5"
    _ours(path)
    for bad, shown in ((2.9, r"2\.9 \(float\)"), (2.0, r"2\.0 \(float\)"), (True, r"True \(bool\)"),
                       ((2, 2.5), r"\(2, 2\.5\) \(tuple\)"), ("2", r"'2' \(str\)")):
        with pytest.raises(ValueError, match=r"s\.h5: stride must be an int or a tuple of ints "
                                             rf"\(one per spatial axis\), got {shown}"):
            open_dataset(path, stride=bad)
    ds = open_dataset(path, stride=(np.int64(2), 4))  # numpy ints are ints
    assert ds.meta["spatial_shape"] == (5, 3)


def _complex(shape: tuple[int, ...]) -> np.ndarray:
    rng = np.random.default_rng(0)
    return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)


def test_complex_arrays_are_refused_not_cast_to_their_real_part(tmp_path: Path) -> None:
    ours = tmp_path / "c.h5"
    with h5py.File(ours, "w") as f:
        f.attrs["schema_version"] = 1
        f["inputs"] = _complex((3, 1, 4, 4))
        f["outputs"] = np.ones((3, 1, 4, 4), np.float32)
    with pytest.raises(DataFormatError, match=r"c\.h5: key 'inputs' has dtype complex64 \(complex numbers\); "
                                              r"expected real numbers \(float, int or bool\)"):
        open_dataset(ours)
    pdebench = tmp_path / "pb.hdf5"
    with h5py.File(pdebench, "w") as f:
        f["tensor"] = _complex((2, 3, 8))
    with pytest.raises(DataFormatError, match=r"pb\.hdf5: key 'tensor' has dtype complex64"):
        open_dataset(pdebench)
    groups = tmp_path / "g.h5"
    with h5py.File(groups, "w") as f:
        f["0000/data"] = np.zeros((3, 8, 1), np.float32)
        f["0001/data"] = _complex((3, 8, 1))
    ds = open_dataset(groups)
    ds[0]
    with pytest.raises(DataFormatError, match=r"g\.h5: key '0001/data' has dtype complex64"):
        ds[1]
    # MATLAB v7.3 stores a complex field as a compound {real, imag}
    mat = tmp_path / "cplx.mat"
    compound = np.zeros((4, 8, 8), dtype=[("real", "<f8"), ("imag", "<f8")])
    with h5py.File(mat, "w", userblock_size=512) as f:
        f["coeff"] = np.zeros((8, 8, 4))
        f["sol"] = compound.transpose()
    with pytest.raises(DataFormatError, match=r"cplx\.mat: key 'sol' has dtype .*compound"):
        open_dataset(mat)
    pt = tmp_path / "c.pt"
    torch.save({"x": torch.zeros(3, 4, 4), "y": torch.zeros(3, 4, 4, dtype=torch.complex64)}, pt)
    with pytest.raises(DataFormatError, match=r"c\.pt: key 'y' has dtype complex64"):
        open_dataset(pt)


def test_directory_instead_of_a_file(tmp_path: Path) -> None:
    folder = tmp_path / "data.h5"
    folder.mkdir()
    with pytest.raises(ValueError, match=r"data\.h5 is a directory; expected a dataset file"):
        open_dataset(folder)


def test_unreadable_files_name_the_file(shared_tmp: Path, unprivileged) -> None:
    from pdesurrogates.data import detect_format, inspect_file

    paths = [shared_tmp / "ours.h5", shared_tmp / "theirs.pt", shared_tmp / "old.mat"]
    _ours(paths[0])
    torch.save({"x": torch.zeros(3, 4), "y": torch.zeros(3, 4)}, paths[1])
    import scipy.io

    scipy.io.savemat(paths[2], {"a": np.zeros((3, 4)), "u": np.zeros((3, 4))})
    for path in paths:
        path.chmod(0o000)
        with unprivileged():
            for call in (open_dataset, detect_format, inspect_file):
                with pytest.raises(PermissionError, match=rf"{path.name}: permission denied: the file "
                                                          r"exists but this user cannot read it \(mode 0o0\)"):
                    call(path)
