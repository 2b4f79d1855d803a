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
class CaseloadEntry:
    """What the caseload needs to count, filter and order a patient (no ORM object)."""

    patient_id: int
    code: str
    status: str | None
    therapist_id: int
    last_date: date | None


def caseload_index(s: Session, visible: Any) -> list[CaseloadEntry]:
    """Every patient matching ``visible`` (a WHERE clause, e.g.
    :func:`alliance.store.repo.visible_patients`) with their stored status and the date of
    their last session: one grouped query, plain rows. The caseload counts, filters and
    orders these, then loads only the page it shows."""
    query = (
        select(
            Patient.id,
            Patient.code,
            Patient.status,
            Patient.therapist_id,
            func.max(TherapySession.date),
        )
        .outerjoin(TherapySession, TherapySession.patient_id == Patient.id)
        .where(visible)
        .group_by(Patient.id, Patient.code, Patient.status, Patient.therapist_id)
    )
    out = []
    for pid, code, status, therapist_id, on in s.execute(query):
        if isinstance(on, str):  # SQLite's max() returns the stored text
            on = date.fromisoformat(on)
        out.append(CaseloadEntry(pid, code, status, therapist_id, on))
    return out


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
