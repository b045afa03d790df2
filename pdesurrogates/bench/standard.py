"""Standard benchmarks: the FNO paper's Darcy, Burgers and Navier–Stokes settings on our data.

Each benchmark is a table of rows (one model each) trained through the engine
(:func:`pdesurrogates.train.train`) in its own run directory ``<runs>/<benchmark>/<model>/``, so a
row that was interrupted resumes bit-identically and a finished row is skipped. After training,
the last epoch's model is evaluated on the test samples at every test resolution (zero-shot above
the training resolution; ``final_eval.json`` in the run directory). :func:`report` writes
``standard_<benchmark>.{json,md,png}`` from whatever has finished or is under way: each row says how
many of its planned epochs are done, and the JSON holds every row's learning curve.

Where a paper's recipe does not fit the compute at hand, the row's epochs are cut and the schedule
compressed to the same shape; every row records the paper's recipe and the cut (``recipe_cut``)
beside the published number.

References: Li et al., "Fourier Neural Operator for Parametric Partial Differential Equations",
ICLR 2021 (its tables are copied in neuraloperator's documentation); He, Liu, Xu, "MgNO: Efficient
Parameterization of Linear Operators via Multigrid", ICLR 2024 (code ``xlliu2017/MgNO``);
Kossaifi et al., "Multi-Grid Tensorized Fourier Neural Operator for High-Resolution PDEs", TMLR 2023.
"""

from __future__ import annotations

import copy
import csv
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pdesurrogates.errors import UserInputError


@dataclass(frozen=True)
class Row:
    """One model of a benchmark.

    Attributes
    ----------
    model : str
        Row label (also the run directory's name).
    tables : dict
        The row's config tables besides ``[data]``: ``model``, ``loss``, ``optimizer``,
        ``schedule``, ``train``, ``eval`` (as a TOML file writes them).
    paper_recipe : str
        The published recipe this row follows.
    recipe_cut : str
        Where ours departs from it and why ("" when it does not).
    published : dict
        Published relative L2 errors by resolution (``{"85": 0.0108}``) and their ``source``.
    task : str
        The training task: ``surrogate``, or ``rollout`` (recurrent in time).
    """

    model: str
    tables: dict[str, Any]
    paper_recipe: str
    recipe_cut: str = ""
    published: dict[str, Any] = field(default_factory=dict)
    task: str = "surrogate"


@dataclass(frozen=True)
class Benchmark:
    """A data setting and its rows.

    Attributes
    ----------
    name : str
        ``darcy``, ``burgers`` or ``navier_stokes``: the result files are ``standard_<name>.*``.
    title : str
    data : dict
        The ``[data]`` table of every row (training resolution; the per-epoch evaluation runs at it).
    test_resolutions : tuple of int
        Resolutions of the final evaluation (the first is the training one). Empty for rollouts.
    rows : tuple of Row
    notes : str
        Markdown under the table: data provenance and what the targets are.
    generate : str
        The command that makes the data file.
    """

    name: str
    title: str
    data: dict[str, Any]
    test_resolutions: tuple[int, ...]
    rows: tuple[Row, ...]
    notes: str = ""
    generate: str = ""

    def row(self, model: str) -> Row:
        for r in self.rows:
            if r.model == model:
                return r
        raise UserInputError(f"benchmark {self.name!r}: no row {model!r}; rows: {[r.model for r in self.rows]}")

    @property
    def data_file(self) -> Path:
        return Path(self.data["train"])


# ----------------------------------------------------------------------------------------------
# The settings


def paper_weight_decay(weight_decay: float, batch: int) -> float:
    """Adam's (coupled, L2) weight decay on our batch-mean loss equivalent to ``weight_decay`` on the
    batch-*summed* loss the FNO and MgNO codes minimise (``LpLoss(size_average=False)``).

    Adam's step does not change when the gradient is scaled, so ``grad_sum + wd * w`` and
    ``grad_mean + (wd / batch) * w`` (``grad_sum = batch * grad_mean``) give the same update.

    >>> paper_weight_decay(1e-4, 20)
    5e-06
    """
    return weight_decay / batch


def step_recipe(epochs: int, *, paper_epochs: int = 500, paper_step: int = 100, lr: float = 1e-3,
                batch: int = 20) -> dict[str, Any]:
    """The FNO paper's optimiser as config tables: Adam (L2 weight decay 1e-4 on the batch-summed
    loss), lr halved every ``paper_step`` of ``paper_epochs`` epochs, compressed to ``epochs`` with
    the same number of halvings."""
    step = max(1, round(epochs * paper_step / paper_epochs))
    return {"optimizer": {"name": "adam", "lr": lr, "weight_decay": paper_weight_decay(1e-4, batch)},
            "schedule": {"name": "step", "step_epochs": step, "gamma": 0.5},
            "train": {"epochs": epochs, "batch_size": batch}}


def _cut(epochs: int, paper_epochs: int = 500, paper_step: int = 100) -> str:
    if epochs >= paper_epochs:
        return ""
    step = max(1, round(epochs * paper_step / paper_epochs))
    return (f"{epochs} epochs instead of {paper_epochs}, lr halved every {step} epochs instead of every "
            f"{paper_step} (same number of halvings): CPU budget")


