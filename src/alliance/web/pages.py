"""Clinician pages: login, caseload, patient view, sessions and links, alerts, therapist form."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from datetime import date, timedelta
from typing import Any
from urllib.parse import urlencode

import pandas as pd
import segno
from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from alliance.dynamics.episodes import SEVERITY_RANK
from alliance.dynamics.status import STATUS_LEVELS
from alliance.instruments import alliance_measures, get_instrument
from alliance.store import reads, repo
from alliance.store.models import Alert, Patient, TherapySession, User, utcnow
from alliance.web import charts, i18n, monitoring
from alliance.web.deps import (
    Ctx,
    RefusedPatient,
    client_address,
    get_ctx,
    set_session_cookie,
)
from alliance.web.forms import SubmissionInvalid, build_form, score_answers
from alliance.web.i18n import N_
from alliance.web.security import (
    NEW_LINK_MAX_AGE,
    SESSION_MAX_AGE,
    SessionData,
    burn_verify_time,
    login_keys,
    new_nonce,
    pseudonym,
    verify_password,
)
from alliance.web.validation import DB_ID_MAX, RowId, text_problem

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
    """Check the password (argon2) unless a login delay is due (see
    :mod:`alliance.web.security`): the attempt is counted before the check, atomically, and
    the check runs outside any transaction; logins and failures are audited."""
    ctx.check_csrf(csrf_token)
    if not 0 < len(username) <= 64 or "\x00" in username:  # no user can have this name
        raise HTTPException(422, "username: must be 1 to 64 characters, without NUL")
    address = client_address(request)
    rules = login_keys(ctx.signer.secret_key, username, address)
    with ctx.db.write() as s:
        wait = repo.claim_login_attempt(s, rules)
    if wait > timedelta(0):
        return _login_delayed(ctx, wait)
    with ctx.db.read() as s:
        user = repo.user_by_name(s, username)
    if user is None:
        burn_verify_time(password)
    ok = user is not None and verify_password(user.password_hash, password)
    where = "from address " + pseudonym(ctx.signer.secret_key, "address", address)
    with ctx.db.write() as s:
        repo.record_login(s, rules, ok)
        if ok and user is not None:
            repo.audit(s, user, "login", "user", user.id, detail=where)
        else:  # the typed username is not kept: it may be a password typed in the wrong field
            known = "" if user is None else user.id
            repo.audit(s, None, "login-failed", "user", known, detail=where, actor="login")
    if not ok or user is None:
        return ctx.render("login.html", status_code=401, error="Unknown user or wrong password.")
    response: Response = RedirectResponse(HOME[user.role], status_code=303)
    session = SessionData(user.id, new_nonce(), user.session_epoch)
    set_session_cookie(request, response, ctx.signer, session)
    return response


def _login_delayed(ctx: Ctx, wait: timedelta) -> Response:
    """429 with ``Retry-After``: the same answer whether or not the user exists."""
    seconds = max(1, math.ceil(wait.total_seconds()))
    message = f"Too many failed logins. Wait {seconds} seconds before trying again."
    limited = ctx.render("login.html", status_code=429, error=message)
    limited.headers["Retry-After"] = str(seconds)
    return limited


@router.post("/logout")
def logout(csrf_token: str = Form(""), ctx: Ctx = Depends(get_ctx)) -> Response:
    """Log out everywhere: every session cookie of the user stops working and every API
    bearer token of the user is revoked."""
    ctx.check_csrf(csrf_token)
    if ctx.user is not None:
        with ctx.db.write() as s:
            repo.end_sessions(s, ctx.user.id)
            revoked = repo.revoke_api_tokens(s, ctx.user.id)
            repo.audit(s, ctx.user, "logout", "user", ctx.user.id, detail=f"{revoked} tokens")
    response = RedirectResponse("/login", status_code=303)
    set_session_cookie(ctx.request, response, ctx.signer, SessionData(None, new_nonce()))
    return response


# -- caseload ----------------------------------------------------------------------------
CASELOAD_PAGE = 50  # patients per caseload page
STATUS_LABELS = {"act": N_("Act"), "watch": N_("Watch"), "steady": N_("Steady")}
KIND_LABELS = {
    "rupture": "Ruptures",
    "self_reported_rupture": "Ruptures the patient reported",
    "below_cutoff": "Below the cutoff",
    "low_early_alliance": "Low early alliance",
    "rating_discrepancy": "Patient and therapist ratings differ",
    "ceiling_break": "Drop from the top of the scale",
    "below_expected": "Below the expected range",
    "reliable_drop": "Reliable drops",
    "unrepaired_rupture": "Ruptures not repaired",
}


def _level(status: str | None) -> str:
    """A stored status as one of :data:`STATUS_LEVELS` (none yet: steady)."""
    return status if status in STATUS_LEVELS else "steady"


def _status_of(p: Patient) -> tuple[str, str, int | None]:
    """The patient's stored status (act, watch, steady), its reason and since when."""
    return _level(p.status), p.status_reason or "No open alerts.", p.status_since


