"""Meta-regression helpers: design matrices, subgroup analysis, Wald tests.

Mixed-effects meta-regression itself is ``rma(yi, vi, mods=...)``: the omnibus
test of moderators (QM, or F under Knapp-Hartung) and the R^2 analogue
(proportional reduction of tau^2 against the intercept-only model with the same
estimator) are part of its result.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy import stats

from alliance.research.meta._design import design_matrix
from alliance.research.meta._validate import MetaInputError, check_effects, row_label
from alliance.research.meta.models import MetaResult, rma

__all__ = ["SubgroupResult", "design_matrix", "subgroup", "wald_test"]


@dataclass(frozen=True, eq=False)
class SubgroupResult:
    """Per-subgroup random-effects models and the test of subgroup differences."""

    table: pd.DataFrame
    fits: dict[str, MetaResult]
    q_between: float
    df: int
    pval: float


def subgroup(
    yi: ArrayLike,
    vi: ArrayLike,
    groups: ArrayLike,
    *,
    method: str = "REML",
    test: str = "z",
    level: float = 95.0,
    measure: str = "GEN",
    slab: Sequence[str] | None = None,
) -> SubgroupResult:
    """Subgroup analysis with a separate tau^2 in each subgroup.

    Each subgroup gets its own model; the subgroup estimates are then compared
    with an equal-effects model (Q_between on g - 1 df), as in the
    Cochrane Handbook (10.11.3.1) and metafor's "separate estimates" approach.

    >>> sg = subgroup([0.1, 0.2, 0.15, 0.5, 0.6, 0.55], [0.01] * 6, list("aaabbb"))
    >>> sg.table["group"].tolist(), sg.df
    (['a', 'b'], 1)
    """
    labels = None if slab is None else [str(s) for s in slab]
    y, v = check_effects(yi, vi, labels)
    g = pd.Series(np.asarray(groups, dtype=object))
    if len(g) != y.size:
        raise MetaInputError(f"groups has {len(g)} values but there are {y.size} studies")
    if g.isna().any():
        raise MetaInputError(
            f"groups: {row_label(int(np.flatnonzero(g.isna())[0]), labels)} is missing"
        )
    keys = sorted(g.astype(str).unique())
    if len(keys) < 2:
        raise MetaInputError("subgroup analysis needs at least two subgroups")
    fits: dict[str, MetaResult] = {}
    for key in keys:
        sel = (g.astype(str) == key).to_numpy()
        if sel.sum() < 2:
            raise MetaInputError(f"subgroup {key!r} has {int(sel.sum())} study; each needs >= 2")
        sub_slab = None if labels is None else [s for s, keep in zip(labels, sel) if keep]
        fits[key] = rma(y[sel], v[sel], method=method, test=test, level=level, measure=measure,
                        slab=sub_slab)  # fmt: skip
    table = pd.DataFrame([{"group": k, **_row(f)} for k, f in fits.items()])
    est = table["estimate"].to_numpy()
    w = 1 / table["se"].to_numpy() ** 2
    q_between = float(np.sum(w * (est - np.sum(w * est) / w.sum()) ** 2))
    df = len(keys) - 1
    return SubgroupResult(table, fits, q_between, df, float(stats.chi2.sf(q_between, df)))


def _row(f: MetaResult) -> dict[str, float | int | None]:
    return {
        "k": f.k, "estimate": f.estimate, "se": float(f.se[0]), "ci_lower": float(f.ci_lower[0]),
        "ci_upper": float(f.ci_upper[0]), "tau2": f.tau2, "i2": f.i2, "q": f.q,
        "pi_lower": f.pi_lower, "pi_upper": f.pi_upper,
    }  # fmt: skip


def wald_test(res: MetaResult, coefs: Sequence[str]) -> tuple[float, int, float]:
    """Wald-type test that the named coefficients are all zero (metafor ``anova(btt=)``).

    Returns (statistic, df, p). Chi-square with m df for z tests; F(m, k - p)
    (statistic divided by m) under t / Knapp-Hartung tests.

    >>> res = rma([0.1, 0.2, 0.5, 0.6, 0.3], [0.01] * 5, mods=[[1.0], [2.0], [5.0], [6.0], [3.0]])
    >>> wald_test(res, ["mod1"])[1]
    1
    """
    idx = []
    for c in coefs:
        if c not in res.coef_names:
            raise MetaInputError(f"no coefficient {c!r}; the model has {', '.join(res.coef_names)}")
        idx.append(res.coef_names.index(c))
    b = res.beta[idx]
    qm = float(b @ np.linalg.solve(res.vb[np.ix_(idx, idx)], b))
    m = len(idx)
    if res.df is None:
        return qm, m, float(stats.chi2.sf(qm, m))
    return qm / m, m, float(stats.f.sf(qm / m, m, res.df))
