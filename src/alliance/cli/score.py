"""``alliance score``: score a file of item responses."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Annotated, Any, Literal

import pandas as pd
import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from alliance.cli.common import (
    fail,
    parse_column_map,
    read_input,
    stderr,
    user_errors,
    warn,
    write_output,
)
from alliance.cli.scale import EngineOpt, run_engine
from alliance.io.tables import input_kind, read_csv_chunks
from alliance.scale import Job
from alliance.scoring import (
    ScoringInputError,
    UnverifiedKeyWarning,
    describe_issues,
    is_scored,
    score,
)

CHUNK_ROWS = 250_000
PROGRESS_BYTES = 20_000_000  # files larger than this are read in chunks with a progress bar

EXAMPLES = """
[bold]Examples[/]

  alliance score answers.csv                       [dim]# instrument from the column names[/]
  alliance score data.sav -i wai_sr -o scores.parquet
  alliance score survey.xlsx -i srs --map "Q1=srs_1,Q2=srs_2,Q3=srs_3,Q4=srs_4"
  alliance score answers.csv --metric sum --errors flag --format json
"""


def score_command(
    input: Annotated[
        Path, typer.Argument(help="CSV/TSV, Excel, SPSS .sav, Stata .dta or Parquet file.")
    ],
    instrument: Annotated[
        str | None, typer.Option("-i", "--instrument", help="Instrument id; inferred if omitted.")
    ] = None,
    form: Annotated[
        str | None, typer.Option("--form", help="Respondent form, e.g. client.")
    ] = None,
    metric: Annotated[
        Literal["mean", "sum"] | None,
        typer.Option(
            "--metric", help="Item mean or prorated sum; the instrument's default if omitted."
        ),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "-o", "--output", help="Output file (.csv, .json, .parquet); stdout if omitted."
        ),
    ] = None,
    format: Annotated[
        Literal["csv", "json", "parquet"] | None,
        typer.Option("--format", help="Output format; from the output suffix if omitted."),
    ] = None,
    errors: Annotated[
        Literal["raise", "flag"],
        typer.Option("--errors", help="raise: stop on invalid answers; flag: score the rest."),
    ] = "raise",
    column_map: Annotated[
        str | None,
        typer.Option("--map", help="Rename columns: OLD=NEW,... or a two-column CSV/JSON file."),
    ] = None,
    engine: EngineOpt = "local",
) -> None:
    """Score item responses: subscale and total scores with a status column per row."""
    mapping = parse_column_map(column_map)
    if engine != "local":
        make_job = lambda f: _engine_job(f, instrument, form, metric)  # noqa: E731
        run_engine(engine, input, output, make_job, rename=mapping)
        return
    options: dict[str, Any] = {
        "instrument": instrument,
        "form": form,
        "metric": metric,
        "errors": errors,
        "columns": mapping,
    }
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UnverifiedKeyWarning)
        scored = _score_file(input, options)
    for message in {str(w.message) for w in caught if issubclass(w.category, UnverifiedKeyWarning)}:
        warn(message)
    status_column = scored.columns[-1]
    not_ok = int((~is_scored(scored[status_column])).sum())
    if not_ok:
        warn(f"{not_ok} of {len(scored)} row(s) have scores not computed: see {status_column}")
    write_output(scored, output, format)


score_command.__doc__ = (score_command.__doc__ or "") + "\n" + EXAMPLES


def _engine_job(
    columns: pd.DataFrame, instrument: str | None, form: str | None, metric: Any
) -> Job:
    """The batch scoring job for an input with these columns."""
    from alliance.instruments import list_instruments
    from alliance.scoring.keys import compile_key
    from alliance.scoring.validate import column_name, infer_instrument

    with user_errors():
        names = [column_name(c) for c in columns.columns]
        keys = [compile_key(i) for i in list_instruments()]
        return Job("score", instrument or infer_instrument(names, keys), form=form, metric=metric)


def _score_file(path: Path, options: dict[str, Any]) -> pd.DataFrame:
    """Score a whole file; ``options`` are keyword arguments of :func:`alliance.score`."""
    with user_errors():
        kind = input_kind(path)
    if kind in ("csv", "tsv") and path.is_file() and path.stat().st_size > PROGRESS_BYTES:
        return _score_in_chunks(path, options)
    frame = read_input(path)
    with user_errors():
        return score(frame, **options)


def _score_in_chunks(path: Path, options: dict[str, Any]) -> pd.DataFrame:
    """Score a large CSV chunk by chunk (rows are independent), showing progress.

    With ``errors="raise"`` every chunk is still checked, so the one error message lists the
    invalid answers of the whole file.
    """
    total = _count_rows(path)
    instrument_id = ""
    parts: list[pd.DataFrame] = []
    issues: list[pd.DataFrame] = []
    columns = [TextColumn("scoring"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    with Progress(*columns, console=stderr, transient=True) as progress, user_errors():
        task = progress.add_task("rows", total=total)
        for chunk in read_csv_chunks(path, CHUNK_ROWS):
            try:
                parts.append(score(chunk, **options))
            except ScoringInputError as exc:
                instrument_id = exc.instrument_id
                issues.append(exc.issues)
            progress.advance(task, len(chunk))
    if issues:
        fail(describe_issues(instrument_id, pd.concat(issues, ignore_index=True)))
    if not parts:
        fail(f"{path}: no rows to score")
    return pd.concat(parts)


def _count_rows(path: Path) -> int:
    lines = 0
    with path.open("rb") as handle:
        while block := handle.read(1 << 24):
            lines += block.count(b"\n")
    return max(lines - 1, 0)
