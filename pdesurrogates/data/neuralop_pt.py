"""Reader of neuraloperator's ``.pt`` dictionaries (format name ``"neuralop-pt"``).

``{"x": (N, *spatial), "y": (N, [T,] *spatial), ...}``: a channel axis is added, bool and
float64 become float32, other entries (e.g. Burgers' ``visc``) go to ``meta["provenance"]``.
The points are ``x_i = i / n`` (``meta["grid_kind"] = "half-open"``).
Loaded into memory with ``torch.load(weights_only=True)``.

Options: ``input_key``, ``output_key``.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch

from pdesurrogates.data.dataset import ArraySource, check_pair, pick_pair, to_float32
from pdesurrogates.data.files import DataFormatError

OPTIONS = ("input_key", "output_key")


def load_pt(path: Path) -> dict[str, Any]:
    """The dictionary stored in ``path`` (``torch.load(weights_only=True)``, on the CPU)."""
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except PermissionError:
        raise PermissionError(f"{path}: permission denied: this user cannot read the file") from None
    except (RuntimeError, pickle.UnpicklingError, EOFError, OSError) as exc:
        raise DataFormatError(f"{path}: cannot read as a torch .pt file: {exc}") from None
    if not isinstance(data, dict):
        raise DataFormatError(f"{path}: expected a dict of tensors, found {type(data).__name__}")
    return data


def open_source(path: Path, input_key: str | None = None, output_key: str | None = None) -> ArraySource:
    data = load_pt(path)
    kx, ky = pick_pair(path, list(data), input_key or ("x" if output_key is None else None),
                       output_key or ("y" if input_key is None else None))
    x, y = data[kx], data[ky]
    for k, v in ((kx, x), (ky, y)):
        if not isinstance(v, torch.Tensor):
            raise DataFormatError(f"{path}: key {k!r} must be a tensor, found {type(v).__name__}")
    spatial_ndim = check_pair(path, kx, ky, tuple(x.shape), tuple(y.shape))
    extra = {k: (v.tolist() if isinstance(v, torch.Tensor) and v.numel() <= 16 else
                 f"{type(v).__name__} {tuple(getattr(v, 'shape', ()))}")
             for k, v in data.items() if k not in (kx, ky)}
    x = to_float32(_numpy(x), path, kx)[:, None]
    y = to_float32(_numpy(y), path, ky)[:, None]  # (N, [T,] *sp): neuralop puts time first already
    # neuraloperator samples its fields at x_i = i / n (the 16^2 files are the 32^2 ones at even indices)
    return ArraySource(path, x, y, spatial_ndim, kx, ky,
                       {"pde": None, "provenance": extra, "grid": {}, "grid_kind": "half-open"})


def _numpy(t: torch.Tensor) -> Any:
    """A CPU tensor as numpy; bfloat16 (which numpy lacks) through float32."""
    return (t.float() if t.dtype == torch.bfloat16 else t).numpy()


def inspect(path: Path) -> list[tuple[str, tuple[int, ...], str]]:
    """``(key, shape, dtype)`` of every entry of the dictionary."""
    return [(k, tuple(getattr(v, "shape", ())), str(getattr(v, "dtype", type(v).__name__)))
            for k, v in load_pt(path).items()]
