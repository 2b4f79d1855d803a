"""FHIR R4 endpoints under ``/fhir``: the clinic's forms as Questionnaires, its stored
answers as QuestionnaireResponses (read, searched and created) and its scores as
Observations, for EHRs, form fillers (LHC-Forms, SDC apps) and research pipelines.

The conversions are :mod:`alliance.fhir`'s; this router adds the clinic's rules:

- **Who.** ``/fhir/metadata`` (the CapabilityStatement) is public, as FHIR servers allow.
  Everything else needs a bearer token (the JSON API's). Questionnaires and the score code
  system hold no patient data but may carry the official wording of a licensed instrument
  from the clinic's text pack, so they are not published to anonymous callers. Admins,
  supervisors and therapists see the patients the JSON API shows them (a therapist their
  own caseload), identified by the patient's code. A researcher sees every stored form,
  de-identified the way the clinic's export is: the subject is the patient's research id
  (system ``.../NamingSystem/research-id``), no patient code and no calendar date (no
  ``authored``, no ``effectiveDateTime``; a ``date`` search is refused), only the session
  number. Only therapists (own caseload) and admins create.
- **Audit.** Every read and search of responses or scores is audited with the patients
  it showed; a patient outside the caller's caseload is refused (403) and audited as a
  refusal of that patient; every creation is audited in its own write transaction.
- **Creation.** A QuestionnaireResponse is checked by the adapter, then validated and
  scored by the clinic's own rules (:func:`alliance.web.forms.score_answers`, as the
  therapist form): a refusal names each linkId and rule, never the value, and stores
  nothing. It belongs to the session its session-number extension names (which must
  exist), else to a new session dated ``authored`` (else today), never before the
  patient's latest session. ``authored`` is kept as the session's date. 201 means the form
  is committed; the patient's alerts are refreshed after the commit.
- **Errors.** Every refusal on a ``/fhir`` path, the app's own (401, 403, 404, 405, 413,
  422, 503, 500) included, is an OperationOutcome in ``application/fhir+json``
  (:func:`install`); 400 for unreadable input or search parameters, 422 for a resource
  that breaks a rule.
- Not in the OpenAPI schema (``/api/openapi.json`` documents the JSON API's one error
  model); ``/fhir/metadata`` describes this API. Searches are not paged.
"""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

import alliance
from alliance.fhir import FHIR_VERSION, FhirInputError, Issue
from alliance.fhir._common import (
    PATIENT_CODE_SYSTEM,
    SCORE_SYSTEM,
    SESSION_EXTENSION,
    validated,
)
from alliance.fhir.exchange import operation_outcome
from alliance.fhir.observation import bundle, observations, score_code_system
from alliance.fhir.questionnaire import (
    all_questionnaires,
    form_of,
    questionnaire,
    questionnaire_id,
)
from alliance.fhir.response import (
    FormResponse,
    authored_date,
    read_questionnaire_response,
    to_questionnaire_response,
)
from alliance.fhir.stored import form_response
from alliance.instruments import get_instrument, list_instruments
from alliance.store import repo
from alliance.store.db import Database, DatabaseBusy
from alliance.store.models import Patient, TherapySession, User
from alliance.web import monitoring
from alliance.web.deps import Forbidden, RefusedPatient, bearer_user, require_role
from alliance.web.forms import (
    Scored,
    SubmissionInvalid,
    form_languages,
    language_issue,
    score_answers,
)
from alliance.web.validation import DB_ID_MAX, text_problem

router = APIRouter(prefix="/fhir", include_in_schema=False)
FHIR_JSON = "application/fhir+json"
ACCEPTED_BODIES = (FHIR_JSON, "application/json")
FORMATS = ("json", "application/json", FHIR_JSON)  # the values of ``_format`` we serve
READERS = ("admin", "supervisor", "therapist", "researcher")
WRITERS = ("therapist", "admin")
CAPABILITY_DATE = "2026-12-05"  # when this CapabilityStatement last changed
# FHIR issue types of the HTTP refusals that carry no issues of their own.
ISSUE_TYPES = {
    400: "invalid", 401: "login", 403: "forbidden", 404: "not-found", 405: "not-supported",
    409: "duplicate", 413: "too-long", 415: "not-supported", 422: "invalid", 503: "transient",
}  # fmt: skip
LANGUAGE = re.compile(r"[A-Za-z]{2,8}(-[A-Za-z0-9]{1,8}){0,3}")
DATE_PARAM = re.compile(r"(eq|ge|le|gt|lt)?([0-9]{4}-[0-9]{2}-[0-9]{2})")
PARAM_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_:.\-]{0,39}")
ROW_ID = re.compile(r"[1-9][0-9]{0,9}")
OBSERVATION_ID = re.compile(r"([1-9][0-9]{0,9})-([A-Za-z0-9.\-]{1,40})")
SEARCH_PARAMS = {
    "QuestionnaireResponse": ("patient", "date", "authored", "questionnaire"),
    "Observation": ("patient", "date", "code"),
}


