"""The per-batch kernels every engine runs: one pure function of a batch of whole patients.

A batch holds every row of each of its patients (any number of patients, in any order);
scoring, rupture detection, trajectories and alerts are functions of one patient's rows and
of values fixed before the job starts (the norms), so any partition by patient gives the
same rows, to the last bit (``tests/dynamics/test_partition_invariance.py``). The engines
(:mod:`alliance.scale.spark`, :mod:`alliance.scale.stream`) only cut the data into such
batches and put the pieces together.

Invalid answers do not stop a job: each becomes a row of the bad-rows table (patient,
session, column, rule; never the value) and is left out by the rule of the in-memory
commands' ``--errors flag``: a session with an invalid answer of the scored instrument is
left unscored (its status says why), an invalid answer of another instrument is blanked.

Example
-------
>>> import pandas as pd
>>> from alliance.scale import Job, run_batch
>>> batch = pd.DataFrame({"patient_id": ["a", "a"], "session": [1, 2]}
...                      | {f"srs_{i}": [9.0, 12.0] for i in range(1, 5)})
>>> out, bad = run_batch(Job("score", "srs"), batch)
>>> out["srs_total"].tolist(), bad[["session", "column"]].values.tolist()
([36.0, nan], [[2, 'srs_1'], [2, 'srs_2'], [2, 'srs_3'], [2, 'srs_4']])
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd

from alliance.dynamics import (
    AlertSettings,
    Norms,
    alert_episodes,
    detect_ruptures,
    summarize_trajectories,
)
from alliance.instruments import get_instrument, list_instruments
from alliance.scoring import UnverifiedKeyWarning, answer_issues, score

Kind = Literal["score", "ruptures", "alerts", "trajectories"]
KINDS: tuple[Kind, ...] = ("score", "ruptures", "alerts", "trajectories")
BAD_ROW_COLUMNS = ["patient_id", "session", "instrument", "column", "rule"]


@dataclass(frozen=True)
class Job:
    """What each batch computes. ``instrument`` scores the item columns (and names the
    score ``<instrument>_<score>``); ``norms`` must be fixed before the job starts (the
    instrument's, or estimated once from every patient's first session: see
    :func:`alliance.scale.first_scored_rows`). The remaining fields are the options of
    :func:`~alliance.dynamics.detect_ruptures` and :func:`~alliance.dynamics.alert_episodes`.
    """

    kind: Kind
    instrument: str
    score: str = "total"
    metric: Literal["mean", "sum"] | None = None
    form: str | None = None
    norms: Norms | None = None
    methods: tuple[str, ...] | None = None
    repair_within: int = 3
    prospective: bool = True
    gumz_sd: float = 1.0
    settings: AlertSettings = field(default_factory=AlertSettings)
    therapist_score: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind: must be one of {', '.join(KINDS)}")
        get_instrument(self.instrument)  # an unknown instrument is named before any work
        if self.kind == "alerts" and not self.prospective:
            raise ValueError(
                "prospective: retrospective alerts take clinic thresholds from the whole "
                "table, so they cannot run on batches of patients; run them in one process"
            )

    @property
    def column(self) -> str:
        """The monitored score column, e.g. ``wai_sr_total``."""
        return f"{self.instrument}_{self.score}"


def bad_rows(
    batch: pd.DataFrame, scored_by: str | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the batch with invalid answers blanked, one row per invalid answer). The answers
    of instrument ``scored_by`` stay as they are: its scorer leaves such a session
    unscored with the reason, as the in-memory ``--errors flag`` does."""
    found = []
    for inst in list_instruments():
        if not any(c in batch.columns for c in inst.item_columns):
            continue
        issues = answer_issues(batch, inst)
        if not issues.empty:
            found.append(issues.assign(instrument=inst.id))
    if not found:
        return batch, _empty_bad(batch)
    issues = pd.concat(found, ignore_index=True)
    cleaned = batch.copy()
    blanked = issues[issues["instrument"] != scored_by]
    for column, rows in blanked.groupby("column")["row"]:
        cleaned.loc[list(rows), column] = np.nan
    where = batch.loc[issues["row"], ["patient_id", "session"]].reset_index(drop=True)
    table = pd.concat([where, issues[["instrument", "column", "rule"]]], axis=1)
    return cleaned, table[BAD_ROW_COLUMNS]


def _empty_bad(batch: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "patient_id": batch["patient_id"].iloc[:0],
            "session": batch["session"].iloc[:0],
            "instrument": pd.Series([], dtype=str),
            "column": pd.Series([], dtype=str),
            "rule": pd.Series([], dtype=str),
        }
    )


def scored(job: Job, batch: pd.DataFrame) -> pd.DataFrame:
    """The batch with the instrument's scores added (items present and not yet scored)."""
    if job.kind != "score" and job.column in batch.columns:
        return batch
    if not any(c in batch.columns for c in get_instrument(job.instrument).item_columns):
        return batch
    result = _quiet_score(job, batch)
    added = [c for c in result.columns if c not in batch.columns]
    return pd.concat([batch, result[added]], axis=1)


def _quiet_score(job: Job, batch: pd.DataFrame) -> pd.DataFrame:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnverifiedKeyWarning)  # said once, by the caller
        return score(batch, job.instrument, form=job.form, metric=job.metric, errors="flag")


def run_batch(job: Job, batch: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Run ``job`` on a batch of whole patients: (result, bad rows)."""
    cleaned, bad = bad_rows(batch, job.instrument)
    if job.kind == "score":  # what the scorer gives: the other columns and the scores
        return _quiet_score(job, cleaned), bad
    frame = scored(job, cleaned)
    if job.column not in frame.columns:
        raise ValueError(f"score: no column {job.column!r} and no items to score it from")
    if job.kind == "trajectories":
        return summarize_trajectories(frame, job.column), bad
    if job.kind == "ruptures":
        events = detect_ruptures(
            frame,
            job.column,
            list(job.methods) if job.methods else "all",
            norms=job.norms,
            repair_within=job.repair_within,
            prospective=job.prospective,
            gumz_sd=job.gumz_sd,
        )
        return events, bad
    alerts = alert_episodes(
        frame,
        job.column,
        instrument=job.instrument,
        metric=job.metric,
        therapist_score=job.therapist_score,
        norms=job.norms,
        settings=job.settings,
        prospective=job.prospective,
    )
    return alerts, bad


def first_scored_rows(job: Job, batch: pd.DataFrame) -> pd.DataFrame:
    """Each patient's first session with a score, items included: all that
    :func:`~alliance.dynamics.estimate_norms` reads, so norms estimated from these rows
    of every batch equal norms estimated from the whole table."""
    frame = scored(job, bad_rows(batch, job.instrument)[0])
    if job.column not in frame.columns:
        return frame.iloc[:0]
    known = frame[frame[job.column].notna()]
    first = known.sort_values(["patient_id", "session"], kind="stable")
    return first.drop_duplicates("patient_id", keep="first").reset_index(drop=True)
