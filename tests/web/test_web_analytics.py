"""Analytics in the clinic (SQLite and PostgreSQL): alert episodes refreshed per patient after
each commit, replayed one session at a time; reads never compute; the clinician's workflow
survives updates; migration 0003 brings old alerts along."""

from __future__ import annotations

import importlib
import itertools
import logging
import threading
from collections.abc import Iterator
from datetime import date
from typing import Any

import pandas as pd
import pytest
import sqlalchemy as sa
from webclinic import (
    SECRET,
    Clinic,
    answers_of,
    close,
    full_answers,
    login,
    migrated,
    new_link,
    record_session,
    seed,
    settle,
)

from alliance.dynamics import AlertSettings, Norms
from alliance.dynamics.episodes import SEVERITY_RANK
from alliance.dynamics.monitor import monitor
from alliance.instruments import get_instrument
from alliance.simulate import simulate_scored
from alliance.store import migrate, repo
from alliance.store.db import Database
from alliance.store.models import Alert, Patient
from alliance.web import monitoring
from alliance.web.app import create_app
from alliance.web.security import hash_password

WAI = repo.ScheduleSpec("wai_sr", "client", "client")
PSQ = repo.ScheduleSpec("psq", "patient", "client")
WAI_T = repo.ScheduleSpec("wai_sr", "therapist", "therapist")
# Fixed norms stored before the first session: the replay and the whole-table run use the
# same ones (a real clinic freezes the first it gets).
NORMS = Norms(0.55, 0.9, "fixed norms of the replay test", mean=3.9)
MONITOR_MODULE = importlib.import_module("alliance.dynamics.monitor")  # the package shadows it
RUPTURE = {"psq_1": "1", "psq_2": "4", "psq_3": "1"}  # a strong rupture, not resolved
EPISODE_STATE = ["closed_session", "state", "severity", "last_session"]


def stored_episodes(db: Database) -> dict[tuple[Any, ...], dict[str, Any]]:
    """Every stored episode by (patient, kind, opened session)."""
    with db.read() as s:
        alerts = s.scalars(sa.select(Alert)).all()
    return {
        (a.patient_id, a.kind, a.session): {
            "closed_session": a.closed_session,
            "state": a.state,
            "severity": a.severity,
            "last_session": a.last_session,
            "status": a.status,
        }
        for a in alerts
    }


# -- (a) the replay ------------------------------------------------------------------------
@pytest.fixture
def replay_db(database_url: str) -> Iterator[Database]:
    yield from migrated(database_url)


def simulated_clinic() -> pd.DataFrame:
    """Eight patients, up to ten sessions, patient and therapist WAI-SR, the rupture
    questions (the seed gives ruptures that repair and ones that do not, self-reported
    ruptures and rating discrepancies)."""
    clinic = simulate_scored(
        2,
        4,
        therapist_form=True,
        post_session_questions=True,
        min_sessions=10,
        max_sessions=10,
        seed=9,
    )
    return clinic.sessions


def test_replay_one_session_at_a_time_equals_the_whole_table(replay_db: Database) -> None:
    db = replay_db
    sessions = simulated_clinic()
    items = list(get_instrument("wai_sr").item_columns)
    psq_items = list(get_instrument("psq").item_columns)
    with db.write() as s:
        repo.store_norms(s, "wai_sr", "total", **NORMS.to_dict())  # type: ignore[arg-type]
        therapists = {
            t: repo.create_user(s, f"t{k}", hash_password("long enough"), "therapist")
            for k, t in enumerate(sorted(sessions["therapist_id"].unique()))
        }
        patient_ids = {}
        for code, group in sessions.groupby("patient_id"):
            therapist = therapists[group["therapist_id"].iloc[0]]
            patient_ids[code] = repo.create_patient(s, str(code), therapist, [WAI, PSQ, WAI_T]).id

    snapshots = []
    for row in sessions.sort_values(["session", "patient_id"]).to_dict("records"):
        forms = [
            (WAI, answers_of(row, items)),
            (PSQ, answers_of(row, psq_items)),
            (WAI_T, answers_of(row, items, prefix="t_")),
        ]
        with db.write() as s:
            patient = repo.get_patient(s, patient_ids[row["patient_id"]])
            record_session(s, patient, [f for f in forms if f[1]], pd.Timestamp(row["date"]).date())
        monitoring.refresh_patients(db, [patient.id])
        snapshots.append(stored_episodes(db))

    with db.read() as s:
        table = monitoring.session_table(s)
        stale = repo.stale_patient_ids(s)
        statuses = {p.id: (p.status, p.status_reason) for p in s.scalars(sa.select(Patient))}
    assert stale == []
    whole = monitor(
        table,
        norms={"wai_sr": NORMS},
        settings=AlertSettings(allow_unverified=monitoring.allow_unverified()),
    )
    expected = {
        (int(r["patient_id"]), r["kind"], int(r["opened_session"])): {
            "closed_session": None if pd.isna(r["closed_session"]) else int(r["closed_session"]),
            "state": r["state"],
            "severity": r["severity"],
            "last_session": int(r["last_session"]),
        }
        for r in whole.episodes.to_dict("records")
    }
    final = {k: {n: v[n] for n in EPISODE_STATE} for k, v in snapshots[-1].items()}
    # (i) the clinic's stored episodes are the whole-table run's
    assert final == expected
    # the simulated clinic exercises episodes of several kinds, open and closed
    assert {"rupture", "self_reported_rupture", "rating_discrepancy"} <= {k[1] for k in expected}
    assert {v["state"] for v in expected.values()} == {"open", "closed"}
    assert {s for s, _reason in statuses.values()} > {"steady"}
    assert statuses == {
        int(r["patient_id"]): (r["status"], r["reason"]) for r in whole.status.to_dict("records")
    }
    # (ii) no decision about an earlier session changes when later sessions arrive
    for before, after in itertools.pairwise(snapshots):
        for key, episode in before.items():
            assert key in after, f"episode {key} disappeared"
            later = after[key]
            assert SEVERITY_RANK[later["severity"]] >= SEVERITY_RANK[episode["severity"]]
            assert later["last_session"] >= episode["last_session"]
            if episode["state"] == "closed":
                assert later["state"] == "closed"
                assert later["closed_session"] == episode["closed_session"]


