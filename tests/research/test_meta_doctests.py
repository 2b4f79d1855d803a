"""The runnable examples in the meta-analysis docstrings stay true."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "alliance.research.meta",
    "alliance.research.meta._validate",
    "alliance.research.meta._design",
    "alliance.research.meta.effects",
    "alliance.research.meta.models",
    "alliance.research.meta.report",
    "alliance.research.meta.regression",
    "alliance.research.meta.multilevel",
    "alliance.research.meta.bias",
    "alliance.research.meta.batch",
    "alliance.research.meta.studies",
    "alliance.research.meta.plots",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
    assert result.attempted > 0
