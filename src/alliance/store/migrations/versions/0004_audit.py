"""audit log append-only against INSERT-over-existing and TRUNCATE; the patients a list read
showed (audit_log_patients)

SQLite's REPLACE (``REPLACE INTO``, ``INSERT OR REPLACE``) deletes the row it collides with
without firing delete triggers, so a BEFORE INSERT trigger refuses an insert whose id is
taken (an insert without an id sees ``NEW.id = -1`` there; an AFTER INSERT trigger refuses
ids below 1 so that no row can ever sit at -1). PostgreSQL's TRUNCATE fires no row
triggers: a statement trigger refuses it. ``audit_log_patients`` gets the same guards.

Revision ID: 0004_audit
Revises: 0003
Create Date: 2026-12-03 14:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_audit"
down_revision = "0003"
branch_labels = None
depends_on = None

_REFUSE = "SELECT RAISE(ABORT, 'audit log is append-only')"
_SQLITE_TRIGGERS = {
    "audit_log_no_replace": "BEFORE INSERT ON audit_log WHEN NEW.id > 0 AND EXISTS "
    "(SELECT 1 FROM audit_log WHERE id = NEW.id)",
    "audit_log_positive_id": "AFTER INSERT ON audit_log WHEN NEW.id < 1",
    "audit_log_patients_no_replace": "BEFORE INSERT ON audit_log_patients WHEN EXISTS "
    "(SELECT 1 FROM audit_log_patients "
    "WHERE audit_id = NEW.audit_id AND patient_id = NEW.patient_id)",
    "audit_log_patients_no_update": "BEFORE UPDATE ON audit_log_patients",
    "audit_log_patients_no_delete": "BEFORE DELETE ON audit_log_patients",
}
# audit_log_append_only() (0001) raises whatever fired it: rows and statements alike.
_PG_TRIGGERS = {  # name: (table, timing and events, level)
    "audit_log_no_truncate": ("audit_log", "BEFORE TRUNCATE", "STATEMENT"),
    "audit_log_patients_no_change": ("audit_log_patients", "BEFORE UPDATE OR DELETE", "ROW"),
    "audit_log_patients_no_truncate": ("audit_log_patients", "BEFORE TRUNCATE", "STATEMENT"),
}


def upgrade() -> None:
    op.create_table(
        "audit_log_patients",
        sa.Column("audit_id", sa.Integer(), nullable=False),
        sa.Column("patient_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["audit_id"], ["audit_log.id"]),
        sa.PrimaryKeyConstraint("audit_id", "patient_id"),
        sqlite_with_rowid=False,
    )
    op.create_index(op.f("ix_audit_log_patients_patient_id"), "audit_log_patients", ["patient_id"])
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for name, spec in _SQLITE_TRIGGERS.items():
            op.execute(f"CREATE TRIGGER {name} {spec} BEGIN {_REFUSE}; END")
    elif dialect == "postgresql":
        for name, (table, when, each) in _PG_TRIGGERS.items():
            op.execute(
                f"CREATE TRIGGER {name} {when} ON {table} FOR EACH {each} "
                "EXECUTE FUNCTION audit_log_append_only()"
            )


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for name in _SQLITE_TRIGGERS:
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
    elif dialect == "postgresql":
        for name, (table, _when, _each) in _PG_TRIGGERS.items():
            op.execute(f"DROP TRIGGER IF EXISTS {name} ON {table}")
    op.drop_index(op.f("ix_audit_log_patients_patient_id"), table_name="audit_log_patients")
    op.drop_table("audit_log_patients")
