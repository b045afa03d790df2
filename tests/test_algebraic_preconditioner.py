"""Algebraic learned multigrid (solvers.learned.amg): exact identities, the cycle against pyamg's,
safeguards, gradients, training through the engine, and the shipped weights against pyamg SA."""

from __future__ import annotations

import doctest

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch

from pdesurrogates.linalg import fcg, pcg
from pdesurrogates.physics.hard_systems import hard_system
from pdesurrogates.solvers.learned.amg import hierarchy as H
from pdesurrogates.solvers.learned.amg.network import AlgebraicMultigridNet, level_graph
from pdesurrogates.solvers.learned.amg.preconditioner import LearnedAMG, pretrained
from pdesurrogates.solvers.learned.amg.training import (
    AlgebraicTrainProblem,
    cycle_error_log,
    dense_hierarchy,
    multigrid_cycle,
    pcg_error_log,
    relative_pcg_loss,
)


def _system(family="fem-jump", size=14, seed=5, **params):
    s = hard_system(family, size, seed=seed, **params)
    blocksize = 1 if s.near_nullspace is None else 2
    B = np.ones((s.n, 1)) if s.near_nullspace is None else s.near_nullspace
    return s.A, B, blocksize


def _random_weights(seed):
    rng = np.random.default_rng(seed)

    def weights(level, depth):
        return np.exp(rng.uniform(-1, 1, level.rows.size)), np.exp(rng.uniform(-1, 1, level.n))
    return weights


def _iterations(A, ml, b):
    residuals = []
    ml.solve(b, tol=1e-8, accel="cg", maxiter=500, residuals=residuals)
    return len(residuals) - 1


# ---------------------------------------------------------------- prolongator identities
@pytest.mark.parametrize("family", ["fem-jump", "elasticity"])
def test_unit_weights_give_smoothed_aggregation(family):
    """W = 1, v = 1: P = T - omega D^-1 A T exactly (classical SA, pyamg's formula)."""
    A, B, bs = _system(family, 10)
    level = H.AggregationLevel(A, B, blocksize=bs, theta=0.1)
    P = H.prolongator(level, np.ones(level.rows.size), np.ones(level.n))
    ref = level.T - level.omega * sp.diags(1.0 / level.diagonal) @ level.A @ level.T
    assert abs(P - ref).max() <= 1e-12 * abs(ref).max()
    # the general formula (per-entry weights, row correction), evaluated in torch, agrees
    maps = level.torch_maps()
    ones = torch.ones(level.rows.size, dtype=torch.float64)
    vals = H.prolongator_values_torch(level, torch.as_tensor(level.values), ones, torch.ones(level.n, dtype=torch.float64))
    dense = torch.zeros(level.n, level.n_coarse, dtype=torch.float64).index_put(
        (maps["pattern_row"], maps["pattern_col"]), vals, accumulate=True)
    assert np.abs(dense.numpy() - ref.toarray()).max() <= 1e-12 * abs(ref).max()


@pytest.mark.parametrize("family", ["fem-jump", "elasticity"])
def test_row_correction_interpolates_near_nullspace(family):
    """Any weights: P Bc = T Bc - omega diag(v) D^-1 A T Bc (the near-nullspace stays interpolated)."""
    A, B, bs = _system(family, 10)
    level = H.AggregationLevel(A, B, blocksize=bs, theta=0.1)
    entry, row = _random_weights(0)(level, 0)
    P = H.prolongator(level, entry, row)
    TB = level.T @ level.Bc
    expected = TB - (level.omega * row / level.diagonal)[:, None] * (level.A @ TB)
    assert np.abs(P @ level.Bc - expected).max() <= 1e-10 * np.abs(level.B).max()


