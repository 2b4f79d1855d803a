"""Power of a within/between alliance study by simulation, with the engine that will
analyse the real data.

A :class:`Design` is sessions nested in patients nested in therapists; the outcome has a
therapist share, a patient share and session noise, and depends on a session predictor (the
alliance) through a within-patient and a between-patient effect, both in SD units of the
outcome. Each replication simulates a study, fits it with
:func:`~alliance.research.multilevel.analyses.within_between` and tests the effect at
``alpha`` with Satterthwaite's df. Patients may drop out: after each session from the second
on, a patient leaves with probability ``dropout``.

:func:`design_effect_power` is the closed form for the between-patient effect in a two-level
design (sessions in patients, no therapist level): the patient mean's variance is
``sigma^2 (1 + (m - 1) rho) / m`` (the design effect), and the test is a t test on
``N - 2`` df with the matching noncentrality (e.g. Snijders & Bosker 2012, Multilevel
Analysis, 2nd ed., ch. 11). The simulation agrees with it within simulation error
(``tests/research/test_multilevel_power.py``).

Our own because no Python package simulates multilevel power with a mixed model.

>>> d = Design(therapists=None, patients=40, sessions=5, between=0.5)
>>> r = power(d, effect="between", replications=20, seed=1)
>>> 0.0 <= r.power <= 1.0, r.replications
(True, 20)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
import pandas as pd
from scipy import stats

from alliance.research.multilevel.analyses import within_between

Effect = Literal["within", "between"]


@dataclass(frozen=True)
class Design:
    """A study: ``therapists`` (None: no therapist level) x ``patients`` per therapist (all
    patients when there are no therapists) x ``sessions`` per patient, with the outcome's
    variance shares, the effects of the predictor (SD units of the outcome per SD of the
    predictor's part) and a per-session dropout probability."""

    therapists: int | None = 20
    patients: int = 8
    sessions: int = 10
    therapist_icc: float = 0.05
    patient_icc: float = 0.3
    within: float = 0.0
    between: float = 0.0
    predictor_between_share: float = 0.5  # share of the predictor's variance between patients
    dropout: float = 0.0

    def __post_init__(self) -> None:
        checks = {
            "therapists": self.therapists is None or self.therapists >= 2,
            "patients": self.patients >= 2,
            "sessions": self.sessions >= 2,
            "therapist_icc": 0.0 <= self.therapist_icc < 1.0,
            "patient_icc": 0.0 <= self.patient_icc < 1.0 - self.therapist_icc,
            "predictor_between_share": 0.0 < self.predictor_between_share < 1.0,
            "dropout": 0.0 <= self.dropout < 1.0,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ValueError(
                f"{bad[0]}: out of range (therapists >= 2 or None, patients >= 2, "
                "sessions >= 2, 0 <= ICCs with their sum < 1, 0 < predictor_between_share < 1,"
                " 0 <= dropout < 1)"
            )


def simulate_design(design: Design, rng: np.random.Generator) -> pd.DataFrame:
    """One simulated study: columns therapist (when the design has therapists), patient,
    session, x (the predictor) and y (the outcome)."""
    d = design
    n_therapists = d.therapists or 1
    n_patients = n_therapists * d.patients
    patient = np.repeat(np.arange(n_patients), d.sessions)
    therapist = patient // d.patients
    session = np.tile(np.arange(1, d.sessions + 1), n_patients)
    x_patient = rng.normal(0.0, math.sqrt(d.predictor_between_share), n_patients)
    x = x_patient[patient] + rng.normal(0.0, math.sqrt(1 - d.predictor_between_share), session.size)
    frame = pd.DataFrame({"patient": patient, "session": session, "x": x})
    x_mean = frame.groupby("patient")["x"].transform("mean").to_numpy()
    within_sd = math.sqrt(1 - d.predictor_between_share)
    between_sd = math.sqrt(d.predictor_between_share)
    residual = 1.0 - d.therapist_icc - d.patient_icc
    y = (
        d.within * (x - x_mean) / within_sd
        + d.between * (x_mean - x_mean.mean()) / between_sd
        + rng.normal(0.0, math.sqrt(d.therapist_icc), n_therapists)[therapist]
        + rng.normal(0.0, math.sqrt(d.patient_icc), n_patients)[patient]
        + rng.normal(0.0, math.sqrt(residual), session.size)
    )
    frame["y"] = y
    if d.therapists is not None:
        frame.insert(0, "therapist", therapist)
    if d.dropout > 0:  # the session at which each patient leaves (the first always happens)
        leave = rng.geometric(d.dropout, n_patients) + 1
        frame = frame[frame["session"] < leave[frame["patient"]]]
    return frame.reset_index(drop=True)


@dataclass(frozen=True)
class PowerResult:
    """The share of replications that rejected at ``alpha`` (with its Monte Carlo SE), and
    the share whose 95% interval held the true effect."""

    power: float
    se: float
    coverage: float
    replications: int
    failed: int  # replications the engine could not fit (left out)


def power(
    design: Design,
    effect: Effect = "within",
    *,
    replications: int = 500,
    alpha: float = 0.05,
    seed: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> PowerResult:
    """Simulate ``replications`` studies of ``design`` and test ``effect`` in each.

    ``progress`` is called with the number of replications done (for a progress bar)."""
    if effect not in ("within", "between"):
        raise ValueError(f"effect: must be 'within' or 'between', not {effect!r}")
    if replications < 1 or not 0.0 < alpha < 1.0:
        raise ValueError("replications: must be >= 1, and alpha between 0 and 1")
    rng = np.random.default_rng(seed)
    # the effect per unit of the predictor's part (within or between), the interval's units
    share = design.predictor_between_share
    truth = (
        design.within / math.sqrt(1 - share)
        if effect == "within"
        else design.between / math.sqrt(share)
    )
    therapist = "therapist" if design.therapists is not None else None
    rejected = covered = failed = 0
    for done in range(1, replications + 1):
        data = simulate_design(design, rng)
        try:
            row = within_between(data, "y", "x", patient="patient", therapist=therapist,
                                 time="session").table.loc[effect]  # fmt: skip
            rejected += bool(row["p"] < alpha)
            covered += bool(row["lower"] <= truth <= row["upper"])
        except (ValueError, np.linalg.LinAlgError):
            failed += 1
        if progress is not None:
            progress(done)
    fitted = replications - failed
    rate = rejected / fitted if fitted else float("nan")
    return PowerResult(
        power=rate,
        se=math.sqrt(rate * (1 - rate) / fitted) if fitted else float("nan"),
        coverage=covered / fitted if fitted else float("nan"),
        replications=replications,
        failed=failed,
    )


def power_curve(
    design: Design,
    vary: Literal["therapists", "patients", "sessions"],
    values: list[int],
    effect: Effect = "within",
    *,
    replications: int = 500,
    alpha: float = 0.05,
    seed: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> pd.DataFrame:
    """Power at each of ``values`` of one design size, the rest of ``design`` fixed.

    >>> d = Design(therapists=None, patients=20, sessions=4, between=0.8)
    >>> list(power_curve(d, "patients", [10, 20], "between", replications=5, seed=2).columns)
    ['patients', 'power', 'se', 'coverage', 'failed']
    """
    rows = []
    done = 0
    for i, value in enumerate(values):

        def step(k: int, before: int = done) -> None:
            if progress is not None:
                progress(before + k)

        r = power(replace(design, **{vary: value}), effect, replications=replications,
                  alpha=alpha, seed=None if seed is None else seed + i, progress=step)  # fmt: skip
        done += replications
        rows.append((value, r.power, r.se, r.coverage, r.failed))
    return pd.DataFrame(rows, columns=[vary, "power", "se", "coverage", "failed"])


def design_effect_power(design: Design, alpha: float = 0.05) -> float:
    """Closed-form power of the between-patient effect in a two-level design (therapist
    ICC 0, no dropout): a t test on N - 2 df whose noncentrality is the effect over its SE,
    ``SE^2 = sigma^2 DEFF / (N m var(x mean))`` with ``DEFF = 1 + (m - 1) rho``, here in
    SD units (``sigma^2 = 1``) and with the patient mean's expected variance.

    >>> round(design_effect_power(Design(therapists=None, patients=40, sessions=5,
    ...                                  therapist_icc=0.0, between=0.25)), 3)
    0.721
    """
    if design.therapist_icc or design.dropout:
        raise ValueError("design_effect_power: for two-level designs without dropout only")
    n = design.patients * (design.therapists or 1)
    m, rho = design.sessions, design.patient_icc
    share = design.predictor_between_share
    mean_variance = share + (1 - share) / m  # of a patient's mean predictor
    deff = 1 + (m - 1) * rho
    # y's between part is between * (x_mean - mean) / sqrt(share): per unit of x_mean
    slope = design.between / math.sqrt(share)
    se = math.sqrt(deff / (n * m * mean_variance))
    df = n - 2
    crit = stats.t.ppf(1 - alpha / 2, df)
    ncp = slope / se
    return float(stats.nct.sf(crit, df, ncp) + stats.nct.cdf(-crit, df, ncp))
