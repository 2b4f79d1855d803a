"""Checks on a response table before scoring: structure first, then every cell.

Cell checks run column by column (a dozen columns, vectorised over all rows) and produce a
boolean mask of invalid cells plus, only where needed, a table of the offending values.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

from alliance.scoring.keys import CompiledKey, FloatArray

BoolArray = npt.NDArray[np.bool_]

MAX_LISTED = 20


class ScoringError(ValueError):
    """A table that cannot be scored as a whole (missing or duplicate columns, no key)."""


class ScoringInputError(ScoringError):
    """Invalid answers. ``issues`` lists every offending row, column, value and rule."""

    def __init__(self, instrument_id: str, issues: pd.DataFrame) -> None:
        self.instrument_id = instrument_id
        self.issues = issues
        super().__init__(describe_issues(instrument_id, issues))


def describe_issues(instrument_id: str, issues: pd.DataFrame, limit: int = MAX_LISTED) -> str:
    """One readable message listing the first ``limit`` issues and the total count."""
    lines = [
        f"  row {r.row}, column {r.column}: value {shown_value(r.value)}: {r.rule}"
        for r in issues.head(limit).itertuples(index=False)
    ]
    more = len(issues) - limit
    if more > 0:
        lines.append(f"  ... and {more} more")
    head = f"{len(issues)} invalid answer(s) for instrument {instrument_id!r}:"
    return "\n".join([head, *lines])


def shown_value(value: object) -> str:
    """A cell as its author typed it: numbers plainly (``7``, not ``np.int64(7)`` or
    ``7.0``), text in quotes so that spaces and look-alike digits show.

    >>> shown_value(np.float64(7.0)), shown_value(np.int64(6)), shown_value(4.5), shown_value("４")
    ('7', '6', '4.5', "'４'")
    """
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, float, np.integer, np.floating)):
        number = float(value)
        return str(int(number)) if number.is_integer() else repr(number)
    return repr(value)


def column_name(name: object) -> str:
    """A column header as item columns are matched: case, surrounding spaces and inner
    runs of spaces or hyphens do not matter.

    >>> column_name(" WAI-SR 5 "), column_name("wai_sr_5")
    ('wai_sr_5', 'wai_sr_5')
    """
    return re.sub(r"[\s\-]+", "_", str(name).strip()).lower()


def prepare_columns(
    frame: pd.DataFrame, key: CompiledKey, columns: Mapping[str, str] | None
) -> pd.DataFrame:
    """Apply a column mapping, match item columns as :func:`column_name` does, and check
    the table has each item column exactly once."""
    if columns:
        unknown = [c for c in columns if c not in frame.columns]
        if unknown:
            raise ScoringError(f"column map names column(s) not in the table: {unknown}")
        frame = frame.rename(columns=dict(columns))
    duplicated = sorted({str(c) for c in frame.columns[frame.columns.duplicated()]})
    if duplicated:
        raise ScoringError(f"duplicate column(s): {duplicated} (each column must appear once)")
    frame = _match_item_names(frame, key)
    missing = [c for c in key.columns if c not in frame.columns]
    if missing:
        raise ScoringError(
            f"missing item column(s) for {key.instrument.id!r}: {missing} "
            f"(expected {key.columns[0]} .. {key.columns[-1]}; map other names with columns=)"
        )
    return frame


def _match_item_names(frame: pd.DataFrame, key: CompiledKey) -> pd.DataFrame:
    """Rename headers such as ``WAI_SR_1`` to the item column; refuse two headers for one
    item, including pandas' ``wai_sr_5.1`` for a repeated ``wai_sr_5`` header."""
    items = set(key.columns)
    found: dict[str, list[str]] = {}
    for header in frame.columns:
        name = column_name(header)
        repeated = re.fullmatch(r"(.+)\.\d+", name)
        if repeated and repeated.group(1) in items and name not in items:
            raise ScoringError(
                f"column {header!r} looks like a repeat of {repeated.group(1)!r} (pandas "
                "renames a repeated header so): each item column must appear once"
            )
        if name in items:
            found.setdefault(name, []).append(str(header))
    clashes = {item: names for item, names in found.items() if len(names) > 1}
    if clashes:
        item, names = next(iter(sorted(clashes.items())))
        raise ScoringError(f"columns {names} all name item {item!r}: each item must appear once")
    renames = {names[0]: item for item, names in found.items() if names[0] != item}
    return frame.rename(columns=renames) if renames else frame


