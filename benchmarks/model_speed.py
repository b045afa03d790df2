"""Forward and forward+backward throughput and peak memory of every model, and FNO wrapper overhead.

For each model (default configs, 1 input and 1 output channel) at 64^2, 128^2, 256^2 and 512^2 with
batch 1 and 8: median seconds per call, samples per second, and peak memory. On CUDA the peak is
``torch.cuda.max_memory_allocated``; on CPU it is the rise of the process's peak resident set size
(``VmHWM``, reset through ``/proc/self/clear_refs`` before each measurement) above the resident
size before the call, so it counts everything the call allocates (Linux only; NaN elsewhere); the
script re-executes itself once with ``MALLOC_MMAP_THRESHOLD_=65536`` so that freed tensors leave the
resident set. The peak is taken on the call after a warm-up call.
Configurations whose single forward+backward call exceeds ``--max-call-s`` are skipped at larger
sizes and listed in the notes.

The FNO wrapper ratio alternates calls of our ``FNO`` and ``neuralop.models.FNO`` (same weights)
in one loop, so both see the same machine load; the target is within 5%.

Run::

    OMP_NUM_THREADS=1 python benchmarks/model_speed.py --overwrite          # CPU
    python benchmarks/model_speed.py --device cuda --overwrite               # GPU, when there is one
"""

from __future__ import annotations

import argparse
import math
import os
import re
import statistics
import sys
import time
from pathlib import Path

import torch

NAME = "model_speed"


def _status_kb(key: str) -> int:
    text = Path("/proc/self/status").read_text()
    return int(re.search(rf"{key}:\s+(\d+)", text).group(1))


class PeakMemory:
    """Peak memory (MiB) of a block: CUDA allocator peak, or the rise of the peak RSS on Linux CPU."""

    def __init__(self, device: torch.device):
        self.device = device
        self.mib = math.nan

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base = torch.cuda.memory_allocated(self.device)
        else:
            try:
                Path("/proc/self/clear_refs").write_text("5")
                self.base = _status_kb("VmRSS")
            except OSError:
                self.base = None
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.mib = (torch.cuda.max_memory_allocated(self.device) - self.base) / 2**20
        elif self.base is not None:
            self.mib = (_status_kb("VmHWM") - self.base) / 1024
        return False


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_step(model, x, backward: bool):
    if backward:
        model.train()

        def step():
            model.zero_grad(set_to_none=True)
            model(x).square().mean().backward()
    else:
        model.eval()

        def step():
            with torch.no_grad():
                model(x)
    return step


def time_call(step, device, *, min_time: float, max_reps: int = 20, warm_up: bool = True) -> list[float]:
    if warm_up:
        step()
        _sync(device)
    times, start = [], time.perf_counter()
    while len(times) < 2 or (time.perf_counter() - start < min_time and len(times) < max_reps):
        t = time.perf_counter()
        step()
        _sync(device)
        times.append(time.perf_counter() - t)
    return times


def wrapper_ratio(device, size: int, batch: int, reps: int) -> dict:
    """Median time of our FNO / neuralop's FNO with identical weights, calls alternated."""
    from neuralop.models import FNO as NeuralopFNO

    from pdesurrogates.models import FNOConfig, build
    from pdesurrogates.models.fno import neuralop_fno_kwargs
    from pdesurrogates.models.registry import constructor_kwargs

    cfg = FNOConfig()
    torch.manual_seed(0)
    ours = build(cfg).to(device)
    torch.manual_seed(0)
    ref = NeuralopFNO(**neuralop_fno_kwargs(**constructor_kwargs(cfg))).to(device)
    x = torch.randn(batch, 1, size, size, device=device)
    out = {"size": size, "batch": batch}
    for mode, backward in (("fwd", False), ("fwd+bwd", True)):
        steps = {"ours": make_step(ours, x, backward), "neuralop": make_step(ref, x, backward)}
        times = {"ours": [], "neuralop": []}
        for step in steps.values():
            step()
        for i in range(reps):
            order = ("ours", "neuralop") if i % 2 == 0 else ("neuralop", "ours")
            for k in order:
                t = time.perf_counter()
                steps[k]()
                _sync(device)
                times[k].append(time.perf_counter() - t)
        out[f"{mode}_ratio"] = statistics.median(times["ours"]) / statistics.median(times["neuralop"])
    return out


