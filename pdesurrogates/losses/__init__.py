"""Data losses, PDE residual losses, boundary terms and loss weighting (PINO training itself is in
:mod:`pdesurrogates.train.pino`).

>>> from pdesurrogates.losses import LossConfig, build_loss
>>> loss_fn = build_loss(LossConfig(data="l2", data_weight=5.0, physics="darcy", physics_weight=1.0))
>>> total, parts = loss_fn(pred, target, inputs)   # doctest: +SKIP
"""

from pdesurrogates.losses.boundary import (
    ZeroDirichletOutput,
    bump,
    dirichlet_boundary_loss,
    initial_condition_loss,
)
from pdesurrogates.losses.config import CompositeLoss, LossConfig, build_loss
from pdesurrogates.losses.data import RelativeH1Loss, RelativeLpLoss, relative_h1, relative_lp
from pdesurrogates.losses.physics import (
    PHYSICS_LOSSES,
    BurgersLoss,
    DarcyLoss,
    HeatLoss,
    NavierStokesLoss,
    PoissonLoss,
    burgers_residual,
    darcy_residual,
    get_physics_loss,
    heat_residual,
    navier_stokes_residual,
    physics_loss_for,
    poisson_residual,
    poisson_residual_neumann,
    poisson_residual_spectral,
)
from pdesurrogates.losses.weighting import FixedWeights, ReLoBRaLoWeights, SoftAdaptWeights

__all__ = [
    "PHYSICS_LOSSES",
    "BurgersLoss",
    "CompositeLoss",
    "DarcyLoss",
    "FixedWeights",
    "HeatLoss",
    "LossConfig",
    "NavierStokesLoss",
    "PoissonLoss",
    "ReLoBRaLoWeights",
    "RelativeH1Loss",
    "RelativeLpLoss",
    "SoftAdaptWeights",
    "ZeroDirichletOutput",
    "build_loss",
    "bump",
    "burgers_residual",
    "darcy_residual",
    "dirichlet_boundary_loss",
    "get_physics_loss",
    "heat_residual",
    "initial_condition_loss",
    "navier_stokes_residual",
    "physics_loss_for",
    "poisson_residual",
    "poisson_residual_neumann",
    "poisson_residual_spectral",
    "relative_h1",
    "relative_lp",
]
