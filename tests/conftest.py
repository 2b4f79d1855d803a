"""Shared test fixtures: an isolated alliance home for every test."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from alliance import instruments

# CI replays the same generated examples every run (a failure there is reproducible);
# local runs draw new ones each time and keep exploring.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


@pytest.fixture(autouse=True)
def alliance_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Installed keys and text packs go to a fresh folder; overrides are dropped after."""
    home = tmp_path / "alliance-home"
    monkeypatch.setenv("ALLIANCE_HOME", str(home))
    before = dict(instruments._overrides)
    yield home
    instruments._overrides.clear()
    instruments._overrides.update(before)
