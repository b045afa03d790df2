"""``pdesurrogates train``: train a model from a TOML config (see ``configs/``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from pdesurrogates.errors import UserInputError

HELP = """\
Train a surrogate from a TOML config. Examples:

  pdesurrogates train --config configs/darcy_fno.toml --out runs/darcy_fno
  pdesurrogates train --config configs/darcy_fno.toml --set train.epochs=5 --set optimizer.lr=3e-3
  pdesurrogates train --resume runs/darcy_fno                 # continue an interrupted run
  torchrun --nproc_per_node=4 -m pdesurrogates train --config configs/darcy_fno.toml --out runs/ddp

--set takes a dotted key and a TOML value (train.epochs=5, data.test_strides=[2,1], model.name=fno).
A run directory gets config.toml (resolved), metrics.csv, steps.csv, summary.json and
checkpoints/{best,last}; Ctrl-C saves checkpoints/last first.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("train", help="train a model from a TOML config",
                                   description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, help="TOML config (default with --resume: the run's config.toml)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. train.epochs=10 (repeatable)")
    parser.add_argument("--out", type=Path, help="run directory (default: runs/<config name>, or the --resume directory)")
    parser.add_argument("--resume", type=Path, metavar="DIR", help="continue the run in DIR from checkpoints/last")
    parser.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda when available")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing run in --out")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pdesurrogates.train import load_config, train
    from pdesurrogates.train.distributed import resolve_device

    if args.device is not None:
        resolve_device(args.device)  # refuse an absent device before reading anything
    if args.config is None and args.resume is None:
        raise UserInputError("give --config FILE (a new run) or --resume DIR (continue a run)")
    if args.config is None:
        config_path = Path(args.resume) / "config.toml"
        if not config_path.is_file():
            raise FileNotFoundError(f"--resume {args.resume}: no config.toml there; pass --config")
        base = None  # the saved config holds absolute paths
    else:
        config_path, base = args.config, "."
    config = load_config(config_path, args.overrides, base_dir=base)
    out = args.out
    if out is None and args.resume is None:
        out = Path("runs") / Path(config_path).stem
    summary = train(config, out, resume=args.resume, device=args.device, overwrite=args.overwrite,
                    progress=not args.no_progress)
    if summary.get("status") == "stopped":
        print(summary["message"])
    best = summary.get("best", {})
    if best.get("value") is not None:
        print(f"best {best['metric']} = {best['value']:.4g} (epoch {best['epoch']})")
    for name, res in (summary.get("final") or {}).items():
        if isinstance(res, dict) and {"resolution", "l2", "h1"} <= set(res):
            print(f"{name} ({res['resolution']}): relative L2 {res['l2']:.4g}, H1 {res['h1']:.4g}")
    print(f"run directory: {summary.get('out_dir', out or args.resume)}")
    return 0
