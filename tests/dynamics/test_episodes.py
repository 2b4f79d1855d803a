"""Alert episodes, prospective detection and one status per patient (issue 10).

Each defect below was reproduced on the earlier main (commit a6c4d0d, before this change):
the flat series gave six ``stiles2004``/``strauss2006`` ruptures of 0.2 points by default;
``strauss2006`` turned session 4 into a rupture once six more sessions arrived; a fall to the
floor of the scale during an open drop raised nothing new; every drop raised two alerts.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from alliance.dynamics import (
    AlertSettings,
    Norms,
    alert_episodes,
    detect_ruptures,
    episodes_as_of,
    monitor,
    patient_status,
    workflow_status,
)
from alliance.simulate import simulate_scored

NORMS = Norms(sd=0.6, reliability=0.9, source="test norms", mean=3.9)
# bounds: research 1.96 x S_diff 0.2683 = 0.526; clinic alerts 2.326 x 0.2683 = 0.624
ALLOW = AlertSettings(allow_unverified=True)


def series(values: list[float], score: str = "wai_sr_total", patient: object = 1) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "patient_id": patient,
            "therapist_id": 9,
            "session": range(1, len(values) + 1),
            score: values,
        }
    )


def kinds(frame: pd.DataFrame) -> list[tuple[str, int, object, str]]:
    return [
        (
            r.kind,
            r.opened_session,
            None if pd.isna(r.closed_session) else r.closed_session,
            r.severity,
        )
        for r in frame.itertuples()
    ]


FLAT = [4.5, 4.6, 4.4, 4.5, 4.6, 4.4, 4.5, 4.6, 4.4, 4.5]


class TestMeasurementError:
    def test_flat_series_yields_nothing_from_every_default(self) -> None:
        flat = series(FLAT)
        assert detect_ruptures(flat, "wai_sr_total").empty  # no norms: nothing judged
        assert detect_ruptures(flat, "wai_sr_total", norms=NORMS).empty
        assert detect_ruptures(flat, "wai_sr_total", norms=NORMS, prospective=True).empty
        assert alert_episodes(flat, "wai_sr_total", norms=NORMS).empty
        assert alert_episodes(flat, "wai_sr_total").empty

    def test_named_sd_method_without_norms_runs_but_says_it_has_no_bound(self) -> None:
        out = detect_ruptures(series(FLAT), "wai_sr_total", "strauss2006")
        assert len(out) > 0  # research use, named explicitly
        assert any("no measurement-error bound" in n for n in out.attrs["notices"])

    def test_the_bound_is_reliable_change(self) -> None:
        # 4.0 -> 3.48 is a fall of 0.52 < 0.526 (1.96 x 0.6 x sqrt(2) x sqrt(0.1)); 3.47 is not
        below = series([4.0, 4.0, 4.0, 4.0, 3.48, 4.0])
        above = series([4.0, 4.0, 4.0, 4.0, 3.47, 4.0])
        for method in ("stiles2004", "strauss2006", "gumz2012", "rci_drop"):
            assert detect_ruptures(below, "wai_sr_total", method, norms=NORMS).empty, method
        assert set(
            detect_ruptures(above, "wai_sr_total", ["strauss2006", "rci_drop"], norms=NORMS)[
                "method"
            ]
        ) == {"strauss2006", "rci_drop"}


class TestGumz2012:
    def test_stricter_of_patient_and_sample_sd(self) -> None:
        # patient SD small, sample SD 0.6: a 0.55 fall passes the bound (0.526) but not 1 x 0.6
        t = series([4.0, 4.02, 3.98, 4.0, 3.45, 4.0])
        assert detect_ruptures(t, "wai_sr_total", "gumz2012", norms=NORMS).empty
        big = series([4.0, 4.02, 3.98, 4.0, 3.3, 4.0])
        out = detect_ruptures(big, "wai_sr_total", "gumz2012", norms=NORMS)
        assert out["rupture_session"].tolist() == [5]
        assert out["threshold"].iloc[0] == pytest.approx(0.6)  # 1 x sample SD wins
        two = detect_ruptures(big, "wai_sr_total", "gumz2012", norms=NORMS, gumz_sd=2.0)
        assert two.empty  # 0.7 < 2 x 0.6

    def test_needs_norms(self) -> None:
        with pytest.raises(ValueError, match="needs norms"):
            detect_ruptures(series(FLAT), "wai_sr_total", "gumz2012")


class TestProspective:
    def test_an_old_session_never_becomes_a_rupture_later(self) -> None:
        s = [4.0, 4.2, 3.8, 3.6, 3.7, 3.8]
        tail = [3.7, 3.75, 3.7, 3.72, 3.7, 3.71]
        early, late = series(s), series(s + tail)
        retro_early = detect_ruptures(early, "wai_sr_total", "strauss2006")
        retro_late = detect_ruptures(late, "wai_sr_total", "strauss2006")
        assert 4 not in retro_early["rupture_session"].tolist()
        assert 4 in retro_late["rupture_session"].tolist()  # retrospective: changed later
        assert retro_late.attrs["mode"] == "retrospective"
        pro_early = detect_ruptures(early, "wai_sr_total", "strauss2006", prospective=True)
        pro_late = detect_ruptures(late, "wai_sr_total", "strauss2006", prospective=True)
        assert pro_late.attrs["mode"] == "prospective"
        assert pro_early["rupture_session"].tolist() == [
            v for v in pro_late["rupture_session"].tolist() if v <= 6
        ]

    def test_replay_one_session_at_a_time_equals_the_full_run(self) -> None:
        clinic = simulate_scored(
            4, 6, seed=11, therapist_form=True, post_session_questions=True, max_sessions=14
        ).sessions
        clinic = clinic.rename(columns={"t_wai_sr_total": "wai_sr_therapist_total"})
        clinic["psq_rupture"] = clinic["psq_1"]
        clinic["psq_intensity"] = clinic["psq_2"]
        clinic["psq_resolution"] = clinic["psq_3"]
        cfg = AlertSettings(allow_unverified=True)
        full = alert_episodes(
            clinic,
            "wai_sr_total",
            therapist_score="wai_sr_therapist_total",
            norms=NORMS,
            settings=cfg,
        )
        assert len(full) > 5  # the replay checks something
        keys = ["patient_id", "kind", "opened_session", "state", "closed_session", "severity"]
        for last in range(1, int(clinic["session"].max()) + 1):
            seen = clinic[clinic["session"] <= last]
            now = alert_episodes(
                seen,
                "wai_sr_total",
                therapist_score="wai_sr_therapist_total",
                norms=NORMS,
                settings=cfg,
            )
            expected = episodes_as_of(full, last)
            got = now[keys].reset_index(drop=True)
            want = expected[keys].reset_index(drop=True)
            pd.testing.assert_frame_equal(got, want, check_dtype=False)

    def test_one_patient_alone_gives_its_rows_of_the_clinic_run(self) -> None:
        clinic = simulate_scored(3, 5, seed=4).sessions
        full = alert_episodes(clinic, "wai_sr_total", norms=NORMS)
        for patient in clinic["patient_id"].unique()[:5]:
            alone = alert_episodes(
                clinic[clinic["patient_id"] == patient], "wai_sr_total", norms=NORMS
            )
            mine = full[full["patient_id"] == patient].reset_index(drop=True)
            pd.testing.assert_frame_equal(alone.reset_index(drop=True), mine, check_dtype=False)


class TestRuptureEpisodes:
    def test_one_drop_is_one_alert_that_closes_when_repaired(self) -> None:
        out = alert_episodes(
            series([4.0, 4.1, 3.9, 4.0, 3.2, 3.3, 4.0, 4.1]), "wai_sr_total", norms=NORMS
        )
        assert kinds(out) == [("rupture", 5, 7, "warning")]
        assert out["close_reason"].iloc[0] == "repaired at session 7: back to 4.00"
        assert "0.62 that measurement error explains" in out["reason"].iloc[0]
        assert "rci_drop" in out["detail"].iloc[0] and "test norms" in out["detail"].iloc[0]

    def test_fall_to_the_floor_during_an_open_drop_escalates_it(self) -> None:
        out = alert_episodes(
            series([4.0, 4.1, 3.9, 4.0, 3.2, 1.0, 1.0]), "wai_sr_total", norms=NORMS
        )
        [row] = out.itertuples()
        assert (row.kind, row.opened_session, row.severity, row.escalated_session) == (
            "rupture",
            5,
            "high",
            6,
        )
        assert row.state == "open" and "bottom of the scale" in row.reason

    def test_size_sets_severity(self) -> None:
        small = alert_episodes(series([4.0, 4.0, 4.0, 4.0, 3.3, 4.0]), "wai_sr_total", norms=NORMS)
        large = alert_episodes(series([4.0, 4.0, 4.0, 4.0, 1.5, 4.0]), "wai_sr_total", norms=NORMS)
        assert small["severity"].tolist() == ["warning"]  # 0.7 fall
        assert large["severity"].tolist() == ["high"]  # 2.5 >= 2 x 0.624
        assert pd.isna(large["escalated_session"].iloc[0])

    def test_not_repaired_in_time_escalates_at_the_session_it_becomes_known(self) -> None:
        out = alert_episodes(
            series([4.0, 4.0, 4.0, 4.0, 3.3, 3.3, 3.35, 3.3, 3.3]), "wai_sr_total", norms=NORMS
        )
        [row] = out.itertuples()
        assert (row.severity, row.escalated_session, row.state) == ("high", 8, "open")
        assert "Not repaired after 3 sessions." in row.reason

    def test_acknowledged_episode_reopens_only_when_it_escalates(self) -> None:
        assert workflow_status("resolved", "warning", "high") == "open"
        assert workflow_status("acknowledged", "high", "high") == "acknowledged"

    def test_no_norms_no_drop_judgement(self) -> None:
        out = alert_episodes(series([4.0, 4.0, 4.0, 4.0, 2.0]), "wai_sr_total")
        assert out.empty
        assert any("measurement error is unknown" in n for n in out.attrs["notices"])


class TestConditionEpisodes:
    def test_below_cutoff_is_one_episode_that_escalates_with_persistence(self) -> None:
        out = alert_episodes(
            series([38, 34, 33, 32, 37, 35], "srs_total"), "srs_total", instrument="srs"
        )
        assert kinds(out) == [("below_cutoff", 2, 5, "high"), ("below_cutoff", 6, None, "warning")]
        assert out["escalated_session"].iloc[0] == 4
        assert "no longer below 36" in out["close_reason"].iloc[0]
        assert "low_early_alliance" not in set(out["kind"])  # the cutoff covers it

    def test_low_early_alliance_from_the_norms_reference(self) -> None:
        # threshold 3.9 - 1.2816 x 0.6 = 3.13; early mean 2.9
        out = alert_episodes(series([2.8, 3.0, 2.9, 3.0, 3.5, 3.6]), "wai_sr_total", norms=NORMS)
        assert kinds(out) == [("low_early_alliance", 3, 5, "warning")]
        assert "3.13" in out["reason"].iloc[0]

    def test_rating_discrepancy_is_one_episode_not_one_per_session(self) -> None:
        t = series([3.6, 3.7, 3.6, 3.6, 3.6, 3.7])
        t["wai_sr_therapist_total"] = [4.4, 4.5, np.nan, 4.3, 3.8, 3.8]
        quiet = alert_episodes(
            t, "wai_sr_total", therapist_score="wai_sr_therapist_total", norms=NORMS
        )
        assert quiet.empty  # therapist form has no published key: unverified, off
        assert any("no published key" in n for n in quiet.attrs["notices"])
        out = alert_episodes(
            t, "wai_sr_total", therapist_score="wai_sr_therapist_total", norms=NORMS, settings=ALLOW
        )
        assert kinds(out) == [("rating_discrepancy", 1, 5, "warning")]
        assert out["key_status"].iloc[0] == "unverified"
        assert "agree again at session 5" in out["close_reason"].iloc[0]

    def test_ceiling_break_is_the_first_score_below_the_top(self) -> None:
        t = series([5.0, 5.0, 5.0, 4.75, 5.0])
        for i in range(1, 13):
            t[f"wai_sr_{i}"] = [5, 5, 5, 5 if i > 3 else 4, 5]
        out = alert_episodes(t, "wai_sr_total", norms=NORMS)
        assert kinds(out) == [("ceiling_break", 4, 5, "warning")]
        assert "first rating below the maximum" in out["reason"].iloc[0]
        assert "back at the top" in out["close_reason"].iloc[0]

    def test_straight_lining_is_named_in_the_reason(self) -> None:
        t = series([4.0, 4.0, 4.0, 4.0, 3.0, 4.0])
        for i in range(1, 13):
            t[f"wai_sr_{i}"] = [4.0, 4.0, 4.0, 4.0, 3.0, 4.0]
        out = alert_episodes(t, "wai_sr_total", norms=NORMS)
        assert "All 12 answers that session were the same" in out["reason"].iloc[0]


class TestSelfReport:
    def psq(
        self, rupture: list[float], intensity: list[float], resolution: list[float]
    ) -> pd.DataFrame:
        t = series([4.0] * len(rupture))
        t["psq_rupture"], t["psq_intensity"], t["psq_resolution"] = rupture, intensity, resolution
        return t

    def test_resolved_in_session_is_info_and_closed_at_once(self) -> None:
        t = self.psq([0, 1, 0, 0], [np.nan, 2, np.nan, np.nan], [np.nan, 5, np.nan, np.nan])
        out = alert_episodes(t, "wai_sr_total", norms=NORMS, settings=ALLOW)
        assert kinds(out) == [("self_reported_rupture", 2, 2, "info")]

    def test_repeated_report_escalates_one_episode(self) -> None:
        t = self.psq([1, 1, 0, 0], [2, 3, np.nan, np.nan], [1, 2, np.nan, np.nan])
        out = alert_episodes(t, "wai_sr_total", norms=NORMS, settings=ALLOW)
        assert kinds(out) == [("self_reported_rupture", 1, 3, "high")]
        assert out["escalated_session"].iloc[0] == 2

    def test_off_unless_unverified_allowed(self) -> None:
        t = self.psq([1, 0], [3, np.nan], [1, np.nan])
        assert alert_episodes(t, "wai_sr_total", norms=NORMS).empty


class TestStatus:
    def test_one_status_per_patient(self) -> None:
        t = pd.concat(
            [
                series([4.0, 4.0, 4.0, 4.0, 1.5], patient="a"),
                series([4.0, 4.0, 4.0, 4.0, 3.3], patient="b"),
                series([4.0, 4.1, 4.0, 4.0, 4.1], patient="c"),
            ]
        )
        m = monitor(t, norms={"wai_sr": NORMS})
        status = dict(zip(m.status["patient_id"], m.status["status"], strict=True))
        assert status == {"a": "act", "b": "watch", "c": "steady"}
        assert set(m.ruptures["method"]) == {"rci_drop"}

    def test_resolved_by_the_clinician_no_longer_counts(self) -> None:
        ep = alert_episodes(series([4.0, 4.0, 4.0, 4.0, 1.5]), "wai_sr_total", norms=NORMS)
        assert patient_status(ep)["status"].tolist() == ["act"]
        assert patient_status(ep.assign(workflow="resolved"))["status"].tolist() == ["steady"]

    def test_simulated_clinic_has_few_open_alerts_per_patient(self) -> None:
        clinic = simulate_scored(5, 8, seed=3).sessions
        m = monitor(clinic, norms={"wai_sr": NORMS})
        open_per_patient = (m.episodes["state"] == "open").groupby(m.episodes["patient_id"]).sum()
        assert open_per_patient.max() <= 3
        assert len(m.status) == clinic["patient_id"].nunique()


class TestInstrumentSignals:
    """A clinic's own post-session question (docs/examples/identity_rupture.toml)."""

    def test_signal_answer_opens_one_episode_with_the_files_guidance(self) -> None:
        from pathlib import Path

        from alliance.instruments import parse_instrument, register, unregister

        path = Path(__file__).parents[2] / "docs" / "examples" / "identity_rupture.toml"
        inst = parse_instrument(path.read_text(encoding="utf-8"), str(path))
        register(inst)
        try:
            t = series([4.0, 4.0, 4.0, 4.0, 4.0])
            t["identity_rupture_1"] = [0, 1, 1, 0, np.nan]
            assert alert_episodes(t, "wai_sr_total", norms=NORMS).empty  # unverified: off
            out = alert_episodes(t, "wai_sr_total", norms=NORMS, settings=ALLOW)
            [row] = out.itertuples()
            signal = inst.signals[0]
            assert (row.kind, row.opened_session, row.closed_session) == (
                "signal:identity_rupture:identity_rupture",
                2,
                4,
            )
            assert row.title == signal.title and row.guidance == signal.guidance
            assert row.sources and row.key_status == "unverified"
        finally:
            unregister(inst.id)


