"""Fixed/common- and random-effects models and meta-regression (metafor's ``rma``)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from alliance.research.meta import _engine as eng
from alliance.research.meta._design import design_matrix
from alliance.research.meta._dist import chi2_isf, chi2_sf, f_sf, norm_isf, norm_sf, t_isf, t_sf
from alliance.research.meta._validate import (
    FloatArray,
    MetaInputError,
    check_effects,
    confidence_level,
    warn,
)

#: Accepted ``method`` values (EE, FE and CE all mean the equal/common-effect model).
METHODS = ("EE", "FE", "CE", "DL", "HE", "HS", "SJ", "ML", "REML", "PM", "EB")
#: Accepted ``test`` values: Wald z, t with k - p df, Knapp-Hartung(-Sidik-Jonkman).
TESTS = ("z", "t", "knha")
_FIXED = ("EE", "FE", "CE")


@dataclass(frozen=True, eq=False)
class MetaResult:
    """A fitted meta-analytic model, with metafor's vocabulary.

    ``beta``, ``se``, ``stat`` (zval or tval), ``pval``, ``ci_lower`` and
    ``ci_upper`` hold one entry per coefficient (``coef_names``); the scalar
    properties ``estimate`` etc. give the first (the intercept / pooled effect).
    """

    k: int
    p: int
    method: str
    test: str
    level: float
    measure: str
    coef_names: tuple[str, ...]
    beta: FloatArray
    se: FloatArray
    stat: FloatArray
    pval: FloatArray
    ci_lower: FloatArray
    ci_upper: FloatArray
    vb: FloatArray
    df: float | None
    tau2: float
    se_tau2: float | None
    i2: float
    h2: float
    q: float
    q_df: int
    q_p: float
    qm: float | None
    qm_df: tuple[int, int | None] | None
    qm_p: float | None
    #: Percent of the intercept-only tau^2 the moderators explain (metafor's R^2, floored at
    #: 0; 0 when the intercept-only tau^2 is 0); None without moderators or with EE/fixed tau^2.
    r2: float | None
    pi_lower: float | None
    pi_upper: float | None
    ll_ml: float
    ll_reml: float
    converged: bool
    iterations: int
    yi: FloatArray
    vi: FloatArray
    X: FloatArray
    weights: FloatArray
    slab: tuple[str, ...]
    #: metafor's "typical" within-study variance (k - p) / tr(P_FE), used by I^2.
    typical_v: float

    @cached_property
    def tau2_ci(self) -> tuple[float, float] | None:
        """Q-profile confidence interval for tau^2 (computed on first use, like ``confint``)."""
        if self.method == "EE":
            return None
        return tau2_qprofile(self.yi, self.vi, self.X, self.level)

    @property
    def i2_ci(self) -> tuple[float, float] | None:
        """I^2 at the Q-profile bounds of tau^2."""
        ci, vt = self.tau2_ci, self.typical_v
        return None if ci is None else (100 * ci[0] / (vt + ci[0]), 100 * ci[1] / (vt + ci[1]))

    @property
    def h2_ci(self) -> tuple[float, float] | None:
        """H^2 at the Q-profile bounds of tau^2."""
        ci, vt = self.tau2_ci, self.typical_v
        return None if ci is None else ((vt + ci[0]) / vt, (vt + ci[1]) / vt)

    @property
    def estimate(self) -> float:
        """First coefficient: the pooled effect of an intercept-only model."""
        return float(self.beta[0])

    @property
    def zval(self) -> FloatArray:
        """Test statistics (z or t, by ``test``)."""
        return self.stat

    @property
    def is_correlation(self) -> bool:
        """True when the analysis scale is Fisher's z of correlations."""
        return self.measure == "ZCOR"

    @property
    def is_pooled(self) -> bool:
        """True for an intercept-only model, whose coefficient is a pooled effect (with
        moderators the intercept is the effect where every moderator is 0, no pooled r)."""
        return self.coef_names == ("intrcpt",)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dictionary (analysis scale; r scale added for ZCOR)."""
        return _to_dict(self)

    def summary(self) -> str:
        """Text report in the layout of metafor's ``print.rma``."""
        from alliance.research.meta.report import summary_text

        return summary_text(self)


