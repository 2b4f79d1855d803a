"""``alliance model`` and ``alliance therapists``: multilevel models of a sessions table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from alliance.cli.common import (
    fail,
    json_safe,
    need_extra,
    read_input,
    require_text_or_json,
    stderr,
    write_chart,
)

if TYPE_CHECKING:
    import pandas as pd

MODEL_EXAMPLES = """
[bold]Input[/]: a table (CSV, Excel, Parquet, SPSS, ...) with one row per session.

[bold]Examples[/]

  alliance model sessions.csv --formula "wai ~ session + (1 + session | patient) + (1 | therapist)"
  alliance model sessions.csv --formula "..." --ml --profile --format json
  alliance model sessions.csv --outcome phq9 --predictor wai --patient patient \\
      --therapist therapist --time session --lagged   [dim]# within/between, next session[/]
  alliance model sessions.csv --outcome phq9 --predictor wai --covariates ceq_expectancy
"""

THERAPIST_EXAMPLES = """
[bold]Input[/]: one row per session (give [cyan]--patient[/]) or per patient.

[bold]Examples[/]

  alliance therapists sessions.csv --score wai --therapist therapist --patient patient
  alliance therapists patients.csv --score outcome --therapist therapist --chart cat.html
  alliance therapists patients.csv --score outcome --therapist therapist --alliance wai
