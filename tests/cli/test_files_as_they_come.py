"""Files and keys as researchers have them (issue 17): installed keys seen by every command
and the Python API, unknown forms, the same answer checks in ``ruptures``/``alerts`` as in
``score``, identifiers as text, semicolons and decimal commas, legacy encodings, header case,
Excel whole numbers, ``n/a`` cells, repeated headers, one row-number convention, typed
values in messages and output, ``--version`` and ``alliance.meta`` after ``import alliance``.

Each test runs the real console script (or the public Python API) on a real file.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from instrument_files import keyed_calpas

import alliance
from alliance.instruments import UnknownFormError, get_instrument
from alliance.io.tables import read_table
from alliance.scoring import ScoringError, score

from .test_score_cli import run


def sessions(items: str = "wai_sr", n_items: int = 12, patients: int = 2) -> pd.DataFrame:
    """A small long table: ``patients`` x 4 sessions with steady whole-number answers."""
    rows = []
    for p in range(1, patients + 1):
        for session in range(1, 5):
            answers = {f"{items}_{i}": 4 for i in range(1, n_items + 1)}
            rows.append({"patient_id": f"00{p}", "session": session, **answers})
    return pd.DataFrame(rows)


# -- one way to find an instrument -----------------------------------------------------------
def test_an_installed_key_is_seen_by_the_python_api_and_ruptures(
    alliance_home: Path, tmp_path: Path
) -> None:
    assert get_instrument("calpas").missing_key  # shipped without a key
    table = tmp_path / "calpas.csv"
    sessions("calpas", 24).to_csv(table, index=False)
    refused = run("ruptures", table, "-i", "calpas", home=alliance_home)
    assert refused.returncode == 2 and "cannot be scored" in refused.stderr
    assert run("instruments", "add", keyed_calpas(tmp_path), home=alliance_home).returncode == 0

    # Another process (a fresh interpreter, as a notebook would be) sees the key at once.
    probe = "import alliance; print(alliance.get_instrument('calpas').missing_key)"
    seen = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        env={"ALLIANCE_HOME": str(alliance_home), "PATH": ""},
        check=True,
    )
    assert seen.stdout.strip() == "None"
    done = run("ruptures", table, "-i", "calpas", home=alliance_home)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("patient_id,method,rupture_session")


def test_a_broken_installed_file_stops_every_command_naming_it(alliance_home: Path) -> None:
    folder = alliance_home / "instruments"
    folder.mkdir(parents=True)
    (folder / "wai_sr.toml").write_text('id = "wai_sr"\nname = 3\n')
    for args in (("instruments", "list"), ("simulate", "--patients", "1")):
        done = run(*args, home=alliance_home)
        assert done.returncode == 2, args
        assert "wai_sr.toml" in done.stderr and "Traceback" not in done.stderr


def test_an_unknown_form_is_a_clear_error(alliance_home: Path, tmp_path: Path) -> None:
    with pytest.raises(UnknownFormError, match=r"no form 'observer' \(forms: client, therapist\)"):
        alliance.score(sessions(), "wai_sr", form="observer")
    table = tmp_path / "answers.csv"
    sessions().to_csv(table, index=False)
    done = run("score", table, "--form", "observer", home=alliance_home)
    assert done.returncode == 2 and "no form 'observer'" in done.stderr
    assert "Traceback" not in done.stderr


# -- every input checked the same way --------------------------------------------------------
@pytest.mark.parametrize("command", ["ruptures", "alerts"])
def test_monitoring_commands_check_answers_as_score_does(
    alliance_home: Path, tmp_path: Path, command: str
) -> None:
    table = sessions()
    table["psq_1"] = 0
    table.loc[2, "wai_sr_5"] = 7  # data row 3
    table.loc[5, "psq_1"] = 2  # a yes/no item: data row 6
    path = tmp_path / "sessions.csv"
    table.to_csv(path, index=False)
    done = run(command, path, home=alliance_home)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "row 3, column wai_sr_5: value 7: outside the scale 1..5" in done.stderr
    assert "row 6, column psq_1: value 2: outside the scale 0..1" in done.stderr
    flagged = run(command, path, "--errors", "flag", home=alliance_home)
    assert flagged.returncode == 0, flagged.stderr
    assert "1 invalid PSQ rupture answer(s) left out" in flagged.stderr
    assert "1 of 8 session(s) could not be scored" in flagged.stderr


def test_identifiers_stay_text(alliance_home: Path, tmp_path: Path) -> None:
    path = tmp_path / "answers.csv"
    sessions().to_csv(path, index=False)
    assert read_table(path)["patient_id"].tolist()[:1] == ["001"]
    as_json = tmp_path / "answers.json"
    sessions().to_json(as_json, orient="records")
    assert read_table(as_json)["patient_id"].tolist()[:1] == ["001"]
    done = run("score", path, home=alliance_home)
    assert done.returncode == 0 and done.stdout.splitlines()[1].startswith("001,1,")


def test_semicolons_decimal_commas_and_windows_encoding(
    alliance_home: Path, tmp_path: Path
) -> None:
    table = sessions(patients=1)
    table.insert(1, "therapist_id", "Dr. Müller")
    table["outcome"] = ["12,5", "13,0", "11,25", "14,0"]
    path = tmp_path / "export.csv"
    path.write_bytes(table.to_csv(sep=";", index=False).encode("cp1252"))
    back = read_table(path)
    assert back["therapist_id"].iloc[0] == "Dr. Müller"
    assert back["outcome"].tolist() == [12.5, 13.0, 11.25, 14.0]
    done = run("score", path, "--format", "json", home=alliance_home)
    assert done.returncode == 0, done.stderr
    assert "not UTF-8; read as Windows Western (cp1252)" in done.stderr
    first = json.loads(done.stdout)[0]
    assert first["therapist_id"] == "Dr. Müller" and first["wai_sr_total"] == 4


def test_a_txt_file_with_commas_and_headers_in_any_case(
    alliance_home: Path, tmp_path: Path
) -> None:
    table = sessions(patients=1).rename(columns=lambda c: c.upper().replace("_", " ", 1))
    assert "WAI SR_1" in table.columns
    path = tmp_path / "answers.txt"
    table.to_csv(path, index=False)
    assert alliance.score(read_table(path))["wai_sr_total"].tolist() == [4.0] * 4
    done = run("score", path, home=alliance_home)
    assert done.returncode == 0, done.stderr


def test_excel_whole_numbers_stay_whole(alliance_home: Path, tmp_path: Path) -> None:
    table = sessions(patients=1).astype({"session": float})
    table.loc[3, "wai_sr_2"] = None  # a gap makes pandas hold the column as floats
    path = tmp_path / "answers.xlsx"
    table.to_excel(path, index=False)
    back = read_table(path)
    assert back["session"].tolist() == [1, 2, 3, 4] and back["session"].dtype == "int64"
    done = run("score", path, home=alliance_home)
    assert done.returncode == 0, done.stderr
    assert [line.split(",")[1] for line in done.stdout.splitlines()[1:]] == ["1", "2", "3", "4"]


def test_na_cells_are_missing_answers_and_said_so(alliance_home: Path, tmp_path: Path) -> None:
    table = sessions(patients=1).astype({"wai_sr_3": object})
    table.loc[1, "wai_sr_3"] = "n/a"
    table.loc[2, "wai_sr_3"] = "NA"
    path = tmp_path / "answers.csv"
    table.to_csv(path, index=False)
    back = read_table(path)
    assert back.attrs["missing_markers"] == {"wai_sr_3": 2}
    assert back["wai_sr_3"].isna().tolist() == [False, True, True, False]
    done = run("score", path, home=alliance_home)
    assert done.returncode == 0, done.stderr
    assert "2 cell(s) marked as missing (n/a, NA, ...) read as unanswered: wai_sr_3 (2)" in (
        done.stderr
    )
    status = pd.read_csv(io.StringIO(done.stdout))["wai_sr_status"].tolist()
    noted = "ok (n/a in wai_sr_3, read as missing)"
    assert status == ["ok", noted, noted, "ok"]
    assert "row(s) have scores not computed" not in done.stderr
    scored = score(back, "wai_sr")  # the Python API says the same
    assert scored["wai_sr_status"].tolist() == status


def test_na_cells_are_named_beside_a_missing_score(alliance_home: Path, tmp_path: Path) -> None:
    table = sessions(patients=1).astype({"wai_sr_1": object, "wai_sr_2": object})
    table.loc[0, ["wai_sr_1", "wai_sr_2"]] = "n/a"
    table.loc[0, "wai_sr_3"] = None
    path = tmp_path / "answers.csv"
    table.to_csv(path, index=False)
    done = run("score", path, home=alliance_home)
    assert done.returncode == 0, done.stderr
    first = pd.read_csv(io.StringIO(done.stdout))["wai_sr_status"][0]
    assert first.endswith("; n/a in wai_sr_1, wai_sr_2, read as missing"), first
    assert "items missing (at most" in first
    assert "1 of 4 row(s) have scores not computed" in done.stderr


def test_a_repeated_header_is_refused_in_python_too(tmp_path: Path) -> None:
    path = tmp_path / "answers.csv"
    text = sessions(patients=1).to_csv(index=False).replace("wai_sr_6", "wai_sr_5", 1)
    path.write_text(text)
    by_pandas = pd.read_csv(path)  # pandas renames the second header wai_sr_5.1
    assert "wai_sr_5.1" in by_pandas.columns
    with pytest.raises(ScoringError, match=r"'wai_sr_5.1' looks like a repeat of 'wai_sr_5'"):
        alliance.score(by_pandas, "wai_sr")


def test_row_numbers_are_data_rows_in_python_and_the_shell(
    alliance_home: Path, tmp_path: Path
) -> None:
    table = sessions(patients=1)
    table.loc[2, "wai_sr_4"] = 9
    path = tmp_path / "answers.csv"
    table.to_csv(path, index=False)
    with pytest.raises(ScoringError) as caught:
        alliance.score(read_table(path), "wai_sr")
    shell = run("score", path, home=alliance_home)
    expected = "row 3, column wai_sr_4: value 9: outside the scale 1..5"
    assert expected in str(caught.value) and expected in shell.stderr


# -- output, flags, version, imports ----------------------------------------------------------
def test_simulate_json_has_iso_dates_and_whole_answers(alliance_home: Path) -> None:
    done = run("simulate", "--patients", "2", "--seed", "3", "--format", "json", home=alliance_home)
    assert done.returncode == 0, done.stderr
    first = json.loads(done.stdout)[0]
    assert len(first["date"]) == 10 and first["date"][4] == "-"  # 2025-01-27
    assert isinstance(first["wai_sr_1"], int)


def test_version_and_meta_after_a_plain_import(alliance_home: Path) -> None:
    version = run("--version", home=alliance_home)
    assert version.returncode == 0 and version.stdout == f"alliance {alliance.__version__}\n"
    probe = "import alliance; print(alliance.meta.rma.__module__)"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.stdout.strip() == "alliance.research.meta.models", done.stderr


# -- every subcommand on the same broken files -------------------------------------------------
def broken_files(folder: Path) -> dict[str, Path]:
    """One file per way a file goes wrong."""
    good = sessions()
    files = {}
    bad_value = good.copy()
    bad_value.loc[2, "wai_sr_5"] = 7
    files["invalid answer"] = folder / "invalid.csv"
    bad_value.to_csv(files["invalid answer"], index=False)
    files["repeated header"] = folder / "repeated.csv"
    files["repeated header"].write_text(good.to_csv(index=False).replace("wai_sr_6", "wai_sr_5"))
    files["empty"] = folder / "empty.csv"
    files["empty"].write_text("")
    files["not a table"] = folder / "binary.csv"
    files["not a table"].write_bytes(bytes(range(256)) * 4)
    files["unknown suffix"] = folder / "answers.docx"
    files["unknown suffix"].write_text("x")
    files["missing"] = folder / "nowhere.csv"
    return files


@pytest.mark.parametrize("command", ["score", "ruptures", "alerts", "meta"])
def test_every_file_command_refuses_broken_files_cleanly(
    alliance_home: Path, tmp_path: Path, command: str
) -> None:
    for problem, path in broken_files(tmp_path).items():
        done = run(command, path, home=alliance_home)
        where = f"{command} on {problem}"
        assert done.returncode == 2, (where, done.stderr)
        assert done.stderr.startswith("error:"), where
        assert "Traceback" not in done.stderr and "Error:" not in done.stderr, where
        if problem == "invalid answer" and command != "meta":
            assert "row 3, column wai_sr_5: value 7: outside the scale 1..5" in done.stderr
        if problem == "repeated header":
            assert "duplicate column 'wai_sr_5'" in done.stderr, where


def test_a_missing_extra_is_named_with_its_install_command(
    capsys: pytest.CaptureFixture[str],
) -> None:
    import typer

    from alliance.cli.common import need_extra

    need_extra("clinic", "fastapi")  # installed here: nothing happens
    with pytest.raises(typer.Exit) as stopped:
        need_extra("clinic", "a_module_nobody_installed")
    assert stopped.value.exit_code == 2
    assert "pip install 'alliance[clinic]'" in capsys.readouterr().err  # brackets kept
