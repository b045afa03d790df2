"""The examples in the linalg docstrings (solvers, operators, preconditioners, gradients) run
and give what they say."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["pdesurrogates.linalg", "pdesurrogates.linalg.krylov", "pdesurrogates.linalg.operators",
           "pdesurrogates.linalg.preconditioners", "pdesurrogates.linalg.adjoint"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
    assert result.attempted > 0