@pytest.mark.parametrize("family", ["fem-jump", "elasticity"])
def test_torch_and_scipy_prolongators_agree(family):
    A, B, bs = _system(family, 10)
    level = H.AggregationLevel(A, B, blocksize=bs, theta=0.1)
    entry, row = _random_weights(1)(level, 0)
    P = H.prolongator(level, entry, row)
    maps = level.torch_maps()
    vals = H.prolongator_values_torch(level, torch.as_tensor(level.values), torch.as_tensor(entry),
                                      torch.as_tensor(row))
    dense = torch.zeros(level.n, level.n_coarse, dtype=torch.float64).index_put(
        (maps["pattern_row"], maps["pattern_col"]), vals, accumulate=True)
    assert np.abs(dense.numpy() - P.toarray()).max() <= 1e-12 * np.abs(P.toarray()).max()


def test_galerkin_coarse_operators_exact():
    A, B, _ = _system("two-phase", 20, contrast=1e4)
    levels, Ps, coarsest = H.build_levels(A, B, _random_weights(2), theta=0.1)
    mats = [lv.A.toarray() for lv in levels] + [coarsest.toarray()]
    for fine, P, coarse in zip(mats, Ps, mats[1:]):
        expected = P.toarray().T @ fine @ P.toarray()
        assert np.abs(coarse - expected).max() <= 1e-12 * np.abs(expected).max()
    # the differentiable hierarchy of training builds the same operators
    dense = dense_hierarchy(levels, None)
    levels1, _, c1 = H.build_levels(A, B, lambda lv, d: (np.ones(lv.rows.size), np.ones(lv.n)), theta=0.1)
    dense1 = dense_hierarchy(levels1, None)
    for (At, _), M in zip(dense1, [lv.A.toarray() for lv in levels1] + [c1.toarray()]):
        assert np.abs(At.numpy() - M).max() <= 1e-10 * np.abs(M).max()
    assert len(dense) == len(levels) + 1


# ---------------------------------------------------------------- the cycle
@pytest.mark.parametrize("cycle", ["V", "W"])
def test_training_cycle_equals_pyamg_cycle(cycle):
    """The torch cycle differentiated in training is pyamg's cycle with the same P's, and the
    preconditioner applies the cycle its config names."""
    A, B, _ = _system("two-phase", 40, contrast=1e5)
    net = AlgebraicMultigridNet(cycle=cycle).double()  # float64 weights in both paths
    torch.nn.init.normal_(net.edge_head[-1].weight, std=0.3)  # non-trivial weights
    amg = LearnedAMG(net)
    M = amg.setup(A)
    assert len(M.hierarchy.levels) >= 4  # the W-cycle visits a level more than twice
    b = np.random.default_rng(0).standard_normal((A.shape[0], 3))
    reference = np.stack([M.hierarchy.aspreconditioner(cycle=cycle).matvec(c) for c in b.T], 1)
    levels, _, _ = H.build_levels(A, B, amg.weights, theta=amg.config.theta)
    ours = multigrid_cycle(dense_hierarchy(levels, net), torch.as_tensor(b), cycle).detach().numpy()
    assert np.abs(ours - reference).max() <= 1e-9 * np.abs(reference).max()
    assert M.cycle == cycle and np.abs(M.apply(b.T).T - reference).max() <= 1e-12 * np.abs(reference).max()
    other = np.stack([M.hierarchy.aspreconditioner(cycle="VW".replace(cycle, "")).matvec(c) for c in b.T], 1)
    assert np.abs(other - reference).max() > 1e-3 * np.abs(reference).max()  # the two cycles differ


@pytest.mark.parametrize(("family", "cycle"), [("fem-jump", "W"), ("elasticity", "W"), ("fem-jump", "V")])
def test_preconditioner_linear_and_symmetric(family, cycle):
    A, B, bs = _system(family, 12)
    net = AlgebraicMultigridNet(cycle=cycle)
    torch.nn.init.normal_(net.edge_head[-1].weight, std=0.3)
    M = LearnedAMG(net).setup(A, None if bs == 1 else B, blocksize=bs)
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal(A.shape[0]), rng.standard_normal(A.shape[0])
    Mx, My = M.apply(x), M.apply(y)
    assert abs(x @ My - y @ Mx) <= 1e-10 * abs(x @ My)
    assert np.abs(M.apply(2.0 * x - 3.0 * y) - (2.0 * Mx - 3.0 * My)).max() <= 1e-10 * np.abs(Mx).max()
    assert x @ Mx > 0 and y @ My > 0
    assert M.linear and M.symmetric


