"""The shell commands: ``alliance db upgrade``, ``alliance users create``, ``alliance demo``."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, inspect
from typer.testing import CliRunner
from webclinic import SECRET

from alliance.cli.main import app
from alliance.web.app import create_app

runner = CliRunner()


def test_db_upgrade_creates_the_schema(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'prod.db'}"
    result = runner.invoke(app, ["db", "upgrade", "--database-url", url])
    assert result.exit_code == 0, result.output
    assert "newest schema" in result.output
    assert "audit_log" in inspect(create_engine(url)).get_table_names()


def test_users_create_with_token_then_api_login(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'prod.db'}"
    args = ["users", "create", "dr-a", "--role", "therapist", "--password", "long password"]
    result = runner.invoke(app, [*args, "--token", "--database-url", url])
    assert result.exit_code == 0, result.output
    token = re.search(r"API token \(shown once\): (\S+)", result.output)
    assert token
    from fastapi.testclient import TestClient

    client = TestClient(create_app(url, secret_key=SECRET))
    me = client.get("/api/v1/me", headers={"Authorization": f"Bearer {token.group(1)}"})
    assert me.json()["username"] == "dr-a"


def test_users_create_rejects_bad_input(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'prod.db'}"
    bad_role = runner.invoke(
        app,
        [
            "users",
            "create",
            "x",
            "--role",
            "wizard",
            "--password",
            "long password",
            "--database-url",
            url,
        ],
    )
    assert bad_role.exit_code == 2 and "role: must be one of" in bad_role.output
    short = runner.invoke(
        app,
        ["users", "create", "y", "--role", "admin", "--password", "short", "--database-url", url],
    )
    assert short.exit_code == 2 and "password: must be at least 8 characters" in short.output


@pytest.mark.slow
def test_demo_starts_a_filled_clinic(tmp_path: Path) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    db = tmp_path / "demo.db"
    env = {**os.environ, "ALLIANCE_HOME": str(tmp_path)}
    cmd = [sys.executable, "-m", "alliance.cli.main", "demo", "--port", str(port), "--db", str(db)]
    if not Path(sys.executable).with_name("alliance").exists():
        pytest.skip("alliance entry point not installed")
    cmd = [
        str(Path(sys.executable).with_name("alliance")),
        "demo",
        "--port",
        str(port),
        "--db",
        str(db),
    ]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        ready = False
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                ready = httpx.get(base + "/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                ready = False
            if ready:
                break
            time.sleep(0.3)
        assert ready, "demo did not answer /healthz"
        client = httpx.Client(base_url=base, follow_redirects=True)
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").text)
        assert csrf
        page = client.post(
            "/login",
            data={
                "username": "therapist1",
                "password": "demo-password",
                "csrf_token": csrf.group(1),
            },
        )
        assert page.status_code == 200 and "Caseload" in page.text
        assert len(re.findall(r'href="/patients/\d+"', page.text)) >= 5
        assert 'class="badge"' in page.text  # open alerts in the simulated clinic
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            out, _ = proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
    text = out.decode()
    assert f"http://127.0.0.1:{port}/" in text
    assert "therapist1" in text and "demo-password" in text
