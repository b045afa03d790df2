"""``linear-solvers``: run the learned linear-solver benchmark scripts from the same command.

Each script in ``benchmarks/`` (``learned_sor.py``, ``learned_preconditioner.py``) exposes ``main()``
and writes its own results; this suite calls it with the
argv of the suite size (``--quick`` / ``--size smoke`` ...) and records what ran. A missing script is skipped with a message, not an error.
"""

from __future__ import annotations

import importlib.util
import inspect
import time
from pathlib import Path
from typing import Any

from pdesurrogates.bench.report import REPO

NAME = "linear-solvers"
TITLE = "Learned linear solvers: benchmark scripts run"
#: per size, script -> the argv its ``main(argv)`` is called with.
SIZES = {
    "smoke": {"scripts": {"benchmarks/learned_sor.py": ["--quick"],
                          "benchmarks/learned_preconditioner.py": ["--size", "smoke"]}},
    "small": {"scripts": {"benchmarks/learned_sor.py": ["--quick"],
                          "benchmarks/learned_preconditioner.py": ["--size", "small"]}},
    "full": {"scripts": {"benchmarks/learned_sor.py": [],
                         "benchmarks/learned_preconditioner.py": ["--size", "full"]}},
}
COLUMNS = ["script", "status", "seconds", "message"]


def prepare(config: dict[str, Any], device: str) -> dict[str, Any]:
    return {}


def points(config: dict[str, Any], context: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"script": s} for s in config["scripts"]]


def _call_main(main, argv: list[str]):
    """``main(argv)`` when ``main`` takes an argument, else ``main()``."""
    if inspect.signature(main).parameters:
        return main(list(argv))
    return main()


def measure(point: dict[str, Any], context: dict[str, Any], config: dict[str, Any], device: str) -> dict[str, Any]:
    path = Path(point["script"])
    path = path if path.is_absolute() else REPO / path
    if not path.exists():
        msg = f"{path.name} not found: skipped (written by the learned-solver issues)"
        print(f"linear-solvers: {msg}")
        return {"status": "missing", "seconds": 0.0, "message": msg}
    spec = importlib.util.spec_from_file_location(f"_bench_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "main"):
        raise ValueError(f"{path}: a benchmark script must define main()")
    t0 = time.perf_counter()
    result = _call_main(module.main, config["scripts"][point["script"]])
    return {"status": "ok", "seconds": round(time.perf_counter() - t0, 3),
            "message": "" if result in (None, 0) else str(result)[:200]}


def analyze(rows: list[dict[str, Any]], config: dict[str, Any]) -> dict[str, Any]:
    return {"fits": {}, "tables": {}, "notes": "Each script writes its own results under benchmarks/results/.\n",
            "columns": COLUMNS}


def plot(payload: dict[str, Any], folder: Path, stem: str) -> list[Path]:
    return []
