"""FNO and TFNO: thin wrappers over ``neuralop.models.FNO``.

Li et al., "Fourier Neural Operator for Parametric Partial Differential Equations", ICLR 2021, and
Kossaifi et al., TMLR 2023 (Tucker-factorized spectral weights, "TFNO"). The spectral layers, lifting
and projection are neuraloperator's; the wrapper only adds the shared config, an input check and a
spatial-rank-generic ``modes`` option, so it runs at the speed of ``neuralop.models.FNO`` itself
(``benchmarks/model_speed.py`` measures the ratio).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..nn.layers import check_input
from .registry import (
    MODELS,
    check_choice,
    check_config_name,
    check_fraction,
    check_modes,
    check_ndim,
    check_positive_ints,
)

FACTORIZATIONS = ("tucker", "cp", "tt", "dense")


@dataclass(frozen=True)
class FNOConfig:
    """Fourier neural operator (neuraloperator's ``FNO``).

    Attributes
    ----------
    in_channels, out_channels : int
        Input/output channels (coordinate channels are not counted in ``in_channels``).
    ndim : int
        Spatial axes (1, 2 or 3).
    width : int
        Hidden channels of the Fourier layers.
    modes : int or tuple of int
        Fourier modes kept per axis (neuraloperator's ``n_modes``; an int is used on every axis).
    n_layers : int
        Fourier layers.
    lifting_channel_ratio, projection_channel_ratio : int
        Hidden sizes of the lifting/projection channel MLPs, as multiples of ``width``.
    grid_channels : bool
        Append normalized coordinates to the input (neuraloperator's ``positional_embedding="grid"``).
    domain_padding : float
        Zero-pad each axis by this fraction of its length before the Fourier layers (non-periodic
        problems); 0 disables.

    The defaults are neuraloperator's small-Darcy example (16 modes, width 32, projection ratio 2).
    """

    name: str = "fno"
    in_channels: int = 1
    out_channels: int = 1
    ndim: int = 2
    width: int = 32
    modes: int | tuple[int, ...] = 16
    n_layers: int = 4
    lifting_channel_ratio: int = 2
    projection_channel_ratio: int = 2
    grid_channels: bool = True
    domain_padding: float = 0.0

    def __post_init__(self):
        check_config_name(self, "fno")
        _validate_fno(self)


@dataclass(frozen=True)
class TFNOConfig:
    """Tensorized FNO: :class:`FNOConfig` with factorized spectral weights.

    Attributes
    ----------
    factorization : {"tucker", "cp", "tt", "dense"}
        Tensor factorization of each spectral weight (tensorly-torch).
    rank : float
        Fraction of the dense weight's parameters the factorization keeps (0.1: about 10%).

    Other fields as :class:`FNOConfig`.
    """

    name: str = "tfno"
    in_channels: int = 1
    out_channels: int = 1
    ndim: int = 2
    width: int = 32
    modes: int | tuple[int, ...] = 16
    n_layers: int = 4
    lifting_channel_ratio: int = 2
    projection_channel_ratio: int = 2
    grid_channels: bool = True
    domain_padding: float = 0.0
    factorization: str = "tucker"
    rank: float = 0.1

    def __post_init__(self):
        check_config_name(self, "tfno")
        _validate_fno(self)
        check_choice(self, "factorization", FACTORIZATIONS)
        check_fraction(self, "rank", upper=1.0 + 1e-12)
        if self.rank <= 0:
            raise ValueError(f"TFNOConfig.rank must be > 0, got {self.rank}")


def _validate_fno(config) -> None:
    check_ndim(config)
    check_positive_ints(config, "in_channels", "out_channels", "width", "n_layers",
                        "lifting_channel_ratio", "projection_channel_ratio")
    if isinstance(config.modes, list):
        object.__setattr__(config, "modes", tuple(config.modes))
    check_modes(config)
    check_fraction(config, "domain_padding", upper=1.0)


def neuralop_fno_kwargs(*, in_channels: int, out_channels: int, ndim: int, width: int,
                        modes: int | tuple[int, ...], n_layers: int, lifting_channel_ratio: int,
                        projection_channel_ratio: int, grid_channels: bool, domain_padding: float,
                        factorization: str | None = None, rank: float = 1.0) -> dict:
    """Keyword arguments for ``neuralop.models.FNO`` equivalent to our config fields."""
    n_modes = (modes,) * ndim if isinstance(modes, int) else tuple(modes)
    kwargs = {
        "n_modes": n_modes, "in_channels": in_channels, "out_channels": out_channels, "hidden_channels": width,
        "n_layers": n_layers, "lifting_channel_ratio": lifting_channel_ratio,
        "projection_channel_ratio": projection_channel_ratio,
        "positional_embedding": "grid" if grid_channels else None,
        "domain_padding": domain_padding if domain_padding > 0 else None,
    }
    if factorization is not None and factorization != "dense":
        kwargs.update(factorization=factorization, rank=rank)
    return kwargs


class FNO(nn.Module):
    """Fourier neural operator: ``(B, in_channels, *s) -> (B, out_channels, *s)`` for any grid ``s``.

    Parameters are the fields of :class:`FNOConfig`. The network is ``self.fno``, a
    ``neuralop.models.FNO``.
    """

    model_name = "fno"

    def __init__(self, in_channels: int = 1, out_channels: int = 1, ndim: int = 2, width: int = 32,
                 modes: int | tuple[int, ...] = 16, n_layers: int = 4, lifting_channel_ratio: int = 2,
                 projection_channel_ratio: int = 2, grid_channels: bool = True, domain_padding: float = 0.0):
        super().__init__()
        self._build({"in_channels": in_channels, "out_channels": out_channels, "ndim": ndim, "width": width,
                     "modes": modes, "n_layers": n_layers, "lifting_channel_ratio": lifting_channel_ratio,
                     "projection_channel_ratio": projection_channel_ratio, "grid_channels": grid_channels,
                     "domain_padding": domain_padding})

    def _build(self, kwargs: dict) -> None:
        from neuralop.models import FNO as NeuralopFNO

        self.in_channels = kwargs["in_channels"]
        self.ndim = kwargs["ndim"]
        self.fno = NeuralopFNO(**neuralop_fno_kwargs(**kwargs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: ``(B, in_channels, *s)`` -> ``(B, out_channels, *s)``."""
        if x.ndim != self.ndim + 2 or x.shape[1] != self.in_channels:
            check_input(x, ndim=self.ndim, channels=self.in_channels, model=self.model_name)
        return self.fno(x)


class TFNO(FNO):
    """Tucker- (or CP-/TT-) factorized FNO; parameters are the fields of :class:`TFNOConfig`."""

    model_name = "tfno"

    def __init__(self, in_channels: int = 1, out_channels: int = 1, ndim: int = 2, width: int = 32,
                 modes: int | tuple[int, ...] = 16, n_layers: int = 4, lifting_channel_ratio: int = 2,
                 projection_channel_ratio: int = 2, grid_channels: bool = True, domain_padding: float = 0.0,
                 factorization: str = "tucker", rank: float = 0.1):
        nn.Module.__init__(self)
        self._build({"in_channels": in_channels, "out_channels": out_channels, "ndim": ndim, "width": width,
                     "modes": modes, "n_layers": n_layers, "lifting_channel_ratio": lifting_channel_ratio,
                     "projection_channel_ratio": projection_channel_ratio, "grid_channels": grid_channels,
                     "domain_padding": domain_padding, "factorization": factorization, "rank": rank})


MODELS.register("fno", FNOConfig, FNO)
MODELS.register("tfno", TFNOConfig, TFNO)
