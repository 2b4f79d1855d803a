"""The JSON API through the real app, on SQLite and PostgreSQL: bearer tokens, roles,
validation, single use, alerts, export."""

from __future__ import annotations

import io

import pandas as pd
import pytest
from webclinic import Client, Clinic, full_answers


def api(clinic: Clinic, user: str | None) -> Client:
    client = Client(clinic.app)
    if user:
        client.headers["Authorization"] = f"Bearer {clinic.tokens[user]}"
    return client


def test_api_needs_a_valid_bearer_token(clinic: Clinic) -> None:
    assert api(clinic, None).get("/api/v1/patients").status_code == 401
    bad = Client(clinic.app, headers={"Authorization": "Bearer nope"})
    response = bad.get("/api/v1/patients")
    assert response.status_code == 401
    assert "invalid" in response.json()["detail"]
    assert api(clinic, "t1").get("/api/v1/me").json()["role"] == "therapist"


def test_therapist_reads_only_own_caseload(clinic: Clinic) -> None:
    client = api(clinic, "t1")
    codes = [p["code"] for p in client.get("/api/v1/patients").json()]
    assert codes == ["CODE-P1"]
    assert client.get(f"/api/v1/patients/{clinic.patients['p1']}").status_code == 200
    refused = client.get(f"/api/v1/patients/{clinic.patients['p2']}")
    assert refused.status_code == 403
    assert client.post(f"/api/v1/patients/{clinic.patients['p2']}/sessions").status_code == 403


def test_supervisor_sees_team_only_and_admin_sees_all(clinic: Clinic) -> None:
    sup = api(clinic, "sup1")
    assert [p["code"] for p in sup.get("/api/v1/patients").json()] == ["CODE-P1"]
    assert sup.get(f"/api/v1/patients/{clinic.patients['p2']}").status_code == 403
    team = sup.get("/api/v1/supervision").json()
    assert [row["therapist"] for row in team] == ["Therapist One"]
    admin = api(clinic, "admin")
    assert len(admin.get("/api/v1/patients").json()) == 2


def test_researcher_gets_deidentified_export_only(clinic: Clinic) -> None:
    client = api(clinic, "t1")
    created = client.post(f"/api/v1/patients/{clinic.patients['p1']}/sessions").json()
    assert (
        api(clinic, None)
        .post(f"/api/v1/links/{created['token']}/responses", json={"answers": full_answers()})
        .status_code
        == 201
    )
    res = api(clinic, "res")
    assert res.get("/api/v1/patients").status_code == 403
    assert res.get(f"/api/v1/patients/{clinic.patients['p1']}").status_code == 403
    assert res.get("/api/v1/alerts").status_code == 403
    assert res.get("/api/v1/supervision").status_code == 403
    csv = res.get("/api/v1/export?format=csv")
    assert csv.status_code == 200
    assert "CODE-P1" not in csv.text
    frame = pd.read_csv(io.StringIO(csv.text))
    assert {"patient", "therapist", "session", "day", "wai_sr_1", "wai_sr_total"} <= set(frame)
    assert not {"patient_id", "therapist_id", "date", "research_id"} & set(frame)
    parquet = res.get("/api/v1/export?format=parquet")
    assert pd.read_parquet(io.BytesIO(parquet.content))["wai_sr_total"].iloc[0] == 4.0
    assert res.get("/api/v1/export?format=xlsx").status_code == 422
    assert api(clinic, "t1").get("/api/v1/export").status_code == 403


def test_submission_is_validated_stored_once_and_scored(clinic: Clinic) -> None:
    therapist = api(clinic, "t1")
    created = therapist.post(f"/api/v1/patients/{clinic.patients['p1']}/sessions")
    assert created.status_code == 201
    token = created.json()["token"]
    anon = api(clinic, None)
    bad = dict(full_answers(), wai_sr_5="6", wai_sr_6="often")
    rejected = anon.post(f"/api/v1/links/{token}/responses", json={"answers": bad})
    assert rejected.status_code == 422
    rules = {(d["field"], d["rule"]) for d in rejected.json()["detail"]}
    assert ("wai_sr_5", "outside the scale 1..5") in rules
    assert ("wai_sr_6", "not a number") in rules
    detail = therapist.get(f"/api/v1/patients/{clinic.patients['p1']}").json()
    assert detail["sessions"] == []
    ok = anon.post(f"/api/v1/links/{token}/responses", json={"answers": full_answers(5, 1)})
    assert ok.status_code == 201
    again = anon.post(f"/api/v1/links/{token}/responses", json={"answers": full_answers()})
    assert again.status_code == 410
    detail = therapist.get(f"/api/v1/patients/{clinic.patients['p1']}").json()
    assert detail["sessions"][0]["wai_sr_total"] == 5.0
    assert detail["instrument"] == "wai_sr"


def test_no_alert_rests_on_an_unverified_key_unless_the_clinic_opts_in(
    sqlite_clinic: Clinic, monkeypatch: pytest.MonkeyPatch
) -> None:
    # shared/instruments-facts.md: alerts do not fire on an unverified key by default.
    monkeypatch.delenv("ALLIANCE_ALERTS_ALLOW_UNVERIFIED")
    therapist = api(sqlite_clinic, "t1")
    patient = sqlite_clinic.patients["p1"]
    token = therapist.post(f"/api/v1/patients/{patient}/sessions").json()["token"]
    answers = {"answers": full_answers(4, rupture=1)}
    assert (
        api(sqlite_clinic, None).post(f"/api/v1/links/{token}/responses", json=answers).status_code
        == 201
    )
    assert therapist.get("/api/v1/alerts").json() == []


