"""The model registry: names -> (config dataclass, model class), and config <-> dict conversion.

A model class takes exactly the fields of its config (less ``name``) as keyword arguments, with the
same defaults; ``tests/test_models_registry.py`` checks this for every entry so configs cannot drift
from constructors. Strings only appear here, at the config edge.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch  # noqa: F401  (used by the doctest of build)
from torch import nn


@dataclass(frozen=True)
class RegistryEntry:
    """One registered model: its name, config dataclass and ``nn.Module`` class (or builder).

    ``legacy_defaults`` are the values of config fields added after the first checkpoints of this
    model were written, as those checkpoints were built (used when a checkpoint's config lacks
    them).
    """

    name: str
    config_class: type
    model_class: Any
    legacy_defaults: Mapping[str, Any] = dataclasses.field(default_factory=dict)


class Registry:
    """A name -> :class:`RegistryEntry` table that refuses duplicates and lists choices in errors."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, RegistryEntry] = {}

    def register(self, name: str, config_class: type, model_class: Any,
                 legacy_defaults: Mapping[str, Any] | None = None) -> None:
        """Add ``name``; raises ``ValueError`` if it is taken (here or in another registry of
        :data:`REGISTRIES`) or the config is not a frozen dataclass.

        ``model_class`` is called with the config's fields (less ``name``) as keyword arguments.
        """
        for other in REGISTRIES:
            if other is not self and name in other:
                raise ValueError(f"{self.kind} {name!r} is already registered as a {other.kind}")
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is already registered "
                             f"(by {self._entries[name].model_class.__qualname__})")
        if not (dataclasses.is_dataclass(config_class) and config_class.__dataclass_params__.frozen):
            raise TypeError(f"config class for {self.kind} {name!r} must be a frozen dataclass")
        self._entries[name] = RegistryEntry(name, config_class, model_class, dict(legacy_defaults or {}))

    def __getitem__(self, name: str) -> RegistryEntry:
        try:
            return self._entries[name]
        except KeyError:
            raise KeyError(f"unknown {self.kind} {name!r}; valid names: {', '.join(self.names())}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._entries)


MODELS = Registry("model")
"""Surrogates: ``(B, in_channels, *spatial) -> (B, out_channels, *spatial)``."""

NETWORKS = Registry("preconditioner network")
"""Networks inside learned preconditioners (registered by :mod:`pdesurrogates.solvers.learned`);
they are built, saved and loaded like models but are not surrogates."""

REGISTRIES = (MODELS, NETWORKS)


def lookup(name: Any) -> RegistryEntry:
    """The entry called ``name`` in :data:`MODELS` or :data:`NETWORKS`."""
    for registry in REGISTRIES:
        if name in registry:
            return registry[name]
    raise KeyError(f"unknown model {name!r}; valid names: {', '.join(MODELS.names())} (surrogates), "
                   f"{', '.join(NETWORKS.names()) or 'none imported'} (preconditioner networks, registered when "
                   f"pdesurrogates.solvers.learned is imported)")


def _entry_for(config: Any) -> RegistryEntry:
    name = getattr(config, "name", None)
    if not dataclasses.is_dataclass(config) or name is None:
        raise TypeError(f"expected a model config dataclass (FNOConfig, ...), got {type(config).__name__}")
    entry = lookup(name)
    if not isinstance(config, entry.config_class):
        raise TypeError(f"config name {name!r} belongs to {entry.config_class.__name__}, "
                        f"got a {type(config).__name__}")
    return entry


def constructor_kwargs(config: Any) -> dict[str, Any]:
    """The keyword arguments ``build`` passes to the model class: every config field but ``name``."""
    return {f.name: getattr(config, f.name) for f in dataclasses.fields(config) if f.name != "name"}


def build(config: Any) -> nn.Module:
    """Build the model a config describes.

    Parameters
    ----------
    config : FNOConfig | TFNOConfig | MgNOConfig | MGTFNOConfig | UNetConfig | dict
        A config dataclass, or a dict accepted by :func:`config_from_dict`.

    Returns
    -------
    nn.Module
        Maps ``(B, in_channels, *spatial) -> (B, out_channels, *spatial)``.

    Examples
    --------
    >>> from pdesurrogates.models import build, MgNOConfig
    >>> model = build(MgNOConfig(width=8, n_layers=2, levels=3))
    >>> model(torch.randn(2, 1, 12, 12)).shape
    torch.Size([2, 1, 12, 12])
    """
    if isinstance(config, Mapping):
        config = config_from_dict(config)
    entry = _entry_for(config)
    return entry.model_class(**constructor_kwargs(config))


def _tuple_field(annotation: Any) -> bool:
    text = annotation if isinstance(annotation, str) else repr(annotation)
    return "tuple" in text.lower()


def config_to_dict(config: Any) -> dict[str, Any]:
    """A JSON-ready dict of a config (tuples become lists); ``name`` comes first."""
    _entry_for(config)
    out: dict[str, Any] = {"name": config.name}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        out[f.name] = list(value) if isinstance(value, tuple) else value
    return out


def config_from_dict(d: Mapping[str, Any]) -> Any:
    """Rebuild a config from :func:`config_to_dict`'s output (or a hand-written TOML/JSON table).

    Raises
    ------
    KeyError
        ``name`` missing or unknown (the message lists valid names).
    ValueError
        A key that is not a field of that config (the message lists valid fields).
    """
    if not isinstance(d, Mapping):
        raise TypeError(f"model config must be a mapping, got {type(d).__name__}")
    if "name" not in d:
        raise KeyError(f"model config needs a 'name' key; valid names: {', '.join(MODELS.names())}")
    entry = lookup(d["name"])
    fields = {f.name: f for f in dataclasses.fields(entry.config_class)}
    unknown = sorted(set(d) - set(fields))
    if unknown:
        raise ValueError(f"unknown key(s) {unknown} for model {d['name']!r}; valid keys: {', '.join(fields)}")
    kwargs = {}
    for key, value in d.items():
        if isinstance(value, list) and _tuple_field(fields[key].type):
            value = tuple(value)
        kwargs[key] = value
    return entry.config_class(**kwargs)


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of real parameters; a complex entry counts as two.

    Parameters
    ----------
    model : nn.Module
    trainable_only : bool
        Count only parameters with ``requires_grad``.
    """
    total = 0
    for p in model.parameters():
        if trainable_only and not p.requires_grad:
            continue
        total += p.numel() * (2 if p.is_complex() else 1)
    return total


# ---- validation helpers shared by the config dataclasses -------------------------------------------

def check_config_name(config: Any, expected: str) -> None:
    if config.name != expected:
        raise ValueError(f"{type(config).__name__}.name must be {expected!r}, got {config.name!r}")


def check_positive_ints(config: Any, *names: str) -> None:
    for name in names:
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{type(config).__name__}.{name} must be a positive int, got {value!r}")


def check_ndim(config: Any) -> None:
    if config.ndim not in (1, 2, 3):
        raise ValueError(f"{type(config).__name__}.ndim must be 1, 2 or 3, got {config.ndim!r}")


def check_fraction(config: Any, name: str, upper: float = math.inf) -> None:
    value = getattr(config, name)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0 <= value < upper):
        raise ValueError(f"{type(config).__name__}.{name} must be a number in [0, {upper}), got {value!r}")


def check_choice(config: Any, name: str, choices: typing.Sequence[Any]) -> None:
    value = getattr(config, name)
    if value not in choices:
        raise ValueError(f"{type(config).__name__}.{name} must be one of {list(choices)}, got {value!r}")


def check_modes(config: Any) -> tuple[int, ...]:
    """``modes`` as a tuple of ``ndim`` positive ints (an int means the same count on every axis)."""
    modes = config.modes
    if isinstance(modes, int) and not isinstance(modes, bool):
        modes = (modes,) * config.ndim
    modes = tuple(modes)
    if len(modes) != config.ndim or not all(isinstance(m, int) and m > 0 for m in modes):
        raise ValueError(f"{type(config).__name__}.modes must be a positive int or {config.ndim} positive ints, "
                         f"got {config.modes!r}")
    return modes

