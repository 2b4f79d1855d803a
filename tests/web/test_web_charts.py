"""The clinic's charts: the trajectory's Vega-Lite spec (legend symbols, axis, rupture
markers with their method, cutoff rule, reliable-change band, font sizes) and the
caseload's sparklines."""

from __future__ import annotations

import re
from typing import Any

import pandas as pd
import pytest
import vl_convert as vlc

from alliance.web import charts


def wai_table(sessions: int = 6) -> pd.DataFrame:
    """A patient's WAI-SR scores by both raters (sessions 3.. only: the axis still starts
    at session 1)."""
    rows = range(3, 3 + sessions)
    t = pd.DataFrame({"patient_id": 1, "session": list(rows)})
    for score in ("total", "goal", "task", "bond"):
        t[f"wai_sr_{score}"] = [4.0, 4.1, 3.0, 3.4, 4.0, 4.2][:sessions]
        t[f"wai_sr_therapist_{score}"] = [3.8, 3.9, 3.6, 3.7, 3.9, 4.0][:sessions]
    return t


def srs_table() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "patient_id": 1,
            "session": [1, 2, 3, 4],
            "srs_total": [38.0, 33.0, 30.0, 37.0],
            "srs_relationship": [9.5, 8.0, 7.0, 9.0],
        }
    )


def layers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return list(spec["layer"])


def svg_of(spec: dict[str, Any]) -> str:
    return str(vlc.vegalite_to_svg(spec))


def legend_group(svg: str, title: str) -> str:
    """The SVG of one legend (Vega labels each legend with its title in aria-label)."""
    start = svg.index(f"Symbol legend titled '{title}'")
    end = svg.find('aria-roledescription="legend"', start + 1)
    return svg[start : end if end > 0 else len(svg)]


def test_rater_legend_draws_a_visible_line_symbol_for_each_rater() -> None:
    spec = charts.trajectory_spec(wai_table(), "wai_sr")
    (line,) = [lay for lay in layers(spec) if lay["mark"] == {"type": "line"}]
    dash = line["encoding"]["strokeDash"]
    assert dash["legend"]["symbolType"] == "stroke"
    assert dash["legend"]["symbolStrokeColor"] == "#333333"
    assert dash["scale"]["domain"] == ["patient", "therapist"]
    # Rendered: each rater's legend symbol is a stroked line, solid and dashed (with
    # `point=True` Vega-Lite made them filled and transparent: no symbol at all).
    legend = legend_group(svg_of(spec), "Rater")
    symbols = re.findall(r'<g class="mark-symbol role-legend-symbol"[^>]*><path ([^>]*)/>', legend)
    assert len(symbols) == 2
    for attributes in symbols:
        assert 'stroke="#333333"' in attributes
    assert 'stroke-dasharray="1,0"' in symbols[0] and 'stroke-dasharray="6,4"' in symbols[1]
    assert "patient (solid line)" in legend and "therapist (dashed line)" in legend


def test_only_the_raters_present_are_in_the_legend() -> None:
    spec = charts.trajectory_spec(srs_table(), "srs")
    (line,) = [lay for lay in layers(spec) if lay["mark"] == {"type": "line"}]
    assert line["encoding"]["strokeDash"]["scale"]["domain"] == ["patient"]


def test_x_axis_starts_at_session_one_with_whole_sessions() -> None:
    spec = charts.trajectory_spec(wai_table(), "wai_sr", [(5, "rci_drop")])
    domains = [
        lay["encoding"]["x"]["scale"]["domain"] for lay in layers(spec) if "x" in lay["encoding"]
    ]
    assert domains and all(d == [1, 8] for d in domains)
    (line,) = [lay for lay in layers(spec) if lay["mark"] == {"type": "line"}]
    assert line["encoding"]["x"]["axis"]["values"][0] == 1
    assert line["encoding"]["x"]["axis"]["format"] == "d"
    # a single session still gets an axis from 1 to 2
    one = charts.trajectory_spec(wai_table().head(1).assign(session=1), "wai_sr")
    assert layers(one)[0]["encoding"]["x"]["scale"]["domain"] == [1, 2]


