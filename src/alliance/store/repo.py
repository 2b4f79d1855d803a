"""Repository functions: the only place the web layer and the CLI touch the tables.

Every function takes an open SQLAlchemy session; the caller owns the transaction (see
:class:`alliance.store.db.Database`), so a request either commits all its changes and its
audit entries together, or none of them.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol

import pandas as pd
from sqlalchemy import case, delete, false, func, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, selectinload

from alliance.dynamics.episodes import EPISODE_COLUMNS
from alliance.store.db import AUDIT_QUEUE
from alliance.store.models import (
    NOTE_MAX,
    ROLES,
    Alert,
    AlertNote,
    ApiToken,
    AuditEntry,
    AuditPatient,
    ClinicNorm,
    EndedSession,
    ExpectedBand,
    ExpectedModelFit,
    Link,
    LoginThrottle,
    Patient,
    Response,
    RuptureEvent,
    ScheduleEntry,
    TherapySession,
    User,
    utcnow,
)

LINK_TTL = timedelta(hours=72)


class NotFound(LookupError):
    """The requested record does not exist (or is not visible to the caller)."""


class Conflict(ValueError):
    """The change would break a uniqueness rule (e.g. a username already taken)."""


def hash_token(token: str) -> str:
    """SHA-256 hex digest of a link or API token (only the hash is ever stored)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> str:
    """An unguessable URL-safe token (256 bits)."""
    return secrets.token_urlsafe(32)


