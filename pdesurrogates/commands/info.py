"""``pdesurrogates info FILE``: format, keys, shapes, dtypes, provenance and per-channel statistics."""

from __future__ import annotations

import argparse
import json
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "info",
        help="describe a dataset file (ours, PDEBench, FNO .mat, neuraloperator .pt)",
        description="Print format, stored keys with shapes and dtypes, provenance, and per-channel "
        "min/mean/max of inputs and outputs (one streaming pass) of a dataset file.",
    )
    parser.add_argument("file", help="dataset file (.h5/.hdf5, .mat, .pt)")
    parser.add_argument("--format", default=None,
                        help="skip detection: pdesurrogates, pdebench, fno-mat, neuralop-pt")
    parser.add_argument("--max-samples", type=int, default=None,
                        help="compute statistics over the first N samples only (default all)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from pdesurrogates.data import detect_format, inspect_file, open_dataset

    if args.max_samples is not None and args.max_samples < 1:
        raise ValueError(f"--max-samples must be >= 1, got {args.max_samples}")
    fmt = args.format or detect_format(args.file)
    options: dict[str, Any] = {"allow_incomplete": True} if fmt == "pdesurrogates" else {}
    dataset = open_dataset(args.file, format=fmt, **options)
    n = len(dataset) if args.max_samples is None else min(len(dataset), args.max_samples)
    stats = {"inputs": _Stats(), "outputs": _Stats()}
    for lo in range(0, n, 64):
        items = dataset.__getitems__(list(range(lo, min(lo + 64, n))))
        stats["inputs"].update(np.stack([x.numpy() for x, _ in items]))
        stats["outputs"].update(np.stack([y.numpy() for _, y in items]))
    dataset.close()
    meta = dataset.meta
    report = {
        "file": str(args.file),
        "format": fmt,
        "pde": meta["pde"],
        "n_samples": meta["n_samples"],
        "sample_shapes": {"inputs": list(meta["input_shape"]), "outputs": list(meta["output_shape"])},
        "keys": [{"key": k, "shape": list(s), "dtype": d} for k, s, d in inspect_file(args.file)],
        "provenance": meta["provenance"],
        "statistics_over_samples": n,
        "channels": {name: s.result() for name, s in stats.items()},
    }
    if args.json:
        print(json.dumps(report, indent=2, default=str))
        return 0
    print(f"file:        {report['file']}")
    print(f"format:      {fmt}")
    if meta["pde"]:
        print(f"pde:         {meta['pde']}")
    print(f"samples:     {meta['n_samples']}")
    print(f"inputs:      (N, {', '.join(map(str, meta['input_shape']))}) from key {meta['input_key']!r}")
    print(f"outputs:     (N, {', '.join(map(str, meta['output_shape']))}) from key {meta['output_key']!r}")
    print("keys:")
    for row in report["keys"]:
        print(f"  {row['key']:<28} {tuple(row['shape'])!s:<24} {row['dtype']}")
    print("provenance:" + ("" if meta["provenance"] else " (none stored)"))
    for key, value in meta["provenance"].items():
        text = json.dumps(value, default=str) if not isinstance(value, str) else value
        print(f"  {key:<22} {text}")
    print(f"per-channel statistics over {n} samples:")
    for name, channels in report["channels"].items():
        for c, s in enumerate(channels):
            print(f"  {name:<8} channel {c}: min {s['min']:.6g}  mean {s['mean']:.6g}  max {s['max']:.6g}")
    return 0


class _Stats:
    """Running per-channel min, max and mean (float64) over batches ``(B, C, ...)``."""

    def __init__(self) -> None:
        self.lo = self.hi = self.total = None
        self.count = 0

    def update(self, batch: Any) -> None:
        import numpy as np

        b = np.asarray(batch, dtype=np.float64)
        flat = np.moveaxis(b, 1, 0).reshape(b.shape[1], -1)
        lo, hi, total = flat.min(axis=1), flat.max(axis=1), flat.sum(axis=1)
        if self.lo is None:
            self.lo, self.hi, self.total = lo, hi, total
        else:
            self.lo, self.hi, self.total = (np.minimum(self.lo, lo), np.maximum(self.hi, hi),
                                            self.total + total)
        self.count += flat.shape[1]

    def result(self) -> list[dict[str, float]]:
        if self.lo is None:
            return []
        return [{"min": float(a), "mean": float(t / self.count), "max": float(b)}
                for a, t, b in zip(self.lo, self.total, self.hi)]
