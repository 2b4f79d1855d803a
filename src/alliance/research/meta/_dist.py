"""Normal, t, chi-square and F tail functions straight from ``scipy.special``.

``scipy.stats`` distribution objects cost ~100 microseconds a call in argument
handling; a single meta-analysis needs about ten such calls, so the fitting
code uses these thin wrappers instead (identical values).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike
from scipy import special

from alliance.research.meta._validate import FloatArray


def _f(x: ArrayLike) -> FloatArray:
    return np.asarray(x, dtype=np.float64)


def norm_sf(x: ArrayLike) -> FloatArray:
    """Upper tail of N(0, 1).

    >>> round(float(norm_sf(1.959963984540054)), 6)
    0.025
    """
    return _f(special.ndtr(-_f(x)))


def norm_isf(q: float) -> float:
    """Upper-tail quantile of N(0, 1): ``norm_isf(0.025) = 1.96``."""
    return float(-special.ndtri(q))


def t_sf(x: ArrayLike, df: ArrayLike) -> FloatArray:
    """Upper tail of Student's t."""
    return _f(special.stdtr(df, -_f(x)))


def t_isf(q: float, df: ArrayLike) -> FloatArray:
    """Upper-tail quantile of Student's t.

    >>> round(float(t_isf(0.025, 15)), 4)
    2.1314
    """
    return _f(special.stdtrit(df, 1.0 - q))


def chi2_sf(x: ArrayLike, df: ArrayLike) -> FloatArray:
    """Upper tail of the chi-square distribution."""
    return _f(special.chdtrc(df, x))


def chi2_isf(q: float, df: float) -> float:
    """Upper-tail quantile of the chi-square distribution."""
    return float(special.chdtri(df, q))


def f_sf(x: float, dfn: float, dfd: float) -> float:
    """Upper tail of the F distribution."""
    return float(special.fdtrc(dfn, dfd, x))