def _reexec_with_mmap_threshold() -> None:
    """Make glibc return freed large blocks to the OS, so the resident size tracks live tensors.

    Without a fixed ``M_MMAP_THRESHOLD`` glibc raises it dynamically and keeps freed tensors resident,
    and the RSS-based peak of later measurements would miss memory they reuse. The variable must be
    set before the process starts, hence one re-exec (CPU runs on Linux only).
    """
    if sys.platform.startswith("linux") and "MALLOC_MMAP_THRESHOLD_" not in os.environ:
        env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
        os.execve(sys.executable, [sys.executable, *sys.argv], env)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256, 512])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--min-time", type=float, default=1.0, help="seconds of repeats per measurement")
    parser.add_argument("--max-call-s", type=float, default=6.0,
                        help="skip larger sizes/batches once one fwd+bwd call takes longer than this")
    parser.add_argument("--ratio-reps", type=int, default=15)
    parser.add_argument("--ratio-only", action="store_true",
                        help="only the FNO wrapper ratio (at --sizes x --batches), written to model_speed_ratio")
    parser.add_argument("--out-dir", type=Path, default=None)
    parser.add_argument("--overwrite", action="store_true", help="replace existing result files")
    args = parser.parse_args(argv)

    from pdesurrogates.bench.report import RESULTS, device_name, write_results
    from pdesurrogates.models import FNOConfig, MGTFNOConfig, config_to_dict, count_parameters

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from models_small_darcy import model_specs

    device = torch.device(args.device)
    if device.type == "cpu" and argv is None and not args.ratio_only:
        _reexec_with_mmap_threshold()
    out_dir = args.out_dir or RESULTS / device_name(args.device)
    name = NAME + "_ratio" if args.ratio_only else NAME
    if (out_dir / f"{name}.json").exists() and not args.overwrite:
        print(f"{out_dir / (name + '.json')} exists; pass --overwrite to replace it", file=sys.stderr)
        return 2
    if args.ratio_only:
        ratios = [wrapper_ratio(device, s, b, args.ratio_reps) for s in args.sizes for b in args.batches]
        for r in ratios:
            print(r, flush=True)
        paths = write_results(name, ratios, config={"reps": args.ratio_reps, "device": args.device,
                                                    "threads": torch.get_num_threads()},
                              device=args.device, title="FNO wrapper / neuralop FNO time ratio",
                              notes="Median time per call, our FNO over neuralop.models.FNO with identical "
                                    "weights, calls alternated in one loop (target <= 1.05).", out_dir=out_dir)
        print(f"wrote {paths['json']} and {paths['md']}")
        return 0
    specs, configs = model_specs()
    rows, skipped = [], []
    for name, make in specs.items():
        torch.manual_seed(0)
        model = make().to(device)
        params = count_parameters(model)
        too_slow = None
        for size in sorted(args.sizes):
            for batch in sorted(args.batches):
                if too_slow is not None:
                    skipped.append(f"{name} {size}^2 batch {batch}")
                    continue
                x = torch.randn(batch, 1, size, size, device=device)
                row = {"model": name, "size": size, "batch": batch, "params": params}
                for mode, backward in (("fwd", False), ("fwd+bwd", True)):
                    step = make_step(model, x, backward)
                    step()  # warm-up: one-time allocations are not part of the peak
                    _sync(device)
                    with PeakMemory(device) as mem:
                        step()
                        _sync(device)
                    times = time_call(step, device, min_time=args.min_time, warm_up=False)
                    t = statistics.median(times)
                    row[f"{mode}_s"] = t
                    row[f"{mode}_samples_per_s"] = batch / t
                    row[f"{mode}_peak_mib"] = mem.mib
                    if backward and t > args.max_call_s:
                        too_slow = (size, batch)
                print(row, flush=True)
                rows.append(row)
        del model

    ratios = [wrapper_ratio(device, size, batch, args.ratio_reps) for size in (64, 128) for batch in (1, 8)]
    for r in ratios:
        print(r, flush=True)
    fno_params = count_parameters(model_specs()[0]["FNO"]())
    mg_params = count_parameters(model_specs()[0]["MG-TFNO"]())
    notes = [
        ("FNO wrapper / neuralop FNO, median time with calls alternated (target <= 1.05): "
         + "; ".join(f"{r['size']}^2 b{r['batch']}: fwd {r['fwd_ratio']:.3f}, fwd+bwd {r['fwd+bwd_ratio']:.3f}"
                    for r in ratios)),
        (f"Parameters: FNO {fno_params}, MG-TFNO {mg_params} (same width 32 and 16 modes): "
         f"{fno_params / mg_params:.1f}x fewer (target >= 10x)."),
        (f"Peak memory: {'CUDA max_memory_allocated' if device.type == 'cuda' else 'rise of peak RSS (VmHWM)'} "
         f"during one call, MiB."),
    ]
    if skipped:
        notes.append(f"Skipped (one fwd+bwd call > {args.max_call_s} s on this device): " + ", ".join(skipped))
    config = {"sizes": args.sizes, "batches": args.batches, "device": args.device, "min_time": args.min_time,
              "max_call_s": args.max_call_s, "threads": torch.get_num_threads(),
              "models": {k: config_to_dict(v) for k, v in configs.items()},
              "fno_config": config_to_dict(FNOConfig()), "mg_tfno_config": config_to_dict(MGTFNOConfig())}
    cols = ["model", "size", "batch", "params", "fwd_samples_per_s", "fwd+bwd_samples_per_s", "fwd_peak_mib",
            "fwd+bwd_peak_mib", "fwd_s", "fwd+bwd_s"]
    paths = write_results(NAME, rows, config=config, device=args.device, title="Model throughput and memory",
                          notes="\n\n".join(notes), columns=cols, out_dir=out_dir,
                          extra={"wrapper_ratio": ratios, "param_ratio_fno_over_mg_tfno": fno_params / mg_params})
    print("\n".join(notes))
    print(f"wrote {paths['json']} and {paths['md']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
