"""``alliance psychometrics``: reliability, items and factor structure of an instrument's
answers (:mod:`alliance.research.psychometrics.report`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from alliance.cli.common import (
    fail,
    json_safe,
    need_extra,
    parse_column_map,
    read_input,
    require_text_or_json,
    user_errors,
)

EXAMPLES = """
[bold]Input[/]: item answers, one row per administration, columns <instrument>_<n>.

[bold]Examples[/]

  alliance psychometrics answers.csv                   [dim]# instrument from the columns[/]
  alliance psychometrics answers.sav -i wai_sr --group site --html report.html
  alliance psychometrics answers.csv --session session --format json
  alliance psychometrics answers.csv --ordinal          [dim]# Likert items: WLSMV[/]
  alliance psychometrics items.csv -i wai_sr --map goal1=wai_sr_4,goal2=wai_sr_6,...
  alliance psychometrics answers.csv -i wai_sr \
      --model "bond=wai_sr_3,wai_sr_5,wai_sr_7,wai_sr_9;work=wai_sr_1,wai_sr_2,wai_sr_4"
"""


def parse_model(spec: str) -> dict[str, list[str]]:
    """``--model "f1=a,b,c;f2=d,e"`` as a factor -> items spec (exit 2 when malformed).

    >>> parse_model("bond=i3,i5; work=i1,i2")
    {'bond': ['i3', 'i5'], 'work': ['i1', 'i2']}
    """
    model: dict[str, list[str]] = {}
    for part in (p.strip() for p in spec.split(";") if p.strip()):
        name, sep, items = part.partition("=")
        columns = [c.strip() for c in items.split(",") if c.strip()]
        if not sep or not name.strip() or not columns:
            fail(f"--model: {part!r} must be FACTOR=ITEM,ITEM,... (factors separated by ;)")
        if name.strip() in model:
            fail(f"--model: factor {name.strip()!r} is named twice")
        model[name.strip()] = columns
    if not model:
        fail("--model: give at least one FACTOR=ITEM,ITEM,...")
    return model


def psychometrics_command(
    file: Annotated[Path, typer.Argument(help="CSV/TSV, Excel, SPSS, Stata or Parquet file.")],
    instrument: Annotated[
        str | None, typer.Option("-i", "--instrument", help="Instrument id; inferred if omitted.")
    ] = None,
    group: Annotated[
        str | None, typer.Option("--group", help="Column of groups: measurement invariance.")
    ] = None,
    session: Annotated[
        str | None, typer.Option("--session", help="Session column: shares per session.")
    ] = None,
    column_map: Annotated[
        str | None,
        typer.Option("--map", help="Rename columns: OLD=NEW,... or a two-column CSV/JSON file."),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option("--model", help="Your own factor model: FACTOR=ITEM,ITEM;FACTOR=..."),
    ] = None,
    ordinal: Annotated[
        bool, typer.Option("--ordinal", help="Fit the factor models to polychorics by WLSMV.")
    ] = False,
    html_path: Annotated[
        Path | None, typer.Option("--html", help="Also write the report with its charts.")
    ] = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="text or json.")] = "text",
) -> None:
    """Reliability (alpha with its interval, omega), item statistics with floor and ceiling,
    straight-lining, the competing factor models with lavaan's fit indices and, with
    --group, measurement invariance."""
    from alliance.instruments import get_instrument, list_instruments
    from alliance.research.psychometrics import PsychometricsError
    from alliance.research.psychometrics.report import psychometrics_report
    from alliance.scoring import compile_key, infer_instrument

    require_text_or_json(fmt)
    scales = parse_model(model) if model else None
    mapping = parse_column_map(column_map)
    table = read_input(file)
    if mapping:
        table = table.rename(columns=mapping)
    with user_errors():
        chosen = instrument or infer_instrument(
            list(table.columns), [compile_key(i) for i in list_instruments()]
        )
        inst = get_instrument(chosen)
    try:
        report = psychometrics_report(
            table, inst, scales=scales, group=group, session=session, ordinal=ordinal
        )
    except PsychometricsError as exc:
        fail(f"{file}: {exc}")
    if html_path is not None:
        need_extra("charts", "altair")
        from alliance.research.psychometrics.plots import report_html

        page = report_html(report, f"{inst.short_name}: {file.name}", high=inst.scale.max)
        try:
            html_path.write_bytes(page)
        except OSError as exc:
            fail(f"{html_path}: cannot write the report ({exc.strerror})")
    if fmt == "json":
        out: dict[str, Any] = {"instrument": inst.id, **report.to_dict()}
        typer.echo(json.dumps(json_safe(out), indent=2))
        return
    typer.echo(_text(report, inst.short_name))


def _text(report: Any, name: str) -> str:
    number = lambda v: f"{v:.3f}"  # noqa: E731
    models = report.models.drop(columns=["aic", "bic", "converged"], errors="ignore")
    lines = [
        f"{name}: {report.n} complete administrations",
        "",
        "Reliability (alpha with Feldt's 95% interval; omega from the factor model):",
        report.reliability.to_string(float_format=number),
        "",
        "Factor models (lavaan's fit indices; WLSMV: the scaled statistics):",
        models.to_string(float_format=number),
    ]
    if report.bifactor:
        b = report.bifactor
        lines.append(
            f"Bifactor: omega hierarchical {b['omega_h']:.3f}, omega total {b['omega_t']:.3f}, "
            f"explained common variance of the general factor {b['ecv']:.3f}"
        )
    lines += ["", "Items:", report.items.to_string(float_format=number)]
    lines += ["", "Straight-lining:", report.straight_lining.to_string(float_format=number)]
    if report.by_session is not None:
        lines += ["", "Floor and ceiling of the scale by session:",
                  report.by_session.to_string(float_format=number)]  # fmt: skip
    if report.invariance is not None:
        lines += ["", "Measurement invariance:", report.invariance.to_string(float_format=number)]
    if report.verdict:
        lines += ["", report.verdict]
    lines += [f"note: {n}" for n in report.notes]
    return "\n".join(lines)


psychometrics_command.__doc__ = (psychometrics_command.__doc__ or "") + "\n" + EXAMPLES
