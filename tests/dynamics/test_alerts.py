"""Alert episodes: reasons with numbers, guidance with sources, unverified keys kept quiet."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from alliance.dynamics import AlertSettings, Norms, alert_episodes, load_guidance


def srs_table() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "patient_id": ["a"] * 4 + ["b"] * 4,
            "therapist_id": ["t1"] * 4 + ["t2"] * 4,
            "session": [1, 2, 3, 4] * 2,
            "srs_total": [30.0, 33.0, 38.0, 39.0, 38.0, 39.0, 39.5, 39.0],
        }
    )


def test_srs_cutoff_is_one_episode_early_in_treatment() -> None:
    out = alert_episodes(srs_table(), "srs_total", instrument="srs")
    [row] = out.itertuples()
    assert (row.patient_id, row.kind, row.opened_session, row.closed_session) == (
        "a",
        "below_cutoff",
        1,
        3,
    )
    assert row.threshold == 36 and row.value == 33.0  # the latest value while open
    assert "early in treatment" in row.reason and "below the cutoff 36" in row.reason
    assert row.therapist_id == "t1" and row.key_status == "verified"


def test_every_episode_carries_guidance_and_sources() -> None:
    out = alert_episodes(srs_table(), "srs_total", instrument="srs")
    assert out["guidance"].str.len().min() > 50
    assert out["sources"].str.contains("doi|Journal", regex=True).all()
    guide = load_guidance()
    for entry in guide["kinds"].values():
        assert entry["sources"] and set(entry["sources"]) <= set(guide["sources"])


def test_unverified_key_keeps_alerts_off_unless_allowed() -> None:
    t = pd.DataFrame(
        {
            "patient_id": ["a"] * 6,
            "session": range(1, 7),
            "wai_total": [6.0, 6.0, 6.0, 6.0, 2.0, 2.0],
        }
    )
    norms = Norms(sd=0.8, reliability=0.9, source="test")
    quiet = alert_episodes(t, "wai_total", norms=norms)
    assert quiet.empty
    assert any("unverified" in n for n in quiet.attrs["notices"])
    loud = alert_episodes(
        t, "wai_total", norms=norms, settings=AlertSettings(allow_unverified=True)
    )
    assert set(loud["kind"]) == {"rupture"}
    assert (loud["key_status"] == "unverified").all()


def test_reliable_drop_numbers() -> None:
    t = pd.DataFrame(
        {
            "patient_id": ["a"] * 8,
            "session": range(1, 9),
            "wai_sr_total": [4.0, 4.0, 4.0, 4.0, 3.0, 3.0, 3.0, 3.0],
        }
    )
    norms = Norms(sd=0.5, reliability=0.8, source="test")  # critical drop 0.7357
    [row] = alert_episodes(t, "wai_sr_total", norms=norms).itertuples()
    assert row.opened_session == 5 and row.value == pytest.approx(1.0)
    # Jacobson & Truax (1991): z x SD x sqrt(2) x sqrt(1 - r), with the clinic's one-sided
    # 99 % z = 2.326348 (scipy.stats.norm.ppf(0.99))
    assert row.threshold == pytest.approx(2.326348 * 0.5 * np.sqrt(2) * np.sqrt(0.2), rel=1e-5)
    assert row.severity == "high" and row.escalated_session == 8  # not repaired in 3 sessions


def test_self_reported_rupture_needs_permission() -> None:
    t = pd.DataFrame(
        {
            "patient_id": "a",
            "session": [1, 2, 3],
            "wai_sr_total": [4.0, 4.0, 4.0],
            "psq_1": [0, 1, 0],
            "psq_2": [np.nan, 4, np.nan],
            "psq_3": [np.nan, 2, np.nan],
        }
    )
    assert alert_episodes(t, "wai_sr_total").empty
    out = alert_episodes(t, "wai_sr_total", settings=AlertSettings(allow_unverified=True))
    [row] = out.itertuples()
    assert (row.kind, row.opened_session, row.closed_session) == ("self_reported_rupture", 2, 3)
    assert row.severity == "high"  # intensity 4 of 5
    assert "intensity 4" in row.reason and row.key_status == "unverified"


def test_retrospective_low_early_alliance_uses_the_data_percentile() -> None:
    rng = np.random.default_rng(0)
    early = rng.normal(4.0, 0.4, 40)
    t = pd.DataFrame(
        {
            "patient_id": np.repeat(np.arange(40), 3),
            "session": np.tile([1, 2, 3], 40),
            "wai_sr_total": np.repeat(early, 3),
        }
    )
    assert alert_episodes(t, "wai_sr_total").empty  # prospective: no reference, not judged
    out = alert_episodes(t, "wai_sr_total", prospective=False)
    cut = np.percentile(early, 10)
    assert sorted(out["patient_id"]) == sorted(np.flatnonzero(early < cut))
    assert out["threshold"].iloc[0] == pytest.approx(cut)