def _join(*parts: str) -> str:
    return "; ".join(p for p in parts if p)


ONE_CYCLE = ("OneCycle (lr/2 up to lr over 20% of the epochs, then down to lr/200, per epoch) -> linear warm-up "
             "from 0 over 20% of the epochs, then cosine to lr/200, per step")
FNO_BLOCK_1D = ("neuraloperator's FNO layers (a channel MLP inside each Fourier layer); 16 modes of the paper = our "
                "modes [31] (neuraloperator keeps n // 2 + 1 real-FFT modes)")
FNO_BLOCK = ("neuraloperator's FNO layers (a channel MLP inside each Fourier layer, 2-layer lifting) instead "
             "of the paper's plain ones; 12 modes of the paper = our modes [24, 23] (neuraloperator counts "
             "+/- frequencies)")
WIDE = "width 64 instead of the paper's 24: the parameters the FNO row has (1.05M against 1.19M)"


def _darcy_models(tiny: bool) -> dict[str, dict[str, Any]]:
    w, modes, uw, depth = (4, [4, 3], 4, 2) if tiny else (32, [24, 23], 32, 4)
    fno = {"name": "fno", "width": w, "modes": modes, "projection_channel_ratio": 4}
    return {"fno": fno,
            "tfno": {**fno, "name": "tfno", "factorization": "tucker", "rank": 0.1},
            "unet": {"name": "unet", "width": uw, "depth": depth},
            # the paper's Darcy MgNO (24 channels, 4 layers), one weight set per scale of the 85 grid
            "mgno": {"name": "mgno", "width": 4, "n_layers": 1} if tiny else
                    {"name": "mgno", "width": 24, "n_layers": 4, "levels": 5},
            # the same at FNO's parameter budget (1.05M against FNO's 1.19M complex-counted)
            "mgno-wide": {"name": "mgno", "width": 6, "n_layers": 1} if tiny else
                         {"name": "mgno", "width": 64, "n_layers": 4, "levels": 5},
            # modes per 2x2 patch: half the FNO row's per axis
            "mg-tfno": {**fno, "name": "mg-tfno", "factorization": "tucker", "rank": 0.05, "levels": 1,
                        "modes": [4, 3] if tiny else [12, 11]}}


def darcy(data_file: str | Path, *, epochs: int = 25, resolution: int = 85,
          test_resolutions: Sequence[int] = (85, 141, 211), n_train: int = 1000, n_test: int = 100,
          tiny: bool = False) -> Benchmark:
    """Darcy flow, the FNO setting: ``darcy_421`` data, train at ``resolution`` on the first
    ``n_train`` samples, test on the next ``n_test`` at ``test_resolutions``.

    ``tiny`` shrinks every model to a few hundred parameters (tests)."""
    models = _darcy_models(tiny)
    cut = _cut(epochs)
    l2 = {"data": "l2"}
    ev = {"every": 1, "batch_size": 20}
    rows = (
        Row("fno", {"model": models["fno"], "loss": l2, **step_recipe(epochs), "eval": ev},
            paper_recipe="500 epochs, batch 20, Adam lr 1e-3 (L2 weight decay 1e-4) halved every 100 epochs, "
                         "width 32, 12 modes, 4 Fourier layers, relative L2 loss",
            recipe_cut=_join(cut, FNO_BLOCK),
            published={"85": 0.0108, "141": 0.0109, "211": 0.0109,
                       "source": "Li et al. ICLR 2021 (Darcy table, 1000 training samples, each resolution trained "
                                 "separately; 1,188,353 parameters counting a complex weight once); the authors' "
                                 "later code (GeLU, padding) reports 0.0076 at 85"}),
        Row("tfno", {"model": models["tfno"], "loss": l2, **step_recipe(epochs), "eval": ev},
            paper_recipe="the FNO row with Tucker-factorized spectral weights, rank 0.1 (Kossaifi et al.)",
            recipe_cut=cut),
        Row("unet", {"model": models["unet"], "loss": l2, **step_recipe(epochs), "eval": ev},
            paper_recipe="the FNO paper's optimiser (its Darcy table has no U-Net)", recipe_cut=cut),
        *(Row(name, {"model": models[model], "loss": {"data": loss},
                     "optimizer": {"name": "adam", "lr": 5e-4, "weight_decay": paper_weight_decay(1e-4, 8)},
                     "schedule": {"name": "cosine", "warmup_epochs": max(1, round(0.2 * epochs)),
                                  "min_lr": 5e-4 / 200},
                     "train": {"epochs": epochs, "batch_size": 8}, "eval": ev},
              paper_recipe="500 epochs, batch 8, Adam lr 5e-4 (L2 weight decay 1e-4), OneCycle, relative H1 loss, "
                           "trained at 211 (421 subsampled by 2)",
              recipe_cut=_join(f"{epochs} epochs instead of 500: CPU budget" if epochs < 500 else "",
                               f"trained at {resolution} like the other rows", ONE_CYCLE, note),
              published={"source": "MgNO paper (He, Liu, Xu, ICLR 2024) trains on the 211 grid of the FNO data; "
                                   "its table is not restated here"})
          for name, model, loss, note in (
              ("mgno", "mgno", "h1", ""),
              ("mgno-wide", "mgno-wide", "h1", WIDE),
              ("mgno-wide-l2", "mgno-wide", "l2", _join(WIDE, "relative L2 loss instead of H1, as the FNO row trains")))),
        Row("mg-tfno", {"model": models["mg-tfno"], "loss": l2, **step_recipe(epochs), "eval": ev},
            paper_recipe="the FNO row on 2x2 patches with one coarser context level, Tucker rank 0.05 "
                         "(Kossaifi et al.)", recipe_cut=cut),
    )
    data = {"train": str(data_file), "test": [str(data_file)], "n_train": n_train, "n_test": n_test,
            "test_start": n_train, "train_resolution": resolution, "test_resolutions": [resolution],
            "in_memory": True}
    notes = (f"Data: our `darcy_421` preset (two-phase coefficient 12/3 from a thresholded Gaussian field, f = 1, "
             f"421² nodes, seed 0): samples 0-{n_train - 1} train at {resolution}², samples "
             f"{n_train}-{n_train + n_test - 1} test at {', '.join(f'{r}²' for r in test_resolutions)} "
             f"(zero-shot above {resolution}²). Errors: relative L2 and H1 of the last epoch's model, mean over the "
             f"test samples. Targets: FNO within 10% of its published 0.0108 at 85²; MgNO at most half of FNO's "
             f"error with no more parameters. MgNO computes a finer input on its {resolution}² training grid "
             f"(`MgNOConfig.train_grid`, set by the training task; the rows trained before that field existed had "
             f"it added to their checkpoints afterwards, which leaves the {resolution}² computation unchanged).")
    return Benchmark("darcy", f"Darcy flow, FNO setting (train {resolution}², {n_train} samples)", data,
                     tuple(test_resolutions), rows, notes,
                     generate="pdesurrogates generate --preset darcy_421 --n 1100")


