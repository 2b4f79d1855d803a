"""Read and write response and score tables: CSV/TSV, Excel, SPSS, Stata, Parquet, JSON.

The format follows the file suffix. A file that cannot be read raises
:class:`InputFileError` with the path and the reason, never a library traceback.

Example
-------
>>> import pandas as pd, tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "answers.csv"
>>> write_table(pd.DataFrame({"wai_sr_1": [4]}), path)
>>> read_table(path)["wai_sr_1"].tolist()
[4]
"""

from __future__ import annotations

import csv
import io
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import pandas as pd

OutputFormat = Literal["csv", "json", "parquet"]

READERS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".txt": "tsv",
    ".xlsx": "excel",
    ".xlsm": "excel",
    ".xls": "excel",
    ".sav": "spss",
    ".zsav": "spss",
    ".dta": "stata",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".json": "json",
}
WRITERS: dict[str, OutputFormat] = {".csv": "csv", ".json": "json", ".parquet": "parquet"}


class InputFileError(ValueError):
    """A file that does not exist, has an unknown suffix, or cannot be parsed."""


def input_kind(path: Path) -> str:
    """The reader for a path, from its suffix."""
    kind = READERS.get(path.suffix.lower())
    if kind is None:
        known = ", ".join(sorted(READERS))
        raise InputFileError(f"{path}: unknown file type {path.suffix!r} (known: {known})")
    return kind


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a whole table from any supported file."""
    path = Path(path)
    kind = input_kind(path)
    if not path.is_file():
        raise InputFileError(f"{path}: no such file")
    try:
        if kind in ("csv", "tsv"):
            _check_header(path, "\t" if kind == "tsv" else ",")
            return pd.read_csv(path, sep="\t" if kind == "tsv" else ",")
        if kind == "excel":
            return _read_excel(path)
        if kind == "spss":
            return pd.read_spss(path, convert_categoricals=False)
        if kind == "stata":
            return pd.read_stata(path, convert_categoricals=False)
        if kind == "parquet":
            return pd.read_parquet(path)
        return pd.read_json(path, orient="records")
    except InputFileError:
        raise
    except Exception as exc:  # every parser has its own exception types
        raise InputFileError(f"{path}: cannot be read as {kind}: {_first_line(exc)}") from None


def read_csv_chunks(path: str | Path, rows: int) -> Iterator[pd.DataFrame]:
    """Read a CSV/TSV file in chunks of ``rows`` rows (for progress on large files)."""
    path = Path(path)
    kind = input_kind(path)
    if kind not in ("csv", "tsv"):
        raise InputFileError(f"{path}: chunked reading is for CSV/TSV files")
    sep = "\t" if kind == "tsv" else ","
    _check_header(path, sep)
    try:
        yield from pd.read_csv(path, sep=sep, chunksize=rows)
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise InputFileError(f"{path}: cannot be read as {kind}: {_first_line(exc)}") from None


def write_table(
    frame: pd.DataFrame, path: str | Path | None, fmt: OutputFormat | None = None
) -> None:
    """Write a table to ``path`` (format from ``fmt`` or the suffix) or, if None, to stdout."""
    if path is None:
        fmt = fmt or "csv"
        if fmt == "parquet":
            raise InputFileError("parquet output needs a file: give -o FILE.parquet")
        sys.stdout.write(_to_text(frame, fmt))
        return
    path = Path(path)
    fmt = fmt or WRITERS.get(path.suffix.lower())
    if fmt is None:
        raise InputFileError(f"{path}: cannot tell the output format; use .csv/.json/.parquet")
    if fmt == "parquet":
        frame.to_parquet(path, index=False)
    else:
        path.write_text(_to_text(frame, fmt), encoding="utf-8")


def _to_text(frame: pd.DataFrame, fmt: OutputFormat) -> str:
    if fmt == "json":
        return frame.to_json(orient="records", force_ascii=False) + "\n"
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False)
    return buffer.getvalue()


def _check_header(path: Path, sep: str) -> None:
    """Refuse duplicate column names, which pandas would silently rename (x, x.1)."""
    with path.open(newline="", encoding="utf-8-sig") as handle:
        try:
            header = next(csv.reader(handle, delimiter=sep), [])
        except (csv.Error, UnicodeDecodeError) as exc:
            raise InputFileError(f"{path}: cannot read the header: {exc}") from None
    _refuse_duplicates(path, [h.strip() for h in header])


def _read_excel(path: Path) -> pd.DataFrame:
    raw = pd.read_excel(path, header=None)
    if raw.empty:
        return pd.DataFrame()
    header = [str(h).strip() for h in raw.iloc[0]]
    _refuse_duplicates(path, header)
    body = raw.iloc[1:].reset_index(drop=True)
    body.columns = pd.Index(header)
    return body.infer_objects()


def _refuse_duplicates(path: Path, header: list[str]) -> None:
    seen: dict[str, int] = {}
    for position, name in enumerate(header, start=1):
        if name in seen:
            raise InputFileError(
                f"{path}: duplicate column {name!r} (columns {seen[name]} and {position})"
            )
        seen[name] = position


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
