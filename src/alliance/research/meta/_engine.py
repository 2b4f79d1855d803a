"""Batched numerical core for univariate (rma.uni-style) models.

Everything here works on a *batch* of B meta-analyses at once: arrays ``y`` and
``v`` of shape (B, k), a design ``X`` of shape (B, k, p) and an inclusion mask
``m`` of shape (B, k) (1 = study in, 0 = study out). A single analysis is a
batch of one; leave-one-out is a batch of k masks; a bootstrap is a batch of
resampled rows. No Python loop runs over the batch.

The algebra avoids k x k matrices. With ``W = diag(w)``, ``A = X'WX`` and
``P = W - W X A^-1 X' W``::

    y'Py   = sum(w e^2)                      e = y - X b (WLS residuals)
    y'PPy  = sum(w^2 e^2)
    tr(P)  = sum(w) - tr(A^-1 X'W^2 X)
    tr(PP) = sum(w^2) - 2 tr(A^-1 X'W^3 X) + tr((A^-1 X'W^2 X)^2)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]

#: Estimators of tau^2 understood by :func:`estimate_tau2`.
TAU2_METHODS = ("EE", "DL", "HE", "HS", "SJ", "ML", "REML", "PM", "EB")

_MAXITER = 100
_RTOL = 1e-10


@dataclass(frozen=True)
class Batch:
    """B meta-analyses of k (possibly masked) studies sharing p coefficients."""

    y: FloatArray
    v: FloatArray
    X: FloatArray
    m: FloatArray

    @property
    def k(self) -> FloatArray:
        """Number of included studies per analysis, shape (B,)."""
        return np.asarray(self.m.sum(axis=1), dtype=np.float64)

    @property
    def p(self) -> int:
        """Number of model coefficients."""
        return int(self.X.shape[2])

    def subset(self, rows: BoolArray) -> Batch:
        """The analyses selected by the boolean vector ``rows``."""
        return Batch(self.y[rows], self.v[rows], self.X[rows], self.m[rows])

    def vbar(self) -> FloatArray:
        """Mean sampling variance of the included studies (a scale for tolerances)."""
        return np.asarray((self.v * self.m).sum(axis=1) / self.k, dtype=np.float64)


def make_batch(
    y: FloatArray, v: FloatArray, X: FloatArray | None = None, m: FloatArray | None = None
) -> Batch:
    """Build a :class:`Batch`, broadcasting a shared design to every analysis."""
    y2 = np.atleast_2d(np.asarray(y, dtype=np.float64))
    v2 = np.atleast_2d(np.asarray(v, dtype=np.float64))
    b, k = y2.shape
    if X is None:
        X3 = np.ones((b, k, 1))
    else:
        Xa = np.asarray(X, dtype=np.float64)
        X3 = np.broadcast_to(Xa, (b, k, Xa.shape[-1])) if Xa.ndim == 2 else Xa
    m2 = np.ones((b, k)) if m is None else np.atleast_2d(np.asarray(m, dtype=np.float64))
    return Batch(y2, v2, X3, m2)


@dataclass(frozen=True)
class Moments:
    """Weighted least-squares fit and the traces used by the estimators."""

    w: FloatArray
    ainv: FloatArray
    beta: FloatArray
    e: FloatArray

    @property
    def ypy(self) -> FloatArray:
        """Generalised Q statistic ``y'Py``."""
        return np.asarray((self.w * self.e**2).sum(axis=1), dtype=np.float64)

    @property
    def yppy(self) -> FloatArray:
        """``y'PPy``."""
        return np.asarray(((self.w * self.e) ** 2).sum(axis=1), dtype=np.float64)


def wls(batch: Batch, w: FloatArray) -> Moments:
    """Weighted least squares with weights ``w`` (already masked), batched."""
    xw = batch.X * w[:, :, None]
    a = np.einsum("bki,bkj->bij", xw, batch.X)
    ainv = np.linalg.inv(a)
    rhs = np.einsum("bki,bk->bi", xw, batch.y)
    beta = np.einsum("bij,bj->bi", ainv, rhs)
    e = batch.y - np.einsum("bkp,bp->bk", batch.X, beta)
    return Moments(w, ainv, beta, e)


