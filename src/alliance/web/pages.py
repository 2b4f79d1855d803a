"""Clinician pages: login, caseload, patient view, sessions and links, alerts, therapist form."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pandas as pd
import segno
from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from alliance.store import repo
from alliance.store.models import Patient, User
from alliance.web import monitoring
from alliance.web.deps import (
    Ctx,
    RefusedPatient,
    client_address,
    get_ctx,
    set_session_cookie,
)
from alliance.web.forms import SubmissionInvalid, build_form, score_answers
from alliance.web.security import (
    LOGIN_MAX_FAILURES,
    LOGIN_WINDOW_MINUTES,
    SessionData,
    burn_verify_time,
    new_nonce,
    verify_password,
)

router = APIRouter(include_in_schema=False)
CLINICAL = ("admin", "supervisor", "therapist")
HOME = {
    "admin": "/admin",
    "supervisor": "/supervision",
    "therapist": "/caseload",
    "researcher": "/export",
}


# -- login -------------------------------------------------------------------------------
@router.get("/", response_class=HTMLResponse)
def index(ctx: Ctx = Depends(get_ctx)) -> Response:
    """Home: the user's start page, or the login form."""
    if ctx.user is None:
        return ctx.redirect("/login")
    return ctx.redirect(HOME[ctx.user.role])


@router.get("/login", response_class=HTMLResponse)
def login_form(ctx: Ctx = Depends(get_ctx)) -> Response:
    """The login form."""
    return ctx.render("login.html", error=None)


@router.post("/login", response_class=HTMLResponse)
def login(
    request: Request,
    username: str = Form(""),
    password: str = Form(""),
    csrf_token: str = Form(""),
    ctx: Ctx = Depends(get_ctx),
) -> Response:
    """Check the password (argon2), with rate limiting per username and per client."""
    ctx.check_csrf(csrf_token)
    client = client_address(request)
    window = timedelta(minutes=LOGIN_WINDOW_MINUTES)
    with ctx.db.write() as s:
        if repo.recent_failures(s, username, client, window) >= LOGIN_MAX_FAILURES:
            message = f"Too many failed logins. Try again in {LOGIN_WINDOW_MINUTES} minutes."
            limited = ctx.render("login.html", status_code=429, error=message)
            limited.headers["Retry-After"] = str(LOGIN_WINDOW_MINUTES * 60)
            return limited
        user = repo.user_by_name(s, username)
        ok = user is not None and verify_password(user.password_hash, password)
        if user is None:
            burn_verify_time(password)
        repo.record_login(s, username, client, ok)
    if not ok or user is None:
        return ctx.render("login.html", status_code=401, error="Unknown user or wrong password.")
    response: Response = RedirectResponse(HOME[user.role], status_code=303)
    session = SessionData(user.id, new_nonce(), user.session_epoch)
    set_session_cookie(request, response, ctx.signer, session)
    return response


@router.post("/logout")
def logout(csrf_token: str = Form(""), ctx: Ctx = Depends(get_ctx)) -> Response:
    """End the user's sessions on every device (their cookies stop working)."""
    ctx.check_csrf(csrf_token)
    if ctx.user is not None:
        with ctx.db.write() as s:
            repo.end_sessions(s, ctx.user.id)
    response = RedirectResponse("/login", status_code=303)
    set_session_cookie(ctx.request, response, ctx.signer, SessionData(None, new_nonce()))
    return response


# -- caseload ----------------------------------------------------------------------------
def caseload_rows(s: Session, patients: list[Patient]) -> list[dict[str, Any]]:
    """One summary row per patient: sessions, latest scores and open alerts."""
    ids = [p.id for p in patients]
    table = monitoring.session_table(s, ids) if ids else None
    open_alerts: dict[int, int] = {}
    for alert in repo.alerts_of(s, ids, open_only=True):
        open_alerts[alert.patient_id] = open_alerts.get(alert.patient_id, 0) + 1
    rows = []
    for p in patients:
        own = table[table["patient_id"] == p.id] if table is not None else None
        primary = monitoring.primary_instrument(list(own.columns)) if own is not None else None
        row: dict[str, Any] = {
            "patient": p,
            "sessions": 0 if own is None else len(own),
            "instrument": primary or "",
            "patient_total": None,
            "therapist_total": None,
            "open_alerts": open_alerts.get(p.id, 0),
        }
        if own is not None and primary:
            row["patient_total"] = monitoring.latest(own, f"{primary}_total")
            row["therapist_total"] = monitoring.latest(own, f"{primary}_therapist_total")
        rows.append(row)
    return rows


@router.get("/caseload", response_class=HTMLResponse)
def caseload(ctx: Ctx = Depends(get_ctx)) -> Response:
    """The caseload with each patient's latest scores and open alerts."""
    user = ctx.require(*CLINICAL)
    monitoring.refresh_alerts(ctx.db)
    with ctx.db.write() as s:
        patients = list(repo.patients_for(s, user))
        rows = caseload_rows(s, patients)
        repo.audit(s, user, "read", "caseload", detail=f"{len(patients)} patients")
    return ctx.render("caseload.html", rows=rows, fmt=monitoring.fmt)