def test_krylov_solvers_accept_it():
    A, _, _ = _system("two-phase", 24, contrast=1e6)
    M = LearnedAMG().setup(A)
    b = np.ones(A.shape[0])
    for solver in (pcg, fcg):
        res = solver(A, b, M=M, rtol=1e-8)
        assert res.converged
        assert float(np.asarray(res.info["true_residual"]).max()) <= 1e-7
    x, info = spla.cg(A, b, M=M.as_linear_operator(), rtol=1e-8)
    assert info == 0 and np.linalg.norm(b - A @ x) <= 1e-7 * np.linalg.norm(b)


def test_torch_sparse_input_gives_the_same_hierarchy():
    A, _, _ = _system("two-phase", 16, contrast=1e3)
    coo = A.tocoo()
    At = torch.sparse_coo_tensor(np.vstack([coo.row, coo.col]), coo.data, A.shape)
    b = np.random.default_rng(0).standard_normal(A.shape[0])
    z1 = LearnedAMG().setup(A).apply(b)
    z2 = LearnedAMG().setup(At).apply(b)
    z3 = LearnedAMG().setup(At.to_sparse_csr()).apply(b)
    assert np.allclose(z1, z2, rtol=1e-13, atol=0) and np.allclose(z1, z3, rtol=1e-13, atol=0)


def test_scale_invariance():
    """Features are scale-free: c A gets the same weights, so M(cA) = M(A) / c."""
    A, _, _ = _system("fem-jump", 12)
    net = AlgebraicMultigridNet()
    torch.nn.init.normal_(net.edge_head[-1].weight, std=0.3)
    amg = LearnedAMG(net)
    b = np.random.default_rng(0).standard_normal(A.shape[0])
    z = amg.setup(A).apply(b)
    z1000 = amg.setup(1000.0 * A).apply(b)
    assert np.allclose(1000.0 * z1000, z, rtol=1e-9, atol=1e-12 * np.abs(z).max())


# ---------------------------------------------------------------- safeguards
def test_safeguards():
    A, _, _ = _system("two-phase", 8)
    amg = LearnedAMG()
    with pytest.raises(ValueError, match="square"):
        amg.setup(sp.random(5, 6, density=0.5, format="csr"))
    bad = A.tolil()
    bad[0, 1] = bad[0, 1] * 2
    with pytest.raises(ValueError, match="not symmetric"):
        amg.setup(bad.tocsr())
    nan = A.copy()
    nan.data[3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        amg.setup(nan)
    neg = A.tolil()
    neg[2, 2] = -1.0
    with pytest.raises(ValueError, match="diagonal entry 2"):
        amg.setup(neg.tocsr())
    # positive diagonal but indefinite: seen on the coarsest (Galerkin) level
    shifted = (A - 0.5 * A.diagonal().min() * sp.eye(A.shape[0])).tocsr()
    assert shifted.diagonal().min() > 0 and np.linalg.eigvalsh(shifted.toarray())[0] < 0
    with pytest.raises(ValueError, match="not positive definite"):
        amg.setup(shifted)
    with pytest.raises(ValueError, match="near-nullspace"):
        amg.setup(A, B=np.ones((A.shape[0] + 1, 1)))
    with pytest.raises(ValueError, match="multiple of blocksize"):
        amg.setup(A[:-1, :-1], blocksize=2)
    with pytest.raises(TypeError, match="LinearOperator"):
        amg.setup(spla.aslinearoperator(A))
    with pytest.raises(ValueError, match="cycle must be one of"):
        amg.setup(A, cycle="F")  # pyamg's F-cycle is not symmetric
    with pytest.raises(ValueError, match="cycle must be one of"):
        AlgebraicMultigridNet(cycle="w")
    M = amg.setup(A)
    with pytest.raises(ValueError, match=f"{A.shape[0]}"):
        M.apply(np.ones(A.shape[0] + 1))
    with pytest.raises(ValueError, match="NaN"):
        M.apply(np.full(A.shape[0], np.nan))
    with pytest.raises(ValueError, match="dimension mismatch|length"):
        M.as_linear_operator().matvec(np.ones(A.shape[0] - 1))
    with pytest.raises(ValueError, match="NaN"):
        M.as_linear_operator().matvec(np.full(A.shape[0], np.inf))


# ---------------------------------------------------------------- training
def test_loss_gradient_matches_finite_differences():
    """float64: d loss / d (a network weight) through P, the Galerkin products, the cycle and PCG
    equals central differences, for a fixed structure (aggregates and omega of every level are
    constants of the gradient, as in training)."""
    from pdesurrogates.solvers.learned.amg.training import _levels

    A, _, _ = _system("two-phase", 12, contrast=1e4)
    net = AlgebraicMultigridNet().double()
    torch.nn.init.normal_(net.edge_head[-1].weight, std=0.1, generator=torch.Generator().manual_seed(0))
    param = net.edge_head[-1].bias
    with torch.no_grad():
        levels, _, _ = _levels(A, None, 1, net)
    e0 = torch.randn(A.shape[0], 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))

    def loss():
        return pcg_error_log(dense_hierarchy(levels, net), e0, 4).mean()

    loss().backward()
    grad = float(param.grad[0])
    h = 1e-5
    with torch.no_grad():
        param += h
        up = float(loss())
        param -= 2 * h
        down = float(loss())
        param += h
    assert abs(grad - (up - down) / (2 * h)) <= 1e-3 * abs(grad)
    # and the task's loss is differentiable end to end
    value, parts = relative_pcg_loss(net, A, None, 1, 4, 4, torch.Generator().manual_seed(0))
    value.backward()
    assert torch.isfinite(param.grad).all() and set(parts) == {"learned", "sa"}


