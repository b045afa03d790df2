"""``pdesurrogates bench SUITE --size smoke|small|full`` and ``pdesurrogates bench report [DIR]``."""

from __future__ import annotations

import argparse

from pdesurrogates.errors import UserInputError

SIZES = ("smoke", "small", "full")


def register(subparsers: argparse._SubParsersAction) -> None:
    from pdesurrogates.bench.suites import SUITES

    parser = subparsers.add_parser(
        "bench",
        help="run a benchmark suite, or rebuild reports from result JSON",
        description=(
            "Run a benchmark suite and write JSON + Markdown + PNG under <out>/<device>/<suite>/, "
            "or `bench report [DIR]` to rebuild Markdown and plots from existing JSON. "
            f"Suites: {', '.join(SUITES)}; `all` runs every suite."
        ),
    )
    parser.add_argument("suite", metavar="SUITE", help=f"one of {', '.join(SUITES)}, `all`, or `report`")
    parser.add_argument("dir", nargs="?", default=None, help="for `report`: results folder (default benchmarks/results)")
    parser.add_argument("--size", choices=SIZES, default="smoke", help="sweep size (default smoke)")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda:0 (default cpu)")
    parser.add_argument("--out", default=None, help="results root (default benchmarks/results)")
    parser.add_argument("--restart", action="store_true", help="ignore an interrupted run's finished points")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--refit", action="store_true",
                        help="for `report`: recompute fits and tables from the stored rows first")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pdesurrogates.bench.harness import rebuild_reports, run_suite
    from pdesurrogates.bench.suites import SUITES

    if args.suite == "report":
        for path in rebuild_reports(args.dir, refit=args.refit):
            print(path)
        return 0
    if args.dir is not None:
        raise UserInputError(f"unexpected argument {args.dir!r}: only `bench report` takes a folder")
    if args.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise UserInputError(f"--device {args.device}: CUDA is not available on this machine")
    names = list(SUITES) if args.suite == "all" else [args.suite]
    for name in names:
        if name not in SUITES:
            raise UserInputError(f"unknown suite {name!r}; choose from {', '.join(SUITES)}, all, report")
        paths = run_suite(name, args.size, device=args.device, out=args.out, resume=not args.restart,
                          progress=not args.no_progress)
        print(f"{name}: {paths['md']}")
    return 0
