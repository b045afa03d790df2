"""``pdesurrogates generate``: write a PDE dataset (our HDF5 format) from a reference solver.

::

    pdesurrogates generate PDE --n N --resolution R --seed S --out FILE
        [--resume] [--overwrite] [--workers W] [--device cpu|cuda] [--param key=value ...]
        [--batch-size B] [--threads T] [--no-progress]
    pdesurrogates generate --preset NAME [--out FILE] [any of the options above to override]

``PDE`` is one of the names of :data:`pdesurrogates.physics.problems.PROBLEMS`; parameters default
to the FNO-paper settings. A preset is a TOML file in ``datasets/presets/`` (or a path) with keys
``pde``, ``n``, ``seed``, ``out``, optional ``resolution``, ``batch_size``, ``workers``,
``description`` and a ``[params]`` table. Sample ``i`` depends only on ``(seed, i)``: an interrupted
run continued with ``--resume`` and a run with any ``--workers`` give the same arrays.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path
from typing import Any

from pdesurrogates.errors import UserInputError

PRESET_DIR = Path(__file__).resolve().parents[2] / "datasets" / "presets"
PRESET_KEYS = {"pde", "n", "seed", "out", "resolution", "batch_size", "workers", "description", "params"}
DEFAULT_BATCH = {"navier-stokes": 32}


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "generate",
        help="generate a PDE dataset (darcy, poisson, burgers, navier-stokes, heat)",
        description="Solve a PDE for N random inputs with a verified reference solver and write "
        "inputs/outputs/grid plus every parameter to an HDF5 file.",
    )
    parser.add_argument("pde", nargs="?", default=None,
                        help="darcy, poisson, burgers, navier-stokes or heat (omit with --preset)")
    parser.add_argument("--preset", default=None,
                        help="name of a preset in datasets/presets/ (or a .toml path)")
    parser.add_argument("--n", type=int, default=None, help="number of samples")
    parser.add_argument("--resolution", type=int, default=None,
                        help="grid nodes per side of the stored fields (default: the PDE's)")
    parser.add_argument("--seed", type=int, default=None, help="dataset seed (default 0)")
    parser.add_argument("--out", default=None, help="output .h5 file")
    parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                        help="problem parameter, repeatable (e.g. --param nu=1e-4)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="samples per solver call (Navier-Stokes solves a batch at once)")
    parser.add_argument("--workers", type=int, default=None, help="worker processes (default 1)")
    parser.add_argument("--device", default="cpu",
                        help="cpu or cuda[:k]: Navier-Stokes and Burgers run there, Darcy with its "
                        "batched CG solver (solver=cg, picked unless --param solver is given); "
                        "Poisson and heat refuse any device but cpu")
    parser.add_argument("--threads", type=int, default=0,
                        help="CPU threads of torch (default: all cores, or 1 when the machine is "
                        "already busy)")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted file")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing file")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--list-presets", action="store_true", help="list the presets and exit")
    parser.set_defaults(func=run)


def _load_toml(path: Path) -> dict[str, Any]:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python < 3.11
        import tomli as tomllib
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise UserInputError(f"preset {path}: invalid TOML: {exc}") from None


def available_presets() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.toml"))


def load_preset(name: str) -> dict[str, Any]:
    """Read a preset by name (``datasets/presets/NAME.toml``) or path; checks its keys."""
    path = Path(name)
    if path.suffix != ".toml":
        path = PRESET_DIR / f"{name}.toml"
    if not path.exists():
        raise FileNotFoundError(f"preset {name!r} not found ({path}); available: "
                                f"{', '.join(available_presets()) or 'none'}")
    preset = _load_toml(path)
    unknown = sorted(set(preset) - PRESET_KEYS)
    if unknown:
        raise UserInputError(f"preset {path}: unknown key(s) {', '.join(unknown)}; valid: "
                         f"{', '.join(sorted(PRESET_KEYS))}")
    for key in ("pde", "n"):
        if key not in preset:
            raise UserInputError(f"preset {path}: missing key {key!r}")
    if not isinstance(preset.get("params", {}), dict):
        raise UserInputError(f"preset {path}: [params] must be a table")
    return preset


def _parse_params(items: list[str]) -> dict[str, str]:
    params = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UserInputError(f"--param expects KEY=VALUE, got {item!r}")
        params[key.strip()] = value.strip()
    return params


def resolve(args: argparse.Namespace) -> dict[str, Any]:
    """Merge preset and command-line options into one job description (CLI wins)."""
    job: dict[str, Any] = {"params": {}}
    if args.preset is not None:
        preset = load_preset(args.preset)
        if args.pde is not None and args.pde != preset["pde"]:
            raise UserInputError(f"PDE {args.pde!r} conflicts with preset {args.preset!r} (pde = "
                             f"{preset['pde']!r}); give one or the other")
        job.update({k: v for k, v in preset.items() if k != "params"})
        job["params"] = dict(preset.get("params", {}))
    elif args.pde is None:
        raise UserInputError("give a PDE (darcy, poisson, burgers, navier-stokes, heat) or --preset NAME")
    else:
        job["pde"] = args.pde
    for key in ("n", "seed", "out", "resolution", "batch_size", "workers"):
        value = getattr(args, key)
        if value is not None:
            job[key] = value
    job["params"].update(_parse_params(args.param))
    if "resolution" in job:
        if "resolution" in job["params"]:
            raise UserInputError("give the resolution once: --resolution or --param resolution=...")
        job["params"]["resolution"] = job.pop("resolution")
    if job.get("n") is None:
        raise UserInputError("--n (number of samples) is required without a preset")
    if job.get("out") is None:
        raise UserInputError("--out FILE is required without a preset")
    if int(job["n"]) < 1:
        raise UserInputError(f"--n must be >= 1, got {job['n']}")
    job.setdefault("seed", 0)
    job.setdefault("workers", 1)
    job.setdefault("batch_size", DEFAULT_BATCH.get(job["pde"], 8))
    if int(job["seed"]) < 0:
        raise UserInputError(f"--seed must be >= 0, got {job['seed']}")
    return job


def _available_memory() -> int | None:
    """Bytes of memory available to a new allocation (Linux ``MemAvailable``), if known."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def _bytes(n: float) -> str:
    """``1.5 GiB`` for a byte count."""
    unit = "B"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            break
        n /= 1024
    return f"{int(n)} B" if unit == "B" else f"{n:.1f} {unit}"


