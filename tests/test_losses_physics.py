"""PDE residuals: zero on the generators' reference solutions, proportional to perturbations,
spectrally accurate against closed forms, time derivatives of the stated order, float64 gradcheck."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse.linalg as spla
import torch
from scipy.special import ive

from pdesurrogates.losses import physics as P
from pdesurrogates.physics.burgers import solve_burgers
from pdesurrogates.physics.darcy import sample_coefficient, solve_darcy
from pdesurrogates.physics.grid import Grid
from pdesurrogates.physics.heat import HeatSequence
from pdesurrogates.physics.navier_stokes import fno_forcing, solve_navier_stokes
from pdesurrogates.physics.operators import laplacian_matrix
from pdesurrogates.physics.poisson import solve_poisson
from pdesurrogates.physics.problems import get_problem
from pdesurrogates.physics.random import sample_generator

D = torch.float64


def _slope(h, e):
    return float(np.polyfit(np.log(h), np.log(e), 1)[0])


# ----------------------------------------------------------------------------------------- Darcy
@pytest.fixture(scope="module")
def darcy_reference():
    a = sample_coefficient(33, sample_generator(0, 0))
    u = solve_darcy(a)
    return torch.tensor(a, dtype=D)[None, None], torch.tensor(u, dtype=D)[None, None]


def test_darcy_reference_residual_is_round_off(darcy_reference):
    a, u = darcy_reference
    for norm in ("l2", "h-1"):
        assert float(P.DarcyLoss(norm=norm)(u, a)) < 1e-8


def test_darcy_residual_proportional_to_perturbation(darcy_reference):
    a, u = darcy_reference
    x = torch.linspace(0, 1, 33, dtype=D)
    phi = torch.sin(math.pi * x)[:, None] * torch.sin(2 * math.pi * x)[None, :]
    for norm in ("l2", "h-1"):
        loss = P.DarcyLoss(norm=norm)
        r = [float(loss(u + eps * phi, a)) for eps in (1e-2, 1e-3, 1e-4)]
        assert r[0] / r[1] == pytest.approx(10.0, rel=1e-6) and r[1] / r[2] == pytest.approx(10.0, rel=1e-6)
        assert r[2] > 1e-6  # and visible well above round-off


def test_darcy_residual_float32_batch_and_shapes(darcy_reference):
    a, u = darcy_reference
    r = P.darcy_residual(a.float().expand(3, 1, 33, 33), u.float().expand(3, 1, 33, 33))
    assert r.shape == (3, 31, 31) and r.dtype == torch.float32
    assert float(r.abs().max()) < 1e-4  # float32 round-off on an O(1) residual
    with pytest.raises(ValueError, match="differ"):
        P.darcy_residual(a, u[..., :-1, :-1])
    with pytest.raises(ValueError, match="NaN"):
        P.DarcyLoss()(u * float("nan"), a)
    with pytest.raises(ValueError, match="norm"):
        P.DarcyLoss(norm="h1")


def test_inverse_dirichlet_laplacian_matches_sparse_solve():
    g = Grid((9, 12))
    r = torch.randn(2, 7, 10, dtype=D, generator=torch.Generator().manual_seed(0))
    v = P.inverse_dirichlet_laplacian(r, g)
    ref = spla.spsolve(laplacian_matrix(g).tocsc(), r[1].numpy().ravel()).reshape(7, 10)
    np.testing.assert_allclose(v[1].numpy(), ref, rtol=0, atol=1e-13 * np.abs(ref).max())


# --------------------------------------------------------------------------------------- Poisson
def test_poisson_fv_reference_residual_and_perturbation():
    g = Grid((17, 21))
    X, Y = g.mesh()
    f = np.exp(X) * np.cos(3 * Y)
    u = solve_poisson(f, g)
    ut, ft = torch.tensor(u)[None, None], torch.tensor(f)[None, None]
    loss = P.PoissonLoss()
    assert float(loss(ut, ft)) < 1e-10
    phi = torch.tensor(np.sin(np.pi * X) * np.sin(np.pi * Y))
    assert float(loss(ut + 1e-3 * phi, ft)) / float(loss(ut + 1e-4 * phi, ft)) == pytest.approx(10, rel=1e-6)


def test_poisson_spectral_closed_form():
    n = 32
    x = torch.arange(n, dtype=D) / n
    X, Y = torch.meshgrid(x, x, indexing="ij")
    u = torch.sin(2 * math.pi * X) * torch.cos(4 * math.pi * Y)
    f = (4 + 16) * math.pi**2 * u + 3.0  # constant part of f is removed (solvability)
    assert float(P.poisson_residual_spectral(u, f, 2).abs().max()) < 1e-10
    assert float(P.poisson_residual_spectral(u + 1e-3 * X * 0 + 1e-3 * torch.sin(2 * math.pi * Y), f, 2)
                 .abs().max()) == pytest.approx(1e-3 * 4 * math.pi**2, rel=1e-8)


# --------------------------------------------------------------------------------------- Burgers
def cole_hopf(x, t, nu, modes=80):
    """Exact Burgers solution for u0 = sin(2 pi x) on [0, 1) and its time derivative (Cole-Hopf)."""
    r = 1.0 / (4 * math.pi * nu)
    n = np.arange(1, modes)[:, None]
    k = 2 * math.pi * n
    e = np.exp(-nu * k**2 * t) * ive(n, r)  # scaled Bessel functions: a common factor cancels
    phi = ive(0, r) + 2 * (e * np.cos(k * x)).sum(0)
    phi_x = 2 * (-e * k * np.sin(k * x)).sum(0)
    phi_t = 2 * (-e * nu * k**2 * np.cos(k * x)).sum(0)
    phi_xt = 2 * (e * nu * k**3 * np.sin(k * x)).sum(0)
    u = -2 * nu * phi_x / phi
    u_t = -2 * nu * (phi_xt * phi - phi_x * phi_t) / phi**2
    return u, u_t


@pytest.mark.parametrize("dealias", [True, False])
def test_burgers_spatial_operator_spectral_accuracy(dealias):
    nu, errors = 0.1, []
    for n in (16, 32, 64):
        x = np.arange(n) / n
        u, u_t = cole_hopf(x, 0.3, nu)
        rhs = P.burgers_spatial(torch.tensor(u), nu, dealias=dealias).numpy()
        errors.append(np.abs(rhs - u_t).max() / np.abs(u_t).max())
    assert errors[-1] < 1e-11  # spectral accuracy at 64 nodes
    assert errors[1] < 1e-3 * errors[0]  # faster than any power of h


def test_burgers_fd_in_space_is_second_order():
    nu, errors = 0.1, []
    ns = (32, 64, 128)
    for n in ns:
        u, u_t = cole_hopf(np.arange(n) / n, 0.3, nu)
        rhs = P.burgers_spatial(torch.tensor(u), nu, space="fd").numpy()
        errors.append(np.abs(rhs - u_t).max())
    assert abs(_slope([1 / n for n in ns], errors) - 2) < 0.2


@pytest.mark.parametrize("order", [2, 4])
def test_time_derivative_order_on_exact_burgers(order):
    nu, n = 0.1, 64
    x = np.arange(n) / n
    errors, dts = [], (0.01, 0.005, 0.0025)
    for dt in dts:
        ts = 0.1 + dt * np.arange(round(0.2 / dt) + 1)  # fixed window [0.1, 0.3]
        traj = np.stack([cole_hopf(x, t, nu)[0] for t in ts])
        r = P.burgers_residual(torch.tensor(traj)[None], nu, dt, time_order=order)
        errors.append(float(r.abs().max()))
    assert abs(_slope(dts, errors) - order) < 0.2


def test_burgers_generator_residual_and_perturbation():
    n, nu, dt = 64, 0.1, 1e-3
    x = torch.arange(n, dtype=D) / n
    u0 = (torch.sin(2 * math.pi * x) + 0.5 * torch.cos(4 * math.pi * x))[None]
    traj = solve_burgers(u0, nu, [dt * k for k in range(1, 21)])
    loss = P.BurgersLoss(nu=nu, t_final=20 * dt, n_times=20, time_order=4)
    base = float(loss(traj, u0[:, None]))
    assert base < 1e-5  # ETDRK4 + 4th-order differences in time; space is exact
    phi = torch.sin(6 * math.pi * x) * torch.linspace(0.1, 1, 20, dtype=D)[:, None]
    r3, r4 = (float(loss(traj + eps * phi, u0[:, None])) for eps in (1e-2, 1e-3))
    assert r3 / r4 == pytest.approx(10, rel=0.05) and r4 > 100 * base


# --------------------------------------------------------------------------------- Navier-Stokes
def test_vorticity_advection_manufactured():
    # psi = A + B, A = sin(2 pi x) sin(2 pi y), B = cos(4 pi x): w = -Laplace psi = 8 pi^2 A + 16 pi^2 B,
    # v . grad w = psi_y w_x - psi_x w_y = 8 pi^2 A_y B_x (worked out by hand)
    n = 32
    x = torch.arange(n, dtype=D) / n
    X, Y = torch.meshgrid(x, x, indexing="ij")
    pi = math.pi
    A = torch.sin(2 * pi * X) * torch.sin(2 * pi * Y)
    B = torch.cos(4 * pi * X)
    w = 8 * pi**2 * A + 16 * pi**2 * B
    exact = 8 * pi**2 * (2 * pi * torch.sin(2 * pi * X) * torch.cos(2 * pi * Y)) * (-4 * pi * torch.sin(4 * pi * X))
    got = P.vorticity_advection(w)
    assert float((got - exact).abs().max() / exact.abs().max()) < 1e-12


def test_navier_stokes_residual_taylor_green_decay():
    # w = W exp(-8 pi^2 nu t) sin(2 pi x) sin(2 pi y) is an exact unforced solution (advection vanishes)
    n, nu, dt = 32, 1e-2, 1e-3
    x = torch.arange(n, dtype=D) / n
    X, Y = torch.meshgrid(x, x, indexing="ij")
    mode = torch.sin(2 * math.pi * X) * torch.sin(2 * math.pi * Y)
    t = dt * torch.arange(0, 11, dtype=D)
    w = torch.exp(-8 * math.pi**2 * nu * t)[:, None, None] * mode
    loss = P.NavierStokesLoss(nu=nu, record_every=dt, forcing="none", time_order=4)
    assert float(loss(w[None, 1:], w[None, :1])) < 1e-9
    assert float(loss(w[None, 1:] + 1e-3 * mode, w[None, :1])) > 1e-4


# ------------------------------------------------------------------------------------------ heat
def test_heat_residual_of_crank_nicolson_sequence_is_round_off():
    seq = HeatSequence(n=12, dt=2e-2, steps=6)
    states, cs, fs = [seq.state()], [seq.diffusivity(seq.t)], [seq._f(seq.t).reshape(12, 12)]
    for step in seq:
        seq.advance(spla.spsolve(step.A.tocsc(), step.b))
        states.append(seq.state())
        cs.append(seq.diffusivity(seq.t))
        fs.append(seq._f(seq.t).reshape(12, 12))
    u = torch.tensor(np.stack(states))[None]
    f = torch.tensor(np.stack(fs))
    r = P.heat_residual(u, seq.dt, cs, f)
    scale = float((0.5 * (f[1:] + f[:-1])).abs().max())
    assert float(r.abs().max()) < 1e-10 * scale
    r2 = P.heat_residual(u + 1e-4 * torch.rand(u.shape, dtype=D, generator=torch.Generator().manual_seed(0)),
                         seq.dt, cs, f)
    assert float(r2.abs().max()) > 1e-4 * scale


def test_heat_loss_on_heat_problem_data():
    # snapshot spacing = solver step: the CN residual of the generated data is round-off (float32 data)
    problem = get_problem("heat", resolution=12, dt=0.01, t_final=0.05, n_times=5)
    x, y = (torch.tensor(v, dtype=D) for v in problem.generate([0, 1], seed=3))
    loss = P.physics_loss_for(problem)
    assert isinstance(loss, P.HeatLoss) and loss.n_times == 5
    assert float(loss(y, x)) < 1e-5  # float32 storage
    assert float(loss(y + 1e-2 * torch.rand(y.shape, dtype=D, generator=torch.Generator().manual_seed(0)), x)) > 1e-2


def test_navier_stokes_generator_residual_and_spatial_part():
    # fine snapshots of the generator: residual at the level of its own time-stepping error
    n, nu, dt = 32, 1e-3, 1e-3
    w0 = torch.stack([torch.tensor(get_problem("navier-stokes", resolution=n, dt=dt, t_final=5 * dt,
                                               record_every=dt, solver_resolution=n).generate([0], 0)[0][0, 0],
                                   dtype=D)])
    w = solve_navier_stokes(w0, nu, [dt * k for k in range(1, 11)], dt=dt / 4, forcing=fno_forcing(n))
    loss = P.NavierStokesLoss(nu=nu, record_every=dt, time_order=4)
    assert float(loss(w, w0[:, None])) < 1e-4
    assert float(loss(w + 1e-2 * w0[:, None], w0[:, None])) > 100 * float(loss(w, w0[:, None]))


# ------------------------------------------------------------------------------- gradcheck/bad input
def test_gradcheck_every_residual():
    g = torch.Generator().manual_seed(1)

    def rnd(*shape):
        return torch.rand(*shape, dtype=D, generator=g, requires_grad=True)

    a = (1 + rnd(2, 7, 7)).detach().requires_grad_()
    assert torch.autograd.gradcheck(lambda a, u: P.darcy_residual(a, u), (a, rnd(2, 7, 7)))
    assert torch.autograd.gradcheck(lambda u: P.DarcyLoss(norm="h-1")(u, a.detach()[:, None]), (rnd(2, 1, 7, 7),))
    assert torch.autograd.gradcheck(lambda u, f: P.poisson_residual(u, f), (rnd(1, 6, 5), rnd(1, 6, 5)))
    assert torch.autograd.gradcheck(lambda u, f: P.poisson_residual_spectral(u, f, 2), (rnd(1, 6, 6), rnd(1, 6, 6)))
    for space in ("spectral", "fd"):
        assert torch.autograd.gradcheck(
            lambda u, u0, space=space: P.burgers_residual(u, 0.1, 0.1, u0=u0, space=space),
            (rnd(2, 4, 12), rnd(2, 12)))
    assert torch.autograd.gradcheck(
        lambda w, w0: P.navier_stokes_residual(w, 1e-2, 0.1, w0=w0, forcing=fno_forcing(8)),
        (rnd(1, 3, 8, 8), rnd(1, 8, 8)))
    assert torch.autograd.gradcheck(lambda u: P.heat_residual(u, 0.1, [1.0, 0.5, 0.2]), (rnd(1, 3, 4, 4),))
    assert torch.autograd.gradcheck(lambda u: P.HeatLoss(t_final=0.03, n_times=3)(u, torch.ones(1, 1, 5, 5, dtype=D)),
                                   (rnd(1, 3, 5, 5),))


def test_registry_and_bad_input():
    assert set(P.PHYSICS_LOSSES) == {"darcy", "poisson", "burgers", "navier-stokes", "heat"}
    assert P.get_physics_loss("burgers", nu=0.01).nu == 0.01
    with pytest.raises(ValueError, match="valid: burgers, darcy"):
        P.get_physics_loss("wave")
    with pytest.raises(ValueError, match="no parameter"):
        P.get_physics_loss("darcy", nu=1.0)
    with pytest.raises(ValueError, match="nu must be > 0"):
        P.burgers_residual(torch.zeros(1, 5, 8), 0.0, 0.1)
    with pytest.raises(ValueError, match="at least 5 snapshots"):
        P.burgers_residual(torch.zeros(1, 3, 8), 0.1, 0.1, time_order=4)
    with pytest.raises(ValueError, match="u0"):
        P.burgers_residual(torch.zeros(1, 5, 8), 0.1, 0.1, u0=torch.zeros(1, 9))
    with pytest.raises(ValueError, match="diffusivity"):
        P.heat_residual(torch.zeros(1, 3, 4, 4), 0.1, [1.0])


@pytest.mark.parametrize("boundary", ["dirichlet", "neumann"])
def test_poisson_problem_data_residual(boundary):
    problem = get_problem("poisson", resolution=17, boundary=boundary)
    x, y = (torch.tensor(v, dtype=D) for v in problem.generate([0, 1], seed=0))
    loss = P.physics_loss_for(problem)
    assert loss.boundary == boundary
    assert float(loss(y, x)) < 1e-5  # float32 storage of u
    assert float(loss(y + 1e-3 * y.abs().max() * torch.rand(y.shape, dtype=D, generator=torch.Generator().manual_seed(0)), x)) > 1e-3


def test_gradcheck_poisson_neumann():
    g = Grid((5, 6), boundary="neumann")
    u = torch.rand(2, 5, 6, dtype=D, requires_grad=True)
    assert torch.autograd.gradcheck(lambda u: P.poisson_residual_neumann(u, torch.zeros(5, 6, dtype=D), g), (u,))


def test_burgers_solver_step_residual_on_generator_data():
    # same grid as the solver: zero up to ETDRK4's error; subsampled 512 -> 64: resolution-limited
    common = {"sigma": 100.0, "t_final": 0.2, "n_times": 8}
    for solver_resolution, bound in ((64, 1e-6), (512, 1e-3)):
        problem = get_problem("burgers", resolution=64, solver_resolution=solver_resolution, **common)
        x, y = (torch.tensor(v, dtype=D) for v in problem.generate([0, 1], seed=0))
        loss = P.BurgersLoss(nu=0.1, t_final=0.2, n_times=8, time_scheme="solver")
        base = float(loss(y, x))
        assert base < bound, (solver_resolution, base)
        assert float(loss(y * 1.01, x)) > 10 * base
    u, u0 = torch.rand(1, 3, 12, dtype=D, requires_grad=True), torch.rand(1, 12, dtype=D, requires_grad=True)
    assert torch.autograd.gradcheck(lambda u, u0: P.burgers_step_residual(u, 0.1, 0.01, u0=u0), (u, u0))
