"""Checkpoint directories of learned preconditioners: ``weights.pt`` + ``config.json``.

``config.json`` holds ``kind`` (which network), the network's frozen config, the package version and
free-form ``extra`` (training settings). Weights are read with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

import pdesurrogates


def save_network(path: str | Path, network: nn.Module, config: dict, kind: str, *, overwrite: bool = False,
                 extra: dict | None = None) -> Path:
    """Write ``network``'s weights and ``config`` into the directory ``path`` (refuses a non-empty one)."""
    path = Path(path)
    if path.exists() and any(path.iterdir()) and not overwrite:
        raise FileExistsError(f"{path} exists and is not empty; pass overwrite=True to replace it")
    path.mkdir(parents=True, exist_ok=True)
    torch.save(network.state_dict(), path / "weights.pt")
    meta = {"kind": kind, "config": config, "pdesurrogates_version": pdesurrogates.__version__, "extra": extra or {}}
    (path / "config.json").write_text(json.dumps(meta, indent=2) + "\n")
    return path


def load_network(path: str | Path, kind: str, build: Callable[[dict], nn.Module]) -> nn.Module:
    """The network saved by :func:`save_network` in ``path``; ``build(config_dict)`` makes the module.

    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` naming the file for bad JSON,
    another ``kind`` or weights that do not load.
    """
    path = Path(path)
    cfg_file, weights = path / "config.json", path / "weights.pt"
    for f in (cfg_file, weights):
        if not f.is_file():
            raise FileNotFoundError(f"{path} is not a {kind} preconditioner checkpoint: {f.name} missing")
    try:
        meta = json.loads(cfg_file.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{cfg_file}: not valid JSON ({exc})") from exc
    if meta.get("kind") != kind:
        raise ValueError(f"{cfg_file}: kind {meta.get('kind')!r} is not a {kind} preconditioner")
    net = build(meta["config"])
    try:
        net.load_state_dict(torch.load(weights, weights_only=True, map_location="cpu"))
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError) as exc:
        raise ValueError(f"{weights}: cannot load {kind} weights for {meta['config']} ({exc})") from exc
    return net
