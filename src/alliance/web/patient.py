"""The patient form behind a single-use link: ``/f/{token}``.

Works without JavaScript, with a keyboard and a screen reader (fieldsets, legends, labels,
an error summary linked to the fields). Every answer is validated by the scoring core; a
rejected submission stores nothing and says which question broke which rule. An
acknowledged submission is committed (and the link consumed) before the thank-you page.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool

from alliance.store import repo
from alliance.store.db import Database
from alliance.web.forms import (
    FormView,
    SubmissionInvalid,
    build_form,
    installed_languages,
    score_answers,
)
from alliance.web.security import Signer

router = APIRouter(include_in_schema=False)

LINK_PROBLEMS = {
    "unknown": "This link is not valid. Please ask your therapist for a new one.",
    "used": "This link has already been used. Thank you — your answers were saved.",
    "expired": "This link has expired. Please ask your therapist for a new one.",
}


def _forms_for(db: Database, token: str, language: str | None) -> tuple[int, list[FormView], bool]:
    """Session id, the due client forms and whether the link is a kiosk link."""
    with db.read() as s:
        link = repo.open_link(s, token)
        session = link.session
        entries = repo.due_entries(s, session, "client")
        lang = language or session.patient.language
        forms = [build_form(e.instrument_id, e.form_id, lang) for e in entries]
        return session.id, forms, link.kiosk


def _problem(templates: Jinja2Templates, request: Request, reason: str) -> Response:
    status = 410 if reason in ("used", "expired") else 404
    return templates.TemplateResponse(
        request,
        "link_problem.html",
        {"message": LINK_PROBLEMS[reason], "user": None},
        status_code=status,
    )


def _languages(forms: list[FormView]) -> list[str]:
    found: set[str] = {"en"}
    for form in forms:
        found.update(installed_languages(form.instrument_id))
    return sorted(found)


def _page(
    request: Request,
    token: str,
    forms: list[FormView],
    errors: list[str],
    values: dict[str, str],
    status: int = 200,
) -> Response:
    signer: Signer = request.app.state.signer
    templates: Jinja2Templates = request.app.state.templates
    language = forms[0].language if forms else "en"
    return templates.TemplateResponse(
        request,
        "patient_form.html",
        {
            "user": None,
            "token": token,
            "forms": forms,
            "errors": errors,
            "values": values,
            "csrf": signer.csrf_token(repo.hash_token(token)),
            "language": language,
            "languages": _languages(forms),
            "all_official": all(f.official for f in forms),
        },
        status_code=status,
    )


@router.get("/f/{token}", response_class=HTMLResponse)
def patient_form(request: Request, token: str, lang: str | None = None) -> Response:
    """The session's questionnaires, in the requested or the patient's language."""
    try:
        _session_id, forms, _kiosk = _forms_for(request.app.state.db, token, lang)
    except repo.LinkUnusable as exc:
        return _problem(request.app.state.templates, request, exc.reason)
    return _page(request, token, forms, [], {})


@router.post("/f/{token}", response_class=HTMLResponse)
async def submit_patient_form(request: Request, token: str) -> Response:
    """Validate, score and store the answers; the link is consumed in the same transaction."""
    data = {k: str(v) for k, v in (await request.form()).items()}
    return await run_in_threadpool(_submit, request, token, data)


def _submit(request: Request, token: str, data: dict[str, str]) -> Response:
    db: Database = request.app.state.db
    signer: Signer = request.app.state.signer
    templates: Jinja2Templates = request.app.state.templates
    lang = data.get("lang") or None
    try:
        _session_id, forms, kiosk = _forms_for(db, token, lang)
    except repo.LinkUnusable as exc:
        return _problem(templates, request, exc.reason)
    if not signer.check_csrf(repo.hash_token(token), data.get("csrf_token")):
        return _page(request, token, forms, ["The form expired; please answer again."], data, 403)
    try:
        scored = [score_answers(f.instrument_id, f.form_id, data) for f in forms]
    except SubmissionInvalid as exc:
        questions = {q.name: q for f in forms for q in f.questions}
        errors = [issue.message(questions) for issue in exc.issues]
        return _page(request, token, forms, errors, data, 422)
    try:
        _store(db, token, forms, scored)
    except repo.LinkUnusable as exc:
        return _problem(templates, request, exc.reason)
    return templates.TemplateResponse(
        request, "patient_done.html", {"user": None, "kiosk": kiosk}, status_code=200
    )


def _store(db: Database, token: str, forms: list[FormView], scored: list) -> None:  # type: ignore[type-arg]
    """One transaction: consume the link, store every form, audit; committed on return."""
    with db.write() as s:
        link = repo.open_link(s, token)
        repo.consume_link(s, link)
        session = link.session
        entries = {e.instrument_id: e for e in repo.due_entries(s, session, "client")}
        for form, result in zip(forms, scored, strict=True):
            entry = entries[form.instrument_id]
            repo.add_response(
                s, session, entry, result.items, result.scores, "kiosk" if link.kiosk else "link",
                language=form.language,
            )
        repo.audit(
            s, None, "submit", "response", session.id, patient_id=session.patient_id,
            actor="patient-link",
        )