def burgers(data_file: str | Path, *, epochs: int = 500, resolution: int = 256,
            test_resolutions: Sequence[int] = (256, 512, 1024), n_train: int = 1000, n_test: int = 200,
            tiny: bool = False) -> Benchmark:
    """Burgers, nu = 0.1, the FNO setting: train at ``resolution`` (1000 samples), test on 200."""
    fno = {"name": "fno", "ndim": 1, "width": 64, "modes": [31], "projection_channel_ratio": 2}
    unet = {"name": "unet", "ndim": 1, "width": 32, "depth": 4}
    if tiny:
        fno, unet = {**fno, "width": 4, "modes": [7]}, {**unet, "width": 4, "depth": 2}
    cut = _cut(epochs)
    l2 = {"data": "l2"}
    ev = {"every": 1, "batch_size": 50}
    rows = (
        Row("fno", {"model": fno, "loss": l2, **step_recipe(epochs), "eval": ev},
            paper_recipe="500 epochs, batch 20, Adam lr 1e-3 (L2 weight decay 1e-4) halved every 100 epochs, "
                         "width 64, 16 modes, 4 Fourier layers, relative L2 loss, no normalisation",
            recipe_cut=_join(cut, FNO_BLOCK_1D),
            published={"256": 0.0149, "source": "Li et al. ICLR 2021 (Burgers table, s = 256)"}),
        Row("tfno", {"model": {**fno, "name": "tfno", "factorization": "tucker", "rank": 0.1}, "loss": l2,
                     **step_recipe(epochs), "eval": ev},
            paper_recipe="the FNO row with Tucker-factorized spectral weights, rank 0.1", recipe_cut=cut),
        Row("unet", {"model": unet, "loss": l2, **step_recipe(epochs), "eval": ev},
            paper_recipe="the FNO paper's optimiser (its Burgers table has no U-Net)", recipe_cut=cut),
    )
    data = {"train": str(data_file), "test": [str(data_file)], "n_train": n_train, "n_test": n_test,
            "test_start": n_train, "train_resolution": resolution, "test_resolutions": [resolution],
            "normalize_inputs": False, "normalize_outputs": False, "in_memory": True}
    notes = (f"Data: our `burgers` generator in the FNO setting (nu = 0.1, u0 ~ N(0, 625(-Laplace + 25 I)^-2), "
             f"u(t = 1), seed 0), prior drawn and solved on 1024 points (the paper: 8192) and subsampled; "
             f"samples 0-{n_train - 1} train at {resolution}, {n_train}-{n_train + n_test - 1} test at "
             f"{', '.join(map(str, test_resolutions))} (zero-shot above {resolution}). "
             f"Target: FNO within 10% of its published 0.0149.")
    return Benchmark("burgers", f"Burgers nu = 0.1, FNO setting (train s = {resolution}, {n_train} samples)",
                     data, tuple(test_resolutions), rows, notes,
                     generate="pdesurrogates generate burgers --n 1200 --resolution 1024 "
                              "--param solver_resolution=1024 --out datasets/generated/burgers_1024.h5")


