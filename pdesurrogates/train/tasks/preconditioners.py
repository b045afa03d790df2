"""Tasks ``neural_multigrid``, ``dcdm`` and ``operator_preconditioner``: networks inside learned
preconditioners, trained on random diffusion problems (no PDE solve needed).

A config file names the task and has a ``[problem]`` table (what the systems look like), a
``[model]`` table (the network) and the engine's tables::

    task = "neural_multigrid"
    seed = 0
    [problem]                # DiffusionProblem: resolution, ndim, coefficient, n_coefficients, high, low, max_contrast
    resolution = 33
    [model]                  # MultigridPreconditionerConfig fields
    hidden = 8
    [optimizer]
    name = "adam"
    lr = 0.003
    [train]
    epochs = 6
    steps_per_epoch = 50     # an epoch is 50 random batches; evaluation and checkpoints come after each
    batch_size = 8

Step ``k`` draws its batch from :func:`pdesurrogates.physics.random.sample_generator` seeded with
``(seed, k)`` (and the rank), so a resumed run draws what an uninterrupted one would. Each epoch
ends with the loss on a fixed validation batch (``val_loss``), which picks the ``best`` checkpoint.
The run directory is the engine's; ``NeuralMultigridPreconditioner.load(run_dir, grid, a)``,
``LearnedPreconditioner.load(run_dir)`` and ``NeuralOperatorPreconditioner.load(run_dir, grid, a)``
read its best checkpoint.

The first form of these files (one ``[neural_multigrid]``/``[dcdm]``/``[operator_preconditioner]``
table with ``steps``, ``lr``, ``batch_size``, ...) is still read: :func:`settings_from_steps` turns
it into the tables above.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from pdesurrogates.errors import UserInputError
from pdesurrogates.physics.grid import Grid
from pdesurrogates.physics.random import sample_generator
from pdesurrogates.solvers.learned.conjugate_direction import (
    ConjugateDirectionNet,
    DCDMConfig,
    GridDiffusionOperator,
    dcdm_loss,
    ritz_training_set,
)
from pdesurrogates.solvers.learned.multigrid_preconditioner import (
    MultigridNeuralOperator,
    MultigridPreconditionerConfig,
    build_hierarchy,
    random_errors,
    sample_coefficients,
    vcycle_energy_loss,
)
from pdesurrogates.solvers.learned.neural_preconditioner import (
    encode_coefficient,
    energy_cosine_loss,
)
from pdesurrogates.train.config import (
    EvalConfig,
    OptimizerConfig,
    ScheduleConfig,
    TrainerConfig,
    TrainSettings,
    check_keys,
    dataclass_from_dict,
    parse_settings,
    to_dict,
)
from pdesurrogates.train.engine import RunContext, Task

COEFFICIENTS = ("ones", "darcy", "mixed", "contrast")
_POOL, _VALIDATION = 10**9, 10**9 + 1  # generator indices of the coefficient pool and the validation batch


@dataclass(frozen=True)
class DiffusionProblem:
    """Random systems ``-div(a grad u) = f`` on a Dirichlet node grid (``[problem]`` table).

    Attributes
    ----------
    resolution : int
        Nodes per side (boundary included).
    ndim : int
        2 or 3.
    coefficient : {"ones", "darcy", "mixed", "contrast"}
        Poisson, two-phase ``high``/``low`` coefficients (thresholded Gaussian random fields, the FNO
        Darcy setting; 2D only), half and half, or two-phase ``c``/``1`` with the contrast ``c``
        drawn log-uniformly in ``[1, max_contrast]`` per coefficient (2D only).
    n_coefficients : int
        Size of the pool of coefficients drawn once per run.
    high, low : float
        The two values of ``"darcy"`` coefficients.
    max_contrast : float
        Largest contrast of ``"contrast"`` coefficients.
    """

    resolution: int = 33
    ndim: int = 2
    coefficient: str = "mixed"
    n_coefficients: int = 32
    high: float = 12.0
    low: float = 3.0
    max_contrast: float = 1e6

    def validate(self, where: str) -> None:
        if self.resolution < 5 or self.ndim not in (2, 3) or self.n_coefficients < 1:
            raise UserInputError(f"{where}: need resolution >= 5, ndim 2 or 3 and n_coefficients >= 1, got "
                             f"{self.resolution}, {self.ndim}, {self.n_coefficients}")
        if self.coefficient not in COEFFICIENTS:
            raise UserInputError(f"{where}: coefficient must be one of {list(COEFFICIENTS)}, got {self.coefficient!r}")
        if self.coefficient != "ones" and self.ndim != 2:
            raise UserInputError(f"{where}: two-phase (darcy) coefficients are 2D only; use coefficient = 'ones' in 3D")
        if not (self.high > 0 and self.low > 0):
            raise UserInputError(f"{where}: high and low must be positive, got {self.high}, {self.low}")
        if not (math.isfinite(self.max_contrast) and self.max_contrast >= 1):
            raise UserInputError(f"{where}: max_contrast must be finite and >= 1, got {self.max_contrast}")


@dataclass(frozen=True)
class RitzProblem(DiffusionProblem):
    """DCDM's systems: one matrix, right-hand sides from its Ritz vectors (Kaneda et al. 2023).

    Attributes
    ----------
    coefficient : {"ones", "darcy"}
        The matrix: Poisson, or one two-phase coefficient drawn from the seed.
    n_samples, n_ritz : int
        Right-hand sides drawn once, and Lanczos steps for the Ritz vectors.
    val_fraction : float
        Share of the samples held out for ``val_loss``.
    """

    resolution: int = 32
    coefficient: str = "ones"
    n_samples: int = 512
    n_ritz: int = 300
    val_fraction: float = 0.1

    def validate(self, where: str) -> None:
        super().validate(where)
        if self.coefficient not in ("ones", "darcy"):
            raise UserInputError(f"{where}: DCDM trains on one matrix: coefficient 'ones' or 'darcy'")
        if self.n_samples < 2 or self.n_ritz < 1 or not 0 < self.val_fraction < 1:
            raise UserInputError(f"{where}: need n_samples >= 2, n_ritz >= 1 and 0 < val_fraction < 1")


@dataclass(frozen=True)
class MultigridProblem(DiffusionProblem):
    """The learned V-cycle's systems and loss (``[problem]`` of task ``neural_multigrid``).

    Attributes
    ----------
    cycles : int
        V-cycles applied to each random error in the loss, ``mean (||E^k e||_A^2 / ||e||_A^2)^(1/k)``
        with ``E`` the V-cycle's error propagation and ``k = cycles``. ``1`` is the one-cycle energy
        reduction; ``k > 1`` weights the slowly reduced errors (a power iteration), the ones
        conjugate gradients meet.
    """

    cycles: int = 1

    def validate(self, where: str) -> None:
        super().validate(where)
        if isinstance(self.cycles, bool) or not isinstance(self.cycles, int) or self.cycles < 1:
            raise UserInputError(f"{where}: cycles must be an integer >= 1, got {self.cycles!r}")


@dataclass(frozen=True)
class PreconditionerTrainConfig:
    """A whole run of a learned-preconditioner task (``problem`` and ``model`` depend on the task)."""

    task: str
    problem: Any
    model: Any
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: TrainerConfig = field(default_factory=TrainerConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    seed: int = 0

    def validate(self) -> None:
        TrainSettings.validate(self)
        self.problem.validate(f"config [problem] of task {self.task!r}")


def settings_from_steps(table: Mapping[str, Any], defaults: Mapping[str, Mapping[str, Any]]) -> dict[str, dict]:
    """The engine's tables from the step-based keys of the first config form.

    ``steps`` becomes epochs of 50 steps when it is a multiple of 50 (else one epoch of ``steps``);
    ``lr``, ``batch_size``, ``grad_clip``, ``seed``, ``warmup_steps``, ``final_lr_fraction`` (the
    cosine's floor as a fraction of ``lr``) and ``val_every`` (steps between validations) map to
    their tables. Other keys are left for ``[problem]``.
    """
    out = {k: dict(v) for k, v in defaults.items()}
    steps = table.get("steps")
    if steps is not None:
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise UserInputError(f"steps must be a positive integer, got {steps!r}")
        per_epoch = 50 if steps % 50 == 0 else steps
        out["train"].update(epochs=steps // per_epoch, steps_per_epoch=per_epoch)
    per_epoch = out["train"].get("steps_per_epoch", 50)
    for key, (section, name) in {"lr": ("optimizer", "lr"), "batch_size": ("train", "batch_size"),
                                 "grad_clip": ("train", "grad_clip")}.items():
        if key in table:
            out[section][name] = table[key]
    if "warmup_steps" in table:
        out["schedule"]["warmup_epochs"] = table["warmup_steps"] / per_epoch
    if "final_lr_fraction" in table:
        out["schedule"]["min_lr"] = table["final_lr_fraction"] * out["optimizer"].get("lr", 1e-3)
    if "val_every" in table:
        out["eval"]["every"] = max(1, round(table["val_every"] / per_epoch))
    if "seed" in table:
        out["seed"] = table["seed"]
    return out


_STEP_KEYS = ("steps", "lr", "batch_size", "grad_clip", "seed", "warmup_steps", "final_lr_fraction", "val_every")


class _SampledTask(Task):
    """A task whose batches are drawn at random per step (see the module docstring)."""

    problem_class: ClassVar[type] = DiffusionProblem
    network_config: ClassVar[type] = MultigridPreconditionerConfig
    defaults: ClassVar[dict[str, dict]] = {}

    def __init__(self, config: PreconditionerTrainConfig) -> None:
        if not isinstance(config, PreconditionerTrainConfig):
            raise TypeError(f"task {self.name!r} needs a PreconditionerTrainConfig, got {type(config).__name__}")
        config.validate()
        self.config = config
        self.problem = config.problem

    # ---- configs
    @classmethod
    def parse_model(cls, raw: dict[str, Any], problem: Any, where: str) -> Any:
        """The ``[model]`` table as ``network_config`` (``ndim`` from the problem unless given)."""
        raw.pop("name", None)
        raw.setdefault("ndim", problem.ndim)
        try:
            return dataclass_from_dict(cls.network_config, raw, where)
        except TypeError as exc:
            raise UserInputError(f"{where}: {exc}") from exc

    @classmethod
    def parse_config(cls, raw: Mapping[str, Any], where: str = "config",
                     base_dir: str | Path | None = None) -> PreconditionerTrainConfig:
        """Validate a config file's tables (either form, see the module docstring)."""
        raw = dict(raw)
        legacy = raw.pop(cls.name, None)
        if legacy is not None:
            if not isinstance(legacy, Mapping):
                raise UserInputError(f"{where}: [{cls.name}] must be a table")
            clash = [k for k in ("problem", "optimizer", "schedule", "train", "eval", "seed") if k in raw]
            if clash:
                raise UserInputError(f"{where}: give either a [{cls.name}] table (first form) or "
                                 f"[problem]/[optimizer]/[train] tables, not both (found {clash})")
            settings = settings_from_steps(legacy, cls.defaults)
            raw.update(settings)
            raw["problem"] = {k: v for k, v in legacy.items() if k not in _STEP_KEYS}
        else:
            for name, values in cls.defaults.items():
                if name == "seed":
                    continue
                if name in raw and not isinstance(raw[name], Mapping):
                    raise UserInputError(f"{where}: [{name}] must be a table, got {raw[name]!r}")
                raw[name] = {**values, **raw.get(name, {})}
        check_keys(raw, ["task", "seed", "problem", "model", "optimizer", "schedule", "train", "eval"], where)
        problem = dataclass_from_dict(cls.problem_class, raw.get("problem", {}), f"{where} [problem]")
        model = cls.parse_model(dict(raw.get("model", {})), problem, f"{where} [model]")
        config = PreconditionerTrainConfig(task=cls.name, problem=problem, model=model, **parse_settings(raw, where))
        config.validate()
        return config

    @classmethod
    def make_config(cls, *, model: Any = None, **keys: Any) -> PreconditionerTrainConfig:
        """A config from keywords of the first form (``resolution=17, steps=80, lr=...``) for Python use."""
        raw: dict[str, Any] = {cls.name: keys}
        if model is not None:
            raw["model"] = to_dict(model) if dataclasses.is_dataclass(model) else dict(model)
        return cls.parse_config(raw, where=f"{cls.name} config")

    # ---- batches
    def setup(self, run: RunContext) -> None:
        self.device = run.device
        self.rank, self.world = run.dist.rank, run.dist.world_size
        self.batch = self.config.train.batch_size // self.world
        self.grid = Grid((self.problem.resolution,) * self.problem.ndim)

    def generator(self, index: int) -> torch.Generator:
        return sample_generator(self.config.seed, index)

    def plan(self, epoch: int, run: RunContext) -> list[int]:
        per_epoch = self.config.train.steps_per_epoch
        return [(epoch * per_epoch + i) * self.world + self.rank for i in range(per_epoch)]

    def item_weight(self, item: int) -> float:
        return float(self.batch)

    def monitor(self) -> str:
        return "val_loss"

    def model_config(self) -> Any:
        return self.config.model

    def checkpoint_extra(self) -> dict[str, Any]:
        return {"problem": dataclasses.asdict(self.problem)}

    def coefficient_pool(self) -> torch.Tensor:
        p = self.problem
        return sample_coefficients(p.n_coefficients, p.resolution, p.coefficient, self.generator(_POOL),
                                   ndim=p.ndim, high=p.high, low=p.low, max_contrast=p.max_contrast).to(self.device)

    def evaluate(self, model: nn.Module, run: RunContext) -> dict[str, float]:
        was = model.training
        model.eval()
        with torch.no_grad():
            loss, _ = self.loss(model, _VALIDATION, run)
        model.train(was)
        return {"val_loss": float(loss)}


class NeuralMultigridTask(_SampledTask):
    """The learned V-cycle (:class:`MultigridNeuralOperator`), trained in float64 on the V-cycle's
    energy-norm error reduction ``E ||e - M A e||_A^2 / ||e||_A^2`` (over ``cycles`` V-cycles, see
    :class:`MultigridProblem`) for random errors ``e`` and coefficients from the pool, on the
    hierarchy its ``[model]`` names (``hierarchy = "boxmg"`` by default: Galerkin coarse
    operators; ``coefficient = "contrast"`` trains it on contrasts up to ``max_contrast``)."""

    name = "neural_multigrid"
    problem_class = MultigridProblem
    defaults: ClassVar[dict[str, dict]] = {
        "optimizer": {"name": "adam", "lr": 3e-3, "weight_decay": 0.0},
        "schedule": {"name": "cosine"},
        "train": {"epochs": 6, "steps_per_epoch": 50, "batch_size": 8},
        "eval": {},
    }

    @classmethod
    def parse_model(cls, raw: dict[str, Any], problem: Any, where: str) -> Any:
        try:
            return super().parse_model(raw, problem, where)
        except ValueError as exc:  # the config's own checks (kernel, hierarchy, smoothing steps)
            if isinstance(exc, UserInputError):
                raise
            raise UserInputError(f"{where}: {exc}") from exc

    def setup(self, run: RunContext) -> None:
        super().setup(run)
        self.pool = self.coefficient_pool()

    def build_model(self) -> nn.Module:
        return MultigridNeuralOperator(self.config.model).double()

    def loss(self, model: nn.Module, item: int, run: RunContext):
        gen = self.generator(item)
        idx = torch.randint(0, self.pool.shape[0], (self.batch,), generator=gen)
        e = random_errors(self.batch, self.grid.interior_shape, gen).to(self.device)
        m = self.config.model
        hierarchy = build_hierarchy(m.hierarchy, self.grid, self.pool[idx.to(self.device)], m.coarsest_nodes,
                                    device=self.device)
        return vcycle_energy_loss(model, hierarchy, e, cycles=self.problem.cycles), {}


class DCDMTask(_SampledTask):
    """The DCDM network (:class:`ConjugateDirectionNet`) on the scale-free DCDM loss
    ``||b - A x||^2``, ``x = q (q.b)/(q.A q)``, ``q = f(b)``, with right-hand sides ``b`` built from
    Ritz vectors of ``A`` (low end weighted nine times more, as in the paper)."""

    name = "dcdm"
    problem_class = RitzProblem
    network_config = DCDMConfig
    defaults: ClassVar[dict[str, dict]] = {
        "optimizer": {"name": "adam", "lr": 1e-3, "weight_decay": 0.0},
        "schedule": {"name": "cosine", "warmup_epochs": 2.0, "min_lr": 5e-5},
        "train": {"epochs": 6, "steps_per_epoch": 50, "batch_size": 16, "grad_clip": 1.0},
        "eval": {},
    }

    def setup(self, run: RunContext) -> None:
        super().setup(run)
        p = self.problem
        coefficient = None
        if p.coefficient == "darcy":
            coefficient = sample_coefficients(1, p.resolution, "darcy", self.generator(_POOL), high=p.high,
                                              low=p.low)[0, 0]
        self.operator = GridDiffusionOperator(self.grid, coefficient)
        data = ritz_training_set(self.operator, p.n_samples, p.n_ritz, seed=self.config.seed)
        n_val = max(1, round(p.val_fraction * data.shape[0]))
        self.validation, self.data = data[:n_val].to(self.device), data[n_val:].to(self.device)

    def build_model(self) -> nn.Module:
        return ConjugateDirectionNet(self.config.model)

    def loss(self, model: nn.Module, item: int, run: RunContext):
        if item == _VALIDATION:
            b = self.validation
        else:
            idx = torch.randint(0, self.data.shape[0], (self.batch,), generator=self.generator(item))
            b = self.data[idx.to(self.device)]
        # float64 reductions: the loss is 1 - O(cos^2)
        return dcdm_loss(model(b).double(), b.double(), self.operator), {}


class OperatorPreconditionerTask(_SampledTask):
    """A model-registry surrogate with input ``(log a, r)`` trained as a preconditioner: the
    scale-free energy loss ``1 - (q.Ae)^2/((q.Aq)(e.Ae))`` of its output ``q`` on ``A e / rms(A e)``
    (see :mod:`pdesurrogates.solvers.learned.neural_preconditioner`)."""

    name = "operator_preconditioner"
    defaults: ClassVar[dict[str, dict]] = {
        "optimizer": {"name": "adam", "lr": 1e-3, "weight_decay": 0.0},
        "schedule": {"name": "cosine"},
        "train": {"epochs": 12, "steps_per_epoch": 50, "batch_size": 8},
        "eval": {},
    }

    @classmethod
    def parse_model(cls, raw, problem, where):
        from pdesurrogates.models import MgNOConfig, config_from_dict

        if problem.ndim != 2:
            raise UserInputError(f"{where}: the operator preconditioner is 2D")
        if not raw:
            # the paper's V-cycle: as a preconditioner it needs 20-59 FCG iterations at 64^2-128^2 where
            # the mesh-consistent variant needed 44-94 (benchmarks/results/cpu/learned_preconditioner.*)
            return MgNOConfig(in_channels=2, out_channels=1, ndim=2, width=16, n_layers=4, levels=5,
                              variant="legacy")
        raw = {**raw, "in_channels": 2, "out_channels": 1, "ndim": 2}
        try:
            return config_from_dict(raw)
        except (KeyError, ValueError, TypeError) as exc:
            raise UserInputError(f"{where}: {exc.args[0] if exc.args else exc}") from exc

    def setup(self, run: RunContext) -> None:
        super().setup(run)
        self.pool = self.coefficient_pool()

    def build_model(self) -> nn.Module:
        from pdesurrogates.models import build

        return build(self.config.model)

    def loss(self, model: nn.Module, item: int, run: RunContext):
        from pdesurrogates.physics.operators import apply_diffusion, pad_dirichlet

        gen = self.generator(item)
        a = self.pool[torch.randint(0, self.pool.shape[0], (self.batch,), generator=gen).to(self.device)]
        e = random_errors(self.batch, self.grid.interior_shape, gen).to(self.device)

        def apply_A(u):
            return apply_diffusion(a, pad_dirichlet(u, 2), self.grid)

        Ae = apply_A(e)
        rms = Ae.flatten(1).norm(dim=1).reshape(-1, 1, 1, 1) / math.sqrt(Ae[0].numel())
        dtype = next(model.parameters()).dtype
        x = torch.cat([encode_coefficient(a), pad_dirichlet(Ae / rms, 2)], 1).to(dtype)
        q = model(x)[:, :1, 1:-1, 1:-1].to(torch.float64)
        return energy_cosine_loss(q, e, Ae, apply_A(q)), {}


def train_network(task: _SampledTask, out_dir: str | Path | None = None, **fit_options: Any) -> tuple[nn.Module, list[float]]:
    """Train ``task``'s network; ``(network with the best validation loss, loss of every step)``.

    ``fit_options`` go to :func:`pdesurrogates.train.engine.fit` (``device``, ``progress``, ...).
    """
    from pdesurrogates.train.engine import fit

    fit_options.setdefault("progress", False)
    result = fit(task, task.config, out_dir, **fit_options)
    network = result.best_model()
    return network, [row["loss"] for row in result.steps]


__all__ = [
    "DCDMTask",
    "DiffusionProblem",
    "MultigridProblem",
    "NeuralMultigridTask",
    "OperatorPreconditionerTask",
    "PreconditionerTrainConfig",
    "RitzProblem",
    "settings_from_steps",
    "train_network",
]
