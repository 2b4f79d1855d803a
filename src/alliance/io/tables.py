"""Read and write response and score tables: CSV/TSV, Excel, SPSS, Stata, Parquet, JSON.

The format follows the file suffix. A file that cannot be read raises
:class:`InputFileError` with the path and the reason, never a library traceback.

Example
-------
>>> import pandas as pd, tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "answers.csv"
>>> write_table(pd.DataFrame({"wai_sr_1": [4]}), path)
>>> read_table(path)["wai_sr_1"].to_dict()  # rows numbered from 1, as in messages
{1: 4}
"""

from __future__ import annotations

import codecs
import csv
import io
import sys
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

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
    """Read a whole table from any supported file. Its rows are numbered as data rows
    from 1 (the header is not counted), so the row an error names (``alliance.score`` on
    this table, or any ``alliance`` command) is the same in Python and in the shell."""
    frame = _read_any(Path(path))
    frame.index = pd.RangeIndex(1, len(frame) + 1)
    marked = frame.attrs.get("marked_missing")
    if marked:  # positions from 0 as read; rows from 1 like every message
        frame.attrs["marked_missing"] = {c: [p + 1 for p in rows] for c, rows in marked.items()}
    return frame


def _read_any(path: Path) -> pd.DataFrame:
    kind = input_kind(path)
    if not path.is_file():
        raise InputFileError(f"{path}: no such file")
    try:
        if kind in ("csv", "tsv"):
            return _read_delimited(path, kind)
        if kind == "excel":
            return _read_excel(path)
        if kind == "spss":
            return pd.read_spss(path, convert_categoricals=False)
        if kind == "stata":
            return pd.read_stata(path, convert_categoricals=False)
        if kind == "parquet":
            return pd.read_parquet(path)
        frame = pd.read_json(path, orient="records", dtype=False)  # "007" stays "007"
        return frame.infer_objects()
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
    options = delimited_options(path, kind)
    start = 1
    try:
        for chunk in pd.read_csv(path, chunksize=rows, **options):
            chunk.index = pd.RangeIndex(start, start + len(chunk))  # as read_table numbers
            start += len(chunk)
            yield as_read(chunk, options)
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
    frame = as_written(frame)
    if fmt == "json":
        return frame.to_json(orient="records", force_ascii=False, date_format="iso") + "\n"
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False)
    return buffer.getvalue()


def as_written(frame: pd.DataFrame) -> pd.DataFrame:
    """The table as a text file should show it: dates without a time of day as ISO dates
    (JSON would otherwise get epoch milliseconds).

    >>> t = pd.DataFrame({"d": pd.to_datetime(["2025-01-27", None])})
    >>> as_written(t).to_json(orient="records")
    '[{"d":"2025-01-27"},{"d":null}]'
    """
    changed = {}
    for name, column in frame.items():
        if pd.api.types.is_datetime64_any_dtype(column.dtype):
            known = column.dropna()
            if bool((known == known.dt.normalize()).all()):
                text = column.dt.strftime("%Y-%m-%d").astype(object)
                changed[str(name)] = text.where(column.notna(), None)
    return frame.assign(**changed) if changed else frame


# Identifier columns are text ("007" stays "007"): these names, and any ending in "_id".
ID_COLUMNS = frozenset({"id", "patient", "therapist", "client", "rater", "study", "site"})
SEPARATORS = (",", ";", "\t", "|")


def whole_numbers(frame: pd.DataFrame, columns: Iterable[str]) -> pd.DataFrame:
    """``columns`` as integers where every given value is a whole number (answers with a
    gap, which pandas holds as floats, written as ``4`` rather than ``4.0``).

    >>> whole_numbers(pd.DataFrame({"a": [4.0, None]}), ["a"])["a"].tolist()
    [4, <NA>]
    """
    changed = {}
    for name in columns:
        column = frame[name]
        known = column.dropna()
        if pd.api.types.is_float_dtype(column.dtype) and bool((known == known.round()).all()):
            changed[name] = column.astype("Int64")
    return frame.assign(**changed) if changed else frame


def is_id_column(name: str) -> bool:
    """Whether a header names an identifier (kept as text when reading).

    >>> is_id_column("patient_id"), is_id_column("Therapist"), is_id_column("wai_sr_1")
    (True, True, False)
    """
    lowered = name.strip().lower()
    return lowered in ID_COLUMNS or lowered.endswith("_id")


