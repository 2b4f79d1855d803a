"""Small-study / publication bias and case diagnostics.

Egger's regression test (``regtest``), Begg and Mazumdar's rank correlation
(``ranktest``), Duval and Tweedie's trim-and-fill (``trimfill``), and the
leave-one-out and influence diagnostics of Viechtbauer and Cheung (2010)
(``leave1out``, ``influence``), each following metafor's definitions.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy import stats

from alliance.research.meta import _engine as eng
from alliance.research.meta._engine import BoolArray
from alliance.research.meta._validate import FloatArray, MetaInputError, MetaWarning, as_vector
from alliance.research.meta.models import MetaResult, rma

PREDICTORS = ("sei", "vi", "ninv", "sqrtninv")


@dataclass(frozen=True, eq=False)
class RegTest:
    """Result of Egger's regression test: the predictor's test and the limit estimate."""

    model: str
    predictor: str
    stat: float
    pval: float
    df: float | None
    limit_estimate: float
    limit_ci: tuple[float, float]
    fit: MetaResult


def regtest(
    res: MetaResult, model: str = "rma", predictor: str = "sei", ni: ArrayLike | None = None
) -> RegTest:
    """Egger's regression test for funnel-plot asymmetry (metafor ``regtest``).

    ``model="rma"`` adds the predictor to the fitted model (same tau^2 method and
    test); ``model="lm"`` is the classic weighted regression (equal-effects fit
    with a multiplicative dispersion, t with k - 2 df). ``predictor`` is the
    standard error ("sei"), the variance ("vi"), 1/n ("ninv") or 1/sqrt(n)
    ("sqrtninv"; these need ``ni``). The limit estimate is the intercept: the
    effect expected for a study of infinite precision.

    >>> fit = rma([0.9, 0.5, 0.4, 0.2, 0.1], [0.3, 0.1, 0.05, 0.02, 0.01])
    >>> regtest(fit).stat > 0
    True
    """
    if res.p != 1:
        raise MetaInputError("regtest needs an intercept-only model (fit without --mods)")
    if predictor not in PREDICTORS:
        raise MetaInputError(f"predictor {predictor!r} is not one of {', '.join(PREDICTORS)}")
    if predictor in ("ninv", "sqrtninv"):
        if ni is None:
            raise MetaInputError(f"predictor {predictor!r} needs sample sizes ni")
        n = as_vector(ni, "ni", res.slab)
        x = 1 / n if predictor == "ninv" else 1 / np.sqrt(n)
    else:
        x = np.sqrt(res.vi) if predictor == "sei" else res.vi.copy()
    if model == "rma":
        fit = rma(res.yi, res.vi, mods=x, method=res.method, test=res.test, level=res.level)
    elif model == "lm":
        # Classic Egger: weighted least squares with a free residual scale, which is what
        # EE with Knapp-Hartung computes; rma's warning is meant for users who choose it.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MetaWarning)
            fit = rma(res.yi, res.vi, mods=x, method="EE", test="knha", level=res.level)
    else:
        raise MetaInputError(f"model {model!r} must be 'rma' or 'lm'")
    return RegTest(
        model=model,
        predictor=predictor,
        stat=float(fit.stat[1]),
        pval=float(fit.pval[1]),
        df=fit.df,
        limit_estimate=float(fit.beta[0]),
        limit_ci=(float(fit.ci_lower[0]), float(fit.ci_upper[0])),
        fit=fit,
    )


def ranktest(res: MetaResult) -> tuple[float, float]:
    """Begg and Mazumdar's rank correlation test: Kendall's tau and its p-value.

    Standardised deviations from the equal-effects estimate are correlated with
    the sampling variances; the p-value is exact whenever there are no ties, at any k
    (metafor's ``ranktest(exact = TRUE)``, its default; R's ``cor.test`` alone would switch
    to the normal approximation from k = 50), else the normal approximation with the
    tie correction.

    >>> fit = rma([0.9, 0.5, 0.4, 0.2, 0.1], [0.3, 0.1, 0.05, 0.02, 0.01])
    >>> round(ranktest(fit)[0], 6)
    1.0
    """
    w = 1 / res.vi
    theta = float(np.sum(w * res.yi) / w.sum())
    vstar = res.vi - 1 / w.sum()
    ystar = (res.yi - theta) / np.sqrt(vstar)
    ties = len(np.unique(ystar)) < res.k or len(np.unique(res.vi)) < res.k
    method = "asymptotic" if ties else "exact"
    out = stats.kendalltau(ystar, res.vi, method=method)
    return float(out.statistic), float(out.pvalue)


@dataclass(frozen=True, eq=False)
class TrimFill:
    """Trim-and-fill result: the model on the augmented data and what was filled."""

    k0: int
    se_k0: float
    side: str
    estimator: str
    fit: MetaResult
    filled_yi: FloatArray
    filled_vi: FloatArray


def _k0(yc: FloatArray, k: int, estimator: str) -> tuple[float, float]:
    ranks = stats.rankdata(np.abs(yc), method="ordinal")
    signed = np.sign(yc) * ranks
    if estimator == "R0":
        neg = -signed[signed < 0]
        r0 = float(k - (neg.max() if neg.size else 0) - 1)
        return r0, math.sqrt(2 * max(0.0, r0) + 2)
    sr = float(signed[signed > 0].sum())
    k0 = (4 * sr - k * (k + 1)) / (2 * k - 1)
    var_sr = (
        k * (k + 1) * (2 * k + 1) + 10 * k0**3 + 27 * k0**2 + 17 * k0
        - 18 * k * k0**2 - 18 * k * k0 + 6 * k**2 * k0
    ) / 24  # fmt: skip
    return float(k0), 4 * math.sqrt(max(var_sr, 0.0)) / (2 * k - 1)


def trimfill(
    res: MetaResult, side: str | None = None, estimator: str = "L0", maxiter: int = 100
) -> TrimFill:
    """Duval and Tweedie's trim-and-fill (metafor ``trimfill``).

    ``side`` is where studies are missing; by default it is taken from the sign
    of Egger's slope (positive slope: missing on the left). Estimators L0 and R0.

    >>> fit = rma([0.9, 0.7, 0.5, 0.4, 0.35, 0.3, 0.2], [0.3, 0.2, 0.1, 0.05, 0.03, 0.02, 0.01])
    >>> tf = trimfill(fit)
    >>> tf.side, tf.k0 >= 0
    ('left', True)
    """
    if res.p != 1:
        raise MetaInputError("trimfill needs an intercept-only model")
    if estimator not in ("L0", "R0"):
        raise MetaInputError(f"estimator {estimator!r} must be 'L0' or 'R0'")
    if side is None:
        slope = rma(res.yi, res.vi, mods=np.sqrt(res.vi), method=res.method).beta[1]
        side = "right" if slope < 0 else "left"
    sign = -1.0 if side == "right" else 1.0
    order = np.argsort(sign * res.yi, kind="stable")
    y, v = sign * res.yi[order], res.vi[order]
    k = res.k
    k0, k0_old, se_k0, beta = 0, -1, 0.0, 0.0
    for _ in range(maxiter):
        if k0 == k0_old:
            break
        k0_old = k0
        beta = rma(y[: k - k0], v[: k - k0], method=res.method).estimate
        raw, se_k0 = _k0(y - beta, k, estimator)
        k0 = int(max(0, round(raw)))
    if k0 == 0:
        return TrimFill(0, se_k0, side, estimator, res, np.empty(0), np.empty(0))
    fy = sign * (2 * beta - y[k - k0 :])
    fv = v[k - k0 :]
    fit = rma(np.concatenate([res.yi, fy]), np.concatenate([res.vi, fv]),
              method=res.method, level=res.level, measure=res.measure,
              slab=[*res.slab, *(f"Filled {i + 1}" for i in range(k0))])  # fmt: skip
    return TrimFill(k0, se_k0, side, estimator, fit, fy, fv)


# ----------------------------------------------------------------- deletion diagnostics


@dataclass(frozen=True)
class _Deleted:
    tau2: FloatArray
    beta: FloatArray
    vb: FloatArray
    s2w: FloatArray
    qe: FloatArray
    i2: FloatArray
    h2: FloatArray


def _estimable_without(X: FloatArray) -> BoolArray:
    """Rows whose deletion leaves the design of full column rank.

    A row carries rank on its own exactly when its leverage in ``X`` is 1 (a moderator
    level held by one study); metafor reports such a study's deletion diagnostics as NA.
    """
    q, _ = np.linalg.qr(X)
    return np.asarray((q * q).sum(axis=1) < 1.0 - 1e-8)


def _deletion_fits(res: MetaResult) -> _Deleted:
    """All k leave-one-out refits at once (a batch of masks); NaN where the refit is not
    estimable (see :func:`_estimable_without`).

    A refit left with as many studies as coefficients (k = 2 for a pooled effect) has no
    heterogeneity to estimate: as metafor does, it is an equal-effects fit with Q = 0,
    tau^2 = 0, I^2 = 0 and H^2 = 1, and the variance is not Knapp-Hartung scaled.
    """
    keep = _estimable_without(res.X)
    n = int(keep.sum())
    masks = 1.0 - np.eye(res.k)[keep]
    batch = eng.make_batch(np.tile(res.yi, (n, 1)), np.tile(res.vi, (n, 1)), res.X, masks)
    dfree = batch.k - batch.p
    exact = dfree < 1
    tau2 = np.zeros(n)
    if not exact.all():
        tau2[~exact] = eng.estimate_tau2(batch.subset(~exact), res.method).tau2
    mo = eng.wls(batch, eng.weights(batch, tau2))
    fe = eng.wls(batch, batch.m / batch.v)
    qe = fe.ypy
    free = np.maximum(dfree, 1)  # the exact fits take the fixed values below
    s2w = mo.ypy / free if res.test == "knha" else np.ones(n)
    if res.method == "EE":
        with np.errstate(divide="ignore", invalid="ignore"):
            i2 = np.where(qe > 0, np.maximum(0.0, 100 * (qe - dfree) / qe), 0.0)
        h2 = qe / free
    else:
        tr_p = eng.traces(batch, fe)[0]
        vt = free / np.where(exact, 1.0, tr_p)  # tr(P) = 0 with one study
        i2, h2 = 100 * tau2 / (vt + tau2), (vt + tau2) / vt
    s2w, i2, h2 = np.where(exact, 1.0, s2w), np.where(exact, 0.0, i2), np.where(exact, 1.0, h2)
    fits = (tau2, mo.beta, mo.ainv * s2w[:, None, None], s2w, qe, i2, h2)
    return _Deleted(*(_scatter(a, keep) for a in fits))


def _scatter(a: FloatArray, keep: BoolArray) -> FloatArray:
    """Rows of ``a`` placed at the ``keep`` positions of a NaN array of len(keep) rows."""
    out = np.full((keep.size, *a.shape[1:]), np.nan)
    out[keep] = a
    return out


def _crit(res: MetaResult, df: FloatArray | None) -> FloatArray:
    alpha = 1 - res.level / 100
    if df is None:
        return np.full(res.k, stats.norm.ppf(1 - alpha / 2))
    return np.asarray(stats.t.ppf(1 - alpha / 2, df), dtype=np.float64)


def leave1out(res: MetaResult) -> pd.DataFrame:
    """Leave-one-out estimates (metafor ``leave1out``), one row per omitted study.

    >>> fit = rma([0.1, 0.3, 0.35, 0.65, 0.45], [0.01, 0.02, 0.015, 0.03, 0.01])
    >>> list(leave1out(fit).columns)[:4]
    ['study', 'estimate', 'se', 'stat']
    """
    if res.p != 1:
        raise MetaInputError("leave1out needs an intercept-only model")
    d = _deletion_fits(res)
    est = d.beta[:, 0]
    se = np.sqrt(d.vb[:, 0, 0])
    # At k = 2 each refit holds one study: a z test, as metafor does (see _deletion_fits).
    df = None if res.df is None or res.k == 2 else np.full(res.k, res.k - 2.0)
    with np.errstate(divide="ignore"):  # se = 0 when the studies left agree (knha): inf
        stat = est / se
    pval = 2 * (stats.norm.sf(np.abs(stat)) if df is None else stats.t.sf(np.abs(stat), df))
    crit = _crit(res, df)
    q_p = stats.chi2.sf(d.qe, res.k - 2) if res.k > 2 else np.ones(res.k)
    return pd.DataFrame(
        {
            "study": list(res.slab), "estimate": est, "se": se, "stat": stat, "pval": pval,
            "ci_lower": est - crit * se, "ci_upper": est + crit * se, "q": d.qe,
            "q_p": q_p, "tau2": d.tau2, "i2": d.i2, "h2": d.h2,
        }
    )  # fmt: skip


def influence(res: MetaResult) -> pd.DataFrame:
    """Case diagnostics (metafor ``influence.rma.uni``), one row per study.

    Columns: rstudent, dffits, cook_d, cov_r, tau2_del, qe_del, hat, weight,
    dfbs_<coef> and ``influential`` (metafor's '*' rule: |dffits| > 3 sqrt(p/(k-p)),
    chi2_p-quantile of Cook's distance > 0.5, hat > 3p/k or any |dfbs| > 1).

    >>> fit = rma([0.1, 0.3, 0.35, 0.65, 0.45], [0.01, 0.02, 0.015, 0.03, 0.01])
    >>> influence(fit)[["hat", "weight"]].sum().round(6).tolist()
    [1.0, 100.0]
    """
    d = _deletion_fits(res)
    X, k, p = res.X, res.k, res.p
    w = 1 / (res.vi + res.tau2)
    hat = w * np.einsum("ij,jk,ik->i", X, np.linalg.inv((X * w[:, None]).T @ X), X)
    pred = X @ res.beta
    delpred = np.einsum("ij,ij->i", X, d.beta)
    vdelpred = np.einsum("ij,ijk,ik->i", X, d.vb, X)
    dffits = (pred - delpred) / np.sqrt(d.s2w * hat * (d.tau2 + res.vi))
    dfb = res.beta[None, :] - d.beta
    ok = np.isfinite(d.tau2)  # NaN rows: deletion leaves the model inestimable
    wdel = 1 / (res.vi[None, :] + d.tau2[ok, None])
    vb_del = np.linalg.inv(np.einsum("ki,bk,kj->bij", X, wdel, X))
    dfbs = dfb / np.sqrt(d.s2w[:, None] * _scatter(np.einsum("bii->bi", vb_del), ok))
    svb = np.linalg.inv(res.vb)
    cook = np.einsum("bi,ij,bj->b", dfb, svb, dfb)
    cov_r = _scatter(np.linalg.det(d.vb[ok]), ok) / np.linalg.det(res.vb)
    resid = res.yi - delpred
    rstudent = resid / np.sqrt(res.vi * d.s2w + vdelpred + d.tau2 * d.s2w)
    out = pd.DataFrame(
        {
            "study": list(res.slab), "rstudent": rstudent, "dffits": dffits, "cook_d": cook,
            "cov_r": cov_r, "tau2_del": d.tau2, "qe_del": d.qe, "hat": hat, "weight": res.weights,
        }
    )  # fmt: skip
    for j, name in enumerate(res.coef_names):
        out[f"dfbs_{name}"] = dfbs[:, j]
    out["influential"] = (
        (np.abs(dffits) > 3 * math.sqrt(p / (k - p)))
        | (stats.chi2.cdf(cook, df=p) > 0.5)
        | (hat > 3 * p / k)
        | (np.abs(dfbs) > 1).any(axis=1)
    )
    return out
