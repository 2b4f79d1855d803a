"""Deployment on several workers: the secret key and the migrations are created once, safely,
however many workers start at the same moment on a fresh data directory and database."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from live_server import free_port
from sqlalchemy import select
from webclinic import SECRET, close, drop_pg_database, fresh_pg_database, full_answers, seed

from alliance.store import migrate, repo
from alliance.store.db import Database, make_engine
from alliance.store.models import Link, Response
from alliance.web.app import create_app
from alliance.web.security import SecretKeyError, Signer, load_secret_key

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


# -- several workers on PostgreSQL, one killed with SIGKILL under load ---------------------
N_LINKS = 160


def _children(pid: int) -> list[int]:
    """The worker processes of the uvicorn parent (its children, minus helpers)."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
            if b"resource_tracker" not in cmdline:
                found.append(int(child))
    return found


def _serve(url: str, port: int, home: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "ALLIANCE_DATABASE_URL": url,
        "ALLIANCE_SECRET_KEY": SECRET,
        "ALLIANCE_HOME": str(home),
    }
    cmd = [sys.executable, "-c", "from alliance.cli.main import app; app()", "serve"]
    proc = subprocess.Popen(
        [*cmd, "--port", str(port), "--workers", "3"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            ready = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
            if ready and len(_children(proc.pid)) >= 3:
                return proc
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError("the clinic with 3 workers did not start")


@pytest.mark.postgres
@pytest.mark.timeout(120)
def test_three_workers_survive_a_sigkill_and_store_every_ack_once(
    pg_server: str, tmp_path: Path
) -> None:
    url, name = fresh_pg_database()
    try:
        _kill_one_of_three(url, tmp_path)
    finally:
        drop_pg_database(name)


def _kill_one_of_three(url: str, tmp_path: Path) -> None:
    app = create_app(url, secret_key=SECRET)
    clinic = seed(app)
    with clinic.db.write() as s:
        patient = repo.get_patient(s, clinic.patients["p1"])
        tokens = [repo.issue_link(s, repo.create_session(s, patient, None)) for _ in range(N_LINKS)]
    close(app)
    port = free_port()
    server = _serve(url, port, tmp_path)
    signer = Signer(SECRET)
    acknowledged: list[str] = []
    views = {"before": 0, "after": 0, "failed_after": 0}
    killed: list[int] = []
    lock = threading.Lock()
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=15)
    bearer = {"Authorization": f"Bearer {clinic.tokens['t1']}"}

    def submit(token: str) -> None:
        data = dict(full_answers(), csrf_token=signer.csrf_token(repo.hash_token(token)))
        try:
            reply = client.post(f"/f/{token}", data=data)
            view = client.get("/api/v1/patients", headers=bearer)
        except httpx.HTTPError:
            return  # in flight on the killed worker: not acknowledged
        with lock:
            if reply.status_code < 400 and "Thank you" in reply.text:
                acknowledged.append(token)
            phase = "after" if killed else "before"
            views[phase] += 1
            if killed and view.status_code != 200:
                views["failed_after"] += 1

    def killer() -> None:
        while len(acknowledged) < 30:
            time.sleep(0.005)
        victim = _children(server.pid)[0]
        os.kill(victim, signal.SIGKILL)
        killed.append(victim)

    kill_thread = threading.Thread(target=killer)
    kill_thread.start()
    try:
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(submit, tokens))
        kill_thread.join(timeout=30)
        after = [client.get("/api/v1/patients", headers=bearer).status_code for _ in range(20)]
    finally:
        client.close()
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
    check = Database(url)
    with check.read() as s:
        used = set(s.scalars(select(Link.token_hash).where(Link.used_at.is_not(None))))
        stored = s.execute(
            select(Link.token_hash).join(Response, Link.session_id == Response.session_id)
        ).all()
    check.dispose()
    per_link = Counter(h for (h,) in stored)
    acked = {repo.hash_token(t) for t in acknowledged}
    lost = [h for h in acked if per_link.get(h) != 2]  # WAI-SR and the rupture question
    duplicates = [h for h, n in per_link.items() if n > 2]
    print(
        f"\nworkers=3 links={N_LINKS} acknowledged={len(acked)} stored={len(per_link)}"
        f" lost={len(lost)} duplicates={len(duplicates)} kills_survived={len(killed)}"
        f" views_after_kill={views['after']} failed_views_after_kill={views['failed_after']}"
    )
    assert killed, "the kill must land during the burst"
    assert 30 <= len(acked) < N_LINKS or len(acked) == N_LINKS
    assert not lost and not duplicates
    assert set(per_link) == used  # a used link always has its answers, nothing half-stored
    assert views["after"] > 0 and views["failed_after"] == 0
    assert after == [200] * 20  # the other workers kept serving
