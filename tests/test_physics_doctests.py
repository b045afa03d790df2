"""The examples in the physics docstrings run and give what they say."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["grid", "operators", "random", "spectral", "darcy", "poisson", "heat", "problems",
           "navier_stokes", "fem", "hard_systems"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name) -> None:
    module = importlib.import_module(f"pdesurrogates.physics.{name}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
    if name in ("random", "spectral", "darcy", "poisson", "heat", "problems", "navier_stokes", "fem",
                "hard_systems"):
        assert result.attempted > 0
