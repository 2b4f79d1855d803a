"""Engine and session factory: SQLite (WAL, synchronous=FULL) by default, PostgreSQL by URL.

The database URL comes from the argument, else ``ALLIANCE_DATABASE_URL``, else a SQLite file
``alliance.db`` under ``$ALLIANCE_HOME`` (default ``~/.local/share/alliance``).

SQLite connections run in WAL mode with ``synchronous=FULL`` so that a committed
transaction is on disk before ``commit()`` returns; write transactions start with
``BEGIN IMMEDIATE`` (see :func:`write_session`) so concurrent writers queue on the busy
timeout instead of failing on a stale snapshot.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from alliance.home import alliance_home

BUSY_TIMEOUT_MS = 30_000
#: ``Session.info`` key of the audit rows an :meth:`Database.audited` read queues.
AUDIT_QUEUE = "alliance.audit_queue"


class DatabaseBusy(RuntimeError):
    """The database stayed locked for the whole busy timeout (answered 503, retry later)."""


@contextmanager
def _busy_as_error() -> Iterator[None]:
    """SQLite's "database is locked" after the busy timeout as :class:`DatabaseBusy`
    (raised from None: the statement and its parameters stay out of the error)."""
    try:
        yield
    except OperationalError as exc:
        if "database is locked" not in str(exc.orig):
            raise
        raise DatabaseBusy("the database is busy; try again shortly") from None


def default_database_url() -> str:
    """``ALLIANCE_DATABASE_URL`` if set, else a SQLite file in the data directory."""
    url = os.environ.get("ALLIANCE_DATABASE_URL")
    if url:
        return url
    home = alliance_home()
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    return f"sqlite:///{home / 'alliance.db'}"


def sqlite_url(path: str | Path) -> str:
    """A SQLAlchemy URL for a SQLite file."""
    return f"sqlite:///{Path(path).resolve()}"


def _use_wal(cursor: Any) -> None:
    """Switch the file to WAL (it stays so). Several processes opening a fresh file at once
    race for the switch, and SQLite answers the losers "locked" without waiting for its
    busy timeout; so the switch is retried within that timeout."""
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            if cursor.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Take over transaction control from pysqlite so BEGIN is ours to emit.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        _use_wal(cursor)
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")


def _create_private(path: str | None) -> None:
    """Create a new SQLite file readable by its owner only (health data); SQLite gives its
    WAL and shared-memory files the same permissions."""
    if not path or path == ":memory:" or path.startswith("file:"):
        return
    target = Path(path)
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(target, os.O_WRONLY | os.O_CREAT, 0o600))


def make_engine(url: str | None = None, **kwargs: Any) -> Engine:
    """Create an engine for the URL (or the default), configured for durability."""
    url = url or default_database_url()
    # Statement parameters are patient data: keep them out of exception text and logs.
    kwargs.setdefault("hide_parameters", True)
    if url.startswith("sqlite"):
        _create_private(make_url(url).database)
        connect_args = {"check_same_thread": False, "timeout": BUSY_TIMEOUT_MS / 1000}
        engine = create_engine(
            url, connect_args=connect_args, pool_size=20, max_overflow=20, **kwargs
        )
        _configure_sqlite(engine)
        return engine
    kwargs.setdefault("pool_size", 20)
    kwargs.setdefault("max_overflow", 20)
    return create_engine(url, pool_pre_ping=True, **kwargs)


class Database:
    """An engine with read and write session factories."""

    def __init__(self, url: str | None = None) -> None:
        self.engine = make_engine(url)
        self.url = self.engine.url.render_as_string(hide_password=False)
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        writer = self.engine.execution_options(sqlite_begin="IMMEDIATE")
        self._read = sessionmaker(self.engine, expire_on_commit=False)
        self._write = sessionmaker(writer, expire_on_commit=False)

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A session for reads (and audit writes); committed on success."""
        with _busy_as_error(), self._read() as session, session.begin():
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A write transaction, committed (durably) before the block's caller continues."""
        with _busy_as_error(), self._write() as session, session.begin():
            yield session

    @contextmanager
    def audited(self) -> Iterator[Session]:
        """A read of patient data whose audit rows (``repo.audit``) are written after it,
        in a short write transaction of their own, before the block's caller continues.

        The read itself takes no write lock: on SQLite a reader inside ``BEGIN IMMEDIATE``
        queues behind every writer and holds the lock while it renders. If the audit rows
        cannot be stored, the block's caller gets the error, not the data.
        """
        queued: list[Callable[[Session], None]] = []
        with _busy_as_error(), self._read() as session:
            session.info[AUDIT_QUEUE] = queued
            with session.begin():
                yield session
        if queued:
            with self.write() as s:
                for add in queued:
                    add(s)

    def dispose(self) -> None:
        self.engine.dispose()