# -- (b) reads never compute ---------------------------------------------------------------
def test_reads_never_compute_analytics(sqlite_clinic: Clinic) -> None:
    clinic = sqlite_clinic
    pid = clinic.patients["p1"]
    assert clinic.app.state.analytics.drain()  # the start-up sweep is done first
    with clinic.db.write() as s:  # answers stored without the writer: nothing queued
        record_session(
            s,
            repo.get_patient(s, pid),
            [(WAI, full_answers(4)), (PSQ, RUPTURE)],
        )
    browser = login(clinic.app, "t1")
    for url in ("/caseload", f"/patients/{pid}"):
        assert browser.get(url).status_code == 200
    admin = login(clinic.app, "admin")
    assert admin.get("/supervision").status_code == 200
    headers = {"Authorization": f"Bearer {clinic.tokens['t1']}"}
    for url in ("/api/v1/patients", f"/api/v1/patients/{pid}", "/api/v1/alerts"):
        assert browser.client.get(url, headers=headers).status_code == 200
    with clinic.db.read() as s:
        assert repo.stale_patient_ids(s) == [pid]
        assert repo.alerts_of(s, [pid]) == []
        assert repo.get_patient(s, pid).status == "steady"
    clinic.app.state.analytics.submit([pid])  # what a commit does
    settle(clinic.app)
    with clinic.db.read() as s:
        assert repo.stale_patient_ids(s) == []
        assert [a.kind for a in repo.alerts_of(s, [pid])] == ["self_reported_rupture"]
        assert repo.get_patient(s, pid).status in ("watch", "act")


def test_a_submission_refreshes_its_patient_after_the_commit(clinic: Clinic) -> None:
    token = new_link(clinic)
    outcome = clinic.app.state.writer.process([_job(token, full_answers(4, rupture=1))])[0]
    assert outcome.forms == ["wai_sr", "psq"]
    settle(clinic.app)
    with clinic.db.read() as s:
        [alert] = repo.alerts_of(s, [clinic.patients["p1"]])
        assert repo.stale_patient_ids(s) == []
        other = repo.get_patient(s, clinic.patients["p2"])
    assert (alert.kind, alert.state, alert.status) == ("self_reported_rupture", "open", "open")
    assert other.status == "steady"


def _job(token: str, data: dict[str, str]) -> Any:
    import asyncio

    from alliance.web.submissions import _Job

    loop = asyncio.new_event_loop()
    return _Job(token, data, "link", loop, loop.create_future(), repo.hash_token(token))


def test_the_start_up_sweep_refreshes_stale_patients(sqlite_url: str) -> None:
    app = create_app(sqlite_url, secret_key=SECRET)
    clinic = seed(app)
    pid = clinic.patients["p1"]
    with clinic.db.write() as s:
        record_session(s, repo.get_patient(s, pid), [(WAI, full_answers(4)), (PSQ, RUPTURE)])
    close(app)  # "crash" before any refresh ran
    restarted = create_app(sqlite_url, secret_key=SECRET)
    settle(restarted)
    with restarted.state.db.read() as s:
        assert repo.stale_patient_ids(s) == []
        assert [a.kind for a in repo.alerts_of(s, [pid])] == ["self_reported_rupture"]
    close(restarted)


