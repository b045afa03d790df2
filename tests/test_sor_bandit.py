"""Bandit policies for the SOR relaxation factor (Khodak et al., ICLR 2024): exact identities of
Tsallis-INF, learning on seeded synthetic problems with a known best arm, checkpoint round trips,
bad input, and the learned solver on a Poisson sequence."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch

from pdesurrogates.linalg.omega import young_omega
from pdesurrogates.physics.grid import Grid
from pdesurrogates.physics.operators import laplacian_matrix
from pdesurrogates.solvers.learned import LearnedSORSolver, SORBandit, TsallisINF
from pdesurrogates.solvers.learned.bandits import (
    BinnedTsallisINF,
    ChebyshevContextualBandit,
    chebyshev_features,
    tsallis_inf_probabilities,
)

OMEGAS = np.linspace(1.0, 1.95, 20)


# ---------------------------------------------------------------------------------------------
# Tsallis-INF probabilities
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("eta", [2.0, 0.3, 0.02])
def test_tsallis_probabilities_solve_the_normaliser_equation(eta):
    rng = np.random.default_rng(0)
    L = rng.exponential(5.0, size=20)
    p, x = tsallis_inf_probabilities(L, eta)
    assert x < L.min()
    raw = 4.0 / (eta * (L - x)) ** 2
    assert abs(raw.sum() - 1.0) < 1e-12  # Newton's root, before renormalisation
    assert abs(p.sum() - 1.0) < 1e-15 and np.all(p > 0)
    np.testing.assert_allclose(p, raw, rtol=1e-12)
    # the root agrees with bisection on the same monotone equation
    lo, hi = L.min() - 1e6, L.min() - 1e-12
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if (4.0 / (eta * (L - mid)) ** 2).sum() < 1 else (lo, mid)
    assert abs(x - 0.5 * (lo + hi)) < 1e-9 * max(1.0, abs(x))
    # smaller estimated loss -> larger probability
    assert np.all(np.diff(p[np.argsort(L)]) <= 1e-15)


def test_tsallis_probabilities_equal_losses_are_uniform_and_shift_invariant():
    p, x = tsallis_inf_probabilities(np.full(7, 3.0), 1.0)
    np.testing.assert_allclose(p, np.full(7, 1 / 7), rtol=1e-13)
    assert abs(x - (3.0 - 2.0 * math.sqrt(7.0))) < 1e-12  # 7 * 4 / (3 - x)^2 = 1
    L = np.array([0.0, 1.0, 5.0])
    p1, _ = tsallis_inf_probabilities(L, 0.7)
    p2, _ = tsallis_inf_probabilities(L + 100.0, 0.7)
    np.testing.assert_allclose(p1, p2, rtol=1e-12)


def test_tsallis_inf_first_round_is_uniform_and_importance_weighting_is_exact():
    learner = TsallisINF(4, seed=0)
    np.testing.assert_allclose(learner.probabilities(), 0.25, rtol=1e-13)
    arm = learner.choose()
    learner.update(11)  # loss estimate (11 - 1) / 0.25
    expected = np.zeros(4)
    expected[arm] = 40.0
    np.testing.assert_allclose(learner.loss_estimates, expected)
    assert learner.scale == 10.0 and learner.t == 2


# ---------------------------------------------------------------------------------------------
# learning on synthetic problems with a known best arm
# ---------------------------------------------------------------------------------------------


def _quarters(regret):
    q = len(regret) // 4
    return float(np.mean(regret[:q])), float(np.mean(regret[-q:]))


def _mean_costs(omegas, best):
    # iteration-count-like costs: 40 at the best arm, growing steeply away from it
    return 40.0 * (1.0 + 6.0 * np.abs(omegas - best) + 20.0 * (omegas - best) ** 2)


@pytest.mark.parametrize("method", ["tsallis", "binned"])
def test_regret_falls_on_a_stochastic_problem(method):
    T = 2000
    mean = _mean_costs(OMEGAS, 1.65)
    policy = SORBandit(OMEGAS, method=method, context_range=(0.0, 1.0), seed=3)
    rng = np.random.default_rng(7)
    regret = np.empty(T)
    for t in range(T):
        context = rng.random()
        omega = policy.choose(context=context)
        arm = policy.last_arm
        assert omega == OMEGAS[arm]
        policy.update(rng.poisson(mean[arm]) + 1)
        regret[t] = mean[arm] - mean.min()
    first, last = _quarters(regret)
    assert last < 0.5 * first, (first, last)
    # by the end the known best arm is the most likely one
    assert policy.probabilities(context=0.5).argmax() == int(np.argmin(mean))


def test_chebyshev_bandit_learns_a_context_dependent_best_arm():
    T = 1500
    policy = SORBandit(OMEGAS, method="chebyshev", context_range=(0.0, 1.0), seed=1)
    rng = np.random.default_rng(2)
    regret = np.empty(T)
    for t in range(T):
        s = rng.random()
        mean = _mean_costs(OMEGAS, 1.2 + 0.6 * s)
        policy.choose(context=s)
        arm = policy.last_arm
        policy.update(mean[arm] * (1.0 + 0.05 * rng.standard_normal()))
        regret[t] = mean[arm] - mean.min()
    first, last = _quarters(regret)
    assert last < 0.5 * first, (first, last)
    # a fixed arm cannot do this: the best fixed omega has a mean regret of several iterations
    s_grid = np.linspace(0, 1, 201)
    table = np.stack([_mean_costs(OMEGAS, 1.2 + 0.6 * s) for s in s_grid])
    best_fixed_regret = (table.mean(0) - table.min(1).mean()).min()
    assert last < 0.5 * best_fixed_regret, (last, best_fixed_regret)


# ---------------------------------------------------------------------------------------------
# checkpoints
# ---------------------------------------------------------------------------------------------


def _play(policy, rng, rounds, contextual):
    choices = []
    for _ in range(rounds):
        s = rng.random()
        omega = policy.choose(context=s if contextual else None)
        choices.append(omega)
        policy.update(1 + 50 * abs(omega - 1.3 - 0.5 * s) + 5 * rng.random())
    return choices


@pytest.mark.parametrize("method", ["tsallis", "binned", "chebyshev"])
def test_state_dict_round_trip_continues_identically(method):
    kwargs = {"method": method, "context_range": (0.0, 1.0)}
    a = SORBandit(OMEGAS, seed=11, **kwargs)
    _play(a, np.random.default_rng(0), 60, method != "tsallis")
    buffer = io.BytesIO()
    torch.save(a.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    b = SORBandit(OMEGAS, seed=999, **kwargs)  # a different seed, overwritten by the state
    b.load_state_dict(state)
    ca = _play(a, np.random.default_rng(5), 80, method != "tsallis")
    cb = _play(b, np.random.default_rng(5), 80, method != "tsallis")
    assert ca == cb
    assert len(set(ca)) > 1  # the continuation really is random, not a constant


def test_state_dict_refuses_a_different_policy():
    state = SORBandit(OMEGAS, seed=0).state_dict()
    with pytest.raises(ValueError, match="method"):
        SORBandit(OMEGAS, method="binned", context_range=(0, 1)).load_state_dict(state)
    with pytest.raises(ValueError, match="grid of omegas"):
        SORBandit(OMEGAS[:10]).load_state_dict(state)


def test_same_seed_same_choices():
    choices = [_play(SORBandit(seed=4), np.random.default_rng(1), 40, False) for _ in range(2)]
    assert choices[0] == choices[1]


# ---------------------------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("omegas", [[], [1.0, 2.0], [0.0, 1.0], [-0.5], [1.0, float("nan")]])
def test_bad_omegas(omegas):
    with pytest.raises(ValueError, match="omega"):
        SORBandit(omegas)


def test_bad_configuration_and_calls():
    with pytest.raises(ValueError, match="unknown method.*tsallis, binned, chebyshev"):
        SORBandit(method="ucb")
    for method in ("binned", "chebyshev"):
        with pytest.raises(ValueError, match="context_range"):
            SORBandit(method=method)
        with pytest.raises(ValueError, match="low < high"):
            SORBandit(method=method, context_range=(1.0, 0.0))
        policy = SORBandit(method=method, context_range=(0.0, 1.0))
        with pytest.raises(ValueError, match="needs a scalar context"):
            policy.choose()
        with pytest.raises(ValueError, match="finite"):
            policy.choose(context=float("nan"))
    policy = SORBandit()
    with pytest.raises(RuntimeError, match="before choose"):
        policy.update(10)
    policy.choose()
    for cost in (-1, float("nan"), "many"):
        with pytest.raises(ValueError, match="cost"):
            policy.update(cost)
    policy.update(10)
    with pytest.raises(RuntimeError, match="before choose"):
        policy.update(10)  # one update per choice
    with pytest.raises(ValueError, match="seed"):
        SORBandit(seed=1.5)
    with pytest.raises(TypeError, match="SORBandit"):
        LearnedSORSolver("not a policy")
    with pytest.raises(ValueError, match="unknown solver"):
        LearnedSORSolver(SORBandit(), solver="gmres")


def test_contexts_outside_the_range_are_clipped():
    binned = BinnedTsallisINF(20, (0.0, 1.0), n_bins=5)
    assert [binned.bin_of(c) for c in (-3.0, 0.0, 0.19, 0.21, 0.99, 1.0, 7.0)] == [0, 0, 0, 1, 4, 4, 4]
    cheb = ChebyshevContextualBandit(20, (-0.15, 0.45))
    np.testing.assert_array_equal(cheb.features(10.0), cheb.features(0.45))
    np.testing.assert_array_equal(cheb.features(-10.0), chebyshev_features(-1.0, 6))
    # T_k(cos a) = cos(k a)
    a = 0.7
    np.testing.assert_allclose(chebyshev_features(math.cos(a), 6), np.cos(np.arange(6) * a), atol=1e-14)


def test_chebyshev_probabilities_are_inverse_gap_weighted():
    cheb = ChebyshevContextualBandit(5, (0.0, 1.0), seed=0)
    for _ in range(30):
        cheb.choose(0.5)
        cheb.update(10 + 3 * cheb._pending[0])  # arm i costs 10 + 3 i
    y = cheb.predict(0.5)
    p = cheb.probabilities(0.5)
    assert abs(p.sum() - 1) < 1e-14 and np.all(p >= 0)
    best = int(np.argmin(y))
    others = np.arange(5) != best
    np.testing.assert_allclose(p[others], 1 / (5 + cheb.eta * (y[others] - y[best])), rtol=1e-12)


# ---------------------------------------------------------------------------------------------
# the learned solver on a Poisson sequence
# ---------------------------------------------------------------------------------------------


def _linalg_or_skip():
    linalg = pytest.importorskip("pdesurrogates.linalg")
    if not hasattr(linalg, "sor"):
        pytest.skip("pdesurrogates.linalg.sor not available yet")
    return linalg


def test_learned_sor_solver_finds_youngs_omega_on_poisson():
    _linalg_or_skip()
    n = 8
    A = laplacian_matrix(Grid((n + 2, n + 2)))
    young = young_omega(A)  # 2 / (1 + sin(pi / 9)) = 1.4903
    solver = LearnedSORSolver(SORBandit(OMEGAS, seed=0), solver="sor", rtol=1e-8)
    rng = np.random.default_rng(0)
    for _ in range(300):
        res = solver.solve(A, rng.standard_normal(n * n))
        assert bool(np.all(np.asarray(res.converged)))
    last = [h["omega"] for h in solver.history[-100:]]
    assert abs(np.median(last) - young) <= 0.1, (np.median(last), young)
    assert abs(OMEGAS[solver.policy.probabilities().argmax()] - young) <= 0.1
    # and it saves iterations against Gauss-Seidel by the end
    its = [h["iterations"] for h in solver.history]
    assert np.mean(its[-100:]) < 0.5 * np.mean(its[:20])


def test_learned_ssor_pcg_solver_in_a_heat_loop():
    linalg = _linalg_or_skip()
    if not hasattr(linalg, "pcg") or not hasattr(linalg, "SSORPreconditioner"):
        pytest.skip("pdesurrogates.linalg.pcg / SSORPreconditioner not available yet")
    from pdesurrogates.physics.heat import HeatSequence

    seq = HeatSequence(n=6, dt=0.05, steps=12)
    policy = SORBandit(OMEGAS, method="chebyshev", context_range=(0.0, 10.0), seed=0)
    solver = LearnedSORSolver(policy, solver="ssor-pcg", rtol=1e-10)
    charged = 0.0
    for step in seq:
        res = solver.solve(step.A, step.b, context=step.context, x0=step.x0)
        assert bool(res.converged)
        assert np.linalg.norm(step.A @ res.x - step.b) <= 1e-10 * np.linalg.norm(step.b) * (1 + 1e-6)
        # the iteration count charged is the one of PCG with SSOR(omega) at the chosen omega
        omega = solver.history[-1]["omega"]
        direct = linalg.pcg(step.A, step.b, x0=step.x0, rtol=1e-10, M=linalg.SSORPreconditioner(step.A, omega))
        assert solver.history[-1]["iterations"] == int(direct.iterations)
        charged += max(int(direct.iterations) - 1, 0)
        seq.advance(res.x)
    assert policy.learner.t == 13 and abs(policy.learner.total_cost - charged) < 1e-12
    assert solver.mean_iterations() == np.mean([h["iterations"] for h in solver.history])
    with pytest.raises(ValueError, match="one system per call"):
        solver.solve(step.A, np.ones((2, 36)))
