"""Account changes (issue 13): deactivate, reactivate, reset a password, change a role,
issue and revoke API tokens, from the admin pages and from ``alliance users ...``.

The rules live in :mod:`alliance.store.repo` (one place for both front ends): every change
is audited; the last active admin cannot be deactivated or demoted; a therapist with
patients or a supervisor with a team is not taken away; deactivating and resetting a
password end the account's sessions and revoke its tokens. Real app, real databases.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path

from sqlalchemy import select
from typer.testing import CliRunner
from webclinic import PASSWORD, Browser, Client, Clinic, login

from alliance.cli.main import app as cli
from alliance.store import repo
from alliance.store.models import AuditEntry, User

NEW_PASSWORD = "a brand new passphrase"


def api_status(clinic: Clinic, username: str) -> int:
    """Status of ``/api/v1/me`` with the user's seeded API token."""
    headers = {"Authorization": f"Bearer {clinic.tokens[username]}"}
    return Client(clinic.app).get("/api/v1/me", headers=headers).status_code


def can_log_in(clinic: Clinic, username: str, password: str = PASSWORD) -> bool:
    browser = Browser(clinic.app)
    browser.get("/login")
    answer = browser.post(
        "/login", {"username": username, "password": password}, follow_redirects=False
    )
    return answer.status_code == 303


def still_logged_in(browser: Browser) -> bool:
    """Whether the home page sends this browser to its start page, not to the login."""
    home = browser.get("/", follow_redirects=False)
    assert home.status_code == 303
    return home.headers["location"] != "/login"


def audit_actions(clinic: Clinic, user_id: int) -> list[str]:
    """The audited account changes of one user (their logins left out)."""
    with clinic.db.read() as s:
        query = select(AuditEntry).where(
            AuditEntry.entity_id == str(user_id), AuditEntry.action.not_like("%login%")
        )
        return [
            f"{e.actor} {e.action} {e.entity}" for e in s.scalars(query.order_by(AuditEntry.id))
        ]


def user_row(clinic: Clinic, username: str) -> User:
    with clinic.db.read() as s:
        user = repo.account(s, username)
        s.expunge(user)
        return user


# -- admin pages ---------------------------------------------------------------------------
def test_deactivating_ends_sessions_and_tokens_and_reactivating_restores_login(
    clinic: Clinic,
) -> None:
    researcher = login(clinic.app, "res")
    admin = login(clinic.app, "admin")
    rid = clinic.users["res"]
    answer = admin.post(f"/admin/users/{rid}/active", {"active": "0"}, follow_redirects=False)
    assert answer.status_code == 303
    assert not still_logged_in(researcher)
    assert api_status(clinic, "res") == 401
    assert not can_log_in(clinic, "res")
    page = admin.get("/admin").text
    assert re.search(r"<td>res</td>.*?<td>deactivated</td>", page, re.S)

    admin.post(f"/admin/users/{rid}/active", {"active": "1"})
    assert can_log_in(clinic, "res")
    assert api_status(clinic, "res") == 401, "reactivation must not revive old tokens"
    assert audit_actions(clinic, rid)[-2:] == [
        "admin:admin deactivate user",
        "admin:admin activate user",
    ]


def test_the_last_active_admin_is_neither_deactivated_nor_demoted(clinic: Clinic) -> None:
    admin = login(clinic.app, "admin")
    aid = clinic.users["admin"]
    off = admin.post(f"/admin/users/{aid}/active", {"active": "0"})
    assert off.status_code == 409 and "last active admin" in off.text
    demote = admin.post(f"/admin/users/{aid}/role", {"role": "researcher"})
    assert demote.status_code == 409 and "last active admin" in demote.text
    assert user_row(clinic, "admin").active and user_row(clinic, "admin").role == "admin"
    assert still_logged_in(admin)

    # With a second admin, the first may step down.
    admin.post(f"/admin/users/{clinic.users['res']}/role", {"role": "admin"})
    step_down = admin.post(
        f"/admin/users/{aid}/role", {"role": "researcher"}, follow_redirects=False
    )
    assert step_down.status_code == 303
    assert user_row(clinic, "admin").role == "researcher"
    assert admin.get("/admin").status_code == 403, "the new role holds from the next request"


