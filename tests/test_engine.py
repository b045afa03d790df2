"""The training engine: the task protocol of ARCHITECTURE.md runs, every preconditioner task resumes
bit for bit after a real SIGINT, and every task trains on a GPU when one is present."""

from __future__ import annotations

import re
import signal
from pathlib import Path

import pytest
import torch

from pdesurrogates.train import fit
from pdesurrogates.train.tasks import TASKS, task_from_config
from pdesurrogates.train.tasks.algebraic import AlgebraicPreconditionerTask
from pdesurrogates.train.tasks.preconditioners import (
    DCDMTask,
    NeuralMultigridTask,
    OperatorPreconditionerTask,
)

REPO = Path(__file__).resolve().parents[1]


def test_the_task_example_of_architecture_md_trains():
    """The 30-line example of a new trainable thing in ARCHITECTURE.md, executed as written."""
    text = (REPO / "ARCHITECTURE.md").read_text()
    blocks = re.findall(r"```python\n(# A new trainable thing.*?)```", text, flags=re.DOTALL)
    assert len(blocks) == 1, "ARCHITECTURE.md must hold the engine example"
    assert len(blocks[0].splitlines()) <= 40
    namespace: dict = {}
    exec(compile(blocks[0], "ARCHITECTURE.md", "exec"), namespace)  # noqa: S102 (the documented example)
    result = namespace["result"]
    errors = [row["identity_error"] for row in result.metrics]
    assert result.summary["status"] == "finished" and len(errors) == 20
    assert errors[-1] < 0.5 * errors[0]  # W approaches A^-1


TINY = {
    "neural_multigrid": (NeuralMultigridTask, {"resolution": 9, "n_coefficients": 2, "batch_size": 2}),
    "dcdm": (DCDMTask, {"resolution": 8, "n_samples": 16, "n_ritz": 10, "batch_size": 4}),
    "operator_preconditioner": (OperatorPreconditionerTask, {"resolution": 9, "n_coefficients": 2, "batch_size": 2}),
    "algebraic_preconditioner": (AlgebraicPreconditionerTask, {
        "families": ["two-phase", "anisotropic"], "size_2d": [8, 10], "size_3d": [4, 5], "cg_steps": 3,
        "n_errors": 4, "n_validation": 2, "batch_size": 1}),
}
SMALL_MODELS = {"dcdm": {"channels": 4, "fine_blocks": 1, "coarse_blocks": 1},
                "operator_preconditioner": {"name": "mgno", "width": 4, "n_layers": 1, "levels": 2},
                "algebraic_preconditioner": {"hidden": 8, "rounds": 1}}


def tiny_config(name: str, epochs: int = 3, steps: int = 4):
    cls, problem = TINY[name]
    raw = {"task": name, "problem": {k: v for k, v in problem.items() if k != "batch_size"},
           "train": {"epochs": epochs, "steps_per_epoch": steps, "batch_size": problem["batch_size"]}}
    if name in SMALL_MODELS:
        raw["model"] = SMALL_MODELS[name]
    return cls.parse_config(raw, where=f"tiny {name}")


def weights(run: Path, which: str = "last") -> dict[str, torch.Tensor]:
    return torch.load(run / "checkpoints" / which / "weights.pt", weights_only=True)


@pytest.mark.parametrize("name", sorted(TINY))
def test_preconditioner_run_interrupted_by_sigint_resumes_bit_identically(name, tmp_path):
    config = tiny_config(name)
    fit(task_from_config(config), config, tmp_path / "full", device="cpu", progress=False)

    def sigint_at_step_6(event, info):  # a real SIGINT, mid-epoch 2, delivered to this process
        if event == "step" and info["step"] == 6:
            signal.raise_signal(signal.SIGINT)

    # Python's own SIGINT handler (a shell that starts the tests in the background ignores SIGINT)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            fit(task_from_config(config), config, tmp_path / "split", device="cpu", progress=False,
                callback=sigint_at_step_6)
    finally:
        signal.signal(signal.SIGINT, previous)
    state = torch.load(tmp_path / "split" / "checkpoints" / "last" / "training_state.pt", weights_only=True)
    assert (state["epoch"], state["step"]) == (1, 6)
    fit(task_from_config(config), config, None, resume=tmp_path / "split", device="cpu", progress=False)
    for which in ("last", "best"):
        full, split = weights(tmp_path / "full", which), weights(tmp_path / "split", which)
        assert full.keys() == split.keys()
        for key in full:
            assert torch.equal(full[key], split[key]), (which, key)


def test_every_registered_config_task_is_covered():
    # dataset tasks resume bit for bit in their own tests: surrogate/pino in test_train_loop.py,
    # rollout in test_rollout_task.py; finetune and tensors have no state beyond the engine's
    assert {n for n in TASKS if n not in ("surrogate", "pino", "finetune", "tensors", "rollout")} == set(TINY)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", sorted(TINY))
def test_preconditioner_tasks_train_on_the_gpu(name, tmp_path):
    config = tiny_config(name, epochs=1, steps=2)
    result = fit(task_from_config(config), config, tmp_path / "run", device="cuda", progress=False)
    assert result.summary["device"].startswith("cuda")
    assert all(p.device.type == "cuda" for p in result.model.parameters())
    assert all(torch.isfinite(v).all() for v in weights(tmp_path / "run").values())


def _darcy_arrays(n: int, seed: int, resolution: int = 17):
    from pdesurrogates.physics.problems import get_problem

    return get_problem("darcy", resolution=resolution).generate(range(n), seed)


