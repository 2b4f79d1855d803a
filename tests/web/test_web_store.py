"""Storage: migrations, single-use hashed links, append-only audit log (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import inspect, select, text
from sqlalchemy.exc import DBAPIError
from webclinic import Clinic, new_link

from alliance.store import repo
from alliance.store.models import AuditEntry, AuditLogIsAppendOnly, Link


def test_migrations_create_every_table(clinic: Clinic) -> None:
    tables = set(inspect(clinic.db.engine).get_table_names())
    expected = {"users", "patients", "sessions", "links", "responses", "alerts", "audit_log"}
    assert expected <= tables
    assert "alembic_version" in tables


def test_link_tokens_are_stored_hashed_and_work_once(clinic: Clinic) -> None:
    token = new_link(clinic)
    with clinic.db.read() as s:
        stored = s.scalars(select(Link.token_hash)).all()
    assert token not in stored and repo.hash_token(token) in stored
    with clinic.db.write() as s:
        repo.consume_link(s, repo.open_link(s, token))
    with clinic.db.read() as s, pytest.raises(repo.LinkUnusable) as err:
        repo.open_link(s, token)
    assert err.value.reason == "used"


def test_second_consumption_of_the_same_link_is_refused(clinic: Clinic) -> None:
    token = new_link(clinic)
    with clinic.db.read() as s:
        link = repo.open_link(s, token)
    with clinic.db.write() as s:
        repo.consume_link(s, link)
    with clinic.db.write() as s, pytest.raises(repo.LinkUnusable):
        repo.consume_link(s, link)


def test_expired_link_is_refused(clinic: Clinic) -> None:
    with clinic.db.write() as s:
        patient = repo.get_patient(s, clinic.patients["p1"])
        session = repo.create_session(s, patient, None)
        token = repo.issue_link(s, session, ttl=timedelta(seconds=-1))
    with clinic.db.read() as s, pytest.raises(repo.LinkUnusable) as err:
        repo.open_link(s, token)
    assert err.value.reason == "expired"


def test_audit_log_refuses_update_and_delete_in_the_database(clinic: Clinic) -> None:
    with clinic.db.write() as s:
        repo.audit(s, None, "read", "patient", 1, patient_id=1, actor="test")
    for statement in ("UPDATE audit_log SET action = 'x'", "DELETE FROM audit_log"):
        with pytest.raises(DBAPIError, match="append-only"), clinic.db.write() as s:
            s.execute(text(statement))
    with clinic.db.read() as s:
        assert s.scalar(select(AuditEntry.action).where(AuditEntry.actor == "test")) == "read"


def test_audit_log_refuses_orm_changes(clinic: Clinic) -> None:
    with clinic.db.write() as s:
        repo.audit(s, None, "read", "patient", 1, actor="orm")
    with pytest.raises(AuditLogIsAppendOnly), clinic.db.write() as s:
        entry = s.scalars(select(AuditEntry).where(AuditEntry.actor == "orm")).one()
        entry.action = "changed"
        s.flush()


def test_duplicate_username_and_bad_role_are_rejected(clinic: Clinic) -> None:
    with pytest.raises(repo.Conflict, match="username"), clinic.db.write() as s:
        repo.create_user(s, "t1", "x", "therapist")
    with pytest.raises(ValueError, match="role: must be one of"), clinic.db.write() as s:
        repo.create_user(s, "new", "x", "wizard")
    with clinic.db.read() as s:
        assert repo.user_by_name(s, "new") is None


def test_new_sqlite_file_is_private(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from alliance.store.db import Database

    path = tmp_path / "private.db"
    Database(f"sqlite:///{path}").dispose()
    assert path.stat().st_mode & 0o077 == 0
