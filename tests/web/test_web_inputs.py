"""Bad inputs get a 4xx naming the field and rule and change nothing (issue 13, findings 5
and 9), on SQLite and PostgreSQL."""

from __future__ import annotations

from sqlalchemy import func, select
from webclinic import Client, Clinic, csrf_of, full_answers, login, new_link

from alliance.store import repo
from alliance.store.models import Response
from alliance.web.api import DB_ID_MAX


def _responses(clinic: Clinic) -> int:
    with clinic.db.read() as s:
        return int(s.scalar(select(func.count(Response.id))) or 0)


def _link_usable(clinic: Clinic, token: str) -> None:
    with clinic.db.read() as s:
        repo.open_link(s, token)  # raises LinkUnusable if consumed


# -- finding 9: incomplete forms ------------------------------------------------------------
def test_blank_patient_form_is_refused_and_keeps_the_link(clinic: Clinic) -> None:
    token = new_link(clinic)
    client = Client(clinic.app)
    csrf = csrf_of(client.get(f"/f/{token}").text)
    response = client.post(f"/f/{token}", data={"csrf_token": csrf})
    assert response.status_code == 422
    assert "Question 1" in response.text and "not answered" in response.text
    assert _responses(clinic) == 0
    _link_usable(clinic, token)


def test_form_missing_more_than_the_rule_allows_is_refused_with_answers_kept(
    clinic: Clinic,
) -> None:
    token = new_link(clinic)
    client = Client(clinic.app)
    csrf = csrf_of(client.get(f"/f/{token}").text)
    data = full_answers()
    del data["wai_sr_1"], data["wai_sr_2"]  # two of the four task items: beyond a quarter
    response = client.post(f"/f/{token}", data={"csrf_token": csrf, **data})
    assert response.status_code == 422
    assert "Question 1" in response.text and "Question 2" in response.text
    assert 'value="4" checked' in response.text or "checked" in response.text
    assert _responses(clinic) == 0
    _link_usable(clinic, token)


def test_form_within_the_missing_item_rule_is_accepted(clinic: Clinic) -> None:
    token = new_link(clinic)
    client = Client(clinic.app)
    csrf = csrf_of(client.get(f"/f/{token}").text)
    data = full_answers()
    del data["wai_sr_1"]  # one of four task items: within the instrument's rule
    response = client.post(f"/f/{token}", data={"csrf_token": csrf, **data})
    assert response.status_code == 200, response.text
    assert _responses(clinic) == 2


def test_api_empty_answers_is_422_naming_the_items(clinic: Clinic) -> None:
    token = new_link(clinic)
    response = Client(clinic.app).post(f"/api/v1/links/{token}/responses", json={"answers": {}})
    assert response.status_code == 422
    fields = {p["field"] for p in response.json()["detail"]}
    assert {"wai_sr_1", "wai_sr_12", "psq_1"} <= fields
    assert _responses(clinic) == 0
    _link_usable(clinic, token)


def test_api_refuses_near_integers_bools_and_fullwidth_digits(clinic: Clinic) -> None:
    client = Client(clinic.app)
    for bad in ("4.0000000001", True, "\uff14"):
        token = new_link(clinic)
        answers: dict[str, object] = dict(full_answers())
        answers["wai_sr_3"] = bad
        response = client.post(f"/api/v1/links/{token}/responses", json={"answers": answers})
        assert response.status_code == 422, (bad, response.text)
        assert any("wai_sr_3" in p["field"] for p in response.json()["detail"]), bad
        _link_usable(clinic, token)
    assert _responses(clinic) == 0


def test_unknown_language_is_refused(clinic: Clinic) -> None:
    token = new_link(clinic)
    response = Client(clinic.app).get(f"/f/{token}?lang=xx-unknown")
    assert response.status_code == 422
    assert "lang" in response.text


