"""Darcy inverse problem: recover the coefficient from scattered, noisy pressure observations.

Unknown ``a`` in ``-div(a grad u) = 1`` on the unit square, ``u = 0`` on the boundary, observed
as ``d = u(a)[obs] + noise`` at ``n_obs`` random interior nodes, Gaussian noise of standard
deviation ``noise x RMS(u[obs])``. The coefficient is ``a = exp(theta)`` and ``theta`` carries
the log-normal prior of the Darcy generator (``get_problem("darcy", coefficient="lognormal")``):
the Gaussian random field with covariance ``C = sigma^2 (-Laplace + tau^2)^(-alpha)`` (Neumann),
whose Karhunen-Loeve modes are the cosine modes of :func:`~pdesurrogates.physics.random.
gaussian_random_field`. We optimise in the **whitened KL coordinates** ``xi`` of that prior,
``theta = C^(1/2) xi``, and minimise the negative log posterior

    J(xi) = 1/2 sum_obs ((u(theta)[obs] - d) / noise_std)^2 + 1/2 |xi|^2,

so the answer is the MAP estimate of the very law the truths are drawn from: no regularisation
weight to tune, every mode of the grid kept (the prior itself damps the rough ones the data cannot
see), and the prior's part of the Hessian is the identity. The constant mode, which the generator drops (its fields have zero spatial mean), is kept with its
covariance eigenvalue ``sigma^2 tau^(-2 alpha)``: the mean of ``log a`` is then estimated too,
which an out-of-distribution coefficient needs.

The forward map ``theta -> u`` is either

* :class:`SolverForward`: :class:`~pdesurrogates.linalg.operators.StencilOperator` of
  ``exp(theta)`` and :func:`~pdesurrogates.linalg.pcg`, differentiated by one adjoint solve
  (:mod:`pdesurrogates.linalg.adjoint`), or
* :class:`SurrogateForward`: a trained neural operator (input ``log a``, output ``u``) loaded from
  a checkpoint, differentiated by autograd through the network; the constant mode goes through
  the exact scaling ``u(c a) = u(a) / c`` rather than the network (which never saw it).

The data of a truth come from a solve on a grid twice as fine (:func:`observe`), not from either
forward map.

:func:`invert` runs torch's L-BFGS (strong-Wolfe line search) on ``xi`` for either of them; it
optimises a field, not a model, so it is the method itself rather than a training loop. Surrogates
are trained by the package's engine (:func:`train_surrogate`).

``benchmarks/inverse_problem.py`` runs :func:`main`.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pdesurrogates.errors import UserInputError
from pdesurrogates.physics.grid import Grid
from pdesurrogates.physics.random import covariance_eigenvalues

NAME = "inverse_problem"


# ----------------------------------------------------------------------------------- the prior
@dataclass(frozen=True)
class LogNormalPrior:
    """Whitened Karhunen-Loeve coordinates of the Darcy generator's log-normal prior.

    ``theta = field(xi) = sum_k sqrt(lambda_k) xi_k phi_k`` on the ``resolution^2`` node grid, with
    ``phi_k`` the orthonormal cosine modes and ``lambda_k`` the covariance eigenvalues of
    :func:`~pdesurrogates.physics.random.gaussian_random_field` (Neumann boundary); ``xi ~ N(0, I)``
    gives the generator's law, plus the constant mode (see the module docstring).
    """

    resolution: int
    alpha: float = 2.0
    tau: float = 3.0
    sigma: float = 9.0

    def __post_init__(self) -> None:
        if self.resolution < 3:
            raise UserInputError(f"LogNormalPrior: resolution must be >= 3 nodes, got {self.resolution}")

    @property
    def shape(self) -> tuple[int, int]:
        return (self.resolution, self.resolution)

    def sqrt_eigenvalues(self, dtype=torch.float64) -> torch.Tensor:
        lam = covariance_eigenvalues(self.shape, self.alpha, self.tau, self.sigma, boundary="neumann")
        return torch.as_tensor(np.sqrt(lam), dtype=dtype)

    def basis(self, dtype=torch.float64) -> torch.Tensor:
        """``B[j, m] = c_m cos(pi m j / (n - 1))``, the cosine modes at the nodes (one axis)."""
        n = self.resolution
        j = torch.arange(n, dtype=torch.float64)
        basis = torch.cos(math.pi * j[:, None] * j[None, :] / (n - 1))
        basis[:, 1:] *= math.sqrt(2.0)
        return basis.to(dtype)

    def field(self, xi: torch.Tensor) -> torch.Tensor:
        """``theta = C^(1/2) xi``: ``xi`` ``(..., s, s)`` of mode coefficients -> nodal values."""
        B = self.basis(xi.dtype).to(xi.device)
        return B @ (xi * self.sqrt_eigenvalues(xi.dtype).to(xi.device)) @ B.T


# ------------------------------------------------------------------------------- forward maps
class SolverForward:
    """``theta (s, s) -> u (s, s)`` by PCG on ``StencilOperator(exp(theta), grid)``, differentiable
    by the implicit adjoint of :func:`~pdesurrogates.linalg.pcg`.

    Parameters
    ----------
    resolution : int
        Nodes per side.
    preconditioner : {"amg", "jacobi"}
        pyamg smoothed aggregation (rebuilt for every ``theta``) or the diagonal.
    rtol : float
        Relative residual of the forward and the adjoint solves.
    """

    PRECONDITIONERS = ("amg", "jacobi")

    def __init__(self, resolution: int, preconditioner: str = "amg", rtol: float = 1e-10):
        if preconditioner not in self.PRECONDITIONERS:
            raise UserInputError(f"SolverForward: preconditioner must be one of "
                                 f"{', '.join(self.PRECONDITIONERS)}, got {preconditioner!r}")
        self.grid = Grid((resolution, resolution))
        self.preconditioner, self.rtol = preconditioner, rtol
        self.name = f"adjoint ({'AMG' if preconditioner == 'amg' else 'Jacobi'}-PCG)"

    def __call__(self, theta: torch.Tensor) -> torch.Tensor:
        from pdesurrogates.linalg import (
            AMGPreconditioner,
            JacobiPreconditioner,
            StencilOperator,
            pcg,
        )

        op = StencilOperator(torch.exp(theta), self.grid)
        fixed = StencilOperator(op.a.detach(), self.grid).to_scipy()
        M = AMGPreconditioner(fixed) if self.preconditioner == "amg" else JacobiPreconditioner(fixed)
        m = self.grid.shape[0] - 2
        f = torch.ones(m * m, dtype=theta.dtype, device=theta.device)
        res = pcg(op, f, rtol=self.rtol, maxiter=20 * m * m, M=M)
        if not res.converged:
            raise RuntimeError(f"SolverForward: PCG did not reach rtol={self.rtol} in {res.iterations} "
                               "iterations")
        return torch.nn.functional.pad(res.x.reshape(m, m), (1, 1, 1, 1))


class SurrogateForward:
    """``theta (s, s) -> u (s, s)`` by a trained neural operator with input ``log a``.

    The checkpoint's model and normalizers are applied with autograd on (``Surrogate.__call__``
    predicts without it); the network runs in its own dtype (float32), ``u`` is returned in
    ``theta``'s.

    ``scale_equivariant`` (default) uses the exact symmetry of ``-div(a grad u) = f`` (also of its
    finite-volume matrix): ``u(c a) = u(a) / c``. The network sees ``theta - m`` and its output is
    multiplied by ``exp(-m)``, with ``m`` the mean of ``theta`` under the trapezoidal rule, which is
    exactly the coefficient of the constant cosine mode. The generator's fields have that mode at
    zero, so the network is never asked about a constant shift of ``log a`` it was not trained on.
    """

    def __init__(self, checkpoint: str | Path, name: str = "surrogate", *, scale_equivariant: bool = True):
        from pdesurrogates.models import load_checkpoint

        ckpt = load_checkpoint(checkpoint)
        self.model = ckpt.model.eval().requires_grad_(False)
        self.normalizers = dict(ckpt.normalizers or {})
        self.dtype = next(self.model.parameters()).dtype
        self.name, self.scale_equivariant = name, scale_equivariant

    def network(self, theta: torch.Tensor) -> torch.Tensor:
        """The checkpoint's prediction ``(s, s)`` for ``log a = theta``, differentiable."""
        x = theta.to(self.dtype)[None, None]
        if "input" in self.normalizers:
            x = self.normalizers["input"].encode(x)
        y = self.model(x)
        if "output" in self.normalizers:
            y = self.normalizers["output"].decode(y)
        return y[0, 0].to(theta.dtype)

    def __call__(self, theta: torch.Tensor) -> torch.Tensor:
        if not self.scale_equivariant:
            return self.network(theta)
        m = trapezoid_mean(theta)
        return torch.exp(-m) * self.network(theta - m)


