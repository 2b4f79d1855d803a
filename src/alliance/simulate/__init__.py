"""Synthetic clinics for the demo, the tests, the benchmarks and power analysis.

:func:`simulate_clinic` returns item-level sessions with the ground truth (true latent
alliance, injected ruptures and repairs); :func:`simulate_scored` adds the instrument's
scores (and the therapist's total when the therapist form is simulated).

Example
-------
>>> from alliance.simulate import simulate_scored
>>> clinic = simulate_scored(n_therapists=2, patients_per_therapist=2, seed=7)
>>> "wai_sr_total" in clinic.sessions.columns
True
"""

from __future__ import annotations

import warnings
from dataclasses import replace
from typing import Any

import pandas as pd

from alliance.instruments import get_instrument
from alliance.scoring import UnverifiedKeyWarning, score, score_unkeyed_total
from alliance.simulate.clinic import SimulatedClinic, simulate_clinic

__all__ = ["SimulatedClinic", "score_therapist_form", "simulate_clinic", "simulate_scored"]


def simulate_scored(*args: Any, **kwargs: Any) -> SimulatedClinic:
    """:func:`simulate_clinic`, then score the items with :func:`alliance.score`.

    Adds ``<id>_<score>`` columns (instrument default metric) and, with the therapist
    form, ``t_<id>_total`` (see :func:`score_therapist_form`).

    >>> c = simulate_scored(1, 3, therapist_form=True, seed=2)
    >>> {"wai_sr_total", "t_wai_sr_total"} <= set(c.sessions.columns)
    True
    """
    clinic = simulate_clinic(*args, **kwargs)
    inst = get_instrument(clinic.instrument)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnverifiedKeyWarning)
        scored = score(clinic.sessions, inst, errors="flag")
    if set(f"t_{c}" for c in inst.item_columns) <= set(scored.columns):
        scored[f"t_{inst.id}_total"] = score_therapist_form(scored, inst.id)
    keep = clinic.sessions.drop(columns=list(inst.item_columns))
    extra = scored[[c for c in scored.columns if c not in keep.columns]]
    sessions = pd.concat(
        [clinic.sessions, extra.drop(columns=list(inst.item_columns), errors="ignore")], axis=1
    )
    sessions = sessions.loc[:, ~sessions.columns.duplicated()]
    return replace(clinic, sessions=sessions)


def score_therapist_form(frame: pd.DataFrame, inst_id: str, quiet: bool = True) -> pd.Series:
    """Therapist total from ``t_<id>_<n>`` item columns (the simulator's convention).

    Uses the therapist form's key where one is published (:func:`alliance.score`);
    otherwise the scoring core's all-item total for a form without a published key
    (:func:`alliance.scoring.score_unkeyed_total`: reverse keys, missing-item rule and
    default metric of the instrument; key unverified). Invalid answers and rows with too
    many missing items get no total. ``quiet=False`` lets the core's
    :class:`~alliance.scoring.UnverifiedKeyWarning` through; the series' ``attrs
    ["alliance"]`` records the key status either way.

    >>> t = pd.DataFrame({f"t_wai_sr_{i}": [4.0] for i in range(1, 13)})
    >>> float(score_therapist_form(t, "wai_sr").iloc[0])
    4.0
    >>> t = pd.DataFrame({f"t_wai_s_{i}": [7.0] for i in range(1, 13)})  # 4, 10 reversed
    >>> float(score_therapist_form(t, "wai_s").iloc[0])
    6.0
    """
    inst = get_instrument(inst_id)
    t_cols = [f"t_{c}" for c in inst.item_columns]
    form = next((f for f in inst.forms if f.respondent == "therapist"), None)
    answers = frame[t_cols].rename(columns=lambda c: c.removeprefix("t_"))
    with warnings.catch_warnings():
        if quiet:
            warnings.simplefilter("ignore", UnverifiedKeyWarning)
        if form is not None and form.scorable:
            scored = score(answers, inst, form=form.id, errors="flag")
        else:
            scored = score_unkeyed_total(answers, inst, errors="flag")
    total = scored[f"{inst_id}_total"]
    total.attrs = dict(scored.attrs)
    return total
