"""The audit log: append-only in the database (SQLite and PostgreSQL), the clinic under a
PostgreSQL role that does not own the tables, refusals audited, list reads naming the
patients they showed."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError
from typer.testing import CliRunner
from webclinic import (
    PASSWORD,
    SCHEDULE,
    SECRET,
    Client,
    Clinic,
    _password_hash,
    drop_pg_database,
    fresh_pg_database,
    full_answers,
    login,
    migrated,
)

from alliance.cli.main import app as cli
from alliance.store import repo
from alliance.store.db import Database
from alliance.store.models import AuditEntry

runner = CliRunner()


def api(clinic: Clinic, user: str) -> Client:
    client = Client(clinic.app)
    client.headers["Authorization"] = f"Bearer {clinic.tokens[user]}"
    return client


def audit_rows(db: Database) -> list[tuple[object, ...]]:
    """Every audit row, as plain tuples (to compare before and after an attack)."""
    with db.read() as s:
        return [tuple(r) for r in s.execute(text("SELECT * FROM audit_log ORDER BY id"))]


# -- finding 1: no rewriting through INSERT-over-existing (SQLite) or TRUNCATE (PostgreSQL)
_COLUMNS = "(id, at, actor, action, entity, entity_id, detail)"
_FORGED = "(:id, '2020-01-01 00:00:00', 'forged', 'read', 'patient', '1', 'forged')"
REWRITES = {
    "sqlite": [
        f"REPLACE INTO audit_log {_COLUMNS} VALUES {_FORGED}",
        f"INSERT OR REPLACE INTO audit_log {_COLUMNS} VALUES {_FORGED}",
        f"INSERT INTO audit_log {_COLUMNS} VALUES {_FORGED} "
        "ON CONFLICT (id) DO UPDATE SET actor = 'forged'",
        "REPLACE INTO audit_log_patients (audit_id, patient_id) VALUES (:id, 1)",
        "DELETE FROM audit_log_patients",
        "UPDATE audit_log_patients SET patient_id = 2",
    ],
    "postgresql": [
        "TRUNCATE audit_log, audit_log_patients",
        "TRUNCATE audit_log CASCADE",
        "TRUNCATE audit_log_patients",
        f"INSERT INTO audit_log {_COLUMNS} VALUES {_FORGED} "
        "ON CONFLICT (id) DO UPDATE SET actor = 'forged'",
        "DELETE FROM audit_log_patients",
        "UPDATE audit_log_patients SET patient_id = 2",
    ],
}


@pytest.fixture
def audited(database_url: str) -> Iterator[tuple[Database, int]]:
    """A migrated database with one audit entry that names a patient; yields its id."""
    for db in migrated(database_url):
        with db.write() as s:
            user = repo.create_user(s, "t9", _password_hash(), "therapist")
            patient = repo.create_patient(s, "CODE-X", user, SCHEDULE)
            repo.audit(s, user, "read", "caseload", patients=[patient.id])
        with db.read() as s:
            entry_id = s.scalars(select(AuditEntry.id)).one()
        yield db, entry_id


@pytest.mark.parametrize("index", range(6))
def test_audit_log_cannot_be_rewritten_or_emptied(
    audited: tuple[Database, int], index: int
) -> None:
    db, entry_id = audited
    statement = REWRITES[db.engine.dialect.name][index]
    before = audit_rows(db)
    with pytest.raises(DBAPIError, match="append-only"), db.write() as s:
        s.execute(text(statement), {"id": entry_id} if ":id" in statement else {})
    assert audit_rows(db) == before
    with db.read() as s:
        assert [e.id for e in repo.patient_audit_trail(s, 1)] == [entry_id]


def test_sqlite_audit_log_refuses_ids_below_one(sqlite_url: str) -> None:
    # A row with id -1 would make every later entry look like an INSERT over it.
    for db in migrated(sqlite_url):
        forged = f"INSERT INTO audit_log {_COLUMNS} VALUES {_FORGED}"
        for bad in (-1, 0, -5):
            with pytest.raises(DBAPIError, match="append-only"), db.write() as s:
                s.execute(text(forged), {"id": bad})
        with db.write() as s:
            repo.audit(s, None, "read", "patient", 1, actor="test")
        assert len(audit_rows(db)) == 1


# -- finding 1: the clinic under a PostgreSQL role that does not own the tables ------------
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pg(dbname: str, user: str = "postgres") -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(f"host=127.0.0.1 port=5432 user={user} dbname={dbname}")


@pytest.fixture
def restricted(pg_server: str) -> Iterator[tuple[str, str, str]]:
    """A fresh database and a new login role (random name); yields (owner url, role url,
    role). The role's privileges and the role itself are dropped afterwards."""
    owner_url, name = fresh_pg_database()
    role = f"alliance_app_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(
        "host=127.0.0.1 port=5432 user=postgres dbname=postgres", autocommit=True
    ) as conn:
        conn.execute(f'CREATE ROLE "{role}" LOGIN')
    try:
        yield owner_url, f"postgresql+psycopg://{role}@127.0.0.1:5432/{name}", role
    finally:
        with _pg(name) as conn:
            conn.execute(f'DROP OWNED BY "{role}"')
        drop_pg_database(name)
        with psycopg.connect(
            "host=127.0.0.1 port=5432 user=postgres dbname=postgres", autocommit=True
        ) as conn:
            conn.execute(f'DROP ROLE IF EXISTS "{role}"')