def navier_stokes(data_file: str | Path, *, epochs: int = 5, n_train: int = 1000, n_test: int = 200,
                  history: int = 10, horizon: int = 40, tiny: bool = False) -> Benchmark:
    """Navier–Stokes nu = 1e-3 at 64²: from the first ``history`` frames predict the next ``horizon``
    (to T = 50), the model stepped recurrently in time (task ``rollout``)."""
    fno = {"name": "fno", "width": 20, "modes": [24, 23], "projection_channel_ratio": 6}
    unet = {"name": "unet", "width": 32, "depth": 4}
    if tiny:
        fno, unet = {**fno, "width": 4, "modes": [4, 3], "projection_channel_ratio": 2}, {**unet, "width": 4,
                                                                                          "depth": 2}
    ev = {"every": 1, "batch_size": 50}
    cut = _cut(epochs)
    rows = (
        Row("fno-2d", {"model": fno, **step_recipe(epochs), "eval": ev},
            paper_recipe="FNO-2D recurrent in time (last 10 frames -> next frame), trained by rolling out 40 steps "
                         "and summing each step's relative L2; 500 epochs, batch 20, Adam lr 1e-3 (L2 weight decay "
                         "1e-4) halved every 100 epochs, width 20, 12 modes",
            recipe_cut=_join(cut, FNO_BLOCK, "projection 120 wide instead of 128"),
            published={"64": 0.0128, "source": "Li et al. ICLR 2021 (Navier-Stokes table, nu = 1e-3, N = 1000, "
                                               "FNO-2D, relative L2 over the 40 predicted frames)"},
            task="rollout"),
        Row("unet", {"model": unet, **step_recipe(epochs), "eval": ev},
            paper_recipe="U-Net recurrent in time like FNO-2D (the paper's U-Net has 24.9M parameters)",
            recipe_cut=_join(cut, "a 7.8M-parameter U-Net (width 32, depth 4)"),
            published={"64": 0.0245, "source": "Li et al. ICLR 2021 (Navier-Stokes table, nu = 1e-3, U-Net)"},
            task="rollout"),
    )
    data = {"train": str(data_file), "n_train": n_train, "n_test": n_test, "test_start": n_train,
            "history": history, "horizon": horizon}
    notes = (f"Data: our `ns_1e-3_64` preset (vorticity form, nu = 1e-3, FNO forcing and prior, solved at 64², "
             f"which agrees with a 256² solve to < 2.1e-5 at t = 10, 30, 50), frames at t = 1..50: frames "
             f"1-{history} in, {history + 1}-{history + horizon} predicted; trajectories 0-{n_train - 1} train, "
             f"{n_train}-{n_train + n_test - 1} test. Error: relative L2 of the whole predicted trajectory "
             f"(the paper's), mean over test trajectories; `l2_step` is the mean of the per-frame errors. "
             f"Target: FNO-2D within 10% of its published 0.0128.")
    return Benchmark("navier_stokes", "Navier-Stokes nu = 1e-3, 64², first 10 frames -> frames 11-50",
                     data, (), rows, notes, generate="pdesurrogates generate --preset ns_1e-3_64")


def default_benchmark(name: str, root: Path, **kwargs: Any) -> Benchmark:
    """The benchmark ``name`` on its default data file under ``root/datasets/generated``."""
    files = {"darcy": "darcy_421.h5", "burgers": "burgers_1024.h5", "navier_stokes": "ns_1e-3_64.h5"}
    builders = {"darcy": darcy, "burgers": burgers, "navier_stokes": navier_stokes}
    if name not in builders:
        raise UserInputError(f"unknown benchmark {name!r}; choose from {sorted(builders)}")
    return builders[name](Path(root) / "datasets" / "generated" / files[name], **kwargs)


# ----------------------------------------------------------------------------------------------
# Running


def row_config(bench: Benchmark, row: Row, seed: int = 0) -> dict[str, Any]:
    """The raw config (the tables of a config file) of one row."""
    raw = {"task": row.task, "seed": seed, "data": copy.deepcopy(bench.data)}
    raw.update(copy.deepcopy(row.tables))
    return raw


def _without_stops(raw: dict[str, Any]) -> dict[str, Any]:
    out = json.loads(json.dumps(raw))
    for key in ("stop_after", "time_limit"):
        out.get("train", {}).pop(key, None)
    return out


ROW_FILE = "standard_row.json"  # the row's raw config, written when its run starts


def run_status(run_dir: Path) -> dict[str, Any]:
    """``state`` (``missing``, ``started``, ``finished``), ``epochs_done`` of a run directory."""
    run_dir = Path(run_dir)
    metrics = run_dir / "metrics.csv"
    done = len(read_metrics(metrics)) if metrics.is_file() else 0
    summary = run_dir / "summary.json"
    if summary.is_file() and json.loads(summary.read_text()).get("status") == "finished":
        return {"state": "finished", "epochs_done": done}
    if (run_dir / "checkpoints" / "last").is_dir():
        return {"state": "started", "epochs_done": done}
    return {"state": "missing", "epochs_done": 0}


