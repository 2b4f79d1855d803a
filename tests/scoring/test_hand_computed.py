"""Scoring cases computed by hand (the arithmetic is written out beside each expectation)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from alliance import score
from alliance.instruments import Instrument, get_instrument, register


def answers(instrument_id: str, values: list[float | None], **ids: object) -> pd.DataFrame:
    row = {f"{instrument_id}_{i}": [np.nan if v is None else v] for i, v in enumerate(values, 1)}
    return pd.DataFrame({**{k: [v] for k, v in ids.items()}, **row})


WAI_SR_ROW = [1, 2, 3, 4, 5, 1, 2, 3, 4, 5, 1, 2]


def test_wai_sr_means_and_sums() -> None:
    # Task 1,2,10,12 -> 1+2+5+2 = 10; Goal 4,6,8,11 -> 4+1+3+1 = 9; Bond 3,5,7,9 -> 3+5+2+4 = 14.
    df = answers("wai_sr", WAI_SR_ROW, patient_id="p1")
    means = score(df, "wai_sr").iloc[0]
    assert means["patient_id"] == "p1"
    assert (means.wai_sr_task, means.wai_sr_goal, means.wai_sr_bond) == (2.5, 2.25, 3.5)
    assert means.wai_sr_total == pytest.approx(33 / 12)
    assert means.wai_sr_status == "ok"
    sums = score(df, "wai_sr", metric="sum").iloc[0]
    assert (sums.wai_sr_task, sums.wai_sr_goal, sums.wai_sr_bond, sums.wai_sr_total) == (
        10,
        9,
        14,
        33,
    )


def test_wai_sr_one_missing_item_is_prorated() -> None:
    # Item 3 (bond) missing: bond = (5+2+4)/3; prorated sum = 11/3*4; total = 30/11.
    values: list[float | None] = list(WAI_SR_ROW)
    values[2] = None
    row = score(answers("wai_sr", values), "wai_sr").iloc[0]
    assert row.wai_sr_bond == pytest.approx(11 / 3)
    assert row.wai_sr_total == pytest.approx(30 / 11)
    sums = score(answers("wai_sr", values), "wai_sr", metric="sum").iloc[0]
    assert sums.wai_sr_bond == pytest.approx(11 / 3 * 4)
    assert sums.wai_sr_total == pytest.approx(30 / 11 * 12)


def test_wai_sr_too_many_missing_leaves_the_score_empty_with_reason() -> None:
    # Items 3 and 5 (both bond) missing: 2 of 4 > 1 allowed; total keeps 10 of 12 items.
    values: list[float | None] = list(WAI_SR_ROW)
    values[2] = values[4] = None
    row = score(answers("wai_sr", values), "wai_sr").iloc[0]
    assert math.isnan(row.wai_sr_bond)
    assert row.wai_sr_total == pytest.approx(25 / 10)
    assert row.wai_sr_status == "bond: 2 of 4 items missing (at most 1)"


def test_wai_s_reverse_items_four_and_ten() -> None:
    # All 6 except item 4 = 2 (-> 8-2 = 6) and item 10 = 1 (-> 7): goal = (6+6+7+6)/4.
    values: list[float | None] = [6.0] * 12
    values[3], values[9] = 2, 1
    with pytest.warns(UserWarning, match="wai_s_goal, wai_s_task is unverified"):
        row = score(answers("wai_s", values), "wai_s").iloc[0]
    assert row.wai_s_goal == pytest.approx(25 / 4)
    assert (row.wai_s_task, row.wai_s_bond) == (6, 6)
    assert row.wai_s_total == pytest.approx(73 / 12)


def test_wai_36_items_reverse_keys() -> None:
    # All answers 7; reversed items score 1. Goal has 6 reversed (3,9,10,12,27,34): 48/12;
    # Task 5 (7,11,15,31,33): 54/12; Bond 3 (1,20,29): 66/12; total 168/36.
    with pytest.warns(UserWarning, match="unverified"):
        row = score(answers("wai", [7] * 36), "wai").iloc[0]
    assert (row.wai_goal, row.wai_task, row.wai_bond) == (4.0, 4.5, 5.5)
    assert row.wai_total == pytest.approx(168 / 36)


def test_haq2_reverse_items() -> None:
    # All 1: 14 positive items score 1, the 5 reversed (4,8,11,16,19) score 7-1 = 6: 44.
    row = score(answers("haq2", [1] * 19), "haq2", metric="sum").iloc[0]
    assert row.haq2_total == 44
    mean = score(answers("haq2", [1] * 19), "haq2").iloc[0]
    assert mean.haq2_total == pytest.approx(44 / 19)


def test_srs_total_is_a_sum_of_visual_analogue_lines() -> None:
    df = pd.concat([answers("srs", [8.5, 9.0, 9.5, 10]), answers("srs", [9, 9, 9, 8.9])])
    scored = score(df, "srs")
    assert scored.srs_total.tolist() == pytest.approx([37.0, 35.9])
    assert scored.srs_relationship.tolist() == [8.5, 9.0]
    assert score(df, "srs", metric="mean").srs_total.tolist() == pytest.approx([9.25, 8.975])


def test_srs_missing_line_leaves_total_empty() -> None:
    row = score(answers("srs", [8, None, 9, 9]), "srs").iloc[0]
    assert math.isnan(row.srs_total)
    assert "total: 1 of 4 items missing (at most 0)" in row.srs_status


def test_psq_skip_logic() -> None:
    df = pd.DataFrame({"psq_1": [0, 1, 1], "psq_2": [np.nan, 3, np.nan], "psq_3": [np.nan, 4, 2]})
    with pytest.warns(UserWarning, match="unverified"):
        scored = score(df, "psq", errors="flag")
    assert scored.psq_rupture.tolist() == [0, 1, 1]
    assert scored.psq_status.tolist()[:2] == ["ok", "ok"]  # no rupture: follow-ups not asked
    assert "intensity: 1 of 1 items missing" in scored.psq_status.iloc[2]


def calpas_with_test_key() -> Instrument:
    """CALPAS with a made-up key (items 1-6, 7-12, 13-18, 19-24; item 2 reversed).

    The real key is licensed; this one only exercises the from-subscales total.
    """
    base = get_instrument("calpas").model_dump()
    subscales = [s["id"] for s in base["scores"] if s["kind"] == "subscale"]
    for item in base["items"]:
        item["scores"] = [subscales[(item["number"] - 1) // 6]]
        item["reverse"] = item["number"] == 2
    return Instrument.model_validate(base)


def test_calpas_total_is_the_mean_of_scale_means_once_a_key_is_installed() -> None:
    register(calpas_with_test_key())
    # Items 1-6 = 1 (item 2 reversed: 8-1 = 7) -> (5+7)/6 = 2; 7-12 = 2; 13-18 = 3; 19-24 = 4.
    values = [1.0] * 6 + [2.0] * 6 + [3.0] * 6 + [4.0] * 6
    with pytest.warns(UserWarning, match="unverified"):
        row = score(answers("calpas", values), "calpas").iloc[0]
        sums = score(answers("calpas", values), "calpas", metric="sum").iloc[0]
    assert row.calpas_patient_commitment == 2.0
    assert row.calpas_total == pytest.approx((2 + 2 + 3 + 4) / 4)
    assert sums.calpas_total == pytest.approx(12 + 12 + 18 + 24)


def test_calpas_without_a_key_explains_how_to_get_one() -> None:
    with pytest.raises(ValueError, match="install the manual's key"):
        score(answers("calpas", [4] * 24), "calpas")


def test_unscorable_form_is_refused() -> None:
    with pytest.raises(ValueError, match="No published item-to-subscale key"):
        score(answers("wai_sr", WAI_SR_ROW), "wai_sr", form="therapist")


def test_metadata_records_key_status() -> None:
    with pytest.warns(UserWarning):
        meta = score(answers("wai_s", [5] * 12), "wai_s").attrs["alliance"]
    assert meta["instrument"] == "wai_s"
    assert meta["form"] == "client"
    assert meta["key_status"]["goal"] == "unverified"
    assert meta["key_status"]["bond"] == "likely"
