"""Model checkpoints: one directory with weights, config JSON, versions and normalizers.

Layout of a checkpoint directory::

    config.json       {"format": "pdesurrogates-checkpoint", "format_version": 1,
                       "pdesurrogates_version": ..., "torch_version": ...,
                       "model": <config_to_dict(config)>, "normalizers": {"input": "GaussianNormalizer"},
                       "extra": {...JSON...}}
    weights.pt        the model's state_dict (tensors only)
    normalizers.pt    {"input": state_dict, "output": state_dict} (only if normalizers were given)

Everything is read back with ``torch.load(..., weights_only=True)``; normalizer classes are looked
up in a fixed allow-list (never imported by a name read from the file).

The same format serves surrogates (:data:`~pdesurrogates.models.MODELS`) and the networks of learned
preconditioners (:data:`~pdesurrogates.models.NETWORKS`). The first learned-preconditioner
checkpoints used an unversioned layout (``config.json`` = ``{"kind", "config", "extra"}``); they
still load. In either layout, config fields missing from a checkpoint (added to the model since it
was written) take the registry entry's ``legacy_defaults``, the values those checkpoints were built with.

>>> import tempfile, torch
>>> from pdesurrogates.models import MgNOConfig, build, save_checkpoint, load_checkpoint
>>> cfg = MgNOConfig(width=4, n_layers=1, levels=2)
>>> model = build(cfg)
>>> folder = tempfile.mkdtemp() + "/ckpt"
>>> _ = save_checkpoint(folder, model, cfg)
>>> ckpt = load_checkpoint(folder)
>>> x = torch.randn(1, 1, 8, 8)
>>> torch.equal(ckpt.model(x), model(x)) and ckpt.config == cfg
True
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import tempfile
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .registry import build, config_from_dict, config_to_dict, lookup

FORMAT = "pdesurrogates-checkpoint"
FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "weights.pt"
NORMALIZERS_FILE = "normalizers.pt"
NORMALIZER_ROLES = ("input", "output")


def _normalizer_classes() -> dict[str, type]:
    """Allow-list of normalizer classes a checkpoint may name (looked up lazily)."""
    from ..data.normalize import GaussianNormalizer

    return {"GaussianNormalizer": GaussianNormalizer}


@dataclass
class Checkpoint:
    """A loaded checkpoint.

    Attributes
    ----------
    model : nn.Module
        Built from ``config`` with the saved weights, in eval mode.
    config : dataclass
        The model config.
    normalizers : dict
        ``{"input": normalizer, "output": normalizer}`` (either key may be absent).
    extra : dict
        The JSON ``extra`` saved with the checkpoint.
    """

    model: nn.Module
    config: Any
    normalizers: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


def _version() -> str:
    from .. import __version__

    return __version__


def save_checkpoint(path: str | os.PathLike, model: nn.Module, config: Any,
                    normalizers: Mapping[str, Any] | None = None, extra: Mapping[str, Any] | None = None,
                    *, overwrite: bool = False) -> Path:
    """Write a checkpoint directory.

    Parameters
    ----------
    path : path-like
        Directory to create.
    model : nn.Module
        The model; its ``state_dict`` must load into ``build(config)``.
    config : dataclass
        The model config (``FNOConfig``, ``MgNOConfig``, ...).
    normalizers : mapping, optional
        ``{"input": ..., "output": ...}``; each object needs ``state_dict()`` and a class in the
        allow-list (``GaussianNormalizer``).
    extra : mapping, optional
        JSON-serialisable metadata (training summary, data description, ...).
    overwrite : bool
        Replace an existing checkpoint directory at ``path``; without it an existing path is an error.

    Returns
    -------
    Path
        The checkpoint directory.
    """
    path = Path(path)
    model_dict = config_to_dict(config)
    meta: dict[str, Any] = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "pdesurrogates_version": _version(),
        "torch_version": torch.__version__, "model": model_dict, "normalizers": {}, "extra": dict(extra or {}),
    }
    try:
        config_text = json.dumps(meta, indent=2, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise TypeError(f"save_checkpoint: 'extra' must be JSON-serialisable: {err}") from None
    norm_states: dict[str, Any] = {}
    for role, normalizer in (normalizers or {}).items():
        if role not in NORMALIZER_ROLES:
            raise ValueError(f"save_checkpoint: normalizer role must be one of {NORMALIZER_ROLES}, got {role!r}")
        if normalizer is None:
            continue
        cls_name = type(normalizer).__name__
        allowed = _normalizer_classes()
        if cls_name not in allowed or not isinstance(normalizer, allowed[cls_name]):
            raise TypeError(f"save_checkpoint: {role} normalizer must be one of {sorted(allowed)}, got {cls_name}")
        meta["normalizers"][role] = cls_name
        norm_states[role] = normalizer.state_dict()
    config_text = json.dumps(meta, indent=2, allow_nan=False)

    if path.exists():
        if not overwrite:
            raise FileExistsError(f"checkpoint {path} already exists; pass overwrite=True to replace it")
        if not path.is_dir() or not (path / CONFIG_FILE).is_file():
            raise FileExistsError(f"{path} exists and is not a checkpoint directory; refusing to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        state = {k: v.detach().cpu().clone() for k, v in tensor_state_dict(model).items()}
        torch.save(state, tmp / WEIGHTS_FILE)
        if norm_states:
            torch.save(norm_states, tmp / NORMALIZERS_FILE)
        (tmp / CONFIG_FILE).write_text(config_text + "\n")
        # check that the weights fit the config before publishing the directory
        _load_weights_into(build(config), tmp / WEIGHTS_FILE, model_dict["name"])
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def tensor_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """``model.state_dict()`` without non-tensor entries (neuraloperator adds a ``_metadata`` dict of
    constructor arguments, which holds Python objects and is rebuilt from our config anyway)."""
    return {k: v for k, v in model.state_dict().items() if isinstance(v, torch.Tensor)}


def _torch_load(file: Path, what: str, map_location: Any) -> Any:
    if not file.is_file():
        raise FileNotFoundError(f"checkpoint {what} file {file} is missing")
    try:
        return torch.load(file, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError) as err:
        raise ValueError(f"cannot read checkpoint {what} {file} (corrupt or not a torch file): {err}") from err


def _load_weights_into(model: nn.Module, file: Path, name: str, map_location: Any = "cpu") -> nn.Module:
    state = _torch_load(file, "weights", map_location)
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"checkpoint weights {file} must hold a state_dict (name -> tensor), "
                         f"got {type(state).__name__}")
    expected = tensor_state_dict(model)
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = [f"{k}: expected {tuple(expected[k].shape)}, found {tuple(state[k].shape)}"
              for k in sorted(set(expected) & set(state)) if expected[k].shape != state[k].shape]
    if missing or unexpected or shapes:
        def head(items: list[str]) -> str:
            return ", ".join(items[:5]) + (f" (+{len(items) - 5} more)" if len(items) > 5 else "")

        parts = []
        if missing:
            parts.append(f"missing {len(missing)} tensors: {head(missing)}")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} tensors: {head(unexpected)}")
        if shapes:
            parts.append(f"{len(shapes)} shape mismatches: {head(shapes)}")
        raise ValueError(f"checkpoint weights {file} do not match a {name!r} model built from its config "
                         f"(another architecture or other sizes?): " + "; ".join(parts))
    model.load_state_dict(state, strict=True)
    return model


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> Checkpoint:
    """Read a checkpoint directory written by :func:`save_checkpoint`.

    Parameters
    ----------
    path : path-like
        The checkpoint directory.
    map_location : str or torch.device
        Where to put the weights (default CPU).

    Raises
    ------
    FileNotFoundError
        No such directory, or a file of it is missing.
    ValueError
        Not a checkpoint, a corrupt file, or weights that do not fit the config's architecture.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    if not path.is_dir():
        raise ValueError(f"checkpoint {path} must be a directory with {CONFIG_FILE} and {WEIGHTS_FILE}")
    config_file = path / CONFIG_FILE
    if not config_file.is_file():
        raise FileNotFoundError(f"checkpoint config {config_file} is missing")
    try:
        meta = json.loads(config_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"checkpoint config {config_file} is not valid JSON: {err}") from err
    if isinstance(meta, dict) and "format" not in meta and {"kind", "config"} <= set(meta):
        meta = _from_unversioned(meta, config_file)
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError(f"{config_file} is not a pdesurrogates checkpoint config (format {FORMAT!r})")
    if meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{config_file}: checkpoint format version {meta.get('format_version')!r} is not "
                         f"supported (expected {FORMAT_VERSION})")
    try:
        saved = meta["model"]
        config = config_from_dict({**lookup(saved["name"]).legacy_defaults, **saved})
    except (KeyError, TypeError, ValueError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        raise ValueError(f"{config_file}: invalid model config: {message}") from err
    model = _load_weights_into(build(config), path / WEIGHTS_FILE, config.name, map_location)
    model.eval()

    normalizers: dict[str, Any] = {}
    names = meta.get("normalizers") or {}
    if names:
        states = _torch_load(path / NORMALIZERS_FILE, "normalizers", map_location)
        allowed = _normalizer_classes()
        for role, cls_name in names.items():
            if role not in NORMALIZER_ROLES or cls_name not in allowed:
                raise ValueError(f"{config_file}: unknown normalizer {role!r}: {cls_name!r} "
                                 f"(roles {NORMALIZER_ROLES}, classes {sorted(allowed)})")
            if role not in states:
                raise ValueError(f"{path / NORMALIZERS_FILE} has no state for the {role!r} normalizer")
            normalizers[role] = allowed[cls_name].from_state_dict(states[role])
    return Checkpoint(model=model, config=config, normalizers=normalizers, extra=meta.get("extra") or {})


def _from_unversioned(meta: dict, config_file: Path) -> dict:
    """The first learned-preconditioner layout ``{"kind", "config", "extra"}`` in today's form."""
    try:
        entry = lookup(meta["kind"])
    except KeyError as err:
        raise ValueError(f"{config_file}: {err.args[0]}") from None
    config = {**entry.legacy_defaults, **dict(meta["config"]), "name": meta["kind"]}
    return {"format": FORMAT, "format_version": FORMAT_VERSION, "model": config, "normalizers": {},
            "extra": dict(meta.get("extra") or {}), "pdesurrogates_version": meta.get("pdesurrogates_version")}


def find_checkpoint(path: str | os.PathLike, which: str = "best") -> Path:
    """The checkpoint directory inside a run directory (or ``path`` itself if it is one).

    Parameters
    ----------
    path : path
        A checkpoint directory (holding ``weights.pt``), or a run directory written by
        ``pdesurrogates train`` (``checkpoints/best`` then ``checkpoints/last`` are tried,
        ``which`` first; a run of the first learned-preconditioner layout has ``preconditioner/``).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint or run directory {path} does not exist")
    if (path / WEIGHTS_FILE).is_file():
        return path
    order = [which, "last" if which == "best" else "best"]
    candidates = [path / "checkpoints" / name for name in order] + [path / "preconditioner"]
    for candidate in candidates:
        if (candidate / WEIGHTS_FILE).is_file():
            return candidate
    raise FileNotFoundError(f"{path} is neither a checkpoint directory ({CONFIG_FILE} + {WEIGHTS_FILE}) nor a "
                            f"run directory with checkpoints/best or checkpoints/last")


class Surrogate:
    """A trained model ready to call on physical inputs: encode -> model -> decode.

    Parameters
    ----------
    model : nn.Module
    config : dataclass
    normalizers : dict, optional
        ``{"input": ..., "output": ...}``; a missing role means identity.
    extra : dict, optional

    Examples
    --------
    >>> surrogate = Surrogate.load("checkpoints/mgno_darcy")       # doctest: +SKIP
    >>> u = surrogate(a)  # doctest: +SKIP

    ``a``: ``(B, C_in, *s)`` or ``(C_in, *s)``; ``u``: the same layout with ``C_out`` channels.
    """

    def __init__(self, model: nn.Module, config: Any, normalizers: Mapping[str, Any] | None = None,
                 extra: Mapping[str, Any] | None = None):
        self.model = model.eval()
        self.config = config
        self.normalizers = dict(normalizers or {})
        self.extra = dict(extra or {})

    @classmethod
    def load(cls, path: str | os.PathLike, map_location: Any = "cpu") -> Surrogate:
        """Load a checkpoint directory (see :func:`load_checkpoint`)."""
        ckpt = load_checkpoint(path, map_location=map_location)
        return cls(ckpt.model, ckpt.config, ckpt.normalizers, ckpt.extra)

    def to(self, device: str | torch.device) -> Surrogate:
        """Move the model (and tensor-holding normalizers that support ``.to``) to ``device``."""
        self.model.to(device)
        for role, normalizer in self.normalizers.items():
            if hasattr(normalizer, "to"):
                moved = normalizer.to(device)
                self.normalizers[role] = normalizer if moved is None else moved
        return self

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Predict outputs in physical units, without gradients (see :meth:`differentiable`).

        Parameters
        ----------
        x : torch.Tensor
            ``(B, C_in, *s)`` or a single sample ``(C_in, *s)``, in physical units.

        Returns
        -------
        torch.Tensor
            ``(B, C_out, *s)`` (or ``(C_out, *s)``), decoded with the output normalizer.
        """
        with torch.no_grad():
            return self.differentiable(x)

    def differentiable(self, x: torch.Tensor) -> torch.Tensor:
        """:meth:`__call__` with the autograd graph kept: gradients flow to ``x`` (and the weights),
        e.g. for an inverse problem that optimises the input through the surrogate."""
        ndim = self.config.ndim
        single = isinstance(x, torch.Tensor) and x.ndim == ndim + 1
        if single:
            x = x.unsqueeze(0)
        param = next(self.model.parameters())
        x = x.to(device=param.device, dtype=param.dtype)
        if "input" in self.normalizers:
            x = self.normalizers["input"].encode(x)
        y = self.model(x)
        if "output" in self.normalizers:
            y = self.normalizers["output"].decode(y)
        return y[0] if single else y
