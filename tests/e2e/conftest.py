"""End-to-end fixtures: a real uvicorn server on a seeded SQLite file, and Debian's Chromium."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_support import CHROMIUM, PASSWORD, SECRET, Server
from live_server import free_port, start_server

from alliance.store import repo
from alliance.web.app import create_app
from alliance.web.demo import fill_demo
from alliance.web.security import hash_password


def _seed(url: str) -> tuple[int, str]:
    app = create_app(url, secret_key=SECRET)
    with app.state.db.write() as s:
        therapist = repo.create_user(s, "ther", hash_password(PASSWORD), "therapist", "Dr Ther")
        repo.create_user(s, "res", hash_password(PASSWORD), "researcher", "Researcher")
        schedule = [
            repo.ScheduleSpec("wai_sr", "client", "client"),
            repo.ScheduleSpec("psq", "patient", "client"),
        ]
        patient = repo.create_patient(s, "E2E-001", therapist, schedule)
        patient_id = patient.id
        token = repo.issue_token(s, therapist, "e2e", actor="e2e")  # for the /fhir clients
    # a simulated clinic beside them, so the researcher's report has data to show
    fill_demo(app.state.db, therapists=2, patients=40, seed=3)
    app.state.db.dispose()
    return patient_id, token


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The app under uvicorn in a subprocess, on a fresh SQLite file."""
    home = tmp_path_factory.mktemp("e2e")
    url = f"sqlite:///{home / 'clinic.db'}"
    patient_id, token = _seed(url)
    port = free_port()
    env = {
        "ALLIANCE_DATABASE_URL": url,
        "ALLIANCE_SECRET_KEY": SECRET,
        "ALLIANCE_HOME": str(home),
        # This clinic schedules the post-session rupture questions and opts in to their alerts.
        "ALLIANCE_ALERTS_ALLOW_UNVERIFIED": "1",
    }
    proc = start_server(port, env)
    base = f"http://127.0.0.1:{port}"
    yield Server(base, patient_id, token)
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """Debian's Chromium driven by Playwright (skips with the reason when absent)."""
    if not (Path(CHROMIUM).exists() or shutil.which("chromium")):
        pytest.skip("Chromium not installed: run `make browser` (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-background-networking", "--disable-gpu"],
        )
        yield chromium
        chromium.close()
