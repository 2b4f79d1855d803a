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
    #: True when X is a column of ones: closed-form fast paths are used.
    intercept_only: bool = False
    #: True when every study is included (the mask is all ones).
    unmasked: bool = False

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
        n = int(np.count_nonzero(rows))
        X = (
            np.broadcast_to(self.X[:1], (n, *self.X.shape[1:]))
            if self.intercept_only
            else self.X[rows]
        )
        m = np.broadcast_to(self.m[:1], (n, self.m.shape[1])) if self.unmasked else self.m[rows]
        return Batch(self.y[rows], self.v[rows], X, m, self.intercept_only, self.unmasked)

    def vbar(self) -> FloatArray:
        """Mean sampling variance of the included studies (a starting bracket)."""
        return np.asarray((self.v * self.m).sum(axis=1) / self.k, dtype=np.float64)

    def vmin(self) -> FloatArray:
        """Smallest sampling variance of the included studies: the scale below which
        tau^2 makes no difference to any weight (used for convergence tolerances)."""
        v = self.v if self.unmasked else np.where(self.m > 0, self.v, np.inf)
        return np.asarray(v.min(axis=1), dtype=np.float64)


def make_batch(
    y: FloatArray, v: FloatArray, X: FloatArray | None = None, m: FloatArray | None = None
) -> Batch:
    """Build a :class:`Batch`, broadcasting a shared design to every analysis."""
    y2 = np.atleast_2d(np.asarray(y, dtype=np.float64))
    v2 = np.atleast_2d(np.asarray(v, dtype=np.float64))
    b, k = y2.shape
    if X is None:
        X3 = np.broadcast_to(np.ones((1, k, 1)), (b, k, 1))
    else:
        Xa = np.asarray(X, dtype=np.float64)
        X3 = np.broadcast_to(Xa, (b, k, Xa.shape[-1])) if Xa.ndim == 2 else Xa
    if m is None:
        m2 = np.broadcast_to(np.ones((1, k)), (b, k))
    else:
        m2 = np.atleast_2d(np.asarray(m, dtype=np.float64))
    only = X3.shape[2] == 1 and bool(np.all(X3 == 1.0))
    return Batch(y2, v2, X3, m2, only, m is None)


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
    if batch.intercept_only:
        sw = w.sum(axis=1)
        mu = (w * batch.y).sum(axis=1) / sw
        return Moments(w, (1.0 / sw)[:, None, None], mu[:, None], batch.y - mu[:, None])
    xw = batch.X * w[:, :, None]
    a = np.einsum("bki,bkj->bij", xw, batch.X)
    ainv = np.linalg.inv(a)
    rhs = np.einsum("bki,bk->bi", xw, batch.y)
    beta = np.einsum("bij,bj->bi", ainv, rhs)
    e = batch.y - np.einsum("bkp,bp->bk", batch.X, beta)
    return Moments(w, ainv, beta, e)


def weights(batch: Batch, tau2: FloatArray) -> FloatArray:
    """Inverse-variance weights ``m / (v + tau2)``."""
    if batch.unmasked:
        w = np.add(batch.v, tau2[:, None])
        return np.asarray(np.reciprocal(w, out=w), dtype=np.float64)
    return np.asarray(batch.m / (batch.v + tau2[:, None]), dtype=np.float64)


def _xtdx(batch: Batch, d: FloatArray) -> FloatArray:
    return np.asarray(np.einsum("bki,bk,bkj->bij", batch.X, d, batch.X), dtype=np.float64)


def _trace(a: FloatArray) -> FloatArray:
    return np.asarray(np.einsum("bii->b", a), dtype=np.float64)


def _loo_sum(a: FloatArray) -> FloatArray:
    """Row sums leaving each element out, without subtraction (no cancellation)."""
    zero = np.zeros_like(a[:, :1])
    before = np.concatenate([zero, np.cumsum(a, axis=1)[:, :-1]], axis=1)
    after = np.concatenate([np.cumsum(a[:, ::-1], axis=1)[:, ::-1][:, 1:], zero], axis=1)
    return np.asarray(before + after, dtype=np.float64)


def _dot(a: FloatArray, b: FloatArray) -> FloatArray:
    """Row-wise dot products of two (B, k) arrays."""
    return np.asarray(np.einsum("bk,bk->b", a, b), dtype=np.float64)


