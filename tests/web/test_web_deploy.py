"""Deployment on several workers: the secret key and the migrations are created once, safely,
however many workers start at the same moment on a fresh data directory and database."""

from __future__ import annotations

import multiprocessing
import os
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from webclinic import drop_pg_database, fresh_pg_database

from alliance.store import migrate
from alliance.store.db import make_engine
from alliance.web.security import SecretKeyError, load_secret_key

FORK = multiprocessing.get_context("fork")


def _at_once(n: int, job: Callable[[str], str], arg: str) -> list[tuple[str, str]]:
    """Run ``job(arg)`` in ``n`` processes released together; ("ok", result) or ("error",
    traceback) per process (a process that died without answering counts as an error)."""
    barrier = FORK.Barrier(n)
    results: Any = FORK.Queue()

    def run() -> None:
        barrier.wait()
        try:
            results.put(("ok", job(arg)))
        except BaseException:
            results.put(("error", traceback.format_exc()))

    procs = [FORK.Process(target=run) for _ in range(n)]
    for proc in procs:
        proc.start()
    answers = [results.get(timeout=120) for _ in procs]
    for proc in procs:
        proc.join(timeout=30)
        if proc.exitcode != 0:
            answers.append(("error", f"process exit code {proc.exitcode}"))
    return answers


def _key_in(home: str) -> str:
    os.environ.pop("ALLIANCE_SECRET_KEY", None)
    os.environ["ALLIANCE_HOME"] = home
    return load_secret_key()


@pytest.mark.parametrize("round_", range(8))
def test_workers_starting_together_share_one_complete_key(tmp_path: Path, round_: int) -> None:
    answers = _at_once(24, _key_in, str(tmp_path / "fresh-home"))
    errors = [a for kind, a in answers if kind == "error"]
    assert not errors, errors[0]
    keys = {key for _kind, key in answers}
    assert len(keys) == 1 and len(keys.pop()) >= 32
    key_file = tmp_path / "fresh-home" / "secret_key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in key_file.parent.iterdir()] == ["secret_key"]  # no temp file left


@pytest.mark.parametrize("content", ["", "\n", "short"])
def test_an_empty_or_truncated_key_file_refuses_to_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: str
) -> None:
    monkeypatch.delenv("ALLIANCE_SECRET_KEY", raising=False)
    monkeypatch.setenv("ALLIANCE_HOME", str(tmp_path))
    (tmp_path / "secret_key").write_text(content)
    with pytest.raises(SecretKeyError, match="secret_key"):
        load_secret_key()
    assert (tmp_path / "secret_key").read_text() == content  # left for the operator


def _upgrade(url: str) -> str:
    engine = make_engine(url)
    try:
        migrate.upgrade(engine)
        migrate.require_current(engine)
    finally:
        engine.dispose()
    return "at head"


def _all_upgraded(url: str, n: int) -> None:
    answers = _at_once(n, _upgrade, url)
    errors = [a for kind, a in answers if kind == "error"]
    assert not errors, errors[0]
    engine = make_engine(url)
    migrate.require_current(engine)
    engine.dispose()


@pytest.mark.parametrize("round_", range(3))
def test_concurrent_upgrades_of_a_fresh_sqlite_file(tmp_path: Path, round_: int) -> None:
    _all_upgraded(f"sqlite:///{tmp_path / 'clinic.db'}", 6)


@pytest.mark.postgres
@pytest.mark.parametrize("round_", range(3))
def test_concurrent_upgrades_of_a_fresh_postgres_database(pg_server: str, round_: int) -> None:
    url, name = fresh_pg_database()
    try:
        _all_upgraded(url, 6)
    finally:
        drop_pg_database(name)