def test_two_admins_removing_each_other_at_once_leave_one(clinic: Clinic) -> None:
    with clinic.db.write() as s:
        repo.set_role(s, repo.account(s, "res"), "admin")
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def remove(name: str) -> None:
        barrier.wait()
        try:
            with clinic.db.write() as s:
                repo.set_active(s, repo.account(s, name), False)
            outcomes.append("done")
        except repo.Conflict:
            outcomes.append("refused")

    threads = [threading.Thread(target=remove, args=(n,)) for n in ("admin", "res")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["done", "refused"]
    with clinic.db.read() as s:
        admins = s.scalars(select(User).where(User.role == "admin", User.active.is_(True)))
        assert len(list(admins)) == 1


def test_a_therapist_with_patients_and_a_supervisor_with_a_team_stay(clinic: Clinic) -> None:
    admin = login(clinic.app, "admin")
    t1, sup1 = clinic.users["t1"], clinic.users["sup1"]
    off = admin.post(f"/admin/users/{t1}/active", {"active": "0"})
    assert off.status_code == 409 and "still has 1 patient" in off.text
    demote = admin.post(f"/admin/users/{sup1}/role", {"role": "therapist"})
    assert demote.status_code == 409 and "still supervises 1 therapist" in demote.text
    assert user_row(clinic, "t1").active and user_row(clinic, "sup1").role == "supervisor"

    # Move t1 to sup2's team: sup1 may then go.
    moved = admin.post(
        f"/admin/users/{t1}/role",
        {"role": "therapist", "supervisor_id": str(clinic.users["sup2"])},
        follow_redirects=False,
    )
    assert moved.status_code == 303
    assert user_row(clinic, "t1").supervisor_id == clinic.users["sup2"]
    assert admin.post(f"/admin/users/{sup1}/active", {"active": "0"}).status_code == 200


def test_password_reset_ends_sessions_and_tokens(clinic: Clinic) -> None:
    therapist = login(clinic.app, "t1")
    admin = login(clinic.app, "admin")
    t1 = clinic.users["t1"]
    short = admin.post(f"/admin/users/{t1}/password", {"password": "short"})
    assert short.status_code == 422 and "password: must be at least 8 characters" in short.text
    assert still_logged_in(therapist) and api_status(clinic, "t1") == 200

    admin.post(f"/admin/users/{t1}/password", {"password": NEW_PASSWORD})
    assert not still_logged_in(therapist)
    assert api_status(clinic, "t1") == 401
    assert not can_log_in(clinic, "t1")
    assert can_log_in(clinic, "t1", NEW_PASSWORD)
    assert "admin:admin reset-password user" in audit_actions(clinic, t1)


def test_revoking_tokens_from_the_admin_page(clinic: Clinic) -> None:
    admin = login(clinic.app, "admin")
    sup2 = clinic.users["sup2"]
    assert re.search(r"<td>sup2</td>.*?<td>active</td><td>1</td>", admin.get("/admin").text, re.S)
    admin.post(f"/admin/users/{sup2}/tokens/revoke", {})
    assert api_status(clinic, "sup2") == 401
    assert re.search(r"<td>sup2</td>.*?<td>active</td><td>0</td>", admin.get("/admin").text, re.S)
    assert "admin:admin revoke api-token" in audit_actions(clinic, sup2)


def test_account_changes_refuse_bad_input_and_other_roles(clinic: Clinic) -> None:
    admin = login(clinic.app, "admin")
    rid = clinic.users["res"]
    assert admin.post("/admin/users/999999/active", {"active": "0"}).status_code == 404
    assert admin.post(f"/admin/users/{rid}/active", {"active": "maybe"}).status_code == 422
    wizard = admin.post(f"/admin/users/{rid}/role", {"role": "wizard"})
    assert wizard.status_code == 422 and "role: must be one of" in wizard.text
    not_sup = admin.post(
        f"/admin/users/{rid}/role",
        {"role": "therapist", "supervisor_id": str(clinic.users["t2"])},
    )
    assert not_sup.status_code == 422 and "supervisor_id: not an active supervisor" in not_sup.text
    assert user_row(clinic, "res").role == "researcher"

    supervisor = login(clinic.app, "sup1")
    refused = supervisor.post(f"/admin/users/{rid}/active", {"active": "0"})
    assert refused.status_code == 403 and user_row(clinic, "res").active


def test_the_role_field_of_a_new_user_has_no_default(clinic: Clinic) -> None:
    admin = login(clinic.app, "admin")
    page = admin.get("/admin").text
    select_html = re.search(r'<select id="new-role".*?</select>', page, re.S)
    assert select_html and '<option value="" selected disabled>' in select_html.group(0)
    answer = admin.post("/admin/users", {"username": "nobody", "password": NEW_PASSWORD})
    assert answer.status_code == 422 and "role: must be one of" in answer.text
    with clinic.db.read() as s:
        assert repo.user_by_name(s, "nobody") is None


# -- the shell -----------------------------------------------------------------------------
runner = CliRunner()


def users(url: str, *args: str) -> tuple[int, str]:
    result = runner.invoke(cli, ["users", *args, "--database-url", url])
    return result.exit_code, result.output


def test_users_commands_change_accounts_with_audit(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'prod.db'}"
    assert users(url, "create", "boss", "--role", "admin", "--password", PASSWORD)[0] == 0
    assert users(url, "create", "dr-b", "--role", "researcher", "--password", PASSWORD)[0] == 0

    code, out = users(url, "token", "dr-b", "--name", "nightly export")
    assert code == 0 and re.search(r"API token \(shown once\): \S{40,}", out)
    assert users(url, "list")[1].splitlines() == [
        "boss\tadmin\tactive\t0 token(s)",
        "dr-b\tresearcher\tactive\t1 token(s)",
    ]
    assert users(url, "revoke-tokens", "dr-b") == (0, "revoked 1 token(s) of 'dr-b'\n")
    assert users(url, "set-role", "dr-b", "supervisor")[0] == 0
    assert users(url, "reset-password", "dr-b", "--password", NEW_PASSWORD)[0] == 0
    assert users(url, "deactivate", "dr-b")[0] == 0
    assert "dr-b\tsupervisor\tdeactivated\t0 token(s)" in users(url, "list")[1]
    assert users(url, "reactivate", "dr-b")[0] == 0

    from alliance.store.db import Database

    database = Database(url)
    with database.read() as s:
        entries = s.scalars(select(AuditEntry).where(AuditEntry.actor == "cli")).all()
        actions = [f"{e.action} {e.entity}" for e in entries]
    database.dispose()
    assert actions == [
        "create user",
        "create user",
        "create api-token",
        "revoke api-token",
        "update user",
        "reset-password user",
        "deactivate user",
        "activate user",
    ]


def test_users_commands_refuse_with_exit_2(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'prod.db'}"
    users(url, "create", "boss", "--role", "admin", "--password", PASSWORD)
    code, out = users(url, "deactivate", "boss")
    assert code == 2 and "last active admin" in out
    code, out = users(url, "set-role", "boss", "therapist")
    assert code == 2 and "last active admin" in out
    code, out = users(url, "deactivate", "ghost")
    assert code == 2 and "username: no user named 'ghost'" in out
    code, out = users(url, "set-role", "boss", "wizard")
    assert code == 2 and "role: must be one of" in out
    code, out = users(url, "reset-password", "boss", "--password", "short")
    assert code == 2 and "password: must be at least 8 characters" in out
    assert "boss\tadmin\tactive" in users(url, "list")[1]


def test_no_token_for_a_deactivated_account(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'prod.db'}"
    users(url, "create", "boss", "--role", "admin", "--password", PASSWORD)
    users(url, "create", "gone", "--role", "researcher", "--password", PASSWORD)
    users(url, "deactivate", "gone")
    code, out = users(url, "token", "gone")
    assert code == 2 and "'gone' is deactivated" in out