def train_row(bench: Benchmark, row: Row, runs: Path, *, time_limit: float = 0.0, stop_after: int = 0,
              device: str = "cpu", progress: bool = False) -> dict[str, Any]:
    """Train or resume ``row`` in ``runs/<benchmark>/<model>`` (skipped when finished), then evaluate it.

    A run directory made with another config is refused rather than resumed. ``time_limit``
    (seconds of training in total, across resumes) and ``stop_after`` (epochs) stop it resumably.
    Returns :func:`run_status` after the call.
    """
    from pdesurrogates.train import config_from_dict, train

    out = Path(runs) / bench.name / row.model
    raw = row_config(bench, row)
    raw["train"] = {**raw.get("train", {}), "time_limit": float(time_limit), "stop_after": int(stop_after)}
    config = config_from_dict(raw, where=f"standard {bench.name}/{row.model}")
    status = run_status(out)
    if status["state"] != "missing":
        saved = json.loads((out / ROW_FILE).read_text()) if (out / ROW_FILE).is_file() else None
        if saved != _without_stops(raw):
            raise UserInputError(f"{out}: that run was made with another config than row {bench.name}/{row.model} "
                                 f"has now (or without {ROW_FILE}); move it away to start again")
    if status["state"] != "finished":
        if status["state"] == "started":
            train(config, None, resume=out, device=device, progress=progress)
        else:
            out.mkdir(parents=True, exist_ok=True)
            (out / ROW_FILE).write_text(json.dumps(_without_stops(raw), indent=2) + "\n")
            # no checkpoint yet: files of a start that died before its first epoch are replaced
            train(config, out, device=device, progress=progress, overwrite=True)
        status = run_status(out)
    if status["state"] == "finished" and not (out / "final_eval.json").is_file():
        final_evaluation(bench, row, out, device=device)
    return status


def final_evaluation(bench: Benchmark, row: Row, run_dir: Path, device: str = "cpu") -> dict[str, Any]:
    """Errors of the run's last model at every test resolution (a rollout: on its test trajectories),
    written to ``final_eval.json`` in the run directory with the seconds it took."""
    t0 = time.perf_counter()
    if row.task == "rollout":
        out = _final_rollout(bench, run_dir, device)
    else:
        out = _final_surrogate(bench, run_dir, device)
    out["eval_s"] = time.perf_counter() - t0
    (Path(run_dir) / "final_eval.json").write_text(json.dumps(out, indent=2) + "\n")
    return out


def _final_surrogate(bench: Benchmark, run_dir: Path, device: str) -> dict[str, Any]:
    from pdesurrogates.data import open_dataset
    from pdesurrogates.train.evaluation import (
        evaluate_dataset,
        is_periodic,
        load_predictor,
        stride_for_resolution,
    )

    predict, _ = load_predictor(Path(run_dir) / "checkpoints" / "last", device=device)
    path, start, n = bench.data["test"][0], bench.data["test_start"], bench.data["n_test"]
    probe = open_dataset(path)
    spatial = probe.meta["spatial_shape"]
    probe.close()
    out: dict[str, Any] = {}
    for r in bench.test_resolutions:
        if len(spatial) == 1:
            stride = int(spatial[0]) // r
            if stride < 1 or int(spatial[0]) % r:
                raise UserInputError(f"test resolution {r} does not divide the {spatial[0]}-point grid of {path}")
        else:
            stride = stride_for_resolution(spatial, r, f"test resolution {r}")
        ds = open_dataset(path, stride=stride, indices=range(start, start + n), in_memory=True)
        res = evaluate_dataset(predict, ds, batch_size=10, device=device, periodic=is_periodic(ds.meta))
        ds.close()
        out[str(r)] = {"l2": res["l2"], "h1": res["h1"], "n": res["n"], "resolution": res["resolution"]}
    return out


def _final_rollout(bench: Benchmark, run_dir: Path, device: str) -> dict[str, Any]:
    import torch

    from pdesurrogates.models import load_checkpoint
    from pdesurrogates.train.tasks.rollout import load_frames, rollout_errors

    ckpt = load_checkpoint(Path(run_dir) / "checkpoints" / "last")
    d = bench.data
    frames = load_frames(d["train"], d["test_start"], d["n_test"], 1, "final evaluation")
    errors = rollout_errors(ckpt.model.to(torch.device(device)), frames, d["history"], d["horizon"],
                            torch.device(device))
    side = frames.shape[-1]
    return {str(side): errors}


def read_metrics(path: Path) -> list[dict[str, str]]:
    with Path(path).open(newline="") as fh:
        return list(csv.DictReader(fh))


def _float(v: Any) -> float | None:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


# ----------------------------------------------------------------------------------------------
# Report