def test_y_axis_is_the_scores_range_and_srs_lines_share_the_total_scale() -> None:
    spec = charts.trajectory_spec(srs_table(), "srs")
    (line,) = [lay for lay in layers(spec) if lay["mark"] == {"type": "line"}]
    assert line["encoding"]["y"]["scale"]["domain"] == [0.0, 40.0]
    long = charts.trajectory_long(srs_table(), "srs")
    assert set(long["score"]) == {"Total"}  # the 0-10 lines would not read on a 0-40 axis
    wai = charts.trajectory_spec(wai_table(), "wai_sr")
    assert layers(wai)[0]["encoding"]["y"]["scale"]["domain"] == [1.0, 5.0]


def test_rupture_markers_carry_the_method_in_a_legend_and_tooltip() -> None:
    ruptures = [(5, "rci_drop"), (5, "self_report"), (7, "strauss2006")]
    spec = charts.trajectory_spec(wai_table(), "wai_sr", ruptures)
    (points,) = [lay for lay in layers(spec) if lay["mark"].get("type") == "point"]
    shape = points["encoding"]["shape"]
    assert shape["title"] == "Rupture found by"
    assert shape["scale"]["domain"] == [
        "Reliable drop (RCI)",
        "Reported by the patient",
        "1-SD drop (Strauss 2006)",
    ]
    assert shape["scale"]["range"] == ["triangle-down", "diamond", "square"]
    assert {t.get("title") for t in points["encoding"]["tooltip"]} >= {"Found by"}
    svg = svg_of(spec)
    legend = legend_group(svg, "Rupture found by")
    for label in shape["scale"]["domain"]:
        assert label in legend
    rules = [lay for lay in layers(spec) if lay["mark"].get("color") == charts.RUPTURE_COLOUR]
    assert any(lay["mark"]["type"] == "rule" for lay in rules)


def test_plain_session_numbers_still_mark_ruptures() -> None:
    spec = charts.trajectory_spec(wai_table(), "wai_sr", [5])
    (points,) = [lay for lay in layers(spec) if lay["mark"].get("type") == "point"]
    assert points["encoding"]["shape"]["scale"]["domain"] == ["Rupture"]


def test_srs_cutoff_is_a_labelled_rule_and_wai_sr_has_none() -> None:
    spec = charts.trajectory_spec(srs_table(), "srs")
    rules = [
        lay
        for lay in layers(spec)
        if lay["mark"].get("type") == "rule" and "y" in lay.get("encoding", {})
    ]
    assert len(rules) == 1
    data = spec["datasets"][rules[0]["data"]["name"]]
    assert data[0]["value"] == 36
    assert "below 36" in " ".join(spec["title"]["subtitle"])
    assert "below 36" in svg_of(spec)
    wai = charts.trajectory_spec(wai_table(), "wai_sr")
    assert not [lay for lay in layers(wai) if lay["mark"].get("type") == "rule"]
    assert wai["title"]["subtitle"] == ""


def test_reliable_change_band_sits_below_the_running_baseline() -> None:
    table = wai_table()
    spec = charts.trajectory_spec(table, "wai_sr", rci_threshold=0.5)
    (band,) = [lay for lay in layers(spec) if lay["mark"].get("type") == "area"]
    rows = pd.DataFrame(spec["datasets"][band["data"]["name"]])
    # baseline = mean of the earlier sessions, from the second scored session on
    expected = table["wai_sr_total"].expanding().mean().shift(1).dropna()
    assert rows["session"].tolist() == table["session"].iloc[1:].tolist()
    assert rows["baseline"].tolist() == pytest.approx(expected.tolist())
    assert (rows["baseline"] - rows["lower"]).tolist() == pytest.approx([0.5] * len(rows))
    assert band["encoding"]["fill"]["title"] == "Shaded ranges"
    assert rows["guide"].iloc[0] == "reliable change: 0.50 below earlier mean"
    none = charts.trajectory_spec(table, "wai_sr")
    assert not [lay for lay in layers(none) if lay["mark"].get("type") == "area"]


