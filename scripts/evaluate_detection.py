"""Precision and recall of each rupture detection method against the simulator's truth.

For each item-noise level, simulate clinics (WAI-SR, post-session questions on), score the
items with ``alliance.score``, detect ruptures on ``wai_sr_total`` with every method and
compare with the injected ruptures:

* a detection *matches* an injected rupture of the same patient when it falls on the
  rupture's session or the next one (``--tolerance``, default 1 session);
* precision = matched detections / all detections; recall = injected ruptures matched by at
  least one detection / all injected ruptures whose session was scored;
* repair agreement = share of matched events where the method's ``repaired == "yes"``
  agrees with the truth (repaired within the data), among events whose window closed.

Norms for ``rci_drop`` are estimated from each simulated clinic (SD of first sessions,
Cronbach's alpha of the 12 items). Prints a Markdown table.

Run: .venv/bin/python scripts/evaluate_detection.py [--patients-per-therapist N] [--seeds K]
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd

from alliance.dynamics import METHODS, detect_ruptures, estimate_norms
from alliance.simulate import simulate_scored

NOISE_LEVELS = (0.05, 0.09, 0.15, 0.25)  # item noise SD, POMP; 0.09 is the default


def evaluate(noise: float, seed: int, therapists: int, per: int, tolerance: int) -> pd.DataFrame:
    clinic = simulate_scored(
        therapists, per, seed=seed, item_noise_sd=noise, post_session_questions=True
    )
    s = clinic.sessions
    items = [f"wai_sr_{i}" for i in range(1, 13)]
    norms = estimate_norms(s, "wai_sr_total", item_columns=items)
    found = detect_ruptures(s, "wai_sr_total", list(METHODS), norms=norms)
    scored = s.loc[s["wai_sr_total"].notna(), ["patient_id", "session"]]
    truth = clinic.ruptures.merge(scored, on=["patient_id", "session"])
    rows = []
    for method in METHODS:
        det = found[found["method"] == method]
        rows.append(_score(method, det, truth, tolerance) | {"noise": noise, "seed": seed})
    return pd.DataFrame(rows)


def _score(method: str, det: pd.DataFrame, truth: pd.DataFrame, tol: int) -> dict[str, object]:
    pairs = det.merge(truth, on="patient_id", suffixes=("", "_true"))
    pairs = pairs[
        (pairs["rupture_session"] >= pairs["session"])
        & (pairs["rupture_session"] <= pairs["session"] + tol)
    ]
    matched_det = pairs.drop_duplicates(["patient_id", "rupture_session"])
    matched_true = pairs.drop_duplicates(["patient_id", "session"])
    closed = matched_det[matched_det["repaired"] != "not yet"]
    agree = ((closed["repaired"] == "yes") == closed["repaired_true"]).mean()
    return {
        "method": method,
        "detections": len(det),
        "true_ruptures": len(truth),
        "tp": len(matched_det),
        "precision": len(matched_det) / len(det) if len(det) else np.nan,
        "recall": len(matched_true) / len(truth) if len(truth) else np.nan,
        "repair_agreement": agree,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--therapists", type=int, default=40)
    parser.add_argument("--patients-per-therapist", type=int, default=10)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--tolerance", type=int, default=1)
    args = parser.parse_args()
    results = pd.concat(
        [
            evaluate(
                noise, 100 + seed, args.therapists, args.patients_per_therapist, args.tolerance
            )
            for noise in NOISE_LEVELS
            for seed in range(args.seeds)
        ]
    )
    summary = results.groupby(["noise", "method"], sort=False).agg(
        detections=("detections", "sum"),
        true_ruptures=("true_ruptures", "sum"),
        precision=("precision", "mean"),
        recall=("recall", "mean"),
        repair_agreement=("repair_agreement", "mean"),
    )
    n_patients = args.therapists * args.patients_per_therapist
    print(
        f"{args.seeds} simulated clinics per noise level, {n_patients} patients each; "
        f"match tolerance {args.tolerance} session(s)\n"
    )
    print(
        "| item noise (POMP SD) | method | detections | injected | precision | recall | "
        "repair agreement |"
    )
    print("|---|---|---|---|---|---|---|")
    for (noise, method), r in summary.iterrows():
        print(
            f"| {noise:.2f} | {method} | {r.detections:.0f} | {r.true_ruptures:.0f} | "
            f"{r.precision:.2f} | {r.recall:.2f} | {r.repair_agreement:.2f} |"
        )


if __name__ == "__main__":
    main()
