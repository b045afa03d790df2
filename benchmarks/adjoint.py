"""Memory and time of a backward pass through ``linalg.cg`` (implicit adjoint) vs iterations.

``x = cg(A, b)`` is differentiable in ``b`` and in ``A``'s values by one adjoint solve
(:mod:`pdesurrogates.linalg.adjoint`): the forward iterations keep no graph, so the backward pass
should need the same memory after 10 or 1000 iterations, and cost about one more solve.

System: ``-div(a grad u)`` on 128^2 interior nodes, ``a`` a two-phase field with contrast 100
(``physics.darcy.sample_coefficient(130, high=100, low=1)``), assembled as a torch sparse CSR
matrix whose values require a gradient, and a random ``b`` that requires one too; loss
``sum(w * x)`` with a random ``w``, so that the adjoint solve ``A lambda = w`` is a system like the
forward one (its iteration count is recorded: the backward pass costs what that solve costs). The
iteration count is set by ``rtol`` (found by bisection for each target in ``--targets``; the
adjoint solve uses the same tolerance).

Measured for each target:

* peak memory allocated during ``loss.backward()`` above the level before it: numpy buffers
  (``tracemalloc``, which sees numpy) plus torch tensors (the profiler's CPU memory timeline),
* the same over forward + backward,
* best-of-``--repeats`` wall time of the forward solve and of ``loss.backward()``;

and, as the baseline the implicit adjoint replaces, plain CG written in torch with autograd
through every iteration (``unrolled``, up to ``--unrolled-max`` iterations), whose graph grows
with the iterations.

    python benchmarks/adjoint.py                  # writes benchmarks/results/cpu/adjoint.*
    python benchmarks/adjoint.py --size small --out /tmp/a --overwrite
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before numpy

import argparse
import importlib
import json
import math
import tempfile
import time
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import torch

from pdesurrogates.bench.report import RESULTS, device_name, git_sha, write_results
from pdesurrogates.linalg import cg
from pdesurrogates.linalg.operators import to_torch_csr
from pdesurrogates.physics.darcy import sample_coefficient
from pdesurrogates.physics.grid import Grid
from pdesurrogates.physics.operators import diffusion_matrix

NAME = "adjoint"
SIZES = {"default": {"nodes": 130, "high": 100.0}, "small": {"nodes": 34, "high": 100.0}}
TARGETS = {"default": (10, 30, 100, 300, 1000), "small": (10, 30, 100)}
TIME_RATIO_TARGET = 1.2
FLAT_TOLERANCE = 0.10  # backward peak at the most iterations within 10% of the fewest


def versions() -> dict:
    out = {}
    for mod in ("torch", "numpy", "scipy", "pyamg", "h5py", "neuralop"):
        try:
            out[mod] = importlib.import_module(mod).__version__
        except ImportError:
            out[mod] = None
    return out


def build_system(nodes: int, high: float, seed: int):
    a = sample_coefficient(nodes, torch.Generator().manual_seed(seed), high=high, low=1.0)
    S = to_torch_csr(diffusion_matrix(a, Grid((nodes, nodes))))
    b = torch.from_numpy(np.random.default_rng(seed).standard_normal(S.shape[0]))
    return S, b


def leaves(S: torch.Tensor, b: torch.Tensor):
    """Fresh differentiable inputs: the CSR values and ``b``."""
    values = S.values().clone().requires_grad_(True)
    A = torch.sparse_csr_tensor(S.crow_indices(), S.col_indices(), values, S.shape)
    return A, values, b.clone().requires_grad_(True)


def rtol_for(S, b, target: int) -> tuple[float, int]:
    """``rtol`` at which plain CG takes about ``target`` iterations (bisection in log rtol)."""
    lo, hi = -14.0, math.log10(0.99)
    best = (hi, None)
    for _ in range(14):
        mid = 0.5 * (lo + hi)
        its = int(cg(S, b, rtol=10.0 ** mid, maxiter=100 * target).iterations)
        if best[1] is None or abs(its - target) < abs(best[1] - target):
            best = (mid, its)
        if its > target:
            lo = mid
        else:
            hi = mid
        if its == target:
            break
    return 10.0 ** best[0], best[1]


def unrolled_cg(S: torch.Tensor, values: torch.Tensor, b: torch.Tensor, rtol: float,
                maxiter: int) -> tuple[torch.Tensor, int]:
    """Plain CG in torch with autograd through every iteration (the baseline): ``S`` gives the
    sparsity pattern, ``values`` its entries. The product ``A p`` is a gather and a scatter-add
    over the stored entries, differentiable in the values at ``O(nnz)`` memory (torch's CSR
    product would form a dense ``(n, n)`` gradient).
    """
    crow, col = S.crow_indices(), S.col_indices()
    rows = torch.repeat_interleave(torch.arange(S.shape[0]), crow[1:] - crow[:-1])

    def matvec(p):
        return torch.zeros_like(p).index_add(0, rows, values * p[col])

    x = torch.zeros_like(b)
    r = b.clone()
    p = r
    rr = r @ r
    stop = rtol * torch.linalg.vector_norm(b).detach()
    k = 0
    for k in range(1, maxiter + 1):
        Ap = matvec(p)
        alpha = rr / (p @ Ap)
        x = x + alpha * p
        r = r - alpha * Ap
        rr_new = r @ r
        if float(rr_new.detach().sqrt()) <= float(stop):
            break
        p = r + (rr_new / rr) * p
        rr = rr_new
    return x, k


def _torch_peak(prof) -> float:
    """Peak of live torch CPU allocations in a profiled region, from the memory timeline."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "timeline.json"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # the CPU timeline has no successor yet
            prof.export_memory_timeline(str(path), device="cpu")
        times, sizes = json.loads(path.read_text())
    if not times:
        return 0.0
    total = np.asarray(sizes, dtype=np.float64).sum(axis=1)
    return float(total.max() - total[0])


