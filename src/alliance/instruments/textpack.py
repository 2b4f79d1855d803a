"""Text packs: the official item wordings a clinic supplies, checked against an instrument.

The wording of licensed instruments is never shipped. A clinic that holds it supplies a pack
per instrument and language (rows of ``instrument, language, item, text``); this module checks
that a pack matches the instrument exactly. Reading and installing files is in
:mod:`alliance.io.textpacks`.

Example
-------
>>> import pandas as pd
>>> rows = pd.DataFrame({"instrument": "srs", "language": "en", "item": [1, 2, 3, 4],
...                      "text": ["a", "b", "c", "d"]})
>>> [(p.instrument, p.language, len(p.items)) for p in validate_text_pack(rows)]
[('srs', 'en', 4)]
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pandas as pd

from alliance.instruments import UnknownInstrumentError, get_instrument

REQUIRED_COLUMNS = ("instrument", "language", "item", "text")
LANGUAGE_TAG = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$")
MAX_TEXT = 1000


class TextPackError(ValueError):
    """A text pack that does not match its instrument; the message names each mismatch."""


@dataclass(frozen=True)
class TextPack:
    """Item wordings of one instrument in one language, keyed by item number."""

    instrument: str
    language: str
    items: dict[int, str]


def validate_text_pack(rows: pd.DataFrame) -> list[TextPack]:
    """Check a pack table (one or more instrument/language pairs) and return its packs."""
    missing = [c for c in REQUIRED_COLUMNS if c not in rows.columns]
    if missing:
        raise TextPackError(f"text pack lacks column(s) {missing}; needs {list(REQUIRED_COLUMNS)}")
    if rows.empty:
        raise TextPackError("text pack has no rows")
    problems: list[str] = []
    packs: list[TextPack] = []
    for (instrument, language), group in rows.groupby(["instrument", "language"], sort=True):
        pack = _validate_one(str(instrument), str(language), group, problems)
        if pack is not None:
            packs.append(pack)
    blank = rows[list(REQUIRED_COLUMNS[:2])].isna().any(axis=1)
    if blank.any():
        problems.append(f"row(s) {_rows(blank[blank].index)}: instrument and language are required")
    if problems:
        raise TextPackError("; ".join(problems))
    return packs


def _validate_one(
    instrument_id: str, language: str, group: pd.DataFrame, problems: list[str]
) -> TextPack | None:
    where = f"{instrument_id} ({language})"
    try:
        instrument = get_instrument(instrument_id)
    except UnknownInstrumentError as exc:
        problems.append(str(exc))
        return None
    if not LANGUAGE_TAG.match(language):
        problems.append(f"{where}: language {language!r} is not a language tag such as en or de-CH")
    numbers = pd.to_numeric(group["item"], errors="coerce")
    bad = group.index[numbers.isna() | (numbers % 1 != 0)]
    if len(bad):
        problems.append(f"{where}: row(s) {_rows(bad)}: item must be a whole item number")
        return None
    numbers = numbers.astype(int)
    duplicated = sorted(set(numbers[numbers.duplicated()]))
    if duplicated:
        problems.append(f"{where}: item(s) {duplicated} appear more than once")
    expected = {item.number for item in instrument.items}
    given = set(numbers)
    if given != expected:
        problems.append(
            f"{where}: {len(given)} item(s) given, {instrument.short_name} has {len(expected)}"
            + _diff("missing", expected - given)
            + _diff("unknown", given - expected)
        )
    texts = group["text"].fillna("").astype(str).str.strip()
    empty = group.index[texts == ""]
    if len(empty):
        problems.append(f"{where}: row(s) {_rows(empty)}: text is empty")
    too_long = group.index[texts.str.len() > MAX_TEXT]
    if len(too_long):
        problems.append(f"{where}: row(s) {_rows(too_long)}: text longer than {MAX_TEXT}")
    return TextPack(instrument_id, language, dict(zip(numbers.tolist(), texts.tolist())))


def _diff(label: str, numbers: set[int]) -> str:
    return f"; {label} item(s) {sorted(numbers)}" if numbers else ""


def _rows(index: pd.Index) -> str:
    """The rows' labels: data rows from 1 in a table read from a file (``read_table``)."""
    return ", ".join(str(i) for i in list(index)[:10]) + (" ..." if len(index) > 10 else "")
