"""The all-item total of a form without a published key (project convention), computed by hand.

WAI-S (1–7, reverse items 4 and 10 scored 8 − x) and WAI-SR (1–5, no reverse items); both
allow at most a quarter of the 12 items missing (3), sums prorated to 12 items.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest

from alliance.instruments import get_instrument
from alliance.scoring import (
    ScoringInputError,
    UnverifiedKeyWarning,
    score_unkeyed_total,
    score_unkeyed_values,
)

WAI_SR_ROW = [1, 2, 3, 4, 5, 1, 2, 3, 4, 5, 1, 2]  # sum 33


def answers(instrument_id: str, values: list[float | None], **ids: object) -> pd.DataFrame:
    row = {f"{instrument_id}_{i}": [np.nan if v is None else v] for i, v in enumerate(values, 1)}
    return pd.DataFrame({**{k: [v] for k, v in ids.items()}, **row})


def unkeyed(frame: pd.DataFrame, instrument_id: str, **options: object) -> pd.DataFrame:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnverifiedKeyWarning)
        return score_unkeyed_total(frame, instrument_id, **options)  # type: ignore[arg-type]


def test_wai_s_sevens_reverse_items_four_and_ten() -> None:
    # 10 items at 7, items 4 and 10 reversed to 8 - 7 = 1: (10 * 7 + 2 * 1) / 12 = 72 / 12.
    row = unkeyed(answers("wai_s", [7] * 12, patient_id="p1"), "wai_s").iloc[0]
    assert row.patient_id == "p1"
    assert row.wai_s_total == 6.0
    assert row.wai_s_status == "ok"


def test_wai_s_mixed_answers_reverse_on_the_item_scale() -> None:
    # All 6 except item 4 = 2 (-> 6) and item 10 = 1 (-> 7): (11 * 6 + 7) / 12 = 73 / 12.
    values: list[float | None] = [6.0] * 12
    values[3], values[9] = 2, 1
    assert unkeyed(answers("wai_s", values), "wai_s").wai_s_total.iloc[0] == pytest.approx(73 / 12)


def test_simulated_therapist_form_uses_the_reverse_keys() -> None:
    # The defect: the simulator's fallback ignored reverse keys and gave 7.0 here.
    from alliance.simulate import score_therapist_form

    t = pd.DataFrame({f"t_wai_s_{i}": [7.0] for i in range(1, 13)})
    assert float(score_therapist_form(t, "wai_s").iloc[0]) == 6.0


def test_web_therapist_form_uses_the_reverse_keys() -> None:
    from alliance.web.forms import unkeyed_total

    inst = get_instrument("wai_s")
    scores = unkeyed_total(inst, "therapist", {c: 7.0 for c in inst.item_columns})
    assert scores["wai_s_total"] == 6.0
    assert scores["wai_s_status"].startswith("total only")
    assert "no published key" in scores["wai_s_status"]


def test_web_batch_of_therapist_forms_is_checked_and_scored_in_one_call() -> None:
    from alliance.web.forms import Scored, SubmissionInvalid, score_batch

    sevens = {f"wai_s_{i}": "7" for i in range(1, 13)}
    out = score_batch("wai_s", "therapist", [sevens, {**sevens, "wai_s_3": "9"}, sevens])
    assert isinstance(out[0], Scored) and out[0].scores["wai_s_total"] == 6.0
    assert isinstance(out[1], SubmissionInvalid)  # only the bad submission is refused
    assert isinstance(out[2], Scored) and out[2].scores == out[0].scores


def test_wai_sr_has_no_reverse_items_so_the_plain_mean() -> None:
    # 33 / 12; as a sum, 33.
    df = answers("wai_sr", WAI_SR_ROW)
    assert unkeyed(df, "wai_sr").wai_sr_total.iloc[0] == pytest.approx(33 / 12)
    assert unkeyed(df, "wai_sr", metric="sum").wai_sr_total.iloc[0] == 33


def test_missing_items_within_the_allowed_share() -> None:
    # WAI-SR items 1, 2, 3 missing (3 of 12 allowed): (33 - 6) / 9 = 3.0.
    values: list[float | None] = list(WAI_SR_ROW)
    values[0] = values[1] = values[2] = None
    row = unkeyed(answers("wai_sr", values), "wai_sr").iloc[0]
    assert row.wai_sr_total == pytest.approx(27 / 9)
    assert row.wai_sr_status == "ok"
    # WAI-S all 7 with reverse item 4 missing: 10 items at 7, item 10 at 1: 71 / 11.
    s_values: list[float | None] = [7.0] * 12
    s_values[3] = None
    assert unkeyed(answers("wai_s", s_values), "wai_s").wai_s_total.iloc[0] == pytest.approx(
        71 / 11
    )


def test_missing_items_over_the_allowed_share_leave_the_total_empty() -> None:
    values: list[float | None] = list(WAI_SR_ROW)
    values[0] = values[1] = values[2] = values[3] = None
    row = unkeyed(answers("wai_sr", values), "wai_sr").iloc[0]
    assert math.isnan(row.wai_sr_total)
    assert row.wai_sr_status == "total: 4 of 12 items missing (at most 3)"


def test_sum_metric_is_prorated() -> None:
    # WAI-SR item 3 missing: (33 - 3) / 11 * 12; WAI-S all 7 as a sum: 10 * 7 + 2 * 1 = 72.
    values: list[float | None] = list(WAI_SR_ROW)
    values[2] = None
    sums = unkeyed(answers("wai_sr", values), "wai_sr", metric="sum")
    assert sums.wai_sr_total.iloc[0] == pytest.approx(30 / 11 * 12)
    assert unkeyed(answers("wai_s", [7] * 12), "wai_s", metric="sum").wai_s_total.iloc[0] == 72


def test_invalid_answer_raises_naming_the_column() -> None:
    values: list[float | None] = [7.0] * 12
    values[3] = 8
    outside = r"column wai_s_4: value 8: outside the scale 1\.\.7"
    with pytest.raises(ScoringInputError, match=outside):
        unkeyed(answers("wai_s", values), "wai_s")
    values[3] = 6.5
    with pytest.raises(ScoringInputError, match=r"column wai_s_4: value 6\.5: not a whole number"):
        unkeyed(answers("wai_s", values), "wai_s")


def test_invalid_answer_flagged_leaves_the_row_empty() -> None:
    frame = pd.concat([answers("wai_s", [7] * 12), answers("wai_s", [7] * 11 + [9])])
    result = unkeyed(frame.reset_index(drop=True), "wai_s", errors="flag")
    assert result.wai_s_total.iloc[0] == 6.0
    assert math.isnan(result.wai_s_total.iloc[1])
    assert result.wai_s_status.iloc[1] == "not scored: wai_s_12=9 outside the scale 1..7"


def test_key_status_is_unverified_with_a_warning() -> None:
    with pytest.warns(UnverifiedKeyWarning, match="wai_sr_total is unverified.*no published key"):
        result = score_unkeyed_total(answers("wai_sr", WAI_SR_ROW), "wai_sr")
    meta = result.attrs["alliance"]
    assert meta["key_status"] == {"total": "unverified"}
    assert (meta["instrument"], meta["metric"], meta["form"]) == ("wai_sr", "mean", None)


def test_matrix_variant_agrees_with_the_table() -> None:
    rows = [[7] * 12, [7, 7, 7, None, *[7] * 8], [7] * 8 + [None] * 4, [7] * 11 + [9]]
    result = score_unkeyed_values(rows, "wai_s")
    assert result.columns == ("wai_s_total",)
    assert result.key_status == {"total": "unverified"}
    frame = pd.DataFrame(rows, columns=get_instrument("wai_s").item_columns, dtype=float)
    table = unkeyed(frame, "wai_s", errors="flag")
    np.testing.assert_array_equal(result.scores[:, 0], table.wai_s_total.to_numpy())
    assert result.status[:3] == list(table.wai_s_status)[:3]
    assert result.status[2] == "total: 4 of 12 items missing (at most 3)"
    assert result.status[3] == "not scored: wai_s_12=9 outside the scale 1..7"
    assert result.issues is not None and list(result.issues.column) == ["wai_s_12"]
