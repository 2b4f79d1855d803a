"""Tests on a fitted mixed model: Satterthwaite df and likelihood-ratio tests, each
computed as the reference package computes it.

- Satterthwaite df follow lmerTest (Kuznetsova, Brockhoff & Christensen 2017, J Stat Softw
  82(13), doi:10.18637/jss.v082.i13, section 3): the variance parameters are ``(theta,
  sigma)``; their covariance is twice the inverse (over its positive eigenvalues) of the
  Hessian of the unprofiled deviance, and ``df = 2 (l'Cl)^2 / (g'Ag)`` with ``g`` the
  gradient of ``l'Cl`` in those parameters. Both derivatives are numerical, with
  Richardson extrapolation as numDeriv takes them (our own, a few lines; scipy has no
  Hessian with extrapolation).
- Likelihood-ratio tests compare nested fits as lme4's ``anova`` does, refitting REML fits
  by ML when their fixed effects differ (REML likelihoods of different fixed parts are not
  comparable).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import stats

if TYPE_CHECKING:
    from alliance.research.multilevel.lmm import MixedModelFit

FloatArray = npt.NDArray[np.float64]
_EIGEN_TOL = 1e-8  # lmerTest's tolerance for a positive eigenvalue of the Hessian


# -- numerical derivatives ------------------------------------------------------------------
def _steps(x: FloatArray) -> FloatArray:
    """numDeriv's first step: 10% of each coordinate, 1e-4 where it is (near) zero."""
    return np.where(np.abs(x) < 1e-4, 1e-4, 0.1 * np.abs(x))


def _richardson(estimates: list[FloatArray]) -> FloatArray:
    """Combine estimates at steps h, h/2, h/4, ... whose error is a series in h^2."""
    table = estimates
    for k in range(1, len(estimates)):
        factor = 4.0**k
        table = [(factor * table[m + 1] - table[m]) / (factor - 1.0) for m in range(len(table) - 1)]
    return table[0]


def hessian(f: Callable[[FloatArray], float], x: FloatArray, levels: int = 4) -> FloatArray:
    """The Hessian of ``f`` at ``x`` by central differences with Richardson extrapolation.

    >>> h = hessian(lambda v: float(v[0] ** 2 * v[1] + v[1] ** 3), np.array([1.0, 2.0]))
    >>> np.round(h, 8).tolist()
    [[4.0, 2.0], [2.0, 12.0]]
    """
    n, f0 = x.size, f(x)
    estimates = []
    for level in range(levels):
        h = _steps(x) / 2.0**level
        e = np.eye(n) * h
        out = np.empty((n, n))
        for i in range(n):
            out[i, i] = (f(x + e[i]) - 2.0 * f0 + f(x - e[i])) / h[i] ** 2
            for j in range(i):
                corners = f(x + e[i] + e[j]) - f(x + e[i] - e[j]) - f(x - e[i] + e[j])
                out[i, j] = out[j, i] = (corners + f(x - e[i] - e[j])) / (4.0 * h[i] * h[j])
        estimates.append(out)
    return _richardson(estimates)


def jacobian(f: Callable[[FloatArray], FloatArray], x: FloatArray, levels: int = 4) -> FloatArray:
    """Derivatives of an array-valued ``f``: ``out[..., i]`` is d f / d x_i.

    >>> j = jacobian(lambda v: np.array([v[0] * v[1], v[1] ** 2]), np.array([3.0, 2.0]))
    >>> j.round(8).tolist()
    [[2.0, 3.0], [0.0, 4.0]]
    """
    estimates = []
    for level in range(levels):
        h = _steps(x) / 2.0**level
        e = np.eye(x.size) * h
        columns = [(f(x + e[i]) - f(x - e[i])) / (2.0 * h[i]) for i in range(x.size)]
        estimates.append(np.stack(columns, axis=-1))
    return _richardson(estimates)


