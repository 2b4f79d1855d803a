"""JSON API under ``/api/v1`` with bearer tokens (OpenAPI schema at ``/api/openapi.json``).

Every route checks the role; every read or change of patient data is audited. Reads only
read: alert episodes and statuses are computed when answers are committed
(:mod:`alliance.web.monitoring`), never by a GET.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import date, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field, StrictFloat, StrictInt, StrictStr, field_validator
from sqlalchemy.orm import Session

from alliance.store import repo
from alliance.store.db import Database
from alliance.store.models import Patient, User
from alliance.web import charts, monitoring, reports
from alliance.web.deps import RefusedPatient, bearer_user, require_role
from alliance.web.openapi import errors
from alliance.web.submissions import Invalid, LinkProblem, SubmissionWriter
from alliance.web.validation import DB_ID_MAX, text_problem

# Every route may meet the body-size limit; a bearer route's 401 is documented by
# alliance.web.openapi.install; each route lists its other refusals (one error model).
router = APIRouter(prefix="/api/v1", tags=["clinic"], responses=errors(413))
CLINICAL = ("admin", "supervisor", "therapist")
PatientId = Annotated[int, Path(ge=1, le=DB_ID_MAX, description="a patient's id")]
AlertId = Annotated[int, Path(ge=1, le=DB_ID_MAX, description="an alert's id")]


class Me(BaseModel):
    """The authenticated user."""

    id: int
    username: str
    role: str


Status = Literal["act", "watch", "steady"]


class PatientSummary(BaseModel):
    """One caseload row, with the patient's status (act, watch, steady) and why."""

    id: int
    code: str
    therapist_id: int
    sessions: int
    instrument: str
    latest_patient_total: float | None
    latest_therapist_total: float | None
    open_alerts: int
    status: Status
    status_reason: str
    status_since: int | None = Field(description="session the status has held since")


class NoteOut(BaseModel):
    """One clinician note on an alert: its text, author (null for notes kept before authors
    were recorded) and time."""

    text: str
    author: str | None
    created_at: datetime


class AlertOut(BaseModel):
    """An alert episode: what it rests on, how it evolved, and the clinician's workflow.

    ``state`` is the condition (open while it holds, closed when it ended, with
    ``closed_session`` and ``close_reason``); ``status`` is the workflow (open,
    acknowledged, resolved). ``session`` is ``opened_session`` (kept for older clients).
    """

    id: int
    patient_id: int
    session: int
    kind: str
    opened_session: int
    last_session: int
    closed_session: int | None
    state: Literal["open", "closed"]
    severity: str
    escalated_session: int | None
    title: str
    reason: str
    detail: str
    close_reason: str
    method: str
    value: float | None
    threshold: float | None
    score: str
    key_status: str
    guidance: str
    sources: str
    status: str
    note: str = Field(description="The latest note (all of them, with authors: notes).")
    notes: list[NoteOut] = Field(default_factory=list)


class RuptureOut(BaseModel):
    """A rupture event and its repair."""

    session: int
    kind: str
    depth: float | None
    repaired: bool
    repair_session: int | None


class PatientDetail(BaseModel):
    """A patient's status, session table (scores of both raters), ruptures and alerts."""

    id: int
    code: str
    therapist_id: int
    status: Status
    status_reason: str
    status_since: int | None
    instrument: str | None
    sessions: list[dict[str, Any]]
    ruptures: list[RuptureOut]
    alerts: list[AlertOut]


class SessionCreated(BaseModel):
    """A new session and its single-use patient link (the token is shown only once)."""

    session_id: int
    number: int
    link: str | None
    token: str | None


class AlertUpdate(BaseModel):
    """Acknowledge or resolve an alert."""

    note: str = Field(default="", max_length=2000)

    @field_validator("note")
    @classmethod
    def _storable(cls, note: str) -> str:
        problem = text_problem(note, 2000)
        if problem:
            raise ValueError(problem)
        return note


