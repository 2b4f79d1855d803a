"""Acknowledged submissions survive a SIGKILL of the server (real uvicorn subprocess)."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from live_server import free_port, start_server
from sqlalchemy import select
from webclinic import SECRET, full_answers, seed

from alliance.store import repo
from alliance.store.models import Link, Response
from alliance.web.app import create_app
from alliance.web.security import Signer

N_LINKS = 300


def start_clinic(url: str, port: int, home: Path) -> subprocess.Popen[bytes]:
    env = {"ALLIANCE_DATABASE_URL": url, "ALLIANCE_SECRET_KEY": SECRET, "ALLIANCE_HOME": str(home)}
    return start_server(port, env)


@pytest.mark.slow
def test_every_acknowledged_submission_survives_sigkill(database_url: str, tmp_path: Path) -> None:
    app = create_app(database_url, secret_key=SECRET)
    clinic = seed(app)
    tokens = []
    with clinic.db.write() as s:
        patient = repo.get_patient(s, clinic.patients["p1"])
        for _ in range(N_LINKS):
            tokens.append(repo.issue_link(s, repo.create_session(s, patient, None)))
    app.state.db.dispose()
    signer = Signer(SECRET)
    port = free_port()
    server = start_clinic(database_url, port, tmp_path)
    acknowledged: list[str] = []
    lock = threading.Lock()
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10)

    def submit(token: str) -> None:
        data = dict(full_answers(), csrf_token=signer.csrf_token(repo.hash_token(token)))
        try:
            reply = client.post(f"/f/{token}", data=data)
        except httpx.HTTPError:
            return
        if reply.status_code == 200 and "Thank you" in reply.text:
            with lock:
                acknowledged.append(token)

    def killer() -> None:
        while len(acknowledged) < 40:
            time.sleep(0.005)
        server.send_signal(signal.SIGKILL)

    kill_thread = threading.Thread(target=killer)
    kill_thread.start()
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(submit, tokens))
    kill_thread.join()
    client.close()
    server.wait(timeout=10)
    assert server.returncode == -signal.SIGKILL
    assert 40 <= len(acknowledged) < N_LINKS, "the kill must land during the burst"

    restarted = start_clinic(database_url, free_port(), tmp_path)
    try:
        check = create_app(database_url, secret_key=SECRET, migrate_db=False)
        with check.state.db.read() as s:
            used = {t for t in s.scalars(select(Link.token_hash).where(Link.used_at.is_not(None)))}
            stored = s.execute(
                select(Response.session_id, Link.token_hash).join(
                    Link, Link.session_id == Response.session_id
                )
            ).all()
        per_link: dict[str, int] = {}
        for _session, token_hash in stored:
            per_link[token_hash] = per_link.get(token_hash, 0) + 1
        for token in acknowledged:
            assert repo.hash_token(token) in used
            assert per_link.get(repo.hash_token(token)) == 2  # WAI-SR and the rupture question
        assert set(per_link) == used  # nothing half-stored: a used link always has its answers
        check.state.db.dispose()
    finally:
        restarted.kill()
        restarted.wait(timeout=10)
