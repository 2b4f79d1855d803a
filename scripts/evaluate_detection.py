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

Norms for ``rci_drop`` and the bound of every method are estimated from each simulated
clinic (SD of first sessions, Cronbach's alpha of the 12 items), as the clinic does once 30
patients have a first session. Detection tables are given for both modes: retrospective
(whole-series patient SDs) and prospective (each session judged with the data to that day).

The second table replays each clinic *prospectively* through the clinic's monitoring
(:func:`alliance.dynamics.monitor`, unverified alerts allowed as the demo does: patient and
therapist forms, post-session questions): alert episodes per 100 sessions, open episodes
per patient at the end of the data (mean and maximum), precision and recall of the rupture
episodes against the injected ruptures (same matching rule), and sessions from rupture to
alert. These numbers describe our simulator, not real clinics.

Run: .venv/bin/python scripts/evaluate_detection.py [--patients-per-therapist N] [--seeds K]
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd

from alliance.dynamics import METHODS, AlertSettings, detect_ruptures, estimate_norms, monitor
from alliance.simulate import simulate_scored

NOISE_LEVELS = (0.05, 0.09, 0.15, 0.25)  # item noise SD, POMP; 0.09 is the default


ITEMS = [f"wai_sr_{i}" for i in range(1, 13)]


def _clinic(
    noise: float, seed: int, therapists: int, per: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    clinic = simulate_scored(
        therapists,
        per,
        seed=seed,
        item_noise_sd=noise,
        post_session_questions=True,
        therapist_form=True,
    )
    s = clinic.sessions
    scored = s.loc[s["wai_sr_total"].notna(), ["patient_id", "session"]]
    return s, clinic.ruptures.merge(scored, on=["patient_id", "session"])


def evaluate(noise: float, seed: int, therapists: int, per: int, tolerance: int) -> pd.DataFrame:
    s, truth = _clinic(noise, seed, therapists, per)
    norms = estimate_norms(s, "wai_sr_total", item_columns=ITEMS)
    rows = []
    for prospective in (False, True):
        found = detect_ruptures(
            s, "wai_sr_total", list(METHODS), norms=norms, prospective=prospective
        )
        for method in METHODS:
            det = found[found["method"] == method]
            rows.append(
                _score(method, det, truth, tolerance)
                | {"noise": noise, "seed": seed, "mode": found.attrs["mode"]}
            )
    return pd.DataFrame(rows)


def evaluate_alerts(
    noise: float, seed: int, therapists: int, per: int, tolerance: int
) -> dict[str, float]:
    """Prospective replay of the clinic's monitoring on one simulated clinic."""
    s, truth = _clinic(noise, seed, therapists, per)
    norms = estimate_norms(s, "wai_sr_total", item_columns=ITEMS)
    table = s.rename(
        columns={
            "t_wai_sr_total": "wai_sr_therapist_total",
            "psq_1": "psq_rupture",
            "psq_2": "psq_intensity",
            "psq_3": "psq_resolution",
        }
    )
    result = monitor(table, norms={"wai_sr": norms}, settings=AlertSettings(allow_unverified=True))
    ep = result.episodes
    ruptures = ep[ep["kind"] == "rupture"].rename(columns={"opened_session": "rupture_session"})
    matched, found = _match(ruptures, truth, tolerance)
    n_sessions = int(s["wai_sr_total"].notna().sum())
    open_now = (ep["state"] == "open").groupby(ep["patient_id"]).sum()
    open_now = open_now.reindex(s["patient_id"].unique(), fill_value=0)
    delay = (found["rupture_session"] - found["session"]).mean()
    return {
        "noise": noise,
        "seed": seed,
        "per_100": 100 * len(ep) / n_sessions,
        "open_mean": float(open_now.mean()),
        "open_max": float(open_now.max()),
        "precision": len(matched) / len(ruptures) if len(ruptures) else np.nan,
        "recall": len(found) / len(truth) if len(truth) else np.nan,
        "delay": float(delay),
        "act": float((result.status["status"] == "act").mean()),
    }


def _match(det: pd.DataFrame, truth: pd.DataFrame, tol: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Detections that match an injected rupture (same patient, at its session or up to
    ``tol`` later), and the injected ruptures matched by at least one detection."""
    pairs = det.merge(truth, on="patient_id", suffixes=("", "_true"))
    pairs = pairs[
        (pairs["rupture_session"] >= pairs["session"])
        & (pairs["rupture_session"] <= pairs["session"] + tol)
    ]
    return (
        pairs.drop_duplicates(["patient_id", "rupture_session"]),
        pairs.drop_duplicates(["patient_id", "session"]),
    )


def _score(method: str, det: pd.DataFrame, truth: pd.DataFrame, tol: int) -> dict[str, object]:
    matched_det, matched_true = _match(det, truth, tol)
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
    summary = results.groupby(["noise", "mode", "method"], sort=False).agg(
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
        "| item noise (POMP SD) | mode | method | detections | injected | precision | recall | "
        "repair agreement |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for (noise, mode, method), r in summary.iterrows():
        print(
            f"| {noise:.2f} | {mode} | {method} | {r.detections:.0f} | {r.true_ruptures:.0f} | "
            f"{r.precision:.2f} | {r.recall:.2f} | {r.repair_agreement:.2f} |"
        )
    alerts = pd.DataFrame(
        [
            evaluate_alerts(
                noise, 100 + seed, args.therapists, args.patients_per_therapist, args.tolerance
            )
            for noise in NOISE_LEVELS
            for seed in range(args.seeds)
        ]
    )
    table = alerts.groupby("noise").agg(
        per_100=("per_100", "mean"),
        open_mean=("open_mean", "mean"),
        open_max=("open_max", "max"),
        precision=("precision", "mean"),
        recall=("recall", "mean"),
        delay=("delay", "mean"),
        act=("act", "mean"),
    )
    print("\nProspective replay of the clinic's monitoring (alert episodes):\n")
    print(
        "| item noise | episodes per 100 sessions | open per patient (mean) | open (max) | "
        "rupture precision | rupture recall | sessions to alert | share 'act' |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for noise, r in table.iterrows():
        print(
            f"| {noise:.2f} | {r.per_100:.1f} | {r.open_mean:.2f} | {r.open_max:.0f} | "
            f"{r.precision:.2f} | {r.recall:.2f} | {r.delay:.2f} | {r.act:.2f} |"
        )


if __name__ == "__main__":
    main()
