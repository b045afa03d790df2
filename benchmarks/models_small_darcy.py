"""Train models on neuraloperator's small Darcy data over several seeds; mean and spread per model.

Data: ``datasets/neuralop_small/`` (1000 training samples at 16x16, 50 test samples at 16x16
and 50 at 32x32 for zero-shot super-resolution). Recipe for every model, taken from neuraloperator's
example ``examples/models/plot_FNO_darcy.py``: AdamW (lr 8e-3, weight decay 1e-4), batch 32, relative
H1 training loss (neuraloperator's ``H1Loss``) on outputs normalised by the training mean/std (as its
``DefaultDataProcessor`` does), test errors on decoded outputs; the learning rate follows a cosine to 0
over the run, per step. Training runs on the package's engine.

Rows: FNO at the example's size (``n_modes=(8, 8)``, 32 channels, projection ratio 2: 341k
parameters), MgNO (the default, mesh-consistent variant, half-open grid as these files use) with no
more parameters than that FNO, at lr 3e-3 (8e-3 diverges for MgNO); optional rows for TFNO, MG-TFNO,
U-Net and ``neuralop.models.FNO`` itself (``--models``). Test errors: our ``relative_lp``/``relative_h1``
(mean over samples; H1 with one-sided differences at the boundary) and neuraloperator's ``H1Loss``
(periodic differences). Every finished (model, seed) row is kept in ``runs/models_small_darcy/rows.jsonl``
so an interrupted run resumes at the next row.

Run (100 epochs, 3 seeds: about 5 CPU minutes per FNO row and 20 per MgNO row on one core)::

    OMP_NUM_THREADS=1 python benchmarks/models_small_darcy.py --overwrite

A second recipe trains on the metric itself (relative L2) with the exact x <-> y symmetry of the data
(the half-open grid has no reflection symmetry), each sample transposed with probability 1/2::

    OMP_NUM_THREADS=1 python benchmarks/models_small_darcy.py --loss l2 --symmetries transpose \
        --name models_small_darcy_symmetric --overwrite

The row ``MgNO-refined`` is MgNO computing on the grid twice as fine as the data's (``refine=2``: the
16x16 mask interpolated linearly onto 32x32, the output read back at the 16x16 points; 34 channels and
coordinate channels, 331k parameters), on the second recipe::

    OMP_NUM_THREADS=1 python benchmarks/models_small_darcy.py --loss l2 --symmetries transpose \
        --models MgNO-refined --name models_small_darcy_refined --overwrite
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


FNO_EXAMPLE = {"modes": 8, "width": 32, "projection_channel_ratio": 2}  # neuraloperator's plot_FNO_darcy.py
MGNO_SMALL = {"width": 38, "grid_kind": "half-open"}
# computes on the 2x finer grid (the two-phase mask interpolated linearly), coordinates as input channels
MGNO_REFINED = {"width": 34, "grid_kind": "half-open", "grid_channels": True, "refine": 2}


def model_configs():
    """Row name -> our model config (the neuralop reference row has none)."""
    from pdesurrogates.models import FNOConfig, MgNOConfig, MGTFNOConfig, TFNOConfig, UNetConfig

    return {"FNO": FNOConfig(**FNO_EXAMPLE), "MgNO": MgNOConfig(**MGNO_SMALL).fitted_to_grid((16, 16)),
            "MgNO-refined": MgNOConfig(**MGNO_REFINED).fitted_to_grid((16, 16)),
            "TFNO": TFNOConfig(**FNO_EXAMPLE), "MG-TFNO": MGTFNOConfig(**FNO_EXAMPLE), "U-Net": UNetConfig()}


def model_specs():
    """(row name -> builder) and (row name -> config); builders take no argument and return a fresh model."""
    from neuralop.models import FNO as NeuralopFNO

    from pdesurrogates.models import build

    configs = model_configs()
    specs = {"neuralop FNO (direct)": lambda: NeuralopFNO(n_modes=(8, 8), in_channels=1, out_channels=1,
                                                          hidden_channels=32, projection_channel_ratio=2)}
    specs.update({name: (lambda c=cfg: build(c)) for name, cfg in configs.items()})
    return specs, configs


def train_and_evaluate(make_model, data, *, epochs: int, seed: int, lr: float, batch_size: int = 32,
                       loss: str = "h1", symmetries: tuple[str, ...] = ()) -> dict:
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

    def loss_fn(pred, target, inputs):
        if loss == "l2":  # relative L2 of the decoded output: the metric itself
            return relative_lp(pred * std + mean, target), {}
        return h1(pred, (target - mean) / std), {}  # H1 on normalised outputs, as neuraloperator's example

    settings = TrainSettings(optimizer=OptimizerConfig(name="adamw", lr=lr, weight_decay=1e-4),
                             schedule=ScheduleConfig(name="cosine"),
                             train=TrainerConfig(epochs=epochs, batch_size=batch_size), seed=seed)
    task = TensorTask(model, x, y, loss_fn, batch_size=batch_size, symmetries=symmetries)
    result = fit(task, settings, None, device="cpu", progress=False)
    model = result.model.eval()
    row = {"params": count_parameters(model), "train_s": round(result.summary["wall_time_s"], 1)}
    with torch.no_grad():
        for res, (xt, yt) in tests.items():
            pred = model(xt) * std + mean
            row[f"l2_{res}"] = float(relative_lp(pred, yt))
            row[f"h1_{res}"] = float(relative_h1(pred, yt))
            row[f"h1_neuralop_{res}"] = float(H1Loss(d=2, reduction="mean")(pred, yt))
    return row


def summarize(rows: list[dict]) -> list[dict]:
    """Per model: mean, sample standard deviation, min and max over seeds of each error."""
    import statistics

    out = []
    for model in dict.fromkeys(r["model"] for r in rows):
        mine = [r for r in rows if r["model"] == model]
        entry = {"model": model, "seeds": len(mine), "params": mine[0]["params"],
                 "train_s_mean": round(statistics.fmean(r["train_s"] for r in mine), 1)}
        for key in ("l2_16", "h1_16", "l2_32", "h1_32"):
            values = [r[key] for r in mine]
            entry[f"{key}_mean"] = statistics.fmean(values)
            entry[f"{key}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
            entry[f"{key}_min"], entry[f"{key}_max"] = min(values), max(values)
        out.append(entry)
    return out


def plot(summary: list[dict], path: Path) -> None:
    """Mean test L2 per model with min-max bars over seeds, at 16x16 and 32x32 (from the summary)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 3.5), layout="constrained")
    ax = fig.add_subplot(1, 1, 1)
    idx = torch.arange(len(summary)).float()
    for shift, res, label in ((-0.2, 16, "16x16 (train resolution)"), (0.2, 32, "32x32 (zero-shot)")):
        mean = [r[f"l2_{res}_mean"] for r in summary]
        err = [[m - r[f"l2_{res}_min"] for m, r in zip(mean, summary)],
               [r[f"l2_{res}_max"] - m for m, r in zip(mean, summary)]]
        ax.bar(idx + shift, mean, 0.4, yerr=err, capsize=3, label=label)
    ax.set_xticks(idx.tolist(), [f"{r['model']}\n{r['params'] / 1e3:.0f}k" for r in summary], fontsize=8)
    ax.set_ylabel("relative L2 test error (mean, min-max over seeds)")
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=120)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=100, help="epochs per model")
    parser.add_argument("--lr", type=float, default=8e-3, help="learning rate (neuraloperator's example: 8e-3)")
    parser.add_argument("--lr-mgno", type=float, default=3e-3,
                        help="MgNO learning rate (8e-3 diverges for MgNO in our runs)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds for every model")
    parser.add_argument("--models", nargs="*", default=["FNO", "MgNO"], help="row names")
    parser.add_argument("--runs", type=Path, default=REPO / "runs" / NAME,
                        help="folder of rows.jsonl, the finished rows (resume)")
    parser.add_argument("--out-dir", type=Path, default=None, help="default benchmarks/results/<device>")
    parser.add_argument("--name", default=NAME, help="result file stem")
    parser.add_argument("--overwrite", action="store_true", help="replace existing result files")
    parser.add_argument("--loss", choices=("h1", "l2"), default="h1",
                        help="training loss: neuralop's H1 on normalised outputs (its example) or relative L2")
    parser.add_argument("--symmetries", nargs="*", default=[],
                        help="exact symmetries to augment with (the data's half-open grid allows 'transpose' only)")
    args = parser.parse_args(argv)

    from pdesurrogates.bench.report import RESULTS, write_results
    from pdesurrogates.models import config_to_dict, count_parameters

    out_dir = args.out_dir or RESULTS / "cpu"
    if (out_dir / f"{args.name}.json").exists() and not args.overwrite:
        print(f"{out_dir / (args.name + '.json')} exists; pass --overwrite to replace it", file=sys.stderr)
        return 2
    specs, configs = model_specs()
    unknown = set(args.models) - set(specs)
    if unknown:
        parser.error(f"unknown model(s) {sorted(unknown)}; valid: {list(specs)}")
    params = {name: count_parameters(specs[name]()) for name in args.models}
    for name in ("MgNO", "MgNO-refined"):
        if name in params and "FNO" in params and params[name] > params["FNO"]:
            parser.error(f"{name} has {params[name]} parameters, more than FNO's {params['FNO']}")
    x, y = load("darcy_train_16.pt")
    tests = {16: load("darcy_test_16.pt"), 32: load("darcy_test_32.pt")}
    args.runs.mkdir(parents=True, exist_ok=True)
    done_file = args.runs / "rows.jsonl"
    done = [json.loads(line) for line in done_file.read_text().splitlines()] if done_file.is_file() else []
    rows = []
    for name in args.models:
        lr = args.lr_mgno if name.startswith("MgNO") else args.lr
        for seed in args.seeds:
            key = {"model": name, "seed": seed, "lr": lr, "epochs": args.epochs,
                   "config": config_to_dict(configs[name]) if name in configs else None}
            if args.loss != "h1" or args.symmetries:
                key.update(loss=args.loss, symmetries=list(args.symmetries))
            row = next((r for r in done if {k: r.get(k) for k in key} == key), None)
            if row is None:
                row = {**key, **train_and_evaluate(specs[name], (x, y, tests), epochs=args.epochs, seed=seed, lr=lr,
                                                   loss=args.loss, symmetries=tuple(args.symmetries))}
                with done_file.open("a") as fh:
                    fh.write(json.dumps(row) + "\n")
            print(json.dumps({k: v for k, v in row.items() if k != "config"}), flush=True)
            rows.append(row)
    summary = summarize(rows)
    notes = [(f"{args.epochs} epochs, batch 32, AdamW lr {args.lr} (MgNO {args.lr_mgno}), weight decay 1e-4, "
              f"cosine to 0 per step, {'H1' if args.loss == 'h1' else 'relative L2'} training loss"
              f"{'; random exact symmetries ' + ', '.join(args.symmetries) if args.symmetries else ''}; "
              f"1000 train / 50 test samples; seeds {args.seeds}; "
              f"{torch.get_num_threads()} CPU thread(s) on a shared machine (train_s includes contention).")]
    by = {r["model"]: r for r in summary}
    for name in ("MgNO", "MgNO-refined"):
        if name not in by:
            continue
        m = by[name]
        versus = ""
        if "FNO" in by:
            f = by["FNO"]
            versus = (f"{name} / FNO: parameters {m['params'] / f['params']:.2f}x, mean l2_16 {m['l2_16_mean']:.4f} "
                      f"vs {f['l2_16_mean']:.4f} ({m['l2_16_mean'] / f['l2_16_mean']:.2f}x), mean l2_32 "
                      f"{m['l2_32_mean']:.4f} vs {f['l2_32_mean']:.4f}. ")
        notes.append(f"{versus}Target {name} <= 0.07 at <= 341k parameters: "
                     f"{'met' if m['l2_16_max'] <= 0.07 and m['params'] <= 341_000 else 'not met'} "
                     f"(worst seed {m['l2_16_max']:.4f}, {m['params']} parameters).")
    config = {"epochs": args.epochs, "lr": args.lr, "lr_mgno": args.lr_mgno, "seeds": args.seeds,
              "batch_size": 32, "weight_decay": 1e-4, "scheduler": "cosine to 0 over the run, per step (the package's engine)",
              "train_loss": ("neuralop H1Loss(d=2) on normalised outputs" if args.loss == "h1"
                             else "relative L2 of the decoded output"),
              "symmetries": list(args.symmetries), "data": DATA.relative_to(REPO).as_posix(),
              "models": {k: config_to_dict(v) for k, v in configs.items() if k in args.models},
              "neuralop_fno": {"n_modes": [8, 8], "hidden_channels": 32, "projection_channel_ratio": 2}}
    cols = ["model", "seeds", "params", "train_s_mean", "l2_16_mean", "l2_16_std", "l2_16_min", "l2_16_max",
            "h1_16_mean", "l2_32_mean", "l2_32_std", "h1_32_mean"]
    per_seed = ["model", "seed", "lr", "params", "train_s", "l2_16", "h1_16", "l2_32", "h1_32", "h1_neuralop_16",
                "h1_neuralop_32"]
    from pdesurrogates.bench.report import markdown_table

    notes.append("Per seed:\n\n" + markdown_table(rows, per_seed))
    paths = write_results(args.name, summary, config=config,
                          title="Models on neuraloperator's small Darcy (16x16 -> 32x32), mean over seeds",
                          notes="\n\n".join(notes), columns=cols, out_dir=out_dir, extra={"per_seed": rows})
    plot(summary, paths["json"].with_suffix(".png"))
    print("\n".join(notes[:-1]))
    print(f"wrote {paths['json']} and {paths['md']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
