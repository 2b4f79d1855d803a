"""alliance: measure, monitor and study the therapeutic (working) alliance.

>>> import pandas as pd, alliance
>>> answers = pd.DataFrame({f"wai_sr_{i}": [5] for i in range(1, 13)})
>>> float(alliance.score(answers, "wai_sr")["wai_sr_bond"].iloc[0])
5.0
"""

from alliance.instruments import get_instrument, list_instruments
from alliance.scoring import ScoringError, ScoringInputError, score

__version__ = "0.1.0"
__all__ = [
    "ScoringError",
    "ScoringInputError",
    "__version__",
    "get_instrument",
    "list_instruments",
    "score",
]
