"""Load benchmark of the patient form: 200 concurrent simulated patients on loopback.

For each database (SQLite file; PostgreSQL at 127.0.0.1:5432 when reachable) it starts the
clinic under uvicorn in a subprocess, and a bare FastAPI endpoint (parses the same form,
returns a thank-you page, touches no database) in another, then measures with the same
client in the same run:

* saturation: ``--clients`` concurrent patients submit ``--requests`` forms back to back
  (closed loop): throughput and latency; the ratio of the clinic's throughput to the bare
  endpoint's is the figure of merit (target >= 0.30);
* paced: ``--clients`` patients each submit once at a random moment within ``--window``
  seconds (open loop, the realistic after-session pattern): p50/p99 latency (target p99 <
  50 ms);
* service time: the submission writer handling one submission alone, in this process
  (no HTTP, no client): the server-side cost inside each paced latency.

Every request is bounded (fixed counts, 10 s timeout); nothing leaves 127.0.0.1.

    .venv/bin/python bench/web.py                 # both databases
    .venv/bin/python bench/web.py --db sqlite --requests 1000
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlencode

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import insert, select

SECRET = "bench-secret-key-0123456789-0123456789"
PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
ANSWERS = {**{f"wai_sr_{i}": "4" for i in range(1, 13)}, "psq_1": "0"}


# -- the bare endpoint ---------------------------------------------------------------------
def bare_app() -> FastAPI:
    """FastAPI with one POST route that parses the form and answers a small page."""
    app = FastAPI()

    @app.post("/f/{token}", response_class=HTMLResponse)
    async def submit(token: str, request: Request) -> str:
        form = await request.form()
        return f"<h1>Thank you</h1><p>{len(form)} answers</p>"

    @app.get("/healthz")
    def healthz() -> dict[str, str]:  # what start() waits for
        return {"status": "ok"}

    return app


# -- setup -----------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def prepare(url: str, n_links: int) -> list[str]:
    """Migrate, add a therapist and patients, and issue ``n_links`` single-use links."""
    from alliance.store import repo
    from alliance.store.db import Database
    from alliance.store.migrate import upgrade
    from alliance.store.models import Link, TherapySession, utcnow
    from alliance.web.security import hash_password

    db = Database(url)
    upgrade(db.engine)
    schedule = [
        repo.ScheduleSpec("wai_sr", "client", "client"),
        repo.ScheduleSpec("psq", "patient", "client"),
    ]
    tokens = [repo.new_token() for _ in range(n_links)]
    with db.write() as s:
        therapist = repo.create_user(s, "bench", hash_password("bench-password"), "therapist")
        patients = [repo.create_patient(s, f"B{k:03d}", therapist, schedule) for k in range(200)]
        rows = [
            {"patient_id": patients[k % 200].id, "number": k // 200 + 1, "date": utcnow().date()}
            for k in range(n_links)
        ]
        s.execute(insert(TherapySession), rows)
        ids = s.scalars(select(TherapySession.id).order_by(TherapySession.id)).all()
        expires = utcnow() + timedelta(hours=1)
        links = [
            {"session_id": sid, "token_hash": repo.hash_token(t), "expires_at": expires}
            for sid, t in zip(ids, tokens, strict=True)
        ]
        s.execute(insert(Link), links)
    db.dispose()
    return tokens


def start(cmd: list[str], env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    """Start a server; return once ``/healthz`` answers 200, or fail with its log."""
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    log = proc.stderr.read().decode() if proc.stderr else ""
    raise RuntimeError(f"server did not start: {log}")


def uvicorn_cmd(target: str, port: int, factory: bool) -> list[str]:
    cmd = [sys.executable, "-m", "uvicorn", target, "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--no-access-log", "--log-level", "warning"]
    return cmd + (["--factory"] if factory else [])


# -- load ------------------------------------------------------------------------------------
@dataclass
class Result:
    """Latencies (ms) of acknowledged submissions and the wall time."""

    latencies: list[float]
    seconds: float
    failures: int

    @property
    def throughput(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else 0.0

    def pct(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


def payload(token: str) -> dict[str, str]:
    from alliance.store.repo import hash_token
    from alliance.web.security import Signer

    return {**ANSWERS, "csrf_token": Signer(SECRET).csrf_token(hash_token(token))}


class Connection:
    """A minimal keep-alive HTTP/1.1 client on one socket (httpx's pool would be the
    bottleneck at 200 connections; this keeps the client's cost small and equal for both
    servers)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        assert self.reader is not None
        head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        self.writer.write(head.encode() + body)
        await self.writer.drain()
        status_line = await self.reader.readline()
        if not status_line:
            raise ConnectionError("closed")
        length, close = 0, False
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            if name.lower() == "content-length":
                length = int(value)
            elif name.lower() == "connection" and "close" in value.lower():
                close = True
        data = await self.reader.readexactly(length)
        if close:
            self.close()
        return int(status_line.split()[1]), data

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def _post(conn: Connection, token: str, out: Result) -> None:
    body = urlencode(payload(token)).encode()
    started = time.perf_counter()
    try:
        status, data = await asyncio.wait_for(conn.post(f"/f/{token}", body), 10)
    except (TimeoutError, OSError, asyncio.IncompleteReadError):
        conn.close()
        out.failures += 1
        return
    if status == 200 and b"Thank you" in data:
        out.latencies.append((time.perf_counter() - started) * 1000)
    else:
        out.failures += 1


