"""Session tables for the clinic, and the bridge to the dynamics.

Alert, rupture and status policy lives in :mod:`alliance.dynamics`; this module assembles
the wide session table it expects from the stored responses, calls
:func:`alliance.dynamics.monitor.monitor` and stores its results.

When analytics run: never while a page is read. After answers are committed (the patient
link writer, the therapist form) the patients go to the process's
:class:`AnalyticsWorker`, which recomputes them one batch at a time in the background with
:func:`refresh_patients`; a patient whose refresh was lost (a crash, a failure) keeps its
``alerts_stale`` flag and is picked up by the sweep at start-up (and every few minutes).

Norms are frozen: the first norms the clinic gets for an instrument (the instrument file's,
or estimated from the clinic's first sessions once enough patients have one,
:func:`alliance.dynamics.reliable_change.clinic_norms`) are stored in ``clinic_norms`` and
used for every later decision, so a patient's episodes never move because other patients
came later, and monitoring one patient alone gives that patient's part of the whole clinic.

Expected trajectories work the same way. The worker refits the clinic's growth model of
each alliance total on a schedule (:func:`refit_expected`; every
``ALLIANCE_EXPECTED_REFIT_HOURS``, never on a page view), keeping every fit. When a
session is first analysed its expected range is computed from the fit then in force and
the patient's earlier sessions, and stored once (``expected_bands``): the ``below_expected``
episodes and the chart use those stored ranges, so a refit moves no earlier decision.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pandas as pd
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from alliance.instruments import alliance_measures, get_instrument, list_instruments
from alliance.store import repo
from alliance.store.db import Database

if TYPE_CHECKING:
    from alliance.dynamics.reliable_change import Norms
    from alliance.store.models import Patient

log = logging.getLogger("alliance.web")
META_COLUMNS = ("patient_id", "research_id", "therapist_id", "session", "date")
NORM_SCORE = "total"  # reliable change rests on the instrument's total
REFRESH_CHUNK = 200  # patients per monitor call of the worker
STORE_CHUNK = 20  # patients per transaction when storing (short write locks)
REFIT_CHECK = 600.0  # seconds between the worker's checks whether a refit is due


def rating_prefix(instrument_id: str, respondent: str) -> str:
    """Column prefix of a rating: ``wai_sr`` for the client, ``wai_sr_therapist`` otherwise."""
    return instrument_id if respondent == "client" else f"{instrument_id}_{respondent}"


def session_table(s: Session, patient_ids: Sequence[int] | None = None) -> pd.DataFrame:
    """Wide session table: one row per patient and session, items and scores as columns.

    Client ratings keep the item and score names of the core (``wai_sr_4``,
    ``wai_sr_total``); ratings by the therapist (or an observer) carry the respondent after
    the instrument id (``wai_sr_therapist_total``).
    """
    return wide_table(repo.response_records(s, patient_ids))


def wide_table(records: Sequence[Any]) -> pd.DataFrame:
    """The wide session table of :func:`repo.response_records` rows (a column that no
    response answered is left out)."""
    if not records:
        return pd.DataFrame(columns=list(META_COLUMNS))
    rows: dict[tuple[int, int], dict[str, Any]] = {}
    for r in records:
        row = rows.get((r.patient_id, r.session))
        if row is None:
            row = rows[(r.patient_id, r.session)] = {
                "patient_id": r.patient_id,
                "research_id": r.research_id,
                "therapist_id": r.therapist_id,
                "session": r.session,
                "date": pd.Timestamp(r.date),
            }
        prefix = rating_prefix(r.instrument_id, r.respondent)
        if prefix == r.instrument_id:
            row.update(r.items)
            row.update(r.scores)
        else:
            cut = len(r.instrument_id)
            for values in (r.items, r.scores):
                row.update({prefix + k[cut:]: v for k, v in values.items()})
    wide = pd.DataFrame.from_records(list(rows.values()))
    wide = wide.loc[:, wide.notna().any().to_numpy()]
    return wide.sort_values(["patient_id", "session"], kind="stable").reset_index(drop=True)


def primary_instrument(columns: Sequence[str]) -> str | None:
    """The alliance measure shown first: the first in monitoring order with a total
    (:func:`alliance.instruments.alliance_measures`)."""
    for instrument_id in alliance_measures():
        if f"{instrument_id}_total" in columns:
            return instrument_id
    return None


def score_columns(table: pd.DataFrame, instrument_id: str) -> list[tuple[str, str]]:
    """(column, label) of the instrument's scores present in the table, both raters."""
    inst = get_instrument(instrument_id)
    found = []
    for respondent in ("client", "therapist", "observer"):
        prefix = rating_prefix(instrument_id, respondent)
        who = "patient" if respondent == "client" else respondent
        for score in inst.scorable_scores:
            column = f"{prefix}_{score.id}"
            if column in table.columns and table[column].notna().any():
                found.append((column, f"{score.label} ({who})"))
    return found


