"""``pdesurrogates evaluate``: relative L2/H1 of a checkpoint on a dataset, per resolution, and a plot."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pdesurrogates.errors import UserInputError

HELP = """\
Evaluate a trained checkpoint on a dataset file at one or more resolutions.

  pdesurrogates evaluate --checkpoint runs/darcy_fno --data data/darcy_test.h5 --resolution 33 65

--checkpoint takes a run directory (its checkpoints/best is used) or a checkpoint directory.
Resolutions are subsamplings of the file's grid (--stride 2 takes every other point).
Writes <out>/eval_<data>.json and one PNG per resolution (input / truth / prediction / error);
--out defaults to the run directory's eval/ folder.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("evaluate", help="relative L2/H1 of a checkpoint on a dataset",
                                   description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, type=Path, help="run or checkpoint directory")
    parser.add_argument("--data", required=True, type=Path, help="dataset file (any readable format)")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--resolution", type=int, nargs="+", help="points per side, e.g. 33 65")
    group.add_argument("--stride", type=int, nargs="+", help="spatial strides, e.g. 2 1")
    parser.add_argument("--n", type=int, default=None, help="use the first N samples (default all)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--n-plot", type=int, default=3, help="samples drawn in each PNG (0: no plot)")
    parser.add_argument("--out", type=Path, help="output folder (default: <run>/eval)")
    parser.add_argument("--device", choices=("cpu", "cuda"))
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier evaluation of this file")
    parser.set_defaults(func=run)


def default_out(checkpoint: Path) -> Path:
    """``<run>/eval`` for a run directory or one of its checkpoints, else ``<checkpoint>/eval``."""
    checkpoint = Path(checkpoint)
    if checkpoint.parent.name == "checkpoints":
        return checkpoint.parent.parent / "eval"
    return checkpoint / "eval"


def evaluate_checkpoint(checkpoint: Path, data: Path, *, resolutions=None, strides=None, n: int | None = None,
                        batch_size: int = 32, n_plot: int = 3, out: Path | None = None,
                        device: str | None = None, overwrite: bool = False) -> dict:
    """Evaluate ``checkpoint`` on ``data`` at several resolutions; write JSON and PNGs.

    Returns
    -------
    dict
        ``{"checkpoint", "data", "results": [{"stride", "resolution", "l2", "h1", "n", "plot"}], "json"}``.
    """
    import torch

    from pdesurrogates.data import open_dataset
    from pdesurrogates.train.distributed import resolve_device
    from pdesurrogates.train.evaluation import (
        evaluate_dataset,
        is_periodic,
        iterate_batches,
        load_predictor,
        plot_samples,
        stride_for_resolution,
    )

    dev = resolve_device(device)
    predictor, ckpt = load_predictor(checkpoint, dev)
    out = Path(out) if out is not None else default_out(Path(checkpoint))
    report = out / f"eval_{Path(data).stem}.json"
    if report.exists() and not overwrite:
        raise FileExistsError(f"{report} exists; pass --overwrite to replace it or choose another --out")
    if (n is not None and n < 1) or batch_size < 1 or n_plot < 0:
        raise UserInputError(f"need --n >= 1 (leave it out for all samples), --batch-size >= 1, --n-plot >= 0; "
                             f"got {n}, {batch_size}, {n_plot}")
    full = open_dataset(data)
    spatial = full.meta["spatial_shape"]
    if len(full) == 0:
        raise UserInputError(f"{data}: no samples")
    if n is not None and n > len(full):
        raise UserInputError(f"--n {n}: {data} holds {len(full)} samples")
    x0, y0 = full[0]
    full.close()
    check_layout(data, checkpoint, ckpt, x0, y0, predictor.ndim, predictor.output_lead)
    if resolutions:
        strides = [stride_for_resolution(spatial, r, str(data)) for r in resolutions]
    elif not strides:
        trained = (ckpt.extra.get("data") or {}).get("train_stride", 1)
        strides = [1] if trained == 1 else [trained, 1]
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for s in strides:
        ds = open_dataset(data, stride=s, indices=range(n) if n is not None else None, in_memory=True)
        res = evaluate_dataset(predictor, ds, batch_size=batch_size, device=dev, periodic=is_periodic(ds.meta))
        res["stride"] = s
        if n_plot:
            x, y = next(iterate_batches(ds, min(n_plot, len(ds))))
            with torch.no_grad():
                pred = predictor(x.to(dev))
            res["plot"] = str(plot_samples(
                x, y, pred, out / f"eval_{Path(data).stem}_{res['resolution']}.png",
                title=f"{Path(data).name} at {res['resolution']}: relative L2 {res['l2']:.4f}"))
        ds.close()
        results.append(res)
    summary = {"checkpoint": str(checkpoint), "data": str(data), "model": ckpt.config.name, "results": results}
    report.write_text(json.dumps(summary, indent=2) + "\n")
    summary["json"] = str(report)
    return summary


def check_layout(data: Path, checkpoint: Path, ckpt, x0, y0, ndim: int, output_lead: tuple[int, ...]) -> None:
    """Refuse data whose spatial rank, input channels or output layout differ from the checkpoint's."""
    in_channels = getattr(ckpt.config, "in_channels", x0.shape[0])
    where = f"{data} does not fit the checkpoint {checkpoint}"
    if x0.ndim - 1 != ndim:
        raise UserInputError(f"{where}: samples have {x0.ndim - 1} spatial axes (input {tuple(x0.shape)}), the "
                             f"model was trained on {ndim}")
    if x0.shape[0] != in_channels:
        raise UserInputError(f"{where}: inputs have {x0.shape[0]} channels, the model expects {in_channels}")
    lead = tuple(y0.shape[: y0.ndim - ndim])
    if lead != tuple(output_lead):
        raise UserInputError(f"{where}: outputs are {tuple(y0.shape)} (channels/time {lead}), the model predicts "
                             f"{tuple(output_lead)} per grid point")


def run(args: argparse.Namespace) -> int:
    summary = evaluate_checkpoint(args.checkpoint, args.data, resolutions=args.resolution, strides=args.stride,
                                  n=args.n, batch_size=args.batch_size, n_plot=args.n_plot, out=args.out,
                                  device=args.device, overwrite=args.overwrite)
    print(f"{'resolution':>12} {'stride':>6} {'rel. L2':>9} {'rel. H1':>9} {'n':>6}")
    for r in summary["results"]:
        print(f"{r['resolution']:>12} {r['stride']:>6} {r['l2']:>9.4f} {r['h1']:>9.4f} {r['n']:>6}")
    for r in summary["results"]:
        if "plot" in r:
            print(f"plot: {r['plot']}")
    print(f"metrics: {summary['json']}")
    return 0
