"""Admin pages: clinic users, caseloads, patients and their instrument schedules."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from fastapi import APIRouter, Depends, Form, HTTPException
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm import Session

from alliance.instruments import list_instruments
from alliance.store import repo
from alliance.store.models import ROLES, User
from alliance.web.deps import Ctx, get_ctx
from alliance.web.forms import form_languages
from alliance.web.security import hash_password
from alliance.web.validation import EVERY_MAX, RowId, check_text, form_row_id

router = APIRouter(include_in_schema=False)

DEFAULT_SCHEDULE = ("wai_sr:client", "psq:patient")


def schedule_choices() -> list[dict[str, Any]]:
    """Every (instrument, form) an admin can schedule, with its respondent."""
    choices = []
    for inst in list_instruments():
        for form in inst.forms:
            if form.respondent == "observer":
                continue
            choices.append(
                {
                    "value": f"{inst.id}:{form.id}",
                    "label": f"{inst.short_name} – {form.name}",
                    "respondent": form.respondent,
                    "scorable": form.scorable,
                    # a form meant to be scored whose instrument has no key: refused
                    "refused": inst.missing_key if form.scorable else None,
                }
            )
    return choices


def patient_languages() -> list[str]:
    """The languages a patient's forms can be set to: the chrome catalogues and every
    installed wording of a schedulable instrument."""
    return sorted(form_languages({c["value"].split(":")[0] for c in schedule_choices()}, "en"))


def parse_schedule(values: list[str], every: int) -> list[repo.ScheduleSpec]:
    """Schedule specs from ``instrument:form`` checkbox values (unknown ones rejected)."""
    known = {c["value"]: c for c in schedule_choices()}
    specs = []
    for value in values:
        if value not in known:
            raise HTTPException(422, f"schedule: unknown instrument form {value!r}")
        if known[value]["refused"]:
            raise ValueError(f"schedule: {value}: {known[value]['refused']}")
        instrument_id, form_id = value.split(":", 1)
        specs.append(repo.ScheduleSpec(instrument_id, form_id, known[value]["respondent"], every))
    return specs


def _page(ctx: Ctx, error: str | None = None, status: int = 200) -> Response:
    user = ctx.require("admin")
    with ctx.db.audited() as s:
        users = list(repo.list_users(s))
        patients = list(repo.patients_for(s, user))
        shown = [p.id for p in patients]
        repo.audit(
            s, user, "read", "patient-list", detail=f"{len(patients)} patients", patients=shown
        )
        return ctx.render(
            "admin.html",
            status_code=status,
            users=users,
            patients=patients,
            therapists=[u for u in users if u.role == "therapist" and u.active],
            supervisors=[u for u in users if u.role == "supervisor" and u.active],
            tokens=repo.active_token_counts(s),
            roles=ROLES,
            choices=schedule_choices(),
            patient_languages=patient_languages(),
            default_schedule=DEFAULT_SCHEDULE,
            error=error,
        )


@router.get("/admin", response_class=HTMLResponse)
def admin_home(ctx: Ctx = Depends(get_ctx)) -> Response:
    """Users, caseloads and patients."""
    return _page(ctx)


@router.post("/admin/users", response_class=HTMLResponse)
def create_user(
    username: str = Form(""),
    display_name: str = Form(""),
    role: str = Form(""),
    password: str = Form(""),
    supervisor_id: str = Form(""),
    csrf_token: str = Form(""),
    ctx: Ctx = Depends(get_ctx),
) -> Response:
    """Create a clinic user (admin, supervisor, therapist or researcher)."""
    ctx.check_csrf(csrf_token)
    admin = ctx.require("admin")
    try:
        check_text("username", username, 64)
        check_text("display_name", display_name, 128)
        password_hash = hash_password(password)
        with ctx.db.write() as s:
            supervisor = form_row_id("supervisor_id", supervisor_id.strip())
            if (
                supervisor is not None
                and getattr(s.get(User, supervisor), "role", "") != "supervisor"
            ):
                raise ValueError("supervisor_id: not a supervisor")
            user = repo.create_user(
                s, username.strip(), password_hash, role, display_name.strip(), supervisor
            )
            repo.audit(s, admin, "create", "user", user.id, detail=f"role={role}")
    except ValueError as exc:
        return _page(ctx, str(exc), 422)
    return ctx.redirect("/admin")


def _change_account(
    ctx: Ctx, csrf_token: str, user_id: int, change: Callable[[Session, User, User], None]
) -> Response:
    """Apply ``change(session, account, admin)`` to one account: 404 for an unknown id,
    422 for a bad field, 409 for a change the account rules refuse (see ``repo.set_*``)."""
    ctx.check_csrf(csrf_token)
    admin = ctx.require("admin")
    try:
        with ctx.db.write() as s:
            change(s, repo.account_by_id(s, user_id), admin)
    except repo.NotFound:
        raise HTTPException(404, "user_id: no such user") from None
    except repo.Conflict as exc:
        return _page(ctx, str(exc), 409)
    except ValueError as exc:
        return _page(ctx, str(exc), 422)
    return ctx.redirect("/admin")


@router.post("/admin/users/{user_id}/role", response_class=HTMLResponse)
def change_role(
    user_id: RowId,
    role: str = Form(""),
    supervisor_id: str = Form(""),
    csrf_token: str = Form(""),
    ctx: Ctx = Depends(get_ctx),
) -> Response:
    """Change an account's role and (for a therapist) supervisor."""

    def change(s: Session, user: User, admin: User) -> None:
        supervisor = form_row_id("supervisor_id", supervisor_id.strip())
        repo.set_role(s, user, role, supervisor if role == "therapist" else None, by=admin)

    return _change_account(ctx, csrf_token, user_id, change)