def trapezoid_mean(field: torch.Tensor) -> torch.Tensor:
    """Mean of nodal values over the unit square by the trapezoidal rule (half weights on edges):
    the constant-mode coefficient of :meth:`LogNormalPrior.field`, since the trapezoidal rule
    integrates every other cosine mode of the grid to zero."""
    n = field.shape[-1]
    w = torch.ones(n, dtype=field.dtype, device=field.device)
    w[0] = w[-1] = 0.5
    w = w / (n - 1)
    return (w[:, None] * field * w[None, :]).sum((-2, -1))


# -------------------------------------------------------------------------------- the inversion
@dataclass
class Inversion:
    """What :func:`invert` returns: the MAP estimate and how it was reached."""

    theta: torch.Tensor  # (s, s) log a
    xi: torch.Tensor  # (s, s) whitened KL coordinates
    iterations: int  # L-BFGS iterations
    evaluations: int  # objective + gradient evaluations (forward + backward of the map)
    seconds: float
    misfit: float  # RMS of (u[obs] - d) / noise_std under the map that was optimised
    tolerance_grad: float  # the stopping threshold on max |dJ/dxi|
    trace: list[tuple[float, torch.Tensor]] = field(default_factory=list)  # (seconds, theta) per evaluation


def invert(forward, prior: LogNormalPrior, obs: torch.Tensor, data: torch.Tensor, noise_std: float, *,
           xi0: torch.Tensor | None = None, max_iter: int = 500, rtol_grad: float = 1e-5,
           tolerance_grad: float | None = None) -> Inversion:
    """MAP estimate of ``theta`` by L-BFGS on the whitened prior coordinates (module docstring).

    Parameters
    ----------
    forward : callable
        ``theta (s, s) float64 -> u (s, s)``, differentiable (:class:`SolverForward`,
        :class:`SurrogateForward`).
    prior : LogNormalPrior
    obs : torch.Tensor
        ``(n_obs,)`` flat indices into the ``(s, s)`` node grid.
    data : torch.Tensor
        ``(n_obs,)`` observed ``u``.
    noise_std : float
        Standard deviation of the observation noise.
    xi0 : torch.Tensor, optional
        Start (default ``0``: the prior mean, ``a = 1``).
    max_iter : int
        Most L-BFGS iterations.
    rtol_grad, tolerance_grad : float
        Stop when the largest entry of ``dJ/dxi`` is below ``tolerance_grad``, by default
        ``rtol_grad`` times its value at the start (or when ``J`` and ``xi`` stop changing, to
        ``1e-10``: the line search has run out of precision).
    """
    if obs.shape != data.shape or obs.ndim != 1:
        raise UserInputError(f"invert: obs and data must both be (n_obs,), got {tuple(obs.shape)} and "
                             f"{tuple(data.shape)}")
    xi = (torch.zeros(prior.shape, dtype=torch.float64) if xi0 is None else xi0.detach().clone())
    xi.requires_grad_(True)
    trace: list[tuple[float, torch.Tensor]] = []
    start = time.perf_counter()

    def objective():
        xi.grad = None
        theta = prior.field(xi)
        residual = (forward(theta).reshape(-1)[obs] - data) / noise_std
        loss = 0.5 * (residual**2).sum() + 0.5 * (xi**2).sum()
        loss.backward()
        trace.append((time.perf_counter() - start, theta.detach()))
        return loss

    first = [objective()]  # its gradient sets the scale of the stopping test; L-BFGS reuses it
    if tolerance_grad is None:
        tolerance_grad = rtol_grad * float(xi.grad.abs().max())
    opt = torch.optim.LBFGS([xi], lr=1.0, max_iter=max_iter, max_eval=2 * max_iter,
                            tolerance_grad=tolerance_grad, tolerance_change=1e-10, history_size=100,
                            line_search_fn="strong_wolfe")
    opt.step(lambda: first.pop() if first else objective())
    seconds = time.perf_counter() - start
    state = opt.state[xi]
    with torch.no_grad():
        theta = prior.field(xi.detach())
        misfit = float(((forward(theta).reshape(-1)[obs] - data) / noise_std).pow(2).mean().sqrt())
    return Inversion(theta, xi.detach(), int(state["n_iter"]), len(trace), seconds, misfit, tolerance_grad,
                     trace)


