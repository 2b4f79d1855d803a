"""Expected trajectories (issue 11): calibrated on held-out simulated clinics, and each
session judged only with the sessions before it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from alliance.research.multilevel import FormulaError
from alliance.research.multilevel.expected import (
    MIN_PATIENTS,
    MIN_SESSIONS,
    expected_band,
    expected_next,
    fit_clinic_expected,
    fit_expected,
)
from alliance.scoring import score
from alliance.simulate import simulate_clinic


def _clinic(seed: int) -> pd.DataFrame:
    return score(simulate_clinic(20, 10, seed=seed).sessions, "wai_sr")


@pytest.fixture(scope="module")
def model():  # type: ignore[no-untyped-def]
    return fit_expected(
        _clinic(1), "wai_sr_total", patient="patient_id", session="session",
        therapist="therapist_id",
    )  # fmt: skip


@pytest.mark.parametrize("seed", [2, 3, 4])
def test_ten_percent_of_held_out_sessions_fall_below_the_ten_percent_band(model, seed) -> None:  # type: ignore[no-untyped-def]
    band = expected_band(model, _clinic(seed))
    later = band[band["session"] > 1]  # sessions with a history to be judged by
    assert len(later) > 1000
    assert abs(later["below"].mean() - 0.10) <= 0.02  # the 10% within 2 points


def test_a_session_is_judged_only_by_the_sessions_before_it(model) -> None:  # type: ignore[no-untyped-def]
    """Replay: the band of session t is the same whether the table ends at t or goes on,
    and whatever the later sessions say."""
    table = _clinic(5)
    full = expected_band(model, table).set_index(["patient_id", "session"])
    for cut in (3, 6):
        changed = table.copy()
        day = expected_band(model, table[table["session"] <= cut]).set_index(
            ["patient_id", "session"]
        )
        pd.testing.assert_frame_equal(day, full.loc[day.index], check_exact=True)
        later = changed["session"] > cut
        changed.loc[later, "wai_sr_total"] = 1.0  # the future turns bad
        replay = expected_band(model, changed).set_index(["patient_id", "session"])
        pd.testing.assert_series_equal(
            replay.loc[day.index, "lower"], day["lower"], check_exact=True
        )


def test_the_band_learns_from_the_patients_own_sessions(model) -> None:  # type: ignore[no-untyped-def]
    """Two patients, one high and one low early on: their expected session 5 differs in
    the direction of their history, and the spread narrows as sessions accrue."""
    rows = [("hi", s, 4.8) for s in range(1, 5)] + [("lo", s, 3.0) for s in range(1, 5)]
    t = pd.DataFrame([*rows, ("hi", 5, 4.0), ("lo", 5, 4.0)],
                     columns=["patient_id", "session", "wai_sr_total"])  # fmt: skip
    band = expected_band(model, t).set_index(["patient_id", "session"])
    assert band.loc[("hi", 5), "expected"] > band.loc[("lo", 5), "expected"]
    sd = band.loc["hi", "sd"].to_numpy()
    assert np.all(np.diff(sd) < 0)
    assert band.loc[("lo", 5), "below"] == bool(band.loc[("lo", 5), "lower"] > 4.0)


def test_bad_columns_and_sessions_name_the_rule() -> None:
    t = pd.DataFrame({"p": ["a", "a"], "s": [0, 1], "y": [3.0, 4.0]})
    with pytest.raises(FormulaError, match="numbers sessions from 1"):
        fit_expected(t, "y", patient="p", session="s")
    with pytest.raises(FormulaError, match="not in the table"):
        fit_expected(t, "nope", patient="p", session="s")


def test_the_next_sessions_band_is_the_band_that_session_gets_once_rated(model) -> None:  # type: ignore[no-untyped-def]
    """expected_next on the sessions before t gives session t's band of expected_band."""
    table = _clinic(6)
    full = expected_band(model, table).set_index(["patient_id", "session"])
    before = table[table["session"] < 5]
    upcoming = expected_next(model, before, at=dict.fromkeys(before["patient_id"].unique(), 5))
    rated = upcoming.set_index(["patient_id", "session"]).index.intersection(full.index)
    assert len(rated) > 10
    for column in ("expected", "sd", "lower", "upper"):
        got = upcoming.set_index(["patient_id", "session"]).loc[rated, column]
        np.testing.assert_allclose(got, full.loc[rated, column], rtol=1e-12)
    with pytest.raises(ValueError, match="not after the scored ones"):
        expected_next(model, before, at=dict.fromkeys(before["patient_id"].unique(), 2))


def test_the_clinic_fits_only_when_its_data_can_carry_the_model() -> None:
    table = _clinic(7)
    patients = sorted(table["patient_id"].unique())
    few = table[table["patient_id"].isin(patients[: MIN_PATIENTS - 1])]
    assert fit_clinic_expected(few, "wai_sr_total") is None
    short = table[table["session"] < MIN_SESSIONS]  # every patient, too few sessions each
    assert fit_clinic_expected(short, "wai_sr_total") is None
    fitted = fit_clinic_expected(table, "wai_sr_total")
    assert fitted is not None and fitted.therapist == "therapist_id"
    assert fitted.n_patients == len(patients)
