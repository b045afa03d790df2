"""A loss described by a frozen config, as a training config names it.

A TOML training config can say::

    [loss]
    data = "l2"              # "l2" | "h1" | "none"
    data_weight = 5.0
    physics = "darcy"        # any key of PHYSICS_LOSSES, or leave out
    physics_weight = 1.0
    boundary_weight = 0.0    # soft u = boundary_value penalty on the prediction's boundary nodes
    adaptive = "softadapt"   # or "relobralo", or leave out for fixed weights
    [loss.physics_params]
    forcing = 1.0

and the training loop calls ``loss_fn = build_loss(LossConfig(**table))`` then
``total, parts = loss_fn(pred, target, inputs)`` each step.

Units: ``pred``, ``target`` and ``inputs`` must be in *physical* units when a physics term is used
(decode normalized outputs before calling); the data terms are relative, so they do not care.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from pdesurrogates.losses.boundary import dirichlet_boundary_loss
from pdesurrogates.losses.data import relative_h1, relative_lp
from pdesurrogates.losses.physics import PHYSICS_LOSSES, get_physics_loss
from pdesurrogates.losses.weighting import ADAPTIVE_SCHEMES, make_weighter

DATA_LOSSES = ("l2", "h1", "none")


@dataclass(frozen=True)
class LossConfig:
    """Which loss terms to train with and how to weigh them.

    Attributes
    ----------
    data : ``"l2"`` | ``"h1"`` | ``"none"``
        Relative L2 or H1 error against the target.
    data_weight : float
    physics : str or None
        Name in :data:`~pdesurrogates.losses.physics.PHYSICS_LOSSES`.
    physics_weight : float
    physics_params : mapping
        Parameters of the physics loss (e.g. ``{"nu": 0.1, "dt": 0.05}`` for Burgers).
    boundary_weight : float
        Weight of :func:`~pdesurrogates.losses.boundary.dirichlet_boundary_loss` (0: off).
    boundary_value : float
    periodic : bool
        Periodic finite differences in the H1 data loss.
    adaptive : None | ``"softadapt"`` | ``"relobralo"``
        Adaptive weighting on top of the fixed weights.
    seed : int
        Seed of the ReLoBRaLo lookback coin.
    """

    data: str = "l2"
    data_weight: float = 1.0
    physics: str | None = None
    physics_weight: float = 1.0
    physics_params: Mapping[str, Any] = field(default_factory=dict)
    boundary_weight: float = 0.0
    boundary_value: float = 0.0
    periodic: bool = False
    adaptive: str | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.data not in DATA_LOSSES:
            raise ValueError(f"LossConfig.data: unknown {self.data!r}; valid: {', '.join(DATA_LOSSES)}")
        if self.physics is not None and self.physics not in PHYSICS_LOSSES:
            raise ValueError(f"LossConfig.physics: unknown {self.physics!r}; valid: "
                             f"{', '.join(sorted(PHYSICS_LOSSES))}")
        if self.adaptive is not None and self.adaptive not in ADAPTIVE_SCHEMES:
            raise ValueError(f"LossConfig.adaptive: unknown {self.adaptive!r}; valid: None, "
                             f"{', '.join(ADAPTIVE_SCHEMES)}")
        for name in ("data_weight", "physics_weight", "boundary_weight"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"LossConfig.{name} must be >= 0, got {getattr(self, name)}")
        if self.data == "none" and self.physics is None:
            raise ValueError("LossConfig: no loss term left (data = 'none' and no physics)")
        if self.physics is None and self.physics_params:
            raise ValueError("LossConfig: physics_params given without a physics loss")
        object.__setattr__(self, "physics_params", dict(self.physics_params))
        if self.physics is not None:
            get_physics_loss(self.physics, **self.physics_params)  # unknown parameters fail here, early

    def to_dict(self) -> dict:
        return asdict(self)


class CompositeLoss:
    """``total, parts = loss(pred, target, inputs)``; built by :func:`build_loss`.

    ``target`` may be None (physics-only training): the data term is then skipped. ``parts`` holds
    the unweighted terms (detached scalar tensors, so logging decides when to sync) and the weights
    applied (floats, ``"weight/<term>"``).
    """

    def __init__(self, config: LossConfig):
        self.config = config
        self.physics = (get_physics_loss(config.physics, **config.physics_params)
                        if config.physics is not None else None)
        weights = {"data": config.data_weight, "physics": config.physics_weight,
                   "boundary": config.boundary_weight}
        self.weighter = make_weighter(config.adaptive, weights, config.seed)

    def data_loss(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.config.data == "h1":
            return relative_h1(pred, target, periodic=self.config.periodic)
        return relative_lp(pred, target)

    def __call__(self, pred: torch.Tensor, target: torch.Tensor | None,
                 inputs: torch.Tensor | None = None) -> tuple[torch.Tensor, dict]:
        cfg = self.config
        terms: dict[str, torch.Tensor] = {}
        if cfg.data != "none" and cfg.data_weight > 0 and target is not None:
            terms["data"] = self.data_loss(pred, target)
        if self.physics is not None and cfg.physics_weight > 0:
            if inputs is None:
                raise ValueError("CompositeLoss: the physics term needs the inputs")
            terms["physics"] = self.physics(pred, inputs)
        if cfg.boundary_weight > 0:
            terms["boundary"] = dirichlet_boundary_loss(pred, cfg.boundary_value, spatial_dims=pred.ndim - 2)
        if not terms:
            raise ValueError("CompositeLoss: no active term (a target is needed for a data-only loss)")
        total, weights = self.weighter(terms)
        parts: dict = {k: v.detach() for k, v in terms.items()}  # no host sync here
        parts.update({f"weight/{k}": w for k, w in weights.items()})
        return total, parts


def build_loss(config: LossConfig) -> CompositeLoss:
    """The callable loss described by ``config`` (see :class:`CompositeLoss`)."""
    if not isinstance(config, LossConfig):
        raise TypeError(f"build_loss needs a LossConfig, got {type(config).__name__}")
    return CompositeLoss(config)