def test_newer_answers_during_a_refresh_are_not_overwritten(
    sqlite_clinic: Clinic, monkeypatch: pytest.MonkeyPatch
) -> None:
    clinic = sqlite_clinic
    pid = clinic.patients["p1"]
    with clinic.db.write() as s:
        record_session(s, repo.get_patient(s, pid), [(WAI, full_answers(4))])
    real = monitor
    calls: list[int] = []

    caller = threading.get_ident()

    def monitor_while_answers_arrive(table: pd.DataFrame, **kw: Any) -> Any:
        if threading.get_ident() != caller:  # the app's own background refresh
            return real(table, **kw)
        calls.append(len(table))
        if len(calls) == 1:  # a second session commits while the first is computed
            with clinic.db.write() as s:
                record_session(s, repo.get_patient(s, pid), [(WAI, full_answers(4))])
        return real(table, **kw)

    monkeypatch.setattr(MONITOR_MODULE, "monitor", monitor_while_answers_arrive)
    monitoring.refresh_patients(clinic.db, [pid])
    with clinic.db.read() as s:
        assert repo.stale_patient_ids(s) == [pid]  # the stale result was not stored
    monitoring.refresh_patients(clinic.db, [pid])
    assert calls == [1, 2]
    with clinic.db.read() as s:
        assert repo.stale_patient_ids(s) == []


