"""HTTP hardening: bodies without (or with a lying) Content-Length are limited too; an
unexpected error is logged as its type and a reference, never with patient data."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from live_server import free_port, start_server
from sqlalchemy import text
from webclinic import SECRET, Client, Clinic, full_answers, new_link, seed

from alliance.web.app import MAX_BODY, create_app

HUNDRED_MB = 100 * 1024 * 1024


def _chunks(total: int) -> Iterator[bytes]:
    """A chunked body (no Content-Length) of `total` bytes."""
    for _ in range(total // 65536 + 1):
        yield b"a" * 65536


def test_chunked_body_over_limit_is_refused_and_link_kept(sqlite_clinic: Clinic) -> None:
    token = new_link(sqlite_clinic)
    client = Client(sqlite_clinic.app)
    response = client.post(
        f"/f/{token}",
        content=_chunks(2 * MAX_BODY),
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 413
    assert "at most" in response.json()["detail"]
    assert "content-security-policy" in response.headers
    assert client.get(f"/f/{token}").status_code == 200


def _json_chunks(total: int) -> Iterator[bytes]:
    """A chunked JSON submission of about `total` bytes (a long padding string)."""
    yield b'{"answers": {}, "pad": "'
    yield from _chunks(total)
    yield b'"}'


def test_chunked_json_over_limit_to_api_is_refused_and_link_kept(sqlite_clinic: Clinic) -> None:
    token = new_link(sqlite_clinic)
    client = Client(sqlite_clinic.app)
    url = f"/api/v1/links/{token}/responses"
    big = client.post(
        url, content=_json_chunks(2 * MAX_BODY), headers={"content-type": "application/json"}
    )
    assert big.status_code == 413 and "at most" in big.json()["detail"]
    ok = client.post(url, json={"answers": full_answers()})
    assert ok.status_code == 201


def test_lying_content_length_is_refused(sqlite_clinic: Clinic) -> None:
    token = new_link(sqlite_clinic)
    client = Client(sqlite_clinic.app)
    body = b"a" * (2 * MAX_BODY)
    response = client.post(
        f"/f/{token}",
        content=body,
        headers={"content-type": "application/x-www-form-urlencoded", "content-length": "10"},
    )
    assert response.status_code == 413


def _failing_write(app: FastAPI) -> None:
    """A route (added for the test) whose real database write fails with patient data in
    the statement, its parameters and (on PostgreSQL) the server's DETAIL: a duplicate code."""

    def boom() -> None:
        with app.state.db.write() as s:
            s.execute(
                text(
                    "INSERT INTO patients (code, research_id, therapist_id, language, active, "
                    "alerts_stale, status, status_reason, created_at) SELECT code, "
                    "'R-SECRET-9', therapist_id, language, active, alerts_stale, status, "
                    "status_reason, created_at FROM patients WHERE code = :code"
                ),
                {"code": "CODE-P1"},
            )

    app.add_api_route("/api/v1/test-boom", boom, methods=["POST"])
    app.add_api_route("/test-boom", boom, methods=["POST"])


def test_a_database_error_logs_its_type_and_a_reference_never_patient_data(
    clinic: Clinic, caplog: pytest.LogCaptureFixture
) -> None:
    _failing_write(clinic.app)
    client = Client(clinic.app, raise_server_exceptions=False)
    caplog.set_level(logging.DEBUG)
    for path in ("/api/v1/test-boom", "/test-boom"):
        response = client.post(path)
        assert response.status_code == 500
        ref = re.search(r"reference ([0-9a-f]{8})", response.text)
        assert ref, response.text
        assert "CODE-P1" not in response.text and "INSERT" not in response.text
        logged = [r for r in caplog.records if ref.group(1) in r.getMessage()]
        assert len(logged) == 1 and "IntegrityError" in logged[0].getMessage()
    everything = "\n".join(
        r.getMessage() + (logging.Formatter().formatException(r.exc_info) if r.exc_info else "")
        for r in caplog.records
    )
    for secret in ("CODE-P1", "R-SECRET-9", "parameters", "INSERT INTO"):
        assert secret not in everything


def test_api_docs_list_every_operation_without_any_script(sqlite_clinic: Clinic) -> None:
    # Before: Swagger UI from a CDN started by an inline script, both blocked by our CSP.
    client = Client(sqlite_clinic.app)
    page = client.get("/api/docs")
    assert page.status_code == 200
    assert "unsafe-inline" not in page.headers["content-security-policy"]
    assert "<script" not in page.text and not re.search(r'(?:src|href)="(?:https?:)?//', page.text)
    for path, item in client.get("/api/openapi.json").json()["paths"].items():
        for method in item:
            assert f"<code>{method.upper()} {path}</code>" in page.text


def _peak_rss_mib(pid: int) -> float:
    """The process's peak resident memory (VmHWM, Linux) in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM in /proc (Linux only)")


@pytest.mark.slow
def test_100_mb_chunked_bodies_under_uvicorn_are_refused_without_buffering(
    sqlite_url: str, tmp_path: Path
) -> None:
    """Finding 3 on the real server: a 100 MB chunked form and a 100 MB chunked JSON to a
    valid link get 413 with the security headers, nothing is stored, the link still works,
    and the server's peak memory grows by far less than the body (it was +300 MB)."""
    app = create_app(sqlite_url, secret_key=SECRET)
    clinic = seed(app)
    token = new_link(clinic)
    app.state.db.dispose()
    env = {"ALLIANCE_DATABASE_URL": sqlite_url, "ALLIANCE_SECRET_KEY": SECRET}
    port = free_port()
    server = start_server(port, {**env, "ALLIANCE_HOME": str(tmp_path)})
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=base, timeout=60) as client:
            assert client.get(f"/f/{token}").status_code == 200  # warm: templates, imports
            before = _peak_rss_mib(server.pid)
            sent = [
                (f"/f/{token}", _chunks(HUNDRED_MB), "application/x-www-form-urlencoded"),
                (f"/api/v1/links/{token}/responses", _json_chunks(HUNDRED_MB), "application/json"),
            ]
            for url, body, kind in sent:
                reply = client.post(url, content=body, headers={"content-type": kind})
                assert reply.status_code == 413, url
                assert "at most" in reply.json()["detail"]
                assert "content-security-policy" in reply.headers
            grown = _peak_rss_mib(server.pid) - before
            print(f"server peak memory grew {grown:.1f} MiB for two 100 MB bodies")
            assert grown < 32, f"peak memory grew {grown:.0f} MiB"
            assert client.get(f"/f/{token}").status_code == 200  # the link is unused
    finally:
        server.terminate()
        server.wait(timeout=10)
    check = create_app(sqlite_url, secret_key=SECRET)
    with check.state.db.read() as s:
        assert s.scalar(text("SELECT count(*) FROM responses")) == 0
    check.state.db.dispose()
