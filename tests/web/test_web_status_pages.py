"""One status per patient, at a glance: the caseload (status, reason, trend, latest score
with its scale, last session; therapist column and filters for supervisors) and the patient
page (status first, open alert episodes grouped by kind, ended and resolved ones folded).

The clinic is real (SQLite, the app, the scoring path); the episodes and statuses are
stored through the store's own function (:func:`repo.replace_analytics`), so these tests
pin the pages, not the clinical rules of :mod:`alliance.dynamics`.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Any

import pytest
from webclinic import Clinic, login, record_session

from alliance.store import repo
from alliance.store.models import Patient

WAI = repo.ScheduleSpec("wai_sr", "client", "client")
SRS = repo.ScheduleSpec("srs", "client", "client")


def wai(*values: int) -> dict[str, str]:
    """WAI-SR answers: the values cycled over the 12 items."""
    return {f"wai_sr_{i}": str(values[(i - 1) % len(values)]) for i in range(1, 13)}


def episode(patient_id: int, kind: str, opened: int, **fields: Any) -> dict[str, Any]:
    """An alert episode row as the analytics store it (alliance.dynamics.episodes)."""
    row: dict[str, Any] = {
        "patient_id": patient_id,
        "kind": kind,
        "opened_session": opened,
        "last_session": opened,
        "closed_session": None,
        "state": "open",
        "severity": "warning",
        "escalated_session": None,
        "title": kind.replace("_", " ").capitalize(),
        "reason": f"Reason of {kind} at session {opened}.",
        "detail": f"Statistics of {kind} at session {opened}: threshold 0.44.",
        "close_reason": "",
        "method": "",
        "value": None,
        "threshold": None,
        "score": "wai_sr_total",
        "key_status": "verified",
        "guidance": f"Guidance on {kind}.",
        "sources": "Safran & Muran (2000) | Eubanks et al. (2018)",
    }
    row.update(fields)
    return row


def add_patient(
    clinic: Clinic,
    code: str,
    therapist: str,
    sessions: list[tuple[date, dict[str, str]]],
    spec: repo.ScheduleSpec = WAI,
) -> int:
    with clinic.db.write() as s:
        owner = repo.get_user(s, clinic.users[therapist])
        assert owner is not None
        patient = repo.create_patient(s, code, owner, [spec])
        for on, answers in sessions:
            record_session(s, patient, [(spec, answers)], on)
        return patient.id


def store(
    clinic: Clinic,
    patient_id: int,
    episodes: list[dict[str, Any]] = (),  # type: ignore[assignment]
    ruptures: list[dict[str, Any]] = (),  # type: ignore[assignment]
) -> None:
    """Store the episodes and ruptures; the store derives the patient's status from them."""
    with clinic.db.write() as s:
        repo.replace_analytics(s, [patient_id], episodes, ruptures)


@pytest.fixture
def caseload(sqlite_clinic: Clinic) -> dict[str, int]:
    """Therapist t1's caseload: one patient to act on, one to watch, two steady ones (the
    seeded CODE-P1, without sessions, and one with), and one SRS patient of therapist t2."""
    c = sqlite_clinic
    steady = add_patient(c, "STEADY-1", "t1", [(date(2026, 3, 2), wai(4, 5))])
    watch = add_patient(
        c, "WATCH-1", "t1", [(date(2026, 1, 5), wai(4)), (date(2026, 1, 12), wai(3, 4))]
    )
    act = add_patient(
        c,
        "ACT-1",
        "t1",
        [(date(2026, 2, 1), wai(4)), (date(2026, 2, 8), wai(4, 5)), (date(2026, 2, 15), wai(2))],
    )
    srs = add_patient(
        c,
        "SRS-1",
        "t2",
        [(date(2026, 2, 20), {f"srs_{i}": "8.5" for i in range(1, 5)})],
        spec=SRS,
    )
    store(c, steady)
    store(c, watch, [episode(watch, "rating_discrepancy", 2)])
    store(
        c,
        act,
        [
            episode(
                act,
                "rupture",
                3,
                severity="high",
                escalated_session=3,
                title="Possible rupture",
                reason="WAI-SR total fell from 4.25 to 2.00 at session 3.",
                method="rci_drop",
                value=2.25,
                threshold=0.44,
            ),
            episode(act, "rupture", 1, title="Earlier rupture", last_session=3),
            episode(act, "below_cutoff", 2, title="Below the cutoff", last_session=3),
            episode(
                act,
                "self_reported_rupture",
                1,
                state="closed",
                closed_session=2,
                last_session=2,
                title="Reported rupture",
                close_reason="repaired at session 2: back to 4.10",
            ),
        ],
        [
            {
                "patient_id": act,
                "session": 3,
                "kind": "rci_drop",
                "depth": 2.25,
                "repaired": False,
                "repair_session": None,
                "detail": "repair window still open",
            }
        ],
    )
    store(c, srs, [episode(srs, "below_cutoff", 1)])
    return {"steady": steady, "watch": watch, "act": act, "srs": srs, "empty": c.patients["p1"]}


