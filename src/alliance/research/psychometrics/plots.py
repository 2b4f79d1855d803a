"""Charts and the HTML page of a psychometric report (Vega-Lite via Altair, rendered by
:func:`alliance.research.meta.plots.chart_bytes`, the project's one renderer).

>>> import pandas as pd
>>> d = pd.DataFrame({"item": ["a", "a", "b"], "answer": [4.0, 5.0, 5.0],
...                   "share": [0.4, 0.6, 1.0]})
>>> distribution_chart(d, high=5).to_dict()["mark"]["type"]
'bar'
"""

from __future__ import annotations

import html

import altair as alt
import pandas as pd

from alliance.research.meta.plots import chart_bytes
from alliance.research.psychometrics.report import PsychometricsReport

CEILING, OTHER = "#b00020", "#8fa8c8"


def distribution_chart(distribution: pd.DataFrame, high: float | None = None) -> alt.TopLevelMixin:
    """Each item's answers as stacked shares, the top answer (the ceiling) in red."""
    data = distribution.assign(
        at=lambda d: ["ceiling" if high is not None and a >= high else "below" for a in d["answer"]]
    )
    chart: alt.TopLevelMixin = (
        alt.Chart(data)
        .mark_bar()
        .encode(
            y=alt.Y("item:N", sort=list(dict.fromkeys(data["item"])), title="Item"),
            x=alt.X("share:Q", stack="zero", title="Share of answers", axis=alt.Axis(format="%")),
            color=alt.Color("at:N", title="Answer", scale=alt.Scale(
                domain=["below", "ceiling"], range=[OTHER, CEILING])),
            order=alt.Order("answer:Q"),
            tooltip=["item:N", "answer:Q", alt.Tooltip("share:Q", format=".1%")],
        )
        .properties(width=420, title="Answers per item (red: the top of the scale)")
    )  # fmt: skip
    return chart


def loadings_chart(loadings: pd.DataFrame) -> alt.TopLevelMixin:
    """Standardised loadings per item, coloured by factor."""
    data = loadings.reset_index()
    chart: alt.TopLevelMixin = (
        alt.Chart(data)
        .mark_bar()
        .encode(
            y=alt.Y("item:N", sort=list(data["item"]), title="Item"),
            x=alt.X("std_loading:Q", title="Standardised loading", scale=alt.Scale(domain=[0, 1])),
            color=alt.Color("factor:N", title="Factor"),
            tooltip=["item:N", "factor:N", alt.Tooltip("std_loading:Q", format=".3f")],
        )
        .properties(width=420, title="Loadings (correlated-factor model)")
    )
    return chart


def report_html(report: PsychometricsReport, title: str, high: float | None = None) -> bytes:
    """One self-contained HTML page: the report's tables and its two charts as inline SVG."""
    parts = [f"<h1>{html.escape(title)}</h1>", f"<p>{report.n} complete administrations.</p>"]
    if report.verdict:
        parts.append(f"<p>{html.escape(report.verdict)}</p>")
    parts += [f"<p>Note: {html.escape(n)}</p>" for n in report.notes]
    for heading, frame in (
        ("Reliability", report.reliability),
        ("Factor models", report.models),
        ("Items", report.items),
        ("Straight-lining", report.straight_lining),
        ("Floor and ceiling of the scale by session", report.by_session),
        ("Measurement invariance", report.invariance),
    ):
        if frame is not None and len(frame):
            table = frame.to_html(float_format=lambda v: f"{v:.3f}", na_rep="", border=0)
            parts.append(f"<h2>{heading}</h2>{table}")
    for chart in (distribution_chart(report.distribution, high), loadings_chart(report.loadings)):
        parts.append(f"<figure>{chart_bytes(chart, 'svg').decode('utf-8')}</figure>")
    body = "\n".join(parts)
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>'
        f"{html.escape(title)}</title><style>body{{font-family:sans-serif;max-width:60rem;"
        f"margin:2rem auto}}table{{border-collapse:collapse}}td,th{{padding:.2rem .6rem;"
        f"text-align:right}}</style></head><body>{body}</body></html>"
    ).encode()