# -- one patient -------------------------------------------------------------------------
def visible_patient(s: Session, user: User, patient_id: int) -> Patient:
    """The patient, if the user's role and caseload allow it (404 / 403 otherwise)."""
    try:
        patient = repo.get_patient(s, patient_id)
    except repo.NotFound:
        raise HTTPException(status_code=404, detail="No such patient.") from None
    if not repo.can_see_patient(s, user, patient):
        raise RefusedPatient(user, patient_id, "This patient is not on your caseload.")
    return patient


def patient_view(s: Session, patient: Patient) -> dict[str, Any]:
    """Everything the patient page shows."""
    table = monitoring.session_table(s, [patient.id])
    primary = monitoring.primary_instrument(list(table.columns))
    ruptures = list(repo.ruptures_of(s, [patient.id]))
    columns = monitoring.score_columns(table, primary) if primary else []
    for extra in ("srs", "psq"):
        if extra != primary and any(c.startswith(extra + "_") for c in table.columns):
            columns += monitoring.score_columns(table, extra)
    return {
        "patient": patient,
        "sessions": list(repo.sessions_of(s, patient.id)),
        "table": table.to_dict("records"),
        "columns": columns,
        "answer_labels": monitoring.answer_labels(columns),
        "primary": primary,
        "ruptures": ruptures,
        "alerts": list(repo.alerts_of(s, [patient.id])),
        "has_chart": primary is not None and len(table) > 0,
        "therapist_entries": [e for e in patient.schedule if e.respondent == "therapist"],
    }


@router.get("/patients/{patient_id}", response_class=HTMLResponse)
def patient_page(patient_id: int, ctx: Ctx = Depends(get_ctx)) -> Response:
    """Trajectories (patient and therapist), ruptures, alerts with reasons and guidance."""
    user = ctx.require(*CLINICAL)
    monitoring.refresh_alerts(ctx.db, [patient_id])
    with ctx.db.write() as s:
        patient = visible_patient(s, user, patient_id)
        view = patient_view(s, patient)
        repo.audit(s, user, "read", "patient", patient.id, patient_id=patient.id)
    return ctx.render("patient.html", fmt=monitoring.fmt, **view)


@router.get("/patients/{patient_id}/chart.svg")
def patient_chart(patient_id: int, ctx: Ctx = Depends(get_ctx)) -> Response:
    """The trajectory chart rendered on the server from the Vega-Lite spec."""
    user = ctx.require(*CLINICAL)
    with ctx.db.write() as s:
        patient = visible_patient(s, user, patient_id)
        table = monitoring.session_table(s, [patient.id])
        ruptures = [r.session for r in repo.ruptures_of(s, [patient.id])]
        repo.audit(s, user, "read", "chart", patient.id, patient_id=patient.id)
    primary = monitoring.primary_instrument(list(table.columns))
    if primary is None:
        raise HTTPException(status_code=404, detail="No scores to chart yet.")
    key = (patient.id, tuple(ruptures), int(pd.util.hash_pandas_object(table).sum()))
    cache: dict[Any, str] = ctx.request.app.state.chart_cache
    if key not in cache:
        if len(cache) > 256:
            cache.clear()
        spec = monitoring.trajectory_spec(table, primary, ruptures)
        cache[key] = monitoring.spec_to_svg(spec)
    headers = {"Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'"}
    return Response(cache[key], media_type="image/svg+xml", headers=headers)


# -- sessions and patient links ----------------------------------------------------------
def qr_data_uri(url: str) -> str:
    """A QR code of the URL as an SVG data URI."""
    uri: str = segno.make(url, error="m").svg_data_uri(scale=5)
    return uri


@router.post("/patients/{patient_id}/sessions", response_class=HTMLResponse)
def new_session(
    patient_id: int,
    csrf_token: str = Form(""),
    session_date: str = Form(""),
    ctx: Ctx = Depends(get_ctx),
) -> Response:
    """Create the next session and a single-use patient link (shown once, with a QR code)."""
    ctx.check_csrf(csrf_token)
    user = ctx.require("therapist", "admin")
    try:
        on = date.fromisoformat(session_date) if session_date else None
    except ValueError:
        raise HTTPException(422, "session_date: must be a date as YYYY-MM-DD") from None
    with ctx.db.write() as s:
        patient = visible_patient(s, user, patient_id)
        session = repo.create_session(s, patient, user, on)
        token = repo.issue_link(s, session) if repo.due_entries(s, session, "client") else None
        repo.audit(s, user, "create", "session", session.id, patient_id=patient.id)
        if token:
            repo.audit(s, user, "create", "link", session.id, patient_id=patient.id)
    url = str(ctx.request.base_url).rstrip("/") + f"/f/{token}" if token else None
    return ctx.render(
        "session_created.html",
        patient=patient,
        session=session,
        url=url,
        qr=qr_data_uri(url) if url else None,
        token=token,
    )


