"""``alliance ruptures`` and ``alliance alerts``: monitoring from a file of sessions.

Both accept an item-level table (scored first with ``alliance score``'s scorer) or an
already-scored table (name the column with ``--score``). The table needs ``patient_id`` and
``session`` columns. Invalid input ends with exit code 2 and a readable message.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Annotated, Any, Literal

import pandas as pd
import typer

from alliance.cli.common import fail, read_input, user_errors, warn, write_output
from alliance.cli.scale import EngineOpt, NormsRequest, run_engine
from alliance.dynamics import (
    METHODS,
    MIN_PATIENTS_FOR_NORMS,
    AlertSettings,
    DynamicsInputError,
    Norms,
    alert_episodes,
    detect_ruptures,
    estimate_norms,
    instrument_norms,
)
from alliance.instruments import Instrument, get_instrument, list_instruments
from alliance.scale import Job
from alliance.scoring import (
    UnverifiedKeyWarning,
    answer_issues,
    describe_issues,
    is_scored,
    score,
)
from alliance.simulate import score_therapist_form

NormSource = Literal["auto", "instrument", "data"]

RUPTURE_EXAMPLES = """
[bold]Examples[/]

  alliance ruptures sessions.csv                 [dim]# items -> wai_sr_total, all methods[/]
  alliance ruptures sessions.csv --prospective   [dim]# each session judged with data to that day[/]
  alliance ruptures scored.parquet --score wai_sr_bond --method strauss2006
  alliance ruptures sessions.csv --method rci_drop --norms data -o ruptures.csv
  alliance ruptures sessions.csv --method self_report --format json

Methods: stiles2004, strauss2006 (reconstructed published criteria), gumz2012 (stricter of
the patient's and the sample's SD), rci_drop (reliable drop below the patient's running
baseline), self_report (post-session question psq_1). Score-based methods never report a
drop smaller than reliable change, which needs norms: the instrument file's, or estimated
from the data (automatic from 30 patients with items; --norms data forces it).
Retrospective (whole-series) detection is the default here, for research; --prospective
judges each session as a clinic would on that day.
"""

ALERT_EXAMPLES = """
[bold]Examples[/]

  alliance alerts sessions.csv                           [dim]# item-level WAI-SR answers[/]
  alliance alerts scored.csv --score srs_total -o alerts.csv
  alliance alerts sessions.csv --therapist-score t_wai_sr_total --norms data
  alliance alerts sessions.csv --allow-unverified --format json
  alliance alerts sessions.csv --retrospective          [dim]# research: whole-table thresholds[/]

