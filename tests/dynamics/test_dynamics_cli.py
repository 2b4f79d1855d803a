"""``alliance simulate``, ``alliance ruptures`` and ``alliance alerts`` as a user runs them."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ALLIANCE = str(Path(sys.executable).parent / "alliance")


def run(*args: str | Path, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ALLIANCE_HOME": str(home), "COLUMNS": "200"}
    return subprocess.run(
        [ALLIANCE, *map(str, args)], capture_output=True, text=True, env=env, timeout=120
    )


@pytest.fixture(scope="module")
def clinic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("clinic")
    result = run(
        "simulate",
        "--therapists",
        "6",
        "--patients",
        "6",
        "--seed",
        "3",
        "--therapist-form",
        "--post-session",
        "-o",
        folder / "sessions.csv",
        "--truth",
        folder / "truth.csv",
        "--ruptures",
        folder / "injected.csv",
        home=folder / "home",
    )
    assert result.returncode == 0, result.stderr
    return folder


def test_simulate_writes_sessions_truth_and_ruptures(clinic: Path) -> None:
    sessions = pd.read_csv(clinic / "sessions.csv")
    truth = pd.read_csv(clinic / "truth.csv")
    injected = pd.read_csv(clinic / "injected.csv")
    assert sessions["patient_id"].nunique() == 36
    assert len(truth) == len(sessions)
    assert {"patient_id", "session", "size", "repaired"} <= set(injected.columns)


def test_ruptures_from_item_level_file(clinic: Path, tmp_path: Path) -> None:
    out = tmp_path / "events.csv"
    result = run(
        "ruptures",
        clinic / "sessions.csv",
        "-m",
        "strauss2006",
        "-m",
        "self_report",
        "-o",
        out,
        home=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    events = pd.read_csv(out)
    assert set(events["method"]) == {"strauss2006", "self_report"}
    assert set(events["repaired"]) <= {"yes", "no", "not yet"}
    # the same events as the API on the scored table, with the norms the CLI estimated
    # automatically (36 patients with items >= 30)
    from alliance.dynamics import detect_ruptures, estimate_norms
    from alliance.simulate import simulate_scored

    scored = simulate_scored(6, 6, seed=3, therapist_form=True, post_session_questions=True)
    items = [f"wai_sr_{i}" for i in range(1, 13)]
    norms = estimate_norms(scored.sessions, "wai_sr_total", item_columns=items)
    assert "norms for wai_sr_total" in result.stderr
    api = detect_ruptures(scored.sessions, "wai_sr_total", "strauss2006", norms=norms)
    assert len(api) == (events["method"] == "strauss2006").sum()


def test_alerts_with_therapist_rating_and_estimated_norms(clinic: Path, tmp_path: Path) -> None:
    result = run(
        "alerts",
        clinic / "sessions.csv",
        "--therapist-score",
        "t_wai_sr_total",
        "--norms",
        "data",
        "--format",
        "json",
        home=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    alerts = pd.read_json(io.StringIO(result.stdout))
    assert {"reason", "guidance", "sources", "severity"} <= set(alerts.columns)
    assert "rupture" in set(alerts["kind"])
    assert {"opened_session", "closed_session", "state", "close_reason"} <= set(alerts.columns)
    assert "norms for wai_sr_total" in result.stderr
    # one episode per event: never two alerts opened at the same session for one drop
    opened = alerts.groupby(["patient_id", "opened_session", "kind"]).size()
    assert opened.max() == 1


def test_flat_series_gives_no_rupture_from_the_default_command(tmp_path: Path) -> None:
    path = tmp_path / "flat.csv"
    flat = [4.5, 4.6, 4.4, 4.5, 4.6, 4.4, 4.5, 4.6, 4.4, 4.5]
    pd.DataFrame({"patient_id": "p", "session": range(1, 11), "wai_sr_total": flat}).to_csv(
        path, index=False
    )
    for command in ("ruptures", "alerts"):
        result = run(command, path, "--score", "wai_sr_total", "--format", "json", home=tmp_path)
        assert result.returncode == 0, result.stderr
        assert pd.read_json(io.StringIO(result.stdout)).empty, command
        assert "measurement error unknown" in result.stderr
    result = run("ruptures", path, "--score", "wai_sr_total", "--prospective", home=tmp_path)
    assert "prospective detection" in result.stderr


def test_scored_input_with_score_column(tmp_path: Path) -> None:
    path = tmp_path / "scored.csv"
    pd.DataFrame(
        {
            "patient_id": ["a"] * 5,
            "session": range(1, 6),
            "srs_total": [38.0, 38.5, 30.0, 38.0, 39.0],
        }
    ).to_csv(path, index=False)
    result = run("alerts", path, "--score", "srs_total", home=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "below_cutoff" in result.stdout and "30" in result.stdout


def test_invalid_input_exits_2_with_a_message(tmp_path: Path) -> None:
    no_session = tmp_path / "bad.csv"
    pd.DataFrame({"patient_id": ["a"], "wai_sr_total": [4.0]}).to_csv(no_session, index=False)
    result = run("ruptures", no_session, home=tmp_path)
    assert result.returncode == 2 and "session" in result.stderr
    assert "Traceback" not in result.stderr
    result = run("ruptures", tmp_path / "missing.csv", home=tmp_path)
    assert result.returncode == 2 and "no such file" in result.stderr
    dup = tmp_path / "dup.csv"
    pd.DataFrame({"patient_id": ["a", "a"], "session": [1, 1], "x": [4.0, 3.0]}).to_csv(dup)
    result = run("ruptures", dup, "--score", "x", "-m", "vshape", home=tmp_path)
    assert result.returncode == 2 and "unknown method" in result.stderr


def test_help_shows_examples(tmp_path: Path) -> None:
    result = run("alerts", "--help", home=tmp_path)
    assert result.returncode == 0 and "Examples" in result.stdout
