"""alliance: measure, monitor and study the therapeutic (working) alliance.

>>> import pandas as pd, alliance
>>> answers = pd.DataFrame({f"wai_sr_{i}": [5] for i in range(1, 13)})
>>> float(alliance.score(answers, "wai_sr")["wai_sr_bond"].iloc[0])
5.0
>>> alliance.meta.rma.__name__  # subpackages load on first use
'rma'
"""

import importlib
from types import ModuleType

from alliance.instruments import get_instrument, list_instruments
from alliance.scoring import ScoringError, ScoringInputError, score

# Subpackages loaded on first use (``alliance.meta.rma`` after a plain ``import alliance``),
# so that scoring a file does not pay for SciPy's statistics or the clinic.
LAZY = ("dynamics", "io", "meta", "research", "simulate")


def __getattr__(name: str) -> ModuleType:
    if name in LAZY:
        return importlib.import_module(f"alliance.{name}")
    raise AttributeError(f"module 'alliance' has no attribute {name!r}")


__version__ = "0.1.0"
__all__ = [
    "ScoringError",
    "ScoringInputError",
    "__version__",
    "get_instrument",
    "list_instruments",
    "score",
]