async def saturate(port: int, tokens: list[str], clients: int) -> Result:
    """``clients`` patients submitting back to back until the tokens are used up."""
    queue: asyncio.Queue[str] = asyncio.Queue()
    for token in tokens:
        queue.put_nowait(token)
    out = Result([], 0.0, 0)

    async def patient() -> None:
        conn = Connection(port)
        while not queue.empty():
            await _post(conn, queue.get_nowait(), out)
        conn.close()

    started = time.perf_counter()
    await asyncio.gather(*(patient() for _ in range(clients)))
    out.seconds = time.perf_counter() - started
    return out


async def paced(port: int, tokens: list[str], window: float, seed: int = 1) -> Result:
    """Each patient submits once at a random moment within the window (open loop)."""
    rng = random.Random(seed)
    out = Result([], 0.0, 0)

    async def patient(token: str) -> None:
        conn = Connection(port)
        await asyncio.sleep(rng.uniform(0, window))
        await _post(conn, token, out)
        conn.close()

    started = time.perf_counter()
    await asyncio.gather(*(patient(t) for t in tokens))
    out.seconds = time.perf_counter() - started
    return out


def service_time(url: str, tokens: list[str]) -> tuple[float, float]:
    """Median and p90 milliseconds the submission writer spends on one submission alone (a
    batch of one: link look-up, scoring, storing, durable commit), in this process: the
    server-side cost behind the paced latencies, without HTTP or the client."""
    from alliance.store.db import Database
    from alliance.store.repo import hash_token
    from alliance.web.app import _warm_up
    from alliance.web.submissions import SubmissionWriter, _Job

    db = Database(url)
    _warm_up()
    writer, loop = SubmissionWriter(db), asyncio.new_event_loop()
    times = []
    for k, token in enumerate(tokens):
        job = _Job(token, payload(token), "link", loop, loop.create_future(), hash_token(token))
        started = time.perf_counter()
        writer.process([job])
        if k >= 50:  # the first ones warm caches and prepared statements
            times.append((time.perf_counter() - started) * 1000)
    loop.close()
    db.dispose()
    times.sort()
    return times[len(times) // 2], times[int(0.9 * len(times))]


# -- one database ----------------------------------------------------------------------------
def run(label: str, url: str, args: argparse.Namespace, home: Path) -> dict[str, float]:
    n_sat, n_paced, n_alone = args.requests, args.clients, 350
    tokens = prepare(url, n_sat + n_paced + 200 + n_alone)
    env = {
        **os.environ,
        "ALLIANCE_DATABASE_URL": url,
        "ALLIANCE_SECRET_KEY": SECRET,
        "ALLIANCE_HOME": str(home),
    }
    app_port, bare_port = free_port(), free_port()
    app = start(uvicorn_cmd("alliance.web.app:create_app", app_port, True), env, app_port)
    bench_dir = str(Path(__file__).parent)
    bare_env = {**env, "PYTHONPATH": bench_dir + os.pathsep + env.get("PYTHONPATH", "")}
    bare = start(uvicorn_cmd("web:bare_app", bare_port, True), bare_env, bare_port)
    try:
        asyncio.run(saturate(app_port, tokens[:200], 20))  # warm-up
        asyncio.run(saturate(bare_port, [f"w{k}" for k in range(200)], 20))
        sat = asyncio.run(saturate(app_port, tokens[200 : 200 + n_sat], args.clients))
        base = asyncio.run(saturate(bare_port, [f"b{k}" for k in range(n_sat)], args.clients))
        pace = asyncio.run(
            paced(app_port, tokens[200 + n_sat : 200 + n_sat + n_paced], args.window)
        )
    finally:
        for proc in (app, bare):
            proc.terminate()
            proc.wait(timeout=10)
    alone_p50, alone_p90 = service_time(url, tokens[-n_alone:])
    figures = {
        "alone_p50": alone_p50,
        "alone_p90": alone_p90,
        "sat_rps": sat.throughput,
        "sat_p50": sat.pct(50),
        "sat_p99": sat.pct(99),
        "bare_rps": base.throughput,
        "bare_p50": base.pct(50),
        "bare_p99": base.pct(99),
        "ratio": sat.throughput / base.throughput if base.throughput else float("nan"),
        "paced_p50": pace.pct(50),
        "paced_p99": pace.pct(99),
        "paced_p90": pace.pct(90),
        "paced_max": max(pace.latencies, default=float("nan")),
        "paced_rps_offered": args.clients / args.window,
        "failures": float(sat.failures + pace.failures),
    }
    report(label, figures, args)
    return figures


def report(label: str, f: dict[str, float], args: argparse.Namespace) -> None:
    print(f"\n== {label}: {args.clients} concurrent patients ==")
    print(
        f"saturation ({args.requests} submissions): {f['sat_rps']:.0f} req/s, "
        f"p50 {f['sat_p50']:.1f} ms, p99 {f['sat_p99']:.1f} ms"
    )
    print(
        f"bare FastAPI endpoint, same client:   {f['bare_rps']:.0f} req/s, "
        f"p50 {f['bare_p50']:.1f} ms, p99 {f['bare_p99']:.1f} ms"
    )
    verdict = "meets" if f["ratio"] >= 0.30 else "below"
    print(f"throughput ratio clinic/bare: {f['ratio']:.2f} ({verdict} the 0.30 target)")
    verdict = "meets" if f["paced_p99"] < 50 else "above"
    print(
        f"paced ({args.clients} patients within {args.window:g} s, "
        f"{f['paced_rps_offered']:.0f} req/s offered): p50 {f['paced_p50']:.1f} ms, "
        f"p90 {f['paced_p90']:.1f} ms, p99 {f['paced_p99']:.1f} ms, max {f['paced_max']:.1f} ms "
        f"({verdict} the 50 ms target)"
    )
    print(
        f"service time, one submission alone (in-process writer): p50 {f['alone_p50']:.1f} ms, "
        f"p90 {f['alone_p90']:.1f} ms"
    )
    print(f"load average during the run: {os.getloadavg()[0]:.2f} (shared machine)")
    if f["failures"]:
        print(f"failures: {f['failures']:.0f}")


def pg_database() -> tuple[str, str] | None:
    try:
        import psycopg

        name = f"alliance_bench_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(
            "host=127.0.0.1 user=postgres dbname=postgres", autocommit=True, connect_timeout=2
        ) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return PG_URL.format(name=name), name
    except Exception as exc:  # no server: say so and skip
        print(f"\n== postgresql: skipped ({type(exc).__name__}: {exc})")
        return None


def drop_pg(name: str) -> None:
    import psycopg

    with psycopg.connect("host=127.0.0.1 user=postgres dbname=postgres", autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--window", type=float, default=10.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="alliance-bench-") as tmp:
        home = Path(tmp)
        if args.db in ("sqlite", "both"):
            run("sqlite (WAL, synchronous=FULL)", f"sqlite:///{home / 'bench.db'}", args, home)
        if args.db in ("postgres", "both"):
            created = pg_database()
            if created:
                try:
                    run("postgresql", created[0], args, home)
                finally:
                    drop_pg(created[1])


if __name__ == "__main__":
    main()
