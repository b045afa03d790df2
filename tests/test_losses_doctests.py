"""Docstring examples of pdesurrogates.losses run."""

from __future__ import annotations

import doctest
import importlib

import pytest


@pytest.mark.parametrize("module", ["data", "physics"])
def test_doctests(module):
    mod = importlib.import_module(f"pdesurrogates.losses.{module}")
    result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