def caseload_codes(html: str) -> list[str]:
    body = html.split('<table class="data caseload" id="caseload">', 1)[1]
    return re.findall(r'<th scope="row"><a href="/patients/\d+">([^<]+)</a></th>', body)


def test_caseload_is_sorted_by_status_then_last_session(
    sqlite_clinic: Clinic, caseload: dict[str, int]
) -> None:
    page = login(sqlite_clinic.app, "t1").get("/caseload")
    assert page.status_code == 200
    # act > watch > steady; among the steady ones the most recent session first, none last
    assert caseload_codes(page.text) == ["ACT-1", "WATCH-1", "STEADY-1", "CODE-P1"]
    assert "SRS-1" not in page.text and "CODE-P2" not in page.text
    assert 'data-status="act"' in page.text and "▲</span> Act" in page.text  # not colour alone
    assert "WAI-SR total fell from 4.25 to 2.00 at session 3. (2 more open alerts.)" in page.text
    assert "since session 3" in page.text
    assert "2026-02-15" in page.text and "session 3" in page.text


def test_caseload_shows_latest_score_with_scale_and_a_sparkline(
    sqlite_clinic: Clinic, caseload: dict[str, int]
) -> None:
    html = login(sqlite_clinic.app, "t1").get("/caseload").text
    row = html.split("ACT-1</a></th>", 1)[1].split("</tr>", 1)[0]
    assert "2.00 of 5" in row
    spark = re.search(r'<svg class="spark".*?</svg>', row)
    assert spark, "no sparkline"
    assert 'role="img"' in spark.group(0)
    assert "<title>WAI-SR total (patient), sessions 1–3:" in spark.group(0)
    assert "<script" not in html
    empty = html.split("CODE-P1</a></th>", 1)[1].split("</tr>", 1)[0]
    assert "no scores yet" in empty and "none yet" in empty
    srs = login(sqlite_clinic.app, "t2").get("/caseload").text
    assert "34.0 of 40" in srs


def test_therapist_column_and_filters_are_for_supervisors_only(
    sqlite_clinic: Clinic, caseload: dict[str, int]
) -> None:
    therapist = login(sqlite_clinic.app, "t1").get("/caseload?status=act").text
    assert '<th scope="col">Therapist</th>' not in therapist
    assert 'id="f-therapist"' not in therapist and 'id="f-status"' not in therapist
    assert len(caseload_codes(therapist)) == 4  # a therapist's caseload is not filtered

    supervisor = login(sqlite_clinic.app, "sup1")
    page = supervisor.get("/caseload").text
    assert '<th scope="col">Therapist</th>' in page and "Therapist One" in page
    assert 'method="get" action="/caseload"' in page
    assert 'id="f-status"' in page and 'id="f-therapist"' in page
    assert caseload_codes(page) == ["ACT-1", "WATCH-1", "STEADY-1", "CODE-P1"]
    assert caseload_codes(supervisor.get("/caseload?status=watch").text) == ["WATCH-1"]
    chosen = supervisor.get("/caseload?status=steady").text
    assert '<option value="steady" selected>' in chosen

    admin = login(sqlite_clinic.app, "admin")
    everyone = caseload_codes(admin.get("/caseload").text)
    assert everyone[:3] == ["ACT-1", "SRS-1", "WATCH-1"] or everyone[:3] == [
        "ACT-1",
        "WATCH-1",
        "SRS-1",
    ]
    t2 = sqlite_clinic.users["t2"]
    assert caseload_codes(admin.get(f"/caseload?therapist={t2}").text) == ["SRS-1", "CODE-P2"]
    both = admin.get(f"/caseload?therapist={t2}&status=watch").text
    assert caseload_codes(both) == ["SRS-1"]
    assert "Therapist Two" in both
    bad = admin.get("/caseload?status=urgent")
    assert bad.status_code == 422 and "status: must be one of act, watch, steady" in bad.text
    assert admin.get("/caseload?therapist=t2").status_code == 422


