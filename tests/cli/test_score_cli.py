"""The ``alliance`` console script, run as a user runs it (a real subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ALLIANCE = str(Path(sys.executable).parent / "alliance")


def run(*args: str | Path, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ALLIANCE_HOME": str(home), "COLUMNS": "200"}
    return subprocess.run(
        [ALLIANCE, *map(str, args)], capture_output=True, text=True, env=env, timeout=120
    )


@pytest.fixture()
def answers_csv(tmp_path: Path) -> Path:
    rng = np.random.default_rng(3)
    table = pd.DataFrame(
        {
            "patient_id": ["a", "b", "c"],
            **{f"wai_sr_{i}": rng.integers(1, 6, 3) for i in range(1, 13)},
        }
    )
    table.loc[1, "wai_sr_1"] = 5  # so the hand check below has a known value
    path = tmp_path / "answers.csv"
    table.to_csv(path, index=False)
    return path


def test_scores_a_csv_with_the_inferred_instrument(answers_csv: Path, alliance_home: Path) -> None:
    done = run("score", answers_csv, home=alliance_home)
    assert done.returncode == 0, done.stderr
    out = pd.read_csv(pd.io.common.StringIO(done.stdout))
    assert list(out.columns) == [
        "patient_id",
        "wai_sr_goal",
        "wai_sr_task",
        "wai_sr_bond",
        "wai_sr_total",
        "wai_sr_status",
    ]
    source = pd.read_csv(answers_csv)
    expected_total = source.filter(like="wai_sr_").mean(axis=1)
    np.testing.assert_allclose(out.wai_sr_total, expected_total)


@pytest.mark.parametrize("fmt", ["json", "parquet", "csv"])
def test_output_formats(answers_csv: Path, alliance_home: Path, tmp_path: Path, fmt: str) -> None:
    target = tmp_path / f"scores.{fmt}"
    done = run(
        "score", answers_csv, "-i", "wai_sr", "--metric", "sum", "-o", target, home=alliance_home
    )
    assert done.returncode == 0, done.stderr
    if fmt == "json":
        records = json.loads(target.read_text())
        assert len(records) == 3 and 12 <= records[0]["wai_sr_total"] <= 60
    else:
        back = pd.read_parquet(target) if fmt == "parquet" else pd.read_csv(target)
        assert back.wai_sr_total.between(12, 60).all()


def test_invalid_answers_exit_2_with_every_problem_and_no_traceback(
    answers_csv: Path, alliance_home: Path
) -> None:
    table = pd.read_csv(answers_csv)
    table.loc[0, "wai_sr_2"] = 9
    table.loc[2, "wai_sr_12"] = 0
    table.to_csv(answers_csv, index=False)
    done = run("score", answers_csv, home=alliance_home)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert "row 1, column wai_sr_2: value 9: outside the scale 1..5" in done.stderr
    assert "row 3, column wai_sr_12: value 0: outside the scale 1..5" in done.stderr
    assert done.stdout == ""


def test_flag_mode_scores_the_rest(answers_csv: Path, alliance_home: Path) -> None:
    table = pd.read_csv(answers_csv)
    table.loc[0, "wai_sr_2"] = 9
    table.to_csv(answers_csv, index=False)
    done = run("score", answers_csv, "--errors", "flag", "--format", "json", home=alliance_home)
    assert done.returncode == 0
    records = json.loads(done.stdout)
    assert records[0]["wai_sr_total"] is None
    assert records[0]["wai_sr_status"] == "not scored: wai_sr_2=9 outside the scale 1..5"
    assert records[1]["wai_sr_status"] == "ok"
    assert "1 of 3 row(s) have scores not computed" in done.stderr


def test_column_map_and_missing_file(
    answers_csv: Path, alliance_home: Path, tmp_path: Path
) -> None:
    table = pd.read_csv(answers_csv).rename(
        columns={f"wai_sr_{i}": f"item{i}" for i in range(1, 13)}
    )
    renamed = tmp_path / "renamed.xlsx"
    table.to_excel(renamed, index=False)
    mapping = ",".join(f"item{i}=wai_sr_{i}" for i in range(1, 13))
    done = run("score", renamed, "-i", "wai_sr", "--map", mapping, home=alliance_home)
    assert done.returncode == 0, done.stderr
    missing = run("score", tmp_path / "nope.csv", home=alliance_home)
    assert missing.returncode == 2 and "no such file" in missing.stderr
    unknown = run("score", renamed, home=alliance_home)
    assert unknown.returncode == 2 and "cannot tell the instrument" in unknown.stderr


def test_unverified_key_is_announced(tmp_path: Path, alliance_home: Path) -> None:
    path = tmp_path / "wai.csv"
    pd.DataFrame({f"wai_{i}": [4] for i in range(1, 37)}).to_csv(path, index=False)
    done = run("score", path, home=alliance_home)
    assert done.returncode == 0
    assert "warning:" in done.stderr and "unverified" in done.stderr


def test_large_csv_is_scored_in_chunks_with_the_same_result(
    tmp_path: Path, alliance_home: Path
) -> None:
    # Above 20 MB the command reads in chunks with a progress bar; results must not change.
    rng = np.random.default_rng(11)
    n = 700_000
    table = pd.DataFrame({f"haq2_{i}": rng.integers(1, 7, n, dtype=np.int8) for i in range(1, 20)})
    path = tmp_path / "big.csv"
    table.to_csv(path, index=False)
    assert path.stat().st_size > 20_000_000
    target = tmp_path / "big.parquet"
    done = run("score", path, "-o", target, home=alliance_home)
    assert done.returncode == 0, done.stderr
    scored = pd.read_parquet(target)
    assert len(scored) == n
    reversed_items = [4, 8, 11, 16, 19]
    keyed = table.astype(float)
    for i in reversed_items:
        keyed[f"haq2_{i}"] = 7 - keyed[f"haq2_{i}"]
    np.testing.assert_allclose(scored.haq2_total, keyed.mean(axis=1), rtol=1e-12)


def test_chunked_scoring_reports_errors_from_every_chunk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import typer

    from alliance.cli import score as score_cli

    monkeypatch.setattr(score_cli, "CHUNK_ROWS", 2)
    table = pd.DataFrame({f"srs_{i}": [5.0] * 5 for i in range(1, 5)})
    table.loc[0, "srs_1"] = 11  # first chunk
    table.loc[4, "srs_3"] = -1  # third chunk
    path = tmp_path / "srs.csv"
    table.to_csv(path, index=False)
    options = {"instrument": None, "form": None, "metric": None, "errors": "raise", "columns": None}
    with pytest.raises(typer.Exit) as stopped:
        score_cli._score_in_chunks(path, options)
    assert stopped.value.exit_code == 2
    err = capsys.readouterr().err
    assert "row 1, column srs_1: value 11: outside the scale 0..10" in err
    assert "row 5, column srs_3: value -1: outside the scale 0..10" in err
    flagged = score_cli._score_in_chunks(path, {**options, "errors": "flag"})
    assert flagged.srs_total.isna().tolist() == [True, False, False, False, True]
    assert flagged.srs_total.iloc[1] == 20.0
