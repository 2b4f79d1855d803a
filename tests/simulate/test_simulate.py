"""The clinic simulator: reproducibility, scale realism and ground truth consistency."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from alliance.instruments import get_instrument
from alliance.simulate import simulate_clinic, simulate_scored


@pytest.fixture(scope="module")
def clinic():  # type: ignore[no-untyped-def]
    return simulate_scored(12, 10, seed=11, therapist_form=True, post_session_questions=True)


def test_same_seed_same_clinic_other_seed_differs() -> None:
    a = simulate_clinic(3, 4, seed=5)
    b = simulate_clinic(3, 4, seed=5)
    c = simulate_clinic(3, 4, seed=6)
    pd.testing.assert_frame_equal(a.sessions, b.sessions)
    pd.testing.assert_frame_equal(a.ruptures, b.ruptures)
    assert not a.sessions.equals(c.sessions)


def test_long_table_shape(clinic) -> None:  # type: ignore[no-untyped-def]
    s = clinic.sessions
    assert list(s.columns[:4]) == ["patient_id", "therapist_id", "session", "date"]
    assert s["patient_id"].nunique() == 120 and s["therapist_id"].nunique() == 12
    assert not s.duplicated(["patient_id", "session"]).any()
    # each patient belongs to one therapist and starts at session 1 with consecutive sessions
    assert (s.groupby("patient_id")["therapist_id"].nunique() == 1).all()
    per = s.groupby("patient_id")["session"].agg(["min", "max", "count"])
    assert (per["min"] == 1).all() and (per["max"] == per["count"]).all()
    assert per["max"].between(1, 20).all()
    # weekly sessions: dates increase within a patient
    assert (s.groupby("patient_id")["date"].diff().dropna() > pd.Timedelta(0)).all()


def test_items_on_the_scale_with_a_ceiling(clinic) -> None:  # type: ignore[no-untyped-def]
    items = clinic.sessions[list(get_instrument("wai_sr").item_columns)]
    values = items.stack().dropna()
    assert set(np.unique(values)) <= {1.0, 2.0, 3.0, 4.0, 5.0}
    assert (values == 5).mean() > 0.1  # ceiling: a good share of "always"
    assert 3.5 < clinic.sessions["wai_sr_total"].mean() < 4.4
    missing_rows = items.isna().all(axis=1).mean()
    assert 0.0 < missing_rows < 0.1


def test_visual_analogue_instrument() -> None:
    c = simulate_clinic(3, 5, instrument="srs", seed=1)
    values = c.sessions[["srs_1", "srs_2", "srs_3", "srs_4"]].stack().dropna()
    assert values.between(0, 10).all()
    assert np.allclose(values * 10, np.round(values * 10))
    assert c.truth["total"].between(0, 40).all()  # SRS total is a 0-40 sum


def test_truth_matches_injected_ruptures(clinic) -> None:  # type: ignore[no-untyped-def]
    truth = clinic.truth.set_index(["patient_id", "session"])
    r = clinic.ruptures
    assert len(r) > 0
    assert truth.loc[list(zip(r["patient_id"], r["session"], strict=True)), "in_rupture"].all()
    repaired = r[r["repaired"]]
    after = list(zip(repaired["patient_id"], repaired["repair_session"].astype(int), strict=True))
    assert not truth.loc[after, "in_rupture"].any()
    assert (r.loc[r["repaired"], "repair_session"] > r.loc[r["repaired"], "session"]).all()
    assert r.loc[~r["repaired"], "repair_session"].isna().all()
    # the session before an injected rupture is never itself in rupture
    before = list(zip(r["patient_id"], r["session"] - 1, strict=True))
    assert not truth.loc[before, "in_rupture"].any()


def test_no_ruptures_when_rate_is_zero() -> None:
    c = simulate_clinic(4, 5, seed=2, rupture_rate=0.0)
    assert c.ruptures.empty and not c.truth["in_rupture"].any()


def test_therapist_and_post_session_columns(clinic) -> None:  # type: ignore[no-untyped-def]
    s = clinic.sessions
    assert {"t_wai_sr_1", "t_wai_sr_total", "psq_1", "psq_2", "psq_3", "outcome"} <= set(s.columns)
    # therapists rate a little higher on average (default bias)
    assert (s["t_wai_sr_total"] - s["wai_sr_total"]).mean() > 0
    # intensity and resolution are asked only after a reported rupture
    assert s.loc[s["psq_1"] == 0, ["psq_2", "psq_3"]].isna().all().all()
    onset = s.merge(clinic.ruptures[["patient_id", "session"]], on=["patient_id", "session"])
    assert onset["psq_1"].mean() > s["psq_1"].mean()


def test_therapist_effect_grows_with_icc() -> None:
    def between_therapist_var(icc: float) -> float:
        c = simulate_clinic(40, 6, seed=3, therapist_icc=icc, rupture_rate=0.0)
        first = c.truth[c.truth["session"] == 1]
        return float(first.groupby("therapist_id")["total"].mean().var())

    assert between_therapist_var(0.5) > 3 * between_therapist_var(0.0)


def test_alliance_relates_to_outcome() -> None:
    c = simulate_clinic(40, 10, seed=4)
    t = c.truth.assign(outcome=c.sessions["outcome"])
    per = t.groupby("patient_id").agg(alliance=("total", "mean"), last=("outcome", "last"))
    assert per["alliance"].corr(per["last"]) < -0.1  # more alliance, fewer symptoms


@pytest.mark.parametrize("instrument", ["wai", "wai_s", "haq2", "calpas", "srs"])
def test_every_alliance_instrument_can_be_simulated(instrument: str) -> None:
    inst = get_instrument(instrument)
    c = simulate_clinic(2, 3, instrument=instrument, seed=1)
    items = c.sessions[list(inst.item_columns)].stack().dropna()
    assert items.between(inst.scale.min, inst.scale.max).all()
    subscales = [
        col
        for col in c.truth.columns
        if col
        not in ("patient_id", "therapist_id", "session", "total", "in_rupture", "rupture_offset")
    ]
    keyed = {s for item in inst.items for s in item.scores}
    assert set(subscales) <= keyed  # facets only for subscales that have items


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError, match="no therapist form"):
        simulate_clinic(1, 1, instrument="srs", therapist_form=True)
    with pytest.raises(ValueError, match="post_session_questions"):
        simulate_clinic(1, 1, instrument="psq")
    with pytest.raises(ValueError, match="min_sessions"):
        simulate_clinic(1, 1, min_sessions=5, max_sessions=3)
    with pytest.raises(ValueError, match="therapist_icc"):
        simulate_clinic(1, 1, therapist_icc=1.0)