def aware(moment: datetime) -> datetime:
    """Treat a naive datetime read back from SQLite as UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


# -- audit -------------------------------------------------------------------------------
def audit(
    s: Session,
    user: User | None,
    action: str,
    entity: str,
    entity_id: object = "",
    patient_id: int | None = None,
    detail: str = "",
    actor: str | None = None,
    patients: Iterable[int] = (),
) -> None:
    """Append one entry to the audit log (in the caller's transaction).

    ``patients``: the patients a list read showed (caseload, alerts, export); each becomes
    an :class:`AuditPatient` row of the entry, so :func:`patient_audit_trail` finds it.
    In a :meth:`Database.audited` read the entry is queued and written after the read.
    """
    queue = s.info.get(AUDIT_QUEUE)
    if queue is not None:
        args = (user, action, entity, entity_id, patient_id, detail, actor, tuple(patients))
        queue.append(lambda w: audit(w, *args))
        return
    entry = AuditEntry(
        user_id=user.id if user else None,
        actor=actor or (f"{user.role}:{user.username}" if user else "anonymous"),
        action=action,
        entity=entity,
        entity_id=str(entity_id)[:64],
        patient_id=patient_id,
        detail=detail[:500],
    )
    s.add(entry)
    shown = sorted(set(patients))
    if shown:
        s.flush()  # the entry's id, for its patient rows
        rows = [{"audit_id": entry.id, "patient_id": p} for p in shown]
        s.execute(insert(AuditPatient), rows)


def audit_entries(s: Session, limit: int = 200) -> Sequence[AuditEntry]:
    """The newest audit entries first."""
    return s.scalars(select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)).all()


def audited_patients(s: Session, audit_id: int) -> list[int]:
    """The patients a list read (audit entry ``audit_id``) showed, in id order."""
    query = select(AuditPatient.patient_id).where(AuditPatient.audit_id == audit_id)
    return list(s.scalars(query.order_by(AuditPatient.patient_id)))


def patient_audit_trail(s: Session, patient_id: int) -> Sequence[AuditEntry]:
    """Who saw or changed the patient, oldest first: every entry about the patient
    (a read of their page, a refused access, a change) and every list read that showed
    them. Both look-ups are indexed on the patient id."""
    listed = select(AuditPatient.audit_id).where(AuditPatient.patient_id == patient_id)
    named = (AuditEntry.patient_id == patient_id) | AuditEntry.id.in_(listed)
    return s.scalars(select(AuditEntry).where(named).order_by(AuditEntry.id)).all()


# -- users and tokens --------------------------------------------------------------------
def create_user(
    s: Session,
    username: str,
    password_hash: str,
    role: str,
    display_name: str = "",
    supervisor_id: int | None = None,
) -> User:
    """Add a clinic user; the role must be one of :data:`ROLES`."""
    if role not in ROLES:
        raise ValueError(f"role: must be one of {', '.join(ROLES)} (got {role!r})")
    if not username or len(username) > 64:
        raise ValueError("username: must be 1 to 64 characters")
    if s.scalar(select(User.id).where(User.username == username)) is not None:
        raise Conflict(f"username: {username!r} is already taken")
    user = User(
        username=username,
        password_hash=password_hash,
        role=role,
        display_name=display_name or username,
        supervisor_id=supervisor_id,
    )
    s.add(user)
    s.flush()
    return user


def user_by_name(s: Session, username: str) -> User | None:
    """The active user with this username, if any."""
    return s.scalar(select(User).where(User.username == username, User.active.is_(True)))


def get_user(s: Session, user_id: int) -> User | None:
    """The active user with this id, if any."""
    user = s.get(User, user_id)
    return user if user is not None and user.active else None


def list_users(s: Session, role: str | None = None) -> Sequence[User]:
    """Users, optionally of one role, by username."""
    query = select(User).order_by(User.username)
    if role:
        query = query.where(User.role == role)
    return s.scalars(query).all()


def team_of(s: Session, supervisor: User) -> Sequence[User]:
    """Therapists supervised by this supervisor (all therapists for an admin)."""
    query = select(User).where(User.role == "therapist", User.active.is_(True))
    if supervisor.role != "admin":
        query = query.where(User.supervisor_id == supervisor.id)
    return s.scalars(query.order_by(User.username)).all()


def end_sessions(s: Session, user_id: int) -> None:
    """Invalidate every session cookie of the user (logout everywhere)."""
    s.execute(update(User).where(User.id == user_id).values(session_epoch=User.session_epoch + 1))


def create_api_token(s: Session, user: User, name: str = "", days: int | None = 90) -> str:
    """Issue a bearer token for the user; returns the token (shown once, stored hashed)."""
    token = new_token()
    expires = utcnow() + timedelta(days=days) if days else None
    s.add(ApiToken(user_id=user.id, token_hash=hash_token(token), name=name, expires_at=expires))
    s.flush()
    return token


def user_for_api_token(s: Session, token: str) -> User | None:
    """The active user owning a valid (unrevoked, unexpired) bearer token."""
    row = s.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(token)))
    if row is None or row.revoked:
        return None
    if row.expires_at is not None and aware(row.expires_at) < utcnow():
        return None
    return get_user(s, row.user_id)


def revoke_api_tokens(s: Session, user_id: int) -> int:
    """Revoke every bearer token of the user (logout); returns how many were active."""
    result = s.execute(
        update(ApiToken)
        .where(ApiToken.user_id == user_id, ApiToken.revoked.is_(False))
        .values(revoked=True)
    )
    return int(getattr(result, "rowcount", 0) or 0)


# -- account changes (the admin pages and `alliance users` share these rules) -------------
def account(s: Session, username: str) -> User:
    """The user with this username, active or not (raises :class:`NotFound`)."""
    user = s.scalar(select(User).where(User.username == username))
    if user is None:
        raise NotFound(f"username: no user named {username!r}")
    return user


def account_by_id(s: Session, user_id: int) -> User:
    """The user with this id, active or not (raises :class:`NotFound`)."""
    user = s.get(User, user_id)
    if user is None:
        raise NotFound(f"user {user_id} not found")
    return user


def _keep_an_admin(s: Session, user: User, change: str) -> None:
    """Refuse a change that would leave the clinic without an active admin. The admin
    rows are locked (PostgreSQL), so two admins cannot each remove the other at once."""
    if user.role != "admin" or not user.active:
        return
    admins = s.scalars(
        select(User.id).where(User.role == "admin", User.active.is_(True)).with_for_update()
    ).all()
    if list(admins) == [user.id]:
        raise Conflict(f"{change}: {user.username!r} is the last active admin")


def _keep_dependants(s: Session, user: User, change: str) -> None:
    """Refuse taking away a therapist who still has patients (their alerts would reach no
    therapist) or a supervisor who still has a team; reassign them first."""
    if user.role == "therapist":
        held = s.scalar(select(func.count(Patient.id)).where(Patient.therapist_id == user.id))
        if held:
            raise Conflict(
                f"{change}: {user.username!r} still has {held} patient(s); "
                "assign them to another therapist first"
            )
    if user.role == "supervisor":
        team = s.scalar(
            select(func.count(User.id)).where(User.supervisor_id == user.id, User.active.is_(True))
        )
        if team:
            raise Conflict(
                f"{change}: {user.username!r} still supervises {team} therapist(s); "
                "give them another supervisor first"
            )


def set_active(
    s: Session, user: User, active: bool, by: User | None = None, actor: str | None = None
) -> None:
    """Deactivate (or reactivate) an account. Deactivating ends its sessions and revokes
    its API tokens; the last active admin, a therapist with patients and a supervisor with
    a team are refused with :class:`Conflict`. Audited."""
    if user.active == active:
        return
    if not active:
        _keep_an_admin(s, user, "active")
        _keep_dependants(s, user, "active")
        end_sessions(s, user.id)
        revoke_api_tokens(s, user.id)
    user.active = active
    audit(s, by, "activate" if active else "deactivate", "user", user.id, actor=actor)


def set_role(
    s: Session,
    user: User,
    role: str,
    supervisor_id: int | None = None,
    by: User | None = None,
    actor: str | None = None,
) -> None:
    """Change an account's role (and a therapist's supervisor). Demoting the last active
    admin, or a therapist or supervisor others depend on, is refused. Audited."""
    if role not in ROLES:
        raise ValueError(f"role: must be one of {', '.join(ROLES)} (got {role!r})")
    if supervisor_id is not None:
        chief = s.get(User, supervisor_id)
        if role != "therapist":
            raise ValueError("supervisor_id: only therapists have a supervisor")
        if chief is None or chief.role != "supervisor" or not chief.active:
            raise ValueError("supervisor_id: not an active supervisor")
    if role != user.role:
        _keep_an_admin(s, user, "role")
        _keep_dependants(s, user, "role")
    detail = f"role {user.role}->{role}; supervisor {user.supervisor_id}->{supervisor_id}"
    user.role, user.supervisor_id = role, supervisor_id
    audit(s, by, "update", "user", user.id, detail=detail, actor=actor)


def set_password(
    s: Session, user: User, password_hash: str, by: User | None = None, actor: str | None = None
) -> None:
    """Replace an account's password (hashed by the caller); ends its sessions and revokes
    its API tokens, since a reset usually follows a lost or leaked password. Audited."""
    user.password_hash = password_hash
    end_sessions(s, user.id)
    revoked = revoke_api_tokens(s, user.id)
    audit(
        s, by, "reset-password", "user", user.id, detail=f"{revoked} token(s) revoked", actor=actor
    )


def revoke_tokens(s: Session, user: User, by: User | None = None, actor: str | None = None) -> int:
    """Revoke every API token of an account (audited); returns how many were active."""
    revoked = revoke_api_tokens(s, user.id)
    audit(s, by, "revoke", "api-token", user.id, detail=f"{revoked} token(s)", actor=actor)
    return revoked


def issue_token(
    s: Session, user: User, name: str, by: User | None = None, actor: str | None = None
) -> str:
    """Issue an API token to an active account (audited; the token is returned once)."""
    if not user.active:
        raise Conflict(f"username: {user.username!r} is deactivated")
    token = create_api_token(s, user, name)
    audit(s, by, "create", "api-token", user.id, detail=name[:64], actor=actor)
    return token


def active_token_counts(s: Session) -> dict[int, int]:
    """Active (unrevoked, unexpired) API tokens per user id."""
    live = (ApiToken.expires_at.is_(None)) | (ApiToken.expires_at > utcnow())
    query = (
        select(ApiToken.user_id, func.count(ApiToken.id))
        .where(ApiToken.revoked.is_(False), live)
        .group_by(ApiToken.user_id)
    )
    return {user_id: count for user_id, count in s.execute(query)}


def end_device_session(s: Session, nonce: str, expires_at: datetime) -> None:
    """End one session cookie (by its nonce, stored hashed) before it expires; forgets the
    ended sessions whose cookies have expired anyway."""
    s.execute(delete(EndedSession).where(EndedSession.expires_at < utcnow()))
    s.merge(EndedSession(nonce_hash=hash_token(nonce), expires_at=expires_at))


def session_ended(s: Session, nonce: str) -> bool:
    """Whether the session cookie with this nonce was ended on its device."""
    return s.get(EndedSession, hash_token(nonce)) is not None


# -- login counters ----------------------------------------------------------------------
class CounterRule(Protocol):
    """What the login counters need of a rule (:class:`alliance.web.security.LoginRule`)."""

    @property
    def forget_after(self) -> timedelta: ...
    @property
    def reset_on_success(self) -> bool: ...
    def delay(self, failures: int) -> timedelta: ...


def _locked_counters(s: Session, keys: Iterable[str]) -> list[LoginThrottle]:
    """The counters of these keys, created when missing and locked until the commit:
    ``SELECT ... FOR UPDATE`` on PostgreSQL (in key order, so two attempts never deadlock);
    on SQLite the write transaction's ``BEGIN IMMEDIATE`` already serialises writers."""
    ordered = sorted(set(keys))
    module = postgresql if s.get_bind().dialect.name == "postgresql" else sqlite
    query = select(LoginThrottle).where(LoginThrottle.key.in_(ordered)).order_by(LoginThrottle.key)
    query = query.with_for_update().execution_options(populate_existing=True)
    for _ in range(3):  # a row pruned by another attempt meanwhile is created again
        rows = [{"key": key, "failures": 0} for key in ordered]
        s.execute(module.insert(LoginThrottle.__table__).values(rows).on_conflict_do_nothing())
        found = list(s.scalars(query))
        if len(found) == len(ordered):
            return found
    raise RuntimeError("login counters: could not lock the counters of the attempt")


