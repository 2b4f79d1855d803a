"""Expected trajectories in the clinic (issue 11), on SQLite and PostgreSQL: the worker
fits the clinic's model on a schedule (never on a page view); each session's expected
range is computed the day it is analysed from the fit then in force and kept; the
``below_expected`` episodes, the chart and the supervisor's calibration check use those
stored ranges, so a refit never moves an earlier decision (replayed one session at a time).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import pytest
import sqlalchemy as sa
from test_web_analytics import NORMS, stored_episodes
from webclinic import Clinic, answers_of, login, migrated, record_session, settle

from alliance.dynamics import AlertSettings
from alliance.dynamics.episodes import SEVERITY_RANK
from alliance.dynamics.monitor import monitor
from alliance.instruments import get_instrument
from alliance.research.multilevel.expected import MIN_PATIENTS
from alliance.simulate import simulate_scored
from alliance.store import repo
from alliance.store.db import Database
from alliance.store.models import ExpectedBand, ExpectedModelFit
from alliance.web import monitoring
from alliance.web.monitoring import AnalyticsWorker, refit_expected
from alliance.web.security import hash_password
from alliance.web.settings import Settings, SettingsError

WAI = repo.ScheduleSpec("wai_sr", "client", "client")
ITEMS = list(get_instrument("wai_sr").item_columns)


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    yield from migrated(database_url)


def simulated(patients_per_therapist: int = 5, sessions: int = 8) -> pd.DataFrame:
    return simulate_scored(
        5, patients_per_therapist, min_sessions=sessions, max_sessions=sessions, seed=31
    ).sessions


def enrol(db: Database, table: pd.DataFrame) -> dict[Any, int]:
    """Therapists and patients of the simulated clinic (WAI-SR after every session)."""
    with db.write() as s:
        repo.store_norms(s, "wai_sr", "total", **NORMS.to_dict())  # type: ignore[arg-type]
        password = hash_password("long enough")
        therapists = {
            t: repo.create_user(s, f"t{k}", password, "therapist")
            for k, t in enumerate(sorted(table["therapist_id"].unique(), key=str))
        }
        return {
            code: repo.create_patient(s, str(code), therapists[g["therapist_id"].iloc[0]], [WAI]).id
            for code, g in table.groupby("patient_id")
        }


def answer(db: Database, patient_id: int, row: dict[str, Any]) -> None:
    """The patient's next session, with the WAI-SR where the simulation answered it."""
    given = answers_of(row, ITEMS)
    with db.write() as s:
        record_session(s, repo.get_patient(s, patient_id), [(WAI, given)] if given else [])


def bands(db: Database) -> dict[tuple[int, int], tuple[int, float]]:
    with db.read() as s:
        rows = s.execute(sa.select(ExpectedBand)).scalars().all()
        return {(b.patient_id, b.session): (b.model_id, b.lower) for b in rows}


def fits(db: Database) -> list[int]:
    with db.read() as s:
        return list(s.scalars(sa.select(ExpectedModelFit.id).order_by(ExpectedModelFit.id)))


def test_replay_with_refits_never_moves_an_earlier_decision(db: Database) -> None:
    table = simulated()
    patients = enrol(db, table)
    fit_after = {3: "first fit", 6: "refit"}
    episode_snaps, band_snaps, fitted = [], [], []
    for number in range(1, int(table["session"].max()) + 1):
        for row in table[table["session"] == number].to_dict("records"):
            answer(db, patients[row["patient_id"]], row)
            monitoring.refresh_patients(db, [patients[row["patient_id"]]])
            episode_snaps.append(stored_episodes(db))
            band_snaps.append(bands(db))
        if number in fit_after:  # the worker's schedule, here after sessions 3 and 6
            assert refit_expected(db, every=0.0) == ["wai_sr_total"]
            fitted.append(fits(db)[-1])
    final = band_snaps[-1]
    # (i) sessions answered before the first fit have no range; later ones name the fit
    #     in force the day they were answered
    by_session = {n: {m for (_p, k), (m, _lo) in final.items() if k == n} for n in range(1, 9)}
    assert all(not by_session[n] for n in (1, 2, 3))
    assert all(by_session[n] == {fitted[0]} for n in (4, 5, 6))
    assert all(by_session[n] == {fitted[1]} for n in (7, 8))
    answered = table[table[ITEMS].notna().any(axis=1) & (table["session"] >= 4)]
    assert set(final) == {
        (patients[p], n) for p, n in zip(answered["patient_id"], answered["session"])
    }
    # (ii) a stored range never changes, through the refit too
    for before, after in itertools.pairwise(band_snaps):
        assert {k: after[k] for k in before} == before
    # (iii) no decision about an earlier session changes when later sessions (or fits) come
    for before, after in itertools.pairwise(episode_snaps):
        for key, episode in before.items():
            later = after[key]
            assert SEVERITY_RANK[later["severity"]] >= SEVERITY_RANK[episode["severity"]]
            assert later["last_session"] >= episode["last_session"]
            if episode["state"] == "closed":
                assert (later["state"], later["closed_session"]) == (
                    "closed",
                    episode["closed_session"],
                )
    # (iv) the stored episodes are the whole-table run's over the stored ranges
    with db.read() as s:
        whole_table = monitoring.session_table(s)
        stored = repo.expected_bands_of(s, list(patients.values()))
    whole = monitor(
        monitoring.with_expected(whole_table, stored),
        norms={"wai_sr": NORMS},
        settings=AlertSettings(allow_unverified=monitoring.allow_unverified()),
    )
    expected = {
        (int(r["patient_id"]), r["kind"], int(r["opened_session"])): r["state"]
        for r in whole.episodes.to_dict("records")
    }
    assert {k: v["state"] for k, v in episode_snaps[-1].items()} == expected
    # the replay exercises the new kind beside the others
    assert "below_expected" in {k[1] for k in expected}
    assert "rupture" in {k[1] for k in expected}