def test_alerts_acknowledge_and_resolve_with_roles(clinic: Clinic) -> None:
    therapist = api(clinic, "t1")
    token = therapist.post(f"/api/v1/patients/{clinic.patients['p1']}/sessions").json()["token"]
    api(clinic, None).post(
        f"/api/v1/links/{token}/responses", json={"answers": full_answers(4, rupture=1)}
    )
    alerts = therapist.get("/api/v1/alerts").json()
    assert [a["kind"] for a in alerts] == ["self_reported_rupture"]
    alert_id = alerts[0]["id"]
    assert alerts[0]["guidance"] and alerts[0]["title"] and alerts[0]["reason"]
    episode = {k: alerts[0][k] for k in ("opened_session", "last_session", "state", "status")}
    assert episode == {"opened_session": 1, "last_session": 1, "state": "open", "status": "open"}
    assert alerts[0]["closed_session"] is None and alerts[0]["key_status"] == "unverified"
    caseload = {p["code"]: p for p in api(clinic, "admin").get("/api/v1/patients").json()}
    assert caseload["CODE-P1"]["status"] in ("watch", "act")
    assert caseload["CODE-P1"]["status_reason"] and caseload["CODE-P1"]["open_alerts"] == 1
    assert (caseload["CODE-P2"]["status"], caseload["CODE-P2"]["open_alerts"]) == ("steady", 0)
    assert (
        api(clinic, "t2").post(f"/api/v1/alerts/{alert_id}/acknowledge", json={}).status_code == 403
    )
    assert (
        api(clinic, "res")
        .post(f"/api/v1/alerts/{alert_id}/resolve", json={"note": "x"})
        .status_code
        == 403
    )
    ack = therapist.post(f"/api/v1/alerts/{alert_id}/acknowledge", json={"note": "seen"})
    assert ack.json()["status"] == "acknowledged"
    no_note = therapist.post(f"/api/v1/alerts/{alert_id}/resolve", json={"note": " "})
    assert no_note.status_code == 422 and "note" in no_note.json()["detail"]
    done = therapist.post(f"/api/v1/alerts/{alert_id}/resolve", json={"note": "talked it through"})
    assert done.json()["status"] == "resolved"
    assert therapist.get("/api/v1/alerts").json() == []
    [kept] = therapist.get("/api/v1/alerts?open_only=false").json()
    assert (kept["id"], kept["status"], kept["note"]) == (alert_id, "resolved", "talked it through")
    # each note an entry of its own, with author and time (issue 13, finding 10)
    assert [(n["text"], n["author"]) for n in kept["notes"]] == [
        ("seen", "t1"),
        ("talked it through", "t1"),
    ]
    assert all(n["created_at"].endswith(("+00:00", "Z")) for n in kept["notes"])
    detail = therapist.get(f"/api/v1/patients/{clinic.patients['p1']}").json()
    assert detail["status"] == "steady"  # resolved by the clinician: stored as computed
    assert [a["status"] for a in detail["alerts"]] == ["resolved"]


def test_openapi_schema_lists_the_api(clinic: Clinic) -> None:
    schema = api(clinic, None).get("/api/openapi.json").json()
    assert "/api/v1/patients/{patient_id}" in schema["paths"]
    assert "/api/v1/links/{token}/responses" in schema["paths"]
    assert not any(p.startswith("/f/") for p in schema["paths"])
    episode = schema["components"]["schemas"]["AlertOut"]["properties"]
    assert {"opened_session", "last_session", "closed_session", "state", "close_reason"} <= set(
        episode
    )
    assert {"status", "status_reason"} <= set(
        schema["components"]["schemas"]["PatientSummary"]["properties"]
    )


def test_api_answers_validate_against_the_openapi_schema(clinic: Clinic) -> None:
    from jsonschema import Draft202012Validator

    therapist = api(clinic, "t1")
    token = therapist.post(f"/api/v1/patients/{clinic.patients['p1']}/sessions").json()["token"]
    api(clinic, None).post(
        f"/api/v1/links/{token}/responses", json={"answers": full_answers(4, rupture=1)}
    )
    schema = api(clinic, None).get("/api/openapi.json").json()
    Draft202012Validator.check_schema(schema["components"]["schemas"]["AlertOut"])

    def check(path: str, component: str, many: bool) -> None:
        ref = {"$ref": f"#/components/schemas/{component}"}
        root = {
            **({"type": "array", "items": ref} if many else ref),
            "components": schema["components"],
        }
        body = therapist.get(path).json()
        Draft202012Validator(root).validate(body)
        assert body

    check("/api/v1/alerts", "AlertOut", True)
    check("/api/v1/patients", "PatientSummary", True)
    check(f"/api/v1/patients/{clinic.patients['p1']}", "PatientDetail", False)


def test_api_chart_and_supervision_refusals(clinic: Clinic) -> None:
    assert (
        api(clinic, "t2").get(f"/api/v1/patients/{clinic.patients['p1']}/chart").status_code == 403
    )
    assert (
        api(clinic, "res").get(f"/api/v1/patients/{clinic.patients['p1']}/chart").status_code == 403
    )
    assert api(clinic, "t1").get("/api/v1/supervision").status_code == 403
    assert (
        api(clinic, "sup1").post(f"/api/v1/patients/{clinic.patients['p1']}/sessions").status_code
        == 403
    )
