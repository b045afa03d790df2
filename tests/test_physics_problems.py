"""Problem registry: shapes, determinism whatever the batch, refusals with reasons."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pdesurrogates.physics import burgers
from pdesurrogates.physics.problems import PROBLEMS, get_problem
from pdesurrogates.physics.random import gaussian_random_field, sample_generator

SMALL = {
    "darcy": {"resolution": 17, "solver_resolution": 33},
    "poisson": {"resolution": 12},
    "burgers": {"resolution": 64, "solver_resolution": 128, "n_times": 3, "t_final": 0.3, "sigma": 25.0},
    "navier-stokes": {"resolution": 16, "solver_resolution": 32, "t_final": 0.2, "record_every": 0.1, "dt": 1e-2},
    "heat": {"resolution": 10, "dt": 0.01, "t_final": 0.04, "n_times": 2},
}


def test_registry_names() -> None:
    assert set(PROBLEMS) == {"darcy", "poisson", "burgers", "navier-stokes", "heat"}


@pytest.mark.parametrize("name", sorted(SMALL))
def test_shapes_dtypes_and_batch_independence(name) -> None:
    p = get_problem(name, **SMALL[name])
    x, y = p.generate([3, 4, 5], seed=7)
    assert x.dtype == np.float32 and y.dtype == np.float32
    assert x.shape == (3, *p.input_shape) and y.shape == (3, *p.output_shape)
    assert np.all(np.isfinite(x)) and np.all(np.isfinite(y))
    # the same sample alone, or in another batch, is bitwise identical
    x4, y4 = p.generate([4], seed=7)
    x_rev, y_rev = p.generate(np.array([5, 4]), seed=7)
    assert np.array_equal(x4[0], x[1]) and np.array_equal(y4[0], y[1])
    assert np.array_equal(x_rev[1], x[1]) and np.array_equal(y_rev[0], y[2])
    assert not np.array_equal(x[0], x[1])
    other_x, _ = p.generate([4], seed=8)
    assert not np.array_equal(other_x[0], x4[0])
    d = p.to_dict()
    assert d["pde"] == name and json.loads(json.dumps(d)) == d
    assert get_problem(name, **{k: v for k, v in d.items() if k != "pde"}) == p
    arrays = p.grid_arrays()
    assert arrays["x"].shape == (p.input_shape[-1],)


def test_darcy_downsampled_matches_fine_solution() -> None:
    fine = get_problem("darcy", resolution=33)
    coarse = get_problem("darcy", resolution=17, solver_resolution=33)
    xf, yf = fine.generate([0], seed=1)
    xc, yc = coarse.generate([0], seed=1)
    assert np.array_equal(xc[0, 0], xf[0, 0, ::2, ::2]) and np.array_equal(yc[0, 0], yf[0, 0, ::2, ::2])


def test_navier_stokes_outputs_start_from_input() -> None:
    """The first record after a tiny time is the input advanced by one short step."""
    p = get_problem("navier-stokes", resolution=16, solver_resolution=16, t_final=1e-3,
                    record_every=1e-3, dt=1e-3)
    x, y = p.generate([0], seed=0)
    assert np.abs(y[0, 0, 0] - x[0, 0]).max() < 1e-2 * np.abs(x).max()


def test_burgers_default_step_is_converged_for_fno_amplitude() -> None:
    """With sigma = 625 the automatic step agrees with a 4x smaller one to 1e-7 (stable, accurate)."""
    u0 = gaussian_random_field((128,), 2.0, 5.0, 625.0, generator=sample_generator(0, 0))
    auto = burgers.solve_burgers(u0, 0.1, [0.1])
    limit = burgers.max_stable_dt(float(u0.abs().max()), 128, nu=0.1)
    fine = burgers.solve_burgers(u0, 0.1, [0.1], dt=limit / 8)
    assert float((auto - fine).abs().max()) < 1e-7 * float(u0.abs().max())


@pytest.mark.parametrize("name,params,match", [
    ("darcy", {"resolution": 3}, "resolution must be an int >= 4"),
    ("darcy", {"low": 0.0}, "a <= 0"),
    ("darcy", {"resolution": 17, "solver_resolution": 30}, "divisible"),
    ("burgers", {"nu": 0.0}, "nu must be > 0"),
    ("burgers", {"resolution": 256, "dt": 0.1}, "CFL"),
    ("navier-stokes", {"nu": -1e-3}, "nu must be > 0"),
    ("navier-stokes", {"resolution": 64, "dt": 0.5, "record_every": 0.5, "t_final": 1.0}, "CFL"),
    ("navier-stokes", {"record_every": 0.33}, "multiple of record_every"),
    ("heat", {"diffusivity_floor": 0.0}, "positive"),
    ("poisson", {"boundary": "periodic"}, "dirichlet"),
])
def test_nonphysical_parameters_refused_with_reason(name, params, match) -> None:
    with pytest.raises(ValueError, match=match):
        get_problem(name, **params)


def test_unknown_names_list_valid_ones_and_strings_are_coerced() -> None:
    with pytest.raises(ValueError, match="valid: darcy, poisson, burgers, navier-stokes, heat"):
        get_problem("darcyy")
    with pytest.raises(ValueError, match="valid: resolution, solver_resolution"):
        get_problem("darcy", resolutoin=4)
    with pytest.raises(ValueError, match="expects float"):
        get_problem("burgers", nu="fast")
    p = get_problem("navier-stokes", nu="1e-4", resolution="32", solver_resolution="none")
    assert p.nu == 1e-4 and p.resolution == 32 and p.solver_resolution is None
    with pytest.raises(ValueError, match="expects int"):
        get_problem("darcy", resolution="4.5")


# -- devices ---------------------------------------------------------------------------------------
def test_unavailable_device_is_refused_naming_it() -> None:
    import torch

    from pdesurrogates.physics.problems import resolve_device

    assert resolve_device(None) == torch.device("cpu")
    with pytest.raises(ValueError, match="'foo' is not a torch device"):
        resolve_device("foo")
    if torch.cuda.is_available():
        with pytest.raises(ValueError, match="'cuda:99': only"):
            resolve_device("cuda:99")
        return
    for name, params in SMALL.items():  # never a silent CPU run when a GPU was asked for
        with pytest.raises(ValueError, match="'cuda': CUDA is not available"):
            get_problem(name, **params).generate([0], seed=0, device="cuda")


def test_each_generator_runs_on_an_accelerator_or_refuses_it(monkeypatch) -> None:
    """With a (pretended) CUDA device: Darcy's CPU solvers and Poisson/heat refuse it, naming the
    device and the reason; Darcy's "cg", Burgers and Navier-Stokes accept it."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    accepted = {"burgers", "navier-stokes"}
    for name, params in SMALL.items():
        problem = get_problem(name, **params)
        assert problem.check_device("cpu") == torch.device("cpu")
        if name in accepted:
            assert problem.check_device("cuda:0") == torch.device("cuda:0")
        else:
            with pytest.raises(ValueError, match=f"{name}: .*CPU only.*'cuda:0' cannot be used"):
                problem.check_device("cuda:0")
    darcy = get_problem("darcy", **SMALL["darcy"], **PROBLEMS["darcy"].accelerator_params)
    assert darcy.solver == "cg" and darcy.check_device("cuda") == torch.device("cuda")
    with pytest.raises(ValueError, match="solver 'amg' runs on the CPU only"):
        get_problem("darcy", **SMALL["darcy"], solver="amg").check_device("cuda")


def test_generate_cli_refuses_an_unavailable_device(tmp_path, capsys) -> None:
    import torch

    from pdesurrogates.cli import main

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    out = tmp_path / "d.h5"
    argv = ["generate", "darcy", "--n", "2", "--resolution", "9", "--out", str(out), "--no-progress",
            "--device", "cuda"]
    assert main(argv) == 2
    assert "--device: device 'cuda': CUDA is not available" in capsys.readouterr().err
    assert not out.exists()
