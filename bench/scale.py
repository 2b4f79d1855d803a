"""Benchmark: rupture detection on a registry, by the three engines of ``alliance.scale``.

For each size (patients x 20 sessions; default 1, 5 and 20 million sessions) the same
Parquet file goes through:
- ``single``: the whole table read into memory and run as one batch (``run_batch``);
- ``stream``: patient buckets dealt by DuckDB, one batch at a time (``run_stream``);
- ``spark``: Spark ``local[2]``, ``applyInPandas`` over patient buckets (``run_spark``).
Each engine runs in a fresh process, so its peak resident memory (VmHWM) is its own; for
Spark that is the driver's Python only (the JVM and its Python workers are not counted). Times
and memory are printed as ratios to ``single`` of the same size, from one run; the growth
from the smallest size is printed per engine. Every engine's event count is checked to
equal ``single``'s.

Run: .venv/bin/python bench/scale.py [--sizes 1000000,5000000,20000000] [--engines ...]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
from dynamics import synthetic_sessions  # bench/dynamics.py, beside this file

from alliance.dynamics import Norms
from alliance.scale import Job, run_batch

SESSIONS = 20
JOB = Job("ruptures", "wai_sr", norms=Norms(sd=0.55, reliability=0.9, source="bench"))


def write_registry(path: Path, rows: int) -> None:
    """The sessions of ``bench/dynamics.py`` (patients x 20), ids as text as registries have."""
    frame = synthetic_sessions(rows // SESSIONS, SESSIONS).rename(columns={"score": JOB.column})
    frame["patient_id"] = "P" + frame["patient_id"].astype(str)
    frame.to_parquet(path, index=False, row_group_size=1_000_000)


def run_one(engine: str, source: Path, scratch: Path) -> dict[str, float]:
    """One engine on one file, in this process: seconds and events."""
    started = time.perf_counter()
    if engine == "single":
        events = len(run_batch(JOB, pd.read_parquet(source))[0])
    elif engine == "stream":
        from alliance.scale.stream import buckets, run_stream

        with buckets(source, scratch=scratch) as parts:
            events, _ = run_stream(parts, JOB, scratch / "out", scratch / "bad")
    else:
        from alliance.scale.spark import local_session, run_spark

        spark = local_session("local[2]")
        result, _ = run_spark(spark.read.parquet(str(source)), JOB)
        result.write.mode("overwrite").parquet(str(scratch / "out"))
        events = spark.read.parquet(str(scratch / "out")).count()
        spark.stop()
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "events": events, "peak_mb": peak_kib() / 1024}


def peak_kib() -> int:
    """This process's peak resident memory (VmHWM starts afresh at exec, unlike
    ``ru_maxrss``, which keeps the forking parent's)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status (Linux only)")


def in_fresh_process(engine: str, source: Path, scratch: Path) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, __file__, "--one", engine, str(source), str(scratch)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000000,5000000,20000000")
    parser.add_argument("--engines", default="single,stream,spark")
    parser.add_argument("--one", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        engine, source, scratch = args.one
        print(json.dumps(run_one(engine, Path(source), Path(scratch))))
        return
    engines = args.engines.split(",")
    first: dict[str, float] = {}
    print(f"{'sessions':>10} {'engine':>7} {'s':>8} {'x single':>9} {'peak MB':>8} "
          f"{'x single':>9} {'growth':>7}")  # fmt: skip
    for size in (int(float(s)) for s in args.sizes.split(",")):
        with tempfile.TemporaryDirectory(prefix="alliance-bench-") as tmp:
            source = Path(tmp) / "registry.parquet"
            write_registry(source, size)
            results = {}
            for engine in engines:
                scratch = Path(tmp) / engine
                scratch.mkdir()
                results[engine] = in_fresh_process(engine, source, scratch)
        base = results.get("single", results[engines[0]])
        for engine, r in results.items():
            assert r["events"] == base["events"], (engine, r["events"], base["events"])
            first.setdefault(engine, r["seconds"] / size)
            growth = r["seconds"] / size / first[engine]
            time_ratio, memory_ratio = (
                r["seconds"] / base["seconds"],
                r["peak_mb"] / base["peak_mb"],
            )
            print(
                f"{size:>10} {engine:>7} {r['seconds']:>8.1f} {time_ratio:>9.2f}"
                f" {r['peak_mb']:>8.0f} {memory_ratio:>9.2f} {growth:>7.2f}"
            )
    print("growth: seconds per session relative to the smallest size (1.00 = linear)")


if __name__ == "__main__":
    main()
