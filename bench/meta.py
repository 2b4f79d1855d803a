"""Benchmark: REML + Knapp-Hartung meta-analysis against PyMARE, statsmodels and metafor.

Two tasks, every baseline timed in the same run on the same data:

1. one random-effects model of k = 300 studies (REML, Knapp-Hartung);
2. the same model on 10,000 bootstrap resamples of those studies.

Reports wall-clock seconds, the speed ratio (baseline / ours) and the largest
absolute disagreement with our estimates of mu and tau^2. statsmodels has no
REML estimator, so it is compared on Paule-Mandel ("iterated") with our PM.
R's metafor is run through ``Rscript`` only when it is installed
(Debian: r-base-core r-cran-metafor): timed with its default settings, compared
on estimates refitted with threshold 1e-10 so that the agreement columns measure
the methods, not metafor's default tolerance (|delta tau2| < 1e-5).

    .venv/bin/python bench/meta.py                 # k = 300, 10,000 resamples
    .venv/bin/python bench/meta.py --resamples 2000 --k 100
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from alliance.research.meta import rma, rma_batch


def make_data(k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic alliance-outcome correlations on Fisher's z (mean r ~ .27, tau ~ .1)."""
    rng = np.random.default_rng(seed)
    n = np.round(np.exp(rng.uniform(np.log(30), np.log(600), k)))
    vi = 1.0 / (n - 3.0)
    yi = rng.normal(np.arctanh(0.27), 0.1, k) + rng.normal(0.0, np.sqrt(vi))
    return yi, vi


def best_time(fn: Callable[[], Any], repeat: int, number: int = 1) -> float:
    """Smallest mean time of ``number`` calls over ``repeat`` rounds (seconds per call)."""
    best = np.inf
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        best = min(best, (time.perf_counter() - start) / number)
    return float(best)


# ------------------------------------------------------------------------------ ours


def ours_single(yi: np.ndarray, vi: np.ndarray, method: str = "REML") -> tuple[float, float]:
    res = rma(yi, vi, method=method, test="knha")
    return res.estimate, res.tau2


def ours_boot(
    yi: np.ndarray, vi: np.ndarray, idx: np.ndarray, method: str = "REML"
) -> tuple[np.ndarray, np.ndarray]:
    out = rma_batch(yi[idx], vi[idx], method=method, test="knha")
    return out.estimate, out.tau2


# ---------------------------------------------------------------------------- PyMARE