# ------------------------------------------------------------------------- truths and data
def draw_truth(prior: LogNormalPrior, seed: int, index: int, *, kind: str = "lognormal",
               sigma: float | None = None, contrast: float = 1.0) -> torch.Tensor:
    """``log a`` of truth ``index``: a draw of the generator's coefficient for ``(seed, index)``.

    ``kind="lognormal"``: the Neumann GRF (amplitude ``sigma``, default the prior's);
    ``"two-phase"``: the generator's thresholded coefficient with ``a = exp(+-contrast)``.
    """
    from pdesurrogates.physics.darcy import sample_coefficient
    from pdesurrogates.physics.random import sample_generator

    gen = sample_generator(seed, index)
    sigma = prior.sigma if sigma is None else sigma
    if kind == "lognormal":
        a = sample_coefficient(prior.resolution, gen, kind="lognormal", alpha=prior.alpha, tau=prior.tau,
                               sigma=sigma)
    elif kind == "two-phase":
        a = sample_coefficient(prior.resolution, gen, kind="threshold", alpha=prior.alpha, tau=prior.tau,
                               sigma=sigma, high=math.exp(contrast), low=math.exp(-contrast))
    else:
        raise UserInputError(f"draw_truth: kind must be 'lognormal' or 'two-phase', got {kind!r}")
    return torch.from_numpy(np.log(a))


