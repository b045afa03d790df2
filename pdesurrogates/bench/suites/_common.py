"""Pieces shared by the training suites: one fair training run per sweep point."""

from __future__ import annotations

import math
from typing import Any

from pdesurrogates.bench import datasets
from pdesurrogates.bench.cases import available_families, build_model
from pdesurrogates.bench.training import Budget, fit_surrogate


def prepare_training(config: dict[str, Any]) -> dict[str, Any]:
    """Load the sweep's data once and find which families build."""
    families, missing = available_families(config["families"])
    if not families:
        raise ValueError(f"none of the model families {config['families']} can be built: {missing}")
    return {"data": datasets.load(config["data"]), "families": families, "missing": missing}


def train_point(
    family: str, width: int, seed: int, data: datasets.SweepData, config: dict[str, Any], device: str,
    *, epochs: int | None = None, eval_epochs: tuple[int, ...] = (),
) -> dict[str, Any]:
    """Build ``family`` at ``width`` with ``seed`` and fit it under the sweep's shared budget."""
    budget = Budget(**{**config["budget"], **({"epochs": epochs} if epochs is not None else {})})
    model = build_model(family, width, modes=config.get("modes", 8), seed=seed)
    out = fit_surrogate(model, data.train, data.tests, budget=budget, seed=seed, device=device,
                        eval_epochs=eval_epochs)
    main = str(config["data"].get("resolution", 16))
    err = out["test_rel_l2"].get(main, next(iter(out["test_rel_l2"].values())))
    return {
        "params": out["params"],
        "test_rel_l2": err if math.isfinite(err) else None,
        "test_errors": out["test_rel_l2"],
        "train_flops": out["train_flops"],
        "train_seconds": round(out["train_seconds"], 3),
        "final_train_loss": out["final_train_loss"],
        "epochs": budget.epochs,
        "history": out["history"],
    }


def data_note(config: dict[str, Any]) -> str:
    d = config["data"]
    b = config["budget"]
    src = ("neuraloperator's darcy_train_16.pt / darcy_test_*.pt" if d["source"] == "neuralop"
           else f"our Darcy generator at {d['resolution']}² (seed {d.get('seed', 0)}, cached in datasets/generated/)")
    return (f"Data: {src}, {d['n_train']} train / {d['n_test']} test samples. Every model: Adam, "
            f"lr {b['lr']} cosine to 0, weight decay {b['weight_decay']}, batch {b['batch_size']}, "
            f"relative-L2 loss, same seeds. Error = mean relative L2 on the test set.\n")


def fit_regime_note(rows: list[dict[str, Any]]) -> str:
    """Per family, the ratio of test error to final training loss, and what it says about the sweep.

    A ratio near 1 means the models are under-fitted (limited by the optimisation budget or their
    capacity, not by data), so an exponent describes this budget; a ratio well above 1 means they
    fit the training set better than unseen data, so data limits the test error.
    """
    lines = []
    for fam in dict.fromkeys(r["family"] for r in rows):
        ratios = [r["test_rel_l2"] / r["final_train_loss"] for r in rows
                  if r["family"] == fam and r.get("test_rel_l2") and r.get("final_train_loss")
                  and math.isfinite(r["final_train_loss"]) and r["final_train_loss"] > 0]
        if not ratios:
            continue
        lo, hi = min(ratios), max(ratios)
        regime = ("under-fitted (train ≈ test): limited by budget or capacity, not by data" if hi < 1.3
                  else "fits its training set better than the test set at the low end: data matters")
        lines.append(f"- `{fam}`: test error / final train loss from {lo:.2f} to {hi:.2f}: {regime}")
    if not lines:
        return ""
    return "\nFit regime (test error over final training loss per run):\n" + "\n".join(lines) + "\n"
