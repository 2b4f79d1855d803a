"""Charts of the clinic: the patient's trajectory (Vega-Lite, rendered to SVG on the server)
and the caseload's sparklines (a few lines of inline SVG, no JavaScript).

The trajectory chart is one declarative Vega-Lite spec (via Altair), so the same chart
serves the web page, the JSON API and notebooks. It shows each score of the patient's
alliance measure by session, the patient's ratings as solid lines and the therapist's as
dashed ones, the rupture sessions with the method that found them, the instrument's
published cutoff where it has one (e.g. SRS 36) and, where the stored rupture alerts used
reliable change, the band of that reliable-change threshold below the running baseline;
where the clinic has an expected-trajectory model, each session's expected range as it was
stored the day the session was analysed, and the range expected for the next session.

Example
-------
>>> import pandas as pd
>>> t = pd.DataFrame({"session": [1, 2, 3], "srs_total": [38.0, 31.0, 37.5]})
>>> spec = trajectory_spec(t, "srs", [(2, "rci_drop")])
>>> spec["layer"][0]["encoding"]["x"]["scale"]["domain"]
[1, 3]
>>> score_range("srs", "total"), score_range("wai_sr", "total")
((0.0, 40.0), (1.0, 5.0))
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import pandas as pd
from markupsafe import Markup, escape

from alliance.instruments import Cutoff, get_instrument

# -- scales and cutoffs ------------------------------------------------------------------
RATERS = {"client": "patient", "therapist": "therapist"}
METHOD_LABELS = {
    "rci_drop": "Reliable drop (RCI)",
    "strauss2006": "1-SD drop (Strauss 2006)",
    "stiles2004": "2-SD drop (Stiles 2004)",
    "self_report": "Reported by the patient",
}
METHOD_SHAPES = {
    "rci_drop": "triangle-down",
    "self_report": "diamond",
    "strauss2006": "square",
    "stiles2004": "triangle-up",
}
RUPTURE_COLOUR = "#b00020"
# The total in near-black, subscales in colour-blind-safe hues (Okabe & Ito 2008)
SCORE_COLOURS = ("#222222", "#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9")
WIDTH, HEIGHT = 620, 300
FONT = 12  # smallest font size in the chart, in px at 100% zoom
BAND_COLOURS = {"reliable": "#c9d6e3", "expected": "#f0dca8"}
EXPECTED_GUIDE = "expected range (clinic model, 10th-90th percentile)"


def score_range(instrument_id: str, score_id: str = "total") -> tuple[float, float]:
    """The range a stored score can take: the response scale for item means, the sum of
    the items' scales for sums (the instrument's default metric, as the clinic stores it).

    >>> score_range("srs", "relationship")
    (0.0, 10.0)
    """
    inst = get_instrument(instrument_id)
    items = inst.score_items(score_id) or tuple(i.number for i in inst.items)
    scales = [inst.item_scale(n) for n in items]
    if inst.default_metric == "sum" and not inst.get_score(score_id).from_subscales:
        return float(sum(s.min for s in scales)), float(sum(s.max for s in scales))
    return float(min(s.min for s in scales)), float(max(s.max for s in scales))


def score_of(value: float | None, instrument_id: str, score_id: str = "total") -> str:
    """A score with its scale: ``"3.40 of 5"`` (item means), ``"34.0 of 40"`` (sums).

    >>> score_of(3.4, "wai_sr"), score_of(34, "srs"), score_of(None, "srs")
    ('3.40 of 5', '34.0 of 40', '–')
    """
    return score_formatter(instrument_id, score_id)(value)


def score_formatter(instrument_id: str, score_id: str = "total") -> Callable[[Any], str]:
    """:func:`score_of` for many values of one score (the scale is looked up once)."""
    _lo, hi = score_range(instrument_id, score_id)
    digits = 1 if get_instrument(instrument_id).default_metric == "sum" else 2

    def show(value: Any) -> str:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "–"
        return f"{float(value):.{digits}f} of {hi:g}"

    return show


def instrument_cutoff(instrument_id: str, score_id: str = "total") -> Cutoff | None:
    """The published cutoff on the stored score (same metric), if the instrument has one."""
    inst = get_instrument(instrument_id)
    for cutoff in inst.cutoffs:
        if cutoff.score == score_id and cutoff.metric == inst.default_metric:
            return cutoff
    return None


# -- the trajectory chart ----------------------------------------------------------------
def trajectory_long(table: pd.DataFrame, instrument_id: str) -> pd.DataFrame:
    """Long table (session, score, rater, value) of an instrument's scores for charting.

    Only the scores on the total's range are charted together (SRS: the 0–40 total, not
    its 0–10 lines), so every line reads on the same axis.
    """
    inst = get_instrument(instrument_id)
    total_range = score_range(instrument_id, "total")
    parts = []
    for respondent, rater in RATERS.items():
        prefix = instrument_id if respondent == "client" else f"{instrument_id}_{respondent}"
        for score in inst.scorable_scores:
            column = f"{prefix}_{score.id}"
            if column not in table.columns or score_range(instrument_id, score.id) != total_range:
                continue
            part = table[["session", column]].dropna()
            parts.append(
                pd.DataFrame(
                    {
                        "session": part["session"].astype(int),
                        "score": score.label,
                        "rater": rater,
                        "value": part[column].astype(float),
                    }
                )
            )
    if not parts:
        return pd.DataFrame(columns=["session", "score", "rater", "value"])
    return pd.concat(parts, ignore_index=True)


def _markers(ruptures: Iterable[int | tuple[int, str]]) -> pd.DataFrame:
    rows = []
    for r in ruptures:
        session, method = (r, "") if isinstance(r, int) else (int(r[0]), str(r[1]))
        rows.append(
            {
                "session": int(session),
                "method": method or "rupture",
                "label": METHOD_LABELS.get(method, method or "Rupture"),
            }
        )
    return pd.DataFrame(rows, columns=["session", "method", "label"]).drop_duplicates()


def running_baseline(table: pd.DataFrame, column: str) -> pd.DataFrame:
    """(session, baseline): mean of the patient's earlier sessions, from session 2 on."""
    part = table[["session", column]].dropna().sort_values("session")
    baseline = part[column].expanding().mean().shift(1)
    out = pd.DataFrame({"session": part["session"].astype(int), "baseline": baseline})
    return out.dropna().reset_index(drop=True)


