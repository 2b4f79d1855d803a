"""``alliance meta``: random-effects meta-analysis of a study table."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from alliance.cli.common import (
    fail,
    json_safe,
    need_extra,
    read_input,
    relay_warnings,
    require_text_or_json,
    write_chart,
)

if TYPE_CHECKING:
    import pandas as pd

    from alliance.research.meta import MetaResult

# The statistics (SciPy) are imported when the command runs, so that every other
# subcommand of `alliance` starts without them.

EXAMPLES = """
[bold]Input[/]: a table (CSV, Excel, Parquet, SPSS, ...) with columns [cyan]yi,vi[/] (effect
sizes and sampling variances) or [cyan]r,n[/] (correlations and sample sizes; analysed as
Fisher's z and back-transformed to r). A [cyan]study[/] column, if present, names the rows.

[bold]Examples[/]

  alliance meta studies.csv                              [dim]# REML, Wald z, text report[/]
  alliance meta studies.csv --test knha --format json    [dim]# Knapp-Hartung, JSON[/]
  alliance meta studies.csv --method DL --mods rater,meanage
  alliance meta studies.csv --bias --funnel funnel.png --forest forest.html
  alliance meta effects.csv --cluster study              [dim]# three-level + CR2 robust[/]
"""


def _bias(res: MetaResult) -> dict[str, Any]:
    from alliance.research.meta import ranktest, regtest, trimfill

    eg = regtest(res)
    tau, p = ranktest(res)
    tf = trimfill(res)
    out: dict[str, dict[str, Any]] = {
        "regtest": {"stat": eg.stat, "pval": eg.pval, "limit_estimate": eg.limit_estimate,
                    "limit_ci": list(eg.limit_ci)},
        "ranktest": {"tau": tau, "pval": p},
        "trimfill": {"k0": tf.k0, "side": tf.side, "estimate": tf.fit.estimate,
                     "ci_lower": float(tf.fit.ci_lower[0]), "ci_upper": float(tf.fit.ci_upper[0]),
                     "tau2": tf.fit.tau2},
    }  # fmt: skip
    if res.is_correlation:
        out["trimfill"]["r"] = math.tanh(tf.fit.estimate)
    return out


def _bias_text(b: dict[str, Any]) -> str:
    eg, rt, tf = b["regtest"], b["ranktest"], b["trimfill"]
    return (
        f"\nEgger's regression test: z = {eg['stat']:.4f}, p = {eg['pval']:.4f}; "
        f"limit estimate {eg['limit_estimate']:.4f}\n"
        f"Rank correlation test: Kendall's tau = {rt['tau']:.4f}, p = {rt['pval']:.4f}\n"
        f"Trim-and-fill: {tf['k0']} studies filled on the {tf['side']}; adjusted estimate "
        f"{tf['estimate']:.4f} [{tf['ci_lower']:.4f}, {tf['ci_upper']:.4f}]"
    )


def _three_level(
    table: Any, cluster: str, method: str, mods: list[str], level: float
) -> dict[str, Any]:
    from alliance.research.meta import rma_mv, robust

    if cluster not in table.columns:
        fail(f"--cluster: column {cluster!r} is not in the table")
    res = rma_mv(table["yi"], table["vi"], table[cluster], method=method, level=level,
                 mods=table[mods] if mods else None)  # fmt: skip
    rb = robust(res, adjust="CR2")
    return {
        "k": res.k, "n_clusters": res.n_clusters, "method": res.method, "model": "three-level",
        "estimate": res.estimate, "se": float(res.se[0]), "ci_lower": float(res.ci_lower[0]),
        "ci_upper": float(res.ci_upper[0]), "pval": float(res.pval[0]),
        "tau2": float(res.sigma2.sum()), "sigma2_between": float(res.sigma2[0]),
        "sigma2_within": float(res.sigma2[1]), "i2": res.i2_total,
        "i2_between": float(res.i2_levels[0]), "i2_within": float(res.i2_levels[1]),
        "q": res.q, "q_p": res.q_p, "pi_lower": res.pi_lower, "pi_upper": res.pi_upper,
        "loglik": res.loglik, "converged": res.converged,
        "robust_cr2": {"se": float(rb.se[0]), "df": float(rb.df[0]), "pval": float(rb.pval[0]),
                       "ci_lower": float(rb.ci_lower[0]), "ci_upper": float(rb.ci_upper[0])},
        "coefficients": [{"name": n, "estimate": float(b), "se": float(s)}
                         for n, b, s in zip(res.coef_names, res.beta, res.se)],
    }  # fmt: skip


def meta_command(
    file: Annotated[Path, typer.Argument(help="Study table: columns yi,vi or r,n.")],
    method: Annotated[
        str,
        typer.Option(
            "--method", "-m", help="tau^2 estimator: REML, ML, DL, HE, HS, SJ, PM, EB, EE."
        ),
    ] = "REML",
    test: Annotated[
        str, typer.Option("--test", "-t", help="z (Wald), knha (Knapp-Hartung) or t.")
    ] = "z",
    mods: Annotated[
        str | None,
        typer.Option(
            "--mods", help="Moderator columns, comma-separated (text columns are dummy-coded)."
        ),
    ] = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="text or json.")] = "text",
    level: Annotated[
        float, typer.Option("--level", help="Confidence level: in percent (95) or as 0.95.")
    ] = 95.0,
    bias: Annotated[
        bool, typer.Option("--bias", help="Add Egger's test, the rank test and trim-and-fill.")
    ] = False,
    cluster: Annotated[
        str | None,
        typer.Option("--cluster", help="Column of clusters: three-level model + CR2 robust SEs."),
    ] = None,
    forest: Annotated[
        Path | None,
        typer.Option("--forest", help="Write a forest plot (.png, .svg, .html, .json)."),
    ] = None,
    funnel: Annotated[
        Path | None,
        typer.Option("--funnel", help="Write a funnel plot (.png, .svg, .html, .json)."),
    ] = None,
) -> None:
    """Random-effects meta-analysis (metafor's rma) of a table of studies."""
    from alliance.research.meta import MetaInputError, MetaWarning
    from alliance.research.meta._validate import confidence_level

    require_text_or_json(fmt)
    try:
        level = confidence_level(level)
    except MetaInputError as exc:
        fail(f"--{exc}")
    mod_cols = [m.strip() for m in (mods or "").split(",") if m.strip()]
    frame = read_input(file)
    with relay_warnings(MetaWarning):
        _meta(frame, file, method, test, level, mod_cols, cluster, bias, forest, funnel, fmt)


def _meta(
    frame: pd.DataFrame, file: Path, method: str, test: str, level: float, mod_cols: list[str],
    cluster: str | None, bias: bool, forest: Path | None, funnel: Path | None, fmt: str,
) -> None:  # fmt: skip
    from alliance.research.meta import MetaInputError, analysis_table, rma, trimfill

    try:
        if cluster is not None and cluster not in frame.columns:
            fail(f"--cluster: column {cluster!r} is not in the table")
        table, measure = analysis_table(frame, mod_cols, cluster)
        if cluster is not None:
            if test != "z":
                fail("--cluster fits the three-level model with z tests and reports CR2 "
                     "robust t tests; drop --test")  # fmt: skip
            out = _three_level(table, cluster, method, mod_cols, level)
            typer.echo(json.dumps(json_safe(out), indent=2) if fmt == "json" else _mv_text(out))
            return
        res = rma(table["yi"], table["vi"], method=method, test=test, level=level,
                  mods=table[mod_cols] if mod_cols else None, measure=measure,
                  slab=table["study"].tolist())  # fmt: skip
        extra = _bias(res) if bias else None
        if forest is not None or funnel is not None:
            need_extra("charts", "altair")
            from alliance.research.meta.plots import forest_chart, funnel_chart
        if forest is not None:
            write_chart(
                forest_chart(res) if res.p == 1 else fail("--forest needs no --mods"), forest
            )
        if funnel is not None:
            write_chart(funnel_chart(res, trimfill(res) if bias and res.p == 1 else None), funnel)
    except MetaInputError as exc:
        fail(f"{file}: {exc}")
    if fmt == "json":
        out = res.to_dict()
        if extra is not None:
            out.update(extra)
        typer.echo(json.dumps(json_safe(out), indent=2))
    else:
        typer.echo(res.summary() + ("" if extra is None else _bias_text(extra)))


def _mv_text(out: dict[str, Any]) -> str:
    rb = out["robust_cr2"]
    return (
        f"Three-level model (k = {out['k']} effects in {out['n_clusters']} clusters; "
        f"{out['method']})\n"
        f"sigma^2 between = {out['sigma2_between']:.4f}, within = {out['sigma2_within']:.4f}; "
        f"I^2 = {out['i2']:.2f}%\n"
        f"estimate = {out['estimate']:.4f} (se {out['se']:.4f}) "
        f"[{out['ci_lower']:.4f}, {out['ci_upper']:.4f}]\n"
        f"CR2 robust: se {rb['se']:.4f}, df {rb['df']:.2f}, p = {rb['pval']:.4f}, "
        f"[{rb['ci_lower']:.4f}, {rb['ci_upper']:.4f}]"
    )


meta_command.__doc__ = (meta_command.__doc__ or "") + "\n\n" + EXAMPLES
