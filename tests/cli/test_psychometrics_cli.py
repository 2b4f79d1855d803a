"""`alliance psychometrics`, run as the console script (issue 12): the JSON is the library's
report, the HTML page carries the charts, bad input exits 2 naming the cause."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from alliance.research.psychometrics.report import instrument_scales, psychometrics_report

ALLIANCE = str(Path(sys.executable).parent / "alliance")
ITEMS = Path(__file__).parents[1] / "data" / "psychometrics" / "synthetic_waisr_items.csv"


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([ALLIANCE, *map(str, args)], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def answers(tmp_path_factory: pytest.TempPathFactory) -> Path:
    scales = instrument_scales("wai_sr")
    names = {f"{s}{k + 1}": c for s in ("goal", "task", "bond") for k, c in enumerate(scales[s])}
    table = pd.read_csv(ITEMS).drop(columns=["id"]).rename(columns=names)
    table["site"] = np.repeat(["a", "b"], 300)
    path = tmp_path_factory.mktemp("psy") / "answers.csv"
    table.to_csv(path, index=False)
    return path


def test_json_is_the_library_report(answers: Path) -> None:
    done = run("psychometrics", answers, "--group", "site", "--format", "json")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    want = psychometrics_report(pd.read_csv(answers), "wai_sr", group="site")
    assert out["instrument"] == "wai_sr" and out["n"] == 600
    models = {r["model"]: r for r in out["models"]}
    assert models["3 correlated factors"]["chisq"] == pytest.approx(
        want.models.loc["3 correlated factors", "chisq"], rel=1e-12
    )
    assert out["verdict"] == want.verdict
    assert [r["level"] for r in out["invariance"]] == ["configural", "metric", "scalar", "strict"]


def test_text_and_html_report(answers: Path, tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    done = run("psychometrics", answers, "-i", "wai_sr", "--html", page)
    assert done.returncode == 0, done.stderr
    assert "Reliability" in done.stdout and "3 correlated factors" in done.stdout
    text = page.read_text(encoding="utf-8")
    assert text.count("<svg") == 2 and "Answers per item" in text and "<table" in text


def test_mapped_columns_are_renamed(tmp_path: Path) -> None:
    scales = instrument_scales("wai_sr")
    names = {f"{s}{k + 1}": c for s in ("goal", "task", "bond") for k, c in enumerate(scales[s])}
    spec = ",".join(f"{old}={new}" for old, new in names.items())
    done = run("psychometrics", ITEMS, "-i", "wai_sr", "--map", spec, "--format", "json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["n"] == 600


def test_ordinal_fits_by_wlsmv(answers: Path) -> None:
    done = run("psychometrics", answers, "--ordinal", "--format", "json")
    assert done.returncode == 0, done.stderr
    models = {r["model"]: r for r in json.loads(done.stdout)["models"]}
    assert {r["estimator"] for r in models.values()} == {"WLSMV"}
    want = psychometrics_report(pd.read_csv(answers), "wai_sr", ordinal=True)
    assert models["one factor"]["chisq"] == pytest.approx(
        want.models.loc["one factor", "chisq"], rel=1e-12
    )


def test_a_users_own_model(answers: Path) -> None:
    spec = "bond=wai_sr_3,wai_sr_5,wai_sr_7,wai_sr_9;rest=" + ",".join(
        f"wai_sr_{n}" for n in (1, 2, 4, 6, 8, 10, 11, 12)
    )
    done = run("psychometrics", answers, "-i", "wai_sr", "--model", spec, "--format", "json")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert list(out["scales"]) == ["bond", "rest"]
    models = {r["model"]: r for r in out["models"]}
    assert models["2 correlated factors"]["df"] == 53  # 78 moments - 25 parameters
    for bad in ("bond", "bond=;x=a", "bond=a;bond=b"):
        failed = run("psychometrics", answers, "--model", bad)
        assert failed.returncode == 2 and "--model" in failed.stderr


@pytest.mark.parametrize(
    ("change", "args", "message"),
    [
        (lambda t: t.drop(columns=["wai_sr_7"]), ["-i", "wai_sr"], "wai_sr_7"),
        (lambda t: t.assign(wai_sr_5=2), [], "wai_sr_5"),
        (lambda t: t.assign(wai_sr_2=t["wai_sr_2"].where(t.index > 0, 9)), [], "wai_sr_2"),
        (lambda t: t, ["--group", "clinic"], "clinic"),
        (lambda t: t, ["-i", "nope"], "nope"),
        (lambda t: t, ["--format", "xml"], "--format"),
        (lambda t: t.rename(columns=lambda c: c.upper()), [], "instrument"),
    ],
)
def test_bad_input_exits_2_naming_the_cause(
    answers: Path,
    tmp_path: Path,
    change,
    args: list[str],
    message: str,  # type: ignore[no-untyped-def]
) -> None:
    path = tmp_path / "bad.csv"
    change(pd.read_csv(answers)).to_csv(path, index=False)
    done = run("psychometrics", path, *args)
    assert done.returncode == 2, done.stdout
    assert message in done.stderr and "Traceback" not in done.stderr
