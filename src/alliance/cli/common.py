"""Shared plumbing for the CLI: reading input, writing output, failing cleanly.

Invalid input ends the command with exit code 2 and a readable message on stderr, never a
traceback. Every subcommand reads and writes tables through these helpers.
"""

from __future__ import annotations

import importlib.util
import json
import math
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import pandas as pd
import typer
from rich.console import Console
from rich.markup import escape

from alliance.instruments import (
    InstrumentDefinitionError,
    UnknownFormError,
    UnknownInstrumentError,
)
from alliance.instruments.textpack import TextPackError
from alliance.io.tables import InputFileError, OutputFormat, read_table, write_table
from alliance.scoring import ScoringError

EXIT_INVALID = 2
stderr = Console(stderr=True, highlight=False, soft_wrap=True)

# Errors that mean "the user's input is wrong" (exit 2), as opposed to bugs.
INPUT_ERRORS: tuple[type[Exception], ...] = (
    InputFileError,
    ScoringError,
    UnknownInstrumentError,
    UnknownFormError,
    InstrumentDefinitionError,
    TextPackError,
)


# The library's messages name Python arguments; the shell's user knows the flags.
FLAG_NAMES = (
    ("map other names with columns=", "map other names with --map OLD=NEW"),
    ("allow unverified alerts to turn them on", "--allow-unverified turns them on"),
    ("allow unverified alerts to turn it on", "--allow-unverified turns it on"),
)


def in_flag_names(message: str) -> str:
    """``message`` with the Python API's argument names replaced by the CLI's flags.

    >>> in_flag_names("missing item column(s) (map other names with columns=)")
    'missing item column(s) (map other names with --map OLD=NEW)'
    """
    for api, flag in FLAG_NAMES:
        message = message.replace(api, flag)
    return message


def fail(message: str) -> NoReturn:
    """Print ``error: message`` to stderr and exit with code 2."""
    message = escape(in_flag_names(message))  # a message's own [brackets] are text
    stderr.print(f"[bold red]error:[/] {message}", markup=True, highlight=False)
    raise typer.Exit(EXIT_INVALID)


def need_extra(extra: str, module: str) -> None:
    """Stop with the install command when an optional dependency is absent (exit 2)."""
    if importlib.util.find_spec(module) is None:
        fail(f"this command needs the {extra!r} extra: pip install 'alliance[{extra}]'")


def require_text_or_json(fmt: str) -> None:
    """``--format`` of the report commands (meta, model, therapists, power)."""
    if fmt not in ("text", "json"):
        fail(f"--format must be text or json, not {fmt!r}")


def json_safe(x: Any) -> Any:
    """JSON-safe: numpy scalars to Python, NaN/inf to null (lists, tuples, dicts deep).

    >>> json_safe({"a": [float("nan"), 1.5]})
    {'a': [None, 1.5]}
    """
    if isinstance(x, dict):
        return {k: json_safe(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [json_safe(v) for v in x]
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


CHART_SUFFIXES = {".png": "png", ".svg": "svg", ".html": "html", ".json": "json"}


def write_chart(chart: Any, path: Path) -> None:
    """Render a chart to ``path`` in the format its suffix names (exit 2 on another)."""
    from alliance.research.meta.plots import chart_bytes

    fmt = CHART_SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        fail(f"{path}: chart files end in {', '.join(CHART_SUFFIXES)}")
    try:
        path.write_bytes(chart_bytes(chart, fmt))  # type: ignore[arg-type]
    except OSError as exc:
        fail(f"{path}: cannot write chart ({exc.strerror})")


def warn(message: str) -> None:
    """Print ``warning: message`` to stderr."""
    message = escape(in_flag_names(message))
    stderr.print(f"[yellow]warning:[/] {message}", markup=True, highlight=False)


@contextmanager
def relay_warnings(category: type[Warning]) -> Iterator[None]:
    """Print the library's warnings of ``category`` raised in the block as one-line
    ``warning:`` messages (once each) instead of Python's file-and-line form."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", category)
        try:
            yield
        finally:
            for message in dict.fromkeys(str(w.message) for w in caught if w.category is category):
                warn(message)
            for w in caught:  # any other warning as Python would have shown it
                if w.category is not category:
                    warnings.showwarning(w.message, w.category, w.filename, w.lineno)


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn input errors raised inside the block into ``fail``."""
    try:
        yield
    except INPUT_ERRORS as exc:
        fail(str(exc))


def read_input(path: Path) -> pd.DataFrame:
    """Read a table. Rows are numbered as data rows from 1 (the header is not a row), the
    convention of every message, in the CLI and in the Python API alike; how the file was
    read (a legacy encoding, marked gaps) is said on stderr."""
    with user_errors():
        frame = read_table(path)
    report_reading(path, frame.attrs)
    return frame


def report_reading(path: Path, attrs: Mapping[Any, Any]) -> None:
    """Warn about what reading assumed: a file that is not UTF-8, cells marked n/a."""
    read_as = attrs.get("read_as")
    if isinstance(read_as, dict) and read_as.get("encoding") == "cp1252":
        warn(f"{path}: not UTF-8; read as Windows Western (cp1252)")
    markers = attrs.get("missing_markers")
    if isinstance(markers, dict) and markers:
        where = ", ".join(f"{column} ({count})" for column, count in markers.items())
        warn(
            f"{path}: {sum(markers.values())} cell(s) marked as missing (n/a, NA, ...) "
            f"read as unanswered: {where}"
        )


def write_output(frame: pd.DataFrame, output: Path | None, fmt: OutputFormat | None) -> None:
    """Write to ``output`` (format from ``fmt`` or its suffix) or to stdout."""
    with user_errors():
        write_table(frame, output, fmt)


def parse_column_map(spec: str | None) -> dict[str, str] | None:
    """``--map`` as ``OLD=NEW,...`` or a CSV/JSON file of old,new pairs."""
    if not spec:
        return None
    path = Path(spec)
    if path.is_file():
        if path.suffix.lower() == ".json":
            mapping = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(mapping, dict):
                fail(f"{path}: a JSON column map is an object of old: new names")
            return {str(k): str(v) for k, v in mapping.items()}
        table = read_input(path)
        if table.shape[1] != 2:
            fail(f"{path}: a column map file has two columns: old name, new name")
        return dict(zip(table.iloc[:, 0].astype(str), table.iloc[:, 1].astype(str)))
    pairs = [p for p in spec.split(",") if p.strip()]
    if not all("=" in p for p in pairs):
        fail(f"--map: expected OLD=NEW pairs separated by commas or a file, got {spec!r}")
    return {old.strip(): new.strip() for old, new in (p.split("=", 1) for p in pairs)}