def _surrogate_config(**train):
    from pdesurrogates.train import config_from_dict

    return config_from_dict({"data": {"train": "<in memory>"}, "model": {"name": "fno", "width": 16, "modes": 6,
                                                                          "n_layers": 2},
                             "optimizer": {"lr": 3e-3}, "train": {"epochs": 10, "batch_size": 4, **train}})


def test_the_surrogate_task_trains_on_datasets_made_from_arrays(tmp_path):
    """Training from Python on from_arrays datasets, in memory and with a run directory that resumes."""
    from pdesurrogates.data import from_arrays
    from pdesurrogates.losses import relative_lp
    from pdesurrogates.models import Surrogate
    from pdesurrogates.train.tasks.surrogate import SurrogateTask

    (a, u), (a_test, u_test) = _darcy_arrays(64, 0), _darcy_arrays(16, 1)
    train_ds, test_ds = from_arrays(a, u, pde="darcy"), from_arrays(a_test, u_test, pde="darcy")
    config = _surrogate_config()
    result = fit(SurrogateTask(config, train_data=train_ds, test_data={"test": test_ds}), config, None,
                 device="cpu", progress=False)
    u_test = torch.from_numpy(u_test)
    baseline = float(relative_lp(torch.from_numpy(u).mean(0, keepdim=True).expand_as(u_test), u_test))
    assert result.metrics[-1]["test_l2"] < 0.7 * baseline  # beats predicting the mean training solution
    fit(SurrogateTask(config, train_data=train_ds, test_data={"test": test_ds}), config, tmp_path / "run",
        device="cpu", progress=False)
    x = torch.from_numpy(_darcy_arrays(2, 5)[0])
    assert Surrogate.load(tmp_path / "run" / "checkpoints" / "best")(x).shape == (2, 1, 17, 17)




@pytest.mark.parametrize("loss", [{"data": "l2"}, {"data": "none", "physics": "darcy"}], ids=["surrogate", "pino"])
@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_surrogate_and_pino_tasks_train_on_the_gpu(loss):
    import dataclasses

    from pdesurrogates.data import from_arrays
    from pdesurrogates.losses import LossConfig
    from pdesurrogates.train.tasks.surrogate import SurrogateTask

    config = dataclasses.replace(_surrogate_config(epochs=2), loss=LossConfig(**loss))
    ds = from_arrays(*_darcy_arrays(16, 0), pde="darcy")
    result = fit(SurrogateTask(config, train_data=ds, test_data={"test": ds}), config, None, device="cuda",
                 progress=False)
    assert all(p.device.type == "cuda" for p in result.model.parameters())
    assert all(torch.isfinite(torch.tensor(row["train_loss"])) for row in result.metrics)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_finetune_and_tensor_tasks_train_on_the_gpu():
    from pdesurrogates.losses import DarcyLoss
    from pdesurrogates.models import FNOConfig, build
    from pdesurrogates.train import finetune_instance, train_pino
    from pdesurrogates.train.tasks.tensors import relative_l2_loss

    a, u = (torch.from_numpy(v) for v in _darcy_arrays(8, 0))
    model = build(FNOConfig(width=8, modes=4, n_layers=2)).cuda()
    history = train_pino(model, a.cuda(), u.cuda(), relative_l2_loss, epochs=2, batch_size=4)
    assert len(history.loss) == 2 and all(torch.isfinite(torch.tensor(history.loss)))
    result = finetune_instance(model, a[:1].cuda(), DarcyLoss(), steps=3)
    assert result.prediction.device.type == "cuda" and len(result.physics) == 4


def test_the_data_decide_mgno_grid_layout_and_levels_left_at_their_defaults(neuralop_small, tmp_path):
    """neuraloperator's files sample x_i = i/n (half-open); our Darcy files hold both end nodes."""
    from pdesurrogates.models import MgNOConfig
    from pdesurrogates.train import config_from_dict
    from pdesurrogates.train.tasks.surrogate import SurrogateTask, fill_model_shape

    for path, kind, spatial in ((neuralop_small / "darcy_test_16.pt", "half-open", (16, 16)),):
        config = config_from_dict({"data": {"train": str(path), "n_train": 8},
                                   "model": {"name": "mgno", "width": 4, "n_layers": 1}, "train": {"epochs": 1}})
        task = SurrogateTask(config)
        task.setup(type("Run", (), {"resumed": False, "device": torch.device("cpu"), "precision": "none",
                                    "seed": 0, "dist": type("D", (), {"world_size": 1, "rank": 0})()})())
        assert task.model_cfg.grid_kind == kind
        assert task.model_cfg.levels == MgNOConfig(grid_kind=kind).fitted_to_grid(spatial).levels
        assert task.model_cfg.train_grid == spatial
        task.close()
    node = fill_model_shape(MgNOConfig(), 1, 1, 2, (65, 65), "node")
    assert (node.grid_kind, node.levels) == ("node", MgNOConfig().fitted_to_grid((65, 65)).levels)
    explicit = fill_model_shape(MgNOConfig(grid_kind="cell", levels=2), 1, 1, 2, (85, 85), "node")
    assert (explicit.grid_kind, explicit.levels, explicit.train_grid) == ("cell", 2, (85, 85))  # user's values win
    given = fill_model_shape(MgNOConfig(levels=2, train_grid=(33, 33)), 1, 1, 2, (85, 85), "node")
    assert given.train_grid == (33, 33)
    legacy = fill_model_shape(MgNOConfig(variant="legacy", levels=2), 1, 1, 2, (85, 85), "node")
    assert legacy.train_grid is None
