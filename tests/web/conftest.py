"""Fixtures of the clinic tests (defined in :mod:`webclinic`, shared with the test files)."""

import pytest
from webclinic import clinic, database_url, pg_server, sqlite_clinic, sqlite_url

__all__ = ["clinic", "database_url", "pg_server", "sqlite_clinic", "sqlite_url"]


@pytest.fixture(autouse=True)
def clinic_opts_in_to_unverified_alerts(monkeypatch: pytest.MonkeyPatch) -> None:
    """The test clinic schedules the post-session rupture questions (an unverified key) and
    opts in to their alerts; the default-off case has its own test."""
    monkeypatch.setenv("ALLIANCE_ALERTS_ALLOW_UNVERIFIED", "1")