def test_caseload_pages_long_lists(sqlite_clinic: Clinic, monkeypatch: pytest.MonkeyPatch) -> None:
    from alliance.web import pages

    monkeypatch.setattr(pages, "CASELOAD_PAGE", 1)
    add_patient(sqlite_clinic, "ZZ-2", "t1", [(date(2026, 1, 1), wai(4))])
    browser = login(sqlite_clinic.app, "t1")
    first = browser.get("/caseload").text
    assert caseload_codes(first) == ["ZZ-2"]
    assert 'href="/caseload?page=2"' in first and "Patients 1–1 of 2" in first
    assert caseload_codes(browser.get("/caseload?page=2").text) == ["CODE-P1"]
    assert browser.get("/caseload?page=0").status_code == 422


def test_get_pages_never_compute_analytics(sqlite_clinic: Clinic) -> None:
    assert sqlite_clinic.app.state.analytics.drain()  # the start-up sweep is done first
    patient = add_patient(
        sqlite_clinic, "NEW-1", "t1", [(date(2026, 1, 1), wai(5)), (date(2026, 1, 8), wai(1))]
    )
    browser = login(sqlite_clinic.app, "t1")
    assert "New answers are being analysed." in browser.get("/caseload").text
    assert browser.get(f"/patients/{patient}").status_code == 200
    assert browser.get(f"/patients/{patient}/chart.svg").status_code == 200
    with sqlite_clinic.db.read() as s:
        assert repo.get_patient(s, patient).alerts_stale  # still stale: nobody computed
        assert list(repo.alerts_of(s, [patient])) == []


def test_patient_page_leads_with_status_and_groups_open_episodes(
    sqlite_clinic: Clinic, caseload: dict[str, int]
) -> None:
    html = login(sqlite_clinic.app, "t1").get(f"/patients/{caseload['act']}").text
    main = html.split('<main id="main"', 1)[1]
    status = main.index('id="status"')
    assert status < main.index('id="alerts"') < main.index('id="traj-h"')
    panel = main[status : main.index('id="alerts"')]
    assert "▲</span> Act" in panel and "fell from 4.25 to 2.00" in panel
    assert "Since session 3." in panel and "3 open alerts." in panel
    alerts = main[main.index('id="alerts"') : main.index('id="traj-h"')]
    open_part, folded = alerts.split('<details class="folded"', 1)
    # grouped by kind: the group with the high episode first, newest first within it
    assert re.findall(r"<h3 id=\"group-\d+-h\"><span lang=\"en\">([^<]+)<", open_part) == [
        "Ruptures",
        "Below the cutoff",
    ]
    assert open_part.index("Possible rupture") < open_part.index("Earlier rupture")
    card = open_part.split("Possible rupture", 1)[1].split("</article>", 1)[0]
    assert "since session 3" in card and "escalated at session 3" in card
    assert 'Why:</strong> <span lang="en">WAI-SR total fell from 4.25 to 2.00 at session 3.' in card
    assert 'Guidance:</strong> <span lang="en">Guidance on rupture.' in card
    assert '<details class="stats"><summary>Statistics</summary>' in card
    assert "Statistics of rupture at session 3: threshold 0.44." in card
    sources = card.split('<details class="sources">', 1)[1].split("</details>", 1)[0]
    assert "<li>Safran &amp; Muran (2000)</li>" in sources
    assert 'name="action" value="acknowledge"' in card and 'value="resolve"' in card
    # the ended episode is folded away, with its close reason
    assert "Reported rupture" not in open_part
    assert "1 ended or resolved alert" in folded
    assert "Repaired at session 2: back to 4.10." in folded
    # the chart: methods named, the band's threshold from the stored rci_drop episode
    assert "Reliable drop (RCI)" in html and "0.44 below the mean of the earlier" in html


def test_resolved_episodes_are_folded_and_steady_patients_say_so(
    sqlite_clinic: Clinic, caseload: dict[str, int]
) -> None:
    browser = login(sqlite_clinic.app, "t1")
    with sqlite_clinic.db.read() as s:
        (alert,) = repo.alerts_of(s, [caseload["watch"]])
    browser.get(f"/patients/{caseload['watch']}")
    done = browser.post(f"/alerts/{alert.id}", {"action": "resolve", "note": "talked it over"})
    assert done.status_code == 200
    alerts = done.text.split('id="alerts"', 1)[1].split('id="traj-h"', 1)[0]
    assert "No open alerts." in alerts
    folded = alerts.split('<details class="folded"', 1)[1]
    assert "resolved" in folded and "talked it over" in folded
    steady = browser.get(f"/patients/{caseload['steady']}").text
    assert "●</span> Steady" in steady and "No open alerts." in steady
    assert "folded-alerts" not in steady


