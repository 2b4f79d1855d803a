"""Many random-effects meta-analyses at once: bootstrap and simulation.

All analyses are solved together as arrays (batched Fisher scoring on tau^2),
so 10,000 bootstrap resamples of a few hundred studies take well under a second
or two; no Python loop runs over the analyses.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from alliance.research.meta import _engine as eng
from alliance.research.meta._dist import norm_isf, t_isf
from alliance.research.meta._validate import FloatArray, MetaInputError, confidence_level
from alliance.research.meta.models import METHODS, TESTS, MetaResult

BoolArray = eng.BoolArray
IntArray = eng.IntArray


@dataclass(frozen=True, eq=False)
class BatchResult:
    """Intercept-only fits of B analyses: one array entry per analysis."""

    method: str
    test: str
    estimate: FloatArray
    se: FloatArray
    ci_lower: FloatArray
    ci_upper: FloatArray
    tau2: FloatArray
    q: FloatArray
    converged: BoolArray
    iterations: IntArray

    def percentile_ci(self, level: float = 95.0) -> tuple[float, float]:
        """Percentile interval of the estimates (for bootstrap batches)."""
        a = (100 - confidence_level(level)) / 2
        lo, hi = np.percentile(self.estimate, [a, 100 - a])
        return float(lo), float(hi)


def rma_batch(
    yi: ArrayLike,
    vi: ArrayLike,
    *,
    method: str = "REML",
    test: str = "z",
    level: float = 95.0,
    mask: ArrayLike | None = None,
) -> BatchResult:
    """Fit B intercept-only models given (B, k) arrays of effects and variances.

    ``mask`` (B, k) of 0/1 drops studies per analysis. Results equal B calls of
    :func:`~alliance.research.meta.models.rma`.

    >>> out = rma_batch([[0.1, 0.3, 0.5], [0.2, 0.2, 0.6]], [[0.01, 0.02, 0.01]] * 2)
    >>> out.estimate.shape, bool(out.converged.all())
    ((2,), True)
    """
    m, t = method.upper(), test.lower()
    if m not in METHODS or t not in TESTS:
        raise MetaInputError(f"method must be one of {METHODS} and test one of {TESTS}")
    m = "EE" if m in ("FE", "CE") else m
    level = confidence_level(level)
    y = np.atleast_2d(np.asarray(yi, dtype=np.float64))
    v = np.atleast_2d(np.asarray(vi, dtype=np.float64))
    if y.shape != v.shape:
        raise MetaInputError(f"yi has shape {y.shape} but vi has {v.shape}")
    if not (np.isfinite(y).all() and np.isfinite(v).all() and (v > 0).all()):
        raise MetaInputError("yi must be finite and vi finite and > 0 in every analysis")
    batch = eng.make_batch(y, v, None, None if mask is None else np.asarray(mask, dtype=float))
    if (batch.k < 2).any():
        raise MetaInputError("every analysis needs at least 2 studies")
    sol = eng.estimate_tau2(batch, m)
    mo = eng.wls(batch, eng.weights(batch, sol.tau2))
    var = mo.ainv[:, 0, 0]
    df = batch.k - 1
    if t == "knha":
        var = var * mo.ypy / df
    se = np.sqrt(var)
    alpha = 1 - level / 100
    crit = norm_isf(alpha / 2) if t == "z" else t_isf(alpha / 2, df)
    est = mo.beta[:, 0]
    q = eng.wls(batch, batch.m / batch.v).ypy
    return BatchResult(
        m, t, est, se, est - crit * se, est + crit * se, sol.tau2, q, sol.converged, sol.iterations
    )


def bootstrap(res: MetaResult, n_resamples: int = 1000, seed: int | None = None) -> BatchResult:
    """Non-parametric bootstrap of an intercept-only model (studies resampled).

    >>> from alliance.research.meta.models import rma
    >>> fit = rma([0.1, 0.3, 0.35, 0.65, 0.45], [0.01, 0.02, 0.015, 0.03, 0.01])
    >>> bootstrap(fit, 200, seed=1).estimate.shape
    (200,)
    """
    if res.p != 1:
        raise MetaInputError("bootstrap is implemented for intercept-only models")
    if n_resamples < 1:
        raise MetaInputError("n_resamples must be >= 1")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, res.k, size=(n_resamples, res.k))
    return rma_batch(res.yi[idx], res.vi[idx], method=res.method, test=res.test, level=res.level)
