"""The patient form behind a single-use link: ``/f/{token}``.

Works without JavaScript, with a keyboard and a screen reader (fieldsets, legends, labels,
an error summary linked to the fields). Every answer is validated by the scoring core; a
rejected submission stores nothing and says which question broke which rule. An
acknowledged submission is committed (and the link consumed) before the thank-you page
(see :mod:`alliance.web.submissions`).
"""

from __future__ import annotations

from functools import cache
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool

from alliance.store import repo
from alliance.store.db import Database
from alliance.web import i18n
from alliance.web.forms import FormView, build_form, form_languages, installed_languages
from alliance.web.i18n import N_
from alliance.web.security import Signer
from alliance.web.submissions import LinkProblem, Stored, SubmissionWriter
from alliance.web.validation import check_language

router = APIRouter(include_in_schema=False)

LINK_PROBLEMS = {
    "unknown": N_("This link is not valid. Please ask your therapist for a new one."),
    "used": N_("This link has already been used. Thank you — your answers were saved."),
    "expired": N_("This link has expired. Please ask your therapist for a new one."),
    "done": N_("The questionnaires of this session were already completed. Thank you."),
}


def _forms_for(db: Database, token: str, language: str | None) -> tuple[int, list[FormView], bool]:
    """Session id, the due client forms and whether the link is a kiosk link."""
    with db.read() as s:
        link = repo.open_link(s, token)
        session = link.session
        entries = repo.due_entries(s, session, "client")
        offered = form_languages((e.instrument_id for e in entries), session.patient.language)
        lang = check_language(language, offered) or session.patient.language
        forms = [build_form(e.instrument_id, e.form_id, lang) for e in entries]
        return session.id, forms, link.kiosk


@cache
def _thank_you(templates: Jinja2Templates, kiosk: bool, language: str) -> str:
    """The thank-you page (the same for every patient of a language, so rendered once)."""
    page = templates.get_template("patient_done.html")
    return page.render(user=None, kiosk=kiosk, language=language)


def _problem(templates: Jinja2Templates, request: Request, reason: str) -> Response:
    status = 404 if reason == "unknown" else 410
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
    """Validate, score and store the answers (group-committed with concurrent submissions);
    the thank-you page is sent only after the commit."""
    data = {k: str(v) for k, v in (await request.form()).items()}
    signer: Signer = request.app.state.signer
    templates: Jinja2Templates = request.app.state.templates
    if not signer.check_csrf(repo.hash_token(token), data.get("csrf_token")):
        message = [N_("The form expired; please answer again.")]
        return await run_in_threadpool(_rerender, request, token, data, message, 403)
    writer: SubmissionWriter = request.app.state.writer
    outcome = await writer.submit(token, data, "link")
    if isinstance(outcome, Stored):
        language = data.get("lang") or "en"  # the writer refused a language not offered
        chrome = language if language in i18n.available() else "en"
        return HTMLResponse(_thank_you(templates, outcome.kiosk, chrome))
    if isinstance(outcome, LinkProblem):
        return _problem(templates, request, outcome.reason)
    return await run_in_threadpool(_rerender, request, token, data, outcome.issues, 422)


def _rerender(
    request: Request, token: str, data: dict[str, str], issues: list[Any], status: int
) -> Response:
    """The form again with the answers kept and every problem named."""
    try:
        _session_id, forms, _kiosk = _forms_for(request.app.state.db, token, data.get("lang"))
    except repo.LinkUnusable as exc:
        return _problem(request.app.state.templates, request, exc.reason)
    questions = {q.name: q for f in forms for q in f.questions}
    language = forms[0].language if forms else "en"
    errors = [
        i if isinstance(i, str) else i18n.field_issue_message(language, i, questions)
        for i in issues
    ]
    return _page(request, token, forms, errors, data, status)