def trajectory_spec(
    table: pd.DataFrame,
    instrument_id: str,
    ruptures: Sequence[int | tuple[int, str]] = (),
    *,
    rci_threshold: float | None = None,
    expected: pd.DataFrame | None = None,
) -> dict[str, Any]:
    """One declarative Vega-Lite spec (via Altair) of the patient's alliance trajectory.

    ``ruptures`` are rupture sessions, or (session, method) pairs (the method is labelled
    on the marker and in the legend). ``rci_threshold``: the reliable-change threshold of
    the stored rupture alerts (score units); when given, the chart shades the band from
    the running baseline (mean of the earlier sessions) down to that threshold below it.
    ``expected``: the expected range by session (``session, lower, upper``; the last row
    may be the next session, not yet held), shaded and, for the next session, drawn as a bar.
    """
    import altair as alt

    inst = get_instrument(instrument_id)
    data = trajectory_long(table, instrument_id)
    lo, hi = score_range(instrument_id, "total")
    last = max(2, int(data["session"].max()) if not data.empty else 1)
    if expected is not None and len(expected):
        last = max(last, int(expected["session"].max()))
    x_scale = alt.Scale(domain=[1, last], nice=False, zero=False)
    y_scale = alt.Scale(domain=[lo, hi], nice=False, zero=False)
    x_axis = alt.Axis(tickMinStep=1, format="d", values=list(range(1, last + 1)))
    layers: list[Any] = []
    subtitle: list[str] = []

    total = f"{instrument_id}_total"
    bands: list[tuple[str, pd.DataFrame]] = []
    if rci_threshold is not None and total in table.columns and rci_threshold > 0:
        band = running_baseline(table, total)
        if not band.empty:
            band["top"] = band["baseline"]
            band["lower"] = (band["baseline"] - rci_threshold).clip(lower=lo)
            band["guide"] = f"reliable change: {rci_threshold:.2f} below earlier mean"
            bands.append(("reliable", band))
    if expected is not None and len(expected):
        band = expected[["session", "lower", "upper"]].astype(float).copy()
        band["top"] = band["upper"].clip(upper=hi)
        band["lower"] = band["lower"].clip(lower=lo)
        band["guide"] = EXPECTED_GUIDE
        bands.append(("expected", band))
    fill = alt.Fill(
        "guide:N",
        title="Shaded ranges",
        scale=alt.Scale(
            domain=[str(b["guide"].iloc[0]) for _, b in bands],
            range=[BAND_COLOURS[kind] for kind, _ in bands],
        ),
        legend=alt.Legend(symbolSize=200, symbolType="square"),
    )
    for kind, band in bands:
        x = alt.X("session:Q", scale=x_scale)
        layers.append(
            alt.Chart(band)
            .mark_area(opacity=0.6)
            .encode(x=x, y=alt.Y("top:Q", scale=y_scale), y2="lower:Q", fill=fill)
        )
        if kind == "expected":  # the next session's range, drawn even without earlier ones
            upcoming = band[band["session"] > (data["session"].max() if len(data) else 0)]
            layers.append(
                alt.Chart(upcoming)
                .mark_rule(strokeWidth=8, color=BAND_COLOURS["expected"])
                .encode(
                    x=x,
                    y=alt.Y("top:Q", scale=y_scale),
                    y2="lower:Q",
                    tooltip=[
                        alt.Tooltip("session:Q", title="Expected at session"),
                        alt.Tooltip("lower:Q", format=".2f", title="from"),
                        alt.Tooltip("top:Q", format=".2f", title="to"),
                    ],
                )
            )

    raters = [r for r in RATERS.values() if r in set(data["rater"])] or ["patient"]
    dashes = {"patient": [1, 0], "therapist": [6, 4]}
    total_label = inst.get_score("total").label if "total" in {sc.id for sc in inst.scores} else ""
    data["line"] = (data["score"] == total_label).map({True: "total", False: "part"})
    present = set(data["score"])
    labels = [total_label] if total_label in present else []
    labels += [sc.label for sc in inst.scorable_scores if sc.label in present - {total_label}]
    encoding = {
        "x": alt.X("session:Q", title="Session", scale=x_scale, axis=x_axis),
        "y": alt.Y("value:Q", title=f"{inst.short_name} score", scale=y_scale),
        "color": alt.Color(
            "score:N",
            title="Score",
            scale=alt.Scale(
                domain=labels, range=[SCORE_COLOURS[i % 6] for i, _ in enumerate(labels)]
            ),
            legend=alt.Legend(symbolType="circle"),
        ),
    }
    # Lines and points are two layers: the rater legend then draws line symbols (a line
    # mark with points gets filled symbols, which show no dash and, without a fixed
    # colour, no symbol at all).
    layers.append(
        alt.Chart(data)
        .mark_line()
        .encode(
            **encoding,
            # the total drawn thicker than its subscales
            strokeWidth=alt.StrokeWidth(
                "line:N", scale=alt.Scale(domain=["total", "part"], range=[3, 1.5]), legend=None
            ),
            strokeDash=alt.StrokeDash(
                "rater:N",
                title="Rater",
                scale=alt.Scale(domain=raters, range=[dashes[r] for r in raters]),
                legend=alt.Legend(
                    symbolType="stroke",
                    symbolStrokeWidth=2.5,
                    symbolSize=500,
                    symbolStrokeColor="#333333",
                    labelExpr="datum.label == 'patient' ? 'patient (solid line)' "
                    ": 'therapist (dashed line)'",
                ),
            ),
        )
    )
    layers.append(
        alt.Chart(data)
        .mark_circle(size=36, opacity=1)
        .encode(
            **encoding,
            tooltip=["session:Q", "score:N", "rater:N", alt.Tooltip("value:Q", format=".2f")],
        )
    )

    cutoff = instrument_cutoff(instrument_id)
    if cutoff is not None:
        meaning = cutoff.meaning.split(":")[0].split(".")[0].strip().lower()
        when = cutoff.flag_when.replace("_or_equal", " or at")
        label = f"cutoff ({when} {cutoff.value:g}: {meaning})"
        rule = pd.DataFrame({"value": [cutoff.value], "label": [label]})
        base = alt.Chart(rule)
        layers.append(
            base.mark_rule(color="#333333", strokeDash=[2, 2], strokeWidth=1.5).encode(
                y=alt.Y("value:Q", scale=y_scale)
            )
        )
        subtitle.append(f"Black dotted line: {label}.")

    marks = _markers(ruptures)
    if not marks.empty:
        kinds = marks.drop_duplicates("method")
        marks["y"] = 7 + 16 * marks.groupby("session").cumcount()  # several methods: stacked
        base = alt.Chart(marks)
        layers.append(
            base.mark_rule(color=RUPTURE_COLOUR, strokeDash=[3, 3], strokeWidth=1.5).encode(
                x=alt.X("session:Q", scale=x_scale)
            )
        )
        layers.append(
            base.mark_point(filled=True, size=120, color=RUPTURE_COLOUR, opacity=1).encode(
                x=alt.X("session:Q", scale=x_scale),
                y=alt.Y("y:Q", scale=None),
                shape=alt.Shape(
                    "label:N",
                    title="Rupture found by",
                    scale=alt.Scale(
                        domain=list(kinds["label"]),
                        range=[METHOD_SHAPES.get(m, "circle") for m in kinds["method"]],
                    ),
                    legend=alt.Legend(symbolFillColor=RUPTURE_COLOUR, symbolStrokeWidth=0),
                ),
                tooltip=[
                    alt.Tooltip("session:Q", title="Rupture at session"),
                    alt.Tooltip("label:N", title="Found by"),
                ],
            )
        )

    chart = (
        alt.layer(*layers)
        .properties(
            width=WIDTH,
            height=HEIGHT,
            title=alt.TitleParams(f"{inst.short_name} by session", subtitle=subtitle or ""),
        )
        .configure_axis(labelFontSize=FONT, titleFontSize=13)
        .configure_legend(labelFontSize=FONT, titleFontSize=13, labelLimit=320)
        .configure_title(fontSize=15, subtitleFontSize=FONT, anchor="start")
    )
    spec: dict[str, Any] = chart.to_dict()
    return spec


