"""Alerts: reasons with numbers, guidance with sources, unverified keys kept quiet."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from alliance.dynamics import AlertSettings, Norms, compute_alerts, load_guidance


def srs_table() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "patient_id": ["a"] * 4 + ["b"] * 4,
            "therapist_id": ["t1"] * 4 + ["t2"] * 4,
            "session": [1, 2, 3, 4] * 2,
            "srs_total": [30.0, 33.0, 38.0, 39.0, 38.0, 39.0, 39.5, 39.0],
        }
    )


def test_srs_cutoff_and_low_early_alliance() -> None:
    out = compute_alerts(srs_table(), "srs_total", instrument="srs")
    below = out[out["kind"] == "below_cutoff"]
    assert below[["patient_id", "session"]].values.tolist() == [["a", 1], ["a", 2]]
    early = out[out["kind"] == "low_early_alliance"].iloc[0]
    assert early["value"] == pytest.approx((30 + 33 + 38) / 3)
    assert early["threshold"] == 36 and early["session"] == 3
    assert "33.67" in early["reason"] and "36" in early["reason"]
    assert set(out["therapist_id"]) == {"t1"}
    assert (out["key_status"] == "verified").all()


def test_every_alert_carries_guidance_and_sources() -> None:
    out = compute_alerts(srs_table(), "srs_total", instrument="srs")
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
    quiet = compute_alerts(t, "wai_total")
    assert quiet.empty
    assert any("unverified" in n for n in quiet.attrs["notices"])
    loud = compute_alerts(t, "wai_total", settings=AlertSettings(allow_unverified=True))
    assert "unrepaired_rupture" in set(loud["kind"]) or "rupture" in set(loud["kind"])
    assert (loud["key_status"] == "unverified").all()


def test_reliable_drop_with_norms_and_unrepaired_rupture() -> None:
    t = pd.DataFrame(
        {
            "patient_id": ["a"] * 8,
            "session": range(1, 9),
            "wai_sr_total": [4.0, 4.0, 4.0, 4.0, 3.0, 3.0, 3.0, 3.0],
        }
    )
    norms = Norms(sd=0.5, reliability=0.8, source="test")  # critical drop 0.6198
    out = compute_alerts(t, "wai_sr_total", norms=norms)
    drop = out[out["kind"] == "reliable_drop"].iloc[0]
    assert drop["session"] == 5 and drop["value"] == pytest.approx(1.0)
    assert drop["threshold"] == pytest.approx(1.959964 * 0.5 * np.sqrt(2) * np.sqrt(0.2), rel=1e-5)
    unrepaired = out[out["kind"] == "unrepaired_rupture"].iloc[0]
    assert unrepaired["severity"] == "high" and unrepaired["session"] == 8


def test_rating_discrepancy() -> None:
    t = pd.DataFrame(
        {
            "patient_id": ["a", "a", "b", "b"],
            "session": [1, 2, 1, 2],
            "wai_sr_total": [4.0, 4.2, 3.0, 4.4],
            "t_total": [4.1, 4.2, 4.6, 4.4],
        }
    )
    out = compute_alerts(t, "wai_sr_total", therapist_score="t_total")
    gap = out[out["kind"] == "rating_discrepancy"]
    # SD of patient scores = sqrt(1.16 / 3) = 0.6218; only b/1 differs by 1.6 >= 0.6218
    assert gap[["patient_id", "session"]].values.tolist() == [["b", 1]]
    assert "higher" in gap["reason"].iloc[0]


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
    assert "self_reported_rupture" not in set(compute_alerts(t, "wai_sr_total")["kind"])
    out = compute_alerts(t, "wai_sr_total", settings=AlertSettings(allow_unverified=True))
    row = out[out["kind"] == "self_reported_rupture"].iloc[0]
    assert row["session"] == 2 and row["severity"] == "warning"
    assert "intensity 4" in row["reason"] and row["key_status"] == "unverified"


def test_clinic_percentile_for_low_early_alliance() -> None:
    rng = np.random.default_rng(0)
    early = rng.normal(4.0, 0.4, 40)
    t = pd.DataFrame(
        {
            "patient_id": np.repeat(np.arange(40), 3),
            "session": np.tile([1, 2, 3], 40),
            "wai_sr_total": np.repeat(early, 3),
        }
    )
    out = compute_alerts(t, "wai_sr_total")
    low = out[out["kind"] == "low_early_alliance"]
    cut = np.percentile(early, 10)
    assert sorted(low["patient_id"]) == sorted(np.flatnonzero(early < cut))
    assert low["threshold"].iloc[0] == pytest.approx(cut)
