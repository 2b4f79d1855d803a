"""Round trips through real files in every supported format, and readable read errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyreadstat
import pytest

from alliance import score
from alliance.io.tables import InputFileError, read_csv_chunks, read_table, write_table


@pytest.fixture()
def responses() -> pd.DataFrame:
    rng = np.random.default_rng(7)
    items = {f"wai_sr_{i}": rng.integers(1, 6, 8).astype(float) for i in range(1, 13)}
    table = pd.DataFrame({"patient_id": [f"p{i}" for i in range(8)], "session": 1, **items})
    table.loc[3, "wai_sr_5"] = np.nan
    return table


def write_any(frame: pd.DataFrame, path: Path) -> None:
    """Write with each format's own library (not with our writer)."""
    suffix = path.suffix
    if suffix == ".csv":
        frame.to_csv(path, index=False)
    elif suffix == ".tsv":
        frame.to_csv(path, sep="\t", index=False)
    elif suffix == ".xlsx":
        frame.to_excel(path, index=False)
    elif suffix == ".sav":
        pyreadstat.write_sav(frame, str(path))
    elif suffix == ".dta":
        frame.to_stata(path, write_index=False)
    elif suffix == ".parquet":
        frame.to_parquet(path, index=False)
    elif suffix == ".json":
        frame.to_json(path, orient="records")


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".xlsx", ".sav", ".dta", ".parquet", ".json"])
def test_every_format_reads_back_and_scores_the_same(
    responses: pd.DataFrame, tmp_path: Path, suffix: str
) -> None:
    path = tmp_path / f"answers{suffix}"
    write_any(responses, path)
    back = read_table(path)
    assert back["patient_id"].tolist() == responses["patient_id"].tolist()
    np.testing.assert_array_equal(
        back.filter(like="wai_sr_").to_numpy(float), responses.filter(like="wai_sr_").to_numpy()
    )
    assert back.index.tolist() == list(range(1, len(responses) + 1))  # data rows from 1
    pd.testing.assert_series_equal(
        score(back, "wai_sr").wai_sr_total,
        score(responses, "wai_sr").wai_sr_total,
        check_index=False,
    )


@pytest.mark.parametrize("suffix", [".csv", ".json", ".parquet"])
def test_written_scores_read_back(responses: pd.DataFrame, tmp_path: Path, suffix: str) -> None:
    scored = score(responses, "wai_sr")
    path = tmp_path / f"scores{suffix}"
    write_table(scored, path)
    back = read_table(path)
    np.testing.assert_allclose(back.wai_sr_total, scored.wai_sr_total)
    assert back.wai_sr_status.astype(str).tolist() == scored.wai_sr_status.astype(str).tolist()


def test_duplicate_header_is_refused_before_pandas_renames_it(tmp_path: Path) -> None:
    path = tmp_path / "dup.csv"
    path.write_text("patient_id,wai_sr_1,wai_sr_1\np1,3,4\n")
    with pytest.raises(InputFileError, match=r"duplicate column 'wai_sr_1' \(columns 2 and 3\)"):
        read_table(path)


def test_duplicate_header_in_excel_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "dup.xlsx"
    pd.DataFrame([[1, 2]], columns=["a", "b"]).rename(columns={"b": "a"}).to_excel(
        path, index=False
    )
    with pytest.raises(InputFileError, match="duplicate column 'a'"):
        read_table(path)


def test_unreadable_files_name_the_path_and_reason(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="no such file"):
        read_table(tmp_path / "missing.csv")
    with pytest.raises(InputFileError, match=r"unknown file type '\.docx'"):
        read_table(tmp_path / "notes.docx")
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"not a parquet file")
    with pytest.raises(InputFileError, match="cannot be read as parquet"):
        read_table(broken)
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("a,b\n1,2\n3,4,5,6\n")
    with pytest.raises(InputFileError, match="cannot be read as csv"):
        read_table(ragged)


def test_chunks_cover_every_row(responses: pd.DataFrame, tmp_path: Path) -> None:
    path = tmp_path / "answers.csv"
    responses.to_csv(path, index=False)
    chunks = list(read_csv_chunks(path, rows=3))
    assert [len(c) for c in chunks] == [3, 3, 2]


def test_parquet_to_stdout_is_refused(responses: pd.DataFrame) -> None:
    with pytest.raises(InputFileError, match="parquet output needs a file"):
        write_table(responses, None, "parquet")
