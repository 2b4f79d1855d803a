"""Invalid input is named precisely and never turned into a silent wrong score."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from alliance import ScoringError, ScoringInputError, score


def wai_sr(rows: int = 3, value: object = 3) -> pd.DataFrame:
    data = {f"wai_sr_{i}": [value] * rows for i in range(1, 13)}
    return pd.DataFrame({"patient_id": [f"p{r}" for r in range(rows)], **data})


def test_out_of_range_non_numeric_and_non_integer_are_listed() -> None:
    df = wai_sr().astype({"wai_sr_2": object, "wai_sr_5": float})
    df.loc[0, "wai_sr_2"] = 6
    df.loc[1, "wai_sr_2"] = "often"
    df.loc[2, "wai_sr_5"] = 2.5
    with pytest.raises(ScoringInputError) as caught:
        score(df, "wai_sr")
    issues = caught.value.issues
    assert issues[["row", "column", "rule"]].values.tolist() == [
        [0, "wai_sr_2", "outside the scale 1..5"],
        [1, "wai_sr_2", "not a number"],
        [2, "wai_sr_5", "not a whole number"],
    ]
    message = str(caught.value)
    assert "3 invalid answer(s) for instrument 'wai_sr'" in message
    assert "row 1, column wai_sr_2: value 'often': not a number" in message


def test_flag_scores_the_valid_rows_and_reports_the_rest() -> None:
    df = wai_sr()
    df.loc[1, "wai_sr_7"] = 0
    scored = score(df, "wai_sr", errors="flag")
    assert scored.wai_sr_total.tolist()[0] == 3.0
    assert math.isnan(scored.wai_sr_total.iloc[1])
    assert scored.wai_sr_status.tolist() == [
        "ok",
        "not scored: wai_sr_7=0 outside the scale 1..5",
        "ok",
    ]


def test_error_message_is_capped_with_a_count() -> None:
    df = wai_sr(rows=30, value=9)
    with pytest.raises(ScoringInputError) as caught:
        score(df, "wai_sr")
    assert len(caught.value.issues) == 360
    assert str(caught.value).count("\n") == 21  # heading + 20 listed + "... and 340 more"
    assert str(caught.value).endswith("... and 340 more")


def test_missing_item_columns_are_named() -> None:
    df = wai_sr().drop(columns=["wai_sr_4", "wai_sr_11"])
    with pytest.raises(
        ScoringError, match=r"missing item column\(s\) for 'wai_sr': \['wai_sr_4', 'wai_sr_11'\]"
    ):
        score(df, "wai_sr")


def test_duplicate_columns_are_refused() -> None:
    df = wai_sr()
    df = pd.concat([df, df[["wai_sr_3"]]], axis=1)
    with pytest.raises(ScoringError, match=r"duplicate column\(s\): \['wai_sr_3'\]"):
        score(df, "wai_sr")


def test_column_map_renames_other_names() -> None:
    df = wai_sr().rename(columns={f"wai_sr_{i}": f"Q{i}" for i in range(1, 13)})
    scored = score(df, "wai_sr", columns={f"Q{i}": f"wai_sr_{i}" for i in range(1, 13)})
    assert scored.wai_sr_total.tolist() == [3.0, 3.0, 3.0]
    with pytest.raises(ScoringError, match=r"not in the table: \['Q99'\]"):
        score(df, "wai_sr", columns={"Q99": "wai_sr_1"})


def test_instrument_is_inferred_from_column_names() -> None:
    assert "wai_sr_total" in score(wai_sr()).columns
    wai_s = pd.DataFrame({f"wai_s_{i}": [4] for i in range(1, 13)})
    with pytest.warns(UserWarning):
        assert "wai_s_total" in score(wai_s).columns


def test_inference_names_missing_columns_and_unknown_layouts() -> None:
    with pytest.raises(
        ScoringError, match=r"look like 'wai_sr' but item column\(s\) \['wai_sr_12'\]"
    ):
        score(wai_sr().drop(columns=["wai_sr_12"]))
    with pytest.raises(ScoringError, match="cannot tell the instrument"):
        score(pd.DataFrame({"a": [1]}))


def test_input_table_is_not_changed() -> None:
    df = wai_sr()
    df.loc[0, "wai_sr_1"] = np.nan
    before = df.copy()
    score(df, "wai_sr", errors="flag")
    pd.testing.assert_frame_equal(df, before)


def test_bad_options_are_named() -> None:
    with pytest.raises(ScoringError, match="metric must be"):
        score(wai_sr(), "wai_sr", metric="median")  # type: ignore[arg-type]
    with pytest.raises(ScoringError, match="errors must be"):
        score(wai_sr(), "wai_sr", errors="ignore")  # type: ignore[arg-type]
    with pytest.raises(KeyError, match="no form 'parent'"):
        score(wai_sr(), "wai_sr", form="parent")


def test_numeric_strings_are_read_as_numbers() -> None:
    df = wai_sr(value="4")
    assert score(df, "wai_sr").wai_sr_total.tolist() == [4.0, 4.0, 4.0]


def test_empty_table_gives_empty_scores() -> None:
    scored = score(wai_sr(rows=0), "wai_sr")
    assert len(scored) == 0
    assert "wai_sr_total" in scored.columns


def test_nullable_integer_columns_with_gaps_are_prorated() -> None:
    # pandas' Int64 marks gaps with NA; one missing bond item is prorated like a NaN.
    df = wai_sr(rows=2, value=4).astype({f"wai_sr_{i}": "Int64" for i in range(1, 13)})
    df.loc[0, "wai_sr_3"] = pd.NA
    df.loc[1, "wai_sr_3"] = 2
    scored = score(df, "wai_sr")
    assert scored.wai_sr_bond.tolist() == [4.0, 3.5]  # (4+4+4)/3 and (2+4+4+4)/4
    assert scored.wai_sr_status.tolist() == ["ok", "ok"]
