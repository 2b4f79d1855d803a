"""SQLAlchemy 2 models of the clinic: users, patients, sessions, links, responses, alerts.

Alerts are *episodes* (:mod:`alliance.dynamics.episodes`): one row per (patient, kind,
session the episode opened at), kept up to date by the analytics as later sessions arrive
(``state``, ``last_session``, ``closed_session``, ``severity``), beside the clinician's
workflow (``status``: open, acknowledged, resolved, with notes). Patients carry their one
status (:mod:`alliance.dynamics.status`). The clinic's frozen norms (:class:`ClinicNorm`)
are stored once, so later decisions never depend on patients who came later; so are the
expected ranges of sessions (:class:`ExpectedBand`), each from the model fit in force the
day the session was analysed (:class:`ExpectedModelFit`).

Patients are pseudonymous (a clinic code; no name). Patient link tokens and API tokens are
stored as SHA-256 hashes only. The audit log is append-only (enforced by database triggers
created in the migrations, and by an ORM guard here); a list read names the patients it
showed in :class:`AuditPatient` rows, append-only too.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    event,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

ROLES = ("admin", "supervisor", "therapist", "researcher")
RESPONDENTS = ("client", "therapist", "observer")
ALERT_STATUSES = ("open", "acknowledged", "resolved")
EPISODE_STATES = ("open", "closed")


def utcnow() -> datetime:
    """Timezone-aware current UTC time."""
    return datetime.now(UTC)


#: Characters of one alert note (a clinician's sentence or paragraph, not a record).
NOTE_MAX = 2000


class Base(DeclarativeBase):
    """Declarative base of all clinic tables."""

    type_annotation_map = {datetime: DateTime(timezone=True), dict[str, Any]: JSON}  # noqa: RUF012


class User(Base):
    """A clinician or staff account."""

    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(128), default="")
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str] = mapped_column(String(256))
    supervisor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), default=None)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    session_epoch: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ApiToken(Base):
    """A bearer token for the JSON API (stored hashed)."""

    __tablename__ = "api_tokens"
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(default=None)
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)
    user: Mapped[User] = relationship()


class LoginThrottle(Base):
    """Failed-login counter of one key (a user at an address, or an address), shared by all
    workers through the database. The key is a keyed hash: no username or address is kept."""

    __tablename__ = "login_throttle"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    last_failure_at: Mapped[datetime | None] = mapped_column(default=None, index=True)
    blocked_until: Mapped[datetime | None] = mapped_column(default=None)


class EndedSession(Base):
    """A session cookie ended on one device (kiosk handover) before it expires; kept (hashed)
    until the cookie would have expired anyway."""

    __tablename__ = "ended_sessions"
    nonce_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(index=True)


class Patient(Base):
    """A pseudonymous patient on a therapist's caseload."""

    __tablename__ = "patients"
    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    research_id: Mapped[str] = mapped_column(String(32), unique=True)
    therapist_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    language: Mapped[str] = mapped_column(String(16), default="en")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    alerts_stale: Mapped[bool] = mapped_column(Boolean, default=False)
    # The patient's one status from alliance.dynamics.status: act, watch or steady.
    status: Mapped[str] = mapped_column(String(16), default="steady", server_default="steady")
    status_reason: Mapped[str] = mapped_column(Text, default="", server_default="")
    status_since: Mapped[int | None] = mapped_column(Integer, default=None)  # a session number
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    therapist: Mapped[User] = relationship()
    schedule: Mapped[list[ScheduleEntry]] = relationship(
        back_populates="patient", cascade="all, delete-orphan", order_by="ScheduleEntry.id"
    )


class ScheduleEntry(Base):
    """One instrument form given to a patient every ``every`` sessions."""

    __tablename__ = "schedule"
    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"), index=True)
    instrument_id: Mapped[str] = mapped_column(String(32))
    form_id: Mapped[str] = mapped_column(String(32))
    respondent: Mapped[str] = mapped_column(String(16))
    every: Mapped[int] = mapped_column(Integer, default=1)
    patient: Mapped[Patient] = relationship(back_populates="schedule")
    __table_args__ = (UniqueConstraint("patient_id", "instrument_id", "form_id"),)

    def due(self, session_number: int) -> bool:
        """Whether this entry is due at the given session number (1, 1+every, ...)."""
        return (session_number - 1) % max(self.every, 1) == 0


