"""``pdesurrogates predict``: batch inference from a checkpoint into our HDF5 format."""

from __future__ import annotations

import argparse
from pathlib import Path

from pdesurrogates.errors import UserInputError

HELP = """\
Run a trained checkpoint on every input of a dataset file and write the predictions.

  pdesurrogates predict --checkpoint runs/darcy_fno --input data/darcy_test.h5 --out pred.h5

The output file has our schema: `inputs` copied from the input file, `outputs` the predictions
(physical units), provenance naming the checkpoint and the source file.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("predict", help="batch inference writing our HDF5 format",
                                   description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, type=Path, help="run or checkpoint directory")
    parser.add_argument("--input", required=True, type=Path, help="dataset file whose inputs are used")
    parser.add_argument("--out", required=True, type=Path, help="HDF5 file to write")
    parser.add_argument("--stride", type=int, default=1, help="spatial stride applied to the inputs")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", choices=("cpu", "cuda"))
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    parser.add_argument("--no-progress", action="store_true")
    parser.set_defaults(func=run)


def predict_file(checkpoint: Path, input_path: Path, out: Path, *, stride: int = 1, batch_size: int = 32,
                 device: str | None = None, overwrite: bool = False, progress: bool = False) -> Path:
    """Write ``checkpoint``'s predictions for every input of ``input_path`` to ``out``."""
    import numpy as np
    import torch

    from pdesurrogates.data import DatasetWriter, open_dataset
    from pdesurrogates.train.distributed import resolve_device
    from pdesurrogates.train.evaluation import iterate_batches, load_predictor

    out = Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; pass --overwrite to replace it")
    if batch_size < 1:
        raise UserInputError(f"--batch-size must be >= 1, got {batch_size}")
    if Path(input_path).resolve() == out.resolve():
        raise UserInputError(f"--out {out} is the input file; choose another path")
    dev = resolve_device(device)
    predictor, ckpt = load_predictor(checkpoint, dev)
    ds = open_dataset(input_path, stride=stride)
    x0, _ = ds[0]
    if x0.ndim - 1 != predictor.ndim or x0.shape[0] != getattr(ckpt.config, "in_channels", x0.shape[0]):
        raise UserInputError(f"{input_path}: inputs {tuple(x0.shape)} do not fit the checkpoint's model "
                         f"({ckpt.config.in_channels} channels, {predictor.ndim} spatial axes)")
    with torch.no_grad():
        y0 = predictor(x0[None].to(dev))[0]
    meta = ds.meta
    provenance = meta.get("provenance") or {}
    params = {"predicted_by": str(Path(checkpoint).resolve()), "source": str(Path(input_path).resolve()),
              "stride": stride, "model": ckpt.config.name}
    seed = provenance.get("seed", 0)
    try:
        seed = int(seed)
    except (TypeError, ValueError):
        seed = 0
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(ds), unit="sample", desc=out.name)
    with DatasetWriter.open(out, pde=str(meta.get("pde") or "unknown"), n_samples=len(ds),
                            input_shape=tuple(x0.shape), output_shape=tuple(y0.shape), params=params,
                            seed=seed, overwrite=overwrite) as writer:
        for x, _ in iterate_batches(ds, batch_size):
            with torch.no_grad():
                pred = predictor(x.to(dev)).float().cpu()
            writer.append(x.numpy().astype(np.float32), pred.numpy().astype(np.float32))
            if bar is not None:
                bar.update(x.shape[0])
        writer.finalize()
    if bar is not None:
        bar.close()
    ds.close()
    return out


def run(args: argparse.Namespace) -> int:
    path = predict_file(args.checkpoint, args.input, args.out, stride=args.stride, batch_size=args.batch_size,
                        device=args.device, overwrite=args.overwrite, progress=not args.no_progress)
    print(f"predictions written to {path}")
    return 0