@router.post("/sessions/{session_id}/kiosk")
def kiosk(session_id: int, csrf_token: str = Form(""), ctx: Ctx = Depends(get_ctx)) -> Response:
    """Hand this device to the patient: new link, clinician logged out, form opened."""
    ctx.check_csrf(csrf_token)
    user = ctx.require("therapist", "admin")
    with ctx.db.write() as s:
        session = repo.get_session(s, session_id)
        visible_patient(s, user, session.patient_id)
        token = repo.issue_link(s, session, ttl=timedelta(minutes=30), kiosk=True)
        repo.audit(s, user, "create", "kiosk-link", session.id, patient_id=session.patient_id)
    response = RedirectResponse(f"/f/{token}", status_code=303)
    set_session_cookie(ctx.request, response, ctx.signer, SessionData(None, new_nonce()))
    return response


# -- therapist form ----------------------------------------------------------------------
def _therapist_forms(s: Session, session_id: int, user: User) -> tuple[Any, list[Any]]:
    session = repo.get_session(s, session_id)
    visible_patient(s, user, session.patient_id)
    entries = repo.due_entries(s, session, "therapist")
    return session, entries


@router.get("/sessions/{session_id}/therapist-form", response_class=HTMLResponse)
def therapist_form(session_id: int, ctx: Ctx = Depends(get_ctx)) -> Response:
    """The therapist's own rating forms for a session."""
    user = ctx.require("therapist")
    with ctx.db.write() as s:
        session, entries = _therapist_forms(s, session_id, user)
        repo.audit(s, user, "read", "therapist-form", session.id, patient_id=session.patient_id)
    forms = [build_form(e.instrument_id, e.form_id) for e in entries]
    return ctx.render("therapist_form.html", session=session, forms=forms, errors=[], values={})


@router.post("/sessions/{session_id}/therapist-form", response_class=HTMLResponse)
async def submit_therapist_form(session_id: int, request: Request) -> Response:
    """Validate with the scoring core and store the therapist's ratings."""
    from starlette.concurrency import run_in_threadpool

    data = {k: str(v) for k, v in (await request.form()).items()}
    return await run_in_threadpool(_store_therapist_form, request, session_id, data)


def _store_therapist_form(request: Request, session_id: int, data: dict[str, str]) -> Response:
    ctx = get_ctx(request)
    ctx.check_csrf(data.get("csrf_token", ""))
    user = ctx.require("therapist")
    with ctx.db.write() as s:
        session, entries = _therapist_forms(s, session_id, user)
    forms = [build_form(e.instrument_id, e.form_id) for e in entries]
    try:
        scored = [(e, score_answers(e.instrument_id, e.form_id, data)) for e in entries]
    except SubmissionInvalid as exc:
        questions = {q.name: q for f in forms for q in f.questions}
        errors = [i.message(questions) for i in exc.issues]
        return ctx.render(
            "therapist_form.html",
            status_code=422,
            session=session,
            forms=forms,
            errors=errors,
            values=data,
        )
    with ctx.db.write() as s:
        session = repo.get_session(s, session_id)
        for entry, result in scored:
            try:
                repo.add_response(s, session, entry, result.items, result.scores, "therapist", user)
            except repo.Conflict as exc:
                raise HTTPException(409, str(exc)) from None
        repo.audit(s, user, "create", "response", session.id, patient_id=session.patient_id)
    return ctx.redirect(f"/patients/{session.patient_id}")


# -- alerts ------------------------------------------------------------------------------
@router.post("/alerts/{alert_id}")
def update_alert(
    alert_id: int,
    action: str = Form(...),
    note: str = Form(""),
    csrf_token: str = Form(""),
    ctx: Ctx = Depends(get_ctx),
) -> Response:
    """Acknowledge or resolve an alert with a note."""
    ctx.check_csrf(csrf_token)
    user = ctx.require("therapist", "supervisor", "admin")
    status = {"acknowledge": "acknowledged", "resolve": "resolved"}.get(action)
    if status is None:
        raise HTTPException(422, "action: must be 'acknowledge' or 'resolve'")
    with ctx.db.write() as s:
        try:
            alert = repo.get_alert(s, alert_id)
        except repo.NotFound:
            raise HTTPException(404, "No such alert.") from None
        visible_patient(s, user, alert.patient_id)
        try:
            repo.set_alert_status(s, alert, user, status, note)
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None
        repo.audit(s, user, status, "alert", alert.id, patient_id=alert.patient_id)
        patient_id = alert.patient_id
    return ctx.redirect(f"/patients/{patient_id}#alerts")