def test_an_unknown_language_in_the_answers_is_refused_and_keeps_the_link(
    clinic: Clinic,
) -> None:
    token = new_link(clinic)
    client = Client(clinic.app)
    csrf = csrf_of(client.get(f"/f/{token}").text)
    for bad in ("tlh", "xx-unknown", "DE"):
        page = client.post(f"/f/{token}", data={"csrf_token": csrf, "lang": bad, **full_answers()})
        assert page.status_code == 422, bad
        assert "lang" in page.text and "must be one of de, en" in page.text
    api = client.post(
        f"/api/v1/links/{token}/responses", json={"answers": {**full_answers(), "lang": "tlh"}}
    )
    assert api.status_code == 422
    assert any(p["field"] == "lang" for p in api.json()["detail"])
    _link_usable(clinic, token)
    assert _responses(clinic) == 0

    # An offered language is stored with the answers.
    stored = client.post(f"/f/{token}", data={"csrf_token": csrf, "lang": "de", **full_answers()})
    assert stored.status_code == 200
    with clinic.db.read() as s:
        assert set(s.scalars(select(Response.language))) == {"de"}


# -- finding 5: ids ---------------------------------------------------------------------------
def test_unknown_and_foreign_sessions_are_the_same_404(clinic: Clinic) -> None:
    token = new_link(clinic, "p2")  # a session of t2's patient
    with clinic.db.read() as s:
        foreign = repo.open_link(s, token).session_id
    t1 = login(clinic.app, "t1")
    t1.get("/caseload")
    answers = {}
    for session_id in (foreign, 999_999):
        form = t1.get(f"/sessions/{session_id}/therapist-form")
        posted = t1.post(f"/sessions/{session_id}/therapist-form", {"psq_1": "0"})
        kiosk = t1.post(f"/sessions/{session_id}/kiosk", follow_redirects=False)
        answers[session_id] = [(r.status_code, r.text) for r in (form, posted, kiosk)]
        assert [c for c, _ in answers[session_id]] == [404, 404, 404], session_id
    assert answers[foreign] == answers[999_999]


def test_ids_beyond_the_integer_range_are_422_on_pages(clinic: Clinic) -> None:
    t1 = login(clinic.app, "t1")
    t1.get("/caseload")
    big = DB_ID_MAX + 1
    for url in (f"/patients/{big}", f"/sessions/{big}/therapist-form"):
        response = t1.get(url)
        assert response.status_code == 422, url
    assert t1.post(f"/sessions/{big}/kiosk").status_code == 422


def test_unknown_supervisor_and_huge_interval_are_422_and_change_nothing(clinic: Clinic) -> None:
    admin = login(clinic.app, "admin")
    admin.get("/admin")
    with clinic.db.read() as s:
        users, patients = len(repo.list_users(s)), len(repo.patients_for(s, _admin(clinic)))
    for supervisor in ("999999", str(DB_ID_MAX + 1), str(clinic.users["t2"])):
        response = admin.post(
            "/admin/users",
            {
                "username": "new",
                "role": "therapist",
                "password": "long enough pw",
                "supervisor_id": supervisor,
            },
        )
        assert response.status_code == 422 and "supervisor_id" in response.text, supervisor
    response = admin.post(
        "/admin/patients",
        {
            "code": "NEW-9",
            "therapist_id": str(clinic.users["t1"]),
            "schedule": ["wai_sr:client"],
            "every": str(10**30),
        },
    )
    assert response.status_code == 422 and "every" in response.text
    with clinic.db.read() as s:
        assert len(repo.list_users(s)) == users
        assert len(repo.patients_for(s, _admin(clinic))) == patients


def _admin(clinic: Clinic):  # type: ignore[no-untyped-def]
    with clinic.db.read() as s:
        user = repo.get_user(s, clinic.users["admin"])
        assert user is not None
        s.expunge(user)
        return user