class TherapySession(Base):
    """A therapy session of a patient (numbered 1, 2, ...)."""

    __tablename__ = "sessions"
    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    date: Mapped[date] = mapped_column(Date)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    patient: Mapped[Patient] = relationship()
    # (patient, date): the caseload's last session per patient without a scan.
    __table_args__ = (
        UniqueConstraint("patient_id", "number"),
        Index("ix_sessions_patient_date", "patient_id", "date"),
    )


class Link(Base):
    """A single-use, expiring patient link to a session's client forms (token hashed)."""

    __tablename__ = "links"
    id: Mapped[int] = mapped_column(primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("sessions.id"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()
    used_at: Mapped[datetime | None] = mapped_column(default=None)
    kiosk: Mapped[bool] = mapped_column(Boolean, default=False)
    session: Mapped[TherapySession] = relationship()


class Response(Base):
    """One completed instrument form: item answers and the scores of the scoring core."""

    __tablename__ = "responses"
    id: Mapped[int] = mapped_column(primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("sessions.id"), index=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"), index=True)
    instrument_id: Mapped[str] = mapped_column(String(32))
    form_id: Mapped[str] = mapped_column(String(32))
    respondent: Mapped[str] = mapped_column(String(16))
    language: Mapped[str] = mapped_column(String(16), default="en")
    items: Mapped[dict[str, Any]] = mapped_column(JSON)
    scores: Mapped[dict[str, Any]] = mapped_column(JSON)
    source: Mapped[str] = mapped_column(String(16), default="link")
    submitted_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"), default=None)
    submitted_at: Mapped[datetime] = mapped_column(default=utcnow)
    session: Mapped[TherapySession] = relationship()
    __table_args__ = (UniqueConstraint("session_id", "instrument_id", "respondent"),)


class Alert(Base):
    """An alert episode computed by :mod:`alliance.dynamics`, with its workflow status.

    ``session`` is the session the episode opened at (``opened_session``); with ``kind``
    it is the episode's key. ``state`` is the condition (open or closed, decided by the
    dynamics); ``status`` is the clinician's workflow (open, acknowledged, resolved).
    """

    __tablename__ = "alerts"
    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"), index=True)
    session: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(64))
    severity: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text)
    guidance: Mapped[str] = mapped_column(Text, default="")
    sources: Mapped[str] = mapped_column(Text, default="")
    # the episode (alliance.dynamics.episodes.EPISODE_COLUMNS)
    last_session: Mapped[int] = mapped_column(Integer)
    closed_session: Mapped[int | None] = mapped_column(Integer, default=None)
    state: Mapped[str] = mapped_column(String(8), default="open", server_default="open")
    escalated_session: Mapped[int | None] = mapped_column(Integer, default=None)
    title: Mapped[str] = mapped_column(Text, default="", server_default="")
    detail: Mapped[str] = mapped_column(Text, default="", server_default="")
    close_reason: Mapped[str] = mapped_column(Text, default="", server_default="")
    method: Mapped[str] = mapped_column(String(64), default="", server_default="")
    value: Mapped[float | None] = mapped_column(Float, default=None)
    threshold: Mapped[float | None] = mapped_column(Float, default=None)
    score: Mapped[str] = mapped_column(String(64), default="", server_default="")
    key_status: Mapped[str] = mapped_column(String(32), default="", server_default="")
    updated_at: Mapped[datetime | None] = mapped_column(default=None)
    # the clinician's workflow
    status: Mapped[str] = mapped_column(String(16), default="open")
    note: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    acknowledged_at: Mapped[datetime | None] = mapped_column(default=None)
    acknowledged_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"), default=None)
    resolved_at: Mapped[datetime | None] = mapped_column(default=None)
    resolved_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"), default=None)
    patient: Mapped[Patient] = relationship()
    __table_args__ = (UniqueConstraint("patient_id", "session", "kind"),)

    @property
    def opened_session(self) -> int:
        """The session the episode opened at (the ``session`` column)."""
        return self.session

    @property
    def is_open(self) -> bool:
        """Counted as an open alert: the condition holds and nobody resolved it."""
        return self.state == "open" and self.status != "resolved"


class RuptureEvent(Base):
    """A rupture (and its repair, if any) found by :mod:`alliance.dynamics`."""

    __tablename__ = "ruptures"
    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"), index=True)
    session: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(64), default="")
    depth: Mapped[float | None] = mapped_column(Float, default=None)
    repaired: Mapped[bool] = mapped_column(Boolean, default=False)
    repair_session: Mapped[int | None] = mapped_column(Integer, default=None)
    detail: Mapped[str] = mapped_column(Text, default="")