@dataclass(frozen=True)
class CheckedAnswers:
    """The answers as a float matrix with the outcome of every cell check."""

    values: FloatArray  # (n, p), Fortran order, NaN where unanswered or invalid
    invalid: BoolArray  # (n, p)
    gap_rows: BoolArray  # (n,) rows with any unanswered, invalid or not-asked cell
    not_asked: BoolArray | None  # (n, p) skipped by design (asked_if), or None
    issues: pd.DataFrame | None  # position, row, column, value, rule per invalid cell

    @property
    def complete(self) -> bool:
        """Every cell answered and valid (the fast case)."""
        return not self.gap_rows.any()


def check_answers(frame: pd.DataFrame, key: CompiledKey) -> CheckedAnswers:
    """Convert the item columns to floats and check every cell against its item's scale."""
    n, p = len(frame), len(key.columns)
    items = frame[list(key.columns)]
    rules: dict[int, list[tuple[BoolArray, str]]] = {}
    # Fortran order: each item column is one contiguous run, checked (and later reversed)
    # in place. Plain NumPy columns convert in one step; others column by column.
    if all(isinstance(d, np.dtype) and d.kind in "iuf" for d in items.dtypes):
        values = np.array(items.to_numpy(dtype=np.float64), order="F", copy=True)
        integer_typed = [d.kind in "iu" for d in items.dtypes]
    else:
        values = np.empty((n, p), dtype=np.float64, order="F")
        integer_typed = [
            _convert_column(items.iloc[:, j], values[:, j], rules, j) for j in range(p)
        ]

    def raw(j: int, rows: npt.NDArray[np.intp]) -> npt.NDArray[np.object_]:
        return items.iloc[rows, j].to_numpy(dtype=object)

    return _check_cells(values, integer_typed, rules, key, frame.index, raw)


def check_values(answers: npt.ArrayLike, key: CompiledKey) -> CheckedAnswers:
    """Check an (n, p) matrix of answers in the key's column order (NaN or None where
    unanswered) with the same rules as :func:`check_answers`, without building a table.

    Rows are labelled 0..n-1 in ``issues``. Numbers take the fast path; a matrix holding
    text is converted column by column, and text that is not a number is an issue.

    >>> from alliance.scoring import compile_key
    >>> key = compile_key("srs")
    >>> check_values([[8, 9, 10, 7], [8, 9, 11, 7]], key).issues[["row", "column", "rule"]]
       row column                rule
    0    1  srs_3  outside the scale 0..10
    """
    raw_matrix = np.asarray(answers)
    if raw_matrix.ndim != 2 or raw_matrix.shape[1] != len(key.columns):
        raise ScoringError(
            f"answers: must be a matrix with {len(key.columns)} columns "
            f"({key.columns[0]} .. {key.columns[-1]}), not shape {raw_matrix.shape}"
        )
    n, p = raw_matrix.shape
    rules: dict[int, list[tuple[BoolArray, str]]] = {}
    if raw_matrix.dtype.kind in "iuf":
        values = np.array(raw_matrix, dtype=np.float64, order="F", copy=True)
    else:
        values = np.empty((n, p), dtype=np.float64, order="F")
        for j in range(p):
            _convert_column(pd.Series(raw_matrix[:, j], dtype=object), values[:, j], rules, j)

    def raw(j: int, rows: npt.NDArray[np.intp]) -> npt.NDArray[np.object_]:
        cells: npt.NDArray[np.object_] = raw_matrix[rows, j].astype(object)
        return cells

    return _check_cells(values, [False] * p, rules, key, pd.RangeIndex(n), raw)