def pymare_fit(y: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from pymare import Dataset
    from pymare.estimators import VarianceBasedLikelihoodEstimator

    est = VarianceBasedLikelihoodEstimator(method="REML")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit_dataset(Dataset(y=y, v=v))
        stats = est.summary().get_fe_stats()
    return np.ravel(stats["est"]), np.ravel(est.params_["tau2"])


# ----------------------------------------------------------------------- statsmodels


def statsmodels_fit(y: np.ndarray, v: np.ndarray) -> tuple[float, float]:
    from statsmodels.stats.meta_analysis import combine_effects

    res = combine_effects(y, v, method_re="iterated", use_t=True)
    _ = res.conf_int(use_t=True)  # the Knapp-Hartung-type interval, as we compute one
    return float(res.mean_effect_re), float(res.tau2)


# --------------------------------------------------------------------------- metafor

R_SCRIPT = r"""
suppressMessages(library(metafor))
args <- commandArgs(TRUE)
d <- read.csv(args[1]); idx <- as.matrix(read.csv(args[2], header = FALSE))
# timed with metafor's defaults; estimates for the agreement columns from tight refits
fit <- function(y, v) rma(y, v, method = "REML", test = "knha")
tight <- list(threshold = 1e-10, maxiter = 1000)
fit_tight <- function(y, v) rma(y, v, method = "REML", test = "knha", control = tight)
reps <- 50
t1 <- system.time(for (i in seq_len(reps)) r <- fit(d$yi, d$vi))[["elapsed"]] / reps
boot <- function() for (b in seq_len(nrow(idx))) r <- fit(d$yi[idx[b, ]], d$vi[idx[b, ]])
t2 <- system.time(boot())[["elapsed"]]
est <- tau2 <- numeric(nrow(idx))
for (b in seq_len(nrow(idx))) {
  r <- fit_tight(d$yi[idx[b, ]], d$vi[idx[b, ]]); est[b] <- r$beta[1]; tau2[b] <- r$tau2
}
r <- fit_tight(d$yi, d$vi)
times <- c(t1, t2, rep(NA, nrow(idx) - 1))
write.csv(data.frame(est = c(r$beta[1], est), tau2 = c(r$tau2, tau2), t = times),
          args[3], row.names = FALSE)
"""


def metafor_run(yi: np.ndarray, vi: np.ndarray, idx: np.ndarray) -> dict[str, Any] | None:
    rscript = shutil.which("Rscript")
    if rscript is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        pd.DataFrame({"yi": yi, "vi": vi}).to_csv(d / "data.csv", index=False)
        np.savetxt(d / "idx.csv", idx + 1, fmt="%d", delimiter=",")
        (d / "bench.R").write_text(R_SCRIPT)
        out = subprocess.run(
            [
                rscript,
                str(d / "bench.R"),
                str(d / "data.csv"),
                str(d / "idx.csv"),
                str(d / "out.csv"),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if out.returncode != 0:
            print(f"metafor run failed: {out.stderr.strip()[:300]}")
            return None
        res = pd.read_csv(d / "out.csv")
    return {
        "single": (float(res["est"].iloc[0]), float(res["tau2"].iloc[0])),
        "boot": (res["est"].to_numpy()[1:], res["tau2"].to_numpy()[1:]),
        "t_single": float(res["t"].iloc[0]),
        "t_boot": float(res["t"].iloc[1]),
    }


# ------------------------------------------------------------------------------ main


def row(task: str, baseline: str, t_ours: float, t_base: float, d_est: float, d_tau2: float) -> str:
    return (
        f"| {task} | {baseline} | {t_ours:.4g} | {t_base:.4g} | {t_base / t_ours:.1f}x "
        f"| {d_est:.1e} | {d_tau2:.1e} |"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--k", type=int, default=300, help="studies (default 300)")
    ap.add_argument("--resamples", type=int, default=10_000, help="bootstrap resamples (10,000)")
    ap.add_argument("--seed", type=int, default=2018)
    ap.add_argument("--statsmodels-resamples", type=int, default=1000,
                    help="statsmodels has no batch API: time this many resamples in a loop "
                         "and scale to --resamples (default 1000)")  # fmt: skip
    ap.add_argument("--r-resamples", type=int, default=200,
                    help="metafor fits one model per call (~0.1 s at k = 300): time this many "
                         "resamples in the R loop and scale up (default 200)")  # fmt: skip
    ap.add_argument("--no-r", action="store_true", help="skip metafor even if Rscript exists")
    a = ap.parse_args()

    yi, vi = make_data(a.k, a.seed)
    idx = np.random.default_rng(a.seed + 1).integers(0, a.k, size=(a.resamples, a.k))
    lines = [
        f"alliance.meta benchmark: k = {a.k} studies, {a.resamples:,} bootstrap resamples, "
        "REML + Knapp-Hartung (seconds per task; ratio = baseline / ours)",
        "",
        "| task | baseline | ours (s) | baseline (s) | speed-up | max abs diff mu "
        "| max abs diff tau2 |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]

    # --- one model, k studies
    t_ours = best_time(lambda: ours_single(yi, vi), repeat=5, number=50)
    est, tau2 = ours_single(yi, vi)
    t_pm = best_time(lambda: pymare_fit(yi, vi), repeat=5, number=10)
    p_est, p_tau2 = pymare_fit(yi, vi)
    lines.append(row(f"1 model, k={a.k}", "PyMARE 0.0.13 REML", t_ours, t_pm,
                     abs(est - p_est[0]), abs(tau2 - p_tau2[0])))  # fmt: skip
    t_ours_pm = best_time(lambda: ours_single(yi, vi, "PM"), repeat=5, number=50)
    pm_est, pm_tau2 = ours_single(yi, vi, "PM")
    t_sm = best_time(lambda: statsmodels_fit(yi, vi), repeat=5, number=50)
    s_est, s_tau2 = statsmodels_fit(yi, vi)
    lines.append(row(f"1 model, k={a.k}", "statsmodels (PM vs our PM)", t_ours_pm, t_sm,
                     abs(pm_est - s_est), abs(pm_tau2 - s_tau2)))  # fmt: skip

    # --- bootstrap
    # best of 3 on both sides: the machine is shared, and the minimum is the least noisy
    t_boot = best_time(lambda: ours_boot(yi, vi, idx), repeat=3)
    b_est, b_tau2 = ours_boot(yi, vi, idx)
    t_pboot = best_time(lambda: pymare_fit(yi[idx].T, vi[idx].T), repeat=3)
    pb_est, pb_tau2 = pymare_fit(yi[idx].T, vi[idx].T)
    task = f"{a.resamples:,} resamples"
    d_est, d_tau2 = float(np.abs(b_est - pb_est).max()), float(np.abs(b_tau2 - pb_tau2).max())
    lines.append(row(task, "PyMARE 0.0.13 REML", t_boot, t_pboot, d_est, d_tau2))
    n_sm = min(a.statsmodels_resamples, a.resamples)
    t0 = time.perf_counter()
    sm = np.array([statsmodels_fit(yi[i], vi[i]) for i in idx[:n_sm]])
    t_smboot = (time.perf_counter() - t0) * a.resamples / n_sm
    t_oboot_pm = best_time(lambda: ours_boot(yi, vi, idx, "PM"), repeat=3)
    o_est, o_tau2 = ours_boot(yi, vi, idx, "PM")
    lines.append(row(task, f"statsmodels loop (PM vs our PM; {n_sm:,} timed, scaled)", t_oboot_pm,
                     t_smboot, float(np.abs(o_est[:n_sm] - sm[:, 0]).max()),
                     float(np.abs(o_tau2[:n_sm] - sm[:, 1]).max())))  # fmt: skip

    # --- metafor
    n_r = min(a.r_resamples, a.resamples)
    mf = None if a.no_r else metafor_run(yi, vi, idx[:n_r])
    if mf is None:
        lines.append("| metafor | not run (no Rscript on PATH, or --no-r) | | | | | |")
    else:
        lines.append(row(f"1 model, k={a.k}", "metafor 3.8 (R) REML", t_ours, mf["t_single"],
                         abs(est - mf["single"][0]), abs(tau2 - mf["single"][1])))  # fmt: skip
        lines.append(row(task, f"metafor 3.8 (R) REML, R loop ({n_r:,} timed, scaled)", t_boot,
                         mf["t_boot"] * a.resamples / n_r,
                         float(np.abs(b_est[:n_r] - mf["boot"][0]).max()),
                         float(np.abs(b_tau2[:n_r] - mf["boot"][1]).max())))  # fmt: skip
    print("\n".join(lines))


if __name__ == "__main__":
    main()
