"""Read-only queries for the clinic's pages that must stay fast on large caseloads.

The caseload needs, per patient, only the series of the alliance totals (for the trend
line and the latest score) and the last session; building the whole wide session table
(every item and score of every response, decoded from JSON in Python) for a thousand
patients costs far more than that. Here the totals are taken out of the JSON column by the
database itself, in one query, and the sessions are counted in another.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from sqlalchemy import Select, bindparam, case, func, select
from sqlalchemy.orm import Session

from alliance.dynamics.status import STATUS_LEVELS
from alliance.store.models import Patient, Response, TherapySession, User


@dataclass
class Series:
    """A patient's totals of one alliance measure: (session, value) pairs in order."""

    client: list[tuple[int, float]] = field(default_factory=list)
    therapist: list[tuple[int, float]] = field(default_factory=list)


@dataclass
class LastSession:
    """How many sessions a patient has had, and the latest one."""

    count: int
    number: int
    on: date


@functools.cache
def _totals_statement(instruments: tuple[str, ...]) -> Select[Any]:
    total = case(
        *[
            (Response.instrument_id == i, Response.scores[f"{i}_total"].as_float())
            for i in instruments
        ],
        else_=None,
    )
    return (
        select(
            Response.patient_id,
            Response.instrument_id,
            Response.respondent,
            TherapySession.number,
            total,
        )
        .join(TherapySession, Response.session_id == TherapySession.id)
        .where(
            Response.patient_id.in_(bindparam("ids", expanding=True)),
            Response.instrument_id.in_(instruments),
            Response.respondent.in_(("client", "therapist")),
        )
        .order_by(Response.patient_id, TherapySession.number)
    )


_LAST_SESSIONS = (
    select(
        TherapySession.patient_id,
        func.count(TherapySession.id),
        func.max(TherapySession.number),
        func.max(TherapySession.date),
    )
    .where(TherapySession.patient_id.in_(bindparam("ids", expanding=True)))
    .group_by(TherapySession.patient_id)
)


def alliance_totals(
    s: Session, patient_ids: Sequence[int], instruments: Sequence[str]
) -> dict[int, dict[str, Series]]:
    """Per patient and instrument, the client's and therapist's totals by session.

    One query: the ``<instrument>_total`` score is extracted from the JSON scores column by
    the database (``JSON_EXTRACT`` on SQLite, ``->>`` on PostgreSQL).
    """
    ids = list(patient_ids)
    if not ids or not instruments:
        return {}
    out: dict[int, dict[str, Series]] = {}
    rows = s.execute(_totals_statement(tuple(instruments)), {"ids": ids})
    for pid, instrument_id, respondent, number, value in rows:
        if value is None:
            continue
        own = out.get(pid)
        if own is None:
            own = out[pid] = {}
        series = own.get(instrument_id)
        if series is None:
            series = own[instrument_id] = Series()
        (series.client if respondent == "client" else series.therapist).append((number, value))
    return out


def last_sessions(s: Session, patient_ids: Sequence[int]) -> dict[int, LastSession]:
    """Per patient: the number of sessions, the latest session's number and date."""
    ids = list(patient_ids)
    if not ids:
        return {}
    out = {}
    for pid, count, number, on in s.execute(_LAST_SESSIONS, {"ids": ids}):
        if isinstance(on, str):  # SQLite's max() returns the stored text
            on = date.fromisoformat(on)
        out[pid] = LastSession(count, number, on)
    return out


@dataclass(frozen=True)
class CaseloadCounts:
    """How many visible patients have each status, per therapist: what the caseload's
    counts, filter choices and page numbers need, from one small grouped query."""

    by_therapist: dict[int, dict[str, int]]

    def total(self, status: str = "", therapist_id: int | None = None) -> int:
        """Patients with ``status`` (any if empty) of ``therapist_id`` (any if None)."""
        return sum(
            n
            for tid, levels in self.by_therapist.items()
            if therapist_id is None or tid == therapist_id
            for level, n in levels.items()
            if not status or level == status
        )


def _status_level() -> Any:
    """The stored status as one of STATUS_LEVELS, in their order (0 = act): a patient the
    analytics have not judged yet counts as steady."""
    return case(
        *[(Patient.status == level, rank) for rank, level in enumerate(STATUS_LEVELS[:-1])],
        else_=len(STATUS_LEVELS) - 1,
    )


def caseload_counts(s: Session, visible: Any) -> CaseloadCounts:
    """The visible patients (``visible``: a WHERE clause such as
    :func:`alliance.store.repo.visible_patients`) counted by therapist and status."""
    level = _status_level()
    query = (
        select(Patient.therapist_id, level, func.count(Patient.id))
        .where(visible)
        .group_by(Patient.therapist_id, level)
    )
    out: dict[int, dict[str, int]] = {}
    for therapist_id, rank, n in s.execute(query):
        out.setdefault(therapist_id, {})[STATUS_LEVELS[rank]] = n
    return CaseloadCounts(out)


def caseload_page(
    s: Session,
    visible: Any,
    *,
    status: str = "",
    therapist_id: int | None = None,
    offset: int = 0,
    limit: int = 50,
) -> list[int]:
    """The ids of one page of the visible patients, filtered by ``status`` and
    ``therapist_id``, in the caseload's order: by status (act, watch, steady), then by the
    last session (most recent first, none yet last), then by code. The database orders and
    cuts the page, so the cost does not grow with the clinic in Python; the last session
    comes from the (patient, date) index."""
    level = _status_level()
    last = (
        select(func.max(TherapySession.date))
        .where(TherapySession.patient_id == Patient.id)
        .scalar_subquery()
    )
    query = select(Patient.id).where(visible)
    if status:
        query = query.where(level == STATUS_LEVELS.index(status))
    if therapist_id is not None:
        query = query.where(Patient.therapist_id == therapist_id)
    query = query.order_by(level, last.is_(None), last.desc(), Patient.code, Patient.id)
    return list(s.scalars(query.offset(offset).limit(limit)))


def patients_in_order(s: Session, patient_ids: Sequence[int]) -> list[Patient]:
    """These patients in one query, in the order of ``patient_ids``."""
    if not patient_ids:
        return []
    found = {p.id: p for p in s.scalars(select(Patient).where(Patient.id.in_(patient_ids)))}
    return [found[i] for i in patient_ids if i in found]


def users_by_id(s: Session, user_ids: Sequence[int]) -> dict[int, User]:
    """These users in one query (also fills the session's identity map, so relationships
    to them load without further queries)."""
    ids = sorted(set(user_ids))
    if not ids:
        return {}
    return {u.id: u for u in s.scalars(select(User).where(User.id.in_(ids)))}
