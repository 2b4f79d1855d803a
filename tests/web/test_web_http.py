"""HTTP hardening: bodies without (or with a lying) Content-Length are limited too."""

from __future__ import annotations

from collections.abc import Iterator

from webclinic import Client, Clinic, new_link

from alliance.web.app import MAX_BODY


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
