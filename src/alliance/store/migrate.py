"""Run the Alembic migrations programmatically (``alliance db upgrade``)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, inspect, text

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(url: str) -> Config:
    """An Alembic config pointing at the packaged migrations."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


# Any fixed 64-bit number: the key of the advisory lock that serialises upgraders.
UPGRADE_LOCK = 0x616C6C69616E6365  # "alliance"


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the database schema up to ``revision`` (default: the newest).

    Safe to run from several processes at once (workers starting together): the upgrade
    runs under a lock held to its commit, a PostgreSQL transaction-level advisory lock or,
    on SQLite, an exclusive transaction; a later upgrader waits, then finds the schema
    current and does nothing.
    """
    config = alembic_config(engine.url.render_as_string(hide_password=False))
    if engine.dialect.name == "sqlite":
        engine = engine.execution_options(sqlite_begin="EXCLUSIVE")
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": UPGRADE_LOCK})
        config.attributes["connection"] = conn
        command.upgrade(config, revision)


def is_current(engine: Engine) -> bool:
    """Whether the schema exists (the users table is present)."""
    return inspect(engine).has_table("users")


class SchemaNotCurrent(RuntimeError):
    """The database is not at the newest migration and the app was told not to migrate."""


def require_current(engine: Engine) -> None:
    """Refuse (``SchemaNotCurrent``) unless the database is at the newest revision: for an
    app started without migrating, e.g. as a role that may not change the schema."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    url = engine.url.render_as_string(hide_password=False)
    heads = set(ScriptDirectory.from_config(alembic_config(url)).get_heads())
    with engine.connect() as conn:
        current = set(MigrationContext.configure(conn).get_current_heads())
    if current != heads:
        found = ", ".join(sorted(current)) or "none"
        raise SchemaNotCurrent(
            f"database schema at revision {found}, the clinic needs {', '.join(sorted(heads))}:"
            " run `alliance db upgrade` as the role that owns the tables"
        )
