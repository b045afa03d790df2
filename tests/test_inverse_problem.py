"""Darcy inverse problem (pdesurrogates.bench.inverse_problem): the prior is the generator's, the
adjoint gradient of the MAP objective matches finite differences, the inversion recovers log a,
the surrogate map is the checkpoint's prediction with a gradient, and the benchmark's result files."""

from __future__ import annotations

import json
import math

import pytest
import torch

from pdesurrogates.bench.inverse_problem import (
    LogNormalPrior,
    SolverForward,
    SurrogateForward,
    draw_truth,
    invert,
    main,
    observe,
    relative_l2,
    train_surrogate,
    trapezoid_mean,
)
from pdesurrogates.errors import UserInputError
from pdesurrogates.physics.darcy import sample_coefficient
from pdesurrogates.physics.random import gaussian_random_field, sample_generator


def test_prior_field_is_the_generators_gaussian_random_field():
    """field(xi) with the generator's own normal draws (constant mode dropped, as it drops it) is
    the generator's field to round-off; draw_truth is log of the Darcy log-normal coefficient."""
    prior = LogNormalPrior(17, sigma=9.0)
    xi = torch.randn(prior.shape, generator=sample_generator(4, 2), dtype=torch.float64)
    xi[0, 0] = 0.0
    reference = gaussian_random_field(prior.shape, 2.0, 3.0, 9.0, boundary="neumann",
                                      generator=sample_generator(4, 2))
    assert float((prior.field(xi) - reference).abs().max()) < 1e-12
    a = sample_coefficient(17, sample_generator(4, 2), kind="lognormal", sigma=9.0)
    assert torch.allclose(draw_truth(prior, 4, 2), torch.log(torch.from_numpy(a)), rtol=0, atol=1e-12)
    # the constant mode carries the covariance eigenvalue sigma^2 tau^(-2 alpha) = 1 here
    one = torch.zeros(prior.shape, dtype=torch.float64)
    one[0, 0] = 1.0
    assert torch.allclose(prior.field(one), torch.ones(prior.shape, dtype=torch.float64), atol=1e-12)
    # the trapezoidal mean reads off exactly that mode (the rule integrates the other cosines to 0)
    assert abs(float(trapezoid_mean(reference))) < 1e-14
    assert abs(float(trapezoid_mean(prior.field(xi + 0.7 * one))) - 0.7) < 1e-14


def test_solver_forward_has_the_scale_symmetry_the_surrogate_uses():
    """u(exp(theta + c)) = exp(-c) u(exp(theta)) for the discrete problem (to solver tolerance)."""
    prior = LogNormalPrior(13)
    theta = draw_truth(prior, 1, 0)
    forward = SolverForward(13, "jacobi", rtol=1e-12)
    with torch.no_grad():
        u, shifted = forward(theta), forward(theta + 0.8)
    assert relative_l2(shifted, math.exp(-0.8) * u) < 1e-10


def _objective(forward, prior, obs, data, noise_std):
    def J(xi):
        residual = (forward(prior.field(xi)).reshape(-1)[obs] - data) / noise_std
        return 0.5 * (residual**2).sum() + 0.5 * (xi**2).sum()
    return J


@pytest.mark.parametrize("preconditioner", ["amg", "jacobi"])
def test_adjoint_gradient_of_the_map_objective_matches_finite_differences(preconditioner):
    """float64: dJ/dxi by one adjoint solve against central differences along random directions."""
    prior = LogNormalPrior(11)
    truth = draw_truth(prior, 0, 0)
    obs, data, noise_std = observe(truth, 20, 0.01, seed=0)
    J = _objective(SolverForward(11, preconditioner, rtol=1e-13), prior, obs, data, noise_std)
    gen = torch.Generator().manual_seed(1)
    xi = 0.5 * torch.randn(prior.shape, generator=gen, dtype=torch.float64)
    x = xi.clone().requires_grad_(True)
    J(x).backward()
    for _ in range(3):
        v = torch.randn(prior.shape, generator=gen, dtype=torch.float64)
        eps = 1e-5
        fd = (float(J(xi + eps * v)) - float(J(xi - eps * v))) / (2 * eps)
        assert abs(float((x.grad * v).sum()) - fd) <= 1e-6 * abs(fd)


