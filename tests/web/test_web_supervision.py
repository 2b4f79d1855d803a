"""The supervisor view shows shrunken estimates with intervals, not raw means (issue 11):
the alliance level of each therapist from a multilevel model of the team's sessions, the
rupture and repair rates from an empirical-Bayes beta-binomial, and a plain sentence when
the data cannot separate the therapists."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from webclinic import SECRET, login

from alliance.store import repo
from alliance.web import reports
from alliance.web.app import create_app
from alliance.web.demo import DEMO_PASSWORD, fill_demo


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    path = tmp_path_factory.mktemp("supervision") / "clinic.db"
    app = create_app(f"sqlite:///{path}", secret_key=SECRET)
    fill_demo(app.state.db, therapists=6, patients=36, seed=11)
    yield app
    app.state.db.dispose()


def test_admin_team_summary_is_shrunken_with_intervals(demo) -> None:  # type: ignore[no-untyped-def]
    with demo.state.db.read() as s:
        admin = repo.user_by_name(s, "admin")
        rows = reports.team_summary(s, admin)
    assert len(rows) == 6 and all(r["sessions"] > 0 for r in rows)
    for r in rows:
        assert r["level_lower"] <= r["level"] <= r["level_upper"]
        assert r["rupture_rate_lower"] <= r["rupture_rate"] <= r["rupture_rate_upper"]
        assert 0.0 <= r["rupture_rate"] <= 100.0
    # a multilevel estimate of the level relative to the team: they centre near 0 and are
    # pulled in, never spread wider than the therapists' intervals allow
    levels = np.array([r["level"] for r in rows])
    assert abs(levels.mean()) < max(r["level_upper"] - r["level_lower"] for r in rows)


def test_supervision_page_says_whether_therapists_can_be_told_apart(demo) -> None:  # type: ignore[no-untyped-def]
    page = login(demo, "admin", DEMO_PASSWORD).get("/supervision")
    assert page.status_code == 200
    assert "shrunken estimates with 95% intervals" in page.text
    assert ("cannot separate these therapists" in page.text) or (
        "therapists differ from the team mean" in page.text
    )
    assert "Alliance vs team (95% interval)" in page.text


def test_a_team_of_one_gets_no_comparison(tmp_path: Path) -> None:
    app = create_app(f"sqlite:///{tmp_path / 'one.db'}", secret_key=SECRET)
    fill_demo(app.state.db, therapists=1, patients=6, seed=3)
    page = login(app, "supervisor1", DEMO_PASSWORD).get("/supervision")
    assert page.status_code == 200
    assert "Too few therapists or sessions to compare therapists." in page.text
    app.state.db.dispose()
