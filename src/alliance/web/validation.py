"""The rules for values taken from a request, in one place for pages and API.

Row ids are PostgreSQL ``integer``s: an id outside 1..2**31-1 names no row and is refused
with 422 (:data:`RowId`) before it reaches the database, where it would fail as a 500.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import HTTPException, Path

from alliance.web.forms import language_issue

# Row ids are PostgreSQL ``integer``s: a larger id names no row and is refused (422).
DB_ID_MAX = 2**31 - 1
RowId = Annotated[int, Path(ge=1, le=DB_ID_MAX, description="a row id (1 .. 2**31-1)")]


def check_language(requested: str | None, allowed: set[str]) -> str | None:
    """The requested language if it is one of ``allowed`` (None if not requested); else
    422 naming ``lang`` and the languages offered (the rule: :func:`forms.language_issue`).

    >>> check_language("en", {"en", "de"})
    'en'
    >>> check_language("xx", {"en"})
    Traceback (most recent call last):
    ...
    fastapi.exceptions.HTTPException: 422: lang: must be one of en (got an unknown language)
    """
    wrong = language_issue(requested, allowed)
    if wrong:
        raise HTTPException(422, f"lang: {wrong.rule} (got an unknown language)")
    return requested or None


# A schedule interval longer than any course of therapy is a typo; 1000 sessions is ample
# and far inside the ``integer`` column (``every=10**30`` used to fail as a 500).
EVERY_MAX = 1000


def form_row_id(field: str, text: str) -> int | None:
    """An optional row id typed into a form ("" for none); ValueError naming the field.

    >>> form_row_id("supervisor_id", ""), form_row_id("supervisor_id", "7")
    (None, 7)
    >>> form_row_id("supervisor_id", "2147483648")
    Traceback (most recent call last):
    ...
    ValueError: supervisor_id: must be a user's id (a whole number 1 .. 2147483647)
    """
    if not text:
        return None
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= DB_ID_MAX:
        raise ValueError(f"{field}: must be a user's id (a whole number 1 .. {DB_ID_MAX})")
    return int(text)


def text_problem(value: str, max_length: int) -> str | None:
    """The rule a text from a request breaks, or None: no NUL (PostgreSQL refuses it in
    text), no lone surrogate (not UTF-8, so not storable or sendable), at most
    ``max_length`` characters (the column's length).

    >>> text_problem("P-17", 64), text_problem("A\\x00B", 64), text_problem("X" * 65, 64)
    (None, 'must not contain NUL characters', 'must be at most 64 characters')
    """
    if "\x00" in value:
        return "must not contain NUL characters"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "must be valid Unicode text (no lone surrogates)"
    if len(value) > max_length:
        return f"must be at most {max_length} characters"
    return None


def check_text(field: str, value: str, max_length: int) -> str:
    """``value`` if it breaks no rule of :func:`text_problem`; else ValueError naming the
    field and the rule (the pages answer it with 422)."""
    problem = text_problem(value, max_length)
    if problem:
        raise ValueError(f"{field}: {problem}")
    return value
