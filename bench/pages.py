"""Latency of the clinician's pages on a large clinic: caseload and patient page.

Builds a SQLite clinic of ``--patients`` simulated patients (default 1,000) with
``--sessions`` sessions each (default 15; patient and therapist WAI-SR and the post-session
rupture questions, scored by the scoring core, bulk-inserted as ``alliance demo`` does) and
runs the analytics once for every patient (as the clinic runs them after each submission).
Then it starts the clinic under uvicorn in a subprocess, and a bare FastAPI page (a small
HTML answer, no database, no analytics) in another, and measures with the same client, in
the same run, ``--requests`` sequential GETs of each (one keep-alive connection):

* ``/caseload`` of a therapist (about ``--per-therapist`` patients);
* ``/caseload`` of the admin (every patient; the page shows one page of them);
* ``/patients/{id}``, cycling through the therapist's patients;
* the bare page: the baseline the ratios are taken against.

It prints p50/p99 per page and the ratio to the bare page (target: p99 < 50 ms). Since
analytics run only when answers are committed, a page read only reads what is stored.
Nothing leaves 127.0.0.1; every request has a 10 s timeout. Timings are printed, never
asserted.

    .venv/bin/python bench/pages.py                  # 1,000 patients x 15 sessions
    .venv/bin/python bench/pages.py --patients 100   # a quick run
"""

from __future__ import annotations

import argparse
import os
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from web import free_port, start, uvicorn_cmd  # bench/web.py: the same server helpers

SECRET = "bench-secret-key-0123456789-0123456789"
CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


# -- the bare page -----------------------------------------------------------------------------
def bare_app() -> FastAPI:
    """FastAPI with one GET page that touches no database and computes nothing."""
    app = FastAPI()
    body = "<!doctype html><title>Caseload</title><h1>Caseload</h1>" + "<p>row</p>" * 50

    @app.get("/bare", response_class=HTMLResponse)
    def bare() -> str:
        return body

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