@pytest.mark.parametrize("cycle", ["V", "W"])
def test_pcg_error_log_matches_scipy_cg_residuals(cycle):
    """The loss's PCG reproduces pyamg's preconditioned CG (r^T M r after k steps)."""
    A, B, _ = _system("lognormal", 30)
    levels, Ps, coarsest = H.build_levels(A, B, lambda lv, d: (np.ones(lv.rows.size), np.ones(lv.n)), theta=0.1)
    assert len(levels) >= 2
    ml = H.multilevel_solver(levels, Ps, coarsest)
    M = ml.aspreconditioner(cycle=cycle)
    e0 = np.random.default_rng(0).standard_normal(A.shape[0])
    b = A @ e0
    # k steps of PCG in numpy
    x = np.zeros_like(b)
    r = b.copy()
    z = M.matvec(r)
    p, rz0 = z.copy(), r @ z
    rz = rz0
    for _ in range(3):
        Ap = A @ p
        alpha = rz / (p @ Ap)
        x += alpha * p
        r -= alpha * Ap
        z = M.matvec(r)
        rz, rz_old = r @ z, rz
        p = z + rz / rz_old * p
    ours = pcg_error_log(dense_hierarchy(levels, None), torch.as_tensor(e0[:, None]), 3, cycle)
    assert abs(float(ours[0]) - np.log(rz / rz0)) <= 1e-6 * abs(np.log(rz / rz0))