"""


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [
        {str(frame.index.name or "name"): str(i), **{str(k): v for k, v in row.items()}}
        for i, row in zip(frame.index, frame.to_dict(orient="records"), strict=True)
    ]


def model_command(
    file: Annotated[Path, typer.Argument(help="Sessions table.")],
    formula: Annotated[
        str | None, typer.Option("--formula", help="lme4 notation: y ~ x + (1 + x | g).")
    ] = None,
    ml: Annotated[bool, typer.Option("--ml", help="Maximum likelihood instead of REML.")] = False,
    profile: Annotated[
        bool, typer.Option("--profile", help="Profile-likelihood intervals of the variances.")
    ] = False,
    outcome: Annotated[
        str | None, typer.Option("--outcome", help="Within/between: the outcome column.")
    ] = None,
    predictor: Annotated[
        str | None, typer.Option("--predictor", help="Within/between: the session predictor.")
    ] = None,
    patient: Annotated[str, typer.Option("--patient", help="Patient column.")] = "patient",
    therapist: Annotated[
        str | None, typer.Option("--therapist", help="Therapist column (patients nested).")
    ] = None,
    time: Annotated[str | None, typer.Option("--time", help="Session order column.")] = None,
    lagged: Annotated[
        bool, typer.Option("--lagged", help="Predict the next session's outcome.")
    ] = False,
    covariates: Annotated[
        str | None,
        typer.Option("--covariates", help="Within/between: covariates, comma-separated."),
    ] = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="text or json.")] = "text",
) -> None:
    """A linear mixed model (lme4's notation), or the within/between-patient decomposition
    of a session predictor (--outcome, --predictor)."""
    from alliance.research.multilevel import FormulaError, confint, lmm
    from alliance.research.multilevel.analyses import within_between

    require_text_or_json(fmt)
    if (formula is None) == (outcome is None or predictor is None):
        fail("give either --formula, or --outcome and --predictor (within/between)")
    table = read_input(file)
    out: dict[str, Any] = {}
    try:
        if formula is not None:
            fit = lmm(formula, table, reml=not ml)
            reading = None
        else:
            extra = [c.strip() for c in (covariates or "").split(",") if c.strip()]
            result = within_between(table, str(outcome), str(predictor), patient=patient,
                                    therapist=therapist, time=time, lagged=lagged,
                                    covariates=extra)  # fmt: skip
            fit, reading = result.fit, result.reading
            out["within_between"] = _records(result.table)
        ci = confint(fit) if profile else None
    except FormulaError as exc:
        fail(f"{file}: {exc}")
    out |= {
        "formula": fit.formula, "criterion": "ML" if ml else "REML", "n_obs": fit.n_obs,
        "loglik": fit.loglik, "aic": fit.aic, "bic": fit.bic, "converged": fit.converged,
        "singular": fit.singular, "fixed": _records(fit.fixed),
        "varcorr": fit.varcorr.to_dict(orient="records"),
    }  # fmt: skip
    if ci is not None:
        out["profile_intervals"] = _records(ci)
    if reading:
        out["reading"] = reading
    if fmt == "json":
        typer.echo(json.dumps(json_safe(out), indent=2))
        return
    lines = [
        f"Linear mixed model, {out['criterion']}: {fit.formula}",
        f"{fit.n_obs} rows; logLik {fit.loglik:.3f}, AIC {fit.aic:.3f}, BIC {fit.bic:.3f}"
        + ("; singular fit (a variance at 0)" if fit.singular else ""),
        "",
        "Fixed effects (Satterthwaite df):",
        fit.fixed.to_string(float_format=lambda v: f"{v:.4g}"),
        "",
        "Random effects:",
        fit.varcorr.astype(object).fillna("").to_string(index=False),
    ]
    if ci is not None:
        lines += [
            "",
            "Profile-likelihood 95% intervals:",
            ci.to_string(float_format="{:.4g}".format),
        ]
    if reading:
        lines += ["", reading]
    typer.echo("\n".join(lines))


def therapists_command(
    file: Annotated[Path, typer.Argument(help="Sessions or patients table.")],
    score: Annotated[str, typer.Option("--score", help="The score to split by therapist.")],
    therapist: Annotated[str, typer.Option("--therapist", help="Therapist column.")] = "therapist",
    patient: Annotated[
        str | None, typer.Option("--patient", help="Patient column, for several rows each.")
    ] = None,
    alliance: Annotated[
        str | None,
        typer.Option(
            "--alliance",
            help="Also split alliance -> --score into therapist and "
            "patient parts (one row per patient).",
        ),
    ] = None,
    chart: Annotated[
        Path | None, typer.Option("--chart", help="Caterpillar chart (.png, .svg, .html, .json).")
    ] = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="text or json.")] = "text",
) -> None:
    """Therapist effects: the therapist share of a score (ICC with its interval) and each
    therapist's shrunken effect with its interval, instead of raw means."""
    from alliance.research.multilevel import FormulaError
    from alliance.research.multilevel.analyses import alliance_outcome_split, therapist_effects

    require_text_or_json(fmt)
    table = read_input(file)
    try:
        result = therapist_effects(table, score, therapist=therapist, patient=patient)
        split = (
            alliance_outcome_split(table, alliance, score, therapist=therapist)
            if alliance
            else None
        )
    except FormulaError as exc:
        fail(f"{file}: {exc}")
    if chart is not None:
        need_extra("charts", "altair")
        from alliance.research.multilevel.plots import caterpillar_chart

        write_chart(caterpillar_chart(result.table, score), chart)
    out: dict[str, Any] = {
        "icc": _records(result.icc), "therapists": _records(result.table),
        "reading": result.reading,
    }  # fmt: skip
    if split is not None:
        out["alliance_outcome_split"] = _records(split.table)
        out["split_reading"] = split.reading
    if fmt == "json":
        typer.echo(json.dumps(json_safe(out), indent=2))
        return
    lines = [
        result.reading,
        "",
        "Share of the variance:",
        result.icc.to_string(float_format=lambda v: f"{v:.4f}"),
        "",
        "Therapists (shrunken effects, 95% intervals; raw = raw mean minus clinic mean):",
        result.table.to_string(float_format=lambda v: f"{v:.3f}"),
    ]
    if split is not None:
        lines += ["", split.table.to_string(float_format=lambda v: f"{v:.4g}"), split.reading]
    typer.echo("\n".join(lines))


model_command.__doc__ = (model_command.__doc__ or "") + "\n\n" + MODEL_EXAMPLES
therapists_command.__doc__ = (therapists_command.__doc__ or "") + "\n\n" + THERAPIST_EXAMPLES


POWER_EXAMPLES = """
[bold]Examples[/]

  alliance power --therapists 10,20,40 --patients 8 --sessions 10 --within 0.2
  alliance power --patients 20,40,80 --no-therapists --between 0.3 --effect between
  alliance power --therapists 20 --patients 8 --dropout 0.05 --sims 1000 --format json
"""


def _sizes(option: str, text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        fail(f"{option}: whole numbers separated by commas, got {text!r}")
    if not values:
        fail(f"{option}: give at least one number")
    return values


def power_command(
    therapists: Annotated[
        str, typer.Option("--therapists", help="Therapists; a list (10,20,40) for a curve.")
    ] = "20",
    no_therapists: Annotated[
        bool, typer.Option("--no-therapists", help="Two levels: sessions in patients only.")
    ] = False,
    patients: Annotated[
        str, typer.Option("--patients", help="Patients per therapist (or in all); or a list.")
    ] = "8",
    sessions: Annotated[str, typer.Option("--sessions", help="Sessions per patient.")] = "10",
    therapist_icc: Annotated[float, typer.Option("--therapist-icc")] = 0.05,
    patient_icc: Annotated[float, typer.Option("--patient-icc")] = 0.3,
    within: Annotated[
        float, typer.Option("--within", help="Within-patient effect (SD units).")
    ] = 0.0,
    between: Annotated[
        float, typer.Option("--between", help="Between-patient effect (SD units).")
    ] = 0.0,
    dropout: Annotated[
        float, typer.Option("--dropout", help="Per-session chance of leaving.")
    ] = 0.0,
    effect: Annotated[str, typer.Option("--effect", help="within or between.")] = "within",
    sims: Annotated[int, typer.Option("--sims", help="Replications per design.")] = 500,
    alpha: Annotated[float, typer.Option("--alpha")] = 0.05,
    seed: Annotated[int | None, typer.Option("--seed")] = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="text or json.")] = "text",
) -> None:
    """Power of a within/between alliance study by simulation: each replication is fitted
    with the mixed model the real data will get. A list in one of --therapists, --patients
    or --sessions gives a power curve over it."""
    from rich.progress import Progress

    from alliance.research.multilevel.power import Design, power_curve

    require_text_or_json(fmt)
    if effect not in ("within", "between"):
        fail(f"--effect must be within or between, not {effect!r}")
    sizes = {
        "therapists": _sizes("--therapists", therapists),
        "patients": _sizes("--patients", patients),
        "sessions": _sizes("--sessions", sessions),
    }
    varied = [name for name, values in sizes.items() if len(values) > 1]
    if len(varied) > 1 or (no_therapists and "therapists" in varied):
        fail("give a list in one of --therapists, --patients, --sessions at most")
    vary = varied[0] if varied else "patients"
    try:
        design = Design(
            therapists=None if no_therapists else sizes["therapists"][0],
            patients=sizes["patients"][0], sessions=sizes["sessions"][0],
            therapist_icc=0.0 if no_therapists else therapist_icc, patient_icc=patient_icc,
            within=within, between=between, dropout=dropout,
        )  # fmt: skip
        if sims < 1 or not 0.0 < alpha < 1.0:
            raise ValueError("--sims: must be >= 1, and --alpha between 0 and 1")
    except ValueError as exc:
        field, _, rule = str(exc).partition(": ")
        fail(f"--{field.lstrip('-').replace('_', '-')}: {rule}")
    with Progress(console=stderr, transient=True) as bar:
        task = bar.add_task("simulating", total=sims * len(sizes[vary]))
        curve = power_curve(design, vary, sizes[vary], effect, replications=sims,  # type: ignore[arg-type]
                            alpha=alpha, seed=seed,
                            progress=lambda done: bar.update(task, completed=done))  # fmt: skip
    if fmt == "json":
        out = {"design": design.__dict__, "effect": effect, "alpha": alpha, "sims": sims,
               "curve": curve.to_dict(orient="records")}  # fmt: skip
        typer.echo(json.dumps(json_safe(out), indent=2))
        return
    typer.echo(
        f"Power of the {effect}-patient effect at alpha {alpha:g}, {sims} simulated studies "
        f"per design (Monte Carlo SE beside each):\n"
        + curve.to_string(index=False, float_format=lambda v: f"{v:.3f}")
    )


power_command.__doc__ = (power_command.__doc__ or "") + "\n\n" + POWER_EXAMPLES
