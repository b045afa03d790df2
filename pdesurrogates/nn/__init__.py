"""Building blocks shared by the models: multigrid V-cycle pieces, patching and padding helpers.

All blocks act on ``(batch, channel, *spatial)`` tensors with 1, 2 or 3 spatial axes.
"""

from .layers import GridChannels, check_input, conv_class, conv_transpose_class, coordinate_channels
from .multigrid import MgConv, Prolongation, Restriction, Smoother, default_smoothing
from .padding import DomainPadding, crop_to, pad_to_multiple
from .patching import MultigridPatching

__all__ = [
    "DomainPadding", "GridChannels", "MgConv", "MultigridPatching", "Prolongation", "Restriction",
    "Smoother", "check_input", "conv_class", "conv_transpose_class", "coordinate_channels", "crop_to",
    "default_smoothing", "pad_to_multiple",
]