def _none(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def _to_dict(res: MetaResult) -> dict[str, Any]:
    out: dict[str, Any] = {
        "k": res.k,
        "method": res.method,
        "test": res.test,
        "level": res.level,
        "measure": res.measure,
        "estimate": res.estimate,
        "se": float(res.se[0]),
        "stat": float(res.stat[0]),
        "pval": float(res.pval[0]),
        "ci_lower": float(res.ci_lower[0]),
        "ci_upper": float(res.ci_upper[0]),
        "df": res.df,
        "tau2": res.tau2,
        "tau": math.sqrt(res.tau2),
        "se_tau2": _none(res.se_tau2),
        "tau2_ci_lower": None if res.tau2_ci is None else res.tau2_ci[0],
        "tau2_ci_upper": None if res.tau2_ci is None else res.tau2_ci[1],
        "i2": res.i2,
        "h2": res.h2,
        "q": res.q,
        "q_df": res.q_df,
        "q_p": res.q_p,
        "pi_lower": _none(res.pi_lower),
        "pi_upper": _none(res.pi_upper),
        "ll_ml": res.ll_ml,
        "ll_reml": res.ll_reml,
        "converged": res.converged,
        "iterations": res.iterations,
    }
    if res.p > 1 or res.coef_names != ("intrcpt",):
        out["coefficients"] = [
            {
                "name": name,
                "estimate": float(res.beta[j]),
                "se": float(res.se[j]),
                "stat": float(res.stat[j]),
                "pval": float(res.pval[j]),
                "ci_lower": float(res.ci_lower[j]),
                "ci_upper": float(res.ci_upper[j]),
            }
            for j, name in enumerate(res.coef_names)
        ]
        out.update(qm=_none(res.qm), qm_df=res.qm_df, qm_p=_none(res.qm_p), r2=_none(res.r2))
    if res.is_correlation and res.is_pooled:
        out.update(
            r=math.tanh(res.estimate),
            r_ci_lower=math.tanh(out["ci_lower"]),
            r_ci_upper=math.tanh(out["ci_upper"]),
            r_pi_lower=None if out["pi_lower"] is None else math.tanh(out["pi_lower"]),
            r_pi_upper=None if out["pi_upper"] is None else math.tanh(out["pi_upper"]),
        )
    return out


# ----------------------------------------------------------------------------- pieces


def _normalise(method: str, test: str) -> tuple[str, str]:
    m = method.upper()
    if m not in METHODS:
        raise MetaInputError(f"method {method!r} is not one of {', '.join(METHODS)}")
    t = test.lower()
    if t not in TESTS:
        raise MetaInputError(f"test {test!r} is not one of {', '.join(TESTS)}")
    return m, t


def _inference(
    batch: eng.Batch, tau2: float, test: str, level: float
) -> tuple[eng.Moments, FloatArray, float | None, float]:
    """Coefficients, their covariance, t df (or None) and the critical value."""
    mo = eng.wls(batch, eng.weights(batch, np.array([tau2])))
    vb = mo.ainv[0].copy()
    k, p = int(batch.k[0]), batch.p
    df: float | None = None
    if test in ("t", "knha"):
        df = float(k - p)
        if test == "knha":
            vb = vb * float(mo.ypy[0]) / (k - p)
    alpha = 1.0 - level / 100.0
    crit = norm_isf(alpha / 2) if df is None else float(t_isf(alpha / 2, df))
    return mo, vb, df, crit


def _pvalues(stat: FloatArray, df: float | None) -> FloatArray:
    if df is None:
        return 2 * norm_sf(np.abs(stat))
    return 2 * t_sf(np.abs(stat), df)


def _typical_v(batch: eng.Batch) -> tuple[float, float]:
    """QE and metafor's 'typical' within-study variance (k - p) / tr(P_FE)."""
    fe = eng.wls(batch, batch.m / batch.v)
    qe = float(fe.ypy[0])
    vt = float((batch.k[0] - batch.p) / eng.traces(batch, fe)[0][0])
    return qe, vt


def _i2_h2(tau2: float, vt: float, qe: float, df: int, fixed: bool) -> tuple[float, float]:
    if fixed:
        i2 = max(0.0, 100.0 * (qe - df) / qe) if qe > 0 else 0.0
        return i2, qe / df
    return 100.0 * tau2 / (vt + tau2), (vt + tau2) / vt


def tau2_qprofile(
    yi: ArrayLike, vi: ArrayLike, X: ArrayLike | None = None, level: float = 95.0
) -> tuple[float, float]:
    """Q-profile confidence interval for tau^2 (Viechtbauer 2007).

    The bounds solve ``Q_gen(tau2) = chi2_{k-p}`` quantiles; a bound is 0 when
    even tau2 = 0 gives a smaller Q.

    >>> lo, hi = tau2_qprofile([0.1, 0.5, 0.9, 0.2], [0.01, 0.02, 0.01, 0.03])
    >>> 0 < lo < hi
    True
    """
    y, v = check_effects(yi, vi)
    batch = eng.make_batch(y, v, None if X is None else np.asarray(X, dtype=np.float64))
    df = float(batch.k[0] - batch.p)
    alpha = 1.0 - confidence_level(level) / 100.0
    targets = np.array([chi2_isf(alpha / 2, df), chi2_isf(1 - alpha / 2, df)])
    both = eng.Batch(
        np.repeat(batch.y, 2, 0), np.repeat(batch.v, 2, 0), np.repeat(batch.X, 2, 0),
        np.repeat(batch.m, 2, 0),
    )  # fmt: skip
    sol = eng.q_root(both, targets)
    return float(sol.tau2[0]), float(sol.tau2[1])


def _loglik(batch: eng.Batch, mo: eng.Moments, tau2: float) -> tuple[float, float]:
    k, p = float(batch.k[0]), batch.p
    tot = batch.v[0] + tau2
    core = float(np.sum(np.log(tot)) + mo.ypy[0])
    ll_ml = -0.5 * (k * math.log(2 * math.pi) + core)
    X = batch.X[0]
    _, logdet_xx = np.linalg.slogdet(X.T @ X)
    _, logdet_ainv = np.linalg.slogdet(mo.ainv[0])
    logdet_xwx = -logdet_ainv
    ll_reml = -0.5 * ((k - p) * math.log(2 * math.pi) - logdet_xx + core + logdet_xwx)
    return float(ll_ml), float(ll_reml)


def _p_traces(X: FloatArray, w: FloatArray, v: FloatArray) -> dict[str, float]:
    """Traces of ``P = W - W X (X'WX)^-1 X' W`` with ``V = diag(v)``: tr(P), tr(PP), tr(PV),
    tr(PVPV) and tr(VPP), which metafor's tau^2 standard errors use.

    With ``M(d) = (X'WX)^-1 X' diag(d) X`` each is a sum over studies minus p x p terms,
    O(k p^2), no k x k matrix (metafor builds P densely: 755 MB at k = 6000). When a
    subtraction would lose more than ~6 of the 16 digits (weights spanning many orders
    of magnitude), the traces are recomputed as sums of squares from a complete QR
    (``P = A A'``, ``A = D Q2``) where k allows it.
    """
    c = np.linalg.inv(X.T @ (X * w[:, None]))

    def m(d: FloatArray) -> FloatArray:
        return np.asarray(c @ (X.T @ (X * d[:, None])), dtype=np.float64)

    m2, m2v = m(w**2), m(w**2 * v)
    parts = {  # name: (leading sum, correction)
        "p": ((w).sum(), np.trace(m2)),
        "pp": ((w**2).sum(), 2 * np.trace(m(w**3)) - np.sum(m2 * m2.T)),
        "pv": ((w * v).sum(), np.trace(m2v)),
        "pvpv": ((w * w * v * v).sum(), 2 * np.trace(m(w**3 * v * v)) - np.sum(m2v * m2v.T)),
        "vpp": ((v * w * w).sum(), 2 * np.trace(m(w**3 * v)) - np.sum(m2 * m2v.T)),
    }
    out = {name: float(lead - corr) for name, (lead, corr) in parts.items()}
    lossy = any(out[n] <= 1e-6 * lead for n, (lead, _) in parts.items())
    if lossy and len(w) <= 2000:
        return _p_traces_qr(X, w, v)
    return out


def _p_traces_qr(X: FloatArray, w: FloatArray, v: FloatArray) -> dict[str, float]:
    """:func:`_p_traces` without cancellation: every trace a sum of squares, O(k^2)."""
    d = np.sqrt(w)
    q, _ = np.linalg.qr(d[:, None] * X, mode="complete")
    a = d[:, None] * q[:, X.shape[1] :]
    ata, atva = a.T @ a, a.T @ (a * v[:, None])
    return {
        "p": float(np.sum(a * a)), "pp": float(np.sum(ata * ata)),
        "pv": float(np.sum(v[:, None] * a * a)), "pvpv": float(np.sum(atva * atva)),
        "vpp": float(np.sum(atva * ata)),
    }  # fmt: skip


def _se_tau2(batch: eng.Batch, mo: eng.Moments, method: str, tau2: float) -> float | None:
    """Standard error of tau^2 with metafor's formula for each estimator."""
    X, v, w = batch.X[0], batch.v[0], mo.w[0]
    k, p = len(v), int(X.shape[1])
    t = max(tau2, 0.0)
    if method == "ML":
        return math.sqrt(2.0 / float((w**2).sum()))
    if method == "REML":
        return math.sqrt(2.0 / float(eng.traces(batch, mo)[1][0]))
    if method in ("PM", "EB"):
        return math.sqrt(2 * k**2 / (k - p) / float(w.sum()) ** 2)
    if method in ("DL", "HS"):
        fe = _p_traces(X, 1 / v, v)
        tr_p = fe["p"]
        var = 2 * (k - p) + 4 * t * tr_p + 2 * t**2 * fe["pp"]
        return math.sqrt(var) / (tr_p if method == "DL" else float((1 / v).sum()))
    if method == "HE":
        ols = _p_traces(X, np.ones(k), v)  # P = I - H
        var = 2 * ols["pvpv"] + 4 * t * ols["pv"] + 2 * t**2 * (k - p)
        return math.sqrt(var) / (k - p)
    if method == "SJ":
        t0 = float(eng.sj_start(batch)[0])
        sj = _p_traces(X, 1 / (v + t0), v)
        var = 2 * sj["pvpv"] + 4 * t * sj["vpp"] + 2 * t**2 * sj["pp"]
        return t0 / (k - p) * math.sqrt(var)
    return None


def _qm(
    beta: FloatArray, vb: FloatArray, coefs: list[int], df: float | None
) -> tuple[float | None, tuple[int, int | None] | None, float | None]:
    if not coefs:
        return None, None, None
    b = beta[coefs]
    qm = float(b @ np.linalg.solve(vb[np.ix_(coefs, coefs)], b))
    m = len(coefs)
    if df is None:
        return qm, (m, None), float(chi2_sf(qm, m))
    return qm / m, (m, int(df)), f_sf(qm / m, m, df)


# ----------------------------------------------------------------------------- rma


def rma(
    yi: ArrayLike,
    vi: ArrayLike,
    *,
    mods: pd.DataFrame | ArrayLike | None = None,
    method: str = "REML",
    test: str = "z",
    level: float = 95.0,
    intercept: bool = True,
    tau2: float | None = None,
    measure: str = "GEN",
    slab: Sequence[str] | None = None,
) -> MetaResult:
    """Fit an equal-, random- or mixed-effects model (metafor's ``rma.uni``).

    ``method``: EE (alias FE/CE), DL, HE, HS, SJ, ML, REML, PM, EB.
    ``test``: "z" (Wald), "t" (t with k - p df) or "knha" (Knapp-Hartung).
    ``mods``: moderators (DataFrame columns: numeric as is, text dummy-coded).
    ``tau2``: fix tau^2 at a value instead of estimating it.
    ``measure``: "ZCOR" marks Fisher-z correlations (adds r-scale output).

    >>> res = rma([0.1, 0.3, 0.35, 0.65, 0.45], [0.01, 0.02, 0.015, 0.03, 0.01])
    >>> round(res.estimate, 4), res.method, res.k
    (0.3492, 'REML', 5)
    """
    method, test = _normalise(method, test)
    level = confidence_level(level)
    if method in _FIXED and test == "knha":
        # As metafor warns: the adjustment scales the variance by the residual
        # heterogeneity, which an equal-effects model assumes away.
        warn("test='knha' with an equal-effects model: the Knapp-Hartung adjustment is meant "
             "for random-effects and mixed-effects models")  # fmt: skip
    labels = None if slab is None else [str(s) for s in slab]
    y, v = check_effects(yi, vi, labels)
    X, names = design_matrix(mods, y.size, intercept, labels)
    k, p = X.shape
    if k - p < 1:
        raise MetaInputError(f"{k} studies cannot estimate {p} coefficients and tau2 (k - p < 1)")
    batch = eng.make_batch(y, v, X)
    fixed = method in _FIXED
    if tau2 is not None:
        if not (math.isfinite(tau2) and tau2 >= 0):
            raise MetaInputError(f"tau2 must be a finite number >= 0; got {tau2}")
        sol = eng.Solution(np.array([float(tau2)]), np.array([True]), np.array([0]))
    else:
        sol = eng.estimate_tau2(batch, "EE" if fixed else method)
    t2 = float(sol.tau2[0])
    mo, vb, df, crit = _inference(batch, t2, test, level)
    beta = mo.beta[0].copy()
    se = np.sqrt(np.diag(vb))
    with np.errstate(divide="ignore", invalid="ignore"):  # se = 0 when all effects agree (knha)
        stat = beta / se
    qe, vt = _typical_v(batch)
    i2, h2 = _i2_h2(t2, vt, qe, k - p, fixed and tau2 is None)
    coefs = list(range(1 if intercept else 0, p))
    qm, qm_df, qm_p = _qm(beta, vb, coefs, df)
    ll_ml, ll_reml = _loglik(batch, mo, t2)
    pi_lo, pi_hi = (None, None)
    if p == 1 and intercept:
        half = crit * math.sqrt(vb[0, 0] + t2)
        pi_lo, pi_hi = beta[0] - half, beta[0] + half
    r2 = None
    if p > 1 and intercept and not fixed and tau2 is None:
        t2_re = float(eng.estimate_tau2(eng.make_batch(y, v), method).tau2[0])
        # metafor's rule: 0 when the intercept-only model has no heterogeneity to explain.
        r2 = max(0.0, 100.0 * (t2_re - t2) / t2_re) if t2_re > 0 else 0.0
    w = mo.w[0]
    return MetaResult(
        k=k, p=p, method="EE" if method in _FIXED else method, test=test, level=level,
        measure=measure.upper(), coef_names=names, beta=beta, se=se, stat=stat,
        pval=_pvalues(stat, df), ci_lower=beta - crit * se, ci_upper=beta + crit * se, vb=vb,
        df=df, tau2=t2, se_tau2=None if fixed else _se_tau2(batch, mo, method, t2),
        i2=i2, h2=h2,
        q=qe, q_df=k - p, q_p=float(chi2_sf(qe, k - p)), qm=qm, qm_df=qm_df, qm_p=qm_p,
        r2=r2, pi_lower=_none(pi_lo), pi_upper=_none(pi_hi), ll_ml=ll_ml, ll_reml=ll_reml,
        converged=bool(sol.converged[0]), iterations=int(sol.iterations[0]), yi=y, vi=v, X=X,
        weights=100 * w / w.sum(),
        slab=tuple(labels) if labels is not None else tuple(map(str, range(1, k + 1))),
        typical_v=vt,
    )  # fmt: skip


def predict(res: MetaResult, newmods: ArrayLike | None = None) -> pd.DataFrame:
    """Predicted effects with confidence and prediction intervals (metafor ``predict``).

    ``newmods`` is a (n, p) array of design rows *including* the intercept
    column; by default the studies' own design rows (fitted values).

    >>> res = rma([0.1, 0.3, 0.35, 0.65, 0.45], [0.01, 0.02, 0.015, 0.03, 0.01])
    >>> list(predict(res, [[1.0]]).columns)
    ['pred', 'se', 'ci_lower', 'ci_upper', 'pi_lower', 'pi_upper']
    """
    Xn = res.X if newmods is None else np.atleast_2d(np.asarray(newmods, dtype=np.float64))
    if Xn.shape[1] != res.p:
        raise MetaInputError(f"newmods need {res.p} columns ({', '.join(res.coef_names)})")
    pred = Xn @ res.beta
    se = np.sqrt(np.einsum("ij,jk,ik->i", Xn, res.vb, Xn))
    alpha = 1 - res.level / 100
    crit = norm_isf(alpha / 2) if res.df is None else float(t_isf(alpha / 2, res.df))
    half_pi = crit * np.sqrt(se**2 + res.tau2)
    return pd.DataFrame(
        {
            "pred": pred,
            "se": se,
            "ci_lower": pred - crit * se,
            "ci_upper": pred + crit * se,
            "pi_lower": pred - half_pi,
            "pi_upper": pred + half_pi,
        }
    )
