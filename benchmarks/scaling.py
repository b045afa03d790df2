"""Run benchmark suites of :mod:`pdesurrogates.bench` one after another (same as ``pdesurrogates bench``).

Usage::

    python benchmarks/scaling.py --size small scaling-params
    python benchmarks/scaling.py --size small scaling-data speed compute scaling-resolution surrogate-vs-solver

Results go to ``benchmarks/results/<device>/<suite>/<size>.{json,md,png}``; an interrupted run
resumes from ``<size>.partial.json``. ``pdesurrogates bench report`` redraws everything from JSON.
"""

from __future__ import annotations

import argparse
import sys
import time

from pdesurrogates.bench.harness import run_suite
from pdesurrogates.bench.suites import SUITES


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("suites", nargs="*", default=["scaling-params", "scaling-data", "speed"],
                        help=f"suites to run, from {', '.join(SUITES)}")
    parser.add_argument("--size", choices=("smoke", "small", "full"), default="small")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default=None, help="results root (default benchmarks/results)")
    parser.add_argument("--restart", action="store_true")
    args = parser.parse_args(argv)
    for name in args.suites:
        if name not in SUITES:
            parser.error(f"unknown suite {name!r}; choose from {', '.join(SUITES)}")
    for name in args.suites:
        t0 = time.perf_counter()
        paths = run_suite(name, args.size, device=args.device, out=args.out, resume=not args.restart)
        print(f"{name} ({args.size}): {paths['md']}  [{time.perf_counter() - t0:.0f} s]", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
