"""Dependent effect sizes: the three-level model and cluster-robust inference.

``rma_mv`` fits metafor's ``rma.mv(yi, vi, random = ~ 1 | cluster/effect)``:
effects nested in clusters (e.g. several alliance measures or outcomes within
one study), with a between-cluster variance sigma2[0] and a within-cluster
variance sigma2[1], by REML (default) or ML Fisher scoring.

``robust`` adds cluster-robust variance estimation: CR1 (metafor's
``robust(adjust=TRUE)``, t with m - p df) or CR2 with Satterthwaite degrees of
freedom (Pustejovsky and Tipton 2018, as clubSandwich). We offer both because
the three-level model's variance structure may be wrong (e.g. sampling errors
correlated within a study, which published tables rarely report): the model
gives efficient weights, CR2 keeps the standard errors honest when the
working model is misspecified, and it stays accurate with few clusters.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy import stats

from alliance.research.meta._design import design_matrix
from alliance.research.meta._validate import (
    FloatArray,
    MetaInputError,
    bad_rows,
    check_effects,
    confidence_level,
)


@dataclass(frozen=True, eq=False)
class MultilevelResult:
    """A fitted three-level model (metafor ``rma.mv`` names where they exist)."""

    k: int
    n_clusters: int
    method: str
    test: str
    level: float
    coef_names: tuple[str, ...]
    beta: FloatArray
    se: FloatArray
    stat: FloatArray
    pval: FloatArray
    ci_lower: FloatArray
    ci_upper: FloatArray
    vb: FloatArray
    df: float | None
    sigma2: FloatArray
    loglik: float
    q: float
    q_p: float
    i2_total: float
    i2_levels: FloatArray
    icc: float
    pi_lower: float | None
    pi_upper: float | None
    converged: bool
    iterations: int
    yi: FloatArray
    X: FloatArray
    V: FloatArray
    clusters: FloatArray

    @property
    def estimate(self) -> float:
        """First coefficient (the pooled effect of an intercept-only model)."""
        return float(self.beta[0])


def _cluster_codes(cluster: ArrayLike, k: int) -> FloatArray:
    s = pd.Series(np.asarray(cluster))
    if len(s) != k:
        raise MetaInputError(f"cluster has {len(s)} values but there are {k} effects")
    miss = s.isna().to_numpy()
    if miss.any():
        raise MetaInputError(f"cluster: missing in {bad_rows(miss, None)}")
    codes, _ = pd.factorize(s)
    return np.asarray(codes, dtype=np.float64)


def _gls(
    V: FloatArray, X: FloatArray, y: FloatArray
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    vinv = np.linalg.inv(V)
    xtv = X.T @ vinv
    vb = np.linalg.inv(xtv @ X)
    beta = vb @ xtv @ y
    P = vinv - xtv.T @ vb @ xtv
    f = np.float64
    return vinv.astype(f), vb.astype(f), np.asarray(beta, dtype=f), np.asarray(P, dtype=f)


def _score_info(
    y: FloatArray, X: FloatArray, v: FloatArray, G: list[FloatArray], s: FloatArray, ml: bool
) -> tuple[FloatArray, FloatArray]:
    """Score and information of the (restricted) log-likelihood in sigma2: the observed
    information (minus the Hessian) where it is positive definite, else Fisher's. Fisher
    scoring alone crawls near a boundary, where the two differ most."""
    V = np.diag(v) + s[0] * G[0] + s[1] * G[1]
    vinv, _, _, P = _gls(V, X, y)
    R = vinv if ml else P
    r = P @ y  # = V^-1 (y - X beta): the same for ML and REML
    RG = [R @ g for g in G]
    Pr = [P @ (g @ r) for g in G]
    score = np.array([-0.5 * np.trace(rg) + 0.5 * r @ g @ r for rg, g in zip(RG, G)])
    fisher = np.array([[0.5 * np.sum(a * b.T) for b in RG] for a in RG])
    observed = -fisher + np.array([[(g @ r) @ pr for pr in Pr] for g in G])
    try:
        np.linalg.cholesky(observed)
        info = observed
    except np.linalg.LinAlgError:
        info = fisher
    return np.asarray(score, dtype=np.float64), np.asarray(info, dtype=np.float64)


def _free_step(score: FloatArray, info: FloatArray, s: FloatArray) -> FloatArray:
    """The Fisher step with the components held at 0 whose score points below 0 (the
    active set of the bound sigma2 >= 0); the others take the step of their own block.
    Clipping a joint step instead would move the free component by a step computed as if
    the bound one could go negative, and stop where the clipped step, not the score,
    vanishes."""
    free = ~((s <= 0) & (score <= 0))
    step = np.zeros_like(s)
    if free.any():
        step[free] = np.linalg.solve(info[np.ix_(free, free)], score[free])
    return step


def _is_maximum(score: FloatArray, info: FloatArray, s: FloatArray, scale: float) -> bool:
    """Karush-Kuhn-Tucker conditions of the maximum under sigma2 >= 0, in the metric of
    the Fisher step: no free component would move, and a component at 0 would only move
    below it."""
    step = score / np.diag(info)
    at_bound = s <= 0
    free_ok = np.all(np.abs(_free_step(score, info, s)) <= 1e-6 * (s + scale))
    return bool(free_ok and np.all(step[at_bound] <= 1e-6 * scale))


def _fit_sigma2(
    y: FloatArray, X: FloatArray, v: FloatArray, G: list[FloatArray], ml: bool
) -> tuple[FloatArray, bool, int]:
    """Fisher scoring on the active set with step halving (every accepted step raises
    the log-likelihood); converged only where the KKT conditions hold."""
    start = max(float(np.var(y)) - float(np.mean(v)), 0.01 * float(np.mean(v))) / 2
    s = np.array([start, start])
    scale = float(np.mean(v))

    def loglik(x: FloatArray) -> float:
        return _loglik(y, X, np.diag(v) + x[0] * G[0] + x[1] * G[1], ml)

    ll = loglik(s)
    for it in range(1, 201):
        score, info = _score_info(y, X, v, G, s, ml)
        step = _free_step(score, info, s)
        if np.all(np.abs(step) <= 1e-10 * (s + scale)):
            return s, _is_maximum(score, info, s, scale), it
        for _ in range(40):  # halve until the likelihood does not fall (beyond rounding)
            new = np.maximum(s + step, 0.0)
            ll_new = loglik(new)
            if ll_new >= ll - 1e-10 * (1 + abs(ll)):
                break
            step = step / 2
        else:  # no step raises the likelihood: stop, and say whether this is the maximum
            return s, _is_maximum(score, info, s, scale), it
        s, ll = new, ll_new
    return s, False, 200


def _loglik(y: FloatArray, X: FloatArray, V: FloatArray, ml: bool) -> float:
    vinv, vb, beta, _ = _gls(V, X, y)
    e = y - X @ beta
    k, p = X.shape
    n = k if ml else k - p
    val = n * math.log(2 * math.pi) + np.linalg.slogdet(V)[1] + e @ vinv @ e
    if not ml:
        val += -np.linalg.slogdet(vb)[1] - np.linalg.slogdet(X.T @ X)[1]
    return float(-0.5 * val)


def rma_mv(
    yi: ArrayLike,
    vi: ArrayLike,
    cluster: ArrayLike,
    *,
    mods: pd.DataFrame | ArrayLike | None = None,
    method: str = "REML",
    test: str = "z",
    level: float = 95.0,
) -> MultilevelResult:
    """Three-level model: effects within clusters (``random = ~ 1 | cluster/effect``).

    >>> res = rma_mv([0.1, 0.3, 0.5, 0.2, 0.6, 0.4], [0.02] * 6, [1, 1, 2, 2, 3, 3])
    >>> res.n_clusters, res.sigma2.shape
    (3, (2,))
    """
    method, test = method.upper(), test.lower()
    if method not in ("REML", "ML"):
        raise MetaInputError(f"rma_mv method must be REML or ML; got {method!r}")
    if test not in ("z", "t"):
        raise MetaInputError(f"rma_mv test must be z or t; got {test!r}")
    level = confidence_level(level)
    y, v = check_effects(yi, vi)
    codes = _cluster_codes(cluster, y.size)
    X, names = design_matrix(mods, y.size)
    k, p = X.shape
    if k - p < 2:
        raise MetaInputError(f"{k} effects are too few for {p} coefficients and two variances")
    Z = (codes[:, None] == np.unique(codes)[None, :]).astype(np.float64)
    G = [Z @ Z.T, np.eye(k)]
    s, conv, iters = _fit_sigma2(y, X, v, G, method == "ML")
    V = np.diag(v) + s[0] * G[0] + s[1] * G[1]
    _, vb, beta, _ = _gls(V, X, y)
    se = np.sqrt(np.diag(vb))
    df = None if test == "z" else float(k - p)
    alpha = 1 - level / 100
    crit = float(stats.norm.ppf(1 - alpha / 2) if df is None else stats.t.ppf(1 - alpha / 2, df))
    stat = beta / se
    pval = 2 * (stats.norm.sf(np.abs(stat)) if df is None else stats.t.sf(np.abs(stat), df))
    w = 1 / v
    Xw = X * w[:, None]
    xtwx_inv = np.linalg.inv(Xw.T @ X)
    e_fe = y - X @ (xtwx_inv @ Xw.T @ y)
    qe = float(np.sum(w * e_fe**2))
    tr_p = float(w.sum() - np.trace(xtwx_inv @ (Xw * w[:, None]).T @ X))
    vt = (k - p) / tr_p
    i2_levels = 100 * s / (s.sum() + vt)
    pi: tuple[float | None, float | None] = (None, None)
    if p == 1:
        half = crit * math.sqrt(vb[0, 0] + s.sum())
        pi = (float(beta[0] - half), float(beta[0] + half))
    return MultilevelResult(
        k=k, n_clusters=int(Z.shape[1]), method=method, test=test, level=level,
        coef_names=names, beta=beta, se=se, stat=stat, pval=np.asarray(pval),
        ci_lower=beta - crit * se, ci_upper=beta + crit * se, vb=vb, df=df, sigma2=s,
        loglik=_loglik(y, X, V, method == "ML"), q=qe, q_p=float(stats.chi2.sf(qe, k - p)),
        i2_total=float(i2_levels.sum()), i2_levels=i2_levels,
        icc=float(s[0] / s.sum()) if s.sum() > 0 else float("nan"),
        pi_lower=pi[0], pi_upper=pi[1], converged=conv, iterations=iters, yi=y, X=X, V=V,
        clusters=codes,
    )  # fmt: skip


# ----------------------------------------------------------------------------- robust


@dataclass(frozen=True, eq=False)
class RobustResult:
    """Cluster-robust inference for the coefficients of a fitted model."""

    adjust: str
    n_clusters: int
    beta: FloatArray
    se: FloatArray
    stat: FloatArray
    df: FloatArray
    pval: FloatArray
    ci_lower: FloatArray
    ci_upper: FloatArray
    vb: FloatArray


def _inv_sqrt(a: FloatArray) -> FloatArray:
    vals, vecs = np.linalg.eigh((a + a.T) / 2)
    inv = np.where(vals > 1e-12 * max(vals.max(), 1e-300), 1 / np.sqrt(np.abs(vals)), 0.0)
    return np.asarray((vecs * inv) @ vecs.T, dtype=np.float64)


def _sqrt(a: FloatArray) -> FloatArray:
    vals, vecs = np.linalg.eigh((a + a.T) / 2)
    return np.asarray((vecs * np.sqrt(np.maximum(vals, 0))) @ vecs.T, dtype=np.float64)


def robust(
    res: MultilevelResult, cluster: ArrayLike | None = None, adjust: str = "CR2"
) -> RobustResult:
    """Cluster-robust (sandwich) standard errors and t tests.

    ``adjust="CR1"``: metafor's ``robust(x, cluster, adjust=TRUE)``, t with
    m - p df (m clusters). ``adjust="CR2"``: bias-reduced linearisation with
    Satterthwaite df, as ``robust(x, cluster, clubSandwich=TRUE)``. Clusters
    default to the model's; other clusterings must nest the model's clusters.

    >>> res = rma_mv([0.1, 0.3, 0.5, 0.2, 0.6, 0.4, 0.3], [0.02] * 7, [1, 1, 2, 2, 3, 3, 4])
    >>> robust(res).df.shape
    (1,)
    """
    if adjust not in ("CR1", "CR2"):
        raise MetaInputError(f"adjust must be 'CR1' or 'CR2'; got {adjust!r}")
    codes = res.clusters if cluster is None else _cluster_codes(cluster, res.k)
    groups = [np.flatnonzero(codes == c) for c in np.unique(codes)]
    m, p = len(groups), res.X.shape[1]
    if m <= p:
        raise MetaInputError(f"{m} clusters are too few for {p} coefficients")
    X, V = res.X, res.V
    W = np.linalg.inv(V)
    M = res.vb
    e = res.yi - X @ res.beta
    I_H = np.eye(res.k) - X @ M @ X.T @ W
    contribs, pj = [], []
    for g in groups:
        Xj, Wj = X[g], W[np.ix_(g, g)]
        if adjust == "CR2":
            root = _sqrt(V[np.ix_(g, g)])
            B = root @ I_H[g] @ V @ I_H[g].T @ root
            A = root @ _inv_sqrt(B) @ root
        else:
            A = np.eye(len(g))
        u = Xj.T @ Wj @ A
        contribs.append(u @ e[g])
        pj.append(I_H[g].T @ u.T @ M)  # (k, p): columns become p_j for each contrast
    U = np.array(contribs)
    vb = M @ (U.T @ U) @ M
    if adjust == "CR1":
        vb = vb * m / (m - p)
        df = np.full(p, float(m - p))
    else:
        df = np.array([_satterthwaite([q[:, c] for q in pj], V) for c in range(p)])
    se = np.sqrt(np.diag(vb))
    stat = res.beta / se
    crit = stats.t.ppf(1 - (1 - res.level / 100) / 2, df)
    return RobustResult(
        adjust, m, res.beta, se, stat, df, 2 * stats.t.sf(np.abs(stat), df),
        res.beta - crit * se, res.beta + crit * se, vb,
    )  # fmt: skip


def _satterthwaite(p_list: list[FloatArray], V: FloatArray) -> float:
    P = np.column_stack(p_list)
    S = P.T @ V @ P
    return float(np.trace(S) ** 2 / np.sum(S**2))
