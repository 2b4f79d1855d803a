"""``alliance simulate``: write a synthetic clinic (sessions, truth, injected ruptures)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import pandas as pd
import typer

from alliance.cli.common import fail, stderr, user_errors, write_output
from alliance.instruments import list_instruments
from alliance.io.tables import WRITERS, whole_numbers
from alliance.simulate import simulate_clinic, simulate_scored

MIN_SESSIONS = 6  # simulate_clinic's shortest planned episode (min_sessions)

EXAMPLES = """
[bold]Examples[/]

  alliance simulate -o clinic.csv                    [dim]# 10 therapists x 8 patients, WAI-SR[/]
  alliance simulate --therapists 30 --patients 12 --seed 7 -o big.parquet
  alliance simulate --instrument srs --scored --format json
  alliance simulate --therapist-form --post-session -o clinic.csv --truth truth.csv \\
      --ruptures injected.csv
"""


def simulate_command(
    therapists: Annotated[
        int, typer.Option("--therapists", min=1, help="Number of therapists.")
    ] = 10,
    patients: Annotated[int, typer.Option("--patients", min=1, help="Patients per therapist.")] = 8,
    instrument: Annotated[
        str, typer.Option("-i", "--instrument", help="Instrument whose items are simulated.")
    ] = "wai_sr",
    seed: Annotated[
        int | None, typer.Option("--seed", help="Seed for a reproducible clinic.")
    ] = None,
    max_sessions: Annotated[
        int,
        typer.Option(
            "--max-sessions",
            min=MIN_SESSIONS,
            help=f"Longest planned episode, in sessions (at least {MIN_SESSIONS}, the "
            "shortest planned one).",
        ),
    ] = 20,
    rupture_rate: Annotated[
        float, typer.Option("--rupture-rate", min=0.0, max=1.0, help="Rupture chance per session.")
    ] = 0.05,
    therapist_form: Annotated[
        bool, typer.Option("--therapist-form", help="Also simulate the therapist's answers (t_*).")
    ] = False,
    post_session: Annotated[
        bool, typer.Option("--post-session", help="Add post-session rupture answers (psq_1..3).")
    ] = False,
    scored: Annotated[
        bool, typer.Option("--scored", help="Add the instrument's scores to the sessions.")
    ] = False,
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="Sessions file; stdout if omitted.")
    ] = None,
    truth: Annotated[
        Path | None, typer.Option("--truth", help="Also write the true latent scores here.")
    ] = None,
    ruptures: Annotated[
        Path | None, typer.Option("--ruptures", help="Also write the injected ruptures here.")
    ] = None,
    format: Annotated[
        Literal["csv", "json", "parquet"] | None,
        typer.Option("--format", help="Output format; from the output suffix if omitted."),
    ] = None,
) -> None:
    """Simulate a clinic: therapists, patients, sessions with item answers and an outcome.

    The ground truth (latent alliance, injected ruptures and repairs) can be written
    beside the observed data. Defaults and their sources: alliance.simulate.defaults.
    """
    for extra in (truth, ruptures):
        if extra is not None and extra.suffix.lower() not in WRITERS:
            fail(f"{extra}: write .csv, .json or .parquet")
    make = simulate_scored if scored else simulate_clinic
    with user_errors():
        try:
            clinic = make(
                therapists,
                patients,
                instrument=instrument,
                seed=seed,
                max_sessions=max_sessions,
                rupture_rate=rupture_rate,
                therapist_form=therapist_form,
                post_session_questions=post_session,
            )
        except ValueError as exc:
            fail(str(exc))
    write_output(_answers_whole(clinic.sessions), output, format)
    if truth is not None:
        write_output(clinic.truth, truth, None)
    if ruptures is not None:
        write_output(clinic.ruptures, ruptures, None)
    if output is not None:
        stderr.print(
            f"{clinic.sessions['patient_id'].nunique()} patients, {len(clinic.sessions)} "
            f"sessions, {len(clinic.ruptures)} injected ruptures -> {output}"
        )


def _answers_whole(sessions: pd.DataFrame) -> pd.DataFrame:
    """The simulated answers as the whole numbers a patient ticks (a gap would otherwise
    make them floats in the file)."""
    items = {c for inst in list_instruments() for c in inst.item_columns}
    answers = [c for c in sessions.columns if c in items or c.removeprefix("t_") in items]
    return whole_numbers(sessions, answers)


simulate_command.__doc__ = (simulate_command.__doc__ or "") + "\n" + EXAMPLES