def _prune_counters(s: Session, keep: Iterable[str], before: datetime) -> None:
    """Delete counters whose last failure is older than ``before`` (their failures are
    forgotten anyway), skipping rows another attempt holds and the attempt's own keys."""
    stale = (
        select(LoginThrottle.key)
        .where(LoginThrottle.last_failure_at < before, LoginThrottle.key.not_in(list(keep)))
        .limit(100)
        .with_for_update(skip_locked=True)
    )
    keys = list(s.scalars(stale))
    if keys:
        s.execute(delete(LoginThrottle).where(LoginThrottle.key.in_(keys)))


def _forget_old(row: LoginThrottle, rule: CounterRule, now: datetime) -> None:
    if row.last_failure_at is not None and aware(row.last_failure_at) < now - rule.forget_after:
        row.failures, row.blocked_until = 0, None


def claim_login_attempt(
    s: Session, rules: Mapping[str, CounterRule], now: datetime | None = None
) -> timedelta:
    """Atomically claim one password check against every counter of the attempt.

    Returns the wait still due (a positive timedelta: refuse without checking the password)
    or zero: the attempt is counted as a failure *before* the password is checked and each
    counter's next delay set, so concurrent attempts never see a stale count; a correct
    password takes it back (:func:`record_login`)."""
    now = now or utcnow()
    _prune_counters(s, rules, now - max(rule.forget_after for rule in rules.values()))
    rows = _locked_counters(s, rules)
    for row in rows:
        _forget_old(row, rules[row.key], now)
    waits = [aware(r.blocked_until) - now for r in rows if r.blocked_until is not None]
    wait = max(waits, default=timedelta(0))
    if wait > timedelta(0):
        return wait
    for row in rows:
        row.failures += 1
        row.last_failure_at = now
        delay = rules[row.key].delay(row.failures)
        row.blocked_until = now + delay if delay else None
    s.flush()
    return timedelta(0)


def record_login(s: Session, rules: Mapping[str, CounterRule], success: bool) -> None:
    """Settle a claimed attempt: a failure stays counted; a success clears the counters
    whose rule says so and takes its own attempt back from the others."""
    if not success:
        return
    for row in _locked_counters(s, rules):
        rule = rules[row.key]
        row.failures = 0 if rule.reset_on_success else max(row.failures - 1, 0)
        if row.failures == 0:
            s.delete(row)
            continue
        delay = rule.delay(row.failures)
        if not delay or row.last_failure_at is None:
            row.blocked_until = None
        else:
            row.blocked_until = aware(row.last_failure_at) + delay
    s.flush()


# -- patients and schedules --------------------------------------------------------------
@dataclass(frozen=True)
class ScheduleSpec:
    """An instrument form to give a patient every ``every`` sessions."""

    instrument_id: str
    form_id: str
    respondent: str
    every: int = 1


