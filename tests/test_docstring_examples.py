"""Every example in the package's docstrings runs and prints what it shows.

Public modules of the functional core (instruments, scoring, dynamics, simulate, research)
must carry examples; shells and adapters may, and any they carry must hold.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import alliance

MODULES = sorted(
    info.name
    for info in pkgutil.walk_packages(alliance.__path__, "alliance.")
    if ".migrations" not in info.name
)
CORE = ("alliance.instruments", "alliance.scoring", "alliance.dynamics", "alliance.simulate")
CORE += (
    "alliance.research.meta",
    "alliance.research.multilevel",
    "alliance.research.psychometrics",
)
WITHOUT_EXAMPLES = {"alliance.simulate.defaults"}  # constants with their sources only


def needs_examples(name: str) -> bool:
    private = name.rsplit(".", 1)[-1].startswith("_")
    return name.startswith(CORE) and not private and name not in WITHOUT_EXAMPLES


@pytest.mark.parametrize("module_name", MODULES)
def test_docstring_examples(module_name: str) -> None:
    module = importlib.import_module(module_name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} docstring example(s) failed in {module_name}"
    if needs_examples(module_name):
        assert result.attempted > 0, f"{module_name} has no runnable example"