def observe(theta: torch.Tensor, n_obs: int, noise: float, seed: int, *, refinement: int = 2):
    """Noisy observations of ``u(exp(theta))`` at ``n_obs`` random interior nodes.

    ``u`` is solved (sparse direct) on a grid ``refinement`` times finer, ``log a`` interpolated
    bilinearly, and sampled at the coarse nodes: the data do not come from the discretisation the
    inversion uses. Returns ``(obs, data, noise_std)``: flat node indices ``(n_obs,)``, ``u[obs] +
    noise_std * N(0, 1)`` and ``noise_std = noise * RMS(u[obs])``.
    """
    from pdesurrogates.physics.darcy import solve_darcy

    s = theta.shape[-1]
    if not 1 <= n_obs <= (s - 2) ** 2:
        raise UserInputError(f"observe: n_obs must be in 1..{(s - 2) ** 2} (interior nodes), got {n_obs}")
    fine = refinement * (s - 1) + 1
    log_a = torch.nn.functional.interpolate(theta[None, None], size=(fine, fine), mode="bilinear",
                                            align_corners=True)[0, 0]
    u = torch.from_numpy(solve_darcy(np.exp(log_a.numpy()))[::refinement, ::refinement])
    gen = torch.Generator().manual_seed(seed)
    interior = torch.arange(s * s).reshape(s, s)[1:-1, 1:-1].reshape(-1)
    obs = interior[torch.randperm(interior.numel(), generator=gen)[:n_obs]].sort().values
    clean = u.reshape(-1)[obs]
    noise_std = noise * float(clean.pow(2).mean().sqrt())
    data = clean + noise_std * torch.randn(n_obs, generator=gen, dtype=clean.dtype)
    return obs, data, noise_std


def relative_l2(estimate: torch.Tensor, truth: torch.Tensor) -> float:
    return float((estimate - truth).norm() / truth.norm())


# ------------------------------------------------------------------------------ the surrogate
def train_surrogate(prior: LogNormalPrior, out_dir: str | Path, *, n_train: int, n_val: int,
                    model: dict, epochs: int, batch_size: int, lr: float, seed: int = 0) -> dict:
    """Generate log-normal Darcy data from the prior and train a surrogate ``log a -> u`` with the
    engine; the checkpoint is ``out_dir/checkpoints/best``.

    Returns the seconds spent generating and training, the validation error and the checkpoint.
    """
    from pdesurrogates.data import from_arrays
    from pdesurrogates.physics.problems import get_problem
    from pdesurrogates.train import config_from_dict, fit
    from pdesurrogates.train.tasks.surrogate import SurrogateTask

    problem = get_problem("darcy", resolution=prior.resolution, coefficient="lognormal", alpha=prior.alpha,
                          tau=prior.tau, sigma=prior.sigma)
    t0 = time.perf_counter()
    a, u = problem.generate(range(n_train), seed)
    a_val, u_val = problem.generate(range(n_val), seed + 1)
    generate_seconds = time.perf_counter() - t0
    train = from_arrays(np.log(a), u, pde="darcy", params={"input": "log a", **problem.to_dict()})
    val = from_arrays(np.log(a_val), u_val, pde="darcy")
    config = config_from_dict({"data": {"train": "<in memory>"}, "model": dict(model),
                               "optimizer": {"lr": lr}, "train": {"epochs": epochs, "batch_size": batch_size},
                               "seed": seed})
    t0 = time.perf_counter()
    result = fit(SurrogateTask(config, train_data=train, test_data={"val": val}), config, out_dir,
                 device="cpu", progress=False, overwrite=True)
    train_seconds = time.perf_counter() - t0
    return {"checkpoint": Path(out_dir) / "checkpoints" / "best", "generate_seconds": generate_seconds,
            "train_seconds": train_seconds, "val_rel_l2": min(r["val_l2"] for r in result.metrics),
            "n_train": n_train, "epochs": epochs}