def create_patient(
    s: Session,
    code: str,
    therapist: User,
    schedule: Iterable[ScheduleSpec] = (),
    language: str = "en",
) -> Patient:
    """Add a pseudonymous patient to a therapist's caseload with an instrument schedule."""
    code = code.strip()
    if not code or len(code) > 64:
        raise ValueError("code: must be 1 to 64 characters")
    if therapist.role != "therapist":
        raise ValueError(f"therapist: user {therapist.username!r} is not a therapist")
    if s.scalar(select(Patient.id).where(Patient.code == code)) is not None:
        raise Conflict(f"code: patient code {code!r} is already in use")
    patient = Patient(
        code=code, research_id=secrets.token_hex(8), therapist_id=therapist.id, language=language
    )
    s.add(patient)
    s.flush()
    set_schedule(s, patient, schedule)
    return patient


def set_schedule(s: Session, patient: Patient, schedule: Iterable[ScheduleSpec]) -> None:
    """Replace a patient's instrument schedule."""
    patient.schedule.clear()
    s.flush()
    for spec in schedule:
        if spec.every < 1:
            raise ValueError("every: must be a whole number of sessions >= 1")
        patient.schedule.append(
            ScheduleEntry(
                instrument_id=spec.instrument_id,
                form_id=spec.form_id,
                respondent=spec.respondent,
                every=spec.every,
            )
        )
    s.flush()


def get_patient(s: Session, patient_id: int) -> Patient:
    """The patient with this id (raises :class:`NotFound`)."""
    patient = s.get(Patient, patient_id)
    if patient is None:
        raise NotFound(f"patient {patient_id} not found")
    return patient


def visible_patients(user: User) -> Any:
    """The WHERE clause of the patients the user may see: own caseload (therapist), the
    team's caseloads (supervisor), all (admin); active patients only. The one place of
    this rule for lists (:func:`can_see_patient` is its per-patient form)."""
    if user.role == "admin":
        return Patient.active.is_(True)
    if user.role == "therapist":
        return Patient.active.is_(True) & (Patient.therapist_id == user.id)
    if user.role == "supervisor":
        team = select(User.id).where(User.supervisor_id == user.id)
        return Patient.active.is_(True) & Patient.therapist_id.in_(team)
    return false()


def patients_for(s: Session, user: User) -> Sequence[Patient]:
    """Patients the user may see (:func:`visible_patients`), by code."""
    query = select(Patient).where(visible_patients(user)).order_by(Patient.code)
    return s.scalars(query).all()


def can_see_patient(s: Session, user: User, patient: Patient) -> bool:
    """Role rule: a therapist sees their own caseload, a supervisor their team's, admin all."""
    if user.role == "admin":
        return True
    if user.role == "therapist":
        return patient.therapist_id == user.id
    if user.role == "supervisor":
        therapist = s.get(User, patient.therapist_id)
        return therapist is not None and therapist.supervisor_id == user.id
    return False


# -- sessions and links ------------------------------------------------------------------
def create_session(
    s: Session, patient: Patient, user: User | None, on: date | None = None
) -> TherapySession:
    """Add the patient's next session (numbered after the last one)."""
    last = s.scalar(
        select(func.max(TherapySession.number)).where(TherapySession.patient_id == patient.id)
    )
    session = TherapySession(
        patient_id=patient.id,
        number=(last or 0) + 1,
        date=on or utcnow().date(),
        created_by=user.id if user else None,
    )
    s.add(session)
    s.flush()
    return session


def sessions_of(s: Session, patient_id: int) -> Sequence[TherapySession]:
    """A patient's sessions in order."""
    query = select(TherapySession).where(TherapySession.patient_id == patient_id)
    return s.scalars(query.order_by(TherapySession.number)).all()


def get_session(s: Session, session_id: int) -> TherapySession:
    """The session with this id (raises :class:`NotFound`)."""
    session = s.get(TherapySession, session_id)
    if session is None:
        raise NotFound(f"session {session_id} not found")
    return session


def due_entries(s: Session, session: TherapySession, respondent: str) -> list[ScheduleEntry]:
    """Schedule entries of this respondent due at this session."""
    patient = s.get(Patient, session.patient_id)
    assert patient is not None
    return [e for e in patient.schedule if e.respondent == respondent and e.due(session.number)]


def answered_sessions(s: Session, session_ids: Sequence[int]) -> set[int]:
    """The sessions (of those given) whose client forms are in: any client response, the
    same rule by which a second submission of the session is refused."""
    if not session_ids:
        return set()
    query = select(Response.session_id).where(
        Response.session_id.in_(session_ids), Response.respondent == "client"
    )
    return set(s.scalars(query.distinct()))


def issue_link(
    s: Session, session: TherapySession, ttl: timedelta = LINK_TTL, kiosk: bool = False
) -> str:
    """Create a single-use patient link for the session; returns the token (stored hashed)."""
    token = new_token()
    s.add(
        Link(
            session_id=session.id,
            token_hash=hash_token(token),
            expires_at=utcnow() + ttl,
            kiosk=kiosk,
        )
    )
    s.flush()
    return token


