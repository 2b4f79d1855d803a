"""Floor/ceiling effects and straight-lining, against hand counts and direct pandas counts.

No external reference exists for these counts; the expected values are counted by hand in
the small tables below, or independently with pandas on ``../shared/oracles/
synthetic_waisr_items.csv`` (skipped when that folder is absent).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from alliance.research.psychometrics import (
    PsychometricsError,
    floor_ceiling,
    straight_lining,
    straight_lining_share,
)

ORACLES = Path(__file__).parents[1] / "data" / "psychometrics"  # copied from ../shared/oracles

# two sessions of three patients on a 1..5 scale (hand-counted expectations below)
T = pd.DataFrame(
    {
        "session": [1, 1, 1, 2, 2, 2],
        "a": [1, 1, 3, 5, 5, 4],
        "b": [1, 2, 3, 5, 5, 5],
    }
)


def test_floor_ceiling_overall_by_hand() -> None:
    table = floor_ceiling(T, ["a", "b"], low=1, high=5)
    assert list(table.index) == ["a", "b", "scale"] and table.index.name == "item"
    # a: two 1s, two 5s of 6; b: one 1, three 5s; scale: row 1 (1,1) floor, rows 4-5 ceiling
    assert table["floor"].tolist() == pytest.approx([2 / 6, 1 / 6, 1 / 6])
    assert table["ceiling"].tolist() == pytest.approx([2 / 6, 3 / 6, 2 / 6])
    assert (table["n"] == 6).all()


def test_floor_ceiling_by_session_by_hand() -> None:
    table = floor_ceiling(T, low=1, high=5, by="session")  # items: numeric columns but session
    assert table.index.names == ["session", "item"]
    ceiling = table["ceiling"].unstack()
    assert list(ceiling.loc[1]) == [0.0, 0.0, 0.0]
    assert list(ceiling.loc[2]) == pytest.approx([2 / 3, 1.0, 2 / 3])  # ceiling grows
    assert list(table["floor"].unstack().loc[1]) == pytest.approx([2 / 3, 1 / 3, 1 / 3])
    assert (table["n"] == 3).all()


def test_floor_ceiling_drops_incomplete_rows_and_says_so() -> None:
    t = pd.concat([T, pd.DataFrame({"session": [2], "a": [5], "b": [np.nan]})])
    table = floor_ceiling(t, ["a", "b"], low=1, high=5)
    assert (table["n"] == 6).all()
    assert table.loc["a", "ceiling"] == pytest.approx(2 / 6)


def test_floor_ceiling_with_per_item_bounds() -> None:
    t = pd.DataFrame({"a": [0, 50, 100, 100], "b": [1, 9, 9, 9]})
    table = floor_ceiling(t, low={"a": 0, "b": 1}, high={"a": 100, "b": 9})
    assert table["ceiling"].tolist() == pytest.approx([0.5, 0.75, 0.5])
    assert table["floor"].tolist() == pytest.approx([0.25, 0.25, 0.25])  # row 1: both at floor


def test_floor_ceiling_reads_the_scale_from_the_instrument() -> None:
    # WAI-SR items are answered 1..5 (alliance.instruments library)
    t = pd.DataFrame({f"wai_sr_{i}": [1, 5, 3] for i in range(1, 13)})
    table = floor_ceiling(t, instrument="wai_sr")
    assert table["floor"].tolist() == pytest.approx([1 / 3] * 13)
    assert table["ceiling"].tolist() == pytest.approx([1 / 3] * 13)
    # items default to the instrument's columns, not every numeric column
    assert floor_ceiling(t.assign(other=9), instrument="wai_sr").equals(table)
    with pytest.raises(PsychometricsError, match="other: not an item column of 'wai_sr'"):
        floor_ceiling(t.assign(other=1), ["wai_sr_1", "other"], instrument="wai_sr")
    with pytest.raises(PsychometricsError, match="wai_sr_12: column is missing"):
        floor_ceiling(t.drop(columns="wai_sr_12"), instrument="wai_sr")


def test_floor_ceiling_against_pandas_counts_on_synthetic_waisr() -> None:
    path = ORACLES / "synthetic_waisr_items.csv"
    if not path.exists():
        pytest.skip(f"{path} is absent (the shared oracles are not checked out)")
    w = pd.read_csv(path)
    items = [c for c in w.columns if c != "id"]
    table = floor_ceiling(w, items, low=1, high=5)
    for item in items:
        assert table.loc[item, "floor"] == pytest.approx((w[item] == 1).mean(), rel=1e-12)
        assert table.loc[item, "ceiling"] == pytest.approx((w[item] == 5).mean(), rel=1e-12)
    total = w[items].sum(axis=1)
    assert table.loc["scale", "floor"] == (total == 12).mean()
    assert table.loc["scale", "ceiling"] == (total == 60).mean()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"low": 1, "high": 4}, "a: answer 5 lies outside the scale 1..4"),
        ({"low": 1}, "give the response scale"),
        ({"low": 1, "high": 5, "instrument": "wai_sr"}, "not both"),
        ({"low": 5, "high": 1}, "a: high must exceed low"),
        ({"low": {"a": 1}, "high": 5}, "b: no low bound"),
        ({"low": 1, "high": 5, "by": "visit"}, "visit: column"),
        ({"low": 1, "high": 5, "items": ["a", "zz"]}, "zz: column is missing"),
    ],
)
def test_floor_ceiling_bad_input(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(PsychometricsError, match=message):
        floor_ceiling(T[["a", "b"]], **kwargs)  # type: ignore[arg-type]


def test_straight_lining_flags_rows_and_keeps_the_index() -> None:
    t = pd.DataFrame(
        {"a": [3, 1, 4, np.nan, 2], "b": [3, 2, 4, 4, 2], "c": [3, 5, 4, 4, 2]},
        index=[10, 11, 12, 13, 14],
    )
    flags = straight_lining(t)
    assert flags.index.tolist() == [10, 11, 12, 13, 14] and flags.name == "straight_lining"
    assert flags.tolist() == [True, False, True, False, True]  # row 13 has a missing item


def test_straight_lining_share_per_session() -> None:
    share = straight_lining_share(T, by="session")
    # session 1: (1,1), (3,3) straight, (1,2) not; session 2: (5,5), (5,5) straight, (4,5) not
    assert share["n"].tolist() == [3, 3] and share["n_straight"].tolist() == [2, 2]
    assert share["share"].tolist() == pytest.approx([2 / 3, 2 / 3])
    assert share.index.name == "session"
    overall = straight_lining_share(T, ["a", "b"])
    assert list(overall.loc["all"]) == pytest.approx([6, 4, 4 / 6])


def test_straight_lining_bad_input() -> None:
    with pytest.raises(PsychometricsError, match="at least 2 numeric item columns"):
        straight_lining(T, ["a"])
    with pytest.raises(PsychometricsError, match="b: column is not numeric"):
        straight_lining(T.assign(b=list("xxxxxx")), ["a", "b"])
    with pytest.raises(PsychometricsError, match="week: column"):
        straight_lining_share(T, by="week")