def measure_memory(run_forward, backward_only: bool) -> float:
    """Peak bytes above the start of the measured region: numpy (tracemalloc) + torch (profiler).

    ``run_forward() -> loss``; the region is the backward pass (``backward_only``) or forward and
    backward together. The two trackers run in separate passes, so that neither counts the
    other's bookkeeping.
    """
    from torch.profiler import ProfilerActivity, profile

    loss = run_forward() if backward_only else None
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    (run_forward() if loss is None else loss).backward()
    numpy_peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    loss = run_forward() if backward_only else None
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True,
                 with_stack=True) as prof:
        (run_forward() if loss is None else loss).backward()
    return numpy_peak + _torch_peak(prof)


def timed(fn) -> tuple[float, float]:
    """``(wall, cpu)`` seconds of one call (CPU: this process's time, robust to a shared machine)."""
    c0, t0 = time.process_time(), time.perf_counter()
    fn()
    return time.perf_counter() - t0, time.process_time() - c0


def measure(S, b, w, rtol: float, repeats: int, unrolled_max: int) -> dict:
    def forward_ours():
        A, _, bb = leaves(S, b)
        res = cg(A, bb, rtol=rtol, maxiter=100_000)
        return (w * res.x).sum(), res

    loss, res = forward_ours()
    assert bool(res.converged), f"forward solve did not converge at rtol {rtol:g}"
    row = {"rtol": rtol, "iterations": int(res.iterations),
           "adjoint_iterations": int(cg(S, w, rtol=rtol, maxiter=100_000).iterations)}
    row["ours_backward_peak_mb"] = measure_memory(lambda: forward_ours()[0], True) / 1e6
    row["ours_forward_backward_peak_mb"] = measure_memory(lambda: forward_ours()[0], False) / 1e6
    fwd, bwd = [], []
    for _ in range(repeats):  # interleaved forward and backward timings
        fwd.append(timed(forward_ours))
        loss, _ = forward_ours()
        bwd.append(timed(loss.backward))
    row["forward_s"], row["forward_cpu_s"] = (min(t[i] for t in fwd) for i in (0, 1))
    row["backward_s"], row["backward_cpu_s"] = (min(t[i] for t in bwd) for i in (0, 1))
    row["backward_over_forward"] = row["backward_s"] / row["forward_s"]
    row["cpu_backward_over_forward"] = row["backward_cpu_s"] / row["forward_cpu_s"]
    if row["iterations"] <= unrolled_max:
        def forward_unrolled():
            _, values, bb = leaves(S, b)
            x, _ = unrolled_cg(S, values, bb, rtol, 100_000)
            return (w * x).sum()

        _, k = unrolled_cg(S, S.values(), b, rtol, 100_000)
        row["unrolled_iterations"] = k
        row["unrolled_backward_peak_mb"] = measure_memory(forward_unrolled, True) / 1e6
        row["unrolled_forward_backward_peak_mb"] = measure_memory(forward_unrolled, False) / 1e6
    return row


