"""Benchmark: scoring 1,000,000 WAI-SR administrations in memory.

Prints, from one run in one process:
- our vectorised scorer (validation, reverse keys, missing-item rule, status column included);
- a straightforward per-row Python scorer (key precomputed once, one loop per row), timed on
  a subsample and scaled linearly to the full table (its cost per row is constant);
- a bare NumPy lower bound: item columns to a float matrix, one matrix product, one division
  (no validation, no missing data handling, no output table).
Targets (issue 2): >= 50x the per-row baseline, within 5x of the NumPy bound.

Run: .venv/bin/python bench/scoring.py [--rows N] [--baseline-rows M] [--repeat R]
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable

import numpy as np
import pandas as pd

import alliance
from alliance.instruments import get_instrument
from alliance.scoring import compile_key

INSTRUMENT = "wai_sr"


def synthetic_answers(rows: int, seed: int = 2026) -> pd.DataFrame:
    """Integer answers 1..5 with a person effect, ids kept beside them (0.5% cells missing)."""
    rng = np.random.default_rng(seed)
    person = rng.normal(0, 0.8, rows)[:, None]
    latent = 3.6 + person + rng.normal(0, 0.7, (rows, 12))
    items = np.clip(np.rint(latent), 1, 5)
    items[rng.random(items.shape) < 0.005] = np.nan
    table = pd.DataFrame(items, columns=[f"{INSTRUMENT}_{i}" for i in range(1, 13)])
    table.insert(0, "session", rng.integers(1, 20, rows))
    table.insert(0, "patient_id", np.arange(rows))
    return table


def per_row_scorer(table: pd.DataFrame) -> list[dict[str, float]]:
    """The scorer one writes first: loop over rows, reverse, average, apply the missing rule."""
    inst = get_instrument(INSTRUMENT)
    key = {s.id: inst.score_items(s.id) for s in inst.scorable_scores}
    reverse = {i.number for i in inst.items if i.reverse}
    low, high = inst.scale.min, inst.scale.max
    allowed = {
        s: math.floor(len(items) * inst.missing.max_missing_fraction) for s, items in key.items()
    }
    columns = list(inst.item_columns)
    out = []
    for row in table[columns].itertuples(index=False, name=None):
        answers = dict(zip(range(1, 13), row))
        for value in row:
            if not (math.isnan(value) or (low <= value <= high and float(value).is_integer())):
                raise ValueError(f"invalid answer {value}")
        scores = {}
        for score_id, items in key.items():
            values = [
                (low + high - answers[i]) if i in reverse else answers[i]
                for i in items
                if not math.isnan(answers[i])
            ]
            ok = values and len(items) - len(values) <= allowed[score_id]
            scores[score_id] = sum(values) / len(values) if ok else math.nan
        out.append(scores)
    return out


def numpy_bound(table: pd.DataFrame) -> np.ndarray:
    key = compile_key(INSTRUMENT)
    matrix = table[list(key.columns)].to_numpy(dtype=np.float64)
    return (matrix @ key.membership) / key.n_items


def best_of(repeat: int, func: Callable[[], object]) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--baseline-rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    table = synthetic_answers(args.rows)
    sample = table.head(args.baseline_rows)
    ours = alliance.score(table, INSTRUMENT)
    check = pd.DataFrame(per_row_scorer(table.head(2000)))
    np.testing.assert_allclose(ours["wai_sr_total"].head(2000), check["total"], rtol=1e-12)

    t_ours = best_of(args.repeat, lambda: alliance.score(table, INSTRUMENT))
    t_bound = best_of(args.repeat, lambda: numpy_bound(table))
    t_rows = best_of(1, lambda: per_row_scorer(sample)) * (args.rows / len(sample))

    print(f"WAI-SR scoring, {args.rows:,} administrations (best of {args.repeat})")
    print(f"  alliance.score        {t_ours:8.3f} s  ({args.rows / t_ours / 1e6:.1f} M rows/s)")
    print(f"  per-row Python        {t_rows:8.3f} s  (timed on {len(sample):,} rows, scaled)")
    print(f"  NumPy matmul bound    {t_bound:8.3f} s")
    print(f"  speed-up vs per-row   {t_rows / t_ours:8.1f} x   (target >= 50x)")
    print(f"  cost vs NumPy bound   {t_ours / t_bound:8.2f} x   (target <= 5x)")


if __name__ == "__main__":
    main()