class Submission(BaseModel):
    """Answers to the session's client forms, keyed by item column (``wai_sr_1`` ...)."""

    # Strict: JSON ``true`` is not an answer (lax mode would read it as 1).
    answers: dict[str, StrictInt | StrictFloat | StrictStr | None]


class Accepted(BaseModel):
    """An acknowledged (committed) submission."""

    status: Literal["stored"]
    forms: list[str]


def _db(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


def _number(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) else float(value)


def _note_out(n: Any) -> NoteOut:
    author = n.author.username if n.author else None
    return NoteOut(text=n.text, author=author, created_at=repo.aware(n.created_at))


def _alert_out(a: Any, notes: Sequence[Any] = ()) -> AlertOut:
    return AlertOut(
        notes=[_note_out(n) for n in notes],
        id=a.id,
        patient_id=a.patient_id,
        session=a.session,
        kind=a.kind,
        opened_session=a.session,
        last_session=a.last_session,
        closed_session=a.closed_session,
        state=a.state,
        severity=a.severity,
        escalated_session=a.escalated_session,
        title=a.title,
        reason=a.reason,
        detail=a.detail,
        close_reason=a.close_reason,
        method=a.method,
        value=_number(a.value),
        threshold=_number(a.threshold),
        score=a.score,
        key_status=a.key_status,
        guidance=a.guidance,
        sources=a.sources,
        status=a.status,
        note=a.note,
    )


def _status(value: str) -> Status:
    return value if value in ("act", "watch") else "steady"  # type: ignore[return-value]


def _visible(s: Session, user: User, patient_id: int) -> Patient:
    try:
        patient = repo.get_patient(s, patient_id)
    except repo.NotFound:
        raise HTTPException(404, f"patient_id: no patient {patient_id}") from None
    if not repo.can_see_patient(s, user, patient):
        raise RefusedPatient(user, patient_id, "patient_id: not on your caseload")
    return patient


def _json_value(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, datetime | date):
        return value.isoformat()
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if hasattr(value, "item"):
        return _json_value(value.item())
    return value


@router.get("/me", response_model=Me)
def me(user: User = Depends(bearer_user)) -> Me:
    """Who the bearer token belongs to."""
    return Me(id=user.id, username=user.username, role=user.role)


@router.get("/patients", response_model=list[PatientSummary], responses=errors(403))
def list_patients(request: Request, user: User = Depends(bearer_user)) -> list[PatientSummary]:
    """The caller's caseload (therapist), team (supervisor) or clinic (admin), each
    patient with their status."""
    require_role(user, CLINICAL)
    with _db(request).audited() as s:
        rows = monitoring.caseload_summary(s, list(repo.patients_for(s, user)))
        shown = [r["patient"].id for r in rows]
        repo.audit(s, user, "read", "caseload", detail=f"api {len(rows)} patients", patients=shown)
    return [
        PatientSummary(
            id=r["patient"].id,
            code=r["patient"].code,
            therapist_id=r["patient"].therapist_id,
            sessions=r["sessions"],
            instrument=r["instrument"],
            latest_patient_total=r["patient_total"],
            latest_therapist_total=r["therapist_total"],
            open_alerts=r["open_alerts"],
            status=_status(r["status"]),
            status_reason=r["status_reason"],
            status_since=r["status_since"],
        )
        for r in rows
    ]


@router.get("/patients/{patient_id}", response_model=PatientDetail, responses=errors(403, 404))
def get_patient(
    patient_id: PatientId, request: Request, user: User = Depends(bearer_user)
) -> PatientDetail:
    """A patient's scores per session (patient and therapist), ruptures and alerts."""
    require_role(user, CLINICAL)
    with _db(request).audited() as s:
        patient = _visible(s, user, patient_id)
        table = monitoring.session_table(s, [patient.id])
        ruptures = repo.ruptures_of(s, [patient.id])
        alerts = repo.alerts_of(s, [patient.id])
        notes = repo.alert_notes(s, [a.id for a in alerts])
        repo.audit(s, user, "read", "patient", patient.id, patient_id=patient.id, detail="api")
        records = [
            {str(k): _json_value(v) for k, v in row.items()} for row in table.to_dict("records")
        ]
        return PatientDetail(
            id=patient.id,
            code=patient.code,
            therapist_id=patient.therapist_id,
            status=_status(patient.status),
            status_reason=patient.status_reason,
            status_since=patient.status_since,
            instrument=monitoring.primary_instrument(list(table.columns)),
            sessions=records,
            ruptures=[
                RuptureOut(
                    session=r.session,
                    kind=r.kind,
                    depth=r.depth,
                    repaired=r.repaired,
                    repair_session=r.repair_session,
                )
                for r in ruptures
            ],
            alerts=[_alert_out(a, notes[a.id]) for a in alerts],
        )


@router.get("/patients/{patient_id}/chart", responses=errors(403, 404))
def chart_spec(patient_id: PatientId, request: Request, user: User = Depends(bearer_user)) -> Any:
    """The Vega-Lite spec of the trajectory chart (the same one the web page renders)."""
    require_role(user, CLINICAL)
    with _db(request).audited() as s:
        patient = _visible(s, user, patient_id)
        table = monitoring.session_table(s, [patient.id])
        ruptures = [r.session for r in repo.ruptures_of(s, [patient.id])]
        primary = monitoring.primary_instrument(list(table.columns))
        expected = monitoring.expected_ranges(s, patient.id, table, primary) if primary else None
        repo.audit(s, user, "read", "chart", patient.id, patient_id=patient.id, detail="api")
    if primary is None:
        raise HTTPException(404, "patient_id: no scores to chart yet")
    return charts.trajectory_spec(table, primary, ruptures, expected=expected)


@router.post(
    "/patients/{patient_id}/sessions",
    response_model=SessionCreated,
    status_code=201,
    responses=errors(403, 404),
)
def create_session(
    patient_id: PatientId, request: Request, user: User = Depends(bearer_user)
) -> SessionCreated:
    """Create the patient's next session and a single-use patient link."""
    require_role(user, ("therapist", "admin"))
    with _db(request).write() as s:
        patient = _visible(s, user, patient_id)
        session = repo.create_session(s, patient, user)
        token = repo.issue_link(s, session) if repo.due_entries(s, session, "client") else None
        repo.audit(s, user, "create", "session", session.id, patient_id=patient.id, detail="api")
        settings = request.app.state.settings
        return SessionCreated(
            session_id=session.id,
            number=session.number,
            link=settings.link(token, request) if token else None,
            token=token,
        )


@router.post(
    "/links/{token}/responses",
    response_model=Accepted,
    status_code=201,
    responses=errors(400, 404, 410),
)
async def submit(token: str, body: Submission, request: Request) -> Accepted:
    """Submit a patient's answers through a link (the token is the credential).

    422 names every rejected field and rule and stores nothing; 404 for an unknown link,
    410 for a used or expired one. 201 means the answers are committed.
    """
    data = {k: "" if v is None else str(v) for k, v in body.answers.items()}
    refused = [
        {"field": "answers." + k.encode("utf-8", "backslashreplace").decode(), "rule": rule}
        for k, v in data.items()
        if (rule := text_problem(k, 64) or text_problem(v, 64))
    ]
    if refused:  # before the writer: such text cannot be stored, nor echoed back
        raise HTTPException(422, refused)
    writer: SubmissionWriter = request.app.state.writer
    outcome = await writer.submit(token, data, "api")
    if isinstance(outcome, LinkProblem):
        status = 404 if outcome.reason == "unknown" else 410
        raise HTTPException(status, f"link: {outcome.reason}")
    if isinstance(outcome, Invalid):
        detail = [{"field": i.field, "value": i.value, "rule": i.rule} for i in outcome.issues]
        raise HTTPException(422, detail)
    return Accepted(status="stored", forms=outcome.forms)


@router.get("/alerts", response_model=list[AlertOut], responses=errors(403))
def list_alerts(
    request: Request, open_only: bool = True, user: User = Depends(bearer_user)
) -> list[AlertOut]:
    """Alert episodes on the caller's caseload: by default the open ones (the condition
    holds and nobody resolved them); ``open_only=false`` for every episode."""
    require_role(user, CLINICAL)
    with _db(request).audited() as s:
        ids = [p.id for p in repo.patients_for(s, user)]
        alerts = repo.alerts_of(s, ids, open_only=open_only)
        shown = [a.patient_id for a in alerts]
        repo.audit(s, user, "read", "alerts", detail=f"api {len(alerts)} alerts", patients=shown)
        notes = repo.alert_notes(s, [a.id for a in alerts])
        return [_alert_out(a, notes[a.id]) for a in alerts]


def _update_alert(request: Request, user: User, alert_id: int, status: str, note: str) -> AlertOut:
    require_role(user, CLINICAL)
    with _db(request).write() as s:
        try:
            alert = repo.get_alert(s, alert_id)
        except repo.NotFound:
            raise HTTPException(404, f"alert_id: no alert {alert_id}") from None
        _visible(s, user, alert.patient_id)
        try:
            repo.set_alert_status(s, alert, user, status, note)
        except repo.Conflict as exc:
            raise HTTPException(409, str(exc)) from None
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None
        repo.audit(s, user, status, "alert", alert.id, patient_id=alert.patient_id, detail="api")
        return _alert_out(alert, repo.alert_notes(s, [alert.id])[alert.id])


@router.post(
    "/alerts/{alert_id}/acknowledge", response_model=AlertOut, responses=errors(400, 403, 404, 409)
)
def acknowledge(
    alert_id: AlertId, body: AlertUpdate, request: Request, user: User = Depends(bearer_user)
) -> AlertOut:
    """Acknowledge an alert (optionally with a note)."""
    return _update_alert(request, user, alert_id, "acknowledged", body.note)


@router.post(
    "/alerts/{alert_id}/resolve", response_model=AlertOut, responses=errors(400, 403, 404, 409)
)
def resolve(
    alert_id: AlertId, body: AlertUpdate, request: Request, user: User = Depends(bearer_user)
) -> AlertOut:
    """Resolve an alert; a note is required."""
    return _update_alert(request, user, alert_id, "resolved", body.note)


@router.get("/supervision", responses=errors(403))
def supervision(request: Request, user: User = Depends(bearer_user)) -> list[dict[str, Any]]:
    """Per-therapist alliance summary and rupture/repair rates of the caller's team."""
    require_role(user, ("supervisor", "admin"))
    with _db(request).audited() as s:
        rows = reports.team_summary(s, user)
        repo.audit(s, user, "read", "team-summary", detail=f"api {len(rows)} therapists")
    return [{k: _json_value(v) for k, v in r.items()} for r in rows]


ExportFormat = Annotated[
    str,
    Query(description="the file format", json_schema_extra={"enum": list(reports.EXPORT_FORMATS)}),
]


@router.get(
    "/export",
    response_class=Response,
    responses={
        200: {
            "description": "The export file (an attachment).",
            "content": {
                media: {"schema": {"type": "string", "format": "binary"}}
                for media in reports.EXPORT_FORMATS.values()
            },
        },
        **errors(403),
    },
)
def export(
    request: Request, format: ExportFormat = "csv", user: User = Depends(bearer_user)
) -> Response:
    """De-identified item-level data and scores (CSV or Parquet); researchers and admins."""
    require_role(user, ("researcher", "admin"))
    return reports.export_response(_db(request), user, request.app.state.signer.secret_key, format)