def test_adjoint_inversion_recovers_log_a_on_a_17_grid():
    """50 noisy observations (1 %) of a prior draw: the MAP estimate's log-a error is below 0.4,
    2.5x better than the prior mean (error 1), and it fits the data to about the noise level
    (RMS normalised misfit <= 1.5, from > 10 at the prior mean)."""
    prior = LogNormalPrior(17)
    truth = draw_truth(prior, 7, 0)
    obs, data, noise_std = observe(truth, 50, 0.01, seed=0)
    forward = SolverForward(17, "amg")
    with torch.no_grad():
        start_misfit = float(((forward(torch.zeros_like(truth)).reshape(-1)[obs] - data) / noise_std)
                             .pow(2).mean().sqrt())
    result = invert(forward, prior, obs, data, noise_std, max_iter=60)
    assert relative_l2(torch.zeros_like(truth), truth) == 1.0
    assert relative_l2(result.theta, truth) < 0.4
    assert start_misfit > 10 and result.misfit <= 1.5
    assert result.iterations <= 60 and result.evaluations == len(result.trace) >= result.iterations


def test_surrogate_forward_is_the_checkpoints_prediction_with_a_gradient(tmp_path):
    from pdesurrogates.models import Surrogate

    prior = LogNormalPrior(9)
    info = train_surrogate(prior, tmp_path / "run", n_train=8, n_val=2, epochs=1, batch_size=4, lr=1e-3,
                           model={"name": "fno", "width": 4, "modes": 3, "n_layers": 1})
    forward = SurrogateForward(info["checkpoint"])
    theta = draw_truth(prior, 9, 0).requires_grad_(True)  # zero trapezoidal mean, like the training data
    u = forward(theta)
    expected = Surrogate.load(info["checkpoint"])(theta.detach()[None, None].float())[0, 0]
    assert u.dtype == torch.float64 and torch.allclose(u.float(), expected, atol=1e-6)
    assert torch.allclose(forward.network(theta).float(), expected, atol=1e-6)
    u.sum().backward()
    assert theta.grad is not None and bool(theta.grad.abs().sum() > 0)
    with torch.no_grad():  # a constant shift of log a scales u exactly, as the solver's does
        assert torch.allclose(forward(theta + 0.5), math.exp(-0.5) * forward(theta), rtol=1e-5)


def test_bad_input_is_refused_with_its_name():
    prior = LogNormalPrior(9)
    with pytest.raises(UserInputError, match="n_obs"):
        observe(torch.zeros(9, 9, dtype=torch.float64), 50, 0.01, seed=0)
    with pytest.raises(UserInputError, match="preconditioner"):
        SolverForward(9, "ilu")
    with pytest.raises(UserInputError, match="kind"):
        draw_truth(prior, 0, 0, kind="uniform")
    with pytest.raises(UserInputError, match="obs and data"):
        invert(SolverForward(9), prior, torch.arange(3), torch.zeros(4), 1.0)


def test_benchmark_writes_results_with_provenance_and_refuses_to_overwrite(tmp_path):
    assert main(["--size", "smoke", "--out", str(tmp_path)]) == 0
    payload = json.loads((tmp_path / "inverse_problem.json").read_text())
    env = payload["environment"]
    assert env["device"] == "cpu" and "git_dirty" in env
    assert all(env[k] for k in ("torch", "numpy", "scipy", "neuralop", "pyamg", "h5py", "git_sha"))
    methods = {r["method"] for r in payload["inversions"]}
    assert {"adjoint (AMG-PCG)", "surrogate (FNO)", "prior mean"} <= methods
    assert (tmp_path / "inverse_problem.md").read_text().count("| in distribution |") == 5
    assert (tmp_path / "inverse_problem.png").stat().st_size > 0
    with pytest.raises(FileExistsError, match="overwrite"):
        main(["--size", "smoke", "--out", str(tmp_path)])
    assert main(["--plot-only", "--out", str(tmp_path)]) == 0