def answer_labels(columns: list[tuple[str, str]]) -> dict[str, dict[float, str]]:
    """For single-item scores of a yes/no item, the anchor label of each value."""
    labels: dict[str, dict[float, str]] = {}
    for column, _label in columns:
        for inst in list_instruments():
            score_id = column.removeprefix(f"{inst.id}_")
            if score_id == column or score_id not in {sc.id for sc in inst.scores}:
                continue
            items = inst.score_items(score_id)
            scale = inst.item_scale(items[0]) if len(items) == 1 else None
            if scale is not None and scale.kind == "binary":
                labels[column] = {a.value: a.descriptor for a in scale.anchors}
    return labels


def latest(table: pd.DataFrame, column: str) -> float | None:
    """The most recent non-missing value of a column."""
    if column not in table.columns:
        return None
    values = table[column].dropna()
    return None if values.empty else float(values.iloc[-1])


def fmt(value: Any, digits: int = 2, labels: dict[float, str] | None = None) -> str:
    """A score for display ('–' when missing; the anchor label for yes/no answers)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, str):
        return value
    if labels and float(value) in labels:
        return labels[float(value)]
    return f"{float(value):.{digits}f}"


# -- analytics ---------------------------------------------------------------------------
def allow_unverified() -> bool:
    """The clinic's setting ``ALLIANCE_ALERTS_ALLOW_UNVERIFIED`` (default off)."""
    return os.environ.get("ALLIANCE_ALERTS_ALLOW_UNVERIFIED", "0") in ("1", "true", "yes")


def _norms_of(row: Any) -> Norms:
    from alliance.dynamics.reliable_change import Norms

    return Norms.from_dict(
        {"sd": row.sd, "reliability": row.reliability, "source": row.source, "mean": row.mean}
    )


def frozen_norms(
    db: Database, instruments: Iterable[str], stored: Sequence[Any]
) -> dict[str, Norms]:
    """The clinic's norms by instrument id: the stored ones, and for an instrument without
    any, the first the clinic gets (:func:`clinic_norms` over its first sessions: one
    query), stored at once so that they never change afterwards."""
    from alliance.dynamics.reliable_change import clinic_norms

    norms = {row.instrument_id: _norms_of(row) for row in stored if row.score == NORM_SCORE}
    for instrument_id in instruments:
        if instrument_id in norms:
            continue
        with db.read() as s:
            first = repo.first_responses_frame(s, instrument_id)
        found = clinic_norms(first, instrument_id)
        if found is None:
            continue
        column = f"{instrument_id}_{NORM_SCORE}"
        n = int(first.loc[first[column].notna(), "patient_id"].nunique()) if column in first else 0
        try:
            with db.write() as s:
                repo.store_norms(
                    s,
                    instrument_id,
                    NORM_SCORE,
                    sd=found.sd,
                    reliability=found.reliability,
                    source=found.source,
                    mean=found.mean,
                    n_patients=n,
                )
            norms[instrument_id] = found
        except (repo.Conflict, SQLAlchemyError):  # another worker froze them first
            with db.read() as s:
                for row in repo.stored_norms(s):
                    if (row.instrument_id, row.score) == (instrument_id, NORM_SCORE):
                        norms[instrument_id] = _norms_of(row)
    return norms


def refit_expected(
    db: Database, every: float = 24 * 3600.0, now: datetime | None = None
) -> list[str]:
    """Refit the expected-trajectory model of each alliance total whose fit in force is
    older than ``every`` seconds at ``now`` (or that has none) on the answers submitted by
    then, and store the new fits as of ``now``; returns the scores refitted. A score
    whose data cannot yet carry a model
    (:func:`alliance.research.multilevel.expected.fit_clinic_expected`) is skipped; a
    failure is logged by its exception type only."""
    from alliance.research.multilevel.expected import fit_clinic_expected

    moment = now or datetime.now(UTC)
    with db.read() as s:
        fits = repo.expected_models_in_force(s)
    due = [
        f"{i}_total"
        for i in alliance_measures()
        if f"{i}_total" not in fits
        or (moment - repo.aware(fits[f"{i}_total"].fitted_at)).total_seconds() >= every
    ]
    if not due:
        return []
    with db.read() as s:  # the data available at ``moment`` (a replay may fit in the past)
        records = [r for r in repo.response_records(s) if repo.aware(r.submitted_at) <= moment]
    table = wide_table(records)
    done = []
    for score in (c for c in due if c in table.columns):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model = fit_clinic_expected(table, score)
            if model is None:
                continue
            rows = table.loc[table[score].notna()]
            with db.write() as s:
                repo.store_expected_model(
                    s, score, model.to_dict(), n_patients=model.n_patients,
                    n_sessions=len(rows), fitted_at=moment,
                )  # fmt: skip
            done.append(score)
        except Exception as exc:  # a failed fit keeps the one in force
            log.warning("expected-trajectory fit failed (%s)", type(exc).__name__)
    return done