def test_no_fit_while_the_data_cannot_carry_one(db: Database) -> None:
    table = simulated(patients_per_therapist=3)  # 15 patients, fewer than the minimum
    assert table["patient_id"].nunique() < MIN_PATIENTS
    patients = enrol(db, table)
    for row in table[table["session"] <= 4].to_dict("records"):
        answer(db, patients[row["patient_id"]], row)
    assert refit_expected(db, every=0.0) == []
    monitoring.refresh_patients(db)
    assert fits(db) == [] and bands(db) == {}


def test_the_worker_refits_on_its_schedule(db: Database) -> None:
    table = simulated()
    patients = enrol(db, table)
    for row in table[table["session"] <= 3].to_dict("records"):
        answer(db, patients[row["patient_id"]], row)
    worker = AnalyticsWorker(db, refit_every=3600.0, refit_check=0.0)
    try:
        worker.sweep()
        assert worker.drain()
        assert len(fits(db)) == 1  # none was in force: fitted at once
        worker.sweep()
        assert worker.drain()
        assert len(fits(db)) == 1  # an hour has not passed
    finally:
        worker.stop()
    later = datetime.now(UTC) + timedelta(hours=2)
    assert refit_expected(db, every=3600.0, now=later) == ["wai_sr_total"]
    assert refit_expected(db, every=3600.0, now=later) == []


def test_the_refit_interval_is_a_checked_setting() -> None:
    assert Settings.parse("", "", "6").refit_every == 6 * 3600
    assert Settings.parse("", "").refit_every == 24 * 3600
    for bad in ("0", "-1", "soon", "inf"):
        with pytest.raises(SettingsError, match="ALLIANCE_EXPECTED_REFIT_HOURS"):
            Settings.parse("", "", bad)


# -- on the pages ------------------------------------------------------------------------
def test_pages_show_the_range_and_its_calibration_and_compute_no_fit(
    sqlite_clinic: Clinic,
) -> None:
    clinic = sqlite_clinic
    db = clinic.db
    settle(clinic.app)  # the start-up sweep (and its refit check) is done first
    table = simulated()
    with db.write() as s:
        t1 = repo.get_user(s, clinic.users["t1"])
        assert t1 is not None
        ids = {
            c: repo.create_patient(s, f"SIM-{c}", t1, [WAI]).id
            for c in table["patient_id"].unique()
        }
    for row in table[table["session"] <= 3].to_dict("records"):
        answer(db, ids[row["patient_id"]], row)  # stored without the writer: nothing queued
    browser = login(clinic.app, "t1")
    admin = login(clinic.app, "admin")
    rated_4 = table[(table["session"] == 4) & table[ITEMS].notna().all(axis=1)]
    patient = ids[rated_4["patient_id"].iloc[0]]
    for page in (browser.get(f"/patients/{patient}"), admin.get("/supervision")):
        assert page.status_code == 200
    assert "No expected-range model yet" in admin.get("/supervision").text
    assert fits(db) == []  # page views fit nothing
    assert refit_expected(db) == ["wai_sr_total"]  # the worker's scheduled job
    for row in table[table["session"] == 4].to_dict("records"):
        answer(db, ids[row["patient_id"]], row)
    clinic.app.state.analytics.submit(ids.values())
    settle(clinic.app)
    page = browser.get(f"/patients/{patient}").text
    assert "Expected at session 5:" in page
    svg = browser.get(f"/patients/{patient}/chart.svg").text
    assert "expected range (clinic model" in svg
    spec = browser.client.get(
        f"/api/v1/patients/{patient}/chart",
        headers={"Authorization": f"Bearer {clinic.tokens['t1']}"},
    ).json()
    assert any(d and "upper" in d[0] for d in spec["datasets"].values())
    summary = admin.get("/supervision").text
    assert 'id="expected"' in summary and "wai_sr_total" in summary
    with db.read() as s:
        judged, under = repo.expected_calibration(s)["wai_sr_total"]
    assert judged == table[(table["session"] == 4) & table[ITEMS].notna().any(axis=1)].shape[0]
    assert f"{under} ({100 * under / judged:.1f}%)" in summary