# ------------------------------------------------------------------------------ the benchmark
SIZES: dict[str, dict[str, Any]] = {
    "default": {"resolution": 33, "n_obs": 100, "noise": 0.01, "refinement": 2, "truths": 5, "ood_truths": 2,
                "sigma": 9.0, "ood_sigma": 18.0, "contrast": 1.0, "max_iter": 500, "n_train": 1000,
                "n_val": 100, "model": {"name": "fno", "width": 32, "modes": 12, "n_layers": 4},
                "epochs": 30, "batch_size": 16, "lr": 3e-3, "timing_repeats": 5},
    "smoke": {"resolution": 17, "n_obs": 30, "noise": 0.01, "refinement": 2, "truths": 1, "ood_truths": 1,
              "sigma": 9.0, "ood_sigma": 18.0, "contrast": 1.0, "max_iter": 5, "n_train": 16, "n_val": 4,
              "model": {"name": "fno", "width": 8, "modes": 4, "n_layers": 2}, "epochs": 1, "batch_size": 8,
              "lr": 3e-3, "timing_repeats": 1},
}
TRAIN_SEED, TRUTH_SEED, OOD_SEED = 0, 2, 3  # training uses TRAIN_SEED and TRAIN_SEED + 1 (validation)
ADJOINT, JACOBI, SURROGATE, HYBRID, PRIOR = ("adjoint (AMG-PCG)", "adjoint (Jacobi-PCG)", "surrogate (FNO)",
                                             "surrogate, then adjoint", "prior mean")
TRACE_POINTS = 60


def _cases(cfg: dict) -> list[dict]:
    """(case, truth index, log a) for every inversion of the run."""
    prior = LogNormalPrior(cfg["resolution"], sigma=cfg["sigma"])
    cases = [{"case": "in distribution", "index": i, "theta": draw_truth(prior, TRUTH_SEED, i)}
             for i in range(cfg["truths"])]
    cases += [{"case": f"larger variance (sigma x{cfg['ood_sigma'] / cfg['sigma']:g})", "index": i,
               "theta": draw_truth(prior, OOD_SEED, i, sigma=cfg["ood_sigma"])} for i in range(cfg["ood_truths"])]
    cases += [{"case": f"two-phase (a = e^+-{cfg['contrast']:g})", "index": i,
               "theta": draw_truth(prior, OOD_SEED, i, kind="two-phase", contrast=cfg["contrast"])}
              for i in range(cfg["ood_truths"])]
    return cases


def _evaluation_seconds(forward, thetas, repeats: int) -> float:
    """Median over ``thetas`` of the best-of-``repeats`` time of one ``u`` and its gradient."""
    times = []
    for theta in thetas:
        best = math.inf
        for _ in range(repeats):
            t = theta.clone().requires_grad_(True)
            start = time.perf_counter()
            forward(t).sum().backward()
            best = min(best, time.perf_counter() - start)
        times.append(best)
    return float(np.median(times))


