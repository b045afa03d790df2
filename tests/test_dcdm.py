"""DCDM: network, Ritz-vector training data, scale-free loss, the learned preconditioner in FCG."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse.linalg as spla
import torch

from pdesurrogates.physics.grid import Grid
from pdesurrogates.physics.operators import diffusion_matrix
from pdesurrogates.solvers.learned.conjugate_direction import (
    ConjugateDirectionNet,
    DCDMConfig,
    DCDMTrainConfig,
    GridDiffusionOperator,
    LearnedPreconditioner,
    dcdm_loss,
    ritz_vectors,
    train_dcdm,
)


def test_grid_operator_matches_assembled_matrix():
    rng = np.random.default_rng(0)
    grid = Grid((9, 12))
    a = np.where(rng.standard_normal(grid.shape) > 0, 12.0, 3.0)
    op = GridDiffusionOperator(grid, a)
    A = diffusion_matrix(a, grid)
    u = rng.standard_normal((3, A.shape[0]))
    np.testing.assert_allclose(op(torch.from_numpy(u)).numpy(), (A @ u.T).T, rtol=1e-13, atol=1e-10)


def test_ritz_vectors_match_extreme_eigenpairs():
    grid = Grid((14, 14))
    A = diffusion_matrix(np.ones(grid.shape), grid)
    exact = np.linalg.eigvalsh(A.toarray())
    values, vectors = ritz_vectors(lambda v: A @ v, A.shape[0], 80, seed=1)
    # Lanczos converges first at both ends of the spectrum.
    np.testing.assert_allclose(values[0], exact[0], rtol=1e-8)
    np.testing.assert_allclose(values[-1], exact[-1], rtol=1e-8)
    residual = np.linalg.norm(A @ vectors[:, 0] - values[0] * vectors[:, 0])
    assert residual < 1e-6 * values[-1]
    np.testing.assert_allclose(vectors.T @ vectors, np.eye(vectors.shape[1]), atol=1e-10)


def test_dcdm_loss_is_zero_for_the_exact_inverse_and_scale_free():
    grid = Grid((10, 10))
    op = GridDiffusionOperator(grid)
    A = op.to_scipy()
    b = np.random.default_rng(2).standard_normal((4, A.shape[0]))
    x = np.stack([spla.spsolve(A.tocsc(), bi) for bi in b])
    shape = (4, 1, *grid.interior_shape)
    bt, xt = torch.from_numpy(b).reshape(shape), torch.from_numpy(x).reshape(shape)
    assert dcdm_loss(xt, bt, op) < 1e-20
    q = torch.randn(shape, dtype=torch.float64)
    torch.testing.assert_close(dcdm_loss(q, bt, op), dcdm_loss(-7.5 * q, bt, op))
    # With q = b the loss is the residual of one steepest-descent step: strictly between 0 and |b|^2.
    loss = dcdm_loss(bt, bt, op)
    assert 0 < loss < (bt**2).sum(dim=(1, 2, 3)).mean()


@pytest.mark.parametrize("ndim,size", [(2, (9, 13)), (3, (5, 6, 7))])
def test_network_shapes_any_grid(ndim, size):
    net = ConjugateDirectionNet(DCDMConfig(ndim=ndim))
    out = net(torch.randn(2, 1, *size))
    assert out.shape == (2, 1, *size)
    with pytest.raises(ValueError, match="expects"):
        net(torch.randn(2, 3, *size))


def test_parameter_count_near_paper():
    n3 = sum(p.numel() for p in ConjugateDirectionNet(DCDMConfig(ndim=3)).parameters())
    # Kaneda et al. report about 97k parameters for their 3D network.
    assert 0.5e5 < n3 < 1.5e5


def test_save_load_round_trip(tmp_path):
    net, _ = train_dcdm(DCDMTrainConfig(resolution=10, steps=3, n_samples=16, n_ritz=20))
    M = LearnedPreconditioner(net, shape=(8, 8))
    M.save(tmp_path / "ckpt")
    with pytest.raises(FileExistsError):
        M.save(tmp_path / "ckpt")
    M2 = LearnedPreconditioner.load(tmp_path / "ckpt", shape=(8, 8))
    r = torch.randn(3, 64, dtype=torch.float64)
    assert torch.equal(M.apply(r), M2.apply(r))
    (tmp_path / "ckpt" / "weights.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="weights.pt"):
        LearnedPreconditioner.load(tmp_path / "ckpt")


def test_learned_preconditioner_refuses_linear_operator_and_wrong_sizes():
    M = LearnedPreconditioner(ConjugateDirectionNet(DCDMConfig()), shape=(6, 6))
    assert M.linear is False
    with pytest.raises((TypeError, ValueError), match="(?i)linear"):
        M.as_linear_operator()
    with pytest.raises(ValueError, match="length"):
        M.apply(torch.ones(35, dtype=torch.float64))
    with pytest.raises(ValueError, match="3D"):
        M.for_shape((4, 4, 4))


def test_train_command_trains_dcdm_from_config(tmp_path):
    from pdesurrogates.cli import main

    cfg = "configs/dcdm_poisson.toml"
    args = ["train", "--config", cfg, "--set", "dcdm.steps=3", "--set", "dcdm.resolution=10",
            "--set", "dcdm.n_ritz=20", "--set", "dcdm.n_samples=16", "--out", str(tmp_path / "run")]
    assert main(args) == 0
    M = LearnedPreconditioner.load(tmp_path / "run" / "preconditioner", shape=(8, 8))
    assert M.apply(torch.ones(64, dtype=torch.float64)).shape == (64,)
    assert main(args) == 2  # refuses to overwrite the finished run


def test_fcg_with_dcdm_orients_directions_and_converges():
    from pdesurrogates.linalg import fcg

    grid = Grid((12, 12))
    A = diffusion_matrix(np.ones(grid.shape), grid)
    b = np.random.default_rng(0).standard_normal(A.shape[0])
    net = ConjugateDirectionNet(DCDMConfig())
    with torch.no_grad():
        for p in net.project.parameters():
            p.neg_()
    M = LearnedPreconditioner(net, shape=grid.interior_shape)
    z = M.apply(torch.from_numpy(b))
    assert float(z @ torch.from_numpy(b)) >= 0
    res = fcg(A, b, M=M, m=2, rtol=1e-8, maxiter=50)
    # Oriented proposals are descent directions (fallbacks only where z.r vanishes), and the exact
    # line search lowers the energy norm of the error below that of x0 = 0.
    assert res.info["fallbacks"] < res.iterations // 2
    x_star = spla.spsolve(A.tocsc(), b)
    e0, e = x_star, res.x - x_star
    assert e @ (A @ e) < e0 @ (A @ e0)