def test_straight_lined_sessions_are_marked_in_the_scores_table(
    sqlite_clinic: Clinic, caseload: dict[str, int]
) -> None:
    html = login(sqlite_clinic.app, "t1").get(f"/patients/{caseload['act']}").text
    table = html.split('id="scores"', 1)[1].split("</table>", 1)[0]
    assert "straight-lined sessions (the same answer on every item)" in table
    assert '<th scope="col">Answer pattern</th>' in table
    rows = table.split("<tr")[2:]  # past the header row
    marked = ["straight-lined" in row for row in rows]
    assert marked == [True, False, True]  # all 4s, alternating 4/5, all 2s
    assert "4 on every WAI-SR item" in rows[0] and "2 on every WAI-SR item" in rows[2]


def test_therapist_form_refreshes_the_patients_analytics(sqlite_clinic: Clinic) -> None:
    browser = login(sqlite_clinic.app, "t1")
    patient = sqlite_clinic.patients["p1"]
    browser.post(f"/patients/{patient}/sessions")
    with sqlite_clinic.db.write() as s:
        session = repo.sessions_of(s, patient)[0]
        s.get(Patient, patient).alerts_stale = True  # type: ignore[union-attr]
    url = f"/sessions/{session.id}/therapist-form"
    browser.get(url)
    ok = browser.post(url, {"psq_1": "1", "psq_2": "3", "psq_3": "5"}, follow_redirects=False)
    assert ok.status_code == 303
    with sqlite_clinic.db.read() as s:
        assert not repo.get_patient(s, patient).alerts_stale


def test_caseload_reads_the_totals_on_sqlite_and_postgresql(clinic: Clinic) -> None:
    """The totals come out of the JSON scores in SQL (JSON_EXTRACT / ->>) on both backends."""
    add_patient(clinic, "BOTH-1", "t1", [(date(2026, 1, 5), wai(4)), (date(2026, 1, 12), wai(3))])
    srs = add_patient(
        clinic, "BOTH-SRS", "t1", [(date(2026, 1, 6), {f"srs_{i}": "9" for i in range(1, 5)})], SRS
    )
    html = login(clinic.app, "t1").get("/caseload").text
    row = html.split("BOTH-1</a></th>", 1)[1].split("</tr>", 1)[0]
    assert "3.00 of 5" in row and "sessions 1–2: 4.00, 3.00" in row
    assert "36.0 of 40" in html.split(f'href="/patients/{srs}"', 1)[1].split("</tr>", 1)[0]


def test_caseload_order_counts_and_filters_in_sql_on_sqlite_and_postgresql(clinic: Clinic) -> None:
    """The database orders and cuts the page: status (a patient not analysed yet counts as
    steady), then the last session (most recent first, none last), then the code."""
    day = date(2026, 4, 1)
    watch = add_patient(clinic, "W-1", "t1", [(day, wai(4))])
    store(clinic, watch, [episode(watch, "rating_discrepancy", 1)])
    act = add_patient(clinic, "A-1", "t1", [(date(2026, 1, 1), wai(4))])
    store(clinic, act, [episode(act, "rupture", 1, severity="high")])
    add_patient(clinic, "S-B", "t1", [(day, wai(4))])  # never analysed: steady
    add_patient(clinic, "S-A", "t1", [(day, wai(5))])  # same day: by code
    add_patient(clinic, "S-OLD", "t1", [(date(2025, 12, 1), wai(5))])
    admin = login(clinic.app, "admin")
    t1 = clinic.users["t1"]
    page = admin.get(f"/caseload?therapist={t1}").text
    assert caseload_codes(page) == ["A-1", "W-1", "S-A", "S-B", "S-OLD", "CODE-P1"]
    assert "6 patients, sorted by status" in page  # matching the filter
    steady = admin.get(f"/caseload?therapist={t1}&status=steady").text
    assert caseload_codes(steady) == ["S-A", "S-B", "S-OLD", "CODE-P1"]
    assert "4 patients, sorted by status" in steady
    everyone = admin.get("/caseload").text
    assert caseload_codes(everyone) == ["A-1", "W-1", "S-A", "S-B", "S-OLD", "CODE-P1", "CODE-P2"]
    summary = everyone.split('id="status-summary">', 1)[1].split('<span class="small">', 1)[0]
    words = " ".join(re.sub(r"<[^>]+>", " ", summary).split())
    assert words == "7 patients: ▲ Act 1, ◆ Watch 1, ● Steady 5.", summary
    assert admin.get("/caseload?therapist=99999999999").status_code == 422