def caseload_rows(s: Session, patients: Sequence[Patient]) -> list[dict[str, Any]]:
    """One row per patient, in the given order: status and reason, trend, latest scores
    (with their scale) and the last session.

    Four queries whatever the number of patients (totals, sessions, therapists, open
    alerts); nothing is computed but the layout: the status is the one the analytics
    stored. The totals come straight out of the stored scores (:mod:`alliance.store.reads`),
    not from the whole session table.
    """
    ids = [p.id for p in patients]
    measures = alliance_measures()
    totals = reads.alliance_totals(s, ids, measures)
    last = reads.last_sessions(s, ids)
    therapists = reads.users_by_id(s, [p.therapist_id for p in patients])
    open_alerts = repo.open_alert_counts(s, ids) if ids else {}
    scales: dict[str, tuple[tuple[float, float], Callable[[Any], str], str]] = {}
    rows = []
    for p in patients:
        series = totals.get(p.id, {})
        primary = next((i for i in measures if i in series and series[i].client), None)
        primary = primary or next((i for i in measures if i in series), None)
        status, reason, since = _status_of(p)
        seen = last.get(p.id)
        row: dict[str, Any] = {
            "patient": p,
            "sessions": seen.count if seen else 0,
            "instrument": primary or "",
            "instrument_name": "",
            "patient_total": None,
            "therapist_total": None,
            "latest": "–",
            "latest_therapist": "–",
            "spark": "",
            "open_alerts": open_alerts.get(p.id, 0),
            "status": status,
            "status_label": STATUS_LABELS[status],
            "status_reason": reason,
            "status_since": since,
            "updating": bool(p.alerts_stale),
            "last_number": seen.number if seen else None,
            "last_date": seen.on if seen else None,
            "therapist": therapists.get(p.therapist_id),
        }
        if primary:
            if primary not in scales:
                name = get_instrument(primary).short_name
                scales[primary] = (
                    charts.score_range(primary),
                    charts.score_formatter(primary),
                    name,
                )
            (lo, hi), show, name = scales[primary]
            own = series[primary]
            row["instrument_name"] = name
            if own.client:
                row["patient_total"] = own.client[-1][1]
                row["latest"] = show(own.client[-1][1])
                row["spark"] = charts.sparkline_svg(own.client, lo, hi, f"{name} total (patient)")
            if own.therapist:
                row["therapist_total"] = own.therapist[-1][1]
                row["latest_therapist"] = show(own.therapist[-1][1])
        rows.append(row)
    return rows


def _filter_choice(value: str, name: str, allowed: dict[str, str]) -> str:
    if value and value not in allowed:
        raise HTTPException(422, f"{name}: must be one of {', '.join(allowed)} (or empty)")
    return value


def _page_of(value: str) -> int:
    if not value:
        return 1
    if not value.isdigit() or int(value) < 1:
        raise HTTPException(422, "page: must be a whole number from 1")
    return int(value)