class LinkUnusable(LookupError):
    """A patient link that is unknown, already used or expired (``reason`` says which)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def open_link(s: Session, token: str) -> Link:
    """The usable link for a token, or :class:`LinkUnusable` with the reason."""
    link = s.scalar(select(Link).where(Link.token_hash == hash_token(token)))
    if link is None:
        raise LinkUnusable("unknown")
    if link.used_at is not None:
        raise LinkUnusable("used")
    if aware(link.expires_at) < utcnow():
        raise LinkUnusable("expired")
    return link


def consume_link(s: Session, link: Link) -> None:
    """Mark the link used, atomically: a concurrent second use raises :class:`LinkUnusable`."""
    result = s.execute(
        update(Link)
        .where(Link.id == link.id, Link.used_at.is_(None))
        .values(used_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    if getattr(result, "rowcount", 0) != 1:
        raise LinkUnusable("used")


# -- responses ---------------------------------------------------------------------------
def add_response(
    s: Session,
    session: TherapySession,
    entry: ScheduleEntry | ScheduleSpec,
    items: dict[str, Any],
    scores: dict[str, Any],
    source: str,
    user: User | None = None,
    language: str = "en",
) -> Response:
    """Store one validated and scored form; marks the patient's analytics stale (the
    caller refreshes them after its commit)."""
    exists = s.scalar(
        select(Response.id).where(
            Response.session_id == session.id,
            Response.instrument_id == entry.instrument_id,
            Response.respondent == entry.respondent,
        )
    )
    if exists is not None:
        raise Conflict(f"{entry.instrument_id}: this form was already completed for the session")
    response = Response(
        session_id=session.id,
        patient_id=session.patient_id,
        instrument_id=entry.instrument_id,
        form_id=entry.form_id,
        respondent=entry.respondent,
        items=items,
        scores=scores,
        source=source,
        submitted_by=user.id if user else None,
        language=language,
    )
    s.add(response)
    s.execute(update(Patient).where(Patient.id == session.patient_id).values(alerts_stale=True))
    s.flush()
    return response


def response_records(s: Session, patient_ids: Sequence[int] | None = None) -> list[Any]:
    """Stored responses as plain rows, by patient, session and response: ``patient_id,
    research_id, therapist_id, session, date, instrument_id, respondent, items, scores``
    ``submitted_at`` (one column query; no ORM objects)."""
    query = (
        select(
            Response.patient_id,
            Patient.research_id,
            Patient.therapist_id,
            TherapySession.number.label("session"),
            TherapySession.date,
            Response.instrument_id,
            Response.respondent,
            Response.items,
            Response.scores,
            Response.submitted_at,
        )
        .join(TherapySession, Response.session_id == TherapySession.id)
        .join(Patient, Response.patient_id == Patient.id)
        .order_by(Response.patient_id, TherapySession.number, Response.id)
    )
    if patient_ids is not None:
        query = query.where(Response.patient_id.in_(list(patient_ids)))
    return list(s.execute(query).all())


def responses_frame(s: Session, patient_ids: Sequence[int] | None = None) -> pd.DataFrame:
    """All responses as a long table, one row per (session, instrument, respondent).

    Columns: ``patient_id, research_id, therapist_id, session, date, instrument_id,
    form_id, respondent, language, source, submitted_at`` plus the item and score columns.
    """
    query = (
        select(Response, TherapySession.number, TherapySession.date, Patient)
        .join(TherapySession, Response.session_id == TherapySession.id)
        .join(Patient, Response.patient_id == Patient.id)
        .order_by(Response.patient_id, TherapySession.number, Response.id)
    )
    if patient_ids is not None:
        query = query.where(Response.patient_id.in_(list(patient_ids)))
    records = []
    for response, number, on, patient in s.execute(query):
        records.append(
            {
                "patient_id": patient.id,
                "research_id": patient.research_id,
                "therapist_id": patient.therapist_id,
                "session": number,
                "date": pd.Timestamp(on),
                "instrument_id": response.instrument_id,
                "form_id": response.form_id,
                "respondent": response.respondent,
                "language": response.language,
                "source": response.source,
                "submitted_at": response.submitted_at,
                **response.items,
                **response.scores,
            }
        )
    return pd.DataFrame.from_records(records)


# -- responses by patient code, session number and date (the FHIR endpoints) --------------
#: Comparisons of a session date in a search (FHIR's date prefixes).
DATE_COMPARISONS = {
    "eq": lambda column, day: column == day,
    "ge": lambda column, day: column >= day,
    "le": lambda column, day: column <= day,
    "gt": lambda column, day: column > day,
    "lt": lambda column, day: column < day,
}


def patient_by_code(s: Session, code: str) -> Patient | None:
    """The patient with this clinic code, if any."""
    return s.scalar(select(Patient).where(Patient.code == code))


def lock_patient(s: Session, patient_id: int) -> Patient:
    """The patient's row, locked until the commit (PostgreSQL ``FOR NO KEY UPDATE``; on
    SQLite the write transaction holds the database), so two writers adding sessions to
    one patient number them one after the other. Raises :class:`NotFound`."""
    query = select(Patient).where(Patient.id == patient_id).with_for_update(key_share=True)
    patient = s.scalar(query.execution_options(populate_existing=True))
    if patient is None:
        raise NotFound(f"patient {patient_id} not found")
    return patient


def session_by_number(s: Session, patient_id: int, number: int) -> TherapySession | None:
    """The patient's session with this number, if any."""
    query = select(TherapySession).where(
        TherapySession.patient_id == patient_id, TherapySession.number == number
    )
    return s.scalar(query)


def latest_session(s: Session, patient_id: int) -> TherapySession | None:
    """The patient's session with the highest number, if any."""
    query = select(TherapySession).where(TherapySession.patient_id == patient_id)
    return s.scalar(query.order_by(TherapySession.number.desc()).limit(1))


StoredResponse = tuple[Response, TherapySession, Patient]