class FhirResponse(JSONResponse):
    """A FHIR resource as ``application/fhir+json``."""

    media_type = FHIR_JSON


class FhirError(HTTPException):
    """A refusal with its FHIR issues (answered as an OperationOutcome)."""

    def __init__(
        self, status: int, issues: Sequence[Issue], headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(status, [str(i) for i in issues], headers)
        self.issues = list(issues)


def is_fhir_path(path: str) -> bool:
    """Whether a request path is one of this router's."""
    return path == "/fhir" or path.startswith("/fhir/")


def outcome_response(
    status: int, issues: Sequence[Issue], headers: Mapping[str, str] | None = None
) -> FhirResponse:
    """An OperationOutcome naming each issue, with the HTTP status."""
    return FhirResponse(validated(operation_outcome(issues)), status_code=status, headers=headers)


def _db(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


def _base(request: Request) -> str:
    """The server's FHIR base URL (on the public URL when the clinic has one)."""
    public = request.app.state.settings.public_url
    return f"{public or str(request.base_url).rstrip('/')}/fhir"


# -- errors ------------------------------------------------------------------------------
Handler = Callable[[Request, Any], Response | Awaitable[Response]]


def install(app: FastAPI) -> None:
    """Answer every refusal on a ``/fhir`` path as an OperationOutcome; other paths keep
    the app's handlers. Call after the app's own handlers are added: a refusal of a patient
    still goes through them first, since they audit it."""
    for kind in (StarletteHTTPException, HTTPException, RequestValidationError, DatabaseBusy):
        app.add_exception_handler(kind, _fhir_first(app.exception_handlers[kind]))


def _fhir_first(original: Handler) -> Handler:
    async def handle(request: Request, exc: Exception) -> Response:
        if is_fhir_path(request.url.path) and not isinstance(exc, Forbidden):
            return error_response(request, exc)
        answer = original(request, exc)  # a refusal of a patient is audited here
        answer = await answer if inspect.isawaitable(answer) else answer
        return error_response(request, exc) if is_fhir_path(request.url.path) else answer

    return handle


def error_response(request: Request, exc: Exception) -> FhirResponse:
    """The OperationOutcome of an exception raised while serving a ``/fhir`` path."""
    if isinstance(exc, FhirError):
        return outcome_response(exc.status_code, exc.issues, exc.headers)
    if isinstance(exc, StarletteHTTPException):
        issues = _detail_issues(request, exc.status_code, exc.detail)
        return outcome_response(exc.status_code, issues, exc.headers)
    if isinstance(exc, RequestValidationError):
        issues = [
            Issue(".".join(str(p) for p in e["loc"]) or "(request)", e["msg"]) for e in exc.errors()
        ]
        return outcome_response(422, issues)
    busy = [Issue("(request)", str(exc), "transient")]  # DatabaseBusy
    return outcome_response(503, busy, {"Retry-After": "2"})


def _detail_issues(request: Request, status: int, detail: Any) -> list[Issue]:
    """The app's ``detail`` (a "field: rule" sentence, or a list of field and rule
    entries) as issues."""
    code = ISSUE_TYPES.get(status, "processing")
    if status == 404 and detail == "Not Found":
        return [Issue("(request)", "no such resource type or operation (see /fhir/metadata)", code)]
    if status == 405:
        rule = f"{request.method} is not supported here (see /fhir/metadata)"
        return [Issue("(request)", rule, code)]
    if isinstance(detail, list):
        return [
            Issue(str(d.get("field", "(request)")), str(d.get("rule", d)), code) for d in detail
        ]
    where, sep, rule = str(detail).partition(": ")
    if sep and len(where) <= 40:
        return [Issue(where, rule, code)]
    return [Issue("(request)", str(detail), code)]


def too_large(limit: int) -> FhirResponse:
    """The body-size limit's 413 (:class:`alliance.web.app.SecurityMiddleware`)."""
    return outcome_response(413, [Issue("(body)", f"must be at most {limit} bytes", "too-long")])


def internal_error(detail: str) -> FhirResponse:
    """The 500 of an unexpected error (its reference only; the error is logged)."""
    return outcome_response(500, [Issue("(request)", detail, "exception")])


# -- parameters --------------------------------------------------------------------------
def _refuse(location: str, rule: str, code: str = "invalid", status: int = 400) -> FhirError:
    return FhirError(status, [Issue(location, rule, code)])


def _shown(name: str) -> str:
    return name if PARAM_NAME.fullmatch(name) else "(parameter)"


def _params(request: Request, allowed: Sequence[str]) -> list[tuple[str, str]]:
    """The query parameters, each known (else 400 naming it); ``_format`` is checked."""
    items = request.query_params.multi_items()
    for name, value in items:
        if name not in (*allowed, "_format"):
            supported = ", ".join((*allowed, "_format"))
            rule = f"is not a parameter of this interaction (supported: {supported})"
            raise _refuse(_shown(name), rule, "not-supported")
        if name == "_format" and value not in FORMATS:
            raise _refuse("_format", f"must be one of {', '.join(FORMATS)}", "not-supported")
    return [(n, v) for n, v in items if n != "_format"]


@dataclass
class Search:
    """A search's conditions (None: no condition; every repeat narrows, a comma within one
    value means either)."""

    patients: set[str] | None = None
    forms: set[tuple[str, str]] | None = None
    codes: set[str] | None = None
    on: list[tuple[str, date]] = field(default_factory=list)


def _search(request: Request, resource_type: str, user: User) -> Search:
    """The search parameters of a search of ``resource_type`` (400 naming a bad one)."""
    search = Search()
    for name, value in _params(request, SEARCH_PARAMS[resource_type]):
        if name in ("date", "authored"):
            search.on.append(_date(name, value, user))
        elif name == "patient":
            search.patients = _narrowed(search.patients, _patients(value))
        elif name == "questionnaire":
            search.forms = _narrowed(search.forms, _forms(value))
        else:
            search.codes = _narrowed(search.codes, _codes(value))
    return search


def _narrowed(current: set[Any] | None, values: set[Any]) -> set[Any]:
    return values if current is None else current & values


def _date(name: str, value: str, user: User) -> tuple[str, date]:
    if user.role == "researcher":
        rule = "is not available on de-identified data (calendar dates are not released)"
        raise _refuse(name, rule, "not-supported")
    match = DATE_PARAM.fullmatch(value)
    try:
        if match is None:
            raise ValueError
        return match.group(1) or "eq", date.fromisoformat(match.group(2))
    except ValueError:
        raise _refuse(
            name, "must be a date YYYY-MM-DD after an optional eq, ge, le, gt or lt"
        ) from None


def _patients(value: str) -> set[str]:
    """Patient codes (or research ids) from ``CODE``, ``Patient/CODE``, comma-separated."""
    found = set()
    for part in value.split(","):
        code = part.strip().removeprefix("Patient/")
        problem = "must name a patient" if not code else text_problem(code, 64)
        if problem:
            raise _refuse("patient", problem)
        found.add(code)
    return found


def _forms(value: str) -> set[tuple[str, str]]:
    found = set()
    for part in value.split(","):
        try:
            inst, form = form_of(part.strip())
        except KeyError:
            rule = "names no Questionnaire of this server (see GET /fhir/Questionnaire)"
            raise _refuse("questionnaire", rule, "not-found") from None
        found.add((inst.id, form.id))
    return found


def _score_columns() -> dict[str, str]:
    """Score code -> its instrument, for every score of every instrument."""
    return {f"{i.id}_{s.id}": i.id for i in list_instruments() for s in i.scores}


def _codes(value: str) -> set[str]:
    known = _score_columns()
    found = set()
    for part in value.split(","):
        system, sep, code = part.strip().rpartition("|")
        if (sep and system not in ("", SCORE_SYSTEM)) or code not in known:
            rule = f"must be a score code of {SCORE_SYSTEM} (see GET /fhir/CodeSystem/scores)"
            raise _refuse("code", rule, "not-found")
        found.add(code)
    return found


# -- stored forms as resources -----------------------------------------------------------
def _as_resource(user: User, found: repo.StoredResponse) -> FormResponse:
    row, session, patient = found
    return form_response(row, session.number, session.date, patient, user.role == "researcher")


def _stored(s: Any, user: User, resource_id: str, resource_type: str) -> repo.StoredResponse:
    """The stored form a resource id names, if the user may see it (404 / 403)."""
    missing = _refuse(f"{resource_type}.id", f"no such {resource_type}", "not-found", 404)
    if not ROW_ID.fullmatch(resource_id) or int(resource_id) > DB_ID_MAX:
        raise missing
    found = repo.response_in_context(s, int(resource_id))
    if found is None:
        raise missing
    patient = found[2]
    if user.role != "researcher" and not repo.can_see_patient(s, user, patient):
        rule = "its patient is not on your caseload"
        raise RefusedPatient(user, patient.id, f"{resource_type}: {rule}")
    return found


def _searched(s: Any, user: User, search: Search) -> list[repo.StoredResponse]:
    deidentified = user.role == "researcher"
    patients = None if search.patients is None else sorted(search.patients)
    instruments = (
        None if search.codes is None else sorted({_score_columns()[c] for c in search.codes})
    )
    wanted = repo.ResponseQuery(
        patient_codes=None if deidentified else patients,
        research_ids=patients if deidentified else None,
        forms=None if search.forms is None else sorted(search.forms),
        instrument_ids=instruments,
        on=search.on,
    )
    return repo.find_responses(s, None if deidentified else user, wanted)


def _audit_search(
    s: Any, user: User, kind: str, found: Sequence[repo.StoredResponse], n: int
) -> None:
    shown = sorted({patient.id for _, _, patient in found})
    detail = f"fhir {kind} search: {n} resources"
    repo.audit(s, user, "read", "fhir-search", kind, detail=detail, patients=shown)


def _searchset(request: Request, resources: list[dict[str, Any]]) -> FhirResponse:
    return FhirResponse(bundle(resources, "searchset", base=_base(request)))


# -- metadata, questionnaires, code system -----------------------------------------------
@router.get("/metadata")
def metadata(request: Request) -> FhirResponse:
    """The CapabilityStatement of this server (public)."""
    _params(request, ("mode",))
    return FhirResponse(capability_statement(_base(request)))


def capability_statement(base: str) -> dict[str, Any]:
    """What this server does: the resources, interactions and search parameters."""
    security = {
        "cors": False,
        "service": [{"text": "Bearer token"}],
        "description": (
            "Send an API token of the clinic as 'Authorization: Bearer <token>' (admins issue "
            "tokens). /fhir/metadata needs none. Admins, supervisors and therapists see the "
            "patients of their role (a therapist their own caseload), by patient code; "
            "researchers see de-identified resources (research ids, no dates). Therapists "
            "(own caseload) and admins create QuestionnaireResponses. Every read is audited."
        ),
    }
    rest = {
        "mode": "server",
        "documentation": "The clinic's forms, answers and scores.",
        "security": security,
        "resource": [_questionnaire_capability(), _response_capability(),
                     _observation_capability(), _codesystem_capability()],
    }  # fmt: skip
    return validated(
        {
            "resourceType": "CapabilityStatement",
            "status": "active",
            "date": CAPABILITY_DATE,
            "publisher": "alliance",
            "kind": "instance",
            "software": {"name": "alliance", "version": alliance.__version__},
            "implementation": {"description": "alliance clinic FHIR endpoint", "url": base},
            "fhirVersion": FHIR_VERSION,
            "format": [FHIR_JSON],
            "rest": [rest],
        }
    )


def _param(name: str, kind: str, text: str, definition: str = "") -> dict[str, Any]:
    out = {"name": name, "type": kind, "documentation": text}
    if definition:
        out["definition"] = f"http://hl7.org/fhir/SearchParameter/{definition}"
    return out


def _interactions(*codes: str) -> list[dict[str, str]]:
    return [{"code": code} for code in codes]


def _questionnaire_capability() -> dict[str, Any]:
    return {
        "type": "Questionnaire",
        "interaction": _interactions("read", "search-type"),
        "searchParam": [
            _param("url", "uri", "the canonical URL (|version allowed)", "conformance-url"),
            _param("language", "token", "the language of the item texts (a text pack)"),
        ],
    }


PATIENT_DOC = "the patient's code; for researchers, the research id (comma: either)"
DATE_DOC = "the session date, YYYY-MM-DD after eq, ge, le, gt or lt (not for researchers)"


def _response_capability() -> dict[str, Any]:
    return {
        "type": "QuestionnaireResponse",
        "interaction": _interactions("create", "read", "search-type"),
        "versioning": "no-version",
        "searchParam": [
            _param("patient", "reference", PATIENT_DOC, "QuestionnaireResponse-patient"),
            _param("date", "date", DATE_DOC),
            _param("authored", "date", DATE_DOC, "QuestionnaireResponse-authored"),
            _param("questionnaire", "reference", "the Questionnaire's id or canonical URL",
                   "QuestionnaireResponse-questionnaire"),
        ],
    }  # fmt: skip


def _observation_capability() -> dict[str, Any]:
    return {
        "type": "Observation",
        "interaction": _interactions("read", "search-type"),
        "searchParam": [
            _param("patient", "reference", PATIENT_DOC, "clinical-patient"),
            _param("date", "date", DATE_DOC, "clinical-date"),
            _param("code", "token", f"a score code of {SCORE_SYSTEM}", "clinical-code"),
        ],
    }


def _codesystem_capability() -> dict[str, Any]:
    return {"type": "CodeSystem", "interaction": _interactions("read")}


@router.get("/Questionnaire")
def search_questionnaires(request: Request, user: User = Depends(bearer_user)) -> FhirResponse:
    """Every form of every instrument (``url`` narrows; ``language`` picks the wording)."""
    params = _params(request, ("url", "language"))
    language = _language_of(params)
    found = all_questionnaires(language)
    for name, value in params:
        if name == "url":
            url, _, version = value.partition("|")
            found = [q for q in found if q["url"] == url and version in ("", q["version"])]
    return _searchset(request, found)


def _language_of(params: list[tuple[str, str]]) -> str:
    value = next((v for n, v in params if n == "language"), "en")
    if not LANGUAGE.fullmatch(value):
        raise _refuse("language", "must be a language tag such as en or de-CH")
    return value


@router.get("/Questionnaire/{resource_id}")
def read_questionnaire(
    resource_id: str, request: Request, user: User = Depends(bearer_user)
) -> FhirResponse:
    """One form's Questionnaire (404 when there is none)."""
    language = _language_of(_params(request, ("language",)))
    try:
        inst, form = form_of(resource_id)
    except KeyError:
        raise _refuse("Questionnaire.id", "no such Questionnaire", "not-found", 404) from None
    if questionnaire_id(inst.id, form.id) != resource_id:
        raise _refuse("Questionnaire.id", "no such Questionnaire", "not-found", 404)
    return FhirResponse(questionnaire(inst.id, form.id, language))


@router.get("/CodeSystem/{resource_id}")
def read_code_system(
    resource_id: str, request: Request, user: User = Depends(bearer_user)
) -> FhirResponse:
    """The code system of our scores (``scores``, the only one)."""
    _params(request, ())
    if resource_id != "scores":
        raise _refuse("CodeSystem.id", "no such CodeSystem (only scores)", "not-found", 404)
    return FhirResponse(score_code_system())


# -- QuestionnaireResponse ---------------------------------------------------------------
@router.get("/QuestionnaireResponse/{resource_id}")
def read_response(
    resource_id: str, request: Request, user: User = Depends(bearer_user)
) -> FhirResponse:
    """One stored form (audited)."""
    require_role(user, READERS)
    _params(request, ())
    with _db(request).audited() as s:
        found = _stored(s, user, resource_id, "QuestionnaireResponse")
        resource = to_questionnaire_response(_as_resource(user, found))
        row, _, patient = found
        repo.audit(s, user, "read", "response", row.id, patient_id=patient.id, detail="fhir")
    return FhirResponse(resource)


@router.get("/QuestionnaireResponse")
def search_responses(request: Request, user: User = Depends(bearer_user)) -> FhirResponse:
    """Stored forms by patient, session date and Questionnaire (audited)."""
    return _run_search(
        request,
        user,
        "QuestionnaireResponse",
        lambda found, _: [to_questionnaire_response(_as_resource(user, found))],
    )


@router.post("/QuestionnaireResponse", status_code=201)
async def create_response(request: Request, user: User = Depends(bearer_user)) -> FhirResponse:
    """Store one completed form (see the module docstring for the rules); 201 with the
    stored resource and its Location once it is committed."""
    require_role(user, WRITERS)
    media = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media not in ACCEPTED_BODIES:
        rule = f"must be {' or '.join(ACCEPTED_BODIES)}"
        raise _refuse("Content-Type", rule, "not-supported", 415)
    _params(request, ())
    submitted = _read_body(await request.body())
    resource, row_id = await run_in_threadpool(_create, request, user, submitted)
    headers = {"Location": f"/fhir/QuestionnaireResponse/{row_id}"}
    return FhirResponse(resource, status_code=201, headers=headers)


def _read_body(body: bytes) -> FormResponse:
    """The submitted form, checked by the adapter (400 unreadable, 422 breaking a rule)."""
    try:
        parsed = json.loads(body)
    except (ValueError, RecursionError):  # UnicodeDecodeError and JSONDecodeError included
        raise _refuse("(body)", "not valid JSON", "structure") from None
    try:
        submitted = read_questionnaire_response(parsed)
    except FhirInputError as exc:
        status = 400 if any(i.code == "structure" for i in exc.issues) else 422
        raise FhirError(status, exc.issues) from None
    _check_subject(submitted)
    return submitted


def _check_subject(submitted: FormResponse) -> None:
    where = "QuestionnaireResponse.subject"
    if submitted.subject is None:
        rule = f"required: the patient's code (an identifier of system {PATIENT_CODE_SYSTEM})"
        raise _refuse(where, rule, "required", 422)
    if submitted.deidentified:
        rule = f"must be a patient code of system {PATIENT_CODE_SYSTEM}, not a research id"
        raise _refuse(f"{where}.identifier.system", rule, "value", 422)
    problem = text_problem(submitted.subject, 64)
    if problem:
        raise _refuse(where, f"the patient code {problem}", "value", 422)


@dataclass(frozen=True)
class Target:
    """Where a new form goes: the patient, and the existing session or a new one's date."""

    patient_id: int
    session_id: int | None
    day: date | None


def _create(request: Request, user: User, submitted: FormResponse) -> tuple[dict[str, Any], int]:
    """Check, score and store a submitted form; then refresh the patient's alerts."""
    db = _db(request)
    with db.read() as s:
        target = _target(s, user, submitted)
    scored = _scored(submitted)
    inst = get_instrument(submitted.instrument_id)
    spec = repo.ScheduleSpec(
        inst.id, submitted.form_id, inst.get_form(submitted.form_id).respondent
    )
    with db.write() as s:
        patient = repo.lock_patient(s, target.patient_id)
        if target.session_id is None:
            session = repo.create_session(s, patient, user, target.day)
        else:
            session = repo.get_session(s, target.session_id)
        try:
            row = repo.add_response(
                s, session, spec, scored.items, scored.scores, "fhir", user, submitted.language
            )
        except repo.Conflict as exc:
            where = "QuestionnaireResponse.questionnaire"
            raise _refuse(where, str(exc).partition(": ")[2], "duplicate", 409) from None
        repo.audit(s, user, "create", "response", row.id, patient_id=patient.id, detail="fhir")
        resource = to_questionnaire_response(
            form_response(row, session.number, session.date, patient)
        )
    monitoring.refresh_patients(db, [target.patient_id])
    return resource, row.id


def _target(s: Any, user: User, submitted: FormResponse) -> Target:
    """The patient (404 / 403, audited) and session of a submitted form (422 naming the
    rule: a session that does not exist, a date off the session's or before the last)."""
    assert submitted.subject is not None
    patient = repo.patient_by_code(s, submitted.subject)
    if patient is None:
        raise _refuse(
            "QuestionnaireResponse.subject", "names no patient of this clinic", "not-found", 404
        )
    if not repo.can_see_patient(s, user, patient):
        raise RefusedPatient(
            user, patient.id, "QuestionnaireResponse.subject: not on your caseload"
        )
    _check_language(submitted, patient)
    day = _authored_day(submitted)
    if submitted.session is not None:
        return Target(patient.id, _named_session(s, patient, submitted.session, day).id, day)
    latest = repo.latest_session(s, patient.id)
    when = day or datetime.now(UTC).date()
    if latest is not None and when < latest.date:
        rule = (
            "must not be before the patient's latest session (name an earlier session with "
            f"the extension {SESSION_EXTENSION})"
        )
        raise _refuse("QuestionnaireResponse.authored", rule, "business-rule", 422)
    return Target(patient.id, None, when)


def _named_session(s: Any, patient: Patient, number: int, day: date | None) -> TherapySession:
    session = repo.session_by_number(s, patient.id, number) if 1 <= number <= DB_ID_MAX else None
    where = f"QuestionnaireResponse.extension('{SESSION_EXTENSION}')"
    if session is None:
        rule = "names no session of this patient (leave it out to add a new session)"
        raise _refuse(where, rule, "not-found", 422)
    if day is not None and day != session.date:
        rule = "must fall on the date of the session the session-number extension names"
        raise _refuse("QuestionnaireResponse.authored", rule, "business-rule", 422)
    return session


def _authored_day(submitted: FormResponse) -> date | None:
    """The calendar day of ``authored`` (a full date or a date-time), not in the future."""
    where = "QuestionnaireResponse.authored"
    try:
        day = authored_date(submitted)
    except ValueError:
        raise _refuse(
            where, "must be a full date YYYY-MM-DD or a date-time", "value", 422
        ) from None
    if day is not None and day > (datetime.now(UTC) + timedelta(hours=14)).date():
        raise _refuse(where, "must not be in the future", "value", 422)
    return day


def _check_language(submitted: FormResponse, patient: Patient) -> None:
    offered = form_languages([submitted.instrument_id], patient.language)
    wrong = language_issue(submitted.language, offered)
    if wrong:
        raise _refuse("QuestionnaireResponse.language", wrong.rule, "value", 422)


def _scored(submitted: FormResponse) -> Scored:
    """The clinic's validation and scoring of the answers (422 naming each linkId)."""
    data = {c: np.format_float_positional(v, trim="-") for c, v in submitted.answered.items()}
    try:
        return score_answers(submitted.instrument_id, submitted.form_id, data)
    except SubmissionInvalid as exc:
        issues = [
            Issue(
                f"QuestionnaireResponse.item.where(linkId = '{i.field}')",
                f"{i.field}: {i.rule}",
                "required" if i.rule.startswith("not answered") else "value",
            )
            for i in exc.issues
        ]
        raise FhirError(422, issues) from None


# -- Observation -------------------------------------------------------------------------
@router.get("/Observation/{resource_id}")
def read_observation(
    resource_id: str, request: Request, user: User = Depends(bearer_user)
) -> FhirResponse:
    """One score of a stored form (id ``<response id>-<score id>``; audited)."""
    require_role(user, READERS)
    _params(request, ())
    match = OBSERVATION_ID.fullmatch(resource_id)
    with _db(request).audited() as s:
        found = _stored(s, user, match.group(1) if match else "", "Observation")
        row, _, patient = found
        wanted = [
            o for o in observations(_as_resource(user, found), row.scores) if o["id"] == resource_id
        ]
        if not wanted:
            raise _refuse("Observation.id", "no such Observation", "not-found", 404)
        repo.audit(
            s, user, "read", "observation", resource_id, patient_id=patient.id, detail="fhir"
        )
    return FhirResponse(wanted[0])


@router.get("/Observation")
def search_observations(request: Request, user: User = Depends(bearer_user)) -> FhirResponse:
    """Scores of stored forms by patient, session date and score code (audited)."""
    return _run_search(
        request,
        user,
        "Observation",
        lambda found, search: [
            o
            for o in observations(_as_resource(user, found), found[0].scores)
            if search.codes is None or o["code"]["coding"][0]["code"] in search.codes
        ],
    )


def _run_search(
    request: Request,
    user: User,
    resource_type: str,
    resources_of: Callable[[Any, Any], list[dict[str, Any]]],
) -> FhirResponse:
    """A search of either resource type: the caller's visible stored forms that match,
    each turned into its resources by ``resources_of(found, search)``, audited."""
    require_role(user, READERS)
    search = _search(request, resource_type, user)
    with _db(request).audited() as s:
        found = _searched(s, user, search)
        resources = [r for f in found for r in resources_of(f, search)]
        _audit_search(s, user, resource_type, found, len(resources))
    return _searchset(request, resources)
