"""Benchmark: rupture detection on 1,000,000 patients x 20 sessions (20 million rows).

Prints, from one run in one process:
- our vectorised detection (``detect_ruptures`` with stiles2004, strauss2006 and rci_drop,
  repair search included) and the trajectory summaries, on the whole table;
- a pandas ``groupby(...).apply`` implementation of the same three criteria (one Python
  call per patient), timed on a subsample of patients and scaled linearly to the whole
  table (its cost per patient is constant). The subsample results are checked to equal
  ours, event for event.
Targets (issue 3): whole detection <= 10 s on the 2-core machine, >= 20x the baseline.

Run: .venv/bin/python bench/dynamics.py [--patients N] [--sessions S] [--baseline-patients M]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import pandas as pd

from alliance.dynamics import Norms, detect_ruptures, summarize_trajectories

METHODS = ["stiles2004", "strauss2006", "rci_drop"]
NORMS = Norms(sd=0.55, reliability=0.9, source="bench")
WINDOW = 3


def synthetic_sessions(patients: int, sessions: int, seed: int = 2026) -> pd.DataFrame:
    """WAI-SR-like session means with a patient level, noise and one dip in ~30% of patients."""
    rng = np.random.default_rng(seed)
    level = rng.normal(3.9, 0.5, patients)
    x = level[:, None] + rng.normal(0, 0.2, (patients, sessions))
    dipped = rng.random(patients) < 0.3
    at = rng.integers(2, sessions, patients)
    x[dipped, at[dipped]] -= 0.8
    x = np.clip(np.round(x * 12) / 12, 1, 5)
    return pd.DataFrame(
        {
            "patient_id": np.repeat(np.arange(patients, dtype=np.int64), sessions),
            "session": np.tile(np.arange(1, sessions + 1, dtype=np.int64), patients),
            "score": x.ravel(),
        }
    )


# -- the baseline: one Python function per patient ---------------------------------------------
def _repair(x: np.ndarray, s: np.ndarray, k: int, ok) -> tuple[str, float]:  # type: ignore[no-untyped-def]
    for j in range(k + 1, len(x)):
        if s[j] > s[k] + WINDOW:
            break
        if ok(x[j]):
            return "yes", float(s[j])
    return ("no" if s[-1] >= s[k] + WINDOW else "not yet"), np.nan


def per_patient(group: pd.DataFrame) -> pd.DataFrame:
    g = group.dropna(subset=["score"]).sort_values("session")
    x = g["score"].to_numpy()
    s = g["session"].to_numpy()
    rows = []
    sd = x.std(ddof=1) if len(x) >= 3 else np.nan
    crit = 1.959963984540054 * NORMS.s_diff
    for k in range(1, len(x)):
        drop = x[k - 1] - x[k]
        for method, m in (("stiles2004", 2.0), ("strauss2006", 1.0)):
            thr = max(m * sd, crit) if sd > 0 else np.nan  # the reliable-change bound
            if sd > 0 and drop >= thr - 1e-9 * max(1.0, thr):
                target = x[k] + thr if method == "stiles2004" else x[k - 1]
                status, rep = _repair(x, s, k, lambda v, t=target: v >= t - 1e-9)
                rows.append((method, s[k], status, rep))
        base = x[:k].mean()
        below = base - x[k] >= crit - 1e-9
        prev_below = k >= 2 and x[: k - 1].mean() - x[k - 1] >= crit - 1e-9
        if below and not prev_below:
            floor = base - crit
            status, rep = _repair(x, s, k, lambda v, f=floor: v > f + 1e-9)
            rows.append(("rci_drop", s[k], status, rep))
    return pd.DataFrame(rows, columns=["method", "rupture_session", "repaired", "repair_session"])


def baseline(table: pd.DataFrame) -> pd.DataFrame:
    out = table.groupby("patient_id", sort=True).apply(per_patient, include_groups=False)
    return out.reset_index(level=0).reset_index(drop=True)


def ours(table: pd.DataFrame) -> pd.DataFrame:
    return detect_ruptures(table, "score", METHODS, norms=NORMS, repair_within=WINDOW)


def same_events(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    cols = ["patient_id", "method", "rupture_session", "repaired"]
    key_a = a[cols].astype(str).sort_values(cols).reset_index(drop=True)
    key_b = b[cols].astype(str).sort_values(cols).reset_index(drop=True)
    return key_a.equals(key_b)


def timed(fn, *args):  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    result = fn(*args)
    return result, time.perf_counter() - start


def cpu_timed(fn, *args):  # type: ignore[no-untyped-def]
    """Wall and CPU time (the machine's 2 cores are shared; CPU time shows contention)."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn(*args)
    return result, time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=1_000_000)
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--baseline-patients", type=int, default=5_000)
    args = parser.parse_args()

    table = synthetic_sessions(args.patients, args.sessions)
    rows = len(table)
    print(f"table: {args.patients:,} patients x {args.sessions} sessions = {rows:,} rows")

    print(f"load average before the run: {', '.join(f'{v:.1f}' for v in os.getloadavg())}")
    events, t_detect, cpu_detect = cpu_timed(ours, table)
    _, t_traj, cpu_traj = cpu_timed(summarize_trajectories, table, "score")
    counts = events["method"].value_counts().to_dict()
    print(
        f"ours: detection ({', '.join(METHODS)}) {t_detect:.2f} s wall, {cpu_detect:.2f} s CPU "
        f"-> {len(events):,} events {counts}"
    )
    print(f"ours: trajectory summaries {t_traj:.2f} s wall, {cpu_traj:.2f} s CPU")

    sub = table[table["patient_id"] < args.baseline_patients]
    base_events, t_base = timed(baseline, sub)
    sub_ours, t_sub = timed(ours, sub)
    agree = same_events(base_events, sub_ours)
    scale = args.patients / args.baseline_patients
    t_base_full = t_base * scale
    print(
        f"baseline: pandas groupby-apply on {args.baseline_patients:,} patients {t_base:.2f} s "
        f"(ours on the same subsample {t_sub:.3f} s); events identical: {agree}"
    )
    print(f"baseline extrapolated linearly to {args.patients:,} patients: {t_base_full:.0f} s")
    print(f"ratio baseline / ours (whole detection): {t_base_full / t_detect:.0f}x")
    print(
        f"targets: detection <= 10 s -> {'met' if t_detect <= 10 else 'NOT met'}; "
        f">= 20x -> {'met' if t_base_full / t_detect >= 20 else 'NOT met'}"
    )
    if not agree:
        raise SystemExit("baseline and vectorised detection disagree on the subsample")


if __name__ == "__main__":
    main()
