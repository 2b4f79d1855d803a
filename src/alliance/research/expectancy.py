"""Credibility and expectancy scores of the CEQ from standardised items.

Devilly & Borkovec (2000, J Behav Ther Exp Psychiatry 31(2):73-86,
doi:10.1016/S0005-7916(00)00012-4) found two factors: credibility (items 1-3) and
expectancy (items 4-6). The items come in two formats (1-9 ratings; 0-100% in 10% steps), so
a factor score is the sum of its items after each is standardised (shared/instruments-facts.md:
likely). By default the means and SDs are the table's own (a study's sample, as in the
paper); pass ``reference`` (item column -> (mean, SD), a published or a clinic's norm) so
that a patient's score does not depend on who else is in the table.

>>> import pandas as pd
>>> t = pd.DataFrame({"ceq_1": [7, 5, 9], "ceq_2": [6, 5, 8], "ceq_3": [7, 4, 9],
...                   "ceq_4": [60, 30, 90], "ceq_5": [7, 4, 8], "ceq_6": [50, 30, 80]})
>>> ceq_scores(t).round(3).to_dict("list")
{'ceq_credibility': [-0.086, -2.932, 3.018], 'ceq_expectancy': [0.188, -3.048, 2.86]}
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from alliance.instruments import get_instrument

FACTORS = {"credibility": (1, 2, 3), "expectancy": (4, 5, 6)}


def ceq_scores(
    table: pd.DataFrame, reference: Mapping[str, tuple[float, float]] | None = None
) -> pd.DataFrame:
    """``ceq_credibility`` and ``ceq_expectancy``: sums of standardised items (z-scores by
    the table's means and SDs, or by ``reference``); missing where an item is missing.
    Answers off an item's scale are refused, naming the column and the scale."""
    inst = get_instrument("ceq")
    columns = {}
    for factor, numbers in FACTORS.items():
        z = []
        for n in numbers:
            col = f"ceq_{n}"
            if col not in table.columns:
                raise ValueError(f"{col}: column is missing (the CEQ has items ceq_1..ceq_6)")
            values = pd.to_numeric(table[col], errors="coerce").astype(float)
            scale = inst.item_scale(n)
            bad = values.notna() & ((values < scale.min) | (values > scale.max))
            if bad.any():
                raise ValueError(f"{col}: answers must lie in {scale.min:g}..{scale.max:g}")
            mean, sd = reference[col] if reference else (values.mean(), values.std(ddof=1))
            if not sd > 0:
                raise ValueError(f"{col}: its SD is {sd}; standardising needs some spread")
            z.append((values - mean) / sd)
        columns[f"ceq_{factor}"] = pd.concat(z, axis=1).sum(axis=1, min_count=len(numbers))
    return pd.DataFrame(columns, index=table.index).astype(np.float64)
