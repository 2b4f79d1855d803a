"""Finding 10: acknowledging a resolved alert must not reopen it (409 naming the state)."""

from __future__ import annotations

from webclinic import Client, Clinic, csrf_of, full_answers, login, new_link

from alliance.store import repo


def _resolved_alert(clinic: Clinic) -> int:
    """A self-reported rupture alert of p1, resolved by its therapist through the page."""
    token = new_link(clinic)
    client = Client(clinic.app)
    csrf = csrf_of(client.get(f"/f/{token}").text)
    client.post(f"/f/{token}", data=dict(full_answers(3, rupture=1), csrf_token=csrf))
    with clinic.db.read() as s:
        alert_id = repo.alerts_of(s, [clinic.patients["p1"]])[0].id
    browser = login(clinic.app, "t1")
    browser.get(f"/patients/{clinic.patients['p1']}")
    done = browser.post(f"/alerts/{alert_id}", {"action": "resolve", "note": "discussed"})
    assert done.status_code == 200
    return alert_id


def test_acknowledging_a_resolved_alert_is_refused_on_the_page(sqlite_clinic: Clinic) -> None:
    alert_id = _resolved_alert(sqlite_clinic)
    browser = login(sqlite_clinic.app, "t1")
    browser.get(f"/patients/{sqlite_clinic.patients['p1']}")
    again = browser.post(f"/alerts/{alert_id}", {"action": "acknowledge", "note": "x"})
    assert again.status_code == 409 and "resolved" in again.text
    with sqlite_clinic.db.read() as s:
        alert = repo.get_alert(s, alert_id)
        assert (alert.status, alert.note) == ("resolved", "discussed")


def test_acknowledging_a_resolved_alert_is_refused_by_the_api(sqlite_clinic: Clinic) -> None:
    alert_id = _resolved_alert(sqlite_clinic)
    api = Client(sqlite_clinic.app)
    api.headers["Authorization"] = f"Bearer {sqlite_clinic.tokens['t1']}"
    for action in ("acknowledge", "resolve"):
        answer = api.post(f"/api/v1/alerts/{alert_id}/{action}", json={"note": "again"})
        assert answer.status_code == 409, answer.text
        assert "status" in answer.json()["detail"] and "resolved" in answer.json()["detail"]
    with sqlite_clinic.db.read() as s:
        assert repo.get_alert(s, alert_id).status == "resolved"
