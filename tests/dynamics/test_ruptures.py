"""Rupture detection on hand-built series whose events are worked out by hand.

Patient SDs are sample SDs (ddof = 1) of all scored sessions; thresholds are 2 SD
(stiles2004) and 1 SD (strauss2006); see alliance.dynamics.ruptures for the conventions.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pandas as pd
import pytest

from alliance.dynamics import DynamicsInputError, Norms, detect_ruptures


def series(
    values: list[float], patient: str = "a", sessions: list[int] | None = None
) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "patient_id": patient,
            "session": sessions or list(range(1, len(values) + 1)),
            "s": values,
        }
    )


def events(table: pd.DataFrame, method: str, **kw: object) -> list[tuple[object, ...]]:
    out = detect_ruptures(table, "s", method, **kw)  # type: ignore[arg-type]
    return [
        (
            r.rupture_session,
            r.repaired,
            None if pd.isna(r.repair_session) else int(r.repair_session),
        )
        for r in out.itertuples()
    ]


# S_diff = 0.5 * sqrt(2) * sqrt(1 - 0.8) = 0.3162; critical drop at z 1.96 = 0.6198
NORMS = Norms(sd=0.5, reliability=0.8, source="test")


class TestFlat:
    def test_no_method_reports_a_flat_series(self) -> None:
        flat = series([4.0] * 10)
        for method in ("stiles2004", "strauss2006"):
            assert events(flat, method) == []
        assert events(flat, "rci_drop", norms=NORMS) == []


class TestVShape:
    # [4,4,4,4,2,4,4,4]: mean 3.75, SS = 7 * 0.0625 + 3.0625 = 3.5, SD = sqrt(0.5) = 0.7071
    V: ClassVar[list[float]] = [4.0, 4.0, 4.0, 4.0, 2.0, 4.0, 4.0, 4.0]

    def test_stiles_reports_the_dip_and_its_repair(self) -> None:
        # threshold 2 x 0.7071 = 1.414 <= drop 2.0; repair needs 2.0 + 1.414 by session 8
        assert events(series(self.V), "stiles2004") == [(5, "yes", 6)]

    def test_strauss_reports_the_dip_and_its_repair(self) -> None:
        # threshold 0.7071; repair = back to the pre-rupture 4.0 at session 6
        out = detect_ruptures(series(self.V), "s", "strauss2006")
        assert out["threshold"].iloc[0] == pytest.approx(np.sqrt(0.5))
        assert out["drop"].iloc[0] == pytest.approx(2.0)
        assert events(series(self.V), "strauss2006") == [(5, "yes", 6)]

    def test_rci_drop_against_running_baseline(self) -> None:
        # baseline = mean(4,4,4,4) = 4, drop 2.0 >= 0.6198; repaired when > 4 - 0.6198
        assert events(series(self.V), "rci_drop", norms=NORMS) == [(5, "yes", 6)]

    def test_unrepaired_when_window_passes(self) -> None:
        # [4,4,4,4,2,2,2,2]: drop at 5, window 5..8 observed without a return to 4
        low = series([4.0, 4.0, 4.0, 4.0, 2.0, 2.0, 2.0, 2.0])
        assert events(low, "strauss2006") == [(5, "no", None)]
        assert events(low, "rci_drop", norms=NORMS) == [(5, "no", None)]

    def test_late_repair_outside_the_window_does_not_count(self) -> None:
        late = series([4.0, 4.0, 4.0, 2.0, 2.0, 2.0, 2.0, 4.0])
        assert events(late, "strauss2006", repair_within=3) == [(4, "no", None)]
        assert events(late, "strauss2006", repair_within=4) == [(4, "yes", 8)]


class TestSlowDecline:
    # 5.0, 4.8, ..., 3.6: every step 0.2 < SD 0.2 * sqrt(6) = 0.49
    DECLINE: ClassVar[list[float]] = [5.0 - 0.2 * k for k in range(8)]

    def test_session_level_criteria_miss_a_slow_decline(self) -> None:
        assert events(series(self.DECLINE), "stiles2004") == []
        assert events(series(self.DECLINE), "strauss2006") == []

    def test_rci_drop_catches_it_once(self) -> None:
        # baseline before session k is 5 - 0.1 (k - 2); the gap is 0.1 k, first >= 0.6198 at k = 7;
        # session 8 (3.6) is not above 4.5 - 0.6198 = 3.88 and the data end before session 10
        assert events(series(self.DECLINE), "rci_drop", norms=NORMS) == [(7, "not yet", None)]


class TestNoisy:
    NOISY: ClassVar[list[float]] = [4.0, 4.1, 3.9, 4.05, 3.95, 4.1, 3.9, 4.0]

    def test_reliable_change_ignores_measurement_noise(self) -> None:
        # the largest fall from the running baseline is about 0.13 < 0.6198
        assert events(series(self.NOISY), "rci_drop", norms=NORMS) == []

    def test_intraindividual_sd_criteria_flag_noise(self) -> None:
        # SD = 0.0802, so the 0.2 falls at sessions 3 and 7 exceed even 2 SD (0.160): the
        # weakness of patient-SD thresholds in stable courses noted by Gumz et al. (2012)
        assert [e[0] for e in events(series(self.NOISY), "stiles2004")] == [3, 7]


class TestBoundaries:
    def test_first_session_is_never_a_rupture(self) -> None:
        assert events(series([2.0, 4.0, 4.0, 4.0, 4.0]), "strauss2006") == []

    def test_last_session_rupture_is_not_yet_repaired(self) -> None:
        assert events(series([4.0, 4.0, 4.0, 4.0, 2.0]), "strauss2006") == [(5, "not yet", None)]

    def test_missing_session_compares_with_previous_scored_one(self) -> None:
        gap = series([4.0, 4.0, 4.0, 2.0, 4.0, 4.0], sessions=[1, 2, 3, 5, 6, 7])
        assert events(gap, "strauss2006") == [(5, "yes", 6)]
        with_nan = series([4.0, 4.0, 4.0, np.nan, 2.0, 4.0, 4.0])
        assert events(with_nan, "strauss2006") == [(5, "yes", 6)]

    def test_repair_window_counts_session_numbers_not_rows(self) -> None:
        # rupture at 2, next scored session is 6: outside a 3-session window
        gap = series([4.0, 2.0, 4.0, 4.0], sessions=[1, 2, 6, 7])
        assert events(gap, "strauss2006") == [(2, "no", None)]

    def test_one_and_two_session_patients_have_no_events(self) -> None:
        table = pd.concat([series([4.0], "one"), series([4.0, 1.0], "two")])
        assert detect_ruptures(table, "s", ["stiles2004", "strauss2006"]).empty

    def test_empty_table_gives_empty_result_with_columns(self) -> None:
        empty = series([]).astype({"s": float, "session": int})
        out = detect_ruptures(empty, "s", norms=NORMS)
        assert out.empty and {"patient_id", "method", "repaired"} <= set(out.columns)

    def test_tie_with_threshold_counts(self) -> None:
        # [4,4,4,3]: SD = 0.5 exactly, so 2 SD = 1.0 = the drop
        assert events(series([4.0, 4.0, 4.0, 3.0]), "stiles2004") == [(4, "not yet", None)]

    def test_tie_with_reliable_change_counts(self) -> None:
        # S_diff = 0.5 * sqrt(2) * sqrt(0.5) = 0.5; with z = 1 a drop of exactly 0.5 counts
        half = Norms(sd=0.5, reliability=0.5, source="test")
        assert events(series([4.0, 4.0, 3.5]), "rci_drop", norms=half, z=1.0) != []
        assert events(series([4.0, 4.0, 3.6]), "rci_drop", norms=half, z=1.0) == []

    def test_rows_in_any_order_give_the_same_events(self) -> None:
        table = pd.concat(
            [series(TestVShape.V, "a"), series(TestSlowDecline.DECLINE, "b"), series([4.0], "c")]
        )
        shuffled = table.sample(frac=1.0, random_state=3)
        a = detect_ruptures(table, "s", norms=NORMS)
        b = detect_ruptures(shuffled, "s", norms=NORMS)
        pd.testing.assert_frame_equal(a, b)
        assert sorted(set(a["patient_id"])) == ["a", "b"]

    def test_baseline_window_limits_the_running_mean(self) -> None:
        # with a 1-session baseline the decline is a 0.2 step each time: never reliable
        assert (
            events(series(TestSlowDecline.DECLINE), "rci_drop", norms=NORMS, baseline_window=1)
            == []
        )


class TestSelfReport:
    def test_resolution_in_session_later_session_or_open(self) -> None:
        table = pd.DataFrame(
            {
                "patient_id": "a",
                "session": [1, 2, 3, 4, 5, 6],
                "psq_1": [0, 1, 0, 1, 0, 1],
                "psq_2": [np.nan, 4, np.nan, 3, np.nan, 5],
                "psq_3": [np.nan, 5, np.nan, 2, np.nan, 1],
            }
        )
        out = detect_ruptures(table, method="self_report")
        assert list(out["rupture_session"]) == [2, 4, 6]
        assert list(out["repaired"]) == ["yes", "yes", "not yet"]
        assert list(out["repair_session"].astype("float").fillna(-1)) == [2, 5, -1]
        assert list(out["intensity"]) == [4, 3, 5]


class TestErrors:
    def test_unknown_method(self) -> None:
        with pytest.raises(DynamicsInputError, match="unknown method"):
            detect_ruptures(series([4.0, 3.0]), "s", "vshape")

    def test_rci_without_norms(self) -> None:
        with pytest.raises(DynamicsInputError, match="needs norms"):
            detect_ruptures(series([4.0, 3.0]), "s", "rci_drop")

    def test_duplicate_session(self) -> None:
        with pytest.raises(DynamicsInputError, match="duplicate session"):
            detect_ruptures(series([4.0, 3.0], sessions=[1, 1]), "s", "strauss2006")

    def test_missing_column(self) -> None:
        with pytest.raises(DynamicsInputError, match="missing column"):
            detect_ruptures(series([4.0]), "nope", "strauss2006")

    def test_non_numeric_score(self) -> None:
        bad = series([4.0, 3.0]).astype({"s": object})
        bad.loc[1, "s"] = "high"
        with pytest.raises(DynamicsInputError, match="numeric"):
            detect_ruptures(bad, "s", "strauss2006")

    def test_all_selects_available_methods(self) -> None:
        # without norms the measurement error is unknown: no score-based method by default
        out = detect_ruptures(series(TestVShape.V), "s")
        assert out.empty and out.attrs["notices"]
        with_norms = detect_ruptures(series(TestVShape.V), "s", norms=Norms(0.5, 0.8, "t"))
        assert sorted(set(with_norms["method"])) == [
            "gumz2012",
            "rci_drop",
            "stiles2004",
            "strauss2006",
        ]


def test_any_partition_by_patient_gives_the_same_events() -> None:
    # DESIGN.md: batch kernels run on whole patients, so partitions must not matter
    from alliance.simulate import simulate_scored

    sessions = simulate_scored(6, 8, seed=21, post_session_questions=True).sessions
    whole = detect_ruptures(sessions, "wai_sr_total", norms=NORMS)
    patients = sessions["patient_id"].unique()
    parts = [
        detect_ruptures(sessions[sessions["patient_id"].isin(chunk)], "wai_sr_total", norms=NORMS)
        for chunk in np.array_split(patients, 3)
    ]
    joined = pd.concat(parts, ignore_index=True)
    assert len(whole) > 0
    pd.testing.assert_frame_equal(
        whole.astype({"method": str, "repaired": str}),
        joined.astype({"method": str, "repaired": str}),
    )
