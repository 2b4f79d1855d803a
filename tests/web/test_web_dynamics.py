"""The clinic's bridge to the dynamics: monitoring frames become store rows, and the clinic
freezes the first norms it gets (estimated from its first sessions once enough patients
have one), so later patients never move earlier decisions."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest
from webclinic import answers_of, migrated, record_session

from alliance.dynamics import MIN_PATIENTS_FOR_NORMS, Monitoring
from alliance.dynamics.episodes import EPISODE_COLUMNS
from alliance.dynamics.status import STATUS_COLUMNS
from alliance.store import repo
from alliance.store.db import Database
from alliance.web import monitoring
from alliance.web.dynamics_adapter import store_rows

ITEMS = [f"wai_sr_{i}" for i in range(1, 13)]
WAI = repo.ScheduleSpec("wai_sr", "client", "client")


def test_monitoring_frames_become_store_rows_per_patient() -> None:
    episodes = pd.DataFrame(
        [
            [
                7,
                1,
                "rupture",
                4,
                6,
                pd.NA,
                "open",
                "high",
                6,
                "Possible rupture",
                "Fell.",
                "rci_drop",
                "",
                "rci_drop",
                np.float64(1.1),
                np.nan,
                "wai_sr_total",
                "verified",
                "Talk.",
                "safran2000",
            ],
        ],
        columns=EPISODE_COLUMNS,
    ).astype({"closed_session": "Int64", "escalated_session": "Int64"})
    ruptures = pd.DataFrame(
        {
            "patient_id": [7, 8],
            "method": ["rci_drop", "self_report"],
            "rupture_session": [4, 2],
            "drop": [1.1, np.nan],
            "repaired": ["not yet", "yes"],
            "repair_session": pd.array([pd.NA, 3], dtype="Int64"),
        }
    )
    status = pd.DataFrame(columns=STATUS_COLUMNS)  # the store derives its own
    rows = store_rows(Monitoring(episodes, ruptures, status))
    [episode] = rows[7].episodes
    assert episode["opened_session"] == 4 and episode["closed_session"] is None
    assert episode["escalated_session"] == 6 and isinstance(episode["escalated_session"], int)
    assert (episode["value"], episode["threshold"]) == (1.1, None)
    assert type(episode["value"]) is float
    assert rows[7].ruptures[0]["repair_session"] is None
    assert rows[7].ruptures[0]["detail"] == "repair window still open"
    assert rows[8].ruptures[0] == {
        "patient_id": 8,
        "session": 2,
        "kind": "self_report",
        "depth": None,
        "repaired": True,
        "repair_session": 3,
        "detail": "",
    }
    assert rows[8].episodes == []


@pytest.fixture
def db(sqlite_url: str) -> Iterator[Database]:
    yield from migrated(sqlite_url)


def add_clinic(
    db: Database, patients: int, start: int = 0, level_shift: float = 0.0, drop: int = 0
) -> dict[int, int]:
    """Six WAI-SR sessions per patient at a steady level with item noise; patient ``drop``
    falls by 2 points at session 4 and recovers at session 5. Returns db id by index."""
    rng = np.random.default_rng(5 + start)
    ids = {}
    with db.write() as s:
        therapist = repo.user_by_name(s, "t") or repo.create_user(s, "t", "x", "therapist")
        for p in range(start, start + patients):
            patient = repo.create_patient(s, f"P{p}", therapist, [WAI])
            ids[p] = patient.id
            level = rng.uniform(3.0, 4.5) + level_shift
            for session in range(1, 7):
                shift = -2.0 if (p, session) == (drop, 4) else 0.0
                items = np.clip(np.rint(level + shift + rng.normal(0, 0.5, 12)), 1, 5)
                record_session(s, patient, [(WAI, answers_of(dict(zip(ITEMS, items)), ITEMS))])
    return ids


def test_the_clinic_freezes_norms_once_enough_patients_have_a_first_session(db: Database) -> None:
    ids = add_clinic(db, MIN_PATIENTS_FOR_NORMS - 1)
    monitoring.refresh_patients(db)
    with db.read() as s:
        assert repo.stored_norms(s) == []  # too few first sessions: no norms yet
        assert [a.kind for a in repo.alerts_of(s, [ids[0]]) if a.kind == "rupture"] == []
    last = MIN_PATIENTS_FOR_NORMS - 1
    ids |= add_clinic(db, 1, start=last, drop=last)
    monitoring.refresh_patients(db)
    with db.read() as s:
        [norms] = repo.stored_norms(s)
        ruptures = [a for a in repo.alerts_of(s, [ids[last]]) if a.kind == "rupture"]
    assert (norms.instrument_id, norms.score, norms.n_patients) == ("wai_sr", "total", 30)
    assert norms.source.startswith("estimated from this data")
    assert norms.mean is not None and 3.0 < norms.mean < 4.5 and 0.5 < norms.reliability < 1
    # the 30th patient's refresh froze them, and judged that patient's drop with them
    assert [(r.session, r.method) for r in ruptures] == [(4, "rci_drop")]
    frozen = (norms.sd, norms.reliability, norms.source, norms.mean)
    add_clinic(db, 10, start=100, level_shift=-1.5)  # later patients, far lower
    monitoring.refresh_patients(db)
    with db.read() as s:
        [after] = repo.stored_norms(s)
    assert (after.sd, after.reliability, after.source, after.mean) == frozen
