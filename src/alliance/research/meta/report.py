"""Plain-text reports of fitted models (the look of metafor's printouts)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from alliance.research.meta.models import MetaResult

_NAMES = {
    "EE": "Equal-effects model",
    "DL": "DerSimonian-Laird",
    "HE": "Hedges",
    "HS": "Hunter-Schmidt",
    "SJ": "Sidik-Jonkman",
    "ML": "maximum likelihood",
    "REML": "restricted maximum likelihood",
    "PM": "Paule-Mandel",
    "EB": "empirical Bayes",
}


def _fmt(x: float | None, digits: int = 4) -> str:
    if x is None or not math.isfinite(x):
        return "NA"
    return f"{x:.{digits}f}"


def _pfmt(p: float | None) -> str:
    if p is None:
        return "NA"
    return "<.0001" if p < 1e-4 else f"{p:.4f}"


def _header(res: MetaResult) -> list[str]:
    kind = "Equal-effects" if res.method == "EE" else "Random-effects"
    if res.p > 1 or res.coef_names[0] != "intrcpt":
        kind = "Equal-effects with moderators" if res.method == "EE" else "Mixed-effects"
    lines = [f"{kind} model (k = {res.k}; tau^2 estimator: {_NAMES.get(res.method, res.method)})"]
    if res.method != "EE":
        ci = res.tau2_ci
        tail = "" if ci is None else f" (CI {_fmt(ci[0])} to {_fmt(ci[1])}, Q-profile)"
        lines.append(f"tau^2 = {_fmt(res.tau2)}{tail}; tau = {_fmt(math.sqrt(res.tau2))}")
    lines.append(f"I^2 = {_fmt(res.i2, 2)}%; H^2 = {_fmt(res.h2, 2)}")
    if res.r2 is not None:
        lines.append(f"R^2 (amount of heterogeneity accounted for) = {_fmt(res.r2, 2)}%")
    lines.append(f"Test for (residual) heterogeneity: Q({res.q_df}) = {_fmt(res.q)}, "
                 f"p = {_pfmt(res.q_p)}")  # fmt: skip
    if res.qm is not None and res.qm_df is not None:
        m, d2 = res.qm_df
        label = f"QM(df = {m})" if d2 is None else f"F(df1 = {m}, df2 = {d2})"
        lines.append(f"Test of moderators: {label} = {_fmt(res.qm)}, p = {_pfmt(res.qm_p)}")
    return lines


def summary_text(res: MetaResult) -> str:
    """metafor-style summary of a :class:`MetaResult`.

    >>> from alliance.research.meta.models import rma
    >>> print(rma([0.1, 0.3, 0.5], [0.01, 0.02, 0.01]).summary().splitlines()[0])
    Random-effects model (k = 3; tau^2 estimator: restricted maximum likelihood)
    """
    lines = _header(res)
    stat = "zval" if res.df is None else "tval"
    lines.append("")
    wd = max(8, *(len(n) for n in res.coef_names))
    lines.append(f"Confidence intervals (ci.lb, ci.ub): {res.level:g}%")
    lines.append(f"{'':>{wd}} {'estimate':>10} {'se':>9} {stat:>9} {'pval':>8} "
                 f"{'ci.lb':>9} {'ci.ub':>9}")  # fmt: skip
    for j, name in enumerate(res.coef_names):
        lines.append(
            f"{name:>{wd}} {_fmt(float(res.beta[j])):>10} {_fmt(float(res.se[j])):>9} "
            f"{_fmt(float(res.stat[j])):>9} {_pfmt(float(res.pval[j])):>8} "
            f"{_fmt(float(res.ci_lower[j])):>9} {_fmt(float(res.ci_upper[j])):>9}"
        )
    if res.pi_lower is not None:
        lines.append(f"Prediction interval: {_fmt(res.pi_lower)} to {_fmt(res.pi_upper)}")
    if res.is_correlation and not res.is_pooled:
        lines.append("Coefficients are on Fisher's z scale (no pooled r with moderators).")
    if res.is_correlation and res.is_pooled:
        lines.append(
            f"Back-transformed to r: {_fmt(math.tanh(res.estimate))} "
            f"[{_fmt(math.tanh(float(res.ci_lower[0])))}, "
            f"{_fmt(math.tanh(float(res.ci_upper[0])))}]"
            + (
                ""
                if res.pi_lower is None or res.pi_upper is None
                else f"; prediction interval {_fmt(math.tanh(res.pi_lower))} "
                f"to {_fmt(math.tanh(res.pi_upper))}"
            )
        )
    if not res.converged:
        lines.append("WARNING: the tau^2 estimator did not converge.")
    return "\n".join(lines)