def test_nul_and_lone_surrogates_in_answers_are_422(clinic: Clinic) -> None:
    client = Client(clinic.app)
    # raw JSON escapes, as an attacker sends them (a client library would refuse \ud800)
    for escaped in ("4\\u0000", "\\ud800"):
        token = new_link(clinic)
        fields = [f'"{k}": "{v}"' for k, v in full_answers().items() if k != "wai_sr_3"]
        body = '{"answers": {' + ", ".join([*fields, f'"wai_sr_3": "{escaped}"']) + "}}"
        response = client.post(
            f"/api/v1/links/{token}/responses",
            content=body,
            headers={"content-type": "application/json"},
        )
        assert response.status_code == 422, (escaped, response.text)
        assert response.json()["detail"][0]["field"] == "answers.wai_sr_3"
        _link_usable(clinic, token)
    assert _responses(clinic) == 0


def test_nul_and_over_long_patient_code_are_422(clinic: Clinic) -> None:
    admin = login(clinic.app, "admin")
    admin.get("/admin")
    for code in ("A\x00B", "X" * 65):
        response = admin.post(
            "/admin/patients",
            {"code": code, "therapist_id": str(clinic.users["t1"]), "schedule": ["wai_sr:client"]},
        )
        assert response.status_code == 422 and "code" in response.text, repr(code)


def _open_alert(clinic: Clinic) -> int:
    """A self-reported rupture alert of p1 (the patient reports one on the form)."""
    token = new_link(clinic)
    client = Client(clinic.app)
    csrf = csrf_of(client.get(f"/f/{token}").text)
    client.post(f"/f/{token}", data=dict(full_answers(3, rupture=1), csrf_token=csrf))
    with clinic.db.read() as s:
        return repo.alerts_of(s, [clinic.patients["p1"]])[0].id


def test_alert_notes_with_nul_or_surrogates_and_ids_beyond_range_are_422(clinic: Clinic) -> None:
    alert_id = _open_alert(clinic)
    browser = login(clinic.app, "t1")
    browser.get(f"/patients/{clinic.patients['p1']}")
    page = browser.post(f"/alerts/{alert_id}", {"action": "acknowledge", "note": "a\x00b"})
    assert page.status_code == 422 and "note: must not contain NUL" in page.text
    beyond = browser.post(f"/alerts/{DB_ID_MAX + 1}", {"action": "acknowledge", "note": "x"})
    assert beyond.status_code == 422
    api = Client(clinic.app)
    bearer = {"Authorization": f"Bearer {clinic.tokens['t1']}", "content-type": "application/json"}
    for body in ('{"note": "a\\u0000b"}', '{"note": "a\\ud800b"}'):
        response = api.post(f"/api/v1/alerts/{alert_id}/acknowledge", content=body, headers=bearer)
        assert response.status_code == 422, (body, response.text)
        assert response.json()["detail"][0]["field"] == "note"
    with clinic.db.read() as s:
        alert = repo.get_alert(s, alert_id)
        assert alert.status == "open" and "\x00" not in (alert.note or "")


def test_admin_usernames_and_therapist_ids_are_checked_before_the_database(clinic: Clinic) -> None:
    admin = login(clinic.app, "admin")
    admin.get("/admin")
    for field, value in (("username", "new\x00user"), ("display_name", "D" * 129)):
        data = {"username": "newuser", "display_name": "", "role": "therapist",
                "password": "a long enough password 1", field: value}  # fmt: skip
        response = admin.post("/admin/users", data)
        assert response.status_code == 422 and field in response.text, field
    for therapist in (str(DB_ID_MAX + 1), "abc"):
        response = admin.post(
            "/admin/patients", {"code": "NEW-9", "therapist_id": therapist, "schedule": []}
        )
        assert response.status_code == 422 and "therapist_id" in response.text, therapist
    p1 = clinic.patients["p1"]
    moved = admin.post(f"/admin/patients/{p1}/schedule", {"therapist_id": str(DB_ID_MAX + 1)})
    assert moved.status_code == 422 and "therapist_id" in moved.text
    assert admin.post(f"/admin/patients/{DB_ID_MAX + 1}/schedule", {}).status_code == 422
    with clinic.db.read() as s:
        assert repo.user_by_name(s, "newuser") is None
        assert repo.get_patient(s, p1).therapist_id == clinic.users["t1"]