def test_expected_range_is_shaded_and_the_next_session_drawn_as_a_bar() -> None:
    table = wai_table()
    last = int(table["session"].max())
    expected = pd.DataFrame({"session": [last - 1, last, last + 1], "lower": [3.0, 3.1, 3.2],
                             "upper": [4.4, 4.5, 9.0]})  # fmt: skip
    spec = charts.trajectory_spec(table, "wai_sr", rci_threshold=0.5, expected=expected)
    areas = [lay for lay in layers(spec) if lay["mark"].get("type") == "area"]
    assert len(areas) == 2  # the reliable-change band and the expected range
    fill = areas[1]["encoding"]["fill"]["scale"]
    assert fill["domain"][1] == charts.EXPECTED_GUIDE
    assert fill["range"] == [charts.BAND_COLOURS["reliable"], charts.BAND_COLOURS["expected"]]
    rows = pd.DataFrame(spec["datasets"][areas[1]["data"]["name"]])
    assert rows["top"].tolist() == [4.4, 4.5, 5.0]  # clipped to the scale's top
    [bar] = [lay for lay in layers(spec) if lay["mark"].get("type") == "rule"
             and lay["mark"].get("strokeWidth") == 8]  # fmt: skip
    assert pd.DataFrame(spec["datasets"][bar["data"]["name"]])["session"].tolist() == [last + 1]
    assert spec["layer"][0]["encoding"]["x"]["scale"]["domain"] == [1, last + 1]
    svg_of(spec)  # renders


def test_svg_text_is_at_least_12px_and_the_chart_fits_the_page() -> None:
    spec = charts.trajectory_spec(srs_table(), "srs", [(3, "rci_drop")], rci_threshold=4.0)
    svg = svg_of(spec)
    sizes = [float(v) for v in re.findall(r'font-size="([\d.]+)px"', svg)]
    assert sizes and min(sizes) >= 12
    width = float(re.search(r'<svg[^>]* width="([\d.]+)"', svg).group(1))  # type: ignore[union-attr]
    assert width <= 1120  # the page's content width (72rem less padding)


def test_sparkline_is_inline_svg_with_a_text_alternative() -> None:
    svg = str(charts.sparkline_svg([(1, 4.0), (2, 3.5), (4, 3.0)], 1, 5, "WAI-SR <total>"))
    assert svg.startswith('<svg class="spark"') and 'role="img"' in svg
    assert "<title>WAI-SR &lt;total&gt;, sessions 1–4: 4.00, 3.50, 3.00</title>" in svg
    assert "<script" not in svg
    points = re.search(r'points="([^"]+)"', svg).group(1).split()  # type: ignore[union-attr]
    ys = [float(p.split(",")[1]) for p in points]
    assert ys[0] < ys[1] < ys[2]  # lower scores are drawn lower
    assert str(charts.sparkline_svg([], 1, 5, "x")) == ""
    srs = str(charts.sparkline_svg([(1, 34.0)], 0, 40, "SRS total"))
    assert "session 1: 34.0" in srs


def test_scores_are_shown_with_their_scale() -> None:
    assert charts.score_of(3.4, "wai_sr") == "3.40 of 5"
    assert charts.score_of(34, "srs") == "34.0 of 40"
    assert charts.score_of(float("nan"), "srs") == "–"
    assert charts.score_range("srs", "relationship") == (0.0, 10.0)
    assert charts.instrument_cutoff("srs") is not None
    assert charts.instrument_cutoff("wai_sr") is None
