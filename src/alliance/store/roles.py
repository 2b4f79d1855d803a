"""PostgreSQL: let the clinic run as a role that does not own its tables.

The role that runs ``alliance db upgrade`` owns the tables and could disable or drop the
audit log's triggers. The role the clinic serves under gets only what the clinic needs
(:func:`grant_app_role`): reading and changing the rows of the clinic's tables, reading and
appending to the audit tables (:data:`~alliance.store.models.APPEND_ONLY_TABLES`), reading
the schema revision, and drawing ids from the sequences. It cannot TRUNCATE, ALTER, DROP,
disable triggers, create tables or move a sequence back.
"""

from __future__ import annotations

import re

from sqlalchemy import Connection, Engine, text

from alliance.store.models import APPEND_ONLY_TABLES

ROLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
READ_ONLY_TABLES = ("alembic_version",)


class GrantRefused(ValueError):
    """The role cannot be made the clinic's restricted role (the message says why)."""


def privileges_of(table: str) -> str:
    """What the clinic's role may do on ``table``."""
    if table in APPEND_ONLY_TABLES:
        return "SELECT, INSERT"
    if table in READ_ONLY_TABLES:
        return "SELECT"
    return "SELECT, INSERT, UPDATE, DELETE"


def _check_role(conn: Connection, role: str) -> None:
    """Refuse a role that does not exist, owns the tables or bypasses privileges."""
    found = conn.execute(
        text("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = :role"), {"role": role}
    ).first()
    if found is None:
        raise GrantRefused(f"role: no role named {role!r} (create it first: CREATE ROLE ...)")
    owners = conn.scalar(
        text(
            "SELECT count(*) FROM pg_tables WHERE schemaname = current_schema() "
            "AND pg_has_role(:role, tableowner, 'MEMBER')"
        ),
        {"role": role},
    )
    if owners:
        raise GrantRefused(
            f"role: {role!r} owns the clinic's tables (or is a member of their owner); "
            "the clinic's role must be another one"
        )
    if found.rolsuper:
        raise GrantRefused(f"role: {role!r} is a superuser, which no privilege restricts")


def grant_app_role(engine: Engine, role: str) -> list[str]:
    """Give ``role`` exactly the clinic's privileges on the current schema's tables and
    sequences (revoking any others first); returns the tables granted, with what.

    Run it as the owner after every ``alliance db upgrade`` (``--grant ROLE`` does), so
    that tables added by a migration are granted too.
    """
    if engine.dialect.name != "postgresql":
        raise GrantRefused(
            "db grant: roles exist on PostgreSQL only; on SQLite protect the database file"
        )
    if not ROLE_NAME.fullmatch(role):
        raise GrantRefused("role: must be a role name of letters, digits and _ (at most 63)")
    quote = engine.dialect.identifier_preparer.quote
    with engine.begin() as conn:
        _check_role(conn, role)
        schema = quote(str(conn.scalar(text("SELECT current_schema()"))))
        who = quote(role)
        tables = conn.scalars(
            text("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
        ).all()
        conn.execute(text(f"REVOKE ALL ON ALL TABLES IN SCHEMA {schema} FROM {who}"))
        conn.execute(text(f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA {schema} FROM {who}"))
        conn.execute(text(f"GRANT USAGE ON SCHEMA {schema} TO {who}"))
        granted = []
        for table in sorted(tables):
            privileges = privileges_of(table)
            conn.execute(text(f"GRANT {privileges} ON {schema}.{quote(table)} TO {who}"))
            granted.append(f"{table}: {privileges}")
        conn.execute(text(f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA {schema} TO {who}"))
    return granted
