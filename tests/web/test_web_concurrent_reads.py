"""Audited reads stay off the write path (issue 13, deployment): the read takes no write
lock, its audit rows follow in a short write of their own, and a database that stays locked
answers 503 with Retry-After, never 500."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest
from sqlalchemy import func, select
from webclinic import SECRET, Client, login, seed

from alliance.store import db as store_db
from alliance.store import migrate, repo
from alliance.store.models import AuditEntry
from alliance.web.app import create_app


def test_an_audited_read_lets_writers_commit_meanwhile_and_then_stores_its_audit(
    tmp_path: Path,
) -> None:
    database = store_db.Database(f"sqlite:///{tmp_path / 'c.db'}")
    migrate.upgrade(database.engine)
    committed = threading.Event()

    def writer() -> None:
        with database.write() as s:
            repo.audit(s, None, "write", "test", actor="writer")
        committed.set()

    with database.audited() as s:
        repo.audit(s, None, "read", "test", actor="reader")
        thread = threading.Thread(target=writer)
        thread.start()
        # With the read inside BEGIN IMMEDIATE the writer would wait for this block.
        assert committed.wait(5), "a writer could not commit during an audited read"
    thread.join()
    with database.read() as s:
        actors = s.scalars(select(AuditEntry.actor).order_by(AuditEntry.id)).all()
    assert actors == ["writer", "reader"]  # the read's audit row is stored after it
    database.dispose()


def test_a_page_read_while_the_database_stays_locked_is_a_503_not_a_500(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_db, "BUSY_TIMEOUT_MS", 300)
    path = tmp_path / "clinic.db"
    app = create_app(f"sqlite:///{path}", secret_key=SECRET)
    clinic = seed(app)
    browser = login(app, "t1")
    api_client = Client(app, raise_server_exceptions=False)
    with app.state.db.read() as s:
        before = s.scalar(select(func.count()).select_from(AuditEntry))
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another process keeps the write lock
    try:
        page = browser.get("/caseload")
        bearer = {"Authorization": f"Bearer {clinic.tokens['t1']}"}
        api = api_client.get("/api/v1/patients", headers=bearer)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    for response in (page, api):
        assert response.status_code == 503, response.text
        assert response.headers["retry-after"] == "2" and "busy" in response.text
    with app.state.db.read() as s:  # nothing was shown, so nothing was audited either
        assert s.scalar(select(func.count()).select_from(AuditEntry)) == before
    assert browser.get("/caseload").status_code == 200
    app.state.db.dispose()