def _new_bands(
    table: pd.DataFrame, fits: dict[str, Any], stored: pd.DataFrame, records: Sequence[Any]
) -> list[dict[str, Any]]:
    """Bands of the scored sessions that have none yet, from the fits in force: only of
    sessions answered after the fit (one answered before it was judged without a model
    that day, and is not judged again by a later one)."""
    from alliance.research.multilevel.expected import ExpectedModel, expected_band

    have = set(zip(stored["patient_id"], stored["session"], stored["score"], strict=True))
    rows: list[dict[str, Any]] = []
    for score, fit in fits.items():
        since = repo.aware(fit.fitted_at)
        wanted = {
            (r.patient_id, r.session, score)
            for r in records
            if r.respondent == "client" and f"{r.instrument_id}_total" == score
            and repo.aware(r.submitted_at) >= since
        } - have  # fmt: skip
        if not wanted or score not in table.columns:
            continue  # nothing new: no band is computed again
        patients = {key[0] for key in wanted}
        # the fit was made on the clinic's own columns (fit_clinic_expected), so its
        # patient, session and score names are this table's
        band = expected_band(ExpectedModel.from_dict(fit.params),
                             table[table["patient_id"].isin(patients)])  # fmt: skip
        for r in band.to_dict(orient="records"):
            key = (int(r["patient_id"]), int(r["session"]), score)
            if key in wanted:
                values = {f: float(r[f]) for f in repo.BAND_FIELDS[:-1]}
                rows.append({"patient_id": key[0], "session": key[1], "score": score,
                             "model_id": fit.id, **values,
                             "observed": float(r[score])})  # fmt: skip
    return rows


def with_expected(table: pd.DataFrame, bands: pd.DataFrame) -> pd.DataFrame:
    """The session table with each score's stored lower edge as ``<score>_expected_lower``
    (the column the dynamics judge ``below_expected`` by)."""
    from alliance.dynamics.monitor import EXPECTED_LOWER

    out = table
    for score, rows in bands.groupby("score") if len(bands) else ():
        edge = rows[["patient_id", "session", "lower"]].rename(
            columns={"lower": f"{score}{EXPECTED_LOWER}"}
        )
        out = out.merge(edge, on=["patient_id", "session"], how="left")
    return out


def refresh_patients(db: Database, patient_ids: Iterable[int] | None = None) -> int:
    """Recompute and store the analytics of these patients (all stale ones for None);
    returns the number of new alert episodes.

    Only patients marked stale are recomputed, from their own sessions and the clinic's
    frozen norms (the dynamics judge every session prospectively). They are stored in
    short transactions of up to :data:`STORE_CHUNK` patients, each patient only if no
    answers arrived since it was read (those bring their own refresh). A failure is logged
    by its exception type only (no patient data) and leaves the patients stale, to be
    retried.
    """
    from alliance.dynamics import AlertSettings
    from alliance.dynamics.monitor import monitor
    from alliance.web.dynamics_adapter import store_rows

    ids = None if patient_ids is None else sorted({int(p) for p in patient_ids})
    if ids is not None and not ids:
        return 0
    try:
        with db.read() as s:
            stale = repo.stale_patient_ids(s, ids)
            if not stale:
                return 0
            records = repo.response_records(s, stale)
            stored = list(repo.stored_norms(s))
            fits = repo.expected_models_in_force(s)
            kept_bands = repo.expected_bands_of(s, stale)
        counts: dict[int, int] = {}
        for r in records:  # read with the table: exactly the answers it holds
            counts[r.patient_id] = counts.get(r.patient_id, 0) + 1
        table = wide_table(records)
        present = [i for i in alliance_measures() if f"{i}_total" in table.columns]
        norms = frozen_norms(db, present, stored)
        settings = AlertSettings(allow_unverified=allow_unverified())
        new_bands = _new_bands(table, fits, kept_bands, records)
        bands = pd.concat([kept_bands, pd.DataFrame(new_bands, columns=kept_bands.columns)])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = monitor(with_expected(table, bands), norms=norms, settings=settings)
        rows = store_rows(result)
    except Exception as exc:  # analytics failure must not take the clinic down
        log.warning("analytics failed (%s); patients stay marked stale", type(exc).__name__)
        return 0
    added = 0
    for k in range(0, len(stale), STORE_CHUNK):
        chunk = stale[k : k + STORE_CHUNK]
        try:
            with db.write() as s:
                now = repo.response_counts(s, chunk, lock=True)
                # a patient with newer answers is left stale: their own refresh stores it
                fresh = [p for p in chunk if p in now and now[p] == counts.get(p, 0)]
                episodes = [e for p in fresh if p in rows for e in rows[p].episodes]
                ruptures = [r for p in fresh if p in rows for r in rows[p].ruptures]
                repo.add_expected_bands(s, [b for b in new_bands if b["patient_id"] in fresh])
                added += repo.replace_analytics(s, fresh, episodes, ruptures)
        except Exception as exc:  # e.g. a database error: these patients stay stale
            log.warning("storing analytics failed (%s); patients stay stale", type(exc).__name__)
    return added