def run(size: str = "default", targets=None, repeats: int = 5, unrolled_max: int = 300, seed: int = 0,
        out_dir: Path | None = None, overwrite: bool = False) -> dict:
    folder = Path(out_dir) if out_dir is not None else RESULTS / device_name()
    if (folder / f"{NAME}.json").exists() and not overwrite:
        raise FileExistsError(f"{folder / (NAME + '.json')} exists; pass --overwrite to replace it")
    torch.set_num_threads(1)
    targets = tuple(targets or TARGETS[size])
    cfg = SIZES[size]
    S, b = build_system(cfg["nodes"], cfg["high"], seed)
    w = torch.from_numpy(np.random.default_rng(seed + 1).standard_normal(S.shape[0]))  # loss w.x
    load_before = os.getloadavg()
    rows = []
    for target in targets:
        rtol, _ = rtol_for(S, b, target)
        row = {"target_iterations": target, **measure(S, b, w, rtol, repeats, unrolled_max)}
        rows.append(row)
        print(f"target {target}: {row['iterations']} iterations, backward peak "
              f"{row['ours_backward_peak_mb']:.2f} MB, backward/forward {row['backward_over_forward']:.2f} "
              f"(CPU {row['cpu_backward_over_forward']:.2f})"
              + (f", unrolled backward peak {row['unrolled_backward_peak_mb']:.1f} MB"
                 if "unrolled_backward_peak_mb" in row else ""))
    peaks = [r["ours_backward_peak_mb"] for r in rows]
    checks = {
        "backward_peak_mb_min_max": [min(peaks), max(peaks)],
        "backward_peak_flat": max(peaks) <= (1 + FLAT_TOLERANCE) * min(peaks),
    }
    for key in ("backward_over_forward", "cpu_backward_over_forward"):
        worst = max(r[key] for r in rows)
        checks[key] = {"max": worst, f"within_{TIME_RATIO_TARGET}": worst <= TIME_RATIO_TARGET}
    config = {"size": size, **cfg, "unknowns": int(S.shape[0]), "targets": list(targets), "repeats": repeats,
              "unrolled_max": unrolled_max, "seed": seed, "loss": "sum(w * x), w ~ N(0, 1)",
              "threads": {"torch": torch.get_num_threads(), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS")},
              "load_average_before_after": [load_before, os.getloadavg()]}
    sha = git_sha()
    extra = {"versions": versions(), "git": {"sha": sha.removesuffix("-dirty"), "dirty": sha.endswith("-dirty")},
             "targets": checks}
    paths = write_results(
        NAME, rows, config=config, extra=extra, out_dir=folder, notes=_notes(checks, config),
        title="Backward through cg by implicit adjoint: memory and time vs iterations (CPU)",
        columns=["iterations", "adjoint_iterations", "rtol", "ours_backward_peak_mb",
                 "ours_forward_backward_peak_mb", "forward_cpu_s", "backward_cpu_s", "cpu_backward_over_forward",
                 "backward_over_forward", "unrolled_iterations", "unrolled_forward_backward_peak_mb"])
    plot(rows, paths["json"].with_suffix(".png"))
    return {"rows": rows, "paths": paths, "targets": checks}


def _notes(checks, config) -> str:
    lo, hi = checks["backward_peak_mb_min_max"]
    return "\n\n".join([
        (f"{config['unknowns']} unknowns (one vector = {8 * config['unknowns'] / 1e6:.2f} MB). Peak memory is "
         "what the measured region allocates above its start: numpy buffers (tracemalloc) plus torch tensors "
         "(profiler memory timeline). Times (wall and process CPU) are best of "
         f"{config['repeats']}; the adjoint solve uses the forward rtol. Loss {config['loss']}."),
        (f"Implicit adjoint: backward peak {lo:.2f}-{hi:.2f} MB over all iteration counts (flat within "
         f"{FLAT_TOLERANCE:.0%}: {'yes' if checks['backward_peak_flat'] else 'NO'})."),
        ("Backward / forward time, at most: "
         + "; ".join(f"{label} {checks[key]['max']:.2f} (<= {TIME_RATIO_TARGET}: "
                     f"{'yes' if checks[key][f'within_{TIME_RATIO_TARGET}'] else 'NO'})"
                     for label, key in (("wall", "backward_over_forward"), ("CPU", "cpu_backward_over_forward")))
         + ". The backward pass is the adjoint solve (its iteration count, `adjoint_iterations`, is that of "
           "A lambda = w, close to the forward count) plus the gradient of the values."),
        ("Unrolled: the same CG in torch with autograd through the iterations, the only way to reach A's "
         "values before; its graph (held from forward to backward) grows with the iterations."),
        "Load average (1, 5, 15 min) before/after: "
        + " / ".join(", ".join(f"{x:.2f}" for x in la) for la in config["load_average_before_after"]),
    ])


def plot(rows, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_m, ax_t) = plt.subplots(1, 2, figsize=(11, 4))
    its = [r["iterations"] for r in rows]
    ax_m.loglog(its, [r["ours_backward_peak_mb"] for r in rows], "o-", label="implicit adjoint: backward")
    ax_m.loglog(its, [r["ours_forward_backward_peak_mb"] for r in rows], "o:",
                label="implicit adjoint: forward + backward")
    un = [r for r in rows if "unrolled_backward_peak_mb" in r]
    if un:
        ax_m.loglog([r["unrolled_iterations"] for r in un], [r["unrolled_forward_backward_peak_mb"] for r in un],
                    "s--", label="unrolled autograd: forward + backward")
    ax_m.set(xlabel="CG iterations", ylabel="peak memory above start (MB)", title="memory")
    ax_t.semilogx(its, [r["cpu_backward_over_forward"] for r in rows], "o-", label="backward / forward (CPU time)")
    ax_t.semilogx(its, [r["backward_over_forward"] for r in rows], "k.", label="backward / forward (wall time)")
    ax_t.axhline(TIME_RATIO_TARGET, color="r", ls="--", lw=0.8, label=f"target {TIME_RATIO_TARGET}")
    ax_t.set(xlabel="CG iterations", ylabel="time ratio", title="time", ylim=(0, max(2.0, *[
        max(r["backward_over_forward"], r["cpu_backward_over_forward"]) * 1.1 for r in rows])))
    for ax in (ax_m, ax_t):
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=sorted(SIZES), default="default")
    parser.add_argument("--targets", type=int, nargs="+", default=None, help="iteration counts to aim for")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--unrolled-max", type=int, default=300,
                        help="largest iteration count for the unrolled baseline")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="results folder (default benchmarks/results/<device>)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing result files")
    parser.add_argument("--replot", type=Path, default=None, metavar="JSON",
                        help="only redraw the PNG next to an existing results JSON")
    args = parser.parse_args(argv)
    if args.replot is not None:
        plot(json.loads(args.replot.read_text())["rows"], args.replot.with_suffix(".png"))
        return {"paths": {"png": args.replot.with_suffix(".png")}}
    out = run(args.size, args.targets, args.repeats, args.unrolled_max, args.seed, args.out, args.overwrite)
    print(Path(out["paths"]["md"]).read_text())
    return out


if __name__ == "__main__":
    main()