def weights(batch: Batch, tau2: FloatArray) -> FloatArray:
    """Inverse-variance weights ``m / (v + tau2)``."""
    return np.asarray(batch.m / (batch.v + tau2[:, None]), dtype=np.float64)


def _xtdx(batch: Batch, d: FloatArray) -> FloatArray:
    return np.asarray(np.einsum("bki,bk,bkj->bij", batch.X, d, batch.X), dtype=np.float64)


def _trace(a: FloatArray) -> FloatArray:
    return np.asarray(np.einsum("bii->b", a), dtype=np.float64)


def trace_p(batch: Batch, mo: Moments) -> FloatArray:
    """``tr(P)``."""
    c = mo.ainv @ _xtdx(batch, mo.w**2)
    return np.asarray(mo.w.sum(axis=1) - _trace(c), dtype=np.float64)


def trace_pp(batch: Batch, mo: Moments) -> FloatArray:
    """``tr(PP)``."""
    c2 = mo.ainv @ _xtdx(batch, mo.w**2)
    c3 = mo.ainv @ _xtdx(batch, mo.w**3)
    cc = np.einsum("bij,bji->b", c2, c2)
    return np.asarray((mo.w**2).sum(axis=1) - 2.0 * _trace(c3) + cc, dtype=np.float64)


# --------------------------------------------------------------------- non-iterative


def _dl(batch: Batch) -> FloatArray:
    mo = wls(batch, batch.m / batch.v)
    t = (mo.ypy - (batch.k - batch.p)) / trace_p(batch, mo)
    return np.maximum(t, 0.0)


def _hs(batch: Batch) -> FloatArray:
    w = batch.m / batch.v
    mo = wls(batch, w)
    # Hunter-Schmidt subtracts k (not k - p), as metafor does.
    return np.maximum((mo.ypy - batch.k) / w.sum(axis=1), 0.0)


def _he(batch: Batch) -> FloatArray:
    mo = wls(batch, batch.m.copy())
    rss = (batch.m * mo.e**2).sum(axis=1)
    tr_pv = (batch.m * batch.v).sum(axis=1) - _trace(mo.ainv @ _xtdx(batch, batch.m * batch.v))
    return np.maximum((rss - tr_pv) / (batch.k - batch.p), 0.0)


def _sj(batch: Batch) -> FloatArray:
    ols = wls(batch, batch.m.copy())
    t0 = (batch.m * ols.e**2).sum(axis=1) / batch.k
    mo = wls(batch, weights(batch, t0))
    return np.asarray(t0 * mo.ypy / (batch.k - batch.p), dtype=np.float64)


# --------------------------------------------------------------------- iterative


@dataclass(frozen=True)
class Solution:
    """tau^2 per analysis with convergence information."""

    tau2: FloatArray
    converged: BoolArray
    iterations: IntArray


def q_root(batch: Batch, target: FloatArray, maxiter: int = 200) -> Solution:
    """Solve ``y'P(tau2)y = target`` for tau2 >= 0 (0 where Q(0) <= target).

    ``y'P(tau2)y`` decreases in tau2, so the root is unique. Safeguarded Newton
    (derivative ``-y'PPy``) inside a bracket that is kept up to date.
    """
    nb = batch.y.shape[0]
    tau2 = np.zeros(nb)
    iters = np.zeros(nb, dtype=np.int64)
    conv = wls(batch, weights(batch, tau2)).ypy <= target
    lo = np.zeros(nb)
    hi = np.maximum(batch.vbar(), 1e-300)
    for _ in range(2100):  # bracket: grow hi until Q(hi) <= target
        grow = (~conv) & (wls(batch, weights(batch, hi)).ypy > target)
        if not grow.any():
            break
        hi = np.where(grow, hi * 4.0, hi)
    scale = batch.vbar()
    for _ in range(maxiter):
        act = ~conv
        if not act.any():
            break
        sub = batch.subset(act)
        t = tau2[act]
        mo = wls(sub, weights(sub, t))
        f = mo.ypy - target[act]
        lo_a = np.where(f > 0, t, lo[act])
        hi_a = np.where(f > 0, hi[act], t)
        newton = t + f / np.maximum(mo.yppy, 1e-300)
        inside = (newton > lo_a) & (newton < hi_a)
        new = np.where(inside, newton, 0.5 * (lo_a + hi_a))
        done = (np.abs(new - t) <= _RTOL * (new + scale[act])) | (hi_a - lo_a <= 1e-15 * hi_a)
        tau2[act], lo[act], hi[act] = new, lo_a, hi_a
        iters[act] += 1
        conv[act] = done
    return Solution(tau2, conv, iters)