def response_in_context(s: Session, response_id: int) -> StoredResponse | None:
    """A stored response with its session and patient, if it exists."""
    query = (
        select(Response, TherapySession, Patient)
        .join(TherapySession, Response.session_id == TherapySession.id)
        .join(Patient, Response.patient_id == Patient.id)
        .where(Response.id == response_id)
    )
    row = s.execute(query).first()
    return None if row is None else (row[0], row[1], row[2])


@dataclass(frozen=True)
class ResponseQuery:
    """What a search of stored responses asks for (None: no condition; an empty sequence
    matches nothing). ``on``: (comparison of :data:`DATE_COMPARISONS`, day) pairs on the
    session date, all of which must hold."""

    patient_codes: Sequence[str] | None = None
    research_ids: Sequence[str] | None = None
    forms: Sequence[tuple[str, str]] | None = None
    instrument_ids: Sequence[str] | None = None
    on: Sequence[tuple[str, date]] = ()


def find_responses(
    s: Session, visible_to: User | None, wanted: ResponseQuery
) -> list[StoredResponse]:
    """Stored responses matching ``wanted`` with their sessions and patients, by patient,
    session and response. ``visible_to``: only the patients that user may see
    (:func:`visible_patients`); None: every patient (the caller de-identifies)."""
    query = (
        select(Response, TherapySession, Patient)
        .join(TherapySession, Response.session_id == TherapySession.id)
        .join(Patient, Response.patient_id == Patient.id)
    )
    if visible_to is not None:
        query = query.where(visible_patients(visible_to))
    if wanted.patient_codes is not None:
        query = query.where(Patient.code.in_(list(wanted.patient_codes)))
    if wanted.research_ids is not None:
        query = query.where(Patient.research_id.in_(list(wanted.research_ids)))
    if wanted.forms is not None:
        pairs = [(Response.instrument_id == i) & (Response.form_id == f) for i, f in wanted.forms]
        query = query.where(or_(false(), *pairs))
    if wanted.instrument_ids is not None:
        query = query.where(Response.instrument_id.in_(list(wanted.instrument_ids)))
    for comparison, day in wanted.on:
        query = query.where(DATE_COMPARISONS[comparison](TherapySession.date, day))
    query = query.order_by(Response.patient_id, TherapySession.number, Response.id)
    return [(r, session, patient) for r, session, patient in s.execute(query)]


# -- analytics: alert episodes, ruptures, statuses, frozen norms ------------------------
# Episode columns the analytics own (alliance.dynamics.episodes.EPISODE_COLUMNS, minus the
# key and the therapist); the clinician's workflow columns are never written from here
# except ``status``, through alliance.dynamics.episodes.workflow_status.
EPISODE_FIELDS = tuple(
    c for c in EPISODE_COLUMNS if c not in ("patient_id", "therapist_id", "kind", "opened_session")
)


def stale_patient_ids(s: Session, patient_ids: Sequence[int] | None = None) -> list[int]:
    """Patients whose analytics need recomputing after new responses."""
    query = select(Patient.id).where(Patient.alerts_stale.is_(True))
    if patient_ids is not None:
        query = query.where(Patient.id.in_(list(patient_ids)))
    return list(s.scalars(query.order_by(Patient.id)).all())


def response_counts(s: Session, patient_ids: Sequence[int], lock: bool = False) -> dict[int, int]:
    """Number of stored responses per patient (responses are never deleted, so a count
    that grew means new answers).

    ``lock`` first takes the patients' rows (``FOR NO KEY UPDATE SKIP LOCKED`` on
    PostgreSQL; SQLite's write transaction holds the whole database) and counts only the
    patients it got: a submission committing meanwhile is then either counted or marks its
    patient stale after us, and a patient whose row a submission holds right now is left
    out (never waited for, so no deadlock with the writer; that submission brings a new
    refresh).
    """
    ids = sorted(set(patient_ids))
    if not ids:
        return {}
    if lock:
        rows = select(Patient.id).where(Patient.id.in_(ids)).order_by(Patient.id)
        ids = list(s.scalars(rows.with_for_update(key_share=True, skip_locked=True)))
        if not ids:
            return {}
    query = (
        select(Response.patient_id, func.count(Response.id))
        .where(Response.patient_id.in_(ids))
        .group_by(Response.patient_id)
    )
    counts = {pid: 0 for pid in ids}
    counts.update({int(pid): int(n) for pid, n in s.execute(query)})
    return counts


def _set(target: Any, name: str, value: Any) -> bool:
    """Set an attribute if it differs; whether it did."""
    if getattr(target, name) == value:
        return False
    setattr(target, name, value)
    return True


def replace_analytics(
    s: Session,
    patient_ids: Sequence[int],
    episodes: Iterable[dict[str, Any]],
    ruptures: Iterable[dict[str, Any]],
) -> int:
    """Store freshly computed analytics of these patients; returns the new episodes.

    Episodes are upserted by (patient, opened session, kind): a new one is added with the
    workflow status "open"; an existing one takes the new numbers, reason, detail, state,
    last and closed session and severity, and its workflow status passes through
    :func:`alliance.dynamics.episodes.workflow_status` (an escalation reopens it). Stored
    episodes the analytics no longer produce are left as they are (decisions about past
    sessions stand). Ruptures are replaced; the patients' statuses are recomputed from
    their stored episodes (:func:`store_statuses`); the patients are marked fresh. Rows
    are those of :mod:`alliance.web.dynamics_adapter`.
    """
    from alliance.dynamics.episodes import workflow_status

    ids = list(patient_ids)
    existing = {
        (a.patient_id, a.session, a.kind): a
        for a in s.scalars(select(Alert).where(Alert.patient_id.in_(ids)))
    }
    now = utcnow()
    added = 0
    for row in episodes:
        opened = row["opened_session"] if "opened_session" in row else row["session"]
        key = (int(row["patient_id"]), int(opened), str(row["kind"]))
        values = {name: row[name] for name in EPISODE_FIELDS if name in row}
        values.setdefault("last_session", key[1])
        alert = existing.get(key)
        if alert is None:
            alert = Alert(patient_id=key[0], session=key[1], kind=key[2], status="open", **values)
            alert.updated_at = now
            s.add(alert)
            existing[key] = alert
            added += 1
            continue
        status = workflow_status(
            alert.status, alert.severity, values.get("severity", alert.severity)
        )
        changed = _set(alert, "status", status)
        for name, value in values.items():
            changed = _set(alert, name, value) or changed
        if changed:
            alert.updated_at = now
    s.execute(delete(RuptureEvent).where(RuptureEvent.patient_id.in_(ids)))
    rows = list(ruptures)
    if rows:
        s.execute(insert(RuptureEvent), rows)
    s.flush()
    store_statuses(s, ids)
    s.execute(update(Patient).where(Patient.id.in_(ids)).values(alerts_stale=False))
    s.flush()
    return added


