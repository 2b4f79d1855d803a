"""The caterpillar chart of shrunken therapist effects (Vega-Lite via Altair; rendered to
files by :func:`alliance.research.meta.plots.chart_bytes`, the one renderer of the project).
"""

from __future__ import annotations

import altair as alt
import pandas as pd


def caterpillar_chart(table: pd.DataFrame, score: str) -> alt.TopLevelMixin:
    """Each therapist's effect with its 95% interval, in order, and the clinic mean at 0.

    ``table`` is :func:`~alliance.research.multilevel.analyses.therapist_effects`'s table.

    >>> t = pd.DataFrame({"effect": [-0.2, 0.1], "lower": [-0.5, -0.2], "upper": [0.1, 0.4],
    ...                   "patients": [5, 6], "distinct": [False, False]},
    ...                  index=pd.Index(["a", "b"], name="therapist"))
    >>> caterpillar_chart(t, "alliance").to_dict()["layer"][0]["mark"]["type"]
    'rule'
    """
    name = table.index.name or "therapist"
    data = table.reset_index().rename(columns={name: "therapist"})
    data["rank"] = range(1, len(data) + 1)
    base = alt.Chart(data).encode(
        y=alt.Y("therapist:N", sort=list(data["therapist"]), title="Therapist"),
        tooltip=["therapist:N", "effect:Q", "lower:Q", "upper:Q", "patients:Q"],
    )
    intervals = base.mark_rule().encode(
        x=alt.X("lower:Q", title=f"{score}: therapist effect (shrunken) with 95% interval"),
        x2="upper:Q",
    )
    points = base.mark_point(filled=True).encode(
        x="effect:Q",
        color=alt.Color("distinct:N", title="Interval excludes the clinic mean"),
    )
    mean = alt.Chart(pd.DataFrame({"x": [0.0]})).mark_rule(strokeDash=[4, 4]).encode(x="x:Q")
    return alt.layer(intervals, points, mean).properties(width=480)