def _traces_1(w: FloatArray, sw: FloatArray | None = None) -> tuple[FloatArray, FloatArray]:
    """``tr(P)`` and ``tr(PP)`` of an intercept-only model in cancellation-free form.

    With ``s_i`` the sum of the other weights and ``q_i`` the sum of the other
    squared weights: ``P_ii = w_i s_i / sw`` and ``P_ij = -w_i w_j / sw``, so
    ``tr(P) = sum(w s) / sw`` and ``tr(PP) = sum(w^2 (s^2 + q)) / sw^2``: sums of
    positive terms, accurate even when one study holds nearly all the weight.
    """
    sw = w.sum(axis=1) if sw is None else sw
    w2 = w * w
    sw2 = w2.sum(axis=1)
    tr_p = sw - sw2 / sw
    tr_pp = sw2 - 2.0 * _dot(w2, w) / sw + (sw2 / sw) ** 2
    # The short forms lose digits only when one study holds most of the weight
    # (relative error ~ 1e-16 / (1 - share)); redo those rows without subtraction.
    # sum(w^2) / sw^2 <= max share, and > 0.8 whenever the max share exceeds 0.9.
    risky = sw2 > 0.8 * sw * sw
    if risky.any():
        wr, swr = w[risky], sw[risky]
        s, q = _loo_sum(wr), _loo_sum(wr * wr)
        tr_p[risky] = (wr * s).sum(axis=1) / swr
        tr_pp[risky] = (wr * wr * (s * s + q)).sum(axis=1) / swr**2
    return np.asarray(tr_p, dtype=np.float64), np.asarray(tr_pp, dtype=np.float64)


def _stable_general(batch: Batch, w: FloatArray) -> tuple[FloatArray, FloatArray]:
    """``tr(P)``, ``tr(PP)`` of one meta-regression without cancellation, O(k^2).

    With ``D = diag(sqrt(w))`` and a complete QR of ``D X`` whose last k - p
    columns ``Q2`` span the residual space, ``P = A A'`` with ``A = D Q2``; so
    ``tr(P) = ||A||^2`` and ``tr(PP) = ||A'A||^2``: sums of squares.
    """
    d = np.sqrt(w[0])
    q, _ = np.linalg.qr(d[:, None] * batch.X[0], mode="complete")
    a = d[:, None] * q[:, batch.p :]
    g = a.T @ a
    return np.array([np.sum(a * a)]), np.array([np.sum(g * g)])


def traces(batch: Batch, mo: Moments) -> tuple[FloatArray, FloatArray]:
    """``tr(P)`` and ``tr(PP)``, computed together (the REML score needs both).

    The O(k p^2) forms subtract p x p terms from sums over studies; where that loses more
    than ~6 digits (weights spanning many orders of magnitude) a single fit of up to 2000
    studies is recomputed without cancellation (:func:`_stable_general`).
    """
    if batch.intercept_only:
        return _traces_1(mo.w)
    sw, sw2 = mo.w.sum(axis=1), (mo.w**2).sum(axis=1)
    c2 = mo.ainv @ _xtdx(batch, mo.w**2)
    c3 = mo.ainv @ _xtdx(batch, mo.w**3)
    cc = np.einsum("bij,bji->b", c2, c2)
    tr_p = sw - _trace(c2)
    tr_pp = sw2 - 2.0 * _trace(c3) + cc
    lossy = (tr_p <= 1e-6 * sw) | (tr_pp <= 1e-6 * sw2)
    if lossy.any() and batch.y.shape[0] == 1 and batch.y.shape[1] <= 2000:
        return _stable_general(batch, mo.w)
    return np.asarray(tr_p, dtype=np.float64), np.asarray(tr_pp, dtype=np.float64)


# --------------------------------------------------------------------- non-iterative


def _dl(batch: Batch) -> FloatArray:
    mo = wls(batch, batch.m / batch.v)
    t = (mo.ypy - (batch.k - batch.p)) / traces(batch, mo)[0]
    return np.maximum(t, 0.0)


def _hs(batch: Batch) -> FloatArray:
    w = batch.m / batch.v
    mo = wls(batch, w)
    # Hunter-Schmidt subtracts k (not k - p), as metafor does.
    return np.asarray(np.maximum((mo.ypy - batch.k) / w.sum(axis=1), 0.0), dtype=np.float64)


def _he(batch: Batch) -> FloatArray:
    if batch.intercept_only and batch.unmasked:
        k = batch.y.shape[1]
        e = batch.y - batch.y.mean(axis=1, keepdims=True)
        t = (_dot(e, e) - batch.v.sum(axis=1) * (k - 1) / k) / (k - 1)
        return np.asarray(np.maximum(t, 0.0), dtype=np.float64)
    mo = wls(batch, batch.m.copy())
    rss = (batch.m * mo.e**2).sum(axis=1)
    tr_pv = (batch.m * batch.v).sum(axis=1) - _trace(mo.ainv @ _xtdx(batch, batch.m * batch.v))
    return np.asarray(np.maximum((rss - tr_pv) / (batch.k - batch.p), 0.0), dtype=np.float64)


