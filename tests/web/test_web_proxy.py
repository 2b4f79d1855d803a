"""Behind a reverse proxy (issue 13, finding 7): links from the configured public URL, never
from the Host header; other hosts refused; Secure cookies and HSTS over https."""

from __future__ import annotations

import httpx
import pytest
from webclinic import PASSWORD, SECRET, Browser, Client, seed

from alliance.web.app import create_app
from alliance.web.settings import SettingsError

PUBLIC = "https://clinic.example.org"


def _clinic(sqlite_url: str, monkeypatch: pytest.MonkeyPatch, **env: str):  # type: ignore[no-untyped-def]
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return seed(create_app(sqlite_url, secret_key=SECRET))


def test_a_forged_host_is_refused_and_links_use_the_public_url(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    clinic = _clinic(sqlite_url, monkeypatch, ALLIANCE_PUBLIC_URL=PUBLIC,
                     ALLIANCE_ALLOWED_HOSTS="clinic.example.org,testserver")  # fmt: skip
    forged = Client(clinic.app).get("/login", headers={"host": "evil.example"})
    assert forged.status_code == 400
    bearer = {"Authorization": f"Bearer {clinic.tokens['t1']}"}
    created = Client(clinic.app).post(
        f"/api/v1/patients/{clinic.patients['p1']}/sessions", headers=bearer
    )
    assert created.status_code == 201, created.text
    assert created.json()["link"].startswith(f"{PUBLIC}/f/")
    browser = Browser(clinic.app)
    browser.client.base_url = httpx.URL("https://testserver")  # TLS ends at the proxy
    browser.get("/login")
    browser.post("/login", {"username": "t1", "password": PASSWORD})
    page = browser.post(f"/patients/{clinic.patients['p1']}/sessions")
    assert f'id="patient-link" href="{PUBLIC}/f/' in page.text


def test_https_public_url_gives_secure_cookies_and_hsts(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    clinic = _clinic(sqlite_url, monkeypatch, ALLIANCE_PUBLIC_URL=PUBLIC,
                     ALLIANCE_ALLOWED_HOSTS="testserver")  # fmt: skip
    client = Client(clinic.app)  # the proxy speaks plain http to the clinic
    response = client.get("/login")
    assert response.headers["strict-transport-security"].startswith("max-age=31536000")
    cookie = response.headers["set-cookie"]
    assert "Secure" in cookie and "HttpOnly" in cookie


def test_without_settings_nothing_changes_for_the_local_demo(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ALLIANCE_PUBLIC_URL", raising=False)
    monkeypatch.delenv("ALLIANCE_ALLOWED_HOSTS", raising=False)
    clinic = _clinic(sqlite_url, monkeypatch)
    response = Client(clinic.app).get("/login")
    assert response.status_code == 200 and "strict-transport-security" not in response.headers
    assert "Secure" not in response.headers["set-cookie"]


@pytest.mark.parametrize(
    "url", ["clinic.example.org", "ftp://clinic.example.org", "https://clinic.example.org/app"]
)
def test_a_wrong_public_url_refuses_to_start_naming_the_variable(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    monkeypatch.setenv("ALLIANCE_PUBLIC_URL", url)
    with pytest.raises(SettingsError, match="ALLIANCE_PUBLIC_URL"):
        create_app(sqlite_url, secret_key=SECRET)
