"""The researcher's psychometric report on the clinic's de-identified answers (issue 12):
the same report as ``alliance psychometrics``, for researchers and admins only, audited,
with a clear error for a bad measure and a downloadable page with its charts."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from webclinic import SECRET, login

from alliance.research.psychometrics.report import psychometrics_report
from alliance.store.models import AuditEntry
from alliance.web import reports
from alliance.web.app import create_app
from alliance.web.demo import DEMO_PASSWORD, fill_demo


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    path = tmp_path_factory.mktemp("psychometrics") / "clinic.db"
    app = create_app(f"sqlite:///{path}", secret_key=SECRET)
    fill_demo(app.state.db, therapists=4, patients=40, seed=5)
    yield app
    app.state.analytics.stop()
    app.state.db.dispose()


def test_the_researcher_sees_the_report_of_the_de_identified_answers(demo) -> None:  # type: ignore[no-untyped-def]
    researcher = login(demo, "researcher", DEMO_PASSWORD)
    page = researcher.get("/research/psychometrics?instrument=wai_sr")
    assert page.status_code == 200
    with demo.state.db.read() as s:
        rows = reports.psychometrics_rows(
            reports.deidentify(reports.repo.responses_frame(s), SECRET), "wai_sr"
        )
        audit = s.scalars(sa.select(AuditEntry).where(AuditEntry.entity == "psychometrics")).all()
    want = psychometrics_report(rows, "wai_sr", session="session")
    assert f"{want.n} complete administrations" in page.text
    assert f"{want.reliability.loc['total', 'alpha']:.3f}" in page.text
    assert "3 correlated factors" in page.text
    assert "patient_id" not in rows.columns and "research_id" not in rows.columns
    assert audit and audit[-1].detail == f"{len(rows)} administrations"
    download = researcher.get("/research/psychometrics/report.html?instrument=wai_sr")
    assert download.status_code == 200 and download.text.count("<svg") == 2
    assert "attachment" in download.headers["content-disposition"]


def test_only_researchers_and_admins_and_the_measure_is_checked(demo) -> None:  # type: ignore[no-untyped-def]
    therapist = login(demo, "therapist1", DEMO_PASSWORD)
    assert therapist.get("/research/psychometrics").status_code == 403
    admin = login(demo, "admin", DEMO_PASSWORD)
    bad = admin.get("/research/psychometrics?instrument=nope")
    assert bad.status_code == 422 and "instrument" in bad.text
    few = admin.get("/research/psychometrics?instrument=haq2")  # nobody answered it
    assert few.status_code == 200 and "Too few complete answers" in few.text
    assert admin.get("/research/psychometrics/report.html?instrument=haq2").status_code == 409