def assert_replay(table: pd.DataFrame, score: str, **kwargs: object) -> int:
    """Episodes of the data up to each session equal the full run's as of that session."""
    full = alert_episodes(table, score, **kwargs)  # type: ignore[arg-type]
    keys = ["patient_id", "kind", "opened_session", "state", "closed_session", "severity"]
    for last in range(1, int(table["session"].max()) + 1):
        now = alert_episodes(table[table["session"] <= last], score, **kwargs)  # type: ignore[arg-type]
        pd.testing.assert_frame_equal(
            now[keys].reset_index(drop=True),
            episodes_as_of(full, last)[keys].reset_index(drop=True),
            check_dtype=False,
        )
    return len(full)


class TestReplayEveryKind:
    """Each rule judged one session at a time gives the full history's decisions."""

    def test_cutoff_episodes(self) -> None:
        t = pd.concat(
            [
                series([38, 34, 33, 32, 37, 35, 30, 39], "srs_total", patient="a"),
                series([30, 31, 38, 39, 35, 36, 34, 33], "srs_total", patient="b"),
            ]
        )
        assert assert_replay(t, "srs_total", instrument="srs") >= 4

    def test_ceiling_and_rupture_episodes(self) -> None:
        t = pd.concat(
            [
                series([5.0, 5.0, 5.0, 4.75, 5.0, 5.0, 4.5, 4.5], patient="a"),
                series([4.0, 4.1, 3.9, 4.0, 3.2, 1.0, 1.0, 4.0], patient="b"),
                series([4.0, 4.0, 4.0, 4.0, 3.3, 3.3, 3.35, 3.3], patient="c"),
            ]
        )
        assert assert_replay(t, "wai_sr_total", norms=NORMS) == 3  # ceiling, floor, unrepaired

    def test_signal_episodes(self) -> None:
        from pathlib import Path

        from alliance.instruments import parse_instrument, register, unregister

        path = Path(__file__).parents[2] / "docs" / "examples" / "identity_rupture.toml"
        inst = parse_instrument(path.read_text(encoding="utf-8"), str(path))
        register(inst)
        try:
            t = series([4.0] * 8)
            t["identity_rupture_1"] = [0, 1, 1, 0, np.nan, 1, 0, 1]
            assert assert_replay(t, "wai_sr_total", norms=NORMS, settings=ALLOW) == 3
        finally:
            unregister(inst.id)

    @pytest.mark.parametrize("method", ["stiles2004", "strauss2006", "gumz2012", "rci_drop"])
    def test_prospective_rupture_decisions_never_change(self, method: str) -> None:
        clinic = simulate_scored(3, 5, seed=8, max_sessions=14).sessions
        full = detect_ruptures(clinic, "wai_sr_total", method, norms=NORMS, prospective=True)
        assert len(full) > 0
        for last in range(1, int(clinic["session"].max()) + 1):
            now = detect_ruptures(
                clinic[clinic["session"] <= last],
                "wai_sr_total",
                method,
                norms=NORMS,
                prospective=True,
            )
            decided = full[full["rupture_session"] <= last]
            assert (
                now[["patient_id", "rupture_session"]].values.tolist()
                == decided[["patient_id", "rupture_session"]].values.tolist()
            )
