"""`alliance model` and `alliance therapists`, run as the console script (issue 11)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from alliance.research.multilevel import lmm
from alliance.research.multilevel.analyses import therapist_effects, within_between

ALLIANCE = str(Path(sys.executable).parent / "alliance")
SESSIONS = Path(__file__).parents[1] / "data" / "multilevel" / "synthetic_alliance_sessions.csv"


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([ALLIANCE, *map(str, args)], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return pd.read_csv(SESSIONS)


def test_model_json_is_the_library_fit(table: pd.DataFrame) -> None:
    formula = "symptoms ~ session + (1 | therapist/patient)"
    done = run("model", SESSIONS, "--formula", formula, "--format", "json")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    fit = lmm(formula, table)
    assert out["loglik"] == pytest.approx(fit.loglik, rel=1e-12)
    assert [r["name"] for r in out["fixed"]] == ["(Intercept)", "session"]
    assert out["fixed"][1]["estimate"] == pytest.approx(fit.coef["session"], rel=1e-12)
    assert out["varcorr"][-1]["group"] == "Residual"


def test_model_text_with_profile_intervals() -> None:
    done = run("model", SESSIONS, "--formula", "symptoms ~ 1 + (1 | therapist)", "--profile")
    assert done.returncode == 0, done.stderr
    assert "Profile-likelihood 95% intervals" in done.stdout
    assert "sd_(Intercept)|therapist" in done.stdout


def test_within_between_from_the_command_line(table: pd.DataFrame) -> None:
    done = run(
        "model", SESSIONS, "--outcome", "symptoms", "--predictor", "alliance",
        "--therapist", "therapist", "--time", "session", "--lagged", "--format", "json",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    ours = within_between(table, "symptoms", "alliance", patient="patient",
                          therapist="therapist", time="session", lagged=True)  # fmt: skip
    rows = {r["effect"]: r for r in out["within_between"]}
    assert rows["within"]["estimate"] == pytest.approx(ours.table.loc["within", "estimate"])
    assert out["reading"].startswith("Within patients")


def test_therapists_report_and_caterpillar_chart(table: pd.DataFrame, tmp_path: Path) -> None:
    chart = tmp_path / "caterpillar.png"
    done = run("therapists", SESSIONS, "--score", "symptoms", "--patient", "patient",
               "--chart", chart, "--format", "json")  # fmt: skip
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    ours = therapist_effects(table, "symptoms", therapist="therapist", patient="patient")
    assert out["icc"][0]["estimate"] == pytest.approx(ours.icc.iloc[0]["estimate"])
    assert len(out["therapists"]) == 25
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("model", SESSIONS, "--formula", "symptoms ~ 1 + (1 | nobody)"), "nobody"),
        (("model", SESSIONS), "give either --formula"),
        (("model", SESSIONS, "--outcome", "symptoms", "--predictor", "alliance",
          "--covariates", "intake"), "covariates[0]: column 'intake'"),
        (("model", SESSIONS, "--formula", "symptoms ~ 1 + (1 | therapist)", "-f", "xml"),
         "--format must be text or json"),
        (("therapists", SESSIONS, "--score", "wai"), "score: column 'wai'"),
        (("therapists", SESSIONS, "--score", "symptoms", "--chart", "c.gif"), "chart files"),
    ],
)  # fmt: skip
def test_bad_input_exits_2_naming_the_rule(args: tuple[str | Path, ...], message: str) -> None:
    done = run(*args)
    assert done.returncode == 2
    assert message in done.stderr and "Traceback" not in done.stderr


def test_power_curve_from_the_command_line() -> None:
    args = ["--patients", "10,40", "--no-therapists", "--between", "0.4", "--effect", "between"]
    done = run("power", *args, "--sims", "20", "--seed", "1", "--format", "json")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert [row["patients"] for row in out["curve"]] == [10, 40]
    assert out["curve"][1]["power"] >= out["curve"][0]["power"]
    assert out["design"]["therapists"] is None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--therapists", "1"), "--therapists: out of range"),
        (("--patient-icc", "2"), "--patient-icc: out of range"),
        (("--therapists", "5,10", "--patients", "4,5"), "one of --therapists"),
        (("--patients", "ten"), "--patients: whole numbers"),
        (("--effect", "sideways"), "--effect must be within or between"),
    ],
)
def test_power_bad_designs_exit_2(args: tuple[str, ...], message: str) -> None:
    done = run("power", *args)
    assert done.returncode == 2 and message in done.stderr