def _check_cells(
    values: FloatArray,
    integer_typed: Sequence[bool],
    rules: dict[int, list[tuple[BoolArray, str]]],
    key: CompiledKey,
    labels: pd.Index,
    raw: Callable[[int, npt.NDArray[np.intp]], npt.NDArray[np.object_]],
) -> CheckedAnswers:
    """Check the converted answers (``values``, Fortran order, owned by this call) cell by
    cell; ``rules`` holds what conversion already found, ``raw(j, rows)`` gives the answers
    as given, for the issue table."""
    n, p = values.shape
    gap_rows = np.zeros(n, dtype=bool)
    invalid = np.zeros((n, p), dtype=bool, order="F")
    for j in range(p):
        rules.setdefault(j, []).extend(
            _check_column(values[:, j], gap_rows, key, j, integer_typed[j])
        )
        for mask, _rule in rules[j]:
            invalid[:, j] |= mask
    not_asked = _skip_logic(values, invalid, key)
    if not_asked is not None:
        answered_anyway = not_asked & ~np.isnan(values)
        if answered_anyway.any():
            for index in np.flatnonzero(answered_anyway.any(axis=0)).tolist():
                rules[index].append((answered_anyway[:, index], "answered although not asked"))
            invalid |= answered_anyway
        gap_rows |= not_asked.any(axis=1)
    issues = None
    if any(rules.values()) and invalid.any():
        issues = _issue_table(key, rules, labels, raw)
        values[invalid] = np.nan
        gap_rows |= invalid.any(axis=1)
    return CheckedAnswers(values, invalid, gap_rows, not_asked, issues)


def _convert_column(
    raw: pd.Series, out: FloatArray, rules: dict[int, list[tuple[BoolArray, str]]], j: int
) -> bool:
    """Write a text, boolean or nullable column into ``out`` as floats (NaN for gaps and
    for what is not a number, which is recorded as a broken rule); True if integer-typed."""
    if pd.api.types.is_bool_dtype(raw.dtype) or not pd.api.types.is_numeric_dtype(raw.dtype):
        coerced = pd.to_numeric(raw, errors="coerce")
        not_number = (coerced.isna() & raw.notna()).to_numpy(dtype=bool)
        if not_number.any():
            rules[j] = [(not_number, "not a number")]
        raw = coerced
    out[:] = raw.to_numpy(dtype=np.float64, na_value=np.nan)
    return pd.api.types.is_integer_dtype(raw.dtype) and not raw.hasnans


def _check_column(
    out: FloatArray, gap_rows: BoolArray, key: CompiledKey, j: int, integer_typed: bool
) -> list[tuple[BoolArray, str]]:
    """Mark one item column's gaps in ``gap_rows`` and return the rules its cells break."""
    problems: list[tuple[BoolArray, str]] = []
    low, high, step = key.low[j], key.high[j], key.step[j]
    gaps = None if integer_typed else np.isnan(out)
    if gaps is not None:
        gap_rows |= gaps
    on_grid = not np.isnan(step) and step == 1 and float(low).is_integer()
    if on_grid and not _whole_numbers_off_scale(out, low, high, gaps).any():
        return problems  # the common case, settled in a few passes
    outside = (out < low) | (out > high)  # NaN compares False: gaps pass
    if outside.any():
        problems.append((outside, f"outside the scale {_fmt(low)}..{_fmt(high)}"))
    if not np.isnan(step) and not (integer_typed and on_grid):
        steps = out - low if step == 1 else (out - low) / step
        # A whole-number scale is checked exactly ("4.0000000001" is not 4); finer steps keep
        # a tolerance for their binary representation (0.1 is not exact).
        tolerance = 0.0 if step == 1 else 1e-9
        off_grid = np.abs(steps - np.rint(steps)) > tolerance  # NaN compares False: gaps pass
        if off_grid.any():
            rule = "not a whole number" if step == 1 else f"not a multiple of {_fmt(step)}"
            problems.append((off_grid & ~outside, rule))
    return problems


def _whole_numbers_off_scale(
    values: FloatArray, low: float, high: float, gaps: BoolArray | None
) -> BoolArray:
    """Cells that are not a whole number in low..high (gaps excluded), in four passes.

    Rounding then clipping leaves a value unchanged exactly when it is a whole number on
    the scale; NaN never equals itself, so gaps are flagged and then removed.
    """
    snapped = np.rint(values)
    np.clip(snapped, low, high, out=snapped)
    off: BoolArray = snapped != values
    if gaps is not None:
        off ^= gaps  # gaps are all flagged above, so XOR clears exactly them
    return off