def sj_start(batch: Batch) -> FloatArray:
    """The Sidik-Jonkman starting value: the variance of the effects around their plain
    mean, with divisor k, with or without moderators. This is metafor's rule
    (``rma.uni``, method "SJ": ``var(yi) * (k - 1) / k``); starting a meta-regression from
    OLS residuals, as one might read Sidik & Jonkman (2005, J Biopharm Stat 15, 823-838),
    gives other estimates, so we follow the reference implementation."""
    k = batch.k
    mean = (batch.m * batch.y).sum(axis=1) / k
    return np.asarray((batch.m * (batch.y - mean[:, None]) ** 2).sum(axis=1) / k)


def _sj(batch: Batch) -> FloatArray:
    t0 = sj_start(batch)
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
    scale = batch.vmin()
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


def _derivs(batch: Batch, tau2: FloatArray, ml: bool) -> tuple[FloatArray, ...]:
    """Twice the (RE)ML score, expected and observed information (times 2).

    REML: score ``y'PPy - tr(P)``, expected ``tr(PP)``, observed
    ``2 y'PPPy - tr(PP)``; ML: ``y'PPy - sum(w)``, ``sum(w^2)``,
    ``2 y'PPPy - sum(w^2)``. Intercept-only batches use closed forms.
    """
    w = weights(batch, tau2)
    if batch.intercept_only:  # einsum dot products and in-place steps: few temporaries
        sw = w.sum(axis=1)
        we = np.subtract(batch.y, (_dot(w, batch.y) / sw)[:, None])
        np.multiply(we, w, out=we)
        yppy = _dot(we, we)
        tmp = np.multiply(we, we)
        ypppy = _dot(tmp, w) - _dot(w, we) ** 2 / sw
        if ml:
            sw2 = _dot(w, w)
            return yppy - sw, sw2, 2 * ypppy - sw2
        trp, trpp = _traces_1(w, sw)
        return yppy - trp, trpp, 2 * ypppy - trpp
    mo = wls(batch, w)
    u = mo.w * mo.e
    xwu = np.einsum("bki,bk->bi", batch.X, mo.w * u)
    ypppy = (mo.w * u * u).sum(axis=1) - np.einsum("bi,bij,bj->b", xwu, mo.ainv, xwu)
    if ml:
        sw2 = (mo.w**2).sum(axis=1)
        return mo.yppy - mo.w.sum(axis=1), sw2, 2 * ypppy - sw2
    trp, trpp = traces(batch, mo)
    return mo.yppy - trp, trpp, 2 * ypppy - trpp


def _bisect_score(batch: Batch, ml: bool) -> FloatArray:
    """Fallback: root of the (RE)ML score by bisection (score(0) <= 0 gives 0)."""
    nb = batch.y.shape[0]
    score0 = _derivs(batch, np.zeros(nb), ml)[0]
    hi = np.maximum(batch.vbar(), 1e-300)
    for _ in range(2100):
        grow = (score0 > 0) & (_derivs(batch, hi, ml)[0] > 0)
        if not grow.any():
            break
        hi = np.where(grow, hi * 4.0, hi)
    lo = np.zeros(nb)
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        pos = _derivs(batch, mid, ml)[0] > 0
        lo, hi = np.where(pos, mid, lo), np.where(pos, hi, mid)
    return np.where(score0 > 0, 0.5 * (lo + hi), 0.0)


def _step(score: FloatArray, expected: FloatArray, observed: FloatArray) -> FloatArray:
    """Newton step where the observed information is positive and the step is
    no longer than the Fisher-scoring step allows (x4); Fisher scoring otherwise."""
    fisher = score / expected
    newton = score / np.where(observed > 0, observed, np.inf)
    ok = (observed > 0) & (np.abs(newton) <= 4 * np.abs(fisher))
    return np.where(ok, newton, fisher)


def _q_root_1d(y: FloatArray, v: FloatArray, target: float, maxiter: int = 200) -> Solution | None:
    """:func:`q_root` for one intercept-only analysis on 1-D arrays; None if unsolved."""

    def q_and_slope(t: float) -> tuple[float, float]:
        w = 1.0 / (v + t)
        e = y - float(w @ y) / float(w.sum())
        we = w * e
        return float(we @ e), float(we @ we)

    if q_and_slope(0.0)[0] <= target:
        return Solution(np.zeros(1), np.array([True]), np.zeros(1, dtype=np.int64))
    lo, hi, t = 0.0, max(float(v.mean()), 1e-300), 0.0
    while q_and_slope(hi)[0] > target:
        hi *= 4.0
    scale = float(v.min())
    for it in range(1, maxiter + 1):
        q, slope = q_and_slope(t)
        lo, hi = (t, hi) if q > target else (lo, t)
        newton = t + (q - target) / max(slope, 1e-300)
        new = newton if lo < newton < hi else 0.5 * (lo + hi)
        if abs(new - t) <= _RTOL * (new + scale) or hi - lo <= 1e-15 * hi:
            return Solution(np.array([new]), np.array([True]), np.array([it]))
        t = new
    return None


