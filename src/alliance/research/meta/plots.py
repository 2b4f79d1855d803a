"""Forest and funnel plots as declarative Vega-Lite charts (via Altair).

One spec serves notebooks (display the chart), the web (embed the spec) and
static files: :func:`chart_bytes` renders PNG or SVG with vl-convert and
self-contained HTML with the Vega libraries inlined (nothing from a CDN).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, cast

import altair as alt
import numpy as np
import pandas as pd
import vl_convert as vlc
from numpy.typing import ArrayLike

from alliance.research.meta._validate import FloatArray, MetaInputError
from alliance.research.meta.bias import TrimFill
from alliance.research.meta.models import MetaResult

ChartFormat = Literal["png", "svg", "html", "json"]
Transform = Literal["none", "tanh", "exp"]


def _identity(x: ArrayLike) -> FloatArray:
    return np.asarray(x, dtype=np.float64)


_TRANSFORMS: dict[str, Callable[[ArrayLike], FloatArray]] = {
    "none": _identity,
    "tanh": lambda x: np.asarray(np.tanh(x), dtype=np.float64),
    "exp": lambda x: np.asarray(np.exp(x), dtype=np.float64),
}


#: Axis titles of the analysis scale (the scale of yi) per measure.
_ANALYSIS_SCALES = {
    "ZCOR": "Fisher's z of r", "RR": "Log risk ratio", "OR": "Log odds ratio",
    "ROM": "Log ratio of means", "SMD": "Standardised mean difference (g)",
}  # fmt: skip


def _transform(res: MetaResult, transform: Transform | None) -> tuple[Transform, str]:
    t: Transform = transform or ("tanh" if res.is_correlation else "none")
    if t not in _TRANSFORMS:
        raise MetaInputError(f"transform {t!r} must be one of {', '.join(_TRANSFORMS)}")
    label = {"tanh": "Correlation r", "exp": "Ratio", "none": "Effect size"}[t]
    return t, label


def forest_data(res: MetaResult, transform: Transform | None = None) -> pd.DataFrame:
    """The rows a forest plot draws: studies, the pooled estimate, then the prediction
    interval (labelled with its level; on the same scale as the rest).

    >>> from alliance.research.meta.models import rma
    >>> forest_data(rma([0.1, 0.3, 0.2], [0.01, 0.02, 0.01]))["row"].tolist()[-2:]
    ['RE model', '95% prediction interval']
    """
    if res.p != 1:
        raise MetaInputError("forest plots are drawn for intercept-only models")
    t, _ = _transform(res, transform)
    f = _TRANSFORMS[t]
    crit = float((res.ci_upper[0] - res.estimate) / res.se[0])
    half = crit * np.sqrt(res.vi)
    pooled = "RE model" if res.method != "EE" else "EE model"
    studies = pd.DataFrame({
        "row": _unique(list(res.slab)), "kind": "study", "est": f(res.yi),
        "lo": f(res.yi - half), "hi": f(res.yi + half), "weight": res.weights,
    })  # fmt: skip
    summary = pd.DataFrame({
        "row": [pooled], "kind": ["summary"], "est": [f(res.estimate)],
        "lo": [f(res.ci_lower[0])], "hi": [f(res.ci_upper[0])], "weight": [np.nan],
    })  # fmt: skip
    out = pd.concat([studies, summary], ignore_index=True)
    out["label"] = [f"{e:.2f} [{lo:.2f}, {hi:.2f}]" for e, lo, hi in
                    zip(out["est"], out["lo"], out["hi"])]  # fmt: skip
    if res.pi_lower is not None and res.pi_upper is not None:
        lo, hi = float(f(res.pi_lower)), float(f(res.pi_upper))
        pi = pd.DataFrame({"row": [f"{res.level:g}% prediction interval"], "kind": ["pi"],
                           "est": [np.nan], "lo": [lo], "hi": [hi], "weight": [np.nan],
                           "label": [f"[{lo:.2f}, {hi:.2f}]"]})  # fmt: skip
        out = pd.concat([out, pi], ignore_index=True)
    return out


def _unique(labels: list[str]) -> list[str]:
    """Make repeated study labels distinct ("Smith", "Smith [2]") so rows do not merge."""
    seen: dict[str, int] = {}
    out = []
    for lab in labels:
        seen[lab] = seen.get(lab, 0) + 1
        out.append(lab if seen[lab] == 1 else f"{lab} [{seen[lab]}]")
    return out


def forest_chart(
    res: MetaResult, transform: Transform | None = None, title: str | None = None
) -> alt.HConcatChart:
    """Forest plot: study estimates with CIs sized by weight, pooled estimate and PI.

    >>> from alliance.research.meta.models import rma
    >>> spec = forest_chart(rma([0.1, 0.3, 0.2], [0.01, 0.02, 0.01])).to_dict()
    >>> "hconcat" in spec
    True
    """
    t, label = _transform(res, transform)
    data = forest_data(res, t)
    order = data["row"].tolist()
    y = alt.Y("row:N", sort=order, title=None)
    base = alt.Chart(data)
    height = 22 * len(order) + 20
    null = 1.0 if t == "exp" else 0.0
    layers = [
        alt.Chart(pd.DataFrame({"x": [null]})).mark_rule(strokeDash=[4, 3], color="gray")
        .encode(x="x:Q"),
        base.transform_filter("datum.kind == 'study'").mark_rule().encode(
            x=alt.X("lo:Q", title=label), x2="hi:Q", y=y),
        base.transform_filter("datum.kind == 'study'").mark_square(color="black").encode(
            x="est:Q", y=y,
            size=alt.Size("weight:Q", legend=None, scale=alt.Scale(range=[20, 250])),
            tooltip=["row:N", "label:N", alt.Tooltip("weight:Q", format=".1f", title="weight %")]),
        base.transform_filter("datum.kind == 'pi'").mark_rule(strokeDash=[2, 2]).encode(
            x="lo:Q", x2="hi:Q", y=y),
        base.transform_filter("datum.kind == 'summary'").mark_rule(strokeWidth=6).encode(
            x="lo:Q", x2="hi:Q", y=y),
        base.transform_filter("datum.kind == 'summary'").mark_point(
            shape="diamond", filled=True, size=300, color="black").encode(
            x="est:Q", y=y, tooltip=["row:N", "label:N"]),
    ]  # fmt: skip
    plot = alt.layer(*layers).properties(width=360, height=height)
    text = base.mark_text(align="left").encode(
        y=alt.Y("row:N", sort=order, axis=None), text="label:N", x=alt.value(0)
    ).properties(width=140, height=height)  # fmt: skip
    chart = alt.hconcat(plot, text, title=title or "").configure_view(stroke=None)
    return cast(alt.HConcatChart, chart)


def funnel_chart(
    res: MetaResult, filled: TrimFill | None = None, title: str | None = None
) -> alt.LayerChart:
    """Funnel plot: effect (on the analysis scale, named on the axis) against standard error
    with the pseudo-95% region.

    Studies imputed by trim-and-fill (``filled``) get their own colour and shape,
    with the adjusted estimate as a dashed line.

    >>> from alliance.research.meta.models import rma
    >>> "layer" in funnel_chart(rma([0.1, 0.3, 0.2], [0.01, 0.02, 0.01])).to_dict()
    True
    """
    sei = np.sqrt(res.vi)
    pts = pd.DataFrame({"study": list(res.slab), "yi": res.yi, "sei": sei, "kind": "observed"})
    if filled is not None and filled.k0 > 0:
        pts = pd.concat([pts, pd.DataFrame({
            "study": [f"Filled {i + 1}" for i in range(filled.k0)], "yi": filled.filled_yi,
            "sei": np.sqrt(filled.filled_vi), "kind": "filled"})], ignore_index=True)  # fmt: skip
    top = float(pts["sei"].max()) * 1.05
    est = res.estimate
    cone = pd.DataFrame({"sei": [0.0, top, 0.0, top], "yi": [est, est - 1.96 * top, est,
                         est + 1.96 * top], "side": ["l", "l", "r", "r"]})  # fmt: skip
    yscale = alt.Scale(reverse=True, domain=[0, top])
    layers: list[Any] = [
        alt.Chart(cone).mark_line(color="gray", strokeDash=[4, 3]).encode(
            x="yi:Q", y=alt.Y("sei:Q", scale=yscale, title="Standard error"), detail="side:N"),
        alt.Chart(pd.DataFrame({"yi": [est]})).mark_rule(color="black").encode(x="yi:Q"),
        alt.Chart(pts).mark_point(filled=True, size=50).encode(
            x=alt.X("yi:Q", title=_ANALYSIS_SCALES.get(res.measure, "Effect size")),
            y=alt.Y("sei:Q", scale=yscale),
            shape=alt.Shape("kind:N", title=None), color=alt.Color("kind:N", title=None),
            tooltip=["study:N", alt.Tooltip("yi:Q", format=".3f"),
                     alt.Tooltip("sei:Q", format=".3f")]),
    ]  # fmt: skip
    if filled is not None and filled.k0 > 0:
        adjusted = pd.DataFrame({"yi": [filled.fit.estimate]})
        layers.append(
            alt.Chart(adjusted).mark_rule(strokeDash=[6, 3], color="firebrick").encode(x="yi:Q")
        )
    chart = alt.layer(*layers, title=title or "").properties(width=400, height=320)
    return cast(alt.LayerChart, chart)


def chart_bytes(chart: alt.TopLevelMixin, fmt: ChartFormat) -> bytes:
    """Render a chart: PNG/SVG via vl-convert, HTML with Vega bundled inline, or JSON spec.

    >>> from alliance.research.meta.models import rma
    >>> chart_bytes(funnel_chart(rma([0.1, 0.3, 0.2], [0.01, 0.02, 0.01])), "svg")[:4]
    b'<svg'
    """
    spec = chart.to_dict()
    if fmt == "png":
        return bytes(vlc.vegalite_to_png(spec, scale=2))
    if fmt == "svg":
        return str(vlc.vegalite_to_svg(spec)).encode("utf-8")
    if fmt == "html":
        return str(vlc.vegalite_to_html(spec, bundle=True)).encode("utf-8")
    if fmt == "json":
        return chart.to_json().encode("utf-8")
    raise MetaInputError(f"chart format {fmt!r} must be png, svg, html or json")