def store_statuses(s: Session, patient_ids: Sequence[int]) -> None:
    """Recompute and store these patients' status from their stored episodes with
    :func:`alliance.dynamics.status.patient_status` (the clinic's rule: episodes whose
    condition holds count unless a clinician resolved them)."""
    from alliance.dynamics.status import patient_status

    ids = sorted(set(patient_ids))
    if not ids:
        return
    columns = ["patient_id", "kind", "state", "severity", "opened_session", "reason", "workflow"]
    query = (
        select(Alert.patient_id, Alert.kind, Alert.state, Alert.severity)
        .add_columns(Alert.session, Alert.reason, Alert.status)
        .where(Alert.patient_id.in_(ids))
        .order_by(Alert.patient_id, Alert.session, Alert.kind)  # the dynamics' own order
    )
    episodes = pd.DataFrame([tuple(r) for r in s.execute(query)], columns=columns)
    rows = [
        {
            "id": int(rec["patient_id"]),
            "status": str(rec["status"]),
            "status_reason": str(rec["reason"]),
            "status_since": None if pd.isna(rec["since_session"]) else int(rec["since_session"]),
        }
        for rec in patient_status(episodes, ids).to_dict("records")
    ]
    s.execute(update(Patient), rows)  # by primary key, one statement


def _open(query: Any) -> Any:
    return query.where(Alert.state == "open", Alert.status != "resolved")


def alerts_of(s: Session, patient_ids: Sequence[int], open_only: bool = False) -> Sequence[Alert]:
    """Alert episodes of these patients, newest opened first. ``open_only``: the open
    alerts (the condition holds and nobody resolved them)."""
    query = select(Alert).where(Alert.patient_id.in_(list(patient_ids)))
    if open_only:
        query = _open(query)
    return s.scalars(query.order_by(Alert.patient_id, Alert.session.desc(), Alert.id)).all()


def open_alert_counts(s: Session, patient_ids: Sequence[int]) -> dict[int, int]:
    """Open alerts per patient (patients without any are left out)."""
    query = _open(
        select(Alert.patient_id, func.count(Alert.id)).where(
            Alert.patient_id.in_(list(patient_ids))
        )
    ).group_by(Alert.patient_id)
    return {int(pid): int(n) for pid, n in s.execute(query)}


def stored_norms(s: Session) -> Sequence[ClinicNorm]:
    """The clinic's frozen norms, one row per (instrument, score)."""
    return s.scalars(select(ClinicNorm).order_by(ClinicNorm.instrument_id, ClinicNorm.score)).all()


def store_norms(
    s: Session,
    instrument_id: str,
    score: str,
    *,
    sd: float,
    reliability: float,
    source: str,
    mean: float | None = None,
    n_patients: int | None = None,
) -> ClinicNorm:
    """Freeze norms of one score; :class:`Conflict` if the clinic already has some."""
    found = s.scalar(
        select(ClinicNorm.id).where(
            ClinicNorm.instrument_id == instrument_id, ClinicNorm.score == score
        )
    )
    if found is not None:
        raise Conflict(f"norms: {instrument_id} {score} are already frozen")
    row = ClinicNorm(
        instrument_id=instrument_id,
        score=score,
        sd=float(sd),
        reliability=float(reliability),
        mean=None if mean is None else float(mean),
        source=source,
        n_patients=n_patients,
    )
    s.add(row)
    s.flush()
    return row


def first_responses_frame(s: Session, instrument_id: str) -> pd.DataFrame:
    """Each patient's first client response to the instrument (items and scores): the
    clinic's first sessions, from which its norms are estimated.

    Columns: ``patient_id, session`` and the item and score columns.
    """
    scope = (Response.instrument_id == instrument_id) & (Response.respondent == "client")
    first = (
        select(Response.patient_id, func.min(TherapySession.number).label("first"))
        .join(TherapySession, Response.session_id == TherapySession.id)
        .where(scope)
        .group_by(Response.patient_id)
        .subquery()
    )
    query = (
        select(Response.patient_id, TherapySession.number, Response.items, Response.scores)
        .join(TherapySession, Response.session_id == TherapySession.id)
        .join(
            first,
            (first.c.patient_id == Response.patient_id) & (first.c.first == TherapySession.number),
        )
        .where(scope)
        .order_by(Response.patient_id)
    )
    records = [
        {"patient_id": pid, "session": number, **items, **scores}
        for pid, number, items, scores in s.execute(query)
    ]
    return pd.DataFrame.from_records(
        records, columns=None if records else ["patient_id", "session"]
    )