def _derivs_1d(y: FloatArray, v: FloatArray, t: float, ml: bool) -> tuple[float, float, float]:
    """:func:`_derivs` for one intercept-only analysis on 1-D arrays (no batch overhead)."""
    w = 1.0 / (v + t)
    sw = float(w.sum())
    e = y - float(w @ y) / sw
    we = w * e
    yppy = float(we @ we)
    ypppy = float((w * we) @ we) - float(w @ we) ** 2 / sw
    if ml:
        sw2 = float(w @ w)
        return yppy - sw, sw2, 2 * ypppy - sw2
    w2 = w * w
    sw2 = float(w2.sum())
    if sw2 > 0.8 * sw * sw:  # one dominant study: the cancellation-free form
        tr_p, tr_pp = (float(x[0]) for x in _traces_1(w[None, :], np.array([sw])))
    else:
        tr_p = sw - sw2 / sw
        tr_pp = sw2 - 2.0 * float(w2 @ w) / sw + (sw2 / sw) ** 2
    return yppy - tr_p, tr_pp, 2 * ypppy - tr_pp


def _fisher_1d(y: FloatArray, v: FloatArray, ml: bool, maxiter: int) -> tuple[float, int] | None:
    """Single-analysis fast path of :func:`fisher_scoring`; None if it does not converge."""
    k = y.size
    rss = float(((y - y.mean()) ** 2).sum())
    t = max(0.0, (rss - float(v.sum()) * (k - 1) / k) / (k - 1))  # HE start
    scale = float(v.min())
    for it in range(1, maxiter + 1):
        score, expected, observed = _derivs_1d(y, v, t, ml)
        fisher = score / expected
        newton = score / observed if observed > 0 else np.inf
        step = newton if abs(newton) <= 4 * abs(fisher) else fisher
        new = max(0.0, t + step)
        if abs(new - t) <= _RTOL * (new + scale):
            return new, it
        t = new
    return None


def fisher_scoring(batch: Batch, ml: bool, maxiter: int = _MAXITER) -> Solution:
    """(Restricted) maximum likelihood for tau^2, batched.

    Starts from the Hedges (HE) estimate as metafor does and takes Newton steps
    (Fisher-scoring steps where the observed information is not positive or
    Newton would jump far), projected onto tau2 >= 0. An analysis stops when the
    step is below 1e-10 relative to ``tau2 + mean(v)``; finished analyses are
    dropped from the working arrays once they are the majority. Analyses not
    converged after ``maxiter`` steps are finished by bisection on the score;
    their ``converged`` flag then reports whether the score is ~0 there.
    """
    if batch.y.shape[0] == 1 and batch.intercept_only and batch.unmasked:
        fast = _fisher_1d(batch.y[0], batch.v[0], ml, maxiter)
        if fast is not None:
            return Solution(np.array([fast[0]]), np.array([True]), np.array([fast[1]]))
    tau2 = _he(batch)
    nb = tau2.shape[0]
    conv = np.zeros(nb, dtype=bool)
    iters = np.zeros(nb, dtype=np.int64)
    work, idx, t = batch, np.arange(nb), tau2.copy()
    alive = np.ones(nb, dtype=bool)
    scale = batch.vmin()
    for _ in range(maxiter):
        score, expected, observed = _derivs(work, t, ml)
        new = np.where(alive, np.maximum(t + _step(score, expected, observed), 0.0), t)
        done = alive & (np.abs(new - t) <= _RTOL * (new + scale[idx]))
        iters[idx[alive]] += 1
        conv[idx[done]] = True
        tau2[idx] = new
        alive &= ~done
        t = new
        if not alive.any():
            break
        if alive.mean() < 0.8:  # compacting copies two arrays; an iteration touches ~12
            work, idx, t, alive = work.subset(alive), idx[alive], t[alive], alive[alive]
    if not conv.all():
        rest = ~conv
        sub = batch.subset(rest)
        tau2[rest] = _bisect_score(sub, ml)
        score, expected, _ = _derivs(sub, tau2[rest], ml)
        ok = (np.abs(score / expected) <= 1e-6 * (tau2[rest] + scale[rest])) | (
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
        if nb == 1 and batch.intercept_only and batch.unmasked:
            fast = _q_root_1d(batch.y[0], batch.v[0], float(batch.k[0]) - 1.0)
            if fast is not None:
                return fast
        return q_root(batch, batch.k - batch.p)
    raise ValueError(f"unknown tau2 method {method!r}; choose one of {', '.join(TAU2_METHODS)}")
