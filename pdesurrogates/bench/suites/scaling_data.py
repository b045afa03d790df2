"""``scaling-data``: test error vs training-set size at a fixed model, same number of optimizer steps."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from pdesurrogates.bench import fits as _fits
from pdesurrogates.bench import plots
from pdesurrogates.bench.suites import _common

NAME = "scaling-data"
TITLE = "Scaling with data: test error vs number of training samples (Darcy)"
SIZES = {
    "smoke": {"n_bootstrap": 20,
        "data": {"source": "neuralop", "n_train": 32, "n_test": 16},
        "families": ["fno", "mgno"], "width": 4, "n_train": [16, 32], "seeds": [0], "modes": 4,
        "steps": 4, "budget": {"epochs": 1, "batch_size": 8, "lr": 3e-3, "weight_decay": 1e-4},
    },
    "small": {
        "data": {"source": "neuralop", "n_train": 512, "n_test": 50},
        "families": ["fno", "mgno"], "width": 8, "n_train": [32, 64, 128, 256, 512], "seeds": [0, 1, 2],
        "modes": 8, "steps": 600, "budget": {"epochs": 1, "batch_size": 8, "lr": 3e-3, "weight_decay": 1e-4},
    },
    "full": {
        "data": {"source": "generated", "resolution": 64, "n_train": 4096, "n_test": 200, "seed": 0},
        "families": ["fno", "tfno", "mgno", "unet"], "width": 32, "n_train": [64, 128, 256, 512, 1024, 2048, 4096],
        "seeds": [0, 1, 2], "modes": 16, "steps": 5000,
        "budget": {"epochs": 1, "batch_size": 8, "lr": 3e-3, "weight_decay": 1e-4},
    },
}
COLUMNS = ["family", "n_train", "seed", "epochs", "params", "test_rel_l2", "train_seconds", "final_train_loss"]


def prepare(config: dict[str, Any], device: str) -> dict[str, Any]:
    if max(config["n_train"]) > config["data"]["n_train"]:
        raise ValueError(f"scaling-data: data.n_train must be >= max(n_train) = {max(config['n_train'])}")
    return _common.prepare_training(config)


def points(config: dict[str, Any], context: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"family": f, "n_train": n, "seed": s}
            for f in context["families"] for n in config["n_train"] for s in config["seeds"]]


def epochs_for(n_train: int, config: dict[str, Any]) -> int:
    """Epochs giving every training-set size about the same number of optimizer steps."""
    bs = config["budget"]["batch_size"]
    return max(1, round(config["steps"] / math.ceil(n_train / bs)))


def measure(point: dict[str, Any], context: dict[str, Any], config: dict[str, Any], device: str) -> dict[str, Any]:
    data = context["data"].subset(point["n_train"])
    out = _common.train_point(point["family"], config["width"], point["seed"], data, config, device,
                              epochs=epochs_for(point["n_train"], config))
    out.pop("history")
    return out


def analyze(rows: list[dict[str, Any]], config: dict[str, Any]) -> dict[str, Any]:
    fits = _fits.fit_groups(rows, group="family", x="n_train", y="test_rel_l2", n_bootstrap=config.get("n_bootstrap", 300), seed=0)
    notes = (
        _common.data_note(config)
        + f"\nModel width {config['width']}; every training-set size gets about {config['steps']} optimizer "
        "steps (epochs = steps / batches per epoch), so small sets are not under-trained.\n"
        "Fits: `err = a·N^-b` (solid) and `+ c` (dashed), robust log-space least squares, 95% bootstrap CIs.\n"
    )
    notes += _common.fit_regime_note(rows)
    return {"fits": fits, "tables": {"exponents (error vs training samples)": _fits.exponent_table(fits, variable="n_train")},
            "notes": notes, "columns": COLUMNS}


def plot(payload: dict[str, Any], folder: Path, stem: str) -> list[Path]:
    return [plots.loglog_plot(folder / f"{stem}_error_vs_data.png", payload["rows"], x="n_train",
                              y="test_rel_l2", group="family", fits=payload["fits"], title=payload["title"],
                              xlabel="training samples", ylabel="test relative L2")]