One row per alert episode: it opens at a session, stays open while its condition lasts
(its numbers and last_session updated), and closes by itself with a close_reason.
Prospective by default: each session judged with the data up to that session.
"""

InputArg = Annotated[
    Path, typer.Argument(help="Sessions: CSV/TSV, Excel, SPSS, Stata or Parquet, one row each.")
]
ScoreOpt = Annotated[
    str | None,
    typer.Option(
        "--score",
        help="Score column (e.g. wai_sr_total) or score id (e.g. bond); the total if omitted.",
    ),
]
InstrumentOpt = Annotated[
    str | None, typer.Option("-i", "--instrument", help="Instrument id; inferred if omitted.")
]
MetricOpt = Annotated[
    Literal["mean", "sum"] | None,
    typer.Option("--metric", help="Metric used when scoring items; instrument default if omitted."),
]
NormsOpt = Annotated[
    NormSource,
    typer.Option(
        "--norms",
        help="SD and reliability for reliable change: instrument file, data, or auto "
        f"(the file's, else the data's with >= {MIN_PATIENTS_FOR_NORMS} patients).",
    ),
]
ProspectiveOpt = Annotated[
    bool,
    typer.Option(
        "--prospective/--retrospective",
        help="Judge each session with the data up to it (clinic) or with the whole series "
        "(research).",
    ),
]
ReliabilityOpt = Annotated[
    float | None,
    typer.Option("--reliability", min=0.0, max=0.999, help="Reliability to use with --norms data."),
]
RepairOpt = Annotated[
    int, typer.Option("--repair-within", min=1, help="Sessions allowed for a repair.")
]
ErrorsOpt = Annotated[
    Literal["raise", "flag"],
    typer.Option(
        "--errors",
        help="raise: stop on invalid answers, naming row, column, value and rule (as "
        "`alliance score`); flag: leave those sessions out and say how many.",
    ),
]
OutputOpt = Annotated[
    Path | None,
    typer.Option("-o", "--output", help="Output file (.csv, .json, .parquet); stdout if omitted."),
]
FormatOpt = Annotated[
    Literal["csv", "json", "parquet"] | None,
    typer.Option("--format", help="Output format; from the output suffix if omitted."),
]


def ruptures_command(
    input: InputArg,
    score_column: ScoreOpt = None,
    method: Annotated[
        list[str] | None,
        typer.Option(
            "--method", "-m", help=f"One of {', '.join(METHODS)}; repeatable; all if omitted."
        ),
    ] = None,
    instrument: InstrumentOpt = None,
    metric: MetricOpt = None,
    norms_from: NormsOpt = "auto",
    reliability: ReliabilityOpt = None,
    repair_within: RepairOpt = 3,
    prospective: ProspectiveOpt = False,
    gumz_sd: Annotated[
        float, typer.Option("--gumz-sd", min=0.1, help="SD multiplier of gumz2012 (1 or 2).")
    ] = 1.0,
    errors: ErrorsOpt = "raise",
    output: OutputOpt = None,
    format: FormatOpt = None,
    engine: EngineOpt = "local",
) -> None:
    """Detect alliance ruptures and repairs: one row per event and method."""
    if engine != "local":
        request = NormsRequest(norms_from, reliability, _needs_norms(method))
        options: dict[str, Any] = {"methods": tuple(method) if method else None}
        options |= {"gumz_sd": gumz_sd}
        options |= {"metric": metric, "repair_within": repair_within, "prospective": prospective}
        run_engine(
            engine,
            input,
            output,
            lambda f: _engine_job(f, "ruptures", score_column, instrument, **options),
            request,
        )
        return
    frame, column, inst = _scored_input(input, score_column, instrument, metric, errors)
    norms = resolve_norms(
        frame, column, inst, metric, norms_from, reliability, required=_needs_norms(method)
    )
    try:
        events = detect_ruptures(
            frame,
            column,
            method or "all",
            norms=norms,
            repair_within=repair_within,
            prospective=prospective,
            gumz_sd=gumz_sd,
        )
    except DynamicsInputError as exc:
        fail(str(exc))
    warn(f"{events.attrs['mode']} detection")
    for notice in events.attrs.get("notices", []):
        warn(notice)
    write_output(events, output, format)


def alerts_command(
    input: InputArg,
    score_column: ScoreOpt = None,
    instrument: InstrumentOpt = None,
    metric: MetricOpt = None,
    therapist_score: Annotated[
        str | None,
        typer.Option("--therapist-score", help="Therapist's score column, same metric, same rows."),
    ] = None,
    norms_from: NormsOpt = "auto",
    reliability: ReliabilityOpt = None,
    allow_unverified: Annotated[
        bool,
        typer.Option("--allow-unverified", help="Also alert on scores whose key is unverified."),
    ] = False,
    early_sessions: Annotated[
        int, typer.Option("--early-sessions", min=1, help="Sessions counted as early.")
    ] = 3,
    percentile: Annotated[
        float,
        typer.Option(
            "--percentile", min=0.0, max=100.0, help="Clinic percentile for low early alliance."
        ),
    ] = 10.0,
    repair_within: RepairOpt = 3,
    prospective: ProspectiveOpt = True,
    errors: ErrorsOpt = "raise",
    output: OutputOpt = None,
    format: FormatOpt = None,
    engine: EngineOpt = "local",
) -> None:
    """Alert episodes with their reason, the numbers behind them and guidance with sources."""
    settings = AlertSettings(
        early_sessions=early_sessions,
        low_early_percentile=percentile,
        repair_within=repair_within,
        allow_unverified=allow_unverified,
    )
    if engine != "local":
        options: dict[str, Any] = {"metric": metric, "settings": settings}
        options |= {"prospective": prospective}
        options |= {"therapist_score": therapist_score, "repair_within": repair_within}
        run_engine(
            engine,
            input,
            output,
            lambda f: _engine_job(f, "alerts", score_column, instrument, **options),
            NormsRequest(norms_from, reliability, required=False),
        )
        return
    frame, column, inst = _scored_input(input, score_column, instrument, metric, errors)
    if therapist_score is not None:
        frame = _therapist_column(frame, therapist_score, inst)
    norms = resolve_norms(frame, column, inst, metric, norms_from, reliability, required=False)
    try:
        alerts = alert_episodes(
            frame,
            column,
            instrument=inst,
            metric=metric,
            therapist_score=therapist_score,
            norms=norms,
            settings=settings,
            prospective=prospective,
        )
    except DynamicsInputError as exc:
        fail(str(exc))
    for notice in alerts.attrs.get("notices", []):
        warn(notice)
    write_output(alerts, output, format)


ruptures_command.__doc__ = (ruptures_command.__doc__ or "") + "\n" + RUPTURE_EXAMPLES
alerts_command.__doc__ = (alerts_command.__doc__ or "") + "\n" + ALERT_EXAMPLES


# -- helpers ------------------------------------------------------------------------------------
def _engine_job(
    columns: pd.DataFrame,
    kind: Literal["ruptures", "alerts"],
    score_column: str | None,
    instrument: str | None,
    **options: Any,
) -> Job:
    """The batch job for an input with these columns, by the rules of :func:`_scored_input`
    (the same instrument and score column are chosen; the answers are checked per batch)."""
    with user_errors():
        inst = get_instrument(instrument) if instrument else None
    if score_column is not None and score_column in columns.columns:
        inst = inst or _instrument_of(score_column)
    else:
        inst = inst or _instrument_with_items(columns) or _instrument_with_scores(columns)
    if inst is None:
        fail("no item or score columns found; name the score with --score COLUMN")
    score_id = (score_column or "total").removeprefix(f"{inst.id}_")
    has_items = any(c in columns.columns for c in inst.item_columns)
    if not has_items and f"{inst.id}_{score_id}" not in columns.columns:
        fail(f"no column {inst.id}_{score_id!s} and no {inst.short_name} items to score it from")
    therapist = options.get("therapist_score")
    if therapist is not None and therapist not in columns.columns:
        fail(f"--therapist-score: with --engine, {therapist!r} must be a column of the input")
    try:
        return Job(kind, inst.id, score_id, **options)
    except ValueError as exc:
        fail(str(exc))


def _needs_norms(method: list[str] | None) -> bool:
    return bool(set(method or []) & {"rci_drop", "gumz2012"})


def _scored_input(
    path: Path,
    column: str | None,
    instrument: str | None,
    metric: Literal["mean", "sum"] | None,
    errors: Literal["raise", "flag"],
) -> tuple[pd.DataFrame, str, Instrument | None]:
    """Read the file; check every instrument's answers and score the items of the one
    monitored; return (table, score column, instrument)."""
    frame = read_input(path)
    for needed in ("patient_id", "session"):
        if needed not in frame.columns:
            fail(f"{path}: missing column {needed!r} (a long table has patient_id, session, ...)")
    with user_errors():
        inst = get_instrument(instrument) if instrument else None
    if column is not None and column in frame.columns:
        inst = inst or _instrument_of(column)
        return _checked_answers(frame, inst, errors), column, inst
    inst = inst or _instrument_with_items(frame)
    frame = _checked_answers(frame, inst, errors)
    if inst is not None and any(c in frame.columns for c in inst.item_columns):
        frame = _score_items(frame, inst, metric, errors)
    elif inst is None:
        inst = _instrument_with_scores(frame)
    if inst is None:
        fail(f"{path}: no item or score columns found; name the score with --score COLUMN")
    wanted = f"{inst.id}_{column or 'total'}"
    if wanted not in frame.columns:
        fail(f"{path}: no column {column or wanted!r}; scores present: {_score_columns(frame)}")
    return frame, wanted, inst


def _therapist_column(frame: pd.DataFrame, column: str, inst: Instrument | None) -> pd.DataFrame:
    """Score the therapist's ``t_<id>_<n>`` items into ``column`` when it is absent: with
    the therapist form's published key, else the scoring core's all-item total for a form
    without one (:func:`alliance.simulate.score_therapist_form`); an unverified key is
    reported as a warning."""
    if column in frame.columns:
        return frame
    items = [f"t_{c}" for c in inst.item_columns] if inst is not None else []
    if inst is None or not set(items) <= set(frame.columns) or column != f"t_{inst.id}_total":
        fail(f"no column {column!r} and no therapist items t_<instrument>_<n> to score it from")
    with warnings.catch_warnings(record=True) as caught, user_errors():
        warnings.simplefilter("always", UnverifiedKeyWarning)
        total = score_therapist_form(frame, inst.id, quiet=False)
    for message in {str(w.message) for w in caught}:
        warn(f"{column}: {message}")
    return frame.assign(**{column: total})


def _checked_answers(
    frame: pd.DataFrame, scored: Instrument | None, errors: Literal["raise", "flag"]
) -> pd.DataFrame:
    """Check the answers of every instrument with item columns in the table (the one
    monitored and, say, the post-session rupture questions) by the scoring core's rules:
    ``raise`` stops naming every invalid cell of every instrument; ``flag`` blanks the
    other instruments' invalid cells, says how many, and leaves the monitored one's
    invalid sessions to the scorer (unscored, with the reason in its status)."""
    problems = []
    for inst in list_instruments():
        if not any(c in frame.columns for c in inst.item_columns):
            continue
        if errors == "flag" and inst is scored:
            continue
        with user_errors():
            issues = answer_issues(frame, inst)
        if issues.empty:
            continue
        if errors == "raise":
            problems.append(describe_issues(inst.id, issues))
            continue
        frame = frame.copy()
        for name, rows in issues.groupby("column")["row"]:
            frame.loc[list(rows), name] = None
        warn(f"{len(issues)} invalid {inst.short_name} answer(s) left out (--errors flag)")
    if problems:
        fail("\n".join(problems))
    return frame


def _score_items(
    frame: pd.DataFrame,
    inst: Instrument,
    metric: Literal["mean", "sum"] | None,
    errors: Literal["raise", "flag"],
) -> pd.DataFrame:
    with warnings.catch_warnings(record=True) as caught, user_errors():
        warnings.simplefilter("always", UnverifiedKeyWarning)
        scored = score(frame, inst, metric=metric, errors=errors)
    for message in {str(w.message) for w in caught}:
        warn(message)
    status = f"{inst.id}_status"
    bad = int((~is_scored(scored[status])).sum())
    if bad:
        warn(f"{bad} of {len(scored)} session(s) could not be scored (see {status}); skipped")
    added = [c for c in scored.columns if c not in frame.columns]
    return pd.concat([frame, scored[added]], axis=1)


def _instrument_of(column: str) -> Instrument | None:
    matches = [i for i in list_instruments() if column.startswith(f"{i.id}_")]
    return max(matches, key=lambda i: len(i.id)) if matches else None


def _instrument_with_items(frame: pd.DataFrame) -> Instrument | None:
    best = [
        (sum(c in frame.columns for c in i.item_columns), i)
        for i in list_instruments()
        if i.role == "alliance"
    ]
    count, inst = max(best, key=lambda pair: pair[0])
    return inst if count else None


def _instrument_with_scores(frame: pd.DataFrame) -> Instrument | None:
    for inst in list_instruments():
        if f"{inst.id}_total" in frame.columns:
            return inst
    return None


def _score_columns(frame: pd.DataFrame) -> str:
    cols = [c for c in frame.columns if str(c).endswith(("_total", "_goal", "_task", "_bond"))]
    return ", ".join(map(str, cols)) or "none"


def resolve_norms(
    frame: pd.DataFrame,
    column: str,
    inst: Instrument | None,
    metric: Literal["mean", "sum"] | None,
    source: NormSource,
    reliability: float | None,
    *,
    required: bool,
) -> Norms | None:
    if source in ("instrument", "auto"):
        found = None
        if inst is not None:
            found = instrument_norms(inst, column.removeprefix(f"{inst.id}_"), metric)
        enough = frame.loc[frame[column].notna(), "patient_id"].nunique()
        if found is not None or source == "instrument" or enough < MIN_PATIENTS_FOR_NORMS:
            if found is None and required:
                fail(
                    f"no published norms for {column} in the instrument file; use --norms "
                    "data (SD from first sessions, alpha from items or --reliability)"
                )
            if found is None:
                warn(
                    f"no norms for {column}: drops are not judged (measurement error unknown); "
                    f"norms are estimated from the data from {MIN_PATIENTS_FOR_NORMS} patients, "
                    "or use --norms data"
                )
            return found
    items: list[str] = []
    if inst is not None:
        score_id = column.removeprefix(f"{inst.id}_")
        try:
            items = [f"{inst.id}_{n}" for n in inst.score_items(score_id)]
        except KeyError:
            items = []
    items = [c for c in items if c in frame.columns]
    try:
        norms = estimate_norms(
            frame,
            column,
            item_columns=items or None,
            reliability=reliability,
            instrument=inst.id if inst is not None else None,
        )
    except DynamicsInputError as exc:
        if source == "auto":
            warn(f"no norms for {column} ({exc}): drops are not judged")
            return None
        fail(f"--norms data: {exc}")
    warn(
        f"norms for {column}: SD {norms.sd:.3f}, "
        f"reliability {norms.reliability:.3f} ({norms.source})"
    )
    return norms