# -- setup ---------------------------------------------------------------------------------------
def build_clinic(url: str, args: argparse.Namespace) -> tuple[list[int], float, float, float]:
    """Simulate, insert and analyse the clinic (the expected-trajectory model fitted as of
    the middle session date, as ``alliance demo`` does, so the later sessions carry stored
    ranges and the patient page draws them); returns therapist1's patient ids and the
    seconds taken by the seeding, the model fit and the analytics."""
    from datetime import UTC, datetime
    from datetime import time as clock

    from sqlalchemy import select

    from alliance.store.db import Database
    from alliance.store.migrate import upgrade
    from alliance.store.models import Patient, TherapySession, User
    from alliance.web import monitoring
    from alliance.web.demo import fill_demo

    db = Database(url)
    upgrade(db.engine)
    therapists = max(1, round(args.patients / args.per_therapist))
    started = time.perf_counter()
    fill_demo(
        db,
        therapists=therapists,
        patients=args.patients,
        seed=args.seed,
        sessions_per_patient=(args.sessions, args.sessions),
        analytics=False,
    )
    seeded = time.perf_counter()
    with db.read() as s:
        dates = sorted(s.scalars(select(TherapySession.date)))
    middle = datetime.combine(dates[len(dates) // 2], clock(0), tzinfo=UTC)
    assert monitoring.refit_expected(db, now=middle), "the clinic's model was not fitted"
    fitted = time.perf_counter()
    monitoring.refresh_patients(db)
    analysed = time.perf_counter()
    with db.read() as s:
        therapist = s.scalar(select(User.id).where(User.username == "therapist1"))
        ids = list(
            s.scalars(
                select(Patient.id).where(Patient.therapist_id == therapist).order_by(Patient.id)
            )
        )
    db.dispose()
    return ids, seeded - started, fitted - seeded, analysed - fitted


def logged_in(port: int, username: str) -> httpx.Client:
    """A keep-alive client logged in to the clinic."""
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10)
    match = CSRF_RE.search(client.get("/login").text)
    assert match, "login page has no CSRF token"
    reply = client.post(
        "/login",
        data={"username": username, "password": "demo-password", "csrf_token": match.group(1)},
    )
    if reply.status_code not in (200, 303):
        raise RuntimeError(f"login as {username} failed: {reply.status_code}")
    return client


# -- measurement ----------------------------------------------------------------------------------
@dataclass
class Timing:
    """Latencies (ms) of one page."""

    label: str
    latencies: list[float]
    failures: int

    def pct(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


def measure(client: httpx.Client, label: str, paths: list[str], n: int, warm: int = 20) -> Timing:
    """``n`` sequential GETs cycling through ``paths`` (after ``warm`` unmeasured ones)."""
    out = Timing(label, [], 0)
    for k in range(warm + n):
        path = paths[k % len(paths)]
        started = time.perf_counter()
        try:
            reply = client.get(path)
            ok = reply.status_code == 200
        except httpx.HTTPError:
            ok = False
        elapsed = (time.perf_counter() - started) * 1000
        if k < warm:
            continue
        if ok:
            out.latencies.append(elapsed)
        else:
            out.failures += 1
    return out


def report(timings: list[Timing], bare: Timing) -> None:
    print(f"\n{'page':<34} {'p50 ms':>8} {'p99 ms':>8} {'p50/bare':>9} {'p99/bare':>9}")
    for t in [*timings, bare]:
        print(
            f"{t.label:<34} {t.pct(50):8.1f} {t.pct(99):8.1f} "
            f"{t.pct(50) / bare.pct(50):9.1f} {t.pct(99) / bare.pct(99):9.1f}"
            + (f"  ({t.failures} failed)" if t.failures else "")
        )
    for t in timings:
        verdict = "meets" if t.pct(99) < 50 else "above"
        print(f"{t.label}: p99 {t.pct(99):.1f} ms ({verdict} the 50 ms target)")
    print(f"load average during the run: {os.getloadavg()[0]:.2f} (shared machine)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=1000)
    parser.add_argument("--sessions", type=int, default=15)
    parser.add_argument("--per-therapist", type=int, default=25, help="caseload size")
    parser.add_argument("--requests", type=int, default=300, help="measured GETs per page")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="alliance-bench-pages-") as tmp:
        home = Path(tmp)
        url = f"sqlite:///{home / 'clinic.db'}"
        ids, seed_s, fit_s, analytics_s = build_clinic(url, args)
        print(
            f"clinic: {args.patients} patients x {args.sessions} sessions (SQLite); seeding "
            f"{seed_s:.1f} s, expected-trajectory fit {fit_s:.1f} s, analytics for every "
            f"patient (with the expected ranges) {analytics_s:.1f} s; "
            f"therapist1 has {len(ids)} patients"
        )
        env = {
            **os.environ,
            "ALLIANCE_DATABASE_URL": url,
            "ALLIANCE_SECRET_KEY": SECRET,
            "ALLIANCE_HOME": str(home),
        }
        bench_dir = str(Path(__file__).parent)
        bare_env = {**env, "PYTHONPATH": bench_dir + os.pathsep + env.get("PYTHONPATH", "")}
        app_port, bare_port = free_port(), free_port()
        app = start(uvicorn_cmd("alliance.web.app:create_app", app_port, True), env, app_port)
        bare = start(uvicorn_cmd("pages:bare_app", bare_port, True), bare_env, bare_port)
        try:
            therapist, admin = logged_in(app_port, "therapist1"), logged_in(app_port, "admin")
            plain = httpx.Client(base_url=f"http://127.0.0.1:{bare_port}", timeout=10)
            n = args.requests
            timings = [
                measure(therapist, f"/caseload (therapist, {len(ids)} patients)", ["/caseload"], n),
                measure(admin, f"/caseload (admin, {args.patients} patients)", ["/caseload"], n),
                measure(therapist, "/patients/{id}", [f"/patients/{i}" for i in ids], n),
            ]
            baseline = measure(plain, "bare page (no database)", ["/bare"], n)
            for client in (therapist, admin, plain):
                client.close()
        finally:
            for proc in (app, bare):
                proc.terminate()
                proc.wait(timeout=10)
        report(timings, baseline)


if __name__ == "__main__":
    main()
