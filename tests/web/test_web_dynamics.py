"""The clinic's rupture method: reliable drops with clinic-estimated norms once enough
patients have a first session, the norm-free 1-SD criterion before that."""

from __future__ import annotations

import numpy as np
import pandas as pd

from alliance.web.dynamics_adapter import MIN_PATIENTS_FOR_NORMS, alerts_and_ruptures

ITEMS = [f"wai_sr_{i}" for i in range(1, 13)]


def clinic_table(patients: int) -> pd.DataFrame:
    """Six WAI-SR sessions per patient at a steady level with item noise; patient 0 drops
    by 2 points at session 4 and recovers at session 5."""
    rng = np.random.default_rng(5)
    rows = []
    for p in range(patients):
        level = rng.uniform(3.0, 4.5)
        for session in range(1, 7):
            shift = -2.0 if (p, session) == (0, 4) else 0.0
            items = np.clip(level + shift + rng.normal(0, 0.3, 12), 1, 5)
            rows.append({"patient_id": p, "session": session, **dict(zip(ITEMS, items))})
    table = pd.DataFrame(rows)
    table["wai_sr_total"] = table[ITEMS].mean(axis=1)
    return table


def test_enough_patients_use_reliable_drops_with_clinic_norms() -> None:
    alerts, ruptures = alerts_and_ruptures(clinic_table(MIN_PATIENTS_FOR_NORMS))
    assert {r["kind"] for r in ruptures} == {"rci_drop"}
    [big] = [r for r in ruptures if (r["patient_id"], r["session"]) == (0, 4)]
    assert big["repaired"] and big["repair_session"] == 5
    [alert] = [a for a in alerts if a["kind"] == "reliable_drop" and a["patient_id"] == 0]
    assert "estimated from this data" in alert["reason"]


def test_a_small_clinic_falls_back_to_the_one_sd_criterion() -> None:
    _alerts, ruptures = alerts_and_ruptures(clinic_table(MIN_PATIENTS_FOR_NORMS - 1))
    assert {r["kind"] for r in ruptures} == {"strauss2006"}
    assert any((r["patient_id"], r["session"]) == (0, 4) for r in ruptures)
