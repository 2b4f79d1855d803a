"""Run the clinic under a real uvicorn subprocess for tests (end-to-end, durability)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """Start ``alliance.web.app:create_app`` on 127.0.0.1:``port`` with ``env`` added to
    the environment; return once ``/healthz`` answers 200, or fail with the server's log."""
    cmd = [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        "alliance.web.app:create_app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    proc = subprocess.Popen(
        cmd, env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    log = proc.stderr.read().decode() if proc.stderr else ""
    raise RuntimeError(f"server did not start: {log}")
