"""Validation of benchmark result JSON (the files :func:`pdesurrogates.bench.harness.run_suite` writes).

A small hand-written schema, so that the library needs no ``jsonschema``: required keys and
their types, environment provenance, and the columns every row of a suite must carry.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1

ENVIRONMENT_KEYS = {
    "device": str, "torch": str, "git_sha": str, "date": str, "python": str, "numpy": str,
}
TOP_KEYS = {
    "name": str, "suite": str, "size": str, "schema_version": int, "environment": dict,
    "config": dict, "rows": list, "fits": dict,
}
#: columns every row of a suite must have (beyond these, rows may carry anything JSON).
ROW_KEYS: dict[str, dict[str, type | tuple[type, ...]]] = {
    "scaling-params": {"family": str, "width": int, "seed": int, "params": int, "test_rel_l2": (float, type(None))},
    "scaling-data": {"family": str, "n_train": int, "seed": int, "test_rel_l2": (float, type(None))},
    "scaling-resolution": {"family": str, "train_resolution": int, "seed": int, "test_errors": dict,
                           "test_rel_l2": (float, type(None))},
    "compute": {"family": str, "width": int, "seed": int, "params": int, "history": list},
    "speed": {"family": str, "resolution": int, "batch_size": int, "latency_s": (float, type(None))},
    "surrogate-vs-solver": {"model": str, "surrogate_l2": float, "solver_s_equal": float,
                            "surrogate_s_b1": float, "speedup_b1": float},
    "linear-solvers": {"benchmark": str, "status": str},
}


def _type_name(t: type | tuple[type, ...]) -> str:
    if isinstance(t, tuple):
        return " or ".join(x.__name__ for x in t)
    return t.__name__


def _is(value: Any, t: type | tuple[type, ...]) -> bool:
    types = t if isinstance(t, tuple) else (t,)
    if isinstance(value, bool):
        return bool in types
    if float in types and isinstance(value, int):
        return True
    return isinstance(value, types)


def validate(payload: Any, where: str = "result") -> None:
    """Raise ``ValueError`` listing every way ``payload`` departs from the result schema.

    Parameters
    ----------
    payload:
        The parsed JSON of a suite result.
    where:
        Name used in the message (usually the file path).
    """
    problems: list[str] = []
    if not isinstance(payload, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(payload).__name__}")  # noqa: TRY004
    for key, t in TOP_KEYS.items():
        if key not in payload:
            problems.append(f"missing key {key!r}")
        elif not _is(payload[key], t):
            problems.append(f"key {key!r} should be {_type_name(t)}, got {type(payload[key]).__name__}")
    if payload.get("schema_version", SCHEMA_VERSION) != SCHEMA_VERSION:
        problems.append(f"schema_version {payload.get('schema_version')} != {SCHEMA_VERSION}")
    env = payload.get("environment")
    if isinstance(env, dict):
        for key, t in ENVIRONMENT_KEYS.items():
            if not _is(env.get(key), t):
                problems.append(f"environment.{key} should be {_type_name(t)}, got {env.get(key)!r}")
    suite = payload.get("suite")
    if isinstance(suite, str) and suite not in ROW_KEYS:
        problems.append(f"unknown suite {suite!r}; known: {', '.join(ROW_KEYS)}")
    rows = payload.get("rows")
    if isinstance(rows, list) and isinstance(suite, str) and suite in ROW_KEYS:
        for i, row in enumerate(rows):
            if not isinstance(row, dict):
                problems.append(f"rows[{i}] should be an object")
                continue
            for key, t in ROW_KEYS[suite].items():
                if key not in row:
                    problems.append(f"rows[{i}] missing {key!r}")
                elif not _is(row[key], t):
                    problems.append(f"rows[{i}].{key} should be {_type_name(t)}, got {row[key]!r}")
            if len(problems) > 20:
                break
    if problems:
        raise ValueError(f"{where}: invalid benchmark result:\n  " + "\n  ".join(problems[:20]))


def load(path: Path | str) -> dict[str, Any]:
    """Read and validate a result file."""
    path = Path(path)
    try:
        payload = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from exc
    validate(payload, str(path))
    return payload
