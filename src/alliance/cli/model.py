"""``alliance model`` and ``alliance therapists``: multilevel models of a sessions table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from alliance.cli.common import fail, need_extra, read_input
from alliance.cli.meta import _clean, _write_chart

if TYPE_CHECKING:
    import pandas as pd

MODEL_EXAMPLES = """
[bold]Input[/]: a table (CSV, Excel, Parquet, SPSS, ...) with one row per session.

[bold]Examples[/]

  alliance model sessions.csv --formula "wai ~ session + (1 + session | patient) + (1 | therapist)"
  alliance model sessions.csv --formula "..." --ml --profile --format json
  alliance model sessions.csv --outcome phq9 --predictor wai --patient patient \\
      --therapist therapist --time session --lagged   [dim]# within/between, next session[/]
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


def _check_format(fmt: str) -> None:
    if fmt not in ("text", "json"):
        fail(f"--format must be text or json, not {fmt!r}")


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
    fmt: Annotated[str, typer.Option("--format", "-f", help="text or json.")] = "text",
) -> None:
    """A linear mixed model (lme4's notation), or the within/between-patient decomposition
    of a session predictor (--outcome, --predictor)."""
    from alliance.research.multilevel import FormulaError, confint, lmm
    from alliance.research.multilevel.analyses import within_between

    _check_format(fmt)
    if (formula is None) == (outcome is None or predictor is None):
        fail("give either --formula, or --outcome and --predictor (within/between)")
    table = read_input(file)
    out: dict[str, Any] = {}
    try:
        if formula is not None:
            fit = lmm(formula, table, reml=not ml)
            reading = None
        else:
            result = within_between(table, str(outcome), str(predictor), patient=patient,
                                    therapist=therapist, time=time, lagged=lagged)  # fmt: skip
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
        typer.echo(json.dumps(_clean(out), indent=2))
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

    _check_format(fmt)
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

        _write_chart(caterpillar_chart(result.table, score), chart)
    out: dict[str, Any] = {
        "icc": _records(result.icc), "therapists": _records(result.table),
        "reading": result.reading,
    }  # fmt: skip
    if split is not None:
        out["alliance_outcome_split"] = _records(split.table)
        out["split_reading"] = split.reading
    if fmt == "json":
        typer.echo(json.dumps(_clean(out), indent=2))
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
