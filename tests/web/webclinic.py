"""Fixtures for the clinic: a real database (SQLite file, and PostgreSQL where the machine
runs one), the real app, seeded users and patients, and logged-in clients.

The app refreshes analytics in a background thread after each commit; the clients here
(:class:`Client`, :class:`Browser`) wait for pending refreshes before and after every
request (``app.state.analytics.drain()``), so tests see a settled clinic.
"""

from __future__ import annotations

import functools
import math
import re
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from alliance.store import migrate, repo
from alliance.store.db import Database
from alliance.store.models import Patient, TherapySession
from alliance.web.app import create_app
from alliance.web.forms import score_answers
from alliance.web.security import hash_password

PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
SECRET = "test-secret-key-for-signing-cookies-0123456789"
PASSWORD = "correct horse"
CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


def _pg_available() -> str | None:
    """None when PostgreSQL answers, else the reason it does not."""
    try:
        import psycopg

        with psycopg.connect(
            "host=127.0.0.1 port=5432 user=postgres dbname=postgres", connect_timeout=2
        ):
            return None
    except Exception as exc:  # any connection failure means: skip
        return f"PostgreSQL at 127.0.0.1:5432 not reachable ({type(exc).__name__}: {exc})"


@pytest.fixture(scope="session")
def pg_server() -> str:
    """Skip (with the reason) when no PostgreSQL server is reachable."""
    reason = _pg_available()
    if reason:
        pytest.skip(reason)
    return PG_ADMIN_URL


def fresh_pg_database() -> tuple[str, str]:
    """Create an empty PostgreSQL database; returns (url, name)."""
    import psycopg

    name = f"alliance_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(
        "host=127.0.0.1 port=5432 user=postgres dbname=postgres", autocommit=True
    ) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}", name


def drop_pg_database(name: str) -> None:
    """Drop a test database (closing stray connections)."""
    import psycopg

    with psycopg.connect(
        "host=127.0.0.1 port=5432 user=postgres dbname=postgres", autocommit=True
    ) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh database: a SQLite file, or a new PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'clinic.db'}"
        return
    request.getfixturevalue("pg_server")
    url, name = fresh_pg_database()
    yield url
    drop_pg_database(name)


def migrated(url: str) -> Iterator[Database]:
    """A database at the newest migration, closed afterwards (for fixtures without the app)."""
    db = Database(url)
    migrate.upgrade(db.engine)
    yield db
    db.dispose()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A fresh SQLite file (for page tests that need only one backend)."""
    return f"sqlite:///{tmp_path / 'clinic.db'}"


@dataclass
class Clinic:
    """The seeded clinic: user and patient ids by name."""

    app: FastAPI
    db: Database
    users: dict[str, int] = field(default_factory=dict)
    patients: dict[str, int] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)


SCHEDULE = [
    repo.ScheduleSpec("wai_sr", "client", "client"),
    repo.ScheduleSpec("psq", "patient", "client"),
    repo.ScheduleSpec("psq", "therapist", "therapist"),
]


@functools.cache
def _password_hash() -> str:
    """One argon2 hash of the test password, shared by the seeded users (saves time)."""
    return hash_password(PASSWORD)


def seed(app: FastAPI) -> Clinic:
    """Users of every role, two therapists in two teams, one patient each."""
    db: Database = app.state.db
    clinic = Clinic(app, db)
    password = _password_hash()
    with db.write() as s:
        admin = repo.create_user(s, "admin", password, "admin")
        sup1 = repo.create_user(s, "sup1", password, "supervisor")
        sup2 = repo.create_user(s, "sup2", password, "supervisor")
        t1 = repo.create_user(s, "t1", password, "therapist", "Therapist One", sup1.id)
        t2 = repo.create_user(s, "t2", password, "therapist", "Therapist Two", sup2.id)
        res = repo.create_user(s, "res", password, "researcher")
        for user in (admin, sup1, sup2, t1, t2, res):
            clinic.users[user.username] = user.id
            clinic.tokens[user.username] = repo.create_api_token(s, user, "test")
        p1 = repo.create_patient(s, "CODE-P1", t1, SCHEDULE)
        p2 = repo.create_patient(s, "CODE-P2", t2, SCHEDULE)
        clinic.patients = {"p1": p1.id, "p2": p2.id}
    return clinic


def settle(app: FastAPI) -> None:
    """Wait until the app's pending analytics refreshes are done."""
    assert app.state.analytics.drain(timeout=120), "analytics did not settle"