@pytest.mark.parametrize("cycle", ["V", "W"])
def test_cycle_error_log_matches_pyamg_stationary_cycles(cycle):
    """The cycle loss is pyamg's multigrid iteration: e_k = e_0 - x_k after k cycles from x = 0
    with b = A e_0, measured in the energy norm; and the relative loss is differentiable."""
    A, B, _ = _system("two-phase", 30, contrast=1e4)
    levels, Ps, coarsest = H.build_levels(A, B, lambda lv, d: (np.ones(lv.rows.size), np.ones(lv.n)), theta=0.1)
    assert len(levels) >= 2
    ml = H.multilevel_solver(levels, Ps, coarsest)
    e0 = np.random.default_rng(1).standard_normal(A.shape[0])
    x = ml.solve(A @ e0, x0=np.zeros_like(e0), maxiter=3, tol=1e-300, cycle=cycle)
    e = e0 - x
    expected = np.log((e @ (A @ e)) / (e0 @ (A @ e0)))
    ours = cycle_error_log(dense_hierarchy(levels, None), torch.as_tensor(e0[:, None]), 3, cycle)
    assert expected < -3 and abs(float(ours[0]) - expected) <= 1e-8 * abs(expected)
    net = AlgebraicMultigridNet(hidden=4, rounds=1, edge_hidden=4).double()
    torch.nn.init.normal_(net.edge_head[-1].weight, std=0.1)
    value, parts = relative_pcg_loss(net, A, None, 1, 3, 4, torch.Generator().manual_seed(0), kind="cycle")
    value.backward()
    assert torch.isfinite(net.edge_head[-1].weight.grad).all() and float(parts["sa"]) < 0


def test_task_trains_through_the_engine(tmp_path):
    from pdesurrogates.solvers.learned.amg.network import AlgebraicMultigridConfig
    from pdesurrogates.train.engine import fit
    from pdesurrogates.train.tasks.algebraic import AlgebraicPreconditionerTask

    problem = AlgebraicTrainProblem(families=("two-phase", "anisotropic"), size_2d=(8, 10), size_3d=(4, 5),
                                    cg_steps=3, n_errors=4, n_validation=2)
    config = AlgebraicPreconditionerTask.make_config(problem=problem, model=AlgebraicMultigridConfig(hidden=8, rounds=1),
                                                     train={"epochs": 1, "steps_per_epoch": 3}, seed=0)
    result = fit(AlgebraicPreconditionerTask(config), config, tmp_path / "run", progress=False)
    assert np.isfinite(result.summary["final"]["val_loss"])
    loaded = LearnedAMG.load(tmp_path / "run")
    assert loaded.config == config.model
    A, _, _ = _system("two-phase", 10)
    b = np.ones(A.shape[0])
    z = loaded.setup(A).apply(b)
    assert np.isfinite(z).all()


def test_save_load_round_trip(tmp_path):
    net = AlgebraicMultigridNet(hidden=8)
    torch.nn.init.normal_(net.edge_head[-1].weight, std=0.3)
    amg = LearnedAMG(net, {"note": "x"})
    amg.save(tmp_path / "ckpt")
    again = LearnedAMG.load(tmp_path / "ckpt")
    A, _, _ = _system("fem-jump", 10)
    b = np.ones(A.shape[0])
    assert np.array_equal(amg.setup(A).apply(b), again.setup(A).apply(b))
    assert again.info["note"] == "x"
    with pytest.raises(FileExistsError):
        amg.save(tmp_path / "ckpt")


# ---------------------------------------------------------------- the shipped weights
@pytest.mark.parametrize(("family", "size", "params", "fewer"), [
    ("two-phase", 48, {"contrast": 1e6}, True), ("anisotropic", 48, {}, True), ("fem-jump", 40, {"contrast": 1e4}, True),
    ("lognormal", 48, {"sigma": 3.0}, True), ("layered", 16, {}, True),
    ("two-phase", 16, {"ndim": 3, "contrast": 1e6}, False),  # a tie at 16^3 (fewer from 24^3 up, hard_systems.md)
])
def test_pretrained_fewer_iterations_than_smoothed_aggregation_on_trained_families(family, size, params, fewer):
    """Held-out seeds of trained families: PCG with the shipped preconditioner (its W-cycle) against
    PCG with pyamg's default SA V-cycle on the same matrix."""
    import pyamg

    amg = pretrained()
    assert amg.info.get("training"), "the shipped checkpoint must say how it was trained"
    A = hard_system(family, size, seed=9001, **params).A
    b = np.random.default_rng(0).standard_normal(A.shape[0])
    learned = pcg(A, b, M=amg.setup(A), rtol=1e-8)
    classical = pcg(A, b, M=pyamg.smoothed_aggregation_solver(A).aspreconditioner(), rtol=1e-8)
    assert learned.converged and np.linalg.norm(b - A @ learned.x) <= 1e-8 * np.linalg.norm(b)
    limit = classical.iterations - 1 if fewer else classical.iterations
    assert learned.iterations <= limit, (family, learned.iterations, classical.iterations)


