"""Logins: an atomic, progressive login delay per (user, address) and per address that
slows a guesser without locking out a colleague; logins in the audit log; logout revokes
API tokens; a kiosk handover ends the clinician's session on that device.

Every test goes through the real app and a real database (SQLite file and PostgreSQL);
the concurrency test runs a real uvicorn server and counts real argon2 verifications.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import httpx
import pytest
import uvicorn
from argon2 import PasswordHasher
from live_server import free_port
from sqlalchemy import inspect, select, text
from webclinic import PASSWORD, SECRET, Browser, Client, Clinic, login

from alliance.store import repo
from alliance.store.db import Database
from alliance.store.models import AuditEntry, LoginThrottle
from alliance.web import security

FREE = 5  # failures for one (user, address) before the first delay (docs/clinic.md)
NAT = "203.0.113.7"  # the clinic's one public address, shared by every colleague
HOME = "198.51.100.20"  # the victim's own connection at home


class CountingHasher(PasswordHasher):
    """The real argon2 hasher, counting the verifications it performs."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0
        self._lock = threading.Lock()

    def verify(self, hash: str | bytes, password: str | bytes) -> bool:
        with self._lock:
            self.calls += 1
        return super().verify(hash, password)


@pytest.fixture
def hasher(monkeypatch: pytest.MonkeyPatch) -> CountingHasher:
    """Count every password check the app makes (argon2 itself still runs)."""
    counting = CountingHasher()
    monkeypatch.setattr(security, "_hasher", counting)
    return counting


def browser_at(clinic: Clinic, address: str) -> Browser:
    """A browser whose requests come from ``address``."""
    browser = Browser(clinic.app)
    browser.client = Client(clinic.app, client=(address, 50000))
    browser.get("/login")
    return browser


def attempt(browser: Browser, username: str, password: str) -> httpx.Response:
    response: httpx.Response = browser.post(
        "/login", {"username": username, "password": password}, follow_redirects=False
    )
    return response


def fail(browser: Browser, username: str, times: int) -> None:
    for _ in range(times):
        assert attempt(browser, username, "wrong password").status_code == 401


def let_time_pass(db: Database, seconds: float) -> None:
    """Move every stored login delay ``seconds`` into the past (the passage of time)."""
    shift = timedelta(seconds=seconds)
    with db.write() as s:
        for row in s.scalars(select(LoginThrottle)):
            if row.last_failure_at is not None:
                row.last_failure_at -= shift
            if row.blocked_until is not None:
                row.blocked_until -= shift


def retry_after(response: httpx.Response) -> int:
    assert response.status_code == 429, response.text
    return int(response.headers["retry-after"])


