"""Benchmark: our three-factor CFA against semopy and lavaan on 100,000 administrations of
12 items (issue 12).

The data: three correlated factors (Goal, Task, Bond; correlations .6), four items each,
standardised loadings .6 to .8, simulated with a seed. Every engine fits the same model by
maximum likelihood in this run: ours (``alliance.research.psychometrics.cfa``), semopy
(``Model.fit``, its default ML objective) and, where ``Rscript`` and lavaan are installed
(Debian: r-base-core r-cran-lavaan), lavaan's ``cfa`` timed inside R (reading the file is
not timed). Each time is the median of ``--repeats`` runs; the ratios are against ours, and
the chi-square column shows that the three agree on the optimum.

    .venv/bin/python bench/psychometrics.py                 # 100,000 rows
    .venv/bin/python bench/psychometrics.py --rows 10000    # a quick look
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from alliance.research.psychometrics.cfa import cfa

MODEL = {f: [f"{f}{k}" for k in range(1, 5)] for f in ("goal", "task", "bond")}


def make_items(rows: int, seed: int) -> pd.DataFrame:
    """Continuous item scores from the three-factor model (unit-variance items)."""
    rng = np.random.default_rng(seed)
    phi = np.full((3, 3), 0.6) + 0.4 * np.eye(3)
    factors = rng.normal(size=(rows, 3)) @ np.linalg.cholesky(phi).T
    loadings = np.array([0.8, 0.7, 0.6, 0.75])
    columns = {}
    for j, items in enumerate(MODEL.values()):
        for k, item in enumerate(items):
            noise = rng.normal(size=rows) * np.sqrt(1 - loadings[k] ** 2)
            columns[item] = loadings[k] * factors[:, j] + noise
    return pd.DataFrame(columns)


def timed(run: Callable[[], float], repeats: int) -> tuple[float, float]:
    """Median seconds of ``repeats`` runs and the chi-square of the last."""
    times, chisq = [], float("nan")
    for _ in range(repeats):
        start = time.perf_counter()
        chisq = run()
        times.append(time.perf_counter() - start)
    return statistics.median(times), chisq


def ours(data: pd.DataFrame) -> float:
    return float(cfa(data, MODEL).fit["chisq"])


def semopy_fit(data: pd.DataFrame) -> float:
    import semopy

    spec = "\n".join(f"{f} =~ {' + '.join(items)}" for f, items in MODEL.items())
    model = semopy.Model(spec)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(data)
        stats = semopy.calc_stats(model)
    return float(stats.loc["Value", "chi2"])


def lavaan(data: pd.DataFrame, repeats: int) -> tuple[float, float] | None:
    """lavaan's median fit time inside R and its chi-square, or None without R/lavaan."""
    if shutil.which("Rscript") is None:
        return None
    spec = "\\n".join(f"{f} =~ {' + '.join(items)}" for f, items in MODEL.items())
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "items.csv"
        data.to_csv(path, index=False)
        script = (
            "suppressMessages(library(lavaan)); d <- read.csv(commandArgs(TRUE)[1]); "
            f"t <- replicate({repeats}, system.time(f <<- cfa('{spec}', data = d))[['elapsed']]); "
            "cat(median(t), fitMeasures(f, 'chisq'))"
        )
        done = subprocess.run(
            ["Rscript", "-e", script, str(path)], capture_output=True, text=True, timeout=3600
        )
    if done.returncode != 0:
        print(f"lavaan not run: {done.stderr.strip()[-300:]}")
        return None
    seconds, chisq = (float(v) for v in done.stdout.split())
    return seconds, chisq


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    data = make_items(args.rows, args.seed)
    print(f"three-factor CFA, 12 items, {args.rows:,} rows; median of {args.repeats} runs")
    base, base_chisq = timed(lambda: ours(data), args.repeats)
    rows = [("alliance (ours)", base, base_chisq)]
    try:
        seconds, chisq = timed(lambda: semopy_fit(data), args.repeats)
        rows.append(("semopy", seconds, chisq))
    except ImportError:
        print("semopy not installed: pip install 'alliance[dev]'")
    found = lavaan(data, args.repeats)
    if found is not None:
        rows.append(("lavaan (R)", *found))
    else:
        print("lavaan not timed (needs Rscript with lavaan: apt-get install r-cran-lavaan)")
    print(f"{'engine':<18}{'seconds':>10}{'x ours':>9}{'chisq':>14}")
    for name, seconds, chisq in rows:
        print(f"{name:<18}{seconds:>10.3f}{seconds / base:>9.1f}{chisq:>14.4f}")


if __name__ == "__main__":
    main()