# -- Satterthwaite ----------------------------------------------------------------------------
def varpar_derivatives(fit: MixedModelFit) -> tuple[FloatArray, FloatArray]:
    """``A``, the asymptotic covariance of ``(theta, sigma)``, and the Jacobian of Var(beta)
    in them (p x p x parameters), as lmerTest computes both once per fit."""
    model, varpar = fit.model, fit.varpar
    h = hessian(model.varpar_deviance, varpar)
    values, vectors = np.linalg.eigh(h)
    keep = values > _EIGEN_TOL  # a generalised inverse over the positive eigenvalues
    h_inv = (vectors[:, keep] / values[keep]) @ vectors[:, keep].T
    return 2.0 * h_inv, jacobian(model.cov_beta, varpar)


def satterthwaite_df(fit: MixedModelFit, contrasts: FloatArray) -> FloatArray:
    """Satterthwaite's df of each row ``l`` of ``contrasts`` (one estimate ``l'beta``).

    >>> import pandas as pd
    >>> from alliance.research.multilevel import lmm
    >>> t = pd.DataFrame({"g": list("aabbccdd"), "x": [0, 1] * 4,
    ...                   "y": [1.0, 2.1, 3.0, 4.4, 2.0, 2.6, 1.2, 2.0]})
    >>> fit = lmm("y ~ x + (1 | g)", t)
    >>> bool(0 < satterthwaite_df(fit, np.array([[0.0, 1.0]]))[0] < fit.n_obs)
    True
    """
    a, jac = fit.varpar_derivatives
    cov = fit.vcov.to_numpy()
    out = np.empty(len(contrasts))
    for row, c in enumerate(np.atleast_2d(contrasts)):
        variance = float(c @ cov @ c)
        grad = np.einsum("i,ijk,j->k", c, jac, c)
        out[row] = 2.0 * variance**2 / float(grad @ a @ grad)
    return out


# -- likelihood-ratio tests --------------------------------------------------------------------
def lrt(*fits: MixedModelFit) -> pd.DataFrame:
    """Likelihood-ratio tests of nested fits on the same rows, smallest model first.

    REML fits are refitted by ML unless all share their fixed effects (then REML, which is
    the better test of the random part); a test of a variance against zero is conservative
    (the null is on the boundary: halve the p-value for one variance).

    >>> import pandas as pd
    >>> from alliance.research.multilevel import lmm
    >>> t = pd.DataFrame({"g": list("aabbccdd"), "x": [0, 1] * 4,
    ...                   "y": [1.0, 2.1, 3.0, 4.4, 2.0, 2.6, 1.2, 2.0]})
    >>> table = lrt(lmm("y ~ 1 + (1 | g)", t), lmm("y ~ x + (1 | g)", t))
    >>> list(table.columns)
    ['formula', 'npar', 'AIC', 'BIC', 'logLik', 'deviance', 'chisq', 'df', 'p']
    """
    if len(fits) < 2:
        raise ValueError("lrt: needs at least two fits")
    if len({f.n_obs for f in fits}) != 1:
        raise ValueError("lrt: the fits are on different numbers of rows")
    same_fixed = len({tuple(f.coef.index) for f in fits}) == 1
    reml = all(f.reml for f in fits) and same_fixed
    ordered = sorted((f.refit(reml=reml) for f in fits), key=lambda f: f.n_params)
    rows, previous = [], None
    for f in ordered:
        chisq = df = p = np.nan
        if previous is not None:
            chisq = max(2.0 * (f.loglik - previous.loglik), 0.0)
            df = f.n_params - previous.n_params
            p = float(stats.chi2.sf(chisq, df)) if df > 0 else np.nan
        rows.append((f.formula, f.n_params, f.aic, f.bic, f.loglik, f.deviance, chisq, df, p))
        previous = f
    columns = ["formula", "npar", "AIC", "BIC", "logLik", "deviance", "chisq", "df", "p"]
    return pd.DataFrame(rows, columns=columns)