def _score_info(batch: Batch, tau2: FloatArray, ml: bool) -> tuple[FloatArray, FloatArray]:
    mo = wls(batch, weights(batch, tau2))
    if ml:
        return mo.yppy - mo.w.sum(axis=1), (mo.w**2).sum(axis=1)
    return mo.yppy - trace_p(batch, mo), trace_pp(batch, mo)


def _bisect_score(batch: Batch, ml: bool) -> FloatArray:
    """Fallback: root of the (RE)ML score by bisection (score(0) <= 0 gives 0)."""
    nb = batch.y.shape[0]
    score0, _ = _score_info(batch, np.zeros(nb), ml)
    hi = np.maximum(batch.vbar(), 1e-300)
    for _ in range(2100):
        s, _ = _score_info(batch, hi, ml)
        grow = (score0 > 0) & (s > 0)
        if not grow.any():
            break
        hi = np.where(grow, hi * 4.0, hi)
    lo = np.zeros(nb)
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        s, _ = _score_info(batch, mid, ml)
        lo, hi = np.where(s > 0, mid, lo), np.where(s > 0, hi, mid)
    return np.where(score0 > 0, 0.5 * (lo + hi), 0.0)


def fisher_scoring(batch: Batch, ml: bool, maxiter: int = _MAXITER) -> Solution:
    """(Restricted) maximum likelihood for tau^2 by Fisher scoring, batched.

    Starts from the Hedges (HE) estimate as metafor does, projects onto
    tau2 >= 0 and stops when the step is below 1e-10 relative to
    ``tau2 + mean(v)``. Analyses that have not converged after ``maxiter``
    steps are finished by bisection on the score; their ``converged`` flag
    then reports whether the bisection closed its bracket.
    """
    tau2 = _he(batch)
    nb = tau2.shape[0]
    conv = np.zeros(nb, dtype=bool)
    iters = np.zeros(nb, dtype=np.int64)
    scale = batch.vbar()
    for _ in range(maxiter):
        act = ~conv
        if not act.any():
            break
        sub = batch.subset(act)
        t = tau2[act]
        score, info = _score_info(sub, t, ml)
        new = np.maximum(t + score / info, 0.0)
        tau2[act] = new
        iters[act] += 1
        conv[act] = np.abs(new - t) <= _RTOL * (new + scale[act])
    if not conv.all():
        rest = ~conv
        tau2[rest] = _bisect_score(batch.subset(rest), ml)
        score, info = _score_info(batch.subset(rest), tau2[rest], ml)
        ok = (np.abs(score / info) <= 1e-6 * (tau2[rest] + scale[rest])) | (
            (tau2[rest] == 0.0) & (score <= 0)
        )
        conv[rest] = ok
    return Solution(tau2, conv, iters)


def estimate_tau2(batch: Batch, method: str) -> Solution:
    """Estimate tau^2 for every analysis in the batch with one named estimator."""
    nb = batch.y.shape[0]
    ones = np.ones(nb, dtype=bool)
    zero_it = np.zeros(nb, dtype=np.int64)
    if method == "EE":
        return Solution(np.zeros(nb), ones, zero_it)
    simple = {"DL": _dl, "HE": _he, "HS": _hs, "SJ": _sj}
    if method in simple:
        return Solution(simple[method](batch), ones, zero_it)
    if method in ("ML", "REML"):
        return fisher_scoring(batch, ml=method == "ML")
    if method in ("PM", "EB"):
        return q_root(batch, batch.k - batch.p)
    raise ValueError(f"unknown tau2 method {method!r}; choose one of {', '.join(TAU2_METHODS)}")
