"""Benchmark: our mixed models against statsmodels MixedLM and lme4, on sessions nested in
patients nested in therapists (issue 11).

The data: 500 therapists x 40 patients x 10 sessions (200,000 rows), simulated with a
therapist intercept, a correlated patient intercept and slope, and residual noise. Two
models, every baseline timed in this run on the same rows:

A. the issue's model, ``y ~ session + (1 + session | patient) + (1 | therapist)``: ours
   (target <= 5 s for the fit) and lme4 (``lmer``, its default settings);
B. the same with the patient intercept and slope uncorrelated,
   ``y ~ session + (1 | patient) + (0 + session | patient) + (1 | therapist)``: the model
   statsmodels can express (therapists as its groups, the patients' intercepts and slopes as
   variance components; it has no correlated effects below the group), so the one on which
   it is compared (target: ours >= 10x faster).

"fit" is the optimisation (lmer's own work); "+ summary" adds the fixed-effect table with
Satterthwaite df (lmerTest's ``summary``), which needs numerical Hessians. The agreement
columns give the largest absolute difference from our log-likelihood and fixed effects.
statsmodels is timed as a user meets it, with its default optimisers (it tries BFGS, then
L-BFGS, then CG when one fails) and its convergence reported beside the time.
R is run through ``Rscript`` only when it is installed (Debian: r-base-core r-cran-lme4).

    .venv/bin/python bench/multilevel.py                  # 500 therapists (200,000 rows)
    .venv/bin/python bench/multilevel.py --therapists 50  # a quick look
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from alliance.research.multilevel import lmm

MODEL_A = "y ~ session + (1 + session | patient) + (1 | therapist)"
MODEL_B = "y ~ session + (1 | patient) + (0 + session | patient) + (1 | therapist)"


def make_sessions(therapists: int, patients: int, sessions: int, seed: int) -> pd.DataFrame:
    """Alliance-like scores: a therapist intercept (SD .3), patient intercept and slope
    (SDs 1 and .1, correlation -.2) and residual noise (SD .5)."""
    rng = np.random.default_rng(seed)
    n_pat = therapists * patients
    therapist = np.repeat(np.arange(therapists), patients * sessions)
    patient = np.repeat(np.arange(n_pat), sessions)
    session = np.tile(np.arange(sessions, dtype=np.float64), n_pat)
    b = rng.multivariate_normal([0.0, 0.0], [[1.0, -0.02], [-0.02, 0.01]], n_pat)
    y = (
        5.0
        + 0.1 * session
        + rng.normal(0.0, 0.3, therapists)[therapist]
        + b[patient, 0]
        + b[patient, 1] * session
        + rng.normal(0.0, 0.5, session.size)
    )
    return pd.DataFrame(
        {
            "therapist": [f"t{i}" for i in therapist],
            "patient": [f"p{i}" for i in patient],
            "session": session,
            "y": y,
        }
    )


def ours(formula: str, data: pd.DataFrame) -> dict[str, float | np.ndarray]:
    start = time.perf_counter()
    fit = lmm(formula, data)
    t_fit = time.perf_counter() - start
    fixed = fit.fixed
    t_summary = time.perf_counter() - start
    return {
        "fit": t_fit,
        "summary": t_summary,
        "loglik": fit.loglik,
        "fixef": fixed["estimate"].to_numpy(),
    }


def statsmodels_b(data: pd.DataFrame) -> dict[str, float | np.ndarray]:
    import statsmodels.formula.api as smf

    start = time.perf_counter()
    model = smf.mixedlm(
        "y ~ session",
        data,
        groups="therapist",
        re_formula="1",
        vc_formula={"patient": "0 + C(patient)", "slope": "0 + C(patient):session"},
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # its convergence chatter
        result = model.fit(reml=True)
    return {
        "fit": time.perf_counter() - start,
        "converged": bool(result.converged),
        "loglik": float(result.llf),
        "fixef": np.asarray(result.fe_params),
    }


R_SCRIPT = """
suppressPackageStartupMessages(library(lme4))
args <- commandArgs(trailingOnly = TRUE)
d <- read.csv(args[1])
out <- list()
for (f in c(args[3], args[4])) {
  t <- system.time(m <- lmer(as.formula(f), data = d, REML = TRUE))[["elapsed"]]
  out[[length(out) + 1]] <- data.frame(formula = f, t = t, loglik = as.numeric(logLik(m)),
                                       b0 = fixef(m)[1], b1 = fixef(m)[2])
}
write.csv(do.call(rbind, out), args[2], row.names = FALSE)
"""


def lme4_run(data: pd.DataFrame) -> pd.DataFrame | None:
    rscript = shutil.which("Rscript")
    if rscript is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        data.to_csv(d / "data.csv", index=False)
        (d / "bench.R").write_text(R_SCRIPT)
        args = [rscript, str(d / "bench.R"), str(d / "data.csv"), str(d / "out.csv")]
        out = subprocess.run([*args, MODEL_A, MODEL_B], capture_output=True, text=True)
        if out.returncode != 0:
            print(f"lme4 run failed: {out.stderr.strip()[:300]}")
            return None
        return pd.read_csv(d / "out.csv")


def row(model: str, baseline: str, t_ours: float, t_base: float, mine: dict, theirs: dict) -> str:
    d_ll = abs(float(mine["loglik"]) - float(theirs["loglik"]))
    d_b = float(np.max(np.abs(np.asarray(mine["fixef"]) - np.asarray(theirs["fixef"]))))
    return (
        f"| {model} | {baseline} | {t_ours:.2f} | {t_base:.2f} | {t_base / t_ours:.1f}x "
        f"| {d_ll:.1e} | {d_b:.1e} |"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--therapists", type=int, default=500)
    ap.add_argument("--patients", type=int, default=40, help="per therapist")
    ap.add_argument("--sessions", type=int, default=10, help="per patient")
    ap.add_argument("--seed", type=int, default=2007)
    ap.add_argument("--no-r", action="store_true", help="skip lme4 even if Rscript exists")
    ap.add_argument("--no-statsmodels", action="store_true", help="skip statsmodels (slow)")
    args = ap.parse_args()

    data = make_sessions(args.therapists, args.patients, args.sessions, args.seed)
    a, b = ours(MODEL_A, data), ours(MODEL_B, data)
    lines = [
        f"{len(data):,} sessions: {args.therapists} therapists x {args.patients} patients x "
        f"{args.sessions} sessions",
        "",
        f"ours, model A: fit {a['fit']:.2f} s, + summary {a['summary']:.2f} s "
        f"(target: fit <= 5 s: {'met' if a['fit'] <= 5.0 else 'NOT MET'})",
        f"ours, model B: fit {b['fit']:.2f} s, + summary {b['summary']:.2f} s",
        "",
        "| model | baseline | ours fit s | baseline s | ratio | abs diff logLik | "
        "max abs diff fixef |",
        "|---|---|---|---|---|---|---|",
    ]
    if not args.no_statsmodels:
        sm = statsmodels_b(data)
        name = f"statsmodels MixedLM ({'converged' if sm['converged'] else 'did NOT converge'})"
        lines.append(row("B", name, float(b["fit"]), float(sm["fit"]), b, sm))
        ratio = float(sm["fit"]) / float(b["fit"])
        target = "met" if ratio >= 10 else "NOT MET"
        lines.append(f"| | target: >= 10x statsmodels: {target} | | | | | |")
    r = None if args.no_r else lme4_run(data)
    if r is None:
        lines.append("| A, B | lme4 | not run (no Rscript on PATH, or --no-r) | | | | |")
    else:
        for name, mine, formula in (("A", a, MODEL_A), ("B", b, MODEL_B)):
            ref = r[r["formula"] == formula].iloc[0]
            theirs = {"loglik": ref["loglik"], "fixef": np.array([ref["b0"], ref["b1"]])}
            lines.append(row(name, "lme4 lmer", float(mine["fit"]), float(ref["t"]), mine, theirs))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
