"""``scaling-resolution``: train at one resolution, test at several (zero-shot); train at several."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pdesurrogates.bench import datasets
from pdesurrogates.bench.cases import available_families
from pdesurrogates.bench.suites import _common

NAME = "scaling-resolution"
TITLE = "Resolution: train at one resolution, test at others (zero-shot), and train at several (Darcy)"
SIZES = {
    "smoke": {
        "data": {"source": "neuralop", "n_train": 32, "n_test": 16, "test_resolutions": [16, 32]},
        "train_resolutions": [16], "families": ["fno", "mgno", "neuralop-fno"], "width": 4, "seeds": [0],
        "modes": 4, "budget": {"epochs": 1, "batch_size": 8, "lr": 3e-3, "weight_decay": 1e-4},
    },
    "small": {
        "data": {"source": "generated", "n_train": 96, "n_test": 32, "seed": 0, "test_resolutions": [16, 32, 64]},
        "train_resolutions": [16, 32, 64], "families": ["fno", "mgno"], "width": 8, "seeds": [0],
        "modes": 6, "budget": {"epochs": 10, "batch_size": 8, "lr": 3e-3, "weight_decay": 1e-4},
    },
    "full": {
        "data": {"source": "generated", "n_train": 1000, "n_test": 100, "seed": 0, "test_resolutions": [32, 64, 128, 256]},
        "train_resolutions": [32, 64, 128], "families": ["fno", "tfno", "mgno", "unet"], "width": 32,
        "seeds": [0, 1, 2], "modes": 12, "budget": {"epochs": 100, "batch_size": 8, "lr": 3e-3, "weight_decay": 1e-4},
    },
}
COLUMNS = ["family", "train_resolution", "seed", "params", "test_rel_l2", "test_errors", "train_seconds"]


def _data(config: dict[str, Any], resolution: int) -> datasets.SweepData:
    d = config["data"]
    if d["source"] == "neuralop":
        if resolution != 16:
            raise ValueError("scaling-resolution: neuralop data trains at 16² only")
        return datasets.load(d)
    return datasets.generated_darcy(resolution, d["n_train"], d["n_test"], seed=d.get("seed", 0),
                                    test_resolutions=tuple(d["test_resolutions"]))


def prepare(config: dict[str, Any], device: str) -> dict[str, Any]:
    families, missing = available_families(config["families"])
    if not families:
        raise ValueError(f"none of the model families {config['families']} can be built: {missing}")
    return {"families": families, "missing": missing,
            "data": {r: _data(config, r) for r in config["train_resolutions"]}}


def points(config: dict[str, Any], context: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"family": f, "train_resolution": r, "seed": s}
            for f in context["families"] for r in config["train_resolutions"] for s in config["seeds"]]


def measure(point: dict[str, Any], context: dict[str, Any], config: dict[str, Any], device: str) -> dict[str, Any]:
    r = point["train_resolution"]
    cfg = {**config, "data": {**config["data"], "resolution": r}}
    out = _common.train_point(point["family"], config["width"], point["seed"], context["data"][r], cfg, device)
    out.pop("history")
    return out


def _matrix(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean error per (family, train resolution) with one column per test resolution."""
    table: dict[tuple[str, int], dict[str, list[float]]] = {}
    for r in rows:
        cell = table.setdefault((r["family"], r["train_resolution"]), {})
        for k, v in r["test_errors"].items():
            cell.setdefault(k, []).append(v)
    out = []
    for (fam, tr), cell in table.items():
        row: dict[str, Any] = {"family": fam, "train": tr}
        for k in sorted(cell, key=int):
            row[f"test {k}²"] = sum(cell[k]) / len(cell[k])
        out.append(row)
    return out


def analyze(rows: list[dict[str, Any]], config: dict[str, Any]) -> dict[str, Any]:
    notes = (
        _common.data_note({**config, "data": {**config["data"], "resolution": "/".join(map(str, config["train_resolutions"]))}})
        + "\nDiagonal entries (test resolution = training resolution) are in-distribution; the others "
        "are zero-shot transfer of the same weights to another grid.\n"
    )
    return {"fits": {}, "tables": {"mean test relative L2 (rows: train resolution)": _matrix(rows)},
            "notes": notes, "columns": COLUMNS}


def plot(payload: dict[str, Any], folder: Path, stem: str) -> list[Path]:
    from pdesurrogates.bench.plots import _figure

    fig, ax = _figure()
    for i, row in enumerate(_matrix(payload["rows"])):
        xs = [int(k.split()[1].rstrip("²")) for k in row if k.startswith("test")]
        ys = [row[k] for k in row if k.startswith("test")]
        ax.plot(xs, ys, "o-", color=f"C{i % 10}", label=f"{row['family']} trained at {row['train']}²")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("test resolution")
    ax.set_ylabel("test relative L2")
    ax.set_title(payload["title"], fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    path = folder / f"{stem}_error_vs_resolution.png"
    fig.savefig(path, dpi=110)
    return [path]
