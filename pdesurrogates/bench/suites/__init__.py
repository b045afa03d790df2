"""Benchmark suites, one module each; see :mod:`pdesurrogates.bench.harness` for the protocol."""

from __future__ import annotations

import importlib
from types import ModuleType

SUITES = {
    "scaling-params": "scaling_params",
    "scaling-data": "scaling_data",
    "scaling-resolution": "scaling_resolution",
    "compute": "compute",
    "speed": "speed",
    "surrogate-vs-solver": "surrogate_vs_solver",
    "linear-solvers": "linear_solvers",
}


def get_suite(name: str) -> ModuleType:
    """The suite module called ``name``; the error lists the valid names."""
    if name not in SUITES:
        raise ValueError(f"unknown benchmark suite {name!r}; choose from {', '.join(SUITES)}")
    return importlib.import_module(f"{__name__}.{SUITES[name]}")
