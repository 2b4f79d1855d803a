"""Alembic migrations of the clinic database (run with ``alliance db upgrade``)."""
