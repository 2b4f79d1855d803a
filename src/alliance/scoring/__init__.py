"""Pure, vectorised scoring of response tables for every instrument in the library.

>>> import pandas as pd
>>> from alliance.scoring import score
>>> df = pd.DataFrame({f"srs_{i}": [9.5] for i in range(1, 5)})
>>> float(score(df, "srs")["srs_total"].iloc[0])
38.0
"""

from alliance.scoring.keys import CompiledKey, compile_key, compile_unkeyed_total
from alliance.scoring.scorer import (
    UnverifiedKeyWarning,
    ValueScores,
    answer_issues,
    is_scored,
    keyed_items,
    score,
    score_unkeyed_total,
    score_unkeyed_values,
    score_values,
)
from alliance.scoring.validate import (
    ScoringError,
    ScoringInputError,
    check_values,
    describe_issues,
    infer_instrument,
)

__all__ = [
    "CompiledKey",
    "ScoringError",
    "ScoringInputError",
    "UnverifiedKeyWarning",
    "ValueScores",
    "answer_issues",
    "check_values",
    "compile_key",
    "compile_unkeyed_total",
    "describe_issues",
    "infer_instrument",
    "is_scored",
    "keyed_items",
    "score",
    "score_unkeyed_total",
    "score_unkeyed_values",
    "score_values",
]
