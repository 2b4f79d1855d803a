"""The runnable examples in the dynamics and simulate docstrings stay correct."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "alliance.dynamics",
    "alliance.dynamics._series",
    "alliance.dynamics.alerts",
    "alliance.dynamics.reliable_change",
    "alliance.dynamics.ruptures",
    "alliance.dynamics.trajectories",
    "alliance.simulate",
    "alliance.simulate.clinic",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0, f"{name} has no examples"
    assert result.failed == 0