@router.get("/caseload", response_class=HTMLResponse)
def caseload(
    status: str = "", therapist: str = "", page: str = "", ctx: Ctx = Depends(get_ctx)
) -> Response:
    """The caseload: one status per patient (act, watch, steady) with its reason, the
    trend and latest score, the last session; sorted by status, then last session.
    Supervisors and admins also see each patient's therapist and can filter by therapist
    and status (plain GET parameters). Long caseloads come in pages of
    :data:`CASELOAD_PAGE` patients (the sort and the counts cover them all)."""
    user = ctx.require(*CLINICAL)
    team_view = user.role in ("supervisor", "admin")
    number = _page_of(page)
    with ctx.db.audited() as s:
        # The database counts, filters, orders and cuts the page; only its rows are loaded.
        visible = repo.visible_patients(user)
        counted = reads.caseload_counts(s, visible)
        counts = {level: counted.total(level) for level in STATUS_LEVELS}
        therapists = reads.users_by_id(s, list(counted.by_therapist))
        choices = {
            str(u.id): u.display_name or u.username
            for u in sorted(therapists.values(), key=lambda u: u.display_name or u.username)
        }
        if team_view:
            _filter_choice(status, "status", STATUS_LABELS)
            if therapist and not (therapist.isdigit() and 1 <= int(therapist) <= DB_ID_MAX):
                raise HTTPException(422, "therapist: must be a therapist's id (or empty)")
        else:
            status = therapist = ""
        chosen_therapist = int(therapist) if therapist else None
        matching = counted.total(status, chosen_therapist)
        pages = max(1, -(-matching // CASELOAD_PAGE))
        number = min(number, pages)
        start = (number - 1) * CASELOAD_PAGE
        page_ids = reads.caseload_page(
            s,
            visible,
            status=status,
            therapist_id=chosen_therapist,
            offset=start,
            limit=CASELOAD_PAGE,
        )
        rows = caseload_rows(s, reads.patients_in_order(s, page_ids))
        repo.audit(s, user, "read", "caseload", detail=f"{len(rows)} patients", patients=page_ids)
        query = {k: v for k, v in (("status", status), ("therapist", therapist)) if v}
        return ctx.render(
            "caseload.html",
            rows=rows,
            total=counted.total(),
            matching=matching,
            first=start + 1,
            page=number,
            pages=pages,
            page_url=lambda n: "/caseload?" + urlencode({**query, "page": n}),
            counts=counts,
            labels=STATUS_LABELS,
            team_view=team_view,
            therapists=choices,
            chosen={"status": status, "therapist": therapist},
            fmt=monitoring.fmt,
        )


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


def kind_label(kind: str, title: str = "") -> str:
    """A heading for a kind of alert episode (``signal:...`` kinds use their title)."""
    if kind in KIND_LABELS:
        return KIND_LABELS[kind]
    if kind.startswith("signal:") and title:
        return title
    return kind.replace("_", " ").replace(":", " ").capitalize()


def episode_groups(alerts: list[Alert]) -> list[dict[str, Any]]:
    """Open episodes grouped by kind, newest first in each group; the groups with the most
    severe (then the newest) episode first."""
    groups: dict[str, list[Alert]] = {}
    for alert in sorted(alerts, key=lambda a: (-a.session, a.id)):
        groups.setdefault(alert.kind, []).append(alert)

    def order(item: tuple[str, list[Alert]]) -> tuple[int, int]:
        rank = max(SEVERITY_RANK.get(a.severity, 0) for a in item[1])
        return (-rank, -item[1][0].session)

    return [
        {"kind": kind, "label": kind_label(kind, items[0].title), "episodes": items}
        for kind, items in sorted(groups.items(), key=order)
    ]


def straight_lined(table: pd.DataFrame) -> dict[int, str]:
    """Sessions whose client answers on an alliance measure were all the same (every item
    answered, at least four items): session -> a note such as "4 on every WAI-SR item"."""
    notes: dict[int, str] = {}
    for instrument_id in alliance_measures():
        inst = get_instrument(instrument_id)
        items = list(inst.item_columns)
        if len(items) < 4 or not set(items) <= set(table.columns):
            continue
        answers = table[items].astype(float)
        same = answers.notna().all(axis=1) & (answers.nunique(axis=1) == 1)
        for session, value in zip(table.loc[same, "session"], answers.loc[same, items[0]]):
            note = f"{value:g} on every {inst.short_name} item"
            earlier = notes.get(int(session))
            notes[int(session)] = f"{earlier}; {note}" if earlier else note
    return notes


def rci_threshold(s: Session, alerts: list[Alert], instrument_id: str | None) -> float | None:
    """The reliable-drop threshold behind the chart's band: that of the newest stored
    ``rci_drop`` rupture episode, else the one the clinic's frozen norms of the
    instrument's total give (the threshold the analytics use); None without either."""
    for alert in alerts:  # newest first
        value = alert.threshold
        if alert.method == "rci_drop" and value is not None and value > 0 and math.isfinite(value):
            return float(value)
    if instrument_id is None:
        return None
    from alliance.dynamics import AlertSettings, Norms
    from alliance.dynamics.reliable_change import reliable_drop_threshold

    for row in repo.stored_norms(s):
        if (row.instrument_id, row.score) == (instrument_id, "total"):
            norms = Norms(sd=row.sd, reliability=row.reliability, source=row.source)
            return reliable_drop_threshold(norms, AlertSettings().z)
    return None


def _next_range(
    s: Session, patient_id: int, table: pd.DataFrame, primary: str | None
) -> dict[str, Any] | None:
    """The next session's expected range for the page's sentence, if the clinic has one."""
    if primary is None:
        return None
    ranges = monitoring.expected_ranges(s, patient_id, table, primary)
    upcoming = ranges[ranges["next"]]
    return None if upcoming.empty else {str(k): v for k, v in upcoming.iloc[0].items()}


def patient_view(s: Session, patient: Patient) -> dict[str, Any]:
    """Everything the patient page shows: the status first, then the open alert episodes
    grouped by kind, the closed and resolved ones folded, then the trajectory."""
    table = monitoring.session_table(s, [patient.id])
    primary = monitoring.primary_instrument(list(table.columns))
    ruptures = list(repo.ruptures_of(s, [patient.id]))
    columns = monitoring.score_columns(table, primary) if primary else []
    for extra in ("srs", "psq"):
        if extra != primary and any(c.startswith(extra + "_") for c in table.columns):
            columns += monitoring.score_columns(table, extra)
    alerts = list(repo.alerts_of(s, [patient.id]))
    current = [a for a in alerts if a.state == "open" and a.status != "resolved"]
    folded = [a for a in alerts if not (a.state == "open" and a.status != "resolved")]
    status, reason, since = _status_of(patient)
    cutoff = charts.instrument_cutoff(primary) if primary else None
    sessions = list(repo.sessions_of(s, patient.id))
    return {
        "patient": patient,
        "status": status,
        "status_label": STATUS_LABELS[status],
        "status_reason": reason,
        "status_since": since,
        "updating": bool(patient.alerts_stale),
        "sessions": sessions,
        "answered": repo.answered_sessions(s, [x.id for x in sessions]),
        "table": table.to_dict("records"),
        "columns": columns,
        "answer_labels": monitoring.answer_labels(columns),
        "straight": straight_lined(table),
        "primary": primary,
        "primary_name": get_instrument(primary).short_name if primary else "",
        "therapist_rated": bool(primary) and f"{primary}_therapist_total" in table.columns,
        "cutoff": cutoff,
        "band": rci_threshold(s, alerts, primary) if primary else None,
        "expected_next": _next_range(s, patient.id, table, primary),
        "ruptures": ruptures,
        "method_labels": charts.METHOD_LABELS,
        "alerts": alerts,
        "notes": repo.alert_notes(s, [a.id for a in alerts]),
        "groups": episode_groups(current),
        "open_count": len(current),
        "folded": sorted(folded, key=lambda a: (-(a.closed_session or a.session), a.id)),
        "has_chart": primary is not None and len(table) > 0,
        "therapist_entries": [e for e in patient.schedule if e.respondent == "therapist"],
    }


@router.get("/patients/{patient_id}", response_class=HTMLResponse)
def patient_page(patient_id: RowId, ctx: Ctx = Depends(get_ctx)) -> Response:
    """The patient's status and why, the open alert episodes (grouped, with reasons,
    statistics, guidance and sources), the trajectory and the scores."""
    user = ctx.require(*CLINICAL)
    with ctx.db.audited() as s:
        patient = visible_patient(s, user, patient_id)
        view = patient_view(s, patient)
        repo.audit(s, user, "read", "patient", patient.id, patient_id=patient.id)
        return ctx.render("patient.html", fmt=monitoring.fmt, **view)


@router.get("/patients/{patient_id}/chart.svg")
def patient_chart(patient_id: RowId, ctx: Ctx = Depends(get_ctx)) -> Response:
    """The trajectory chart rendered on the server from the Vega-Lite spec."""
    user = ctx.require(*CLINICAL)
    with ctx.db.audited() as s:
        patient = visible_patient(s, user, patient_id)
        table = monitoring.session_table(s, [patient.id])
        ruptures = [(r.session, r.kind) for r in repo.ruptures_of(s, [patient.id])]
        primary = monitoring.primary_instrument(list(table.columns))
        band = rci_threshold(s, list(repo.alerts_of(s, [patient.id])), primary)
        expected = monitoring.expected_ranges(s, patient.id, table, primary) if primary else None
        repo.audit(s, user, "read", "chart", patient.id, patient_id=patient.id)
    if primary is None:
        raise HTTPException(status_code=404, detail="No scores to chart yet.")
    table_hash = int(pd.util.hash_pandas_object(table).sum())
    ranges_hash = int(pd.util.hash_pandas_object(expected).sum()) if expected is not None else 0
    key = (patient.id, tuple(ruptures), band, table_hash, ranges_hash)
    cache: dict[Any, str] = ctx.request.app.state.chart_cache
    if key not in cache:
        if len(cache) > 256:
            cache.clear()
        spec = charts.trajectory_spec(
            table, primary, ruptures, rci_threshold=band, expected=expected
        )
        cache[key] = charts.spec_to_svg(spec)
    headers = {"Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'"}
    return Response(cache[key], media_type="image/svg+xml", headers=headers)


# -- sessions and patient links ----------------------------------------------------------
def qr_data_uri(url: str) -> str:
    """A QR code of the URL as an SVG data URI."""
    uri: str = segno.make(url, error="m").svg_data_uri(scale=5)
    return uri


NEW_LINK_COOKIE = "alliance_new_link"  # carries a new link to the page that shows it once


@router.post("/patients/{patient_id}/sessions", response_class=HTMLResponse)
def new_session(
    patient_id: RowId,
    csrf_token: str = Form(""),
    session_date: str = Form(""),
    ctx: Ctx = Depends(get_ctx),
) -> Response:
    """Create the next session and a single-use patient link, then redirect (303) to the
    page that shows the link once: reloading that page creates nothing."""
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
    page = f"/sessions/{session.id}/created"
    response = ctx.redirect(page)
    if token:  # the token travels to the one page that shows it, never in a URL
        cookie = ctx.signer.dump_new_link(session.id, token)
        secure = ctx.request.app.state.settings.cookie_secure(ctx.request)
        response.set_cookie(NEW_LINK_COOKIE, cookie, max_age=NEW_LINK_MAX_AGE, path=page,
                            httponly=True, samesite="strict", secure=secure)  # fmt: skip
    return response


@router.get("/sessions/{session_id}/created", response_class=HTMLResponse)
def session_created(session_id: RowId, ctx: Ctx = Depends(get_ctx)) -> Response:
    """The new session with its patient link and QR code, shown once (the cookie that
    carries the link is deleted); a reload shows the session without the link."""
    user = ctx.require("therapist", "admin")
    token = ctx.signer.load_new_link(ctx.request.cookies.get(NEW_LINK_COOKIE), session_id)
    with ctx.db.audited() as s:
        session = visible_session(s, user, session_id)
        patient = session.patient
        scheduled = bool(repo.due_entries(s, session, "client"))
        answered = bool(repo.answered_sessions(s, [session.id]))
        repo.audit(s, user, "read", "session", session.id, patient_id=patient.id)
    url = ctx.request.app.state.settings.link(token, ctx.request) if token else None
    response = ctx.render(
        "session_created.html", patient=patient, session=session, url=url,
        qr=qr_data_uri(url) if url else None, token=token, scheduled=scheduled, answered=answered,
    )  # fmt: skip
    response.delete_cookie(NEW_LINK_COOKIE, path=f"/sessions/{session_id}/created")
    return response


@router.post("/sessions/{session_id}/kiosk")
def kiosk(session_id: RowId, csrf_token: str = Form(""), ctx: Ctx = Depends(get_ctx)) -> Response:
    """Hand this device to the patient: new link, clinician logged out, form opened."""
    ctx.check_csrf(csrf_token)
    user = ctx.require("therapist", "admin")
    with ctx.db.write() as s:
        session = visible_session(s, user, session_id)
        if repo.answered_sessions(s, [session.id]):
            raise HTTPException(409, "session_id: the patient has already answered this session")
        token = repo.issue_link(s, session, ttl=timedelta(minutes=30), kiosk=True)
        repo.audit(s, user, "create", "kiosk-link", session.id, patient_id=session.patient_id)
        # this device's clinician cookie stops working, even if restored; other devices stay
        repo.end_device_session(s, ctx.session.nonce, utcnow() + timedelta(seconds=SESSION_MAX_AGE))
    response = RedirectResponse(f"/f/{token}", status_code=303)
    set_session_cookie(ctx.request, response, ctx.signer, SessionData(None, new_nonce()))
    return response


def visible_session(s: Session, user: User, session_id: int) -> TherapySession:
    """The session, if its patient is on the user's caseload. An unknown session and
    another caseload's session get the same 404, so the answer does not tell whether the
    session exists; the second is still audited as a refusal of that patient."""
    detail = "session_id: no such session on your caseload"
    try:
        session = repo.get_session(s, session_id)
    except repo.NotFound:
        raise HTTPException(404, detail) from None
    try:
        visible_patient(s, user, session.patient_id)
    except RefusedPatient as exc:
        exc.status_code, exc.detail = 404, detail
        raise
    return session


# -- therapist form ----------------------------------------------------------------------
def _therapist_forms(s: Session, session_id: int, user: User) -> tuple[Any, list[Any]]:
    session = visible_session(s, user, session_id)
    entries = repo.due_entries(s, session, "therapist")
    return session, entries


@router.get("/sessions/{session_id}/therapist-form", response_class=HTMLResponse)
def therapist_form(session_id: RowId, ctx: Ctx = Depends(get_ctx)) -> Response:
    """The therapist's own rating forms for a session."""
    user = ctx.require("therapist")
    with ctx.db.audited() as s:
        session, entries = _therapist_forms(s, session_id, user)
        repo.audit(s, user, "read", "therapist-form", session.id, patient_id=session.patient_id)
    forms = [build_form(e.instrument_id, e.form_id) for e in entries]
    return ctx.render("therapist_form.html", session=session, forms=forms, errors=[], values={})


@router.post("/sessions/{session_id}/therapist-form", response_class=HTMLResponse)
async def submit_therapist_form(session_id: RowId, request: Request) -> Response:
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
        lang = i18n.negotiate(request.headers.get("accept-language"))
        errors = [i18n.field_issue_message(lang, i, questions) for i in exc.issues]
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
    # After the commit (a POST): the new ratings' alert episodes and status, before the
    # redirect shows them. A failure leaves the patient stale for the background sweep.
    monitoring.refresh_patients(ctx.db, [session.patient_id])
    return ctx.redirect(f"/patients/{session.patient_id}")


# -- alerts ------------------------------------------------------------------------------
@router.post("/alerts/{alert_id}")
def update_alert(
    alert_id: RowId,
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
    problem = text_problem(note, 2000)
    if problem:
        raise HTTPException(422, f"note: {problem}")
    with ctx.db.write() as s:
        try:
            alert = repo.get_alert(s, alert_id)
        except repo.NotFound:
            raise HTTPException(404, "No such alert.") from None
        visible_patient(s, user, alert.patient_id)
        try:
            repo.set_alert_status(s, alert, user, status, note)
        except repo.Conflict as exc:
            raise HTTPException(409, str(exc)) from None
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None
        repo.audit(s, user, status, "alert", alert.id, patient_id=alert.patient_id)
        patient_id = alert.patient_id
    return ctx.redirect(f"/patients/{patient_id}#alerts")