# -- the counter is atomic ------------------------------------------------------------------
@pytest.fixture
def live(clinic: Clinic) -> Iterator[str]:
    """The seeded clinic served by a real uvicorn server (in this process, so that the
    password checks can be counted); yields its base URL."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(clinic.app, host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=30)


def test_concurrent_wrong_passwords_get_exactly_the_allowed_checks(
    clinic: Clinic, live: str, hasher: CountingHasher
) -> None:
    """40 wrong passwords for one user at once: exactly FREE argon2 checks, the rest 429
    (the race on PostgreSQL gave 18 to 30 checks)."""
    with httpx.Client(base_url=live, timeout=60) as warm:
        page = warm.get("/login")
        cookie = dict(warm.cookies)
        csrf = page.text.split('name="csrf_token" value="')[1].split('"')[0]
    barrier = threading.Barrier(40)

    def guess(i: int) -> int:
        with httpx.Client(base_url=live, timeout=120, cookies=cookie) as client:
            barrier.wait()
            data = {"username": "t1", "password": f"guess-{i:04d}", "csrf_token": csrf}
            return client.post("/login", data=data).status_code

    with ThreadPoolExecutor(40) as pool:
        codes = list(pool.map(guess, range(40)))
    assert hasher.calls == FREE, f"{hasher.calls} password checks"
    assert sorted(codes) == [401] * FREE + [429] * (40 - FREE)
    with clinic.db.read() as s:
        failed = s.scalars(select(AuditEntry).where(AuditEntry.action == "login-failed")).all()
    assert len(failed) == FREE


# -- no one locks out a colleague -------------------------------------------------------------
def test_colleague_behind_the_same_address_gets_in(clinic: Clinic) -> None:
    attacker = browser_at(clinic, NAT)
    fail(attacker, "t1", FREE)
    colleague = browser_at(clinic, NAT)
    assert attempt(colleague, "t2", PASSWORD).status_code == 303
    assert colleague.get("/caseload").status_code == 200


def test_victims_correct_password_from_another_address_gets_in(clinic: Clinic) -> None:
    fail(browser_at(clinic, NAT), "t1", FREE)
    victim = browser_at(clinic, HOME)
    assert attempt(victim, "t1", PASSWORD).status_code == 303
    assert victim.get("/caseload").status_code == 200


def test_own_correct_password_is_accepted_once_the_delay_has_passed(clinic: Clinic) -> None:
    browser = browser_at(clinic, NAT)
    fail(browser, "t1", FREE)
    refused = attempt(browser, "t1", PASSWORD)
    wait = retry_after(refused)
    assert 0 < wait <= 60
    let_time_pass(clinic.db, wait - 2)
    assert retry_after(attempt(browser, "t1", PASSWORD)) <= 2
    let_time_pass(clinic.db, 3)
    assert attempt(browser, "t1", PASSWORD).status_code == 303
    # the success forgets this user's failures from this address
    fail(browser_at(clinic, NAT), "t1", FREE)


def test_the_delay_doubles_with_each_further_failure(clinic: Clinic) -> None:
    browser = browser_at(clinic, NAT)
    fail(browser, "t1", FREE)
    waits = []
    for _ in range(4):
        wait = retry_after(attempt(browser, "t1", "wrong password"))
        waits.append(wait)
        let_time_pass(clinic.db, wait + 1)
        assert attempt(browser, "t1", "wrong password").status_code == 401
    # Retry-After counts whole seconds from the moment of the refusal: allow 2 s of the
    # test's own running time in each
    doubled = [waits[0] * 2**k for k in range(4)]
    assert all(abs(w - d) <= 2 * (k + 1) for k, (w, d) in enumerate(zip(waits, doubled))), waits


def test_the_refusal_does_not_tell_whether_the_user_exists(clinic: Clinic) -> None:
    known, unknown = browser_at(clinic, NAT), browser_at(clinic, NAT)
    fail(known, "t1", FREE)
    first = attempt(known, "t1", "another guess")
    fail(unknown, "no-such-user", FREE)
    second = attempt(unknown, "no-such-user", "another guess")
    assert abs(retry_after(first) - retry_after(second)) <= 1  # a second may tick between

    def page(response: httpx.Response, browser: Browser) -> str:
        return re.sub(r"\d+", "N", response.text.replace(browser.csrf, ""))

    assert page(first, known) == page(second, unknown)
    assert "Too many failed logins" in first.text


def test_many_usernames_from_one_address_are_slowed_but_not_other_addresses(
    clinic: Clinic,
) -> None:
    """Password spraying from one address (one guess for each of many usernames)."""
    sprayer = browser_at(clinic, NAT)
    address_free = security.FROM_ADDRESS.free_failures
    for i in range(address_free):
        assert attempt(sprayer, f"user{i}", "Winter2026!").status_code == 401
    assert retry_after(attempt(sprayer, "t1", "Winter2026!")) > 0
    assert attempt(browser_at(clinic, HOME), "t1", PASSWORD).status_code == 303


# -- audit, and nothing typed is stored ---------------------------------------------------------
def stored_text(db: Database) -> str:
    """Every value in every table of the database, as one string."""
    with db.read() as s:
        names = inspect(s.connection()).get_table_names()
        rows = [s.execute(text(f'SELECT * FROM "{name}"')).all() for name in names]
    return repr(rows)


def test_logins_and_failed_logins_are_audited_without_what_was_typed(clinic: Clinic) -> None:
    browser = browser_at(clinic, NAT)
    assert attempt(browser, "t1", "wrong password").status_code == 401
    assert attempt(browser, "Correct-Horse-9", "").status_code == 401  # a password, mistyped
    assert attempt(browser, "t1", PASSWORD).status_code == 303
    with clinic.db.read() as s:
        entries = [
            (e.action, e.user_id, e.entity, e.entity_id)
            for e in s.scalars(select(AuditEntry).order_by(AuditEntry.id))
            if e.action.startswith("login")
        ]
    t1 = clinic.users["t1"]
    assert entries == [
        ("login-failed", None, "user", str(t1)),
        ("login-failed", None, "user", ""),
        ("login", t1, "user", str(t1)),
    ]
    everything = stored_text(clinic.db)
    for typed in ("Correct-Horse-9", "wrong password", PASSWORD, NAT):
        assert typed not in everything


# -- logout and kiosk -------------------------------------------------------------------------
def test_logout_revokes_the_users_api_tokens(clinic: Clinic) -> None:
    api = Client(clinic.app, headers={"Authorization": f"Bearer {clinic.tokens['t1']}"})
    other = Client(clinic.app, headers={"Authorization": f"Bearer {clinic.tokens['t2']}"})
    assert api.get("/api/v1/patients").status_code == 200
    browser = login(clinic.app, "t1")
    assert browser.post("/logout", follow_redirects=False).status_code == 303
    refused = api.get("/api/v1/patients")
    assert refused.status_code == 401 and "revoked" in refused.json()["detail"]
    assert other.get("/api/v1/patients").status_code == 200


def kiosk_session(clinic: Clinic, browser: Browser) -> int:
    browser.post(f"/patients/{clinic.patients['p1']}/sessions")
    with clinic.db.read() as s:
        return int(repo.sessions_of(s, clinic.patients["p1"])[-1].id)


def test_kiosk_handover_ends_the_clinicians_session_on_that_device(clinic: Clinic) -> None:
    tablet, desk = login(clinic.app, "t1"), login(clinic.app, "t1")
    session_id = kiosk_session(clinic, tablet)
    cookie = tablet.client.cookies.get("alliance_session")
    handed = tablet.post(f"/sessions/{session_id}/kiosk", follow_redirects=False)
    assert handed.status_code == 303 and handed.headers["location"].startswith("/f/")
    # the patient holding the tablet, even with the clinician's old cookie restored
    restored = Client(clinic.app, cookies={"alliance_session": cookie})
    for url in ("/caseload", f"/patients/{clinic.patients['p1']}"):
        back = restored.get(url, follow_redirects=False)
        assert back.status_code == 303 and back.headers["location"] == "/login", url
        assert tablet.get(url, follow_redirects=False).status_code == 303
    assert desk.get("/caseload").status_code == 200  # the clinician's desk stays logged in


def test_kiosk_pages_are_not_kept_by_the_browser(clinic: Clinic) -> None:
    """The back button cannot show a clinician's page from the browser's cache."""
    tablet = login(clinic.app, "t1")
    page = tablet.get(f"/patients/{clinic.patients['p1']}")
    assert page.headers["cache-control"] == "no-store"


@pytest.mark.parametrize("username", ["t1\x00", "x" * 65])
def test_an_impossible_username_is_refused_naming_the_rule(clinic: Clinic, username: str) -> None:
    browser = browser_at(clinic, NAT)
    refused = attempt(browser, username, PASSWORD)
    assert refused.status_code == 422
    assert "username: must be 1 to 64 characters" in refused.text
    with clinic.db.read() as s:
        assert s.scalars(select(LoginThrottle)).all() == []


def counters(db: Database) -> dict[str, int]:
    with db.read() as s:
        return {row.key: row.failures for row in s.scalars(select(LoginThrottle))}


def test_counters_are_cleared_by_success_and_pruned_when_forgotten(clinic: Clinic) -> None:
    at_nat = security.login_keys(SECRET, "t1", NAT)
    user_key, address_key = list(at_nat)
    browser = browser_at(clinic, NAT)
    fail(browser, "t1", 2)
    assert counters(clinic.db) == {user_key: 2, address_key: 2}
    assert attempt(browser, "t1", PASSWORD).status_code == 303
    assert counters(clinic.db) == {address_key: 2}  # the address keeps its two failures
    let_time_pass(clinic.db, 25 * 3600)
    fail(browser_at(clinic, HOME), "t2", 1)
    assert counters(clinic.db) == dict.fromkeys(security.login_keys(SECRET, "t2", HOME), 1)
