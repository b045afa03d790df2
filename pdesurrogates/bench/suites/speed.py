"""``speed``: inference latency, throughput and peak memory vs resolution and batch size per model.

Latency is the minimum of ``repeats`` timed forward passes (``torch.no_grad``, eval mode) after
``warmup`` untimed ones: on a shared machine the minimum estimates the unloaded cost, while the
median (also stored, ``latency_median_s``) mixes in other users' load. Peak memory: on CUDA ``torch.cuda.max_memory_allocated`` minus the memory
held before the call; on CPU the peak of live tensor storage created during one forward pass,
tracked by a dispatch mode (activations and output; weights and input excluded).
"""

from __future__ import annotations

import statistics
import time
import weakref
from pathlib import Path
from typing import Any

import torch

from pdesurrogates.bench import plots
from pdesurrogates.bench.cases import available_families, build_model

NAME = "speed"
TITLE = "Speed: inference latency, throughput and peak memory vs resolution"
_ALL = ["fno", "tfno", "mgno", "unet", "neuralop-fno"]
SIZES = {
    "smoke": {"families": ["fno", "mgno", "neuralop-fno"], "width": 8, "modes": 4, "resolutions": [16, 32],
              "batch_sizes": [1, 2], "warmup": 1, "repeats": 2},
    "small": {"families": _ALL, "width": 32, "modes": 16, "resolutions": [64, 128, 256, 512],
              "batch_sizes": [1, 4], "warmup": 1, "repeats": 4},
    "full": {"families": _ALL + ["mg-tfno"], "width": 64, "modes": 16, "resolutions": [64, 128, 256, 512, 1024],
             "batch_sizes": [1, 8, 32], "warmup": 3, "repeats": 10},
}
COLUMNS = ["family", "resolution", "batch_size", "params", "latency_s", "latency_median_s", "samples_per_s",
           "peak_memory_mb"]


class _PeakTensorMemory(torch.utils._python_dispatch.TorchDispatchMode):
    """Peak bytes of tensor storage created (and still alive) while the mode is active."""

    def __init__(self) -> None:
        super().__init__()
        self.live = 0
        self.peak = 0
        self._seen: set[int] = set()

    def _free(self, ptr: int, nbytes: int) -> None:
        if ptr in self._seen:
            self._seen.discard(ptr)
            self.live -= nbytes

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in torch.utils._pytree.tree_leaves(out):
            if isinstance(t, torch.Tensor):
                storage = t.untyped_storage()
                ptr, nbytes = storage.data_ptr(), storage.nbytes()
                if nbytes == 0 or ptr in self._seen:
                    continue
                self._seen.add(ptr)
                self.live += nbytes
                self.peak = max(self.peak, self.live)
                weakref.finalize(t, self._free, ptr, nbytes)
        return out


def prepare(config: dict[str, Any], device: str) -> dict[str, Any]:
    families, missing = available_families(config["families"])
    if not families:
        raise ValueError(f"none of the model families {config['families']} can be built: {missing}")
    return {"families": families, "missing": missing}


def points(config: dict[str, Any], context: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"family": f, "resolution": r, "batch_size": b}
            for f in context["families"] for r in config["resolutions"] for b in config["batch_sizes"]]


def _peak_memory(model: torch.nn.Module, x: torch.Tensor) -> float:
    dev = x.device
    with torch.no_grad():
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
            torch.cuda.reset_peak_memory_stats(dev)
            before = torch.cuda.memory_allocated(dev)
            model(x)
            torch.cuda.synchronize(dev)
            return (torch.cuda.max_memory_allocated(dev) - before) / 2**20
        tracker = _PeakTensorMemory()
        with tracker:
            y = model(x)
        del y
        return tracker.peak / 2**20


def measure(point: dict[str, Any], context: dict[str, Any], config: dict[str, Any], device: str) -> dict[str, Any]:
    dev = torch.device(device)
    model = build_model(point["family"], config["width"], modes=config["modes"], seed=0).to(dev).eval()
    gen = torch.Generator().manual_seed(0)
    r = point["resolution"]
    x = torch.randn(point["batch_size"], 1, r, r, generator=gen).to(dev)
    sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)
    times = []
    with torch.no_grad():
        for i in range(config["warmup"] + config["repeats"]):
            sync()
            t0 = time.perf_counter()
            model(x)
            sync()
            if i >= config["warmup"]:
                times.append(time.perf_counter() - t0)
    lat = min(times)
    return {
        "params": sum(p.numel() for p in model.parameters()),
        "latency_s": lat,
        "latency_median_s": statistics.median(times),
        "samples_per_s": point["batch_size"] / lat,
        "peak_memory_mb": _peak_memory(model, x),
    }


def analyze(rows: list[dict[str, Any]], config: dict[str, Any]) -> dict[str, Any]:
    by_res: dict[int, dict[str, Any]] = {}
    b1 = min(config["batch_sizes"])
    for r in rows:
        if r["batch_size"] == b1:
            by_res.setdefault(r["resolution"], {"resolution": r["resolution"]})[r["family"]] = r["latency_s"] * 1e3
    notes = (
        f"Width {config['width']}, {config['modes']} Fourier modes per axis where spectral; minimum of "
        f"{config['repeats']} forward passes after {config['warmup']} warm-up; random input, eval mode, no grad. "
        "Peak memory on CPU is the peak of tensor storage created during one forward pass (dispatch-tracked).\n"
    )
    return {"fits": {}, "tables": {f"latency (ms) at batch {b1}": list(by_res.values())},
            "notes": notes, "columns": COLUMNS}


def plot(payload: dict[str, Any], folder: Path, stem: str) -> list[Path]:
    rows = payload["rows"]
    b1 = min(r["batch_size"] for r in rows)
    sel = [{**r, "pixels": r["resolution"] ** 2} for r in rows if r["batch_size"] == b1]
    return [
        plots.loglog_plot(folder / f"{stem}_latency.png", sel, x="pixels", y="latency_s", group="family",
                          title=f"{payload['title']} (batch {b1})", xlabel="grid points", ylabel="latency (s)"),
        plots.loglog_plot(folder / f"{stem}_memory.png", [r for r in sel if r["peak_memory_mb"] > 0],
                          x="pixels", y="peak_memory_mb", group="family", title=f"peak memory (batch {b1})",
                          xlabel="grid points", ylabel="peak memory (MiB)"),
    ]