def spec_to_svg(spec: dict[str, Any]) -> str:
    """Render a Vega-Lite spec to SVG on the server (no JavaScript, no CDN)."""
    import vl_convert as vlc

    svg: str = vlc.vegalite_to_svg(spec)
    return svg


# -- sparklines --------------------------------------------------------------------------
SPARK_WIDTH, SPARK_HEIGHT, SPARK_PAD = 110, 32, 3


def sparkline_svg(
    points: Sequence[tuple[int, float]], lo: float, hi: float, label: str, max_points: int = 20
) -> Markup:
    """A tiny inline SVG line of (session, value) points on the range ``lo..hi``.

    It carries its own text alternative (``<title>``: the label and the last values), so
    a screen reader reads the numbers; the line itself is decoration for the eye.

    >>> print(sparkline_svg([(1, 4.0), (2, 3.0)], 1, 5, "WAI-SR total"))  # doctest: +ELLIPSIS
    <svg class="spark" ...><title>WAI-SR total, sessions 1–2: 4.00, 3.00</title>...
    """
    pts = [(s, v) for s, v in points[-max_points:] if v == v]  # v != v: NaN
    if not pts:
        return Markup("")
    span = (hi - lo) or 1.0
    first, last = pts[0][0], pts[-1][0]
    width = SPARK_WIDTH - 2 * SPARK_PAD
    height = SPARK_HEIGHT - 2 * SPARK_PAD
    xs = width / (last - first) if last > first else 0.0
    x0 = SPARK_PAD if last > first else SPARK_PAD + width
    coords = [
        (x0 + xs * (s - first), SPARK_PAD + height * (1 - (min(max(v, lo), hi) - lo) / span))
        for s, v in pts
    ]
    digits = 1 if hi - lo > 10 else 2
    values = ", ".join([f"{v:.{digits}f}" for _s, v in pts])
    sessions = f"session {first}" if first == last else f"sessions {first}–{last}"
    title = escape(f"{label}, {sessions}: {values}")
    path = " ".join([f"{x:.1f},{y:.1f}" for x, y in coords])
    cx, cy = coords[-1]
    return Markup(
        f'<svg class="spark" width="{SPARK_WIDTH}" height="{SPARK_HEIGHT}" '
        f'viewBox="0 0 {SPARK_WIDTH} {SPARK_HEIGHT}" role="img" focusable="false">'
        f"<title>{title}</title>"
        f'<line x1="{SPARK_PAD}" x2="{SPARK_WIDTH - SPARK_PAD}" y1="{SPARK_HEIGHT - SPARK_PAD}" '
        f'y2="{SPARK_HEIGHT - SPARK_PAD}" class="spark-base"/>'
        f'<polyline points="{path}" fill="none" stroke="currentColor" stroke-width="1.8" '
        f'stroke-linejoin="round" stroke-linecap="round"/>'
        f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="2.6" fill="currentColor"/></svg>'
    )