class AnalyticsWorker:
    """One background thread per process that refreshes patients' analytics.

    :meth:`submit` (called after a commit) only records the patients and returns. The
    thread gives way to the submissions: it waits ``delay`` seconds after the first queued
    patient (gathering the others that come meanwhile into one batch: one
    :func:`refresh_patients` call for all is far cheaper than one per patient) and until
    no submission came for ``quiet`` seconds, but never longer than ``max_delay``.
    :meth:`sweep` also takes every patient marked stale in the database (at start-up, and
    every ``sweep_every`` seconds while idle), so a refresh lost to a crash or a failure is
    retried; several processes may sweep the same patients (the result is the same).
    :meth:`drain` waits until nothing is pending, without the delays (tests, benchmarks).
    After each batch and each sweep the thread refits the expected-trajectory models that
    are older than ``refit_every`` seconds (:func:`refit_expected`; None: never), looking
    at most every ``refit_check`` seconds.
    """

    def __init__(
        self,
        db: Database,
        sweep_every: float | None = 300.0,
        refresh: Callable[[Database, Iterable[int] | None], int] = refresh_patients,
        delay: float = 0.5,
        quiet: float = 0.1,
        max_delay: float = 5.0,
        refit_every: float | None = 24 * 3600.0,
        refit: Callable[[Database, float], list[str]] = refit_expected,
        refit_check: float = REFIT_CHECK,
    ) -> None:
        self.db = db
        self.sweep_every = sweep_every
        self.refresh = refresh
        self.delay, self.quiet, self.max_delay = delay, quiet, max_delay
        self.refit_every, self.refit, self.refit_check = refit_every, refit, refit_check
        self._next_refit_check = 0.0  # monotonic; the database says whether a fit is due
        self._pending: set[int] = set()
        self._sweep = False
        self._busy = False
        self._stopped = False
        self._hurry = 0  # callers of drain() waiting: no delays
        self._first = self._last = 0.0  # when the oldest / newest queued work came
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def submit(self, patient_ids: Iterable[int]) -> None:
        """Queue these patients for a refresh (returns at once)."""
        with self._cond:
            self._queued()
            self._pending.update(int(p) for p in patient_ids)
            self._cond.notify_all()
        self._ensure_thread()

    def sweep(self) -> None:
        """Queue every patient marked stale in the database."""
        with self._cond:
            self._queued()
            self._sweep = True
            self._cond.notify_all()
        self._ensure_thread()

    def drain(self, timeout: float | None = 60.0) -> bool:
        """Run what is queued now and wait until it is done; False if ``timeout`` passed."""
        with self._cond:
            self._hurry += 1
            self._cond.notify_all()
            try:
                return self._cond.wait_for(self._idle, timeout)
            finally:
                self._hurry -= 1

    def stop(self) -> None:
        """End the thread once the current refresh is done (pending ones are dropped; their
        patients stay stale in the database)."""
        with self._cond:
            self._stopped = True
            self._pending.clear()
            self._sweep = False
            self._cond.notify_all()

    def _queued(self) -> None:
        now = time.monotonic()
        if not (self._pending or self._sweep):
            self._first = now
        self._last = now

    def _idle(self) -> bool:
        return not (self._pending or self._sweep or self._busy)

    def _ensure_thread(self) -> None:
        with self._cond:
            if self._stopped or (self._thread is not None and self._thread.is_alive()):
                return
            self._thread = threading.Thread(
                target=self._run, name="alliance-analytics", daemon=True
            )
            self._thread.start()

    def _wait_for_work(self) -> None:
        """Wait (holding the condition) until there is work and its moment has come."""
        while not (self._pending or self._sweep or self._stopped):
            if not self._cond.wait(self.sweep_every) and self.sweep_every is not None:
                self._queued()
                self._sweep = True
        while not (self._hurry or self._stopped):
            start = max(self._first + self.delay, self._last + self.quiet)
            left = min(start, self._first + self.max_delay) - time.monotonic()
            if left <= 0:
                return
            self._cond.wait(left)

    def _run(self) -> None:
        while True:
            with self._cond:
                self._wait_for_work()
                if self._stopped:
                    self._cond.notify_all()
                    return
                ids, sweep = sorted(self._pending), self._sweep
                self._pending, self._sweep, self._busy = set(), False, True
            try:
                if sweep:
                    with self.db.read() as s:
                        ids = sorted(set(ids) | set(repo.stale_patient_ids(s)))
                for k in range(0, len(ids), REFRESH_CHUNK):
                    self.refresh(self.db, ids[k : k + REFRESH_CHUNK])
                self._maybe_refit()
            except Exception as exc:  # never let the thread die; patients stay stale
                log.warning("analytics refresh failed (%s)", type(exc).__name__)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _maybe_refit(self) -> None:
        """Refit due models, checking at most every ``refit_check`` seconds (a clinic
        whose data cannot yet carry a model is read whole at each check)."""
        if self.refit_every is None or time.monotonic() < self._next_refit_check:
            return
        self._next_refit_check = time.monotonic() + min(self.refit_check, self.refit_every)
        self.refit(self.db, self.refit_every)


