"""``compute``: test error vs training FLOPs and seconds; the compute-optimal frontier across sizes.

Each (family, width) is trained once with test errors recorded at log-spaced epochs, so one run
gives a whole error-vs-compute curve. The frontier is, per compute bin, the lowest error any size
reached with at most that compute (Chinchilla-style); fitted as ``err ∝ C^-b`` with the
compute-optimal parameter count ``P* ∝ C^a``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from pdesurrogates.bench import fits as _fits
from pdesurrogates.bench import plots
from pdesurrogates.bench.suites import _common

NAME = "compute"
TITLE = "Compute: test error vs training FLOPs, compute-optimal frontier (Darcy)"
SIZES = {
    "smoke": {"n_bootstrap": 20,
        "data": {"source": "neuralop", "n_train": 32, "n_test": 16},
        "families": ["fno", "mgno"], "widths": [4, 8], "seeds": [0], "modes": 4, "eval_epochs": [1, 2],
        "budget": {"epochs": 2, "batch_size": 8, "lr": 3e-3, "weight_decay": 1e-4},
    },
    "small": {
        "data": {"source": "generated", "resolution": 32, "n_train": 96, "n_test": 48, "seed": 0},
        "families": ["fno", "mgno"], "widths": [4, 8, 16], "seeds": [0], "modes": 8,
        "eval_epochs": [1, 2, 4, 8, 12], "budget": {"epochs": 12, "batch_size": 8, "lr": 3e-3, "weight_decay": 1e-4},
    },
    "full": {
        "data": {"source": "generated", "resolution": 64, "n_train": 1000, "n_test": 200, "seed": 0},
        "families": ["fno", "tfno", "mgno", "unet"], "widths": [8, 16, 32, 64, 96], "seeds": [0, 1],
        "modes": 16, "eval_epochs": [1, 2, 4, 8, 16, 32, 64, 128],
        "budget": {"epochs": 128, "batch_size": 8, "lr": 3e-3, "weight_decay": 1e-4},
    },
}
COLUMNS = ["family", "width", "seed", "params", "test_rel_l2", "train_flops", "train_seconds"]


def prepare(config: dict[str, Any], device: str) -> dict[str, Any]:
    return _common.prepare_training(config)


def points(config: dict[str, Any], context: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"family": f, "width": w, "seed": s}
            for f in context["families"] for w in config["widths"] for s in config["seeds"]]


def measure(point: dict[str, Any], context: dict[str, Any], config: dict[str, Any], device: str) -> dict[str, Any]:
    return _common.train_point(point["family"], point["width"], point["seed"], context["data"], config, device,
                               eval_epochs=tuple(config["eval_epochs"]))


def curve_points(rows: list[dict[str, Any]], main: str) -> list[dict[str, Any]]:
    """One point per (run, evaluated epoch): family, width, params, flops, seconds, error."""
    out = []
    for r in rows:
        for h in r["history"]:
            err = h["test_rel_l2"].get(main, next(iter(h["test_rel_l2"].values())))
            if math.isfinite(err):
                out.append({"family": r["family"], "width": r["width"], "params": r["params"], "epoch": h["epoch"],
                            "train_flops": h["train_flops"], "train_seconds": h["train_seconds"], "test_rel_l2": err})
    return out


def frontier(points: list[dict[str, Any]], n_bins: int = 12) -> list[dict[str, Any]]:
    """Lowest error reachable with at most C FLOPs, at log-spaced C; with the size that reached it."""
    if not points:
        return []
    c = np.array([p["train_flops"] for p in points])
    grid = np.geomspace(c.min(), c.max(), n_bins)
    out = []
    for g in grid:
        ok = [p for p in points if p["train_flops"] <= g * (1 + 1e-9)]
        best = min(ok, key=lambda p: p["test_rel_l2"])
        if out and best["test_rel_l2"] >= out[-1]["test_rel_l2"]:
            continue
        out.append({"family": "frontier", "compute": float(g), "test_rel_l2": best["test_rel_l2"],
                    "best_family": best["family"], "best_params": best["params"], "best_epoch": best["epoch"]})
    return out


def analyze(rows: list[dict[str, Any]], config: dict[str, Any]) -> dict[str, Any]:
    main = str(config["data"].get("resolution", 16))
    pts = curve_points(rows, main)
    front = frontier(pts)
    fits: dict[str, Any] = {}
    if len({p["compute"] for p in front}) >= 2:
        fits = _fits.fit_groups(front, group="family", x="compute", y="test_rel_l2", n_bootstrap=config.get("n_bootstrap", 300), seed=0)
        try:
            popt = _fits.fit_power_law([p["compute"] for p in front], [1.0 / p["best_params"] for p in front],
                                       offset=False, n_bootstrap=config.get("n_bootstrap", 300), seed=0)
            fits["optimal_params"] = {"no_offset": popt.to_dict(), "dropped": 0,
                                      "meaning": "1/P* = a·C^-b, i.e. P* ∝ C^b"}
        except ValueError as exc:
            fits["optimal_params"] = {"no_offset": {"error": str(exc)}, "dropped": 0}
    per_family = _fits.fit_groups(pts, group="family", x="train_flops", y="test_rel_l2", offset=False,
                                  n_bootstrap=config.get("n_bootstrap", 300), seed=0)
    table = _fits.exponent_table({**per_family, **{k: v for k, v in fits.items() if k == "frontier"}},
                                 variable="train FLOPs")
    notes = (
        _common.data_note(config)
        + "\nFLOPs: forward+backward per sample counted by `torch.utils.flop_counter` (FFTs as 2.5·N·log2 n), "
        "times samples seen; optimizer updates not counted. Each run records the test error at epochs "
        f"{config['eval_epochs']} (cosine schedule of the full run, so early points are not fully annealed).\n"
        "Frontier: per compute level the lowest error any run reached with at most that compute.\n"
    )
    if "optimal_params" in fits and "b" in fits["optimal_params"]["no_offset"]:
        f = fits["optimal_params"]["no_offset"]
        notes += f"\nCompute-optimal size: P* ∝ C^{f['b']:.2f} [{f['b_ci'][0]:.2f}, {f['b_ci'][1]:.2f}].\n"
    return {"fits": {"frontier": fits.get("frontier", {}), "per_family": per_family,
                     "optimal_params": fits.get("optimal_params", {})},
            "tables": {"exponents (error vs training FLOPs)": table, "compute-optimal frontier": front},
            "notes": notes, "columns": COLUMNS}


def plot(payload: dict[str, Any], folder: Path, stem: str) -> list[Path]:
    from pdesurrogates.bench.plots import _figure

    main = str(payload["config"]["data"].get("resolution", 16))
    pts = curve_points(payload["rows"], main)
    fig, ax = _figure((6.0, 4.2))
    runs = list(dict.fromkeys((p["family"], p["width"]) for p in pts))
    fams = list(dict.fromkeys(p["family"] for p in pts))
    for fam, w in runs:
        sel = [p for p in pts if p["family"] == fam and p["width"] == w]
        ax.plot([p["train_flops"] for p in sel], [p["test_rel_l2"] for p in sel], "o-", ms=3, lw=0.8,
                color=f"C{fams.index(fam) % 10}", alpha=0.4 + 0.6 * (runs.index((fam, w)) + 1) / len(runs),
                label=f"{fam} w={w}")
    front = payload["tables"].get("compute-optimal frontier", [])
    if front:
        plots.loglog_axes(ax, front, x="compute", y="test_rel_l2", group="family",
                          fits={"frontier": payload["fits"].get("frontier", {})})
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("training FLOPs")
    ax.set_ylabel("test relative L2")
    ax.set_title(payload["title"], fontsize=8)
    ax.legend(fontsize=6, ncol=2)
    path = folder / f"{stem}_error_vs_flops.png"
    fig.savefig(path, dpi=110)
    return [path]
