"""Neural operators behind one interface: FNO, TFNO, MgNO, MG-TFNO and a U-Net baseline.

Every model is built from a frozen config dataclass by :func:`build` and maps
``(B, in_channels, *spatial) -> (B, out_channels, *spatial)``::

    from pdesurrogates.models import MgNOConfig, build, count_parameters
    model = build(MgNOConfig(in_channels=1, out_channels=1, ndim=2))

Checkpoints: :func:`save_checkpoint`, :func:`load_checkpoint`, :class:`Surrogate`.
"""

from .checkpoint import Checkpoint, Surrogate, find_checkpoint, load_checkpoint, save_checkpoint
from .fno import FNO, TFNO, FNOConfig, TFNOConfig
from .mg_tfno import MGTFNO, MGTFNOConfig
from .mgno import MgNO, MgNOConfig, levels_for_grid
from .registry import MODELS, NETWORKS, build, config_from_dict, config_to_dict, count_parameters
from .unet import UNet, UNetConfig

__all__ = [
    "FNO",
    "MGTFNO",
    "MODELS",
    "NETWORKS",
    "TFNO",
    "Checkpoint",
    "FNOConfig",
    "MGTFNOConfig",
    "MgNO",
    "MgNOConfig",
    "Surrogate",
    "TFNOConfig",
    "UNet",
    "UNetConfig",
    "build",
    "config_from_dict",
    "config_to_dict",
    "count_parameters",
    "find_checkpoint",
    "levels_for_grid",
    "load_checkpoint",
    "save_checkpoint",
]