def _row(case: dict, method: str, inv: Inversion | None, misfit: float, truth: torch.Tensor,
         seconds: float | None = None, evaluations: int | None = None) -> dict:
    theta = torch.zeros_like(truth) if inv is None else inv.theta
    row = {"case": case["case"], "truth": case["index"], "method": method,
           "rel_l2_log_a": relative_l2(theta, truth), "rel_l2_a": relative_l2(theta.exp(), truth.exp()),
           "misfit": misfit}
    if inv is not None:
        evals = inv.evaluations if evaluations is None else evaluations
        row.update(misfit_model=inv.misfit, iterations=inv.iterations, evaluations=evals,
                   seconds=inv.seconds if seconds is None else seconds)
        step = max(1, len(inv.trace) // TRACE_POINTS)
        offset = 0.0 if seconds is None else seconds - inv.seconds
        row["trace"] = [[round(offset + t, 4), round(relative_l2(th, truth), 5)]
                        for t, th in inv.trace[::step] + inv.trace[-1:]]
    return row


def run(cfg: dict, *, log=print) -> dict:
    """Train the surrogate, invert every truth with each method; the rows and summaries."""
    prior = LogNormalPrior(cfg["resolution"], sigma=cfg["sigma"])
    solver = SolverForward(cfg["resolution"], "amg")
    jacobi = SolverForward(cfg["resolution"], "jacobi")
    with tempfile.TemporaryDirectory() as tmp:
        training = train_surrogate(prior, Path(tmp) / "surrogate", n_train=cfg["n_train"], n_val=cfg["n_val"],
                                   model=cfg["model"], epochs=cfg["epochs"], batch_size=cfg["batch_size"],
                                   lr=cfg["lr"], seed=TRAIN_SEED)
        surrogate = SurrogateForward(training["checkpoint"], SURROGATE)
    training.pop("checkpoint")
    log(f"surrogate: {training}")
    rows, maps, truths = [], {}, []
    for case in _cases(cfg):
        truth = case["theta"]
        seed = 1000 * (1 + len(truths))
        obs, data, noise_std = observe(truth, cfg["n_obs"], cfg["noise"], seed, refinement=cfg["refinement"])

        def misfit(theta, obs=obs, data=data, noise_std=noise_std):
            with torch.no_grad():
                return float(((solver(theta).reshape(-1)[obs] - data) / noise_std).pow(2).mean().sqrt())

        with torch.no_grad():
            u_true, u_surr = solver(truth), surrogate(truth)
        truths.append({"case": case["case"], "truth": case["index"], "noise_std": noise_std,
                       "misfit_of_truth": misfit(truth),
                       "surrogate_forward_error": relative_l2(u_surr, u_true)})
        rows.append(_row(case, PRIOR, None, misfit(torch.zeros_like(truth)), truth))
        args = (prior, obs, data, noise_std)
        solved = invert(solver, *args, max_iter=cfg["max_iter"])
        rows.append(_row(case, ADJOINT, solved, misfit(solved.theta), truth))
        if case["case"] == "in distribution":
            slow = invert(jacobi, *args, max_iter=cfg["max_iter"])
            rows.append(_row(case, JACOBI, slow, misfit(slow.theta), truth))
        fast = invert(surrogate, *args, max_iter=cfg["max_iter"])
        rows.append(_row(case, SURROGATE, fast, misfit(fast.theta), truth))
        polished = invert(solver, *args, xi0=fast.xi, max_iter=cfg["max_iter"],
                          tolerance_grad=solved.tolerance_grad)  # stop where the adjoint run stopped
        rows.append(_row(case, HYBRID, polished, misfit(polished.theta), truth,
                         seconds=fast.seconds + polished.seconds))
        for r in rows[-4:]:
            log(" | ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in r.items()
                           if k != "trace"))
        if case["index"] == 0:
            maps[case["case"]] = {"truth": truth, ADJOINT: solved.theta, SURROGATE: fast.theta}
    thetas = [c["theta"] for c in _cases(dict(cfg, ood_truths=0))]
    costs = {name: _evaluation_seconds(fw, thetas, cfg["timing_repeats"])
             for name, fw in ((ADJOINT, solver), (JACOBI, jacobi), (SURROGATE, surrogate))}
    log(f"seconds per evaluation (u and its gradient): {costs}")
    maps = {case: {k: np.round(v.numpy(), 4) for k, v in fields.items()} for case, fields in maps.items()}
    return {"rows": rows, "truths": truths, "training": training, "evaluation_seconds": costs, "maps": maps}


def _mean_std(values: list[float]) -> tuple[float, float]:
    v = np.asarray(values, dtype=np.float64)
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0