class ClinicNorm(Base):
    """The clinic's frozen norms of one score (:class:`alliance.dynamics.Norms`).

    Stored the first time the clinic has norms for the score (the instrument file's, or
    estimated from its first sessions once enough patients have one) and never changed by
    the application afterwards, so later patients do not move earlier decisions.
    """

    __tablename__ = "clinic_norms"
    id: Mapped[int] = mapped_column(primary_key=True)
    instrument_id: Mapped[str] = mapped_column(String(32))
    score: Mapped[str] = mapped_column(String(64))
    sd: Mapped[float] = mapped_column(Float)
    reliability: Mapped[float] = mapped_column(Float)
    mean: Mapped[float | None] = mapped_column(Float, default=None)
    source: Mapped[str] = mapped_column(Text, default="")
    n_patients: Mapped[int | None] = mapped_column(Integer, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    __table_args__ = (UniqueConstraint("instrument_id", "score"),)


class ExpectedModelFit(Base):
    """One fit of the clinic's expected-trajectory model of a score
    (:class:`alliance.research.multilevel.expected.ExpectedModel` as ``params``).

    Fits are kept, never changed: the newest is the one in force, and each stored band
    names the fit it came from.
    """

    __tablename__ = "expected_models"
    id: Mapped[int] = mapped_column(primary_key=True)
    score: Mapped[str] = mapped_column(String(64), index=True)
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    n_patients: Mapped[int] = mapped_column(Integer)
    n_sessions: Mapped[int] = mapped_column(Integer)
    fitted_at: Mapped[datetime] = mapped_column(default=utcnow)


class ExpectedBand(Base):
    """The expected range of one patient's session, computed the day the session was
    analysed from the model then in force and the patient's earlier sessions; never
    recomputed, so later fits do not move earlier decisions."""

    __tablename__ = "expected_bands"
    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"), index=True)
    session: Mapped[int] = mapped_column(Integer)
    score: Mapped[str] = mapped_column(String(64))
    model_id: Mapped[int] = mapped_column(ForeignKey("expected_models.id"))
    expected: Mapped[float] = mapped_column(Float)
    sd: Mapped[float] = mapped_column(Float)
    lower: Mapped[float] = mapped_column(Float)
    upper: Mapped[float] = mapped_column(Float)
    observed: Mapped[float] = mapped_column(Float)  # the score the range judged
    __table_args__ = (UniqueConstraint("patient_id", "session", "score"),)


class AuditEntry(Base):
    """Append-only record of every read and change of patient data (who, what, when)."""

    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    user_id: Mapped[int | None] = mapped_column(Integer, default=None)
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(32))
    entity: Mapped[str] = mapped_column(String(32))
    entity_id: Mapped[str] = mapped_column(String(64), default="")
    patient_id: Mapped[int | None] = mapped_column(Integer, default=None, index=True)
    detail: Mapped[str] = mapped_column(Text, default="")


class AuditPatient(Base):
    """One patient a list read showed (caseload, alerts, export): "who saw patient X" is a
    look-up on ``patient_id`` here and in :attr:`AuditEntry.patient_id`."""

    __tablename__ = "audit_log_patients"
    audit_id: Mapped[int] = mapped_column(ForeignKey("audit_log.id"), primary_key=True)
    patient_id: Mapped[int] = mapped_column(Integer, primary_key=True, index=True)
    # No rowid on SQLite: the primary key is the only key a REPLACE could collide with,
    # and the migration's trigger refuses that.
    __table_args__ = ({"sqlite_with_rowid": False},)


#: Tables the clinic may only read and append to (triggers; the grants of ``alliance db grant``).
class AlertNote(Base):
    """One clinician note on an alert, with its author and time (notes are entries, never
    one growing text)."""

    __tablename__ = "alert_notes"
    id: Mapped[int] = mapped_column(primary_key=True)
    alert_id: Mapped[int] = mapped_column(ForeignKey("alerts.id"), index=True)
    author_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    text: Mapped[str] = mapped_column(String(NOTE_MAX))
    author: Mapped[User | None] = relationship()


APPEND_ONLY_TABLES = ("audit_log", "audit_log_patients")


class AuditLogIsAppendOnly(RuntimeError):
    """Raised when code tries to update or delete an audit entry."""


@event.listens_for(AuditEntry, "before_update")
@event.listens_for(AuditEntry, "before_delete")
@event.listens_for(AuditPatient, "before_update")
@event.listens_for(AuditPatient, "before_delete")
def _refuse_audit_change(*_args: Any) -> None:
    raise AuditLogIsAppendOnly("the audit log is append-only")
