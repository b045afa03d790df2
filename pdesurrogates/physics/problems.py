"""Registry of dataset-generating PDE problems: ``PROBLEMS`` and :func:`get_problem`.

Each problem is a frozen dataclass of physical and numerical parameters (defaults: the FNO-paper
settings where the paper has one) with

* ``validate()``: refuses non-physical or unstable settings with the reason (also run on creation);
* ``input_shape``, ``output_shape``: per-sample shapes ``(C_in, *spatial)``, ``(C_out, [T,] *spatial)``;
* ``grid_arrays()``: coordinate arrays stored under ``grid/`` of a dataset;
* ``generate(indices, seed, device)``: float32 numpy ``(inputs, outputs)`` for those sample indices;
  sample ``i`` draws all its randomness from ``sample_generator(seed, i)`` on the CPU, so it is the
  same whatever the batch it is generated in, the worker, or the device;
* ``check_device(device)``: the ``torch.device`` the generator will run on, or a ``ValueError``
  naming the device when it does not exist here or the generator cannot use it (the solvers of
  Poisson and heat are SciPy sparse direct solves, CPU only; Darcy runs on an accelerator with
  ``solver="cg"``, see ``accelerator_params``);
* ``to_dict()``: every parameter, JSON-ready (stored as the dataset's provenance).

>>> p = get_problem("darcy", resolution=17)
>>> p.input_shape, p.output_shape
((1, 17, 17), (1, 17, 17))
>>> x, y = p.generate([0, 1], seed=0)
>>> x.shape, y.dtype.name
((2, 1, 17, 17), 'float32')
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import scipy.sparse.linalg as spla
import torch

from pdesurrogates.errors import UserInputError
from pdesurrogates.physics import burgers as _burgers
from pdesurrogates.physics import darcy as _darcy
from pdesurrogates.physics import navier_stokes as _ns
from pdesurrogates.physics.grid import Grid
from pdesurrogates.physics.heat import HeatSequence, KhodakDiffusivity, MovingBump
from pdesurrogates.physics.poisson import neumann_mass_weights, solve_poisson
from pdesurrogates.physics.random import (
    covariance_eigenvalues,
    gaussian_random_field,
    sample_generator,
)


def _require(condition: bool, problem: str, message: str) -> None:
    if not condition:
        raise UserInputError(f"{problem}: {message}")


def _indices(indices) -> list[int]:
    idx = [int(i) for i in np.asarray(indices, dtype=np.int64).reshape(-1)]
    if any(i < 0 for i in idx):
        raise UserInputError(f"sample indices must be >= 0, got {idx}")
    return idx


def resolve_device(device=None) -> torch.device:
    """``device`` (``None``: the CPU) as a ``torch.device`` that exists on this machine.

    Raises
    ------
    UserInputError
        (a ``ValueError``) naming the device when it is not a torch device, when CUDA (or MPS)
        is not available, or when the CUDA index is out of range.

    >>> resolve_device("cpu")
    device(type='cpu')
    """
    try:
        dev = torch.device("cpu" if device is None else device)
    except (RuntimeError, TypeError, ValueError):
        raise UserInputError(f"device {device!r} is not a torch device (use cpu or cuda[:k])") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise UserInputError(f"device {str(dev)!r}: CUDA is not available on this machine (torch "
                             f"{torch.__version__}, {torch.cuda.device_count()} CUDA devices); "
                             "use device 'cpu'")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise UserInputError(f"device {str(dev)!r}: only {torch.cuda.device_count()} CUDA device(s) "
                             f"here (indices 0-{torch.cuda.device_count() - 1})")
    elif dev.type == "mps":
        if not torch.backends.mps.is_available():
            raise UserInputError(f"device {str(dev)!r}: MPS is not available on this machine")
    elif dev.type != "cpu":
        raise UserInputError(f"device {str(dev)!r} is not supported by the generators (use cpu or cuda[:k])")
    return dev


class _ProblemBase:
    """Shared helpers of the problem dataclasses."""

    name: ClassVar[str] = ""
    # the generator runs its solver on any torch device (True) or on the CPU only (False)
    accelerated: ClassVar[bool] = False
    # parameters `pdesurrogates generate --device cuda` sets when they are not given, to select the
    # device path of the generator
    accelerator_params: ClassVar[dict[str, Any]] = {}

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        """``{"pde": name, **parameters}`` (JSON-ready)."""
        return {"pde": self.name, **dataclasses.asdict(self)}

    def check_device(self, device=None) -> torch.device:
        """The ``torch.device`` :meth:`generate` runs on; refuses one it cannot use, naming it."""
        dev = resolve_device(device)
        if dev.type != "cpu" and not self._runs_on_accelerator():
            raise UserInputError(f"{self.name}: {self._cpu_only_reason()}; device {str(dev)!r} cannot be "
                             "used, run it with device 'cpu'")
        return dev

    def _runs_on_accelerator(self) -> bool:
        return self.accelerated

    def _cpu_only_reason(self) -> str:
        return "the generator solves with SciPy's sparse direct solver, on the CPU only"

    def _check_common(self) -> None:
        res = self.resolution
        _require(isinstance(res, int) and not isinstance(res, bool) and res >= 4, self.name,
                 f"resolution must be an int >= 4, got {res!r}")


@dataclass(frozen=True)
class DarcyProblem(_ProblemBase):
    """Darcy flow ``-div(a grad u) = f``: input the coefficient ``a``, output the pressure ``u``.

    Parameters
    ----------
    resolution : int
        Nodes per side of the stored fields (boundary included).
    solver_resolution : int, optional
        Solve on this finer node grid and keep every ``(S-1)/(s-1)``-th node (e.g. 421 -> 85);
        default: ``resolution``.
    coefficient : {"threshold", "lognormal"}
    alpha, tau, sigma : GRF parameters of the coefficient (Neumann Laplacian).
    high, low : the two values of the thresholded coefficient.
    forcing : constant right-hand side ``f``.
    solver : {"direct", "amg", "cg"}
        ``"direct"`` (SciPy sparse LU) and ``"amg"`` (pyamg) run on the CPU, one sample at a
        time; ``"cg"`` solves the whole batch at once with Jacobi-preconditioned CG to a relative
        residual of ``1e-10`` on any device (:func:`~pdesurrogates.physics.darcy.solve_darcy_batch`),
        and is what ``pdesurrogates generate --device cuda`` picks unless a solver is given.
    """

    name: ClassVar[str] = "darcy"
    accelerator_params: ClassVar[dict[str, Any]] = {"solver": "cg"}
    resolution: int = 421
    solver_resolution: int | None = None
    coefficient: str = "threshold"
    alpha: float = 2.0
    tau: float = 3.0
    sigma: float | None = None
    high: float = 12.0
    low: float = 3.0
    forcing: float = 1.0
    solver: str = "direct"

    def validate(self) -> None:
        self._check_common()
        _require(self.coefficient in _darcy.COEFFICIENT_KINDS, self.name,
                 f"coefficient must be one of {', '.join(_darcy.COEFFICIENT_KINDS)}, got {self.coefficient!r}")
        _require(self.solver in _darcy.SOLVERS, self.name,
                 f"solver must be one of {', '.join(_darcy.SOLVERS)}, got {self.solver!r}")
        _require(self.high > 0 and self.low > 0, self.name,
                 f"coefficient values must be positive (a <= 0 is not a permeability), got "
                 f"high={self.high}, low={self.low}")
        _require(self.alpha > 1.0, self.name, f"alpha must be > d/2 = 1, got {self.alpha}")
        _require(self.tau > 0, self.name, f"tau must be > 0, got {self.tau}")
        _require(math.isfinite(self.forcing), self.name, f"forcing must be finite, got {self.forcing}")
        S = self.solver_grid_size
        _require(S >= self.resolution and (S - 1) % (self.resolution - 1) == 0, self.name,
                 f"solver_resolution {S} must be >= resolution {self.resolution} with (S - 1) "
                 f"divisible by (resolution - 1) = {self.resolution - 1}")

    @property
    def solver_grid_size(self) -> int:
        return self.resolution if self.solver_resolution is None else int(self.solver_resolution)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (1, self.resolution, self.resolution)

    @property
    def output_shape(self) -> tuple[int, ...]:
        return (1, self.resolution, self.resolution)

    @property
    def grid(self) -> Grid:
        return Grid((self.resolution, self.resolution))

    def grid_arrays(self) -> dict[str, np.ndarray]:
        x, y = self.grid.coords()
        return {"x": x, "y": y}

    def _runs_on_accelerator(self) -> bool:
        return self.solver not in _darcy.CPU_SOLVERS

    def _cpu_only_reason(self) -> str:
        return (f"solver {self.solver!r} runs on the CPU only (solver 'cg' solves the batch on "
                "any device)")

    def generate(self, indices: Sequence[int], seed: int, device=None) -> tuple[np.ndarray, np.ndarray]:
        """Coefficients ``(k, 1, s, s)`` and solutions ``(k, 1, s, s)``, float32.

        ``solver="direct"``/``"amg"``: one CPU sparse solve per sample; ``"cg"``: one batched
        solve of the ``k`` samples on ``device``. The coefficients are drawn on the CPU either way.
        """
        dev = self.check_device(device)
        idx = _indices(indices)
        S = self.solver_grid_size
        stride = (S - 1) // (self.resolution - 1)
        inputs = np.empty((len(idx), *self.input_shape), dtype=np.float32)
        outputs = np.empty((len(idx), *self.output_shape), dtype=np.float32)
        if self.solver == "cg":
            coefficients = np.stack([
                _darcy.sample_coefficient(S, sample_generator(seed, i), kind=self.coefficient,
                                          alpha=self.alpha, tau=self.tau, sigma=self.sigma,
                                          high=self.high, low=self.low) for i in idx])
            a = torch.from_numpy(coefficients).to(dev)
            u = _darcy.solve_darcy_batch(a, self.forcing).cpu().numpy()
            inputs[:, 0] = coefficients[:, ::stride, ::stride]
            outputs[:, 0] = u[:, ::stride, ::stride]
            return inputs, outputs
        for row, i in enumerate(idx):
            a = _darcy.sample_coefficient(S, sample_generator(seed, i), kind=self.coefficient,
                                          alpha=self.alpha, tau=self.tau, sigma=self.sigma,
                                          high=self.high, low=self.low)
            u = _darcy.solve_darcy(a, self.forcing, solver=self.solver)
            inputs[row, 0] = a[::stride, ::stride]
            outputs[row, 0] = u[::stride, ::stride]
        return inputs, outputs


@dataclass(frozen=True)
class PoissonProblem(_ProblemBase):
    """Poisson ``-Laplace u = f`` (2D or 3D): input a GRF right-hand side ``f``, output ``u``.

    ``boundary="dirichlet"`` (``u = 0``) or ``"neumann"`` (``du/dn = 0``; the stored ``f`` is the
    sampled field minus its weighted mean, so it satisfies the compatibility condition, and ``u`` has
    zero weighted mean).
    """

    name: ClassVar[str] = "poisson"
    resolution: int = 64
    ndim: int = 2
    boundary: str = "dirichlet"
    alpha: float = 2.0
    tau: float = 3.0
    sigma: float | None = None

    def validate(self) -> None:
        self._check_common()
        _require(self.ndim in (2, 3), self.name, f"ndim must be 2 or 3, got {self.ndim}")
        _require(self.boundary in ("dirichlet", "neumann"), self.name,
                 f"boundary must be 'dirichlet' or 'neumann', got {self.boundary!r}")
        _require(self.alpha > self.ndim / 2, self.name, f"alpha must be > d/2 = {self.ndim / 2}, got {self.alpha}")
        _require(self.tau > 0, self.name, f"tau must be > 0, got {self.tau}")

    @property
    def grid(self) -> Grid:
        return Grid((self.resolution,) * self.ndim, boundary=self.boundary)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (1,) + (self.resolution,) * self.ndim

    @property
    def output_shape(self) -> tuple[int, ...]:
        return self.input_shape

    def grid_arrays(self) -> dict[str, np.ndarray]:
        return dict(zip("xyz", self.grid.coords()))

    def generate(self, indices: Sequence[int], seed: int, device=None) -> tuple[np.ndarray, np.ndarray]:
        """Right-hand sides and solutions, float32; SciPy sparse direct solves on the CPU (any other
        ``device`` is refused)."""
        self.check_device(device)
        idx = _indices(indices)
        grid = self.grid
        inputs = np.empty((len(idx), *self.input_shape), dtype=np.float32)
        outputs = np.empty((len(idx), *self.output_shape), dtype=np.float32)
        weights = neumann_mass_weights(grid)
        for row, i in enumerate(idx):
            f = gaussian_random_field(grid.shape, self.alpha, self.tau, self.sigma, boundary="neumann",
                                      generator=sample_generator(seed, i), zero_mean=False).numpy()
            if self.boundary == "neumann":
                f = f - (weights * f).sum() / weights.sum()
            inputs[row, 0] = f
            outputs[row, 0] = solve_poisson(f, grid)
        return inputs, outputs


@dataclass(frozen=True)
class BurgersProblem(_ProblemBase):
    """1D viscous Burgers on ``[0, 1)``: input ``u0 ~ N(0, sigma^2 (-Laplace + tau^2)^-alpha)``,
    output ``u`` at ``t_final`` (``n_times = 1``: shape ``(1, s)``) or at ``n_times`` equally spaced
    times up to ``t_final`` (``(1, n_times, s)``).

    Defaults are the FNO setting ``nu = 0.1``, ``u0 ~ N(0, 625 (-Laplace + 25 I)^-2)`` with 625 read
    as the amplitude ``sigma`` (see :mod:`~pdesurrogates.physics.burgers`), 8192 nodes, ``t = 1``. ``dt`` (optional) is checked
    against the CFL bound of :mod:`~pdesurrogates.physics.burgers` for a ``6 sigma`` estimate of
    ``max|u0|``; by default each trajectory gets half the CFL limit of its own ``max|u0|``.
    """

    name: ClassVar[str] = "burgers"
    accelerated: ClassVar[bool] = True
    resolution: int = 8192
    solver_resolution: int | None = None
    nu: float = 0.1
    alpha: float = 2.0
    tau: float = 5.0
    sigma: float = 625.0
    t_final: float = 1.0
    n_times: int = 1
    dt: float | None = None

    def validate(self) -> None:
        self._check_common()
        _require(self.nu > 0, self.name, f"viscosity nu must be > 0, got {self.nu}")
        _require(self.t_final > 0, self.name, f"t_final must be > 0, got {self.t_final}")
        _require(self.n_times >= 1, self.name, f"n_times must be >= 1, got {self.n_times}")
        _require(self.alpha > 0.5 and self.tau > 0 and self.sigma >= 0, self.name,
                 f"need alpha > 1/2, tau > 0, sigma >= 0; got alpha={self.alpha}, tau={self.tau}, "
                 f"sigma={self.sigma}")
        S = self.solver_grid_size
        _require(S >= self.resolution and S % self.resolution == 0, self.name,
                 f"solver_resolution {S} must be a multiple of resolution {self.resolution}")
        if self.dt is not None:
            _require(self.dt > 0, self.name, f"dt must be > 0, got {self.dt}")
            limit = _burgers.max_stable_dt(self.u_max_estimate, S, nu=self.nu)
            _require(self.dt <= limit, self.name,
                     f"dt={self.dt:.3g} violates the CFL bound dt * max|u| * k_eff <= "
                     f"{_burgers.CFL_LIMIT} for the expected max|u0| ~ {self.u_max_estimate:.3g} at "
                     f"{S} nodes: use dt <= {limit:.3g}")

    @property
    def u_max_estimate(self) -> float:
        """``6`` standard deviations of the initial condition (from the covariance spectrum)."""
        lam = covariance_eigenvalues((self.solver_grid_size,), self.alpha, self.tau, self.sigma)
        return 6.0 * math.sqrt(float(lam.sum() - lam[0]))

    @property
    def solver_grid_size(self) -> int:
        return self.resolution if self.solver_resolution is None else int(self.solver_resolution)

    @property
    def times(self) -> list[float]:
        return [self.t_final * (k + 1) / self.n_times for k in range(self.n_times)]

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (1, self.resolution)

    @property
    def output_shape(self) -> tuple[int, ...]:
        if self.n_times == 1:
            return (1, self.resolution)
        return (1, self.n_times, self.resolution)

    def grid_arrays(self) -> dict[str, np.ndarray]:
        return {"x": Grid((self.resolution,), boundary="periodic").coords()[0],
                "t": np.asarray(self.times)}

    def generate(self, indices: Sequence[int], seed: int, device=None) -> tuple[np.ndarray, np.ndarray]:
        dev = self.check_device(device)
        idx = _indices(indices)
        S = self.solver_grid_size
        stride = S // self.resolution
        u0 = torch.stack([gaussian_random_field((S,), self.alpha, self.tau, self.sigma,
                                                generator=sample_generator(seed, i)) for i in idx])
        u0 = u0.to(dev)
        # one trajectory at a time, each with the step its own max|u0| allows (the solver's
        # default), so a sample never depends on its batch-mates
        out = torch.stack([_burgers.solve_burgers(u0[k], self.nu, self.times, dt=self.dt)
                           for k in range(len(idx))])
        inputs = u0[:, None, ::stride].cpu().numpy().astype(np.float32)
        outputs = out[:, None, :, ::stride].cpu().numpy().astype(np.float32)
        return inputs, outputs.reshape(len(idx), *self.output_shape)


@dataclass(frozen=True)
class NavierStokesProblem(_ProblemBase):
    """2D vorticity Navier–Stokes on the unit torus (FNO setting): input ``w0``, output ``w`` at
    ``record_every, 2 record_every, ..., t_final``: ``(1, T, s, s)``.

    Solved at ``solver_resolution`` (default ``4 * resolution``: 256 for 64, as in the paper) and
    subsampled. Time step: by default each trajectory picks its own from the CFL bound at the
    solver resolution (safety factor ``cfl``) and the accuracy bound ``accuracy`` of
    :func:`~pdesurrogates.physics.navier_stokes.default_time_step`, recomputed at every recorded
    time; a fixed ``dt`` (the paper's ``1e-4``) is refused when it violates the advective CFL bound
    for a ``6 sigma`` estimate of the initial velocity. ``sigma`` defaults to ``7^(3/2)``, the amplitude of
    the FNO prior ``N(0, 7^(3/2) (-Laplace + 49 I)^(-2.5))``. ``precision="float32"`` halves the
    memory and speeds up GPU generation (the initial field is drawn in float64 either way).
    """

    name: ClassVar[str] = "navier-stokes"
    accelerated: ClassVar[bool] = True
    resolution: int = 64
    solver_resolution: int | None = None
    nu: float = 1e-3
    t_final: float = 50.0
    record_every: float = 1.0
    dt: float | None = None
    cfl: float = _ns.DEFAULT_CFL
    accuracy: float | None = None
    alpha: float = 2.5
    tau: float = 7.0
    sigma: float = 7.0**1.5
    forcing: str = "fno"
    scheme: str = "heun"
    precision: str = "float64"

    def validate(self) -> None:
        self._check_common()
        _require(self.nu > 0, self.name, f"viscosity nu must be > 0, got {self.nu}")
        _require(self.precision in ("float64", "float32"), self.name,
                 f"precision must be 'float64' or 'float32', got {self.precision!r}")
        _require(self.forcing in ("fno", "none"), self.name,
                 f"forcing must be 'fno' or 'none', got {self.forcing!r}")
        _require(self.scheme in _ns.SCHEMES, self.name,
                 f"scheme must be one of {', '.join(_ns.SCHEMES)}, got {self.scheme!r}")
        _require(self.t_final > 0 and self.record_every > 0, self.name,
                 f"t_final and record_every must be > 0, got {self.t_final}, {self.record_every}")
        n_rec = self.t_final / self.record_every
        _require(abs(n_rec - round(n_rec)) < 1e-9 * max(n_rec, 1), self.name,
                 f"t_final={self.t_final} must be a multiple of record_every={self.record_every}")
        _require(0 < self.cfl <= _ns.CFL_LIMIT, self.name,
                 f"cfl must be in (0, {_ns.CFL_LIMIT}], got {self.cfl}")
        _require(self.accuracy is None or self.accuracy > 0, self.name,
                 f"accuracy must be > 0 (or None for the scheme's default), got {self.accuracy}")
        S = self.solver_grid_size
        _require(S >= self.resolution and S % self.resolution == 0, self.name,
                 f"solver_resolution {S} must be a multiple of resolution {self.resolution}")
        _require(self.alpha > 1.0 and self.tau > 0 and self.sigma >= 0, self.name,
                 f"need alpha > 1, tau > 0, sigma >= 0; got {self.alpha}, {self.tau}, {self.sigma}")
        if self.dt is None:
            return
        _require(self.dt > 0, self.name, f"dt must be > 0, got {self.dt}")
        steps = self.record_every / self.dt
        _require(abs(steps - round(steps)) < 1e-6 * max(steps, 1), self.name,
                 f"record_every={self.record_every} must be a multiple of dt={self.dt}")
        limit = _ns.max_stable_dt(self.u_max_estimate, S)
        _require(self.dt <= limit, self.name,
                 f"dt={self.dt:.3g} violates the CFL bound dt * max|u| / h <= {_ns.CFL_LIMIT} for the "
                 f"expected max|u0| ~ {self.u_max_estimate:.3g} at {S}^2: use dt <= {limit:.3g}")

    @property
    def u_max_estimate(self) -> float:
        """``6`` standard deviations of an initial velocity component (covariance spectrum / |k|^2)."""
        S = self.solver_grid_size
        lam = covariance_eigenvalues((S, S), self.alpha, self.tau, self.sigma)
        k = np.fft.fftfreq(S, d=1.0 / S) * 2 * math.pi
        k2 = k[:, None] ** 2 + k[None, :] ** 2
        k2[0, 0] = np.inf
        return 6.0 * math.sqrt(float((lam / k2).sum()) / 2.0)

    @property
    def solver_grid_size(self) -> int:
        return 4 * self.resolution if self.solver_resolution is None else int(self.solver_resolution)

    @property
    def times(self) -> list[float]:
        n = round(self.t_final / self.record_every)
        return [self.record_every * (k + 1) for k in range(n)]

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (1, self.resolution, self.resolution)

    @property
    def output_shape(self) -> tuple[int, ...]:
        return (1, len(self.times), self.resolution, self.resolution)

    def grid_arrays(self) -> dict[str, np.ndarray]:
        x = Grid((self.resolution,), boundary="periodic").coords()[0]
        return {"x": x, "y": x, "t": np.asarray(self.times)}

    def generate(self, indices: Sequence[int], seed: int, device=None) -> tuple[np.ndarray, np.ndarray]:
        """All requested trajectories advance together as one batch on ``device``."""
        device = self.check_device(device)
        idx = _indices(indices)
        S = self.solver_grid_size
        stride = S // self.resolution
        w0 = torch.stack([gaussian_random_field((S, S), self.alpha, self.tau, self.sigma,
                                                generator=sample_generator(seed, i)) for i in idx])
        dtype = torch.float64 if self.precision == "float64" else torch.float32
        w0 = w0.to(device=device, dtype=dtype)
        forcing = _ns.fno_forcing(S, device=device, dtype=dtype) if self.forcing == "fno" else None
        w = _ns.solve_navier_stokes(w0, self.nu, self.times, dt=self.dt, forcing=forcing,
                                    scheme=self.scheme, cfl=self.cfl, accuracy=self.accuracy)
        inputs = w0[:, None, ::stride, ::stride].cpu().numpy().astype(np.float32)
        outputs = w[:, None, :, ::stride, ::stride].cpu().numpy().astype(np.float32)
        return inputs, outputs


@dataclass(frozen=True)
class HeatProblem(_ProblemBase):
    """2D heat equation ``u_t = c(t) Laplace u + f`` (Crank–Nicolson, :class:`HeatSequence`):
    input ``u0`` (a Neumann GRF times ``sin(pi x) sin(pi y)``, zero on the boundary), output ``u`` at
    ``n_times`` equally spaced times up to ``t_final``, ``(1, n_times, s, s)`` (boundary included).

    The diffusivity is ``max(0.1 sin 2 pi t, -10 sin 2 pi t, floor)`` (Khodak et al., ICLR 2024) and the
    forcing the moving Gaussian bump of :class:`~pdesurrogates.physics.heat.MovingBump`.
    """

    name: ClassVar[str] = "heat"
    resolution: int = 64
    dt: float = 1e-3
    t_final: float = 0.1
    n_times: int = 10
    diffusivity_floor: float = 1e-3
    forcing_amplitude: float = 1.0
    alpha: float = 2.0
    tau: float = 3.0

    def validate(self) -> None:
        self._check_common()
        _require(self.dt > 0 and self.t_final > 0, self.name,
                 f"dt and t_final must be > 0, got {self.dt}, {self.t_final}")
        _require(self.n_times >= 1, self.name, f"n_times must be >= 1, got {self.n_times}")
        total = self.t_final / self.dt
        _require(abs(total - round(total)) < 1e-6 * max(total, 1) and round(total) % self.n_times == 0,
                 self.name, f"t_final/dt = {total:.6g} must be a whole multiple of n_times={self.n_times}")
        _require(self.diffusivity_floor > 0, self.name,
                 f"diffusivity_floor must be > 0 (c(t) must stay positive), got {self.diffusivity_floor}")
        _require(self.alpha > 1 and self.tau > 0, self.name, "need alpha > 1, tau > 0")

    @property
    def times(self) -> list[float]:
        return [self.t_final * (k + 1) / self.n_times for k in range(self.n_times)]

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (1, self.resolution, self.resolution)

    @property
    def output_shape(self) -> tuple[int, ...]:
        return (1, self.n_times, self.resolution, self.resolution)

    def grid_arrays(self) -> dict[str, np.ndarray]:
        x, y = Grid((self.resolution, self.resolution)).coords()
        return {"x": x, "y": y, "t": np.asarray(self.times)}

    def generate(self, indices: Sequence[int], seed: int, device=None) -> tuple[np.ndarray, np.ndarray]:
        """Initial states and trajectories, float32; Crank–Nicolson steps solved by SciPy's sparse
        direct solver on the CPU (any other ``device`` is refused)."""
        self.check_device(device)
        idx = _indices(indices)
        s = self.resolution
        grid = Grid((s, s))
        x, y = grid.mesh()
        envelope = np.sin(math.pi * x) * np.sin(math.pi * y)
        steps = round(self.t_final / self.dt)
        every = steps // self.n_times
        inputs = np.zeros((len(idx), *self.input_shape), dtype=np.float32)
        outputs = np.zeros((len(idx), *self.output_shape), dtype=np.float32)
        for row, i in enumerate(idx):
            field = gaussian_random_field((s, s), self.alpha, self.tau, boundary="neumann",
                                          generator=sample_generator(seed, i)).numpy()
            u0 = field * envelope
            inputs[row, 0] = u0
            seq = HeatSequence(s - 2, dt=self.dt, steps=steps,
                               diffusivity=KhodakDiffusivity(self.diffusivity_floor),
                               forcing=MovingBump(amplitude=self.forcing_amplitude),
                               u0=u0[1:-1, 1:-1])
            for step in seq:
                seq.advance(spla.spsolve(step.A.tocsc(), step.b))
                if seq.step_index % every == 0:
                    outputs[row, 0, seq.step_index // every - 1, 1:-1, 1:-1] = seq.state()
        return inputs, outputs


PROBLEMS: dict[str, type] = {
    cls.name: cls
    for cls in (DarcyProblem, PoissonProblem, BurgersProblem, NavierStokesProblem, HeatProblem)
}


def _coerce(problem: str, key: str, annotation: str, value: Any) -> Any:
    """Convert a CLI/TOML value to the field's declared type (annotations are strings here)."""
    kinds = [part.strip() for part in str(annotation).split("|")]
    if value is None or (isinstance(value, str) and value.lower() == "none"):
        if "None" in kinds:
            return None
        raise UserInputError(f"{problem}: parameter {key!r} may not be None")
    for kind in kinds:
        if kind == "None":
            continue
        try:
            if kind == "int":
                if isinstance(value, bool):
                    raise ValueError
                if isinstance(value, float):
                    if not value.is_integer():
                        raise ValueError
                    return int(value)
                return int(value)
            if kind == "float":
                if isinstance(value, bool):
                    raise ValueError
                return float(value)
            if kind == "str":
                return str(value)
        except (TypeError, ValueError):
            continue
    raise UserInputError(f"{problem}: parameter {key!r} expects {annotation}, got {value!r}")


def get_problem(name: str, **params: Any):
    """Build the problem ``name`` with ``params`` (strings are converted to the field types).

    Raises
    ------
    UserInputError
        (a ``ValueError``) unknown problem or parameter (listing the valid ones), a value of the
        wrong type, or a non-physical / unstable setting (with the reason).
    """
    if name not in PROBLEMS:
        raise UserInputError(f"unknown PDE {name!r}; valid: {', '.join(PROBLEMS)}")
    cls = PROBLEMS[name]
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(params) - set(fields))
    if unknown:
        raise UserInputError(f"{name}: unknown parameter(s) {', '.join(unknown)}; valid: {', '.join(fields)}")
    values = {k: _coerce(name, k, fields[k].type, v) for k, v in params.items()}
    return cls(**values)
