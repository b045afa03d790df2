"""Building blocks shared by the models: multigrid V-cycles and their grids, patching and padding helpers.

All blocks act on ``(batch, channel, *spatial)`` tensors with 1, 2 or 3 spatial axes.
"""

from .hierarchy import (
    GridLevel,
    GridRefinement,
    Hierarchy,
    LinearTransfer,
    grid_hierarchy,
    refined_shape,
)
from .layers import GridChannels, check_input, conv_class, conv_transpose_class, coordinate_channels
from .multigrid import (
    ConsistentMgConv,
    MgConv,
    Prolongation,
    Restriction,
    Smoother,
    default_smoothing,
)
from .padding import DomainPadding, crop_to, pad_to_multiple
from .patching import MultigridPatching
from .stencils import DifferenceOperator, ScaledStencil

__all__ = [
    "ConsistentMgConv", "DifferenceOperator", "DomainPadding", "GridChannels", "GridLevel", "GridRefinement", "Hierarchy",
    "LinearTransfer", "MgConv", "MultigridPatching", "Prolongation", "Restriction", "ScaledStencil", "Smoother",
    "check_input", "conv_class", "conv_transpose_class", "coordinate_channels", "crop_to", "default_smoothing",
    "grid_hierarchy", "pad_to_multiple", "refined_shape",
]
