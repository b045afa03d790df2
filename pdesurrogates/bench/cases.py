"""Model families of the sweeps, each built at a given size from one integer knob.

Families ``fno``, ``tfno``, ``mgno``, ``mg-tfno``, ``unet`` come from :func:`pdesurrogates.models.build`
with their default config except the size knob (``width`` or its equivalent) and ``modes``;
``neuralop-fno`` is :class:`neuralop.models.FNO` called directly, as a reference row that checks
our wrapper costs nothing. Initialisation is seeded without touching the global RNG
(:func:`torch.random.fork_rng`).
"""

from __future__ import annotations

import dataclasses

import torch

FAMILIES = ("fno", "tfno", "mgno", "mg-tfno", "unet", "neuralop-fno")
_CONFIGS = {"fno": "FNOConfig", "tfno": "TFNOConfig", "mgno": "MgNOConfig", "mg-tfno": "MGTFNOConfig",
            "unet": "UNetConfig"}
_SIZE_FIELDS = ("width", "hidden_channels", "base_channels", "channels")


def _config(family: str, width: int, modes: int):
    from pdesurrogates import models

    cls = getattr(models, _CONFIGS[family], None)
    if cls is None:
        raise ValueError(f"model family {family!r}: pdesurrogates.models has no {_CONFIGS[family]} yet")
    fields = {f.name for f in dataclasses.fields(cls)}
    size = next((f for f in _SIZE_FIELDS if f in fields), None)
    if size is None:
        raise ValueError(f"{cls.__name__} has none of the size fields {_SIZE_FIELDS}")
    kwargs = {size: width}
    if "modes" in fields:
        kwargs["modes"] = modes
    return cls(**kwargs)


def build_model(family: str, width: int, *, modes: int = 8, seed: int = 0) -> torch.nn.Module:
    """A freshly initialised 2D model ``(B, 1, H, W) -> (B, 1, H, W)`` of ``family`` at ``width``.

    Parameters
    ----------
    family:
        One of :data:`FAMILIES`.
    width:
        Channel width (the size knob of the sweep).
    modes:
        Fourier modes per axis for spectral models (ignored by the others).
    seed:
        Seed of the initialisation (global RNG state is restored afterwards).
    """
    if family not in FAMILIES:
        raise ValueError(f"unknown model family {family!r}; choose from {', '.join(FAMILIES)}")
    if width < 1:
        raise ValueError(f"width must be >= 1, got {width}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        if family == "neuralop-fno":
            from neuralop.models import FNO

            return FNO(n_modes=(modes, modes), in_channels=1, out_channels=1, hidden_channels=width,
                       n_layers=4, lifting_channel_ratio=2, projection_channel_ratio=2)
        from pdesurrogates.models import build

        return build(_config(family, width, modes))


def available_families(families: tuple[str, ...] | list[str]) -> tuple[list[str], dict[str, str]]:
    """Split ``families`` into those that build now and ``{family: reason}`` for the others."""
    ok, missing = [], {}
    for f in families:
        try:
            build_model(f, 4, modes=2)
            ok.append(f)
        except (ImportError, ValueError, TypeError, AttributeError) as exc:
            missing[f] = f"{type(exc).__name__}: {exc}"
    return ok, missing