# -- expected trajectories: model fits and each session's band, both write-once ----------
BAND_FIELDS = ("expected", "sd", "lower", "upper", "observed")


def store_expected_model(
    s: Session,
    score: str,
    params: Mapping[str, Any],
    *,
    n_patients: int,
    n_sessions: int,
    fitted_at: datetime | None = None,
) -> ExpectedModelFit:
    """Keep a new fit of the expected-trajectory model of ``score`` (it is then in force)."""
    row = ExpectedModelFit(
        score=score, params=dict(params), n_patients=n_patients, n_sessions=n_sessions,
        fitted_at=fitted_at or utcnow(),
    )  # fmt: skip
    s.add(row)
    s.flush()
    return row


def expected_models_in_force(s: Session) -> dict[str, ExpectedModelFit]:
    """The newest fit of each score."""
    newest = select(ExpectedModelFit.score, func.max(ExpectedModelFit.id).label("id")).group_by(
        ExpectedModelFit.score
    )
    ids = [row.id for row in s.execute(newest)]
    rows = s.scalars(select(ExpectedModelFit).where(ExpectedModelFit.id.in_(ids))).all()
    return {row.score: row for row in rows}


def expected_bands_of(s: Session, patient_ids: Sequence[int]) -> pd.DataFrame:
    """Stored bands of these patients: ``patient_id, session, score, model_id`` and
    :data:`BAND_FIELDS`, by patient and session."""
    query = (
        select(
            ExpectedBand.patient_id,
            ExpectedBand.session,
            ExpectedBand.score,
            ExpectedBand.model_id,
            *(getattr(ExpectedBand, f) for f in BAND_FIELDS),
        )
        .where(ExpectedBand.patient_id.in_(list(patient_ids)))
        .order_by(ExpectedBand.patient_id, ExpectedBand.session, ExpectedBand.score)
    )
    columns = ["patient_id", "session", "score", "model_id", *BAND_FIELDS]
    return pd.DataFrame(s.execute(query).all(), columns=columns)


def add_expected_bands(s: Session, rows: Sequence[Mapping[str, Any]]) -> int:
    """Store the bands of newly analysed sessions; a session that has one keeps it (a band
    is decided once). Returns the number stored."""
    if not rows:
        return 0
    keys = {(int(r["patient_id"]), int(r["session"]), str(r["score"])) for r in rows}
    query = select(ExpectedBand.patient_id, ExpectedBand.session, ExpectedBand.score).where(
        ExpectedBand.patient_id.in_({k[0] for k in keys})
    )
    have = {tuple(row) for row in s.execute(query)}
    new = [dict(r) for r in rows if (r["patient_id"], r["session"], r["score"]) not in have]
    if new:
        s.execute(insert(ExpectedBand), new)
    return len(new)


def expected_calibration(s: Session) -> dict[str, tuple[int, int]]:
    """Per score: (sessions with a stored band, sessions of them under its lower edge),
    the clinic's own check of the bands' calibration."""
    under = func.sum(case((ExpectedBand.observed < ExpectedBand.lower, 1), else_=0))
    query = select(ExpectedBand.score, func.count(), under).group_by(ExpectedBand.score)
    return {score: (int(n), int(k or 0)) for score, n, k in s.execute(query)}


def ruptures_of(s: Session, patient_ids: Sequence[int]) -> Sequence[RuptureEvent]:
    """Rupture events of these patients, in session order."""
    query = select(RuptureEvent).where(RuptureEvent.patient_id.in_(list(patient_ids)))
    return s.scalars(query.order_by(RuptureEvent.patient_id, RuptureEvent.session)).all()


def get_alert(s: Session, alert_id: int) -> Alert:
    """The alert with this id (raises :class:`NotFound`)."""
    alert = s.get(Alert, alert_id)
    if alert is None:
        raise NotFound(f"alert {alert_id} not found")
    return alert


def set_alert_status(s: Session, alert: Alert, user: User, status: str, note: str) -> None:
    """Acknowledge or resolve an alert with a note; :class:`Conflict` (naming the state) if
    the alert is already resolved."""
    if status not in ("acknowledged", "resolved"):
        raise ValueError("status: must be 'acknowledged' or 'resolved'")
    if len(note.strip()) > NOTE_MAX:
        raise ValueError(f"note: must be at most {NOTE_MAX} characters")
    if status == "resolved" and not note.strip():
        raise ValueError("note: a note is required to resolve an alert")
    if alert.status == "resolved":  # a resolved episode stays resolved (only escalation reopens)
        raise Conflict(f"status: the alert is resolved; it cannot be {status} again")
    now = utcnow()
    if alert.acknowledged_at is None:
        alert.acknowledged_at, alert.acknowledged_by = now, user.id
    if status == "resolved":
        alert.resolved_at, alert.resolved_by = now, user.id
    alert.status = status
    if note.strip():  # an entry of its own; the alert keeps only the latest text
        s.add(AlertNote(alert_id=alert.id, author_id=user.id, created_at=now, text=note.strip()))
        alert.note = note.strip()
    s.flush()
    store_statuses(s, [alert.patient_id])  # a resolved episode no longer counts


def alert_notes(s: Session, alert_ids: Sequence[int]) -> dict[int, list[AlertNote]]:
    """The notes of each alert, oldest first, with their authors loaded."""
    out: dict[int, list[AlertNote]] = {i: [] for i in alert_ids}
    if alert_ids:
        query = (
            select(AlertNote)
            .where(AlertNote.alert_id.in_(alert_ids))
            .options(selectinload(AlertNote.author))
            .order_by(AlertNote.alert_id, AlertNote.id)
        )
        for note in s.scalars(query):
            out[note.alert_id].append(note)
    return out