def _seed_as_owner(owner_url: str) -> tuple[int, str]:
    """A therapist t1 with one patient and a fresh link; (patient id, link token)."""
    db = Database(owner_url)
    with db.write() as s:
        therapist = repo.create_user(s, "t1", _password_hash(), "therapist")
        patient = repo.create_patient(s, "CODE-P1", therapist, SCHEDULE)
        session = repo.create_session(s, patient, None)
        token = repo.issue_link(s, session)
        patient_id = patient.id
    db.dispose()
    return patient_id, token


def _serve(role_url: str, home: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    env = {
        **os.environ,
        "ALLIANCE_DATABASE_URL": role_url,
        "ALLIANCE_MIGRATE": "0",
        "ALLIANCE_SECRET_KEY": SECRET,
        "ALLIANCE_HOME": str(home),
    }
    command = [str(Path(sys.executable).with_name("alliance")), "serve", "--port", str(port)]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    proc.kill()
    out, _ = proc.communicate()
    raise AssertionError(f"the clinic did not start as the restricted role:\n{out.decode()}")


def _stop(proc: subprocess.Popen[bytes]) -> str:
    proc.terminate()
    try:
        out, _ = proc.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    return out.decode()


ATTACKS = [
    "UPDATE audit_log SET actor = 'forged'",
    "DELETE FROM audit_log",
    "TRUNCATE audit_log",
    "TRUNCATE audit_log CASCADE",
    "ALTER TABLE audit_log DISABLE TRIGGER ALL",
    "ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_change",
    "DROP TRIGGER audit_log_no_change ON audit_log",
    "DROP TRIGGER audit_log_no_truncate ON audit_log",
    "DROP TABLE audit_log CASCADE",
    "DELETE FROM audit_log_patients",
    "TRUNCATE audit_log_patients",
    "ALTER TABLE audit_log_patients DISABLE TRIGGER ALL",
    "DELETE FROM alembic_version",
    "CREATE TABLE intruder (id int)",
]


@pytest.mark.postgres
def test_clinic_runs_as_a_role_that_cannot_touch_the_audit_log(
    restricted: tuple[str, str, str], tmp_path: Path
) -> None:
    owner_url, role_url, role = restricted
    upgraded = runner.invoke(cli, ["db", "upgrade", "--database-url", owner_url, "--grant", role])
    assert upgraded.exit_code == 0, upgraded.output
    assert f"granted {role}" in upgraded.output
    patient_id, token = _seed_as_owner(owner_url)

    proc, base = _serve(role_url, tmp_path)
    try:
        client = httpx.Client(base_url=base, follow_redirects=True)
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").text)
        assert csrf
        credentials = {"username": "t1", "password": PASSWORD, "csrf_token": csrf.group(1)}
        caseload = client.post("/login", data=credentials)
        assert caseload.status_code == 200 and "CODE-P1" in caseload.text
        answers = {"answers": full_answers(4, rupture=1)}
        stored = httpx.post(f"{base}/api/v1/links/{token}/responses", json=answers)
        assert stored.status_code == 201, stored.text
        assert client.get(f"/patients/{patient_id}").status_code == 200
    finally:
        output = _stop(proc)
    assert "Traceback" not in output, output

    owner = Database(owner_url)
    with owner.read() as s:
        seen = {(e.actor, e.action, e.entity) for e in repo.patient_audit_trail(s, patient_id)}
        assert {
            ("therapist:t1", "read", "caseload"),
            ("therapist:t1", "read", "patient"),
        } <= seen
        assert s.scalar(select(func.count()).select_from(AuditEntry)) >= 3
    before = audit_rows(owner)
    owner.dispose()

    name = role_url.rsplit("/", 1)[1]
    for attack in ATTACKS:
        with _pg(name, role) as conn, pytest.raises(psycopg.Error) as refused:
            conn.execute(attack)
        assert refused.value.sqlstate in ("42501", "P0001"), (attack, refused.value)
    owner = Database(owner_url)
    assert audit_rows(owner) == before
    owner.dispose()


@pytest.mark.postgres
def test_serve_without_migrating_refuses_an_old_schema(
    restricted: tuple[str, str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    owner_url, role_url, role = restricted
    for db in migrated(owner_url):
        with db.engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = '0003'"))
    granted = runner.invoke(cli, ["db", "grant", role, "--database-url", owner_url])
    assert granted.exit_code == 0, granted.output
    monkeypatch.setenv("ALLIANCE_HOME", str(tmp_path))
    monkeypatch.setenv("ALLIANCE_SECRET_KEY", SECRET)
    result = runner.invoke(cli, ["serve", "--no-migrate", "--database-url", role_url])
    assert result.exit_code == 2, result.output
    assert "alliance db upgrade" in result.output and "0003" in result.output


def test_db_grant_names_what_is_wrong(tmp_path: Path, pg_server: str) -> None:
    sqlite = f"sqlite:///{tmp_path / 'x.db'}"
    refused = runner.invoke(cli, ["db", "grant", "someone", "--database-url", sqlite])
    assert refused.exit_code == 2 and "PostgreSQL" in refused.output
    owner_url, name = fresh_pg_database()
    try:
        runner.invoke(cli, ["db", "upgrade", "--database-url", owner_url])
        missing = runner.invoke(cli, ["db", "grant", "no_such_role_x", "--database-url", owner_url])
        assert missing.exit_code == 2 and "role: no role named" in missing.output
        owner = runner.invoke(cli, ["db", "grant", "postgres", "--database-url", owner_url])
        assert owner.exit_code == 2 and "owns" in owner.output
        bad = runner.invoke(cli, ["db", "grant", 'x"; DROP', "--database-url", owner_url])
        assert bad.exit_code == 2 and "role:" in bad.output
    finally:
        drop_pg_database(name)


# -- finding 6: refusals are audited, with the route pattern ------------------------------
def _refusals(clinic: Clinic) -> list[AuditEntry]:
    with clinic.db.read() as s:
        query = select(AuditEntry).where(AuditEntry.action == "refused").order_by(AuditEntry.id)
        return list(s.scalars(query))


PAGE_REFUSALS = [
    ("t1", "GET", "/admin", "/admin"),
    ("t1", "GET", "/admin/audit", "/admin/audit"),
    ("t1", "GET", "/supervision", "/supervision"),
    ("t1", "GET", "/export/data.csv", "/export/data.{fmt}"),
    ("sup1", "GET", "/export", "/export"),
    ("res", "GET", "/caseload", "/caseload"),
    ("res", "GET", "/patients/{p1}", "/patients/{patient_id}"),
    ("res", "POST", "/patients/{p1}/sessions", "/patients/{patient_id}/sessions"),
]


@pytest.mark.parametrize(("user", "method", "url", "pattern"), PAGE_REFUSALS)
def test_page_role_refusals_are_audited(
    sqlite_clinic: Clinic, user: str, method: str, url: str, pattern: str
) -> None:
    browser = login(sqlite_clinic.app, user)
    concrete = url.format(p1=sqlite_clinic.patients["p1"])
    response = browser.get(concrete) if method == "GET" else browser.post(concrete)
    assert response.status_code == 403
    [entry] = _refusals(sqlite_clinic)
    assert (entry.user_id, entry.entity) == (sqlite_clinic.users[user], "route")
    assert entry.entity_id == pattern and entry.detail == f"{method} {pattern}"


API_REFUSALS = [
    ("res", "GET", "/api/v1/patients", "/api/v1/patients"),
    ("res", "GET", "/api/v1/patients/{p1}", "/api/v1/patients/{patient_id}"),
    ("res", "GET", "/api/v1/alerts", "/api/v1/alerts"),
    ("t1", "GET", "/api/v1/supervision", "/api/v1/supervision"),
    ("t1", "GET", "/api/v1/export", "/api/v1/export"),
    ("sup1", "POST", "/api/v1/patients/{p1}/sessions", "/api/v1/patients/{patient_id}/sessions"),
]


@pytest.mark.parametrize(("user", "method", "url", "pattern"), API_REFUSALS)
def test_api_role_refusals_are_audited(
    clinic: Clinic, user: str, method: str, url: str, pattern: str
) -> None:
    concrete = url.format(p1=clinic.patients["p1"])
    assert api(clinic, user).request(method, concrete).status_code == 403
    [entry] = _refusals(clinic)
    assert (entry.actor, entry.entity, entry.entity_id) == (
        f"{clinic_role(clinic, user)}:{user}",
        "route",
        pattern,
    )
    assert entry.detail == f"{method} {pattern}"


def clinic_role(clinic: Clinic, user: str) -> str:
    with clinic.db.read() as s:
        found = repo.get_user(s, clinic.users[user])
        assert found is not None
        return found.role


def test_caseload_refusals_name_the_patient_and_the_route(clinic: Clinic) -> None:
    other = clinic.patients["p2"]
    assert login(clinic.app, "t1").get(f"/patients/{other}").status_code == 403
    assert api(clinic, "t1").get(f"/api/v1/patients/{other}").status_code == 403
    entries = _refusals(clinic)
    assert [(e.entity, e.entity_id, e.patient_id) for e in entries] == [
        ("patient", str(other), other)
    ] * 2
    assert [e.detail for e in entries] == [
        "GET /patients/{patient_id}",
        "GET /api/v1/patients/{patient_id}",
    ]


# -- finding 6: list reads record the patients they showed --------------------------------
def _newest(clinic: Clinic, entity: str) -> list[int]:
    with clinic.db.read() as s:
        query = select(AuditEntry).where(AuditEntry.entity == entity)
        entry = s.scalars(query.order_by(AuditEntry.id.desc()).limit(1)).one()
        return repo.audited_patients(s, entry.id)


def test_list_reads_record_the_patients_shown(clinic: Clinic) -> None:
    p1, p2 = clinic.patients["p1"], clinic.patients["p2"]
    login(clinic.app, "t1").get("/caseload")
    assert _newest(clinic, "caseload") == [p1]
    login(clinic.app, "admin").get("/caseload")
    assert _newest(clinic, "caseload") == [p1, p2]
    assert api(clinic, "sup2").get("/api/v1/patients").status_code == 200
    assert _newest(clinic, "caseload") == [p2]
    login(clinic.app, "admin").get("/admin")
    assert _newest(clinic, "patient-list") == [p1, p2]

    therapist = api(clinic, "t1")
    token = therapist.post(f"/api/v1/patients/{p1}/sessions").json()["token"]
    answers = {"answers": full_answers(4, rupture=1)}
    assert Client(clinic.app).post(f"/api/v1/links/{token}/responses", json=answers)
    assert len(api(clinic, "admin").get("/api/v1/alerts").json()) == 1
    assert _newest(clinic, "alerts") == [p1]
    assert api(clinic, "res").get("/api/v1/export?format=csv").status_code == 200
    assert _newest(clinic, "deidentified") == [p1]


def test_who_saw_a_patient(clinic: Clinic) -> None:
    p1, p2 = clinic.patients["p1"], clinic.patients["p2"]
    login(clinic.app, "t1")  # lands on the caseload
    t2 = login(clinic.app, "t2")
    login(clinic.app, "sup1").get(f"/patients/{p1}")
    t2.get(f"/patients/{p1}")  # refused, and recorded as such
    with clinic.db.read() as s:
        trail = [(e.actor, e.action, e.entity) for e in repo.patient_audit_trail(s, p1)]
        other = [(e.actor, e.entity) for e in repo.patient_audit_trail(s, p2)]
    assert trail == [
        ("therapist:t1", "read", "caseload"),
        ("supervisor:sup1", "read", "patient"),
        ("therapist:t2", "refused", "patient"),
    ]
    assert other == [("therapist:t2", "caseload")]
