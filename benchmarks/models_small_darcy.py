"""Train every model on neuraloperator's small Darcy data and compare with ``neuralop.models.FNO``.

Data: ``datasets/neuralop_small/`` (1000 training samples at 16x16, 50 test samples at 16x16
and 50 at 32x32 for zero-shot super-resolution). Recipe for every model, taken from neuraloperator's
example ``examples/models/plot_FNO_darcy.py``: AdamW (lr 8e-3, weight decay 1e-4), batch 32, relative
H1 training loss (neuraloperator's ``H1Loss``) on outputs normalised by the training mean/std (as its
``DefaultDataProcessor`` does), test errors on decoded outputs; the learning rate follows a cosine to 0
over the run (the example anneals per epoch with T_max = 1.5 x epochs). Training runs on the package's
engine. The reference row is ``neuralop.models.FNO`` with the example's own arguments, trained the same
way. MgNO gets lr 3e-3 because 8e-3 diverges for it (the paper trains with 3e-4 for
500 epochs, out of reach here). Test errors: our ``relative_lp``/``relative_h1`` (mean over samples; H1 with
one-sided differences at the boundary) and neuraloperator's ``H1Loss`` (periodic differences).

Run (one to three CPU minutes per model at 20 epochs)::

    OMP_NUM_THREADS=1 python benchmarks/models_small_darcy.py --epochs 20 --overwrite
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from pdesurrogates.data import neuralop_small

REPO = Path(__file__).resolve().parents[1]
DATA = neuralop_small.ROOT
NAME = "models_small_darcy"


def load(name: str) -> tuple[torch.Tensor, torch.Tensor]:
    data = neuralop_small.load(name)  # checksum verified
    return data["x"].float().unsqueeze(1), data["y"].float().unsqueeze(1)


def model_specs():
    """(row name, builder) pairs; builders take no argument and return a fresh model."""
    from neuralop.models import FNO as NeuralopFNO

    from pdesurrogates.models import (
        FNOConfig,
        MgNOConfig,
        MGTFNOConfig,
        TFNOConfig,
        UNetConfig,
        build,
    )

    return {
        "neuralop FNO (direct)": lambda: NeuralopFNO(n_modes=(16, 16), in_channels=1, out_channels=1,
                                                     hidden_channels=32, projection_channel_ratio=2),
        "FNO": lambda: build(FNOConfig()),
        "TFNO": lambda: build(TFNOConfig()),
        "MgNO": lambda: build(MgNOConfig()),
        "MG-TFNO": lambda: build(MGTFNOConfig()),
        "U-Net": lambda: build(UNetConfig()),
    }, {
        "FNO": FNOConfig(), "TFNO": TFNOConfig(), "MgNO": MgNOConfig(), "MG-TFNO": MGTFNOConfig(),
        "U-Net": UNetConfig(),
    }


def train_and_evaluate(make_model, data, *, epochs: int, seed: int, lr: float, batch_size: int = 32) -> dict:
    """Train one model on the package's engine (in memory) and evaluate it at every test resolution."""
    from neuralop import H1Loss

    from pdesurrogates.losses.data import relative_h1, relative_lp
    from pdesurrogates.models import count_parameters
    from pdesurrogates.train import TrainSettings, fit
    from pdesurrogates.train.config import OptimizerConfig, ScheduleConfig, TrainerConfig
    from pdesurrogates.train.tasks.tensors import TensorTask

    x, y, tests = data
    torch.manual_seed(seed)
    model = make_model()
    mean, std = y.mean(), y.std()
    h1 = H1Loss(d=2)

    def loss_fn(pred, target, inputs):  # H1 on normalised outputs, as neuraloperator's example trains
        return h1(pred, (target - mean) / std), {}

    settings = TrainSettings(optimizer=OptimizerConfig(name="adamw", lr=lr, weight_decay=1e-4),
                             schedule=ScheduleConfig(name="cosine"),
                             train=TrainerConfig(epochs=epochs, batch_size=batch_size), seed=seed)
    result = fit(TensorTask(model, x, y, loss_fn, batch_size=batch_size), settings, None, device="cpu",
                 progress=False)
    model = result.model.eval()
    row = {"params": count_parameters(model), "train_s": round(result.summary["wall_time_s"], 1)}
    with torch.no_grad():
        for res, (xt, yt) in tests.items():
            pred = model(xt) * std + mean
            row[f"l2_{res}"] = float(relative_lp(pred, yt))
            row[f"h1_{res}"] = float(relative_h1(pred, yt))
            row[f"h1_neuralop_{res}"] = float(H1Loss(d=2, reduction="mean")(pred, yt))
    return row


