"""HTTP hardening: bodies without (or with a lying) Content-Length are limited too."""

from __future__ import annotations

from collections.abc import Iterator

from webclinic import Client, Clinic, full_answers, new_link

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