@router.post("/admin/users/{user_id}/password", response_class=HTMLResponse)
def reset_password(
    user_id: RowId,
    password: str = Form(""),
    csrf_token: str = Form(""),
    ctx: Ctx = Depends(get_ctx),
) -> Response:
    """Set a new password; the account's sessions end and its API tokens are revoked."""

    def change(s: Session, user: User, admin: User) -> None:
        repo.set_password(s, user, hash_password(password), by=admin)

    return _change_account(ctx, csrf_token, user_id, change)


@router.post("/admin/users/{user_id}/active", response_class=HTMLResponse)
def change_active(
    user_id: RowId,
    active: Literal["0", "1"] = Form(...),
    csrf_token: str = Form(""),
    ctx: Ctx = Depends(get_ctx),
) -> Response:
    """Deactivate (``active=0``: sessions end, tokens revoked) or reactivate an account."""

    def change(s: Session, user: User, admin: User) -> None:
        repo.set_active(s, user, active == "1", by=admin)

    return _change_account(ctx, csrf_token, user_id, change)


@router.post("/admin/users/{user_id}/tokens/revoke", response_class=HTMLResponse)
def revoke_tokens(
    user_id: RowId, csrf_token: str = Form(""), ctx: Ctx = Depends(get_ctx)
) -> Response:
    """Revoke every API token of an account."""

    def change(s: Session, user: User, admin: User) -> None:
        repo.revoke_tokens(s, user, by=admin)

    return _change_account(ctx, csrf_token, user_id, change)


def _therapist(s: Session, user_id: int | None) -> User:
    """The therapist a patient is assigned to; any other account is refused."""
    therapist = None if user_id is None else s.get(User, user_id)
    if therapist is None or therapist.role != "therapist":
        raise ValueError("therapist_id: not a therapist")
    return therapist


@router.post("/admin/patients", response_class=HTMLResponse)
def create_patient(
    code: str = Form(""),
    therapist_id: str = Form(""),
    language: str = Form("en"),
    schedule: list[str] = Form(default=[]),
    every: int = Form(1, ge=1, le=EVERY_MAX),
    csrf_token: str = Form(""),
    ctx: Ctx = Depends(get_ctx),
) -> Response:
    """Add a pseudonymous patient to a therapist's caseload with an instrument schedule."""
    ctx.check_csrf(csrf_token)
    admin = ctx.require("admin")
    try:
        check_text("code", code, 64)
        offered = patient_languages()
        if language not in offered:
            raise ValueError(f"language: must be one of {', '.join(offered)}")
        specs = parse_schedule(schedule, every)
        with ctx.db.write() as s:
            therapist = _therapist(s, form_row_id("therapist_id", therapist_id.strip()))
            patient = repo.create_patient(s, code, therapist, specs, language)
            repo.audit(s, admin, "create", "patient", patient.id, patient_id=patient.id)
    except ValueError as exc:
        return _page(ctx, str(exc), 422)
    return ctx.redirect("/admin")


@router.post("/admin/patients/{patient_id}/schedule", response_class=HTMLResponse)
def update_schedule(
    patient_id: RowId,
    schedule: list[str] = Form(default=[]),
    every: int = Form(1, ge=1, le=EVERY_MAX),
    therapist_id: str = Form(""),
    csrf_token: str = Form(""),
    ctx: Ctx = Depends(get_ctx),
) -> Response:
    """Change a patient's instruments and schedule (and optionally their therapist)."""
    ctx.check_csrf(csrf_token)
    admin = ctx.require("admin")
    try:
        specs = parse_schedule(schedule, every)
        with ctx.db.write() as s:
            patient = repo.get_patient(s, patient_id)
            repo.set_schedule(s, patient, specs)
            new_therapist = form_row_id("therapist_id", therapist_id.strip())
            if new_therapist is not None:
                patient.therapist_id = _therapist(s, new_therapist).id
            repo.audit(s, admin, "update", "schedule", patient.id, patient_id=patient.id)
    except repo.NotFound:
        raise HTTPException(404, "No such patient.") from None
    except ValueError as exc:
        return _page(ctx, str(exc), 422)
    return ctx.redirect("/admin")


@router.get("/admin/audit", response_class=HTMLResponse)
def audit_log(ctx: Ctx = Depends(get_ctx)) -> Response:
    """The newest entries of the append-only audit log."""
    admin = ctx.require("admin")
    with ctx.db.audited() as s:
        entries = list(repo.audit_entries(s))
        repo.audit(s, admin, "read", "audit-log")
    return ctx.render("audit.html", entries=entries)