def plot(rows, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["model"] + (f" s{r['seed']}" if r["seed"] else "") for r in rows]
    fig, ax = plt.subplots(figsize=(8, 3.5))
    idx = torch.arange(len(rows)).float()
    ax.bar(idx - 0.2, [r["l2_16"] for r in rows], 0.4, label="16x16 (train resolution)")
    ax.bar(idx + 0.2, [r["l2_32"] for r in rows], 0.4, label="32x32 (zero-shot)")
    ax.set_xticks(idx.tolist(), names, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("relative L2 test error")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=20, help="epochs per model (neuraloperator's example: 20)")
    parser.add_argument("--lr", type=float, default=8e-3, help="learning rate (neuraloperator's example: 8e-3)")
    parser.add_argument("--lr-mgno", type=float, default=3e-3,
                        help="MgNO learning rate (8e-3 diverges for MgNO in our runs)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="seeds for every model")
    parser.add_argument("--extra-seeds", type=int, nargs="*", default=[1],
                        help="more seeds for the two FNO rows only (run-to-run noise)")
    parser.add_argument("--models", nargs="*", default=None, help="subset of row names")
    parser.add_argument("--out-dir", type=Path, default=None, help="default benchmarks/results/<device>")
    parser.add_argument("--name", default=NAME, help="result file stem")
    parser.add_argument("--overwrite", action="store_true", help="replace existing result files")
    args = parser.parse_args(argv)

    from pdesurrogates.bench.report import RESULTS, write_results
    from pdesurrogates.models import config_to_dict

    out_dir = args.out_dir or RESULTS / "cpu"
    if (out_dir / f"{args.name}.json").exists() and not args.overwrite:
        print(f"{out_dir / (args.name + '.json')} exists; pass --overwrite to replace it", file=sys.stderr)
        return 2
    x, y = load("darcy_train_16.pt")
    tests = {16: load("darcy_test_16.pt"), 32: load("darcy_test_32.pt")}
    specs, configs = model_specs()
    names = args.models or list(specs)
    unknown = set(names) - set(specs)
    if unknown:
        parser.error(f"unknown model(s) {sorted(unknown)}; valid: {list(specs)}")
    rows = []
    for name in names:
        seeds = list(args.seeds) + (list(args.extra_seeds) if name in ("FNO", "neuralop FNO (direct)") else [])
        for seed in seeds:
            row = {"model": name, "seed": seed}
            lr = args.lr_mgno if name == "MgNO" else args.lr
            row["lr"] = lr
            row.update(train_and_evaluate(specs[name], (x, y, tests), epochs=args.epochs, seed=seed, lr=lr))
            print(json.dumps(row), flush=True)
            rows.append(row)

    def first(model):
        return next((r for r in rows if r["model"] == model), None)

    notes = [(f"{args.epochs} epochs, batch 32, AdamW lr {args.lr} (MgNO {args.lr_mgno}), weight decay 1e-4, "
              f"cosine to 0 per step, H1 training loss; 1000 train / 50 test samples; "
              f"{torch.get_num_threads()} CPU thread(s) on a shared machine (train_s includes contention).")]
    fno, ref, mgno = first("FNO"), first("neuralop FNO (direct)"), first("MgNO")
    if fno and ref:
        fnos = [r["l2_16"] for r in rows if r["model"] == "FNO"]
        refs = [r["l2_16"] for r in rows if r["model"] == "neuralop FNO (direct)"]
        notes.append(f"FNO (ours) l2_16 over seeds: {', '.join(f'{v:.4f}' for v in fnos)}; "
                     f"neuralop FNO direct: {', '.join(f'{v:.4f}' for v in refs)}; same parameter count: "
                     f"{fno['params'] == ref['params']}.")
    fno = fno or ref
    if fno and mgno:
        notes.append(f"MgNO / {fno['model']}: parameters {mgno['params'] / fno['params']:.2f}x, "
                     f"l2_16 {mgno['l2_16'] / fno['l2_16']:.2f}x, h1_16 {mgno['h1_16'] / fno['h1_16']:.2f}x.")
    config = {"epochs": args.epochs, "lr": args.lr, "lr_mgno": args.lr_mgno, "seeds": args.seeds, "extra_seeds": args.extra_seeds,
              "batch_size": 32, "weight_decay": 1e-4, "scheduler": "cosine to 0 over the run, per step (the package's engine)",
              "train_loss": "neuralop H1Loss(d=2) on normalised outputs", "data": DATA.relative_to(REPO).as_posix(),
              "models": {k: config_to_dict(v) for k, v in configs.items() if k in names},
              "neuralop_fno": dict(n_modes=[16, 16], hidden_channels=32, projection_channel_ratio=2)}
    cols = ["model", "seed", "lr", "params", "train_s", "l2_16", "h1_16", "l2_32", "h1_32", "h1_neuralop_16",
            "h1_neuralop_32"]
    paths = write_results(args.name, rows, config=config, title="Models on neuraloperator's small Darcy (16x16 -> 32x32)",
                          notes="\n\n".join(notes), columns=cols, out_dir=out_dir)
    plot(rows, paths["json"].with_suffix(".png"))
    print("\n".join(notes))
    print(f"wrote {paths['json']} and {paths['md']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