def summarize(rows: list[dict]) -> list[dict]:
    """Mean and spread (sample standard deviation) over truths, per case and method."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        groups.setdefault((r["case"], r["method"]), []).append(r)
    out = []
    for (case, method), group in groups.items():
        entry: dict[str, Any] = {"case": case, "method": method, "truths": len(group)}
        for key in ("rel_l2_log_a", "rel_l2_a", "misfit", "misfit_model", "iterations", "evaluations", "seconds"):
            if key in group[0]:
                mean, std = _mean_std([r[key] for r in group])
                entry[key], entry[f"{key}_std"] = mean, std
        out.append(entry)
    return out


def break_even(summary: list[dict], training: dict, baseline: str = ADJOINT) -> float:
    """Inversions after which training + surrogate inversions cost less than ``baseline`` ones
    (in-distribution means; ``inf`` when the surrogate inversion is not faster)."""
    seconds = {s["method"]: s["seconds"] for s in summary if s["case"] == "in distribution" and "seconds" in s}
    saving = seconds[baseline] - seconds[SURROGATE]
    cost = training["generate_seconds"] + training["train_seconds"]
    return cost / saving if saving > 0 else math.inf


def table(summary: list[dict]) -> list[dict]:
    """The Markdown rows: ``mean +- std`` strings."""
    def pm(s, key, fmt):
        if key not in s:
            return ""
        return f"{s[key]:{fmt}}" + (f" ± {s[key + '_std']:{fmt}}" if s["truths"] > 1 else "")

    return [{"case": s["case"], "method": s["method"], "truths": s["truths"],
             "log a rel. L2": pm(s, "rel_l2_log_a", ".3f"), "a rel. L2": pm(s, "rel_l2_a", ".3f"),
             "misfit (solver)": pm(s, "misfit", ".2f"), "misfit (own map)": pm(s, "misfit_model", ".2f"),
             "L-BFGS iterations": pm(s, "iterations", ".0f"), "evaluations": pm(s, "evaluations", ".0f"),
             "seconds": pm(s, "seconds", ".1f")} for s in summary]


def notes(result: dict, cfg: dict) -> str:
    tr, costs, summary = result["training"], result["evaluation_seconds"], result["summary"]
    ind = {s["method"]: s for s in summary if s["case"] == "in distribution"}
    fwd = [t for t in result["truths"] if t["case"] == "in distribution"]
    ood = [t for t in result["truths"] if t["case"] != "in distribution"]
    lines = [
        (f"Grid {cfg['resolution']}^2 nodes ({(cfg['resolution'] - 2) ** 2} unknowns), {cfg['n_obs']} observed "
        f"interior nodes, {cfg['noise']:.0%} Gaussian noise (of RMS u), data solved on a {cfg['refinement']}x "
        f"finer grid. Prior: the Darcy generator's log-normal field (alpha {LogNormalPrior.alpha}, tau "
        f"{LogNormalPrior.tau}, sigma {cfg['sigma']:g}, plus the constant mode), MAP by L-BFGS in its whitened "
        f"KL coordinates from the prior mean, at most {cfg['max_iter']} iterations. 'misfit' is the RMS of "
        f"(u[obs] - d) / noise_std with the solver's u (about 1 at the noise level), 'misfit (own map)' with "
        f"the map the method optimised. Mean ± sample std over truths."),
        "",
        f"Surrogate: {cfg['model']}, {tr['n_train']} training samples ({tr['generate_seconds']:.1f} s to "
        f"generate), {tr['epochs']} epochs on the engine ({tr['train_seconds']:.0f} s), validation rel. L2 "
        f"{tr['val_rel_l2']:.4f}; forward rel. L2 error at the truths: in distribution "
        f"{np.mean([t['surrogate_forward_error'] for t in fwd]):.4f}, "
        + ", ".join(f"{t['case']} #{t['truth']} {t['surrogate_forward_error']:.4f}" for t in ood) + ".",
        "",
        f"Times: {torch.get_num_threads()} CPU thread(s) on a shared machine (they include contention). "
        "Seconds per evaluation (u and its gradient w.r.t. theta, median of best-of-"
        f"{cfg['timing_repeats']}): " + ", ".join(f"{k} {v * 1e3:.1f} ms" for k, v in costs.items())
        + f"; surrogate / AMG-PCG = {costs[SURROGATE] / costs[ADJOINT]:.2f}x.",
        "",
        (f"Break-even (generation + training / time saved per in-distribution inversion): vs AMG-PCG "
         f"{break_even(summary, tr, ADJOINT):.1f} inversions, vs Jacobi-PCG {break_even(summary, tr, JACOBI):.1f}."),
    ]
    if SURROGATE in ind and ADJOINT in ind:
        lines += ["", (f"In distribution, the surrogate's log-a error is "
                       f"{ind[SURROGATE]['rel_l2_log_a'] / ind[ADJOINT]['rel_l2_log_a']:.2f}x the adjoint's and "
                       f"its solver misfit {ind[SURROGATE]['misfit']:.2f} vs {ind[ADJOINT]['misfit']:.2f}.")]
    return "\n".join(lines)


def plot(payload: dict, path: str | Path) -> None:
    """Truth vs reconstructions (log a) per case, and error vs wall time, from the result JSON."""
    from matplotlib.figure import Figure

    maps = payload["maps"]
    fig = Figure(figsize=(13.5, 3.2 * len(maps)), layout="constrained")
    grid = fig.add_gridspec(len(maps), 4)
    for i, (case, fields) in enumerate(maps.items()):
        truth = np.asarray(fields["truth"])
        lo, hi = float(truth.min()), float(truth.max())
        for j, (name, values) in enumerate(fields.items()):
            ax = fig.add_subplot(grid[i, j])
            im = ax.imshow(np.asarray(values).T, origin="lower", extent=(0, 1, 0, 1), vmin=lo, vmax=hi,
                           cmap="viridis")
            err = "" if name == "truth" else f"\nrel. L2 {np.linalg.norm(values - truth) / np.linalg.norm(truth):.3f}"
            ax.set_title(f"{case}: {name}{err}" if j == 0 else f"{name}{err}", fontsize=8)
            ax.set_xticks([]), ax.set_yticks([])
        fig.colorbar(im, ax=ax, fraction=0.046, label="log a")
    ax = fig.add_subplot(grid[:, 3])
    colors = {ADJOINT: "C0", JACOBI: "C2", SURROGATE: "C1", HYBRID: "C3"}
    seen = set()
    for row in payload["inversions"]:
        if row["case"] != "in distribution" or "trace" not in row:
            continue
        t, e = np.asarray(row["trace"]).T
        label = None if row["method"] in seen else row["method"]
        seen.add(row["method"])
        ax.loglog(np.maximum(t, 1e-3), e, color=colors[row["method"]], lw=1, alpha=0.8, label=label)
    ax.set_xlabel("wall time of the inversion (s)")
    ax.set_ylabel("rel. L2 error of log a")
    ax.set_title("in distribution: error vs time\n(surrogate training not included)", fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    from pdesurrogates.bench.report import RESULTS, device_name, write_results

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="default")
    parser.add_argument("--out", type=Path, default=None, help="folder (default benchmarks/results/<device>)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing results")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--plot-only", action="store_true", help="redraw the PNG from the existing JSON")
    args = parser.parse_args(argv)
    out = args.out if args.out is not None else RESULTS / device_name("cpu")
    json_path, png_path = out / f"{NAME}.json", out / f"{NAME}.png"
    if args.plot_only:
        if not json_path.is_file():
            raise FileNotFoundError(f"{json_path} not found; run the benchmark first")
        plot(json.loads(json_path.read_text()), png_path)
        return 0
    if json_path.exists() and not args.overwrite:
        raise FileExistsError(f"{json_path} exists; pass --overwrite to replace it")
    torch.set_num_threads(args.threads)
    cfg = dict(SIZES[args.size], size=args.size, seeds={"train": TRAIN_SEED, "truths": TRUTH_SEED,
                                                        "out_of_distribution": OOD_SEED})
    result = run(cfg)
    result["summary"] = summarize(result["rows"])
    result["break_even"] = {ADJOINT: break_even(result["summary"], result["training"], ADJOINT),
                            JACOBI: break_even(result["summary"], result["training"], JACOBI)}
    paths = write_results(NAME, table(result["summary"]), config=cfg, device="cpu", out_dir=out,
                          title="Darcy inverse problem: adjoint of the solver vs a trained surrogate",
                          notes=notes(result, cfg),
                          extra={key: result[key] for key in ("summary", "truths", "training",
                                                              "evaluation_seconds", "break_even", "maps")}
                          | {"inversions": result["rows"]})
    plot(json.loads(paths["json"].read_text()), png_path)
    print(f"wrote {paths['json']}, {paths['md']}, {png_path}")
    return 0