def test_pretrained_on_unseen_elasticity_within_twice_sa():
    import pyamg

    s = hard_system("elasticity", 24, seed=0)
    b = np.random.default_rng(0).standard_normal(s.n)
    M = pretrained().setup(s.A, s.near_nullspace, blocksize=2)
    res = fcg(s.A, b, M=M, rtol=1e-8)
    sa = pyamg.smoothed_aggregation_solver(s.A.tobsr(blocksize=(2, 2)), B=s.near_nullspace)
    assert res.converged and res.iterations <= 2 * _iterations(s.A, sa, b)


def test_module_doctests():
    import pdesurrogates.solvers.learned.amg.network as network_module
    import pdesurrogates.solvers.learned.amg.preconditioner as module

    for mod in (module, network_module):
        failures, _ = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
        assert failures == 0


def test_unit_weight_shortcut_is_exact():
    """A network with zero output layers is skipped at set-up; its forward pass gives the same weights."""
    A, B, _ = _system("fem-jump", 12)
    net = AlgebraicMultigridNet()
    assert net.predicts_unit_weights()
    level = H.AggregationLevel(A, B, theta=0.1)
    entry, row = net.log_weights(level)
    assert not entry.any() and not row.any()
    fast = LearnedAMG(net).weights(level, 0)
    assert np.array_equal(fast[0], np.exp(entry.detach().double().numpy()))
    assert np.array_equal(fast[1], np.exp(row.detach().double().numpy()))
    torch.nn.init.normal_(net.node_head[-1].weight, std=0.1)
    assert not net.predicts_unit_weights()


def test_weak_stencils_still_coarsen():
    """The 27-point Q1 stencil has no connection above theta = 0.1: the level falls back to theta = 0
    instead of stopping (which would leave a direct solve of the whole matrix)."""
    import pyamg

    A = sp.csr_matrix(pyamg.gallery.poisson((12, 12, 12), type="FE", format="csr"))
    M = LearnedAMG().setup(A)
    assert len(M.levels) >= 2 and M.levels[0].theta == 0.0
    assert M.hierarchy.levels[-1].A.shape[0] <= 10 * 27
    b = np.ones(A.shape[0])
    assert fcg(A, b, M=M, rtol=1e-8).iterations > 1


def test_isolated_nodes_are_left_to_the_smoother_as_pyamg_does():
    """On the first Galerkin level of a 3D two-phase medium (contrast 1e6) most nodes have no strong
    connection at theta = 0.1; they stay out of the coarse space (pyamg's behaviour) instead of the
    level being re-aggregated with theta = 0, which doubled the iterations."""
    import pyamg

    A = hard_system("two-phase", 40, seed=5, ndim=3, contrast=1e6).A
    M = LearnedAMG().setup(A)
    level1 = M.levels[1]
    aggregated = (level1.aggregate >= 0).mean()
    assert level1.theta == 0.1 and aggregated < 0.5
    ml = pyamg.smoothed_aggregation_solver(A, strength=("symmetric", {"theta": 0.1}), keep=True)
    assert (np.diff(sp.csr_matrix(ml.levels[1].AggOp).indptr) > 0).mean() == pytest.approx(aggregated, abs=0.02)
    b = np.random.default_rng(0).standard_normal(A.shape[0])
    ours = pcg(A, b, M=M, rtol=1e-8)
    theirs = pcg(A, b, M=ml.aspreconditioner(), rtol=1e-8)
    assert ours.converged and ours.iterations <= theirs.iterations + 1 <= 18


def test_level_graph_shapes():
    A, B, _ = _system("two-phase", 8)
    level = H.AggregationLevel(A, B)
    g = level_graph(level)
    assert g.node.shape == (level.n, 4) and g.edge.shape == (int((level.rows != level.cols).sum()), 6)