def test_analytics_failure_keeps_pages_up_and_logs_no_patient_data(
    sqlite_clinic: Clinic, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    clinic = sqlite_clinic
    pid = clinic.patients["p1"]

    def broken(table: pd.DataFrame, **kw: Any) -> Any:
        raise ValueError(f"cannot handle patient CODE-P1 with {len(table)} rows")

    monkeypatch.setattr(MONITOR_MODULE, "monitor", broken)
    token = new_link(clinic)
    with caplog.at_level(logging.DEBUG, logger="alliance"):
        assert clinic.app.state.writer.process([_job(token, full_answers(3, rupture=1))])
        settle(clinic.app)
        page = login(clinic.app, "t1").get(f"/patients/{pid}")
    assert page.status_code == 200 and "3.00" in page.text
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "analytics failed (ValueError)" in text
    assert "CODE-P1" not in text and "rows" not in text
    with clinic.db.read() as s:
        assert repo.stale_patient_ids(s) == [pid]  # retried later from the flag


# -- (c) the clinician's workflow across updates ------------------------------------------
def episode(pid: int, **changes: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "patient_id": pid,
        "kind": "rupture",
        "opened_session": 2,
        "last_session": 2,
        "closed_session": None,
        "state": "open",
        "severity": "warning",
        "escalated_session": None,
        "title": "Possible rupture",
        "reason": "Fell at session 2.",
        "detail": "rci_drop with fixed norms",
        "close_reason": "",
        "method": "rci_drop",
        "value": 3.1,
        "threshold": 0.53,
        "score": "wai_sr_total",
        "key_status": "verified",
        "guidance": "Metacommunicate.",
        "sources": "safran2000",
    }
    row.update(changes)
    return row


def test_upsert_keeps_the_workflow_and_an_escalation_reopens(clinic: Clinic) -> None:
    pid = clinic.patients["p1"]
    db = clinic.db
    other = episode(pid, kind="below_cutoff", opened_session=1, last_session=1)
    rupture = {"patient_id": pid, "session": 2, "kind": "rci_drop", "depth": 0.9}
    with db.write() as s:
        assert repo.replace_analytics(s, [pid], [episode(pid), other], [rupture]) == 2
        alert = repo.alerts_of(s, [pid])[0]
        user = repo.get_user(s, clinic.users["t1"])
        assert user is not None
        repo.set_alert_status(s, alert, user, "acknowledged", "seen it")
        alert_id = alert.id
    later = episode(pid, last_session=3, reason="Still low at session 3.", value=3.0)
    with db.write() as s:
        assert repo.replace_analytics(s, [pid], [later], []) == 0
        alert = repo.get_alert(s, alert_id)
        assert (alert.status, alert.last_session, alert.reason) == (
            "acknowledged",
            3,
            later["reason"],
        )
        assert alert.note == "seen it" and repo.ruptures_of(s, [pid]) == []
        assert {a.kind for a in repo.alerts_of(s, [pid])} == {"rupture", "below_cutoff"}
    worse = episode(pid, last_session=4, severity="high", escalated_session=4)
    with db.write() as s:
        repo.replace_analytics(s, [pid], [worse], [])
        alert = repo.get_alert(s, alert_id)
        assert (alert.status, alert.severity, alert.escalated_session) == ("open", "high", 4)
        assert alert.acknowledged_at is not None and alert.note == "seen it"  # history kept
        patient = repo.get_patient(s, pid)
        reason = "Fell at session 2. (1 more open alert.)"  # the high one, then the rest
        assert (patient.status, patient.status_reason, patient.status_since) == ("act", reason, 2)
        assert repo.open_alert_counts(s, [pid]) == {pid: 2}
        repo.set_alert_status(s, alert, user, "resolved", "talked it through")
    closed = episode(
        pid,
        last_session=5,
        severity="high",
        state="closed",
        closed_session=5,
        close_reason="repaired at session 5",
    )
    with db.write() as s:
        repo.replace_analytics(s, [pid], [closed], [])
        alert = repo.get_alert(s, alert_id)
        assert (alert.status, alert.state, alert.closed_session) == ("resolved", "closed", 5)
        assert [a.kind for a in repo.alerts_of(s, [pid], open_only=True)] == ["below_cutoff"]
        patient = repo.get_patient(s, pid)
        assert (patient.status, patient.status_since) == ("watch", 1)


def test_api_alerts_carry_the_episode_and_patients_their_status(clinic: Clinic) -> None:
    pid = clinic.patients["p1"]
    with clinic.db.write() as s:
        repo.replace_analytics(s, [pid], [episode(pid, value=float("nan"))], [])
    client = login(clinic.app, "t1").client
    client.headers["Authorization"] = f"Bearer {clinic.tokens['t1']}"
    [alert] = client.get("/api/v1/alerts").json()
    assert alert["opened_session"] == alert["session"] == 2
    assert (alert["state"], alert["closed_session"], alert["value"]) == ("open", None, None)
    assert alert["detail"] == "rci_drop with fixed norms" and alert["threshold"] == 0.53
    [row] = client.get("/api/v1/patients").json()
    assert (row["status"], row["status_since"], row["open_alerts"]) == ("watch", 2, 1)
    detail = client.get(f"/api/v1/patients/{pid}").json()
    assert (detail["status"], detail["status_reason"]) == ("watch", "Fell at session 2.")


# -- (d) migration 0003 ---------------------------------------------------------------------
def test_migration_0003_brings_old_alerts_along(database_url: str) -> None:
    engine = Database(database_url).engine
    migrate.upgrade(engine, "0002")
    meta = sa.MetaData()
    meta.reflect(engine)
    now = pd.Timestamp.now(tz="UTC").to_pydatetime()
    t = meta.tables
    with engine.begin() as conn:
        common = {"active": True, "created_at": now}
        conn.execute(
            t["users"].insert(),
            {
                "id": 1,
                "username": "t",
                "display_name": "T",
                "role": "therapist",
                "password_hash": "x",
                "session_epoch": 0,
                **common,
            },
        )
        for pid in (1, 2):
            conn.execute(
                t["patients"].insert(),
                {
                    "id": pid,
                    "code": f"P{pid}",
                    "research_id": f"r{pid}",
                    "therapist_id": 1,
                    "language": "en",
                    "alerts_stale": False,
                    **common,
                },
            )
        conn.execute(
            t["sessions"].insert(),
            {"id": 1, "patient_id": 1, "number": 3, "date": date(2026, 1, 5), "created_at": now},
        )
        conn.execute(
            t["responses"].insert(),
            {
                "session_id": 1,
                "patient_id": 1,
                "instrument_id": "wai_sr",
                "form_id": "client",
                "respondent": "client",
                "language": "en",
                "items": {},
                "scores": {},
                "source": "link",
                "submitted_at": now,
            },
        )
        conn.execute(
            t["alerts"].insert(),
            {
                "patient_id": 1,
                "session": 3,
                "kind": "reliable_drop",
                "severity": "warning",
                "reason": "Fell.",
                "guidance": "",
                "sources": "",
                "status": "acknowledged",
                "note": "seen",
                "created_at": now,
            },
        )
    migrate.upgrade(engine)
    db = Database(database_url)
    with db.read() as s:
        [alert] = repo.alerts_of(s, [1])
        assert (alert.session, alert.last_session, alert.state) == (3, 3, "open")
        assert (alert.status, alert.note, alert.closed_session) == ("acknowledged", "seen", None)
        assert (alert.title, alert.value, alert.key_status) == ("", None, "")
        assert repo.stale_patient_ids(s) == [1]  # has answers: the start-up sweep redoes it
        assert [p.status for p in s.scalars(sa.select(Patient).order_by(Patient.id))] == [
            "steady"
        ] * 2
        assert repo.stored_norms(s) == []
    uniques = sa.inspect(engine).get_unique_constraints("alerts")
    assert any(set(u["column_names"]) == {"patient_id", "session", "kind"} for u in uniques)
    migrate_down_and_up(engine)
    db.dispose()
    engine.dispose()


def migrate_down_and_up(engine: sa.Engine) -> None:
    from alembic import command

    config = migrate.alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, "0002")
    assert "clinic_norms" not in sa.inspect(engine).get_table_names()
    migrate.upgrade(engine)
    assert "clinic_norms" in sa.inspect(engine).get_table_names()
