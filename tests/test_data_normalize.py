"""Streaming Gaussian normalizer against numpy's two-pass mean/std of the whole array."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from pdesurrogates.data import DatasetWriter, GaussianNormalizer, open_dataset


def _data(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    # channels with very different scales and offsets: a naive float32 sum-of-squares would lose digits
    x = rng.standard_normal((37, 2, 8, 6)) * np.array([1e-3, 50.0])[None, :, None, None]
    x += np.array([1e3, -7.0])[None, :, None, None]
    y = rng.standard_normal((37, 1, 4, 8, 6)) ** 2
    return x.astype(np.float32), y.astype(np.float32)


def _write(path: Path) -> tuple[np.ndarray, np.ndarray]:
    x, y = _data()
    with DatasetWriter.open(path, pde="toy", n_samples=len(x), input_shape=x.shape[1:],
                            output_shape=y.shape[1:], params={}, seed=0) as w:
        w.append(x, y)
        w.finalize()
    return x, y


def test_per_channel_from_file_matches_numpy(tmp_path: Path) -> None:
    x, y = _write(tmp_path / "d.h5")
    norm = GaussianNormalizer.fit(tmp_path / "d.h5", which="inputs", batch_size=5, dtype=torch.float64)
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(norm.mean.numpy().ravel(), x64.mean(axis=(0, 2, 3)), rtol=1e-12)
    np.testing.assert_allclose(norm.std.numpy().ravel(), x64.std(axis=(0, 2, 3)), rtol=1e-10)
    assert norm.mean.shape == (2, 1, 1)
    out = GaussianNormalizer.fit(tmp_path / "d.h5", which="outputs", batch_size=8, dtype=torch.float64)
    assert out.mean.shape == (1, 1, 1, 1)
    np.testing.assert_allclose(out.std.numpy().ravel(), y.astype(np.float64).std(), rtol=1e-10)


def test_pointwise_matches_numpy_and_strided_view(tmp_path: Path) -> None:
    x, _ = _write(tmp_path / "d.h5")
    ds = open_dataset(tmp_path / "d.h5", stride=2)
    norm = GaussianNormalizer.fit(ds, pointwise=True, batch_size=10, dtype=torch.float64)
    xs = x[..., ::2, ::2].astype(np.float64)
    assert norm.mean.shape == (2, 4, 3) and norm.pointwise
    np.testing.assert_allclose(norm.mean.numpy(), xs.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(norm.std.numpy(), xs.std(axis=0), rtol=1e-10)
    with pytest.raises(ValueError, match=r"point-wise normalizer fitted on grid \(4, 3\), got \(8, 6\)"):
        norm.encode(torch.from_numpy(x))


def test_encode_decode_and_statistics_of_encoded() -> None:
    x, _ = _data(1)
    norm = GaussianNormalizer.fit(x, batch_size=7, eps=0.0)
    z = norm.encode(torch.from_numpy(x).double())
    per_channel = z.transpose(0, 1).reshape(2, -1)
    torch.testing.assert_close(per_channel.mean(1), torch.zeros(2, dtype=torch.float64), atol=1e-4, rtol=0)
    torch.testing.assert_close(per_channel.std(1, unbiased=False), torch.ones(2, dtype=torch.float64), atol=1e-4, rtol=0)
    torch.testing.assert_close(norm.decode(z), torch.from_numpy(x).double(), rtol=1e-6, atol=1e-6)
    single = norm.encode(torch.from_numpy(x[0]).double())  # one sample (C, *spatial) also works
    torch.testing.assert_close(single, z[0], rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match=r"C=2"):
        norm.encode(torch.zeros(4, 3, 8, 6))


def test_state_dict_round_trip_weights_only(tmp_path: Path) -> None:
    x, _ = _data(2)
    norm = GaussianNormalizer.fit(torch.from_numpy(x), pointwise=True, eps=1e-5)
    torch.save(norm.state_dict(), tmp_path / "norm.pt")
    back = GaussianNormalizer.from_state_dict(torch.load(tmp_path / "norm.pt", weights_only=True))
    assert torch.equal(back.mean, norm.mean) and torch.equal(back.std, norm.std) and back.eps == 1e-5
    u = torch.randn(3, 2, 8, 6)
    assert torch.equal(back.encode(u), norm.encode(u))
    with pytest.raises(KeyError, match="missing"):
        GaussianNormalizer.from_state_dict({"mean": norm.mean})


def test_neuralop_darcy_normalizer_matches_torch(neuralop_small: Path) -> None:
    raw = torch.load(neuralop_small / "darcy_train_16.pt", weights_only=True)
    norm = GaussianNormalizer.fit(neuralop_small / "darcy_train_16.pt", which="outputs", batch_size=128,
                                  dtype=torch.float64)
    y = raw["y"].double()
    torch.testing.assert_close(norm.mean.ravel(), y.mean().reshape(1), rtol=1e-12, atol=0)
    torch.testing.assert_close(norm.std.ravel(), y.std(unbiased=False).reshape(1), rtol=1e-10, atol=0)