def _skip_logic(values: FloatArray, invalid: BoolArray, key: CompiledKey) -> BoolArray | None:
    """Cells that were not asked because a filter item had another answer (or none)."""
    if not key.has_skip_logic:
        return None
    not_asked = np.zeros(values.shape, dtype=bool)
    for item, condition, equals in key.asked_if:
        filter_answer = values[:, condition]
        unusable = np.isnan(filter_answer) | invalid[:, condition]
        not_asked[:, item] = unusable | (filter_answer != equals)
    return not_asked


def _issue_table(
    key: CompiledKey,
    rules: dict[int, list[tuple[BoolArray, str]]],
    labels: pd.Index,
    raw: Callable[[int, npt.NDArray[np.intp]], npt.NDArray[np.object_]],
) -> pd.DataFrame:
    parts = []
    for j, problems in rules.items():
        for mask, rule in problems:
            rows = np.flatnonzero(mask)
            if rows.size:
                parts.append(
                    pd.DataFrame(
                        {
                            "position": rows,
                            "row": labels[rows],
                            "column": key.columns[j],
                            "value": raw(j, rows),
                            "rule": rule,
                        }
                    )
                )
    table = pd.concat(parts, ignore_index=True).sort_values(["position", "column"], kind="stable")
    return table.reset_index(drop=True)


def unanswered_beyond_rule(checked: CheckedAnswers, key: CompiledKey) -> list[list[str]]:
    """Per row, the unanswered item columns when some score has more of its items missing
    than the instrument's missing-item rule allows (so the scorer cannot compute it), else
    an empty list. Items skipped by design (``asked_if``) and invalid answers (already
    issues) do not count.

    The rule is the instrument file's ``[missing] max_missing_fraction`` (with its
    ``source``; for the WAI family and the HAq-II a project convention of at most a
    quarter of a score's items, as no published rule was found; none for the SRS, whose
    0-40 total needs all four lines, Duncan et al. 2003), applied exactly as the scorer's
    prorating does (:func:`alliance.scoring.keys.compile_key`: ``floor(n * fraction)``).

    >>> from alliance.scoring import compile_key
    >>> key = compile_key("srs")
    >>> unanswered_beyond_rule(check_values([[8, 9, None, 7], [8, 9, 10, 7]], key), key)
    [['srs_3'], []]
    """
    unanswered = np.isnan(checked.values) & ~checked.invalid
    if checked.not_asked is not None:
        unanswered &= ~checked.not_asked
    out: list[list[str]] = []
    for row in unanswered:
        over = any(
            np.count_nonzero(row[columns]) > limit
            for columns, limit in zip(key.member_columns, key.max_missing, strict=True)
        )
        out.append([key.columns[j] for j in np.flatnonzero(row)] if over else [])
    return out


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def infer_instrument(columns: Sequence[object], candidates: Sequence[CompiledKey]) -> str:
    """The instrument whose item columns the table holds (all of them, most items first).

    Raises ``ScoringError`` naming what is missing when no instrument matches completely.

    >>> from alliance.scoring import compile_key
    >>> keys = [compile_key(i) for i in ("wai_sr", "srs")]
    >>> infer_instrument(["id", "srs_1", "srs_2", "srs_3", "srs_4"], keys)
    'srs'
    """
    names = {str(c) for c in columns}
    complete = [k for k in candidates if set(k.columns) <= names]
    if complete:
        return max(complete, key=lambda k: len(k.columns)).instrument.id
    partial = [(len(set(k.columns) & names), k) for k in candidates]
    best_count, best = max(partial, key=lambda pair: pair[0])
    if best_count == 0:
        raise ScoringError(
            "cannot tell the instrument from the column names: item columns must be named "
            "<instrument>_<n> (e.g. wai_sr_1); name the instrument and map the columns"
        )
    missing = [c for c in best.columns if c not in names]
    raise ScoringError(
        f"columns look like {best.instrument.id!r} but item column(s) {missing} are missing"
    )