def collect(bench: Benchmark, runs: Path, root: Path | None = None) -> list[dict[str, Any]]:
    """One result row per benchmark row from its run directory (rows never started included)."""
    rows = []
    for row in bench.rows:
        out = Path(runs) / bench.name / row.model
        planned = int(row.tables["train"]["epochs"])
        status = run_status(out)
        entry: dict[str, Any] = {"model": row.model, "state": status["state"], "epochs_done": status["epochs_done"],
                                 "epochs_planned": planned, "epochs_paper": 500,
                                 "epochs": f"{status['epochs_done']}/{planned}", "paper_recipe": row.paper_recipe,
                                 "recipe_cut": row.recipe_cut, "published": row.published}
        if status["state"] != "missing":
            metrics = read_metrics(out / "metrics.csv") if (out / "metrics.csv").is_file() else []
            summary = json.loads((out / "summary.json").read_text()) if (out / "summary.json").is_file() else {}
            times = [_float(m.get("epoch_time_s")) or 0.0 for m in metrics]
            entry["train_s"] = round(float(summary.get("wall_time_s", sum(times))), 1)
            entry["s_per_epoch"] = round(sum(times) / len(times), 1) if times else None
            if (out / "checkpoints" / "last").is_dir():
                from pdesurrogates.models import config_to_dict, count_parameters, load_checkpoint

                ckpt = load_checkpoint(out / "checkpoints" / "last")
                entry["params"] = count_parameters(ckpt.model)  # real numbers: a complex weight counts twice
                entry["params_complex_once"] = sum(p.numel() for p in ckpt.model.parameters())  # the papers' count
                entry["model_config"] = config_to_dict(ckpt.config)
            monitor = _curve_key(metrics)
            entry["curve"] = {"epoch": [int(m["epoch"]) for m in metrics],
                              "train_loss": [_float(m.get("train_loss")) for m in metrics],
                              "test_l2": [_float(m.get(monitor)) for m in metrics] if monitor else [],
                              "metric": monitor}
            final = out / "final_eval.json"
            if final.is_file():
                entry["final"] = json.loads(final.read_text())
            elif metrics and monitor:
                entry["latest_test_l2"] = _float(metrics[-1].get(monitor))
        rows.append(entry)
    return rows


def _curve_key(metrics: list[dict[str, str]]) -> str | None:
    if not metrics:
        return None
    keys = [k for k in metrics[0] if k.startswith("test") and k.endswith("_l2")]
    return keys[0] if keys else None