def estimate_batch_bytes(problem: Any, batch_size: int) -> int:
    """A lower bound of the memory that generating one batch of ``problem`` takes, in bytes.

    The batch's float32 input and output arrays, plus one float64 field on the solver grid
    (``solver_grid_size`` per spatial axis) when the problem has one. Solvers need several such
    fields (and a sparse factorisation for Darcy), so the true need is larger.
    """
    per_sample = (math.prod(problem.input_shape) + math.prod(problem.output_shape)) * 4
    solver = getattr(problem, "solver_grid_size", None)
    field = int(solver) ** (len(problem.input_shape) - 1) * 8 if solver else 0
    return batch_size * per_sample + field


def check_memory(problem: Any, batch_size: int, n: int, available: int | None = None) -> None:
    """Refuse, before any file is created, a job whose first batch cannot fit in memory.

    Raises
    ------
    ValueError
        The lower bound of :func:`estimate_batch_bytes` exceeds the available memory; the message
        gives both, the sample shapes and the size of the file.
    """
    available = _available_memory() if available is None else available
    needed = estimate_batch_bytes(problem, batch_size)
    if available is None or needed <= available:
        return
    file_bytes = n * (math.prod(problem.input_shape) + math.prod(problem.output_shape)) * 4
    raise UserInputError(
        f"{problem.name} at resolution {getattr(problem, 'resolution', '?')}: one batch of "
        f"{batch_size} sample(s) needs at least {_bytes(needed)} ({needed} bytes: inputs "
        f"{tuple(problem.input_shape)} + outputs {tuple(problem.output_shape)} in float32 per "
        f"sample, plus the solver's grid) but {_bytes(available)} of memory is available; the "
        f"file would hold {_bytes(file_bytes)} uncompressed. Lower --resolution or --batch-size"
    )


def run(args: argparse.Namespace) -> int:
    if args.list_presets:
        for name in available_presets():
            desc = load_preset(name).get("description", "")
            print(f"{name:20s} {desc}")
        return 0
    job = resolve(args)

    import time
    from functools import partial

    import torch

    from pdesurrogates.commands.quickstart import choose_threads
    from pdesurrogates.data.hdf5 import write_dataset
    from pdesurrogates.physics.problems import PROBLEMS, get_problem, resolve_device

    try:
        dev = resolve_device(args.device)
    except ValueError as exc:
        raise UserInputError(f"--device: {exc}") from None
    params = dict(job["params"])
    if dev.type != "cpu":  # the generator's device path (e.g. Darcy's batched CG) unless chosen
        for key, value in getattr(PROBLEMS.get(job["pde"]), "accelerator_params", {}).items():
            params.setdefault(key, value)
    problem = get_problem(job["pde"], **params)
    try:
        problem.check_device(dev)
    except ValueError as exc:
        raise UserInputError(f"--device: {exc}") from None
    device = str(dev)
    if dev.type != "cpu" and int(job["workers"]) > 1:
        raise UserInputError("--workers > 1 runs CPU processes; on a GPU use --batch-size instead")
    if args.threads < 0:
        raise UserInputError(f"--threads must be >= 0, got {args.threads}")
    # extra threads on a busy machine cost far more than they give (small FFTs, sparse solves)
    threads_before = torch.get_num_threads()
    out = Path(job["out"])
    check_memory(problem, min(int(job["batch_size"]), int(job["n"])), int(job["n"]))
    start = time.perf_counter()
    torch.set_num_threads(choose_threads(args.threads))
    try:
        write_dataset(
            out,
            partial(problem.generate, seed=int(job["seed"]), device=device),
            int(job["n"]),
            pde=problem.name,
            input_shape=problem.input_shape,
            output_shape=problem.output_shape,
            params=problem.to_dict(),
            seed=int(job["seed"]),
            grid=problem.grid_arrays(),
            batch_size=int(job["batch_size"]),
            workers=int(job["workers"]),
            resume=args.resume,
            overwrite=args.overwrite,
            progress=not args.no_progress,
        )
    finally:
        torch.set_num_threads(threads_before)
    elapsed = time.perf_counter() - start
    print(f"wrote {out} ({job['n']} samples of {problem.name}, inputs {problem.input_shape}, "
          f"outputs {problem.output_shape}) in {elapsed:.1f} s", file=sys.stdout)
    return 0