def delimited_options(path: Path, kind: str) -> dict[str, Any]:
    """How to read a delimited text file as it comes: its encoding (UTF-8, else the
    Windows Western code page cp1252 of European spreadsheet exports), its separator (the
    commonest of , ; tab | in the header; a .tsv is tab-separated), a decimal comma with
    ``;`` (see :func:`as_read`), identifier columns as text. Repeated headers are refused
    (pandas would rename them ``x.1``)."""
    encoding = _encoding_of(path)
    with path.open(newline="", encoding=encoding) as handle:
        first = handle.readline().lstrip("\ufeff")
    sep = "\t" if kind == "tsv" and "\t" in first else max(SEPARATORS, key=first.count)
    if not any(c in first for c in SEPARATORS):
        sep = "\t" if kind == "tsv" else ","
    header = [h.strip() for h in next(csv.reader([first], delimiter=sep), [])]
    _refuse_duplicates(path, header)
    return {
        "sep": sep,
        "encoding": "utf-8-sig" if encoding == "utf-8" else encoding,
        "dtype": {h: str for h in header if is_id_column(h)},
        "keep_default_na": False,  # "n/a" and the like are counted by as_read
        "na_values": [""],
    }


def _encoding_of(path: Path) -> str:
    """``utf-8`` if the whole file decodes as UTF-8, else ``cp1252``."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    with path.open("rb") as handle:
        try:
            while block := handle.read(1 << 20):
                decoder.decode(block)
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            return "cp1252"
    return "utf-8"


# Cell texts that mean "no answer" in the files researchers have (SPSS, R, Excel exports).
MISSING_MARKERS = frozenset({"n/a", "na", "#n/a", "nan", "null", "none", "missing", ".", "-"})


def _read_delimited(path: Path, kind: str) -> pd.DataFrame:
    options = delimited_options(path, kind)
    return as_read(pd.read_csv(path, **options), options)


def as_read(frame: pd.DataFrame, options: Mapping[str, Any]) -> pd.DataFrame:
    """A delimited table as its author meant it: headers without surrounding spaces; a
    marked gap (``n/a``, ``NA``, ...) missing, and counted per column in ``attrs
    ["missing_markers"]`` (their row positions in ``attrs["marked_missing"]``) so it is
    reported rather than merged with empty cells; numbers
    with a decimal comma (``;``-separated files) as numbers. Only columns that pandas
    left as text are looked at again."""
    frame.columns = pd.Index([str(c).strip() for c in frame.columns])
    markers: dict[str, int] = {}
    positions: dict[str, list[int]] = {}
    for name in frame.columns:
        column = frame[name]
        if is_id_column(name) or not pd.api.types.is_string_dtype(column.dtype):
            continue
        text = column.str.strip()
        marked = text.str.lower().isin(MISSING_MARKERS)
        if marked.any():
            markers[name] = int(marked.sum())
            positions[name] = [i for i, flag in enumerate(marked.tolist()) if flag]
            text = text.mask(marked)
        numbers = _numbers(text, decimal_comma=options["sep"] == ";")
        frame[name] = numbers if numbers is not None else column.mask(marked)
    frame.attrs["read_as"] = {"separator": options["sep"], "encoding": options["encoding"]}
    frame.attrs["missing_markers"] = markers
    frame.attrs["marked_missing"] = positions
    return frame


def _numbers(text: pd.Series, decimal_comma: bool) -> pd.Series | None:
    """The column as numbers if every given cell is one (``4,5`` too where a decimal
    comma is expected), else None."""
    given = text.notna()
    numbers = pd.to_numeric(text, errors="coerce")
    if decimal_comma and not bool((numbers.notna() == given).all()):
        numbers = pd.to_numeric(text.str.replace(",", ".", regex=False), errors="coerce")
    return numbers if bool((numbers.notna() == given).all()) and given.any() else None


def _read_excel(path: Path) -> pd.DataFrame:
    raw = pd.read_excel(path, header=None)
    if raw.empty:
        return pd.DataFrame()
    header = [str(h).strip() for h in raw.iloc[0]]
    _refuse_duplicates(path, header)
    body = raw.iloc[1:].reset_index(drop=True)
    body.columns = pd.Index(header)
    body = body.infer_objects()
    for name in body.columns:  # Excel keeps every number as a float: 1.0 for session 1
        column = body[name]
        if is_id_column(name):
            body[name] = column.map(_cell_text, na_action="ignore")
        elif pd.api.types.is_float_dtype(column.dtype):
            known = column.dropna()
            if len(known) and bool((known == known.round()).all()):
                body[name] = (
                    column.astype("Int64") if column.isna().any() else column.astype("int64")
                )
    return body


def _cell_text(value: object) -> str:
    """An Excel cell as text (a whole number without its ``.0``)."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


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