def close(app: FastAPI) -> None:
    """Stop the app's analytics thread and close its database."""
    settle(app)
    app.state.analytics.stop()
    app.state.db.dispose()


class Client(TestClient):
    """A TestClient that lets pending analytics settle before and after each request."""

    def request(self, *args, **kwargs):  # type: ignore[no-untyped-def, override]
        settle(self.app)  # type: ignore[arg-type]
        response = super().request(*args, **kwargs)
        settle(self.app)  # type: ignore[arg-type]
        return response


@pytest.fixture
def clinic(database_url: str) -> Iterator[Clinic]:
    """The seeded clinic on SQLite and on PostgreSQL."""
    app = create_app(database_url, secret_key=SECRET)
    yield seed(app)
    close(app)


@pytest.fixture
def sqlite_clinic(sqlite_url: str) -> Iterator[Clinic]:
    """The seeded clinic on SQLite only."""
    app = create_app(sqlite_url, secret_key=SECRET)
    yield seed(app)
    close(app)


def csrf_of(html: str) -> str:
    """The CSRF token embedded in a page."""
    match = CSRF_RE.search(html)
    assert match, "page has no CSRF token"
    return match.group(1)


class Browser:
    """A TestClient that remembers the last CSRF token it saw."""

    def __init__(self, app: FastAPI) -> None:
        self.client = Client(app)
        self.csrf = ""

    def get(self, url: str, **kw: object):  # type: ignore[no-untyped-def]
        response = self.client.get(url, **kw)  # type: ignore[arg-type]
        match = (
            CSRF_RE.search(response.text)
            if "html" in response.headers.get("content-type", "")
            else None
        )
        if match:
            self.csrf = match.group(1)
        return response

    def post(self, url: str, data: dict[str, object] | None = None, **kw: object):  # type: ignore[no-untyped-def]
        payload = {"csrf_token": self.csrf, **(data or {})}
        response = self.client.post(url, data=payload, **kw)  # type: ignore[arg-type]
        match = CSRF_RE.search(response.text)
        if match:
            self.csrf = match.group(1)
        return response


def login(app: FastAPI, username: str, password: str = PASSWORD) -> Browser:
    """A browser-like client logged in as ``username``."""
    browser = Browser(app)
    browser.get("/login")
    response = browser.post(
        "/login", {"username": username, "password": password}, follow_redirects=False
    )
    assert response.status_code == 303, response.text
    browser.get("/")
    return browser


def new_link(clinic: Clinic, patient: str = "p1") -> str:
    """A fresh single-use link token for the patient's next session."""
    with clinic.db.write() as s:
        p = repo.get_patient(s, clinic.patients[patient])
        session = repo.create_session(s, p, None)
        return repo.issue_link(s, session)


def full_answers(value: int = 4, rupture: int = 0) -> dict[str, str]:
    """A complete valid patient submission (WAI-SR and the rupture question)."""
    data = {f"wai_sr_{i}": str(value) for i in range(1, 13)}
    data["psq_1"] = str(rupture)
    if rupture:
        data["psq_2"], data["psq_3"] = "4", "2"
    return data


# -- sessions straight through the repository (no HTTP) -------------------------------------
def record_session(
    s: Session,
    patient: Patient,
    forms: Sequence[tuple[repo.ScheduleSpec, Mapping[str, str]]],
    on: date | None = None,
) -> TherapySession:
    """Add the patient's next session with these forms, validated and scored by the
    clinic's own path (:func:`alliance.web.forms.score_answers`); marks the patient stale."""
    session = repo.create_session(s, patient, None, on)
    for spec, data in forms:
        scored = score_answers(spec.instrument_id, spec.form_id, data)
        source = "therapist" if spec.respondent == "therapist" else "test"
        repo.add_response(s, session, spec, scored.items, scored.scores, source)
    return session


def answers_of(
    row: Mapping[str, object], columns: Sequence[str], prefix: str = ""
) -> dict[str, str]:
    """Form fields from a simulated row (``prefix`` + column), leaving out missing answers."""
    out = {}
    for column in columns:
        value = row.get(prefix + column)
        if value is not None and not (isinstance(value, float) and math.isnan(value)):
            out[column] = f"{float(value):g}"
    return out
