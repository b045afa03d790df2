"""``scaling-params``: test error vs parameter count, a width sweep per model family at fixed data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pdesurrogates.bench import fits as _fits
from pdesurrogates.bench import plots
from pdesurrogates.bench.suites import _common

NAME = "scaling-params"
TITLE = "Scaling with model size: test error vs parameters (Darcy)"
_ALL = ["fno", "tfno", "mgno", "unet", "neuralop-fno"]
SIZES = {
    "smoke": {"n_bootstrap": 20,
        "data": {"source": "neuralop", "n_train": 16, "n_test": 8},
        "families": _ALL, "widths": [4, 8], "seeds": [0], "modes": 4,
        "budget": {"epochs": 1, "batch_size": 8, "lr": 3e-3, "weight_decay": 1e-4},
    },
    "small": {
        "data": {"source": "generated", "resolution": 32, "n_train": 96, "n_test": 48, "seed": 0},
        "families": ["fno", "mgno", "neuralop-fno"],
        "widths": {"fno": [4, 6, 8, 12, 16], "mgno": [2, 4, 6, 8, 12], "neuralop-fno": [4, 8, 16]},
        "seeds": [0, 1, 2], "modes": 8,
        "budget": {"epochs": 25, "batch_size": 8, "lr": 3e-3, "weight_decay": 1e-4},
    },
    "full": {
        "data": {"source": "generated", "resolution": 64, "n_train": 1000, "n_test": 200, "seed": 0},
        "families": _ALL + ["mg-tfno"], "widths": [8, 16, 24, 32, 48, 64, 96], "seeds": [0, 1, 2],
        "modes": 16, "budget": {"epochs": 100, "batch_size": 8, "lr": 3e-3, "weight_decay": 1e-4},
    },
}
COLUMNS = ["family", "width", "seed", "params", "test_rel_l2", "train_seconds", "train_flops", "final_train_loss"]


def prepare(config: dict[str, Any], device: str) -> dict[str, Any]:
    return _common.prepare_training(config)


def points(config: dict[str, Any], context: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"family": f, "width": w, "seed": s}
            for f in context["families"] for w in widths_for(config, f) for s in config["seeds"]]


def widths_for(config: dict[str, Any], family: str) -> list[int]:
    """``config["widths"]``: one list for all families, or ``{family: list}``."""
    w = config["widths"]
    if isinstance(w, dict):
        if family not in w:
            raise ValueError(f"scaling-params: no widths given for family {family!r}")
        return list(w[family])
    return list(w)


def measure(point: dict[str, Any], context: dict[str, Any], config: dict[str, Any], device: str) -> dict[str, Any]:
    out = _common.train_point(point["family"], point["width"], point["seed"], context["data"], config, device)
    out.pop("history")
    return out


def analyze(rows: list[dict[str, Any]], config: dict[str, Any]) -> dict[str, Any]:
    fits = _fits.fit_groups(rows, group="family", x="params", y="test_rel_l2", n_bootstrap=config.get("n_bootstrap", 300), seed=0)
    notes = (
        _common.data_note(config)
        + "\nFits: `err = a·P^-b` (solid) and `err = a·P^-b + c` (dashed), robust least squares in log "
        "space (soft-L1), 95% bootstrap CIs over (width, seed) points.\n"
    )
    notes += _common.fit_regime_note(rows)
    return {"fits": fits, "tables": {"exponents (error vs parameters)": _fits.exponent_table(fits, variable="params")},
            "notes": notes, "columns": COLUMNS}


def plot(payload: dict[str, Any], folder: Path, stem: str) -> list[Path]:
    return [plots.loglog_plot(folder / f"{stem}_error_vs_params.png", payload["rows"], x="params",
                              y="test_rel_l2", group="family", fits=payload["fits"], title=payload["title"],
                              xlabel="trainable parameters", ylabel="test relative L2")]
