"""``linear-solvers``: run the learned linear-solver benchmarks from the same command.

Each benchmark is a module of the package whose ``main(argv)`` runs it and writes its own results
under ``benchmarks/results/`` (``benchmarks/<name>.py`` is its command line); this suite imports
it, calls ``main`` with the argv of the suite size and records what ran. A benchmark whose module
is not in the package is reported as missing, and one that refuses to replace existing results
(``FileExistsError``) as ``exists``; any other error propagates.
"""

from __future__ import annotations

import importlib
import inspect
import time
from pathlib import Path
from typing import Any

NAME = "linear-solvers"
TITLE = "Learned linear solvers: benchmarks run"
#: per size, benchmark -> {"module": importable module with ``main(argv)``, "argv": its arguments}
SIZES = {
    "smoke": {"benchmarks": {
        "learned_sor": {"module": "pdesurrogates.bench.learned_sor", "argv": ["--quick", "--overwrite"]},
        "learned_preconditioner": {"module": "pdesurrogates.bench.learned_preconditioner",
                                   "argv": ["--size", "smoke"]},
    }},
    "small": {"benchmarks": {
        "learned_sor": {"module": "pdesurrogates.bench.learned_sor", "argv": ["--quick", "--overwrite"]},
        "learned_preconditioner": {"module": "pdesurrogates.bench.learned_preconditioner",
                                   "argv": ["--size", "small"]},
    }},
    "full": {"benchmarks": {
        "learned_sor": {"module": "pdesurrogates.bench.learned_sor", "argv": []},
        "learned_preconditioner": {"module": "pdesurrogates.bench.learned_preconditioner",
                                   "argv": ["--size", "full"]},
    }},
}
COLUMNS = ["benchmark", "module", "status", "seconds", "message"]


def prepare(config: dict[str, Any], device: str) -> dict[str, Any]:
    return {}


def points(config: dict[str, Any], context: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"benchmark": name} for name in config["benchmarks"]]


def _call_main(main, argv: list[str]):
    """``main(argv)`` when ``main`` takes an argument, else ``main()``."""
    if inspect.signature(main).parameters:
        return main(list(argv))
    return main()


def measure(point: dict[str, Any], context: dict[str, Any], config: dict[str, Any], device: str) -> dict[str, Any]:
    spec = config["benchmarks"][point["benchmark"]]
    module_name = spec["module"]
    out = {"module": module_name, "seconds": 0.0}
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name is None or not (module_name == err.name or module_name.startswith(err.name + ".")):
            raise  # the module exists but one of its own imports is missing: a real error
        msg = f"module {module_name} not found: skipped"
        print(f"linear-solvers: {msg}")
        return {**out, "status": "missing", "message": msg}
    if not hasattr(module, "main"):
        raise ValueError(f"{module_name}: a benchmark module must define main(argv)")
    t0 = time.perf_counter()
    try:
        result = _call_main(module.main, spec["argv"])
    except FileExistsError as err:
        return {**out, "status": "exists", "message": str(err)[:300]}
    return {**out, "status": "ok", "seconds": round(time.perf_counter() - t0, 3),
            "message": "" if result in (None, 0) else str(result)[:200]}


def analyze(rows: list[dict[str, Any]], config: dict[str, Any]) -> dict[str, Any]:
    return {"fits": {}, "tables": {}, "notes": "Each benchmark writes its own results under benchmarks/results/.\n",
            "columns": COLUMNS}


def plot(payload: dict[str, Any], folder: Path, stem: str) -> list[Path]:
    return []