def table_rows(bench: Benchmark, rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
    """The Markdown table: errors at each resolution beside the published ones."""
    resolutions = [str(r) for r in bench.test_resolutions] or ["64"]
    cols = ["model", "params", "params_complex_once", "epochs", "train_h", "s_per_epoch"]
    out = []
    for r in rows:
        t = {"model": r["model"], "params": r.get("params", ""), "params_complex_once": r.get("params_complex_once", ""),
             "epochs": f"{r['epochs']} (paper 500)",
             "train_h": round(r["train_s"] / 3600, 2) if r.get("train_s") else "",
             "s_per_epoch": r.get("s_per_epoch", "")}
        final = r.get("final", {})
        for res in resolutions:
            f = final.get(res, {})
            t[f"l2_{res}"] = f.get("l2", "")
            if bench.test_resolutions:
                t[f"h1_{res}"] = f.get("h1", "")
            else:
                t[f"l2_step_{res}"] = f.get("l2_step", "")
            pub = r["published"].get(res)
            t[f"published_l2_{res}"] = pub if pub is not None else ""
        first = resolutions[0]
        if not final and r.get("latest_test_l2") is not None:
            t[f"l2_{first}"] = f"{r['latest_test_l2']:.4g} (epoch {r['epochs_done']}, running)"
        pub = r["published"].get(first)
        value = final.get(first, {}).get("l2")
        t["ratio_to_published"] = round(value / pub, 2) if (value and pub) else ""
        out.append(t)
    for res in resolutions:
        cols += [f"l2_{res}", f"h1_{res}" if bench.test_resolutions else f"l2_step_{res}", f"published_l2_{res}"]
    cols.append("ratio_to_published")
    return out, cols


def report(bench: Benchmark, runs: Path, *, out_dir: Path | None = None, device: str = "cpu",
           extra_notes: str = "", root: Path | None = None) -> dict[str, Path]:
    """Write ``standard_<name>.{json,md,png}`` from the run directories under ``runs``."""
    from pdesurrogates.bench.report import REPO, write_results

    root = Path(root) if root is not None else REPO
    rows = collect(bench, runs)
    table, cols = table_rows(bench, rows)
    recipes = "\n".join(f"- **{r['model']}** ({r['epochs']} epochs, state {r['state']}): paper recipe: "
                        f"{r['paper_recipe']}." + (f" Cut: {r['recipe_cut']}." if r["recipe_cut"] else "")
                        + (f" Published: {r['published']['source']}." if r["published"].get("source") else "")
                        for r in rows)
    counts = ("`params` counts real numbers (a complex weight twice, as `pdesurrogates.models.count_parameters`); "
              "`params_complex_once` counts a complex weight once, as the papers do. `epochs`: done/planned; "
              "`train_h`: training wall time on the shared machine; `l2_*`/`h1_*`: the last epoch's model, or the "
              "latest per-epoch test error while a row is still running.")
    notes = (f"{bench.notes}\n\n{counts}\n\n{target_lines(bench, rows)}{recipes}\n"
             + (f"\n{extra_notes}\n" if extra_notes else ""))
    data = {**bench.data}
    for key in ("train",):
        data[key] = _relative(data[key], root)
    if "test" in data:
        data["test"] = [_relative(t, root) for t in data["test"]]
    config = {"benchmark": bench.name, "data": data, "test_resolutions": list(bench.test_resolutions),
              "generate": bench.generate,
              "rows": {r.model: {"task": r.task, **r.tables} for r in bench.rows}}
    paths = write_results(f"standard_{bench.name}", table, config=config, device=device, title=bench.title,
                          notes=notes, columns=cols, out_dir=out_dir, extra={"runs": rows})
    paths["png"] = plot_curves(rows, paths["json"].with_suffix(".png"), bench.title)
    return paths


def target_lines(bench: Benchmark, rows: list[dict[str, Any]]) -> str:
    """The targets, met or not: each finished row within 10% of its published error at the training
    resolution; MgNO at most half of FNO's error with no more parameters."""
    first = str(bench.test_resolutions[0]) if bench.test_resolutions else "64"
    lines = []
    done = {r["model"]: r for r in rows if r.get("final", {}).get(first)}
    for name, r in done.items():
        pub = r["published"].get(first)
        if pub:
            ratio = r["final"][first]["l2"] / pub
            lines.append(f"- {name}: {r['final'][first]['l2']:.4f} against the published {pub} ({ratio:.2f}x) after "
                         f"{r['epochs']} epochs: target (within 10% of it) "
                         f"{'met' if ratio <= 1.1 else 'not met'}.")
    mgno_rows = [row.model for row in bench.rows if row.tables["model"]["name"] == "mgno"]
    for name in (n for n in mgno_rows if n in done and "fno" in done):
        m, f = done[name], done["fno"]
        l2 = m["final"][first]["l2"] / f["final"][first]["l2"]
        h1 = m["final"][first]["h1"] / f["final"][first]["h1"]
        lines.append(f"- {name} / fno at {first}: L2 {l2:.2f}x, H1 {h1:.2f}x, parameters {m['params'] / f['params']:.3f}x "
                     f"({m['params_complex_once'] / f['params_complex_once']:.3f}x counting a complex weight once): "
                     f"target (at most half of FNO's error, no more parameters) {'met' if l2 <= 0.5 else 'not met'} "
                     f"in L2{', met in H1' if h1 <= 0.5 else ''}.")
    return ("Targets:\n" + "\n".join(lines) + "\n\n") if lines else ""


def _relative(path: str, root: Path) -> str:
    p = Path(path)
    try:
        return p.resolve().relative_to(Path(root).resolve()).as_posix()
    except ValueError:
        return p.name


def plot_curves(rows: list[dict[str, Any]], path: Path, title: str) -> Path:
    """Test relative L2 (training resolution) per epoch of every row, log scale."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.0, 4.0), layout="constrained")
    ax = fig.add_subplot(1, 1, 1)
    drawn = False
    for i, r in enumerate(rows):
        curve = r.get("curve") or {}
        pts = [(e, v) for e, v in zip(curve.get("epoch", []), curve.get("test_l2", [])) if v]
        if not pts:
            continue
        e, v = zip(*pts)
        ax.plot(e, v, "-o", ms=3, color=f"C{i}", label=f"{r['model']} ({r['epochs']} epochs)")
        pub = next((p for k, p in r["published"].items() if k != "source"), None)
        if pub:
            ax.axhline(pub, color=f"C{i}", ls=":", lw=1, label=f"{r['model']} published {pub}")
        drawn = True
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("test relative L2 (training resolution)")
    ax.set_title(title, fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    if drawn:
        ax.legend(fontsize=7)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path


# ----------------------------------------------------------------------------------------------
# Burgers: the solver grid


def burgers_solver_check(n_samples: int = 3, solver_resolution: int = 1024, reference_resolution: int = 8192,
                         seed: int = 0) -> dict[str, Any]:
    """How far a Burgers solve at ``solver_resolution`` is from one at ``reference_resolution``.

    Samples ``0..n_samples-1`` of the ``burgers`` generator on ``solver_resolution`` points (prior
    drawn on that grid, as the dataset is made) are solved again on the reference grid from the same
    initial condition, interpolated spectrally (zero-padded Fourier series). Returns the relative L2
    differences of ``u(t = 1)`` at the coarse nodes, the share of the prior's variance in modes the
    coarse grid cannot hold, and the CPU seconds per sample of both solves.
    """
    import numpy as np
    import torch

    from pdesurrogates.physics import burgers as _burgers
    from pdesurrogates.physics.problems import get_problem
    from pdesurrogates.physics.random import covariance_eigenvalues

    problem = get_problem("burgers", resolution=solver_resolution, solver_resolution=solver_resolution)
    t0 = time.process_time()
    x, y = problem.generate(range(n_samples), seed=seed, device="cpu")
    coarse_s = (time.process_time() - t0) / n_samples
    u0 = torch.as_tensor(x[:, 0], dtype=torch.float64)
    spectrum = torch.fft.rfft(u0, dim=-1)
    padded = torch.zeros(n_samples, reference_resolution // 2 + 1, dtype=spectrum.dtype)
    padded[:, : spectrum.shape[1] - 1] = spectrum[:, :-1]  # drop the coarse Nyquist mode
    fine0 = torch.fft.irfft(padded, n=reference_resolution, dim=-1) * (reference_resolution / solver_resolution)
    t0 = time.process_time()
    fine = torch.stack([_burgers.solve_burgers(fine0[k], problem.nu, problem.times) for k in range(n_samples)])
    fine_s = (time.process_time() - t0) / n_samples
    ref = fine[:, -1, :: reference_resolution // solver_resolution].numpy()
    diff = np.linalg.norm(y[:, 0].astype(np.float64) - ref, axis=-1) / np.linalg.norm(ref, axis=-1)
    lam = np.asarray(covariance_eigenvalues((reference_resolution,), problem.alpha, problem.tau, problem.sigma))
    freq = np.abs(np.fft.fftfreq(reference_resolution, 1.0 / reference_resolution))
    tail = float(lam[freq >= solver_resolution // 2].sum() / lam[freq > 0].sum())
    return {"solver_resolution": solver_resolution, "reference_resolution": reference_resolution,
            "n_samples": n_samples, "rel_l2_max": float(diff.max()), "rel_l2_mean": float(diff.mean()),
            "prior_variance_beyond_solver_grid": tail, "cpu_s_per_sample": coarse_s,
            "reference_cpu_s_per_sample": fine_s}


# ----------------------------------------------------------------------------------------------
# Command line

DEFAULT_EPOCHS = {"darcy": 25, "burgers": 500, "navier_stokes": 5}


def main(argv: Sequence[str] | None = None) -> int:
    """``python benchmarks/standard.py BENCHMARK [--models ...] [--report] ...``; see the module docstring."""
    import argparse

    import torch

    from pdesurrogates.bench.report import REPO

    parser = argparse.ArgumentParser(
        prog="benchmarks/standard.py",
        description="Train (or resume) the rows of a standard benchmark, then write standard_<name>.{json,md,png}.")
    parser.add_argument("benchmark", choices=sorted(DEFAULT_EPOCHS))
    parser.add_argument("--models", nargs="+", default=None, help="rows to train (default: all), in this order")
    parser.add_argument("--report", action="store_true", help="only write the result files from the run directories")
    parser.add_argument("--epochs", type=int, default=None, help="planned epochs of every row (default: "
                        + ", ".join(f"{k} {v}" for k, v in DEFAULT_EPOCHS.items()) + ")")
    parser.add_argument("--time-limit", type=float, default=0.0,
                        help="stop each row resumably after this many seconds of training in total (0: none)")
    parser.add_argument("--stop-after", type=int, default=0, help="stop each row resumably after this many epochs")
    parser.add_argument("--data", type=Path, default=None, help="data file (default: datasets/generated/...)")
    parser.add_argument("--runs", type=Path, default=REPO / "runs" / "standard", help="run directories")
    parser.add_argument("--out-dir", type=Path, default=None, help="result folder (default benchmarks/results/cpu)")
    parser.add_argument("--tiny", action="store_true", help="tiny models (a smoke test of the script)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    kwargs: dict[str, Any] = {"epochs": args.epochs or DEFAULT_EPOCHS[args.benchmark], "tiny": args.tiny}
    if args.data is not None:
        builders = {"darcy": darcy, "burgers": burgers, "navier_stokes": navier_stokes}
        bench = builders[args.benchmark](args.data.resolve(), **kwargs)
    else:
        bench = default_benchmark(args.benchmark, REPO, **kwargs)
    if not args.report:
        if not bench.data_file.is_file():
            print(f"{bench.data_file} not found; make it with `{bench.generate}`")
            return 2
        for name in args.models or [r.model for r in bench.rows]:
            row = bench.row(name)
            status = train_row(bench, row, args.runs, time_limit=args.time_limit, stop_after=args.stop_after,
                               device=args.device)
            print(f"{bench.name}/{name}: {status['state']}, {status['epochs_done']} epochs", flush=True)
            report(bench, args.runs, out_dir=args.out_dir, device=args.device)
    paths = report(bench, args.runs, out_dir=args.out_dir, device=args.device)
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


__all__ = [
    "Benchmark",
    "Row",
    "burgers",
    "burgers_solver_check",
    "collect",
    "darcy",
    "default_benchmark",
    "final_evaluation",
    "main",
    "navier_stokes",
    "paper_weight_decay",
    "plot_curves",
    "report",
    "row_config",
    "run_status",
    "step_recipe",
    "train_row",
]
