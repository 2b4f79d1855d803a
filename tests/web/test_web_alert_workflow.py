"""Finding 10: acknowledging a resolved alert must not reopen it (409 naming the state);
notes are entries with author and time, each limited, never one growing text."""

from __future__ import annotations

from alembic import command
from sqlalchemy import text
from webclinic import Client, Clinic, csrf_of, full_answers, login, new_link

from alliance.store import migrate, repo


def _open_alert(clinic: Clinic) -> int:
    """A self-reported rupture alert of p1 (the patient reports one on the form)."""
    token = new_link(clinic)
    client = Client(clinic.app)
    csrf = csrf_of(client.get(f"/f/{token}").text)
    client.post(f"/f/{token}", data=dict(full_answers(3, rupture=1), csrf_token=csrf))
    with clinic.db.read() as s:
        return repo.alerts_of(s, [clinic.patients["p1"]])[0].id


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


def test_notes_are_entries_with_author_and_time_and_do_not_grow(clinic: Clinic) -> None:
    alert_id = _open_alert(clinic)
    browser = login(clinic.app, "t1")
    browser.get(f"/patients/{clinic.patients['p1']}")
    for i in range(10):  # ten long notes: before, one text of 20,000 characters
        note = f"note {i} " + "x" * 1990
        assert browser.post(f"/alerts/{alert_id}", {"action": "acknowledge", "note": note})
    with clinic.db.read() as s:
        alert = repo.get_alert(s, alert_id)
        notes = repo.alert_notes(s, [alert_id])[alert_id]
        assert len(alert.note) <= 2000 and alert.note.startswith("note 9 ")
        assert [n.text[:6] for n in notes] == [f"note {i}" for i in range(10)]
        assert {n.author_id for n in notes} == {clinic.users["t1"]}
    page = browser.get(f"/patients/{clinic.patients['p1']}").text
    assert page.count("Therapist One, ") >= 10  # each note shows its author and time
    too_long = browser.post(f"/alerts/{alert_id}", {"action": "acknowledge", "note": "y" * 2001})
    assert too_long.status_code == 422 and "note" in too_long.text


def test_migration_0005_keeps_each_old_note_as_an_entry(clinic: Clinic) -> None:
    alert_id = _open_alert(clinic)
    engine = clinic.db.engine
    with engine.begin() as conn:
        conn.execute(text("UPDATE alerts SET note = :n WHERE id = :i"),
                     {"n": "seen\ntalked it through", "i": alert_id})  # fmt: skip
    config = migrate.alembic_config(engine.url.render_as_string(hide_password=False))
    command.downgrade(config, "0004_login")
    migrate.upgrade(engine)
    with clinic.db.read() as s:
        [note] = repo.alert_notes(s, [alert_id])[alert_id]
    assert (note.text, note.author_id) == ("seen\ntalked it through", None)