# -- caseload ------------------------------------------------------------------------------
def caseload_summary(s: Session, patients: Sequence[Patient]) -> list[dict[str, Any]]:
    """One row per patient: sessions, primary instrument, latest patient and therapist
    totals, open alerts and the stored status (nothing is computed here)."""
    ids = [p.id for p in patients]
    table = session_table(s, ids) if ids else pd.DataFrame(columns=list(META_COLUMNS))
    open_alerts = repo.open_alert_counts(s, ids) if ids else {}
    groups = dict(tuple(table.groupby("patient_id"))) if len(table) else {}
    rows = []
    for p in patients:
        found = groups.get(p.id)
        own = found.dropna(axis=1, how="all") if found is not None else pd.DataFrame()
        primary = primary_instrument(list(own.columns))
        rows.append(
            {
                "patient": p,
                "sessions": len(own),
                "instrument": primary or "",
                "patient_total": latest(own, f"{primary}_total") if primary else None,
                "therapist_total": latest(own, f"{primary}_therapist_total") if primary else None,
                "open_alerts": open_alerts.get(p.id, 0),
                "status": p.status,
                "status_reason": p.status_reason,
                "status_since": p.status_since,
            }
        )
    return rows


# -- expected ranges on the page -----------------------------------------------------------
def expected_ranges(
    s: Session, patient_id: int, table: pd.DataFrame, instrument_id: str
) -> pd.DataFrame:
    """The expected range of the patient's total by session: each stored band, and the
    next session's from the fit in force (the newest session held if it awaits its rating,
    else the one after; a prediction from the stored model, nothing is fitted here).
    Columns ``session, expected, lower, upper, next``; empty without a fit."""
    from alliance.research.multilevel.expected import ExpectedModel, expected_next

    score = f"{instrument_id}_total"
    columns = ["session", "expected", "lower", "upper", "next"]
    stored = repo.expected_bands_of(s, [patient_id])
    stored = stored.loc[stored["score"] == score, columns[:-1]].assign(next=False)
    fit = repo.expected_models_in_force(s).get(score)
    if fit is None or score not in table.columns or table[score].isna().all():
        return stored.reset_index(drop=True)
    scored = int(table.loc[table[score].notna(), "session"].max())
    held = max((x.number for x in repo.sessions_of(s, patient_id)), default=scored)
    following = held if held > scored else scored + 1  # a held session awaiting its rating
    model = ExpectedModel.from_dict(fit.params)  # on the clinic's own column names
    upcoming = expected_next(model, table, at={patient_id: following})
    upcoming = upcoming[columns[:-1]].assign(next=True)
    return pd.concat([stored, upcoming], ignore_index=True)[columns]


# -- trajectories ------------------------------------------------------------------------
def trajectory_summary(table: pd.DataFrame, column: str) -> pd.DataFrame:
    """Per-patient level, slope and early alliance from :mod:`alliance.dynamics`."""
    from alliance.dynamics.trajectories import summarize_trajectories

    return summarize_trajectories(table[["patient_id", "session", column]], column)
