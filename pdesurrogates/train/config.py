"""Training configuration: TOML files validated into frozen, nested dataclasses.

A configuration file has a top-level ``task`` (default ``"surrogate"``) and ``seed``, and one table
per concern::

    task = "surrogate"
    seed = 0

    [data]                      # files written by `pdesurrogates generate` (our HDF5 format)
    train = "data/darcy_r65_train.h5"
    test = ["data/darcy_r65_test.h5"]
    n_train = 800               # the first n samples (0 = all)
    train_stride = 2            # train at 33 x 33
    test_strides = [2, 1]       # evaluate at 33 and 65 (zero-shot super-resolution)

    [model]                     # any registered model; see pdesurrogates.models
    name = "fno"
    n_modes = [12, 12]

    [loss]                      # pdesurrogates.losses.LossConfig
    [optimizer]                 # AdamW
    [schedule]                  # cosine | step | constant, with linear warm-up
    [train]                     # epochs, batch size, clipping, accumulation, precision
    [eval]                      # every k epochs, batch size, metric to monitor

Unknown or misspelled keys raise ``ValueError`` naming the table, the valid keys and the closest
match. :func:`parse_override` turns a ``--set key=value`` string into ``(dotted key, value)``; the
value is read as a TOML value (``3``, ``1e-3``, ``true``, ``[1, 2]``, ``"text"``), and falls back to
a plain string (``--set model.name=fno``); nothing is ever evaluated as Python.

Relative paths in ``[data]`` are resolved against the current directory when the file is loaded,
so the resolved copy saved next to a run (``config.toml``) has absolute paths and can be resumed
from anywhere.

Tasks
-----
``task`` selects what is trained; :data:`pdesurrogates.train.tasks.TASKS` maps the name to a task
class whose ``parse_config(raw, where, base_dir)`` validates the file into that task's frozen config.
Every task's config carries the tables the engine reads (:class:`TrainSettings`): ``[optimizer]``,
``[schedule]``, ``[train]``, ``[eval]`` and ``seed``.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import sys
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pdesurrogates.errors import UserInputError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

# ----------------------------------------------------------------------------------------------
# Sections


@dataclass(frozen=True)
class DataConfig:
    """Where the samples come from and how they are prepared.

    Attributes
    ----------
    train : str
        Training file (any format :func:`pdesurrogates.data.readers.open_dataset` reads).
    test : tuple of str
        Test files; each is evaluated at every stride of ``test_strides``.
    n_train, n_test : int
        Use the first ``n`` samples of the training file and ``n_test`` samples of each test file
        from ``test_start`` on; 0 uses all of them.
    test_start : int
        First test sample. One file can serve both (e.g. a preset's single file): the test
        samples must then come after the training ones (``test_start >= n_train``).
    train_stride : int
        Spatial subsampling of the training data (``x[..., ::s, ::s]``).
    test_strides : tuple of int
        Strides at which the test files are evaluated; empty means ``(train_stride,)``.
    train_resolution : int
        Alternative to ``train_stride``: points per side of the training grid (0 = unused); it must
        be a subsampling of the file's grid (421 -> 211, 141, 106, 85, ...).
    test_resolutions : tuple of int
        Alternative to ``test_strides``: points per side at which the test files are evaluated.
    normalize_inputs, normalize_outputs : bool
        Fit a per-channel :class:`~pdesurrogates.data.normalize.GaussianNormalizer` on the
        training inputs / outputs; the model sees normalised inputs and its outputs are decoded
        before the loss, so losses and metrics are in physical units.
    in_memory : bool
        Load the files into memory (fast epochs) instead of reading them lazily.
    symmetries : tuple of str
        Exact symmetries of the data applied at random to each training sample, input and target
        alike (:mod:`pdesurrogates.data.symmetry`): ``"transpose"`` (swap x and y; square grids, an
        isotropic problem), ``"flip"`` (reflections; grids symmetric under them, not half-open ones).
        Scalar fields only; empty: none.
    """

    train: str = ""
    test: tuple[str, ...] = ()
    n_train: int = 0
    n_test: int = 0
    test_start: int = 0
    train_stride: int = 1
    test_strides: tuple[int, ...] = ()
    train_resolution: int = 0
    test_resolutions: tuple[int, ...] = ()
    normalize_inputs: bool = True
    normalize_outputs: bool = True
    in_memory: bool = True
    symmetries: tuple[str, ...] = ()

    def validate(self) -> None:
        if not self.train:
            raise UserInputError("config [data]: 'train' (path of the training file) is required")
        from pdesurrogates.data.symmetry import check_symmetries

        check_symmetries(self.symmetries, where="config [data]")  # names here; shapes once the data are open
        for name in ("n_train", "n_test", "test_start"):
            if getattr(self, name) < 0:
                raise UserInputError(f"config [data]: {name} must be >= 0 (0 = all), got {getattr(self, name)}")
        for s in (self.train_stride, *self.test_strides):
            if s < 1:
                raise UserInputError(f"config [data]: strides must be >= 1, got {s}")
        if self.train_resolution and self.train_stride != 1:
            raise UserInputError("config [data]: give train_stride or train_resolution, not both")
        if self.test_resolutions and self.test_strides:
            raise UserInputError("config [data]: give test_strides or test_resolutions, not both")
        if self.train_resolution < 0 or any(r < 1 for r in self.test_resolutions):
            raise UserInputError("config [data]: resolutions must be positive")

    @property
    def eval_strides(self) -> tuple[int, ...]:
        return self.test_strides or (self.train_stride,)


OPTIMIZERS = ("adamw", "adam")


@dataclass(frozen=True)
class OptimizerConfig:
    """AdamW (decoupled weight decay, the default) or Adam (weight decay as an L2 penalty)."""

    name: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8

    def validate(self) -> None:
        if self.name not in OPTIMIZERS:
            raise UserInputError(f"config [optimizer]: name must be one of {list(OPTIMIZERS)}, got {self.name!r}")
        if not self.lr > 0:
            raise UserInputError(f"config [optimizer]: lr must be > 0, got {self.lr}")
        if self.weight_decay < 0:
            raise UserInputError(f"config [optimizer]: weight_decay must be >= 0, got {self.weight_decay}")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise UserInputError(f"config [optimizer]: betas must be two numbers in [0, 1), got {list(self.betas)}")


SCHEDULES = ("constant", "cosine", "step")


@dataclass(frozen=True)
class ScheduleConfig:
    """Learning-rate schedule, applied per optimiser step.

    Attributes
    ----------
    name : {"constant", "cosine", "step"}
        ``cosine`` decays from ``lr`` to ``min_lr`` over the epochs after warm-up; ``step``
        multiplies the rate by ``gamma`` every ``step_epochs`` epochs.
    warmup_epochs : float
        Linear warm-up from 0 over this many epochs (fractions allowed).
    """

    name: str = "cosine"
    warmup_epochs: float = 0.0
    min_lr: float = 0.0
    step_epochs: int = 100
    gamma: float = 0.5

    def validate(self) -> None:
        if self.name not in SCHEDULES:
            raise UserInputError(f"config [schedule]: name must be one of {list(SCHEDULES)}, got {self.name!r}")
        if self.warmup_epochs < 0:
            raise UserInputError(f"config [schedule]: warmup_epochs must be >= 0, got {self.warmup_epochs}")
        if self.step_epochs < 1:
            raise UserInputError(f"config [schedule]: step_epochs must be >= 1, got {self.step_epochs}")
        if self.min_lr < 0 or not 0 < self.gamma <= 1:
            raise UserInputError("config [schedule]: need min_lr >= 0 and 0 < gamma <= 1, "
                             f"got min_lr={self.min_lr}, gamma={self.gamma}")


PRECISIONS = ("none", "bf16", "fp16")


@dataclass(frozen=True)
class TrainerConfig:
    """The ``[train]`` table.

    Attributes
    ----------
    epochs : int
        Length of the run; the schedule is laid out over it.
    batch_size : int
        Global batch per optimiser step and micro-batch: with K processes each one takes
        ``batch_size // K`` samples (it must divide), so the run sees the same batches as one
        process.
    accumulate : int
        Micro-batches per optimiser step (effective batch ``batch_size * accumulate``).
    grad_clip : float
        Maximum global gradient norm; 0 disables clipping.
    precision : {"none", "bf16", "fp16"}
        Autocast dtype for the forward pass; fp16 uses a gradient scaler.
    stop_after : int
        Stop this run after this many epochs have been completed in total, without
        changing the schedule (0 = run to ``epochs``); resume continues the same run. Useful for
        jobs with a time limit.
    checkpoint_every : int
        Save the ``last`` checkpoint every k epochs (and always at the end).
    steps_per_epoch : int
        Batches per epoch of the tasks that draw random batches instead of passing over a dataset
        (the learned preconditioners); an epoch is the unit of evaluation and checkpointing.
        Dataset tasks ignore it.
    time_limit : float
        Stop (resumably, like ``stop_after``) after the first epoch that ends past this many
        seconds of training in total; 0 means no limit.
    """

    epochs: int = 100
    batch_size: int = 16
    accumulate: int = 1
    grad_clip: float = 0.0
    precision: str = "none"
    stop_after: int = 0
    checkpoint_every: int = 1
    steps_per_epoch: int = 50
    time_limit: float = 0.0

    def validate(self) -> None:
        for name in ("epochs", "batch_size", "accumulate", "checkpoint_every", "steps_per_epoch"):
            if getattr(self, name) < 1:
                raise UserInputError(f"config [train]: {name} must be >= 1, got {getattr(self, name)}")
        if self.precision not in PRECISIONS:
            raise UserInputError(f"config [train]: precision must be one of {list(PRECISIONS)}, got {self.precision!r}")
        if self.grad_clip < 0 or self.stop_after < 0 or self.time_limit < 0:
            raise UserInputError(f"config [train]: grad_clip, stop_after and time_limit must be >= 0, got "
                             f"{self.grad_clip}, {self.stop_after}, {self.time_limit}")


@dataclass(frozen=True)
class EvalConfig:
    """The ``[eval]`` table.

    Attributes
    ----------
    every : int
        Evaluate every k epochs (and after the last one).
    batch_size : int
        Batch size of evaluation.
    monitor : str
        Metric that selects the ``best`` checkpoint, a column of ``metrics.csv`` such as
        ``"test0_s2_l2"``; empty means the relative L2 of the first test set at its first stride.
    """

    every: int = 1
    batch_size: int = 32
    monitor: str = ""

    def validate(self) -> None:
        if self.every < 1 or self.batch_size < 1:
            raise UserInputError(f"config [eval]: every and batch_size must be >= 1, got {self.every}, {self.batch_size}")


@dataclass(frozen=True)
class TrainSettings:
    """What the training engine reads from any task's config: optimiser, schedule, ``[train]``,
    ``[eval]`` and the seed. Every task config has these attributes; this class serves tasks built
    in Python (:func:`pdesurrogates.train.fit` with a task object)."""

    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: TrainerConfig = field(default_factory=TrainerConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    seed: int = 0

    def validate(self) -> None:
        for section in (self.optimizer, self.schedule, self.train, self.eval):
            section.validate()


SETTINGS_TABLES = ("optimizer", "schedule", "train", "eval")


def parse_settings(raw: Mapping[str, Any], where: str) -> dict[str, Any]:
    """The engine's tables and ``seed`` of a config file as keyword arguments of a task config."""
    out: dict[str, Any] = {}
    for name in SETTINGS_TABLES:
        cls = typing.get_type_hints(TrainSettings)[name]
        if name in raw and not isinstance(raw[name], Mapping):
            raise UserInputError(f"{where}: [{name}] must be a table, got {raw[name]!r}")
        out[name] = dataclass_from_dict(cls, raw.get(name, {}), f"{where} [{name}]")
    out["seed"] = _coerce(raw.get("seed", 0), int, f"{where} key 'seed'")
    return out


@dataclass(frozen=True)
class TrainConfig:
    """A whole surrogate-training run (task ``"surrogate"``).

    ``model`` is the registered model's own config dataclass (see
    :func:`pdesurrogates.models.config_from_dict`) and ``loss`` a
    :class:`pdesurrogates.losses.LossConfig`.
    """

    data: DataConfig
    model: Any
    loss: Any = None
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: TrainerConfig = field(default_factory=TrainerConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    seed: int = 0
    task: str = "surrogate"

    def validate(self) -> None:
        for section in (self.data, self.optimizer, self.schedule, self.train, self.eval):
            section.validate()


# ----------------------------------------------------------------------------------------------
# Generic dict -> dataclass with helpful errors


def _closest(key: str, valid: Sequence[str]) -> str:
    match = difflib.get_close_matches(key, list(valid), n=1, cutoff=0.6)
    return f" (did you mean {match[0]!r}?)" if match else ""


def check_keys(raw: Mapping[str, Any], valid: Sequence[str], where: str) -> None:
    """Raise ``ValueError`` if ``raw`` has a key outside ``valid``, suggesting the closest one."""
    for key in raw:
        if key not in valid:
            raise UserInputError(
                f"{where}: unknown key {key!r}{_closest(key, valid)}; valid keys: {sorted(valid)}"
            )


def _coerce(value: Any, hint: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ValueError as exc:
                errors.append(str(exc))
        raise UserInputError(errors[0])
    if origin is tuple:
        args = typing.get_args(hint)
        if isinstance(value, (str, int, float)) and not isinstance(value, bool) and len(args) == 2 and args[1] is Ellipsis:
            value = [value]  # a single value for a list-valued key
        if not isinstance(value, (list, tuple)):
            raise UserInputError(f"{where}: expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], where) for v in value)
        if len(value) != len(args):
            raise UserInputError(f"{where}: expected a list of {len(args)} values, got {list(value)!r}")
        return tuple(_coerce(v, a, where) for v, a in zip(value, args))
    if hint is Any:
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise UserInputError(f"{where}: expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise UserInputError(f"{where}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UserInputError(f"{where}: expected a number, got {value!r}")
        if not math.isfinite(value):
            raise UserInputError(f"{where}: expected a finite number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise UserInputError(f"{where}: expected a string, got {value!r}")
        return value
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, Mapping):
            raise UserInputError(f"{where}: expected a table, got {value!r}")
        return dataclass_from_dict(hint, value, where)
    return value


def dataclass_from_dict(cls: type, raw: Mapping[str, Any], where: str) -> Any:
    """Build the (frozen) dataclass ``cls`` from a table, checking keys and value types.

    Parameters
    ----------
    cls : dataclass type
        Target; its field annotations decide the accepted types (int, float, bool, str, tuples,
        optional values and nested dataclasses).
    raw : mapping
        Table read from TOML.
    where : str
        Location used in error messages, e.g. ``"config [train]"``.
    """
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    check_keys(raw, names, where)
    hints = typing.get_type_hints(cls)
    kwargs = {key: _coerce(value, hints[key], f"{where} key {key!r}") for key, value in raw.items()}
    return cls(**kwargs)


def to_dict(obj: Any) -> Any:
    """Plain (JSON/TOML-ready) form of a config: dataclasses -> dicts (field order), tuples -> lists.

    A model config keeps its ``name`` first, as :func:`pdesurrogates.models.config_to_dict` writes it.
    """
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out = {"name": obj.name} if isinstance(getattr(obj, "name", None), str) else {}
        out.update({f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)})
        return out
    if isinstance(obj, Mapping):
        return {str(k): to_dict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    return obj


# ----------------------------------------------------------------------------------------------
# Overrides and loading


def parse_override(text: str) -> tuple[str, Any]:
    """Split ``"a.b.c=value"`` into ``("a.b.c", value)``.

    The value is parsed as a TOML value; if that fails it is taken as a plain string, so
    ``model.name=fno`` and ``data.test_strides=[1, 2]`` both work. Nothing is evaluated.

    >>> parse_override("train.epochs=5")
    ('train.epochs', 5)
    >>> parse_override("model.name=fno")
    ('model.name', 'fno')
    >>> parse_override("data.test_strides=[2, 1]")
    ('data.test_strides', [2, 1])
    """
    if "\n" in text or "\r" in text:
        raise UserInputError(f"--set takes one KEY=VALUE on one line; got a line break in {text!r}")
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise UserInputError(f"--set expects KEY=VALUE with a dotted KEY such as train.epochs=10, got {text!r}")
    value = value.strip()
    try:
        parsed = tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value
    return key, parsed


def apply_overrides(raw: dict, overrides: Sequence[str | tuple[str, Any]]) -> dict:
    """Return a copy of ``raw`` with dotted ``overrides`` applied (tables created as needed)."""
    out = json.loads(json.dumps(raw))  # deep copy of plain TOML data
    for item in overrides:
        key, value = parse_override(item) if isinstance(item, str) else item
        parts = key.split(".")
        node = out
        for i, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                # a user error at the command line: ValueError so the CLI prints it without a traceback
                raise UserInputError(f"--set {key}: {'.'.join(parts[: i + 1])!r} is a value, not a table")
            node = child
        node[parts[-1]] = value
    return out


def _resolve_path(path: str, base: Path | None) -> str:
    p = Path(path).expanduser()
    if not p.is_absolute() and base is not None:
        p = base / p
    return str(p.resolve()) if base is not None else str(p)


def surrogate_config_from_dict(raw: Mapping[str, Any], where: str = "config", base_dir: str | Path | None = None) -> TrainConfig:
    """Validate a plain dict (as read from TOML) into a :class:`TrainConfig`.

    Parameters
    ----------
    raw : mapping
        Tables ``data``, ``model``, ``loss``, ``optimizer``, ``schedule``, ``train``, ``eval`` and
        the keys ``task``, ``seed``.
    where : str
        Name of the source used in error messages (usually the file name).
    base_dir : path, optional
        Directory against which relative data paths are resolved; None leaves them as given.
    """
    valid = ["task", "seed", "data", "model", "loss", "optimizer", "schedule", "train", "eval"]
    check_keys(raw, valid, where)
    task = raw.get("task", "surrogate")
    if task not in ("surrogate", "pino"):
        raise UserInputError(f"{where}: task {task!r} is not handled by the surrogate trainer")
    for section in valid[2:]:
        if section in raw and not isinstance(raw[section], Mapping):
            raise UserInputError(f"{where}: [{section}] must be a table, got {raw[section]!r}")
    if "data" not in raw:
        raise UserInputError(f"{where}: missing table [data] (train/test files)")
    if "model" not in raw or "name" not in raw["model"]:
        raise UserInputError(f"{where}: missing [model] table with a 'name' (a registered model such as 'fno')")
    data = dataclass_from_dict(DataConfig, raw["data"], f"{where} [data]")
    if base_dir is not None:
        data = dataclasses.replace(
            data, train=_resolve_path(data.train, Path(base_dir)) if data.train else "",
            test=tuple(_resolve_path(t, Path(base_dir)) for t in data.test),
        )
    from pdesurrogates import models

    name = raw["model"]["name"]
    if name not in models.MODELS:
        raise UserInputError(f"{where} [model]: unknown model {name!r}{_closest(str(name), models.MODELS.names())}; "
                         f"valid names: {models.MODELS.names()}")
    fields = [f.name for f in dataclasses.fields(models.MODELS[name].config_class)]
    check_keys(raw["model"], fields, f"{where} [model] ({name})")
    try:
        model = models.config_from_dict(dict(raw["model"]))
    except (TypeError, KeyError, ValueError) as exc:
        raise UserInputError(f"{where} [model]: {exc.args[0] if exc.args else exc}") from exc
    if not isinstance(raw.get("loss", {}), Mapping):
        raise UserInputError(f"{where}: [loss] must be a table")
    from pdesurrogates.losses import LossConfig

    try:
        loss = dataclass_from_dict(LossConfig, raw.get("loss", {}), f"{where} [loss]")
    except (TypeError, ValueError) as exc:
        message = str(exc)
        raise UserInputError(message if message.startswith(where) else f"{where} [loss]: {message}") from exc
    config = TrainConfig(data=data, model=model, loss=loss, task=task, **parse_settings(raw, where))
    config.validate()
    return config


def read_toml(path: str | Path) -> dict:
    """Read a TOML file, naming the file in errors."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise UserInputError(f"{path}: invalid TOML: {exc}") from exc


# ----------------------------------------------------------------------------------------------
# Writing TOML (the resolved copy of a run's config)


def _drop_none(value: Any) -> Any:
    """TOML has no null: leave out None values (their fields take their defaults when read back)."""
    if isinstance(value, Mapping):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_none(v) for v in value]
    return value


def dumps_toml(data: Mapping[str, Any]) -> str:
    """A nested dict of plain values as TOML text (``None`` values are left out)."""
    import tomli_w

    return tomli_w.dumps(_drop_none(dict(data)))


def save_config(config: Any, path: str | Path) -> None:
    """Write the resolved config as TOML (and the same as JSON beside it, ``.json``)."""
    plain = to_dict(config)
    path = Path(path)
    path.write_text(dumps_toml(plain))
    path.with_suffix(".json").write_text(json.dumps(plain, indent=2) + "\n")
