"""The FHIR endpoints through the real app, on SQLite and PostgreSQL: the CapabilityStatement,
Questionnaires, QuestionnaireResponses created (validated and scored by the clinic's rules,
stored, read back exactly), searched and read by role and caseload, scores as Observations,
de-identified resources for researchers, audit of every read, and every refusal an
OperationOutcome that names the problem and changes nothing."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pandas as pd
import pytest
from sqlalchemy import func, select
from webclinic import Client, Clinic

from alliance import fhir, score
from alliance.fhir._common import (
    FHIR_VERSION,
    KEY_STATUS_SYSTEM,
    PATIENT_CODE_SYSTEM,
    RESEARCH_ID_SYSTEM,
    SCORE_SYSTEM,
    SESSION_EXTENSION,
    structure_issues,
)
from alliance.fhir.observation import score_code_system
from alliance.fhir.questionnaire import questionnaire_id, questionnaire_url
from alliance.fhir.response import (
    FormResponse,
    read_questionnaire_response,
    to_questionnaire_response,
)
from alliance.instruments import list_instruments
from alliance.store import repo
from alliance.store.models import AuditEntry, Response, TherapySession

pytestmark = pytest.mark.filterwarnings("ignore::alliance.scoring.UnverifiedKeyWarning")
FHIR_JSON = "application/fhir+json"
WAI = {f"wai_sr_{i}": float(1 + i % 5) for i in range(1, 13)}
PSQ = {"psq_1": 1.0, "psq_2": 4.0, "psq_3": 2.0}
SRS = {"srs_1": 7.3, "srs_2": 9.0, "srs_3": 6.85, "srs_4": 10.0}


def api(clinic: Clinic, user: str | None) -> Client:
    client = Client(clinic.app)
    if user:
        client.headers["Authorization"] = f"Bearer {clinic.tokens[user]}"
    return client


def form(instrument: str, form_id: str, items: dict[str, float], **kw: Any) -> FormResponse:
    kw.setdefault("subject", "CODE-P1")
    return FormResponse(instrument, form_id, items, **kw)


def post(client: Client, body: Any, content_type: str = FHIR_JSON) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"Content-Type": content_type}
    return client.post("/fhir/QuestionnaireResponse", content=content, headers=headers)


def create(clinic: Clinic, response: FormResponse, user: str = "t1") -> dict[str, Any]:
    answer = post(api(clinic, user), to_questionnaire_response(response))
    assert answer.status_code == 201, answer.text
    created: dict[str, Any] = answer.json()
    return created


def counts(clinic: Clinic) -> tuple[int, int]:
    """Stored responses and sessions."""
    with clinic.db.read() as s:
        responses = s.scalar(select(func.count(Response.id)))
        sessions = s.scalar(select(func.count(TherapySession.id)))
    return int(responses or 0), int(sessions or 0)


def audit_entries(clinic: Clinic) -> list[AuditEntry]:
    with clinic.db.read() as s:
        return list(s.scalars(select(AuditEntry).order_by(AuditEntry.id)))


def add_session(clinic: Clinic, patient: str, on: date) -> int:
    with clinic.db.write() as s:
        session = repo.create_session(s, repo.get_patient(s, clinic.patients[patient]), None, on)
        return session.number


def outcome(answer: httpx.Response, status: int, *named: str) -> list[dict[str, Any]]:
    """The issues of an OperationOutcome answer; each of ``named`` appears in one of them."""
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith(FHIR_JSON)
    body = answer.json()
    assert structure_issues(body, "OperationOutcome") == []
    issues: list[dict[str, Any]] = body["issue"]
    text = [f"{' '.join(i['expression'])} {i['diagnostics']}" for i in issues]
    for fragment in named:
        assert any(fragment in t for t in text), (fragment, text)
    return issues


def entries(answer: httpx.Response) -> list[dict[str, Any]]:
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith(FHIR_JSON)
    body = answer.json()
    assert structure_issues(body, "Bundle") == []
    assert body["type"] == "searchset" and body["total"] == len(body.get("entry", []))
    return [e["resource"] for e in body.get("entry", [])]


# -- metadata and questionnaires -------------------------------------------------------------
def test_metadata_is_a_public_valid_capability_statement(clinic: Clinic) -> None:
    answer = api(clinic, None).get("/fhir/metadata")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == FHIR_JSON
    cs = answer.json()
    assert structure_issues(cs, "CapabilityStatement") == []
    assert (cs["status"], cs["kind"], cs["fhirVersion"]) == ("active", "instance", FHIR_VERSION)
    assert cs["format"] == [FHIR_JSON]
    (rest,) = cs["rest"]
    assert rest["mode"] == "server" and "Bearer" in rest["security"]["description"]
    resources = {r["type"]: r for r in rest["resource"]}
    interactions = {t: {i["code"] for i in r["interaction"]} for t, r in resources.items()}
    assert interactions["Questionnaire"] == {"read", "search-type"}
    assert interactions["QuestionnaireResponse"] == {"create", "read", "search-type"}
    assert interactions["Observation"] == {"read", "search-type"}
    params = {t: {p["name"] for p in r.get("searchParam", [])} for t, r in resources.items()}
    assert {"patient", "date", "questionnaire"} <= params["QuestionnaireResponse"]
    assert params["Observation"] == {"patient", "date", "code"}


def test_questionnaires_are_listed_and_read_with_a_token(clinic: Clinic) -> None:
    anonymous = api(clinic, None).get("/fhir/Questionnaire")
    outcome(anonymous, 401, "Authorization", "bearer token")
    assert anonymous.headers["www-authenticate"] == "Bearer"
    bad = Client(clinic.app, headers={"Authorization": "Bearer nope"})
    outcome(bad.get("/fhir/Questionnaire/wai-sr-client"), 401, "invalid")
    client = api(clinic, "res")  # any role
    listed = entries(client.get("/fhir/Questionnaire"))
    forms = [questionnaire_id(i.id, f.id) for i in list_instruments() for f in i.forms]
    assert [q["id"] for q in listed] == forms
    read = client.get("/fhir/Questionnaire/wai-sr-client")
    assert read.headers["content-type"] == FHIR_JSON
    assert read.json() == fhir.questionnaire("wai_sr", "client")
    url = questionnaire_url("psq", "patient")
    assert [q["id"] for q in entries(client.get(f"/fhir/Questionnaire?url={url}"))] == [
        "psq-patient"
    ]
    assert entries(client.get("/fhir/Questionnaire?language=de"))[0]["resourceType"]
    outcome(client.get("/fhir/Questionnaire/wai-sr-nobody"), 404, "Questionnaire.id")
    outcome(client.get("/fhir/Questionnaire?language=not%20a%20tag"), 400, "language")
    assert client.get("/fhir/CodeSystem/scores").json() == score_code_system()
    outcome(client.get("/fhir/CodeSystem/other"), 404, "CodeSystem.id")


# -- creation ----------------------------------------------------------------------------
def test_a_created_response_is_scored_stored_and_readable(clinic: Clinic) -> None:
    before = counts(clinic)
    sent = form("wai_sr", "client", WAI, authored="2026-11-02")
    answer = post(api(clinic, "t1"), to_questionnaire_response(sent))
    assert answer.status_code == 201, answer.text
    assert answer.headers["content-type"] == FHIR_JSON
    created = answer.json()
    assert answer.headers["location"] == f"/fhir/QuestionnaireResponse/{created['id']}"
    assert counts(clinic) == (before[0] + 1, before[1] + 1)  # a new session, one form
    with clinic.db.read() as s:
        found = repo.response_in_context(s, int(created["id"]))
        assert found is not None
        row, session, _ = found
        assert (row.source, row.submitted_by) == ("fhir", clinic.users["t1"])
        assert (session.number, session.date) == (1, date(2026, 11, 2))
        stored = dict(row.scores)
    assert stored == score(pd.DataFrame([WAI]), "wai_sr").iloc[0].to_dict()
    back = api(clinic, "t1").get(answer.headers["location"])
    assert back.status_code == 200 and back.json() == created
    read = read_questionnaire_response(back.json())
    assert read.answered == WAI and read.session == 1 and read.subject == "CODE-P1"
    created_entries = [e for e in audit_entries(clinic) if e.action == "create"]
    assert [(e.entity, e.entity_id, e.patient_id) for e in created_entries][-1] == (
        "response",
        created["id"],
        clinic.patients["p1"],
    )
    # plain JSON is accepted too; a second form of the same session is a conflict
    psq = form("psq", "patient", PSQ, session=1, authored="2026-11-02")
    assert post(api(clinic, "t1"), to_questionnaire_response(psq), "application/json").is_success
    again = post(api(clinic, "admin"), to_questionnaire_response(psq))
    outcome(again, 409, "already completed")
    assert counts(clinic) == (before[0] + 2, before[1] + 1)


@pytest.mark.parametrize(
    ("instrument", "form_id", "items"),
    [("srs", "client", SRS), ("psq", "patient", PSQ), ("wai_sr", "therapist", WAI)],
)
def test_round_trips_are_exact(
    clinic: Clinic, instrument: str, form_id: str, items: dict[str, float]
) -> None:
    number = add_session(clinic, "p1", date(2026, 10, 5))
    sent = form(instrument, form_id, items, session=number, authored="2026-10-05")
    created = create(clinic, sent)
    assert created == to_questionnaire_response(dataclasses.replace(sent, id=created["id"]))
    back = api(clinic, "t1").get(f"/fhir/QuestionnaireResponse/{created['id']}").json()
    assert back == created
    assert read_questionnaire_response(back) == dataclasses.replace(sent, id=created["id"])


def test_a_form_goes_to_a_new_session_dated_authored_never_before_the_last(
    clinic: Clinic,
) -> None:
    create(clinic, form("srs", "client", SRS, authored="2026-10-01"))
    second = create(clinic, form("srs", "client", SRS))  # no date: today
    today = datetime.now(UTC).date().isoformat()
    assert (second["authored"], second["extension"][0]["valueInteger"]) == (today, 2)
    before = counts(clinic)
    earlier = post(
        api(clinic, "t1"),
        to_questionnaire_response(form("srs", "client", SRS, authored="2026-09-01")),
    )
    outcome(earlier, 422, "QuestionnaireResponse.authored", "latest session")
    wrong_day = form("psq", "patient", PSQ, session=1, authored="2026-10-02")
    outcome(
        post(api(clinic, "t1"), to_questionnaire_response(wrong_day)), 422, "date of the session"
    )
    assert counts(clinic) == before


# -- search and read ---------------------------------------------------------------------
def test_search_by_patient_date_and_questionnaire(clinic: Clinic) -> None:
    for day in ("2026-10-01", "2026-10-15", "2026-11-01"):
        create(clinic, form("wai_sr", "client", WAI, authored=day))
    create(clinic, form("psq", "patient", PSQ, session=2, authored="2026-10-15"))
    create(clinic, form("srs", "client", SRS, subject="CODE-P2", authored="2026-10-15"), "t2")
    t1 = api(clinic, "t1")

    def days(query: str) -> list[str]:
        found = entries(t1.get(f"/fhir/QuestionnaireResponse?{query}"))
        return [r["authored"] for r in found]

    assert days("patient=CODE-P1") == ["2026-10-01", "2026-10-15", "2026-10-15", "2026-11-01"]
    assert days("patient=Patient/CODE-P1&questionnaire=wai-sr-client") == [
        "2026-10-01",
        "2026-10-15",
        "2026-11-01",
    ]
    url = questionnaire_url("psq", "patient")
    assert days(f"questionnaire={url}") == ["2026-10-15"]
    assert days("date=ge2026-10-10&date=le2026-10-31") == ["2026-10-15", "2026-10-15"]
    assert days("date=2026-10-01") == days("date=eq2026-10-01") == ["2026-10-01"]
    assert days("date=gt2026-10-15") == ["2026-11-01"]
    assert days("authored=lt2026-10-15") == ["2026-10-01"]
    assert days("patient=CODE-P2") == []  # another caseload: not found, not shown
    assert len(days("")) == 4  # own caseload only
    admin = entries(api(clinic, "admin").get("/fhir/QuestionnaireResponse"))
    assert len(admin) == 5
    assert {r["subject"]["identifier"]["system"] for r in admin} == {PATIENT_CODE_SYSTEM}
    for query, named in [
        ("date=2026-13-01", "date"),
        ("date=ne2026-10-01", "date"),
        ("date=2026-10", "date"),
        ("questionnaire=nothing", "questionnaire"),
        ("subject=CODE-P1", "subject"),
        ("patient=", "patient"),
        ("_format=xml", "_format"),
    ]:
        outcome(t1.get(f"/fhir/QuestionnaireResponse?{query}"), 400, named)
    outcome(t1.get("/fhir/Observation?questionnaire=srs-client"), 400, "questionnaire")
    outcome(t1.get("/fhir/Observation?code=nothing_total"), 400, "code")
    outcome(t1.get("/fhir/QuestionnaireResponse/1?x=1"), 400, "x")


def test_observations_carry_the_stored_scores(clinic: Clinic) -> None:
    wai = create(clinic, form("wai_sr", "client", WAI, authored="2026-10-01"))
    psq = create(clinic, form("psq", "patient", PSQ, session=1, authored="2026-10-01"))
    with clinic.db.read() as s:
        stored = {r.id: dict(r.scores) for r in s.scalars(select(Response).order_by(Response.id))}
    t1 = api(clinic, "t1")
    found = entries(t1.get("/fhir/Observation?patient=CODE-P1&date=2026-10-01"))
    assert {o["id"] for o in found} == {
        f"{wai['id']}-goal", f"{wai['id']}-task", f"{wai['id']}-bond", f"{wai['id']}-total",
        f"{psq['id']}-rupture", f"{psq['id']}-intensity", f"{psq['id']}-resolution",
    }  # fmt: skip
    for o in found:
        response_id = o["derivedFrom"][0]["reference"].removeprefix("QuestionnaireResponse/")
        code = o["code"]["coding"][0]["code"]
        assert o["valueQuantity"]["value"] == stored[int(response_id)][code]
        assert o["effectiveDateTime"] == "2026-10-01"
        assert o["subject"]["identifier"] == {"system": PATIENT_CODE_SYSTEM, "value": "CODE-P1"}
    (rupture,) = entries(t1.get("/fhir/Observation?code=psq_rupture"))
    assert rupture["valueQuantity"]["value"] == 1.0
    assert rupture["meta"]["tag"][0]["system"] == KEY_STATUS_SYSTEM
    assert rupture["meta"]["tag"][0]["code"] == "unverified"
    (total,) = entries(t1.get(f"/fhir/Observation?code={SCORE_SYSTEM}|wai_sr_total"))
    assert "meta" not in total  # a verified key carries no flag
    read = t1.get(f"/fhir/Observation/{wai['id']}-total")
    assert read.status_code == 200 and read.json() == total
    assert read.headers["content-type"] == FHIR_JSON
    outcome(t1.get(f"/fhir/Observation/{wai['id']}-rupture"), 404, "Observation.id")
    outcome(t1.get("/fhir/Observation/999999-total"), 404, "Observation.id")
    outcome(t1.get("/fhir/Observation/nonsense"), 404, "Observation.id")
    outcome(t1.get("/fhir/QuestionnaireResponse/99999999999"), 404, "QuestionnaireResponse.id")


def test_another_caseload_is_refused_audited_and_unseen(clinic: Clinic) -> None:
    created = create(clinic, form("wai_sr", "client", WAI, authored="2026-10-01"))
    p1 = clinic.patients["p1"]
    t2 = api(clinic, "t2")
    outcome(t2.get(f"/fhir/QuestionnaireResponse/{created['id']}"), 403, "not on your caseload")
    outcome(t2.get(f"/fhir/Observation/{created['id']}-total"), 403, "not on your caseload")
    assert entries(t2.get("/fhir/QuestionnaireResponse?patient=CODE-P1")) == []
    assert entries(t2.get("/fhir/Observation")) == []
    before = counts(clinic)
    refused = post(t2, to_questionnaire_response(form("srs", "client", SRS)))
    outcome(refused, 403, "QuestionnaireResponse.subject", "not on your caseload")
    outcome(post(api(clinic, "sup1"), to_questionnaire_response(form("srs", "client", SRS))), 403)
    unknown = form("srs", "client", SRS, subject="CODE-NOBODY")
    outcome(post(api(clinic, "t1"), to_questionnaire_response(unknown)), 404, "no patient")
    assert counts(clinic) == before
    with clinic.db.read() as s:
        trail = repo.patient_audit_trail(s, p1)
        refusals = [(e.actor, e.action) for e in trail if e.action == "refused"]
    assert refusals == [("therapist:t2", "refused")] * 3
    assert entries(api(clinic, "sup2").get("/fhir/QuestionnaireResponse")) == []
    assert len(entries(api(clinic, "sup1").get("/fhir/QuestionnaireResponse"))) == 1


def test_a_researcher_gets_research_ids_and_no_dates(clinic: Clinic) -> None:
    created = create(clinic, form("wai_sr", "client", WAI, authored="2026-10-01"))
    create(clinic, form("psq", "patient", PSQ, session=1))
    with clinic.db.read() as s:
        research_id = repo.get_patient(s, clinic.patients["p1"]).research_id
    res = api(clinic, "res")
    answers = [
        res.get(f"/fhir/QuestionnaireResponse/{created['id']}"),
        res.get("/fhir/QuestionnaireResponse"),
        res.get(f"/fhir/QuestionnaireResponse?patient={research_id}"),
        res.get(f"/fhir/Observation/{created['id']}-total"),
        res.get(f"/fhir/Observation?patient={research_id}"),
    ]
    for answer in answers:
        assert answer.status_code == 200, answer.text
        assert "CODE-P1" not in answer.text and "2026-10-01" not in answer.text
        assert "authored" not in answer.text and "effectiveDateTime" not in answer.text
    (qr,) = [a.json() for a in answers[:1]]
    assert qr["subject"] == {"identifier": {"system": RESEARCH_ID_SYSTEM, "value": research_id}}
    assert len(entries(answers[2])) == 2 and len(entries(answers[4])) == 7
    assert entries(res.get("/fhir/QuestionnaireResponse?patient=CODE-P1")) == []
    outcome(res.get("/fhir/Observation?date=ge2026-01-01"), 400, "date", "de-identified")
    before = counts(clinic)
    outcome(post(res, to_questionnaire_response(form("srs", "client", SRS))), 403, "role")
    assert counts(clinic) == before


def test_every_read_is_audited_with_its_patients(clinic: Clinic) -> None:
    created = create(clinic, form("wai_sr", "client", WAI, authored="2026-10-01"))
    p1 = clinic.patients["p1"]
    with clinic.db.read() as s:
        research_id = repo.get_patient(s, p1).research_id
    for user, patient in (("t1", "CODE-P1"), ("res", research_id)):
        for url in (
            f"/fhir/QuestionnaireResponse/{created['id']}",
            f"/fhir/QuestionnaireResponse?patient={patient}",
            f"/fhir/Observation/{created['id']}-bond",
            f"/fhir/Observation?patient={patient}",
        ):
            before = len(audit_entries(clinic))
            assert api(clinic, user).get(url).status_code == 200, url
            after = audit_entries(clinic)
            assert len(after) == before + 1, url
            entry = after[-1]
            assert (entry.action, entry.user_id) == ("read", clinic.users[user])
            with clinic.db.read() as s:
                shown = (
                    [entry.patient_id] if entry.patient_id else repo.audited_patients(s, entry.id)
                )
            assert shown == [p1], url
            assert "CODE-P1" not in entry.detail and research_id not in entry.detail


# -- refusals ----------------------------------------------------------------------------
def _resource(response: FormResponse, **changes: Any) -> dict[str, Any]:
    resource = to_questionnaire_response(response)
    resource.update(changes)
    return resource


def _bad_resources() -> Iterator[tuple[str, Any, int, tuple[str, ...]]]:
    """(case, body, status, fragments the OperationOutcome names)."""
    srs = form("srs", "client", SRS, authored="2026-10-01")
    psq = form("psq", "patient", PSQ, authored="2026-10-01")
    yield (
        "not a QuestionnaireResponse",
        _resource(srs, resourceType="Patient"),
        400,
        ("resourceType",),
    )
    unknown = _resource(srs)
    unknown["item"].append({"linkId": "srs_9", "answer": [{"valueDecimal": 5.0}]})
    yield "unknown linkId", unknown, 422, ("linkId", "not an item of srs-client")
    text = _resource(psq)
    text["item"][0]["answer"] = [{"valueString": "yes"}]
    yield "valueString for a choice", text, 422, ("item[0].answer[0]", "psq_1", "valueCoding")
    off_scale = _resource(srs)
    off_scale["item"][1]["answer"] = [{"valueDecimal": 12.75}]
    yield "out of range", off_scale, 422, ("srs_2", "0..10")
    not_asked = _resource(form("psq", "patient", {"psq_1": 0.0, "psq_2": 3.0}))
    yield "answered but not asked", not_asked, 422, ("psq_2", "not asked")
    required = _resource(form("srs", "client", {k: v for k, v in SRS.items() if k != "srs_4"}))
    yield "required missing", required, 422, ("srs_4: required",)
    few = _resource(form("wai_sr", "client", {f"wai_sr_{i}": 3.0 for i in range(1, 7)}))
    yield "too many missing", few, 422, ("wai_sr_12", "too many questions")
    huge = _resource(srs)
    huge["item"][0]["answer"] = [{"valueDecimal": 10**400}]
    yield "huge number", huge, 422, ("srs_1", "0..10")
    yield "in progress", _resource(srs, status="in-progress"), 422, ("status",)
    yield (
        "no questionnaire",
        _resource(srs, questionnaire="Questionnaire/nothing"),
        422,
        ("questionnaire",),
    )
    yield (
        "no subject",
        to_questionnaire_response(form("srs", "client", SRS, subject=None)),
        422,
        ("subject", "required"),
    )
    research = to_questionnaire_response(form("srs", "client", SRS, deidentified=True))
    yield "research id subject", research, 422, ("subject.identifier.system",)
    nul = to_questionnaire_response(form("srs", "client", SRS, subject="CODE\x00P1"))
    yield "NUL in the code", nul, 422, ("subject", "NUL")
    yield (
        "no such session",
        _resource(form("srs", "client", SRS, session=99)),
        422,
        (SESSION_EXTENSION, "no session"),
    )
    future = (datetime.now(UTC) + timedelta(days=3)).date().isoformat()
    yield "authored in the future", _resource(srs, authored=future), 422, ("authored", "future")
    yield "partial date", _resource(srs, authored="2026-10"), 422, ("authored", "full date")
    yield "unknown language", _resource(srs, language="tlh"), 422, ("language", "one of")
    yield "not JSON", b'{"resourceType": ', 400, ("(body)", "not valid JSON")
    yield "not UTF-8", b"\xff\xfe\xfa", 400, ("not valid JSON",)
    yield "a list", [], 400, ("must be a JSON object",)
    nested = _resource(srs)
    node = nested
    for _ in range(300):
        node["item"] = [{"linkId": "x"}]
        node = node["item"][0]
    yield "nested deeply", nested, 400, ("nested too deeply",)
    yield "deeper than JSON", b"[" * 100_000, 400, ("not valid JSON",)


def test_bad_resources_are_refused_naming_the_problem_and_change_nothing(
    clinic: Clinic,
) -> None:
    client = api(clinic, "t1")
    before = counts(clinic)
    for case, body, status, named in _bad_resources():
        answer = post(client, body)
        issues = outcome(answer, status, *named)
        assert "12.75" not in answer.text and "yes" not in json.dumps(issues), case
        assert counts(clinic) == before, case
    outcome(post(client, {}, "text/plain"), 415, "Content-Type")
    too_big = b'{"resourceType": "QuestionnaireResponse", "x": "' + b"a" * 300_000 + b'"}'
    outcome(post(client, too_big), 413, "at most")

    def chunks() -> Iterator[bytes]:
        yield b'{"resourceType": "QuestionnaireResponse", "x": "'
        for _ in range(8):
            yield b"a" * 65536
        yield b'"}'

    headers = {"Content-Type": FHIR_JSON}
    chunked = client.post("/fhir/QuestionnaireResponse", content=chunks(), headers=headers)
    outcome(chunked, 413, "at most")
    assert counts(clinic) == before


def test_every_fhir_error_is_an_operation_outcome(clinic: Clinic) -> None:
    t1 = api(clinic, "t1")
    outcome(api(clinic, None).get("/fhir/QuestionnaireResponse"), 401, "Authorization")
    outcome(api(clinic, None).post("/fhir/QuestionnaireResponse"), 401, "Authorization")
    outcome(t1.delete("/fhir/QuestionnaireResponse/1"), 405, "DELETE")
    outcome(t1.put("/fhir/metadata"), 405, "PUT")
    outcome(t1.get("/fhir/Patient/1"), 404, "no such resource type")
    outcome(t1.get("/fhir/QuestionnaireResponse/1"), 404, "QuestionnaireResponse.id")
    outcome(t1.get("/fhir/QuestionnaireResponse?nonsense=1"), 400, "nonsense")

    @clinic.app.get("/fhir/boom")
    def boom() -> None:
        raise RuntimeError("CODE-P1 in an exception")

    broken = t1.get("/fhir/boom")
    outcome(broken, 500, "internal error; reference")
    assert "CODE-P1" not in broken.text
    # the other paths keep their own error bodies
    assert api(clinic, None).get("/api/v1/patients").json()["detail"]
    assert "/fhir/metadata" not in api(clinic, None).get("/api/openapi.json").json()["paths"]
