"""Effect sizes and their sampling variances (metafor's ``escalc``).

Every function returns a DataFrame with columns ``yi`` (effect size) and ``vi``
(sampling variance), one row per study, and raises :class:`MetaInputError`
naming the first offending row.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy.special import gammaln

from alliance.research.meta._validate import FloatArray, MetaInputError, as_vector, bad_rows


def _frame(yi: FloatArray, vi: FloatArray) -> pd.DataFrame:
    return pd.DataFrame({"yi": yi, "vi": vi})


def _require(ok: ArrayLike, msg: str, slab: Sequence[str] | None) -> None:
    bad = ~np.asarray(ok, dtype=bool)
    if bad.any():
        raise MetaInputError(f"{bad_rows(bad, slab)}: {msg}")


def fisher_z(r: ArrayLike, n: ArrayLike, slab: Sequence[str] | None = None) -> pd.DataFrame:
    """Fisher's z of correlations: ``yi = atanh(r)``, ``vi = 1 / (n - 3)`` (measure ZCOR).

    >>> fisher_z([0.3], [28]).round(6).to_dict("records")
    [{'yi': 0.30952, 'vi': 0.04}]
    """
    ra, na = as_vector(r, "r", slab), as_vector(n, "n", slab)
    _require(np.abs(ra) < 1, "correlation r must lie strictly between -1 and 1", slab)
    _require(na == np.round(na), "sample size n must be a whole number", slab)
    _require(na > 3, "sample size n must be greater than 3 for Fisher's z", slab)
    return _frame(np.arctanh(ra), 1.0 / (na - 3.0))


def z_to_r(z: ArrayLike) -> FloatArray:
    """Back-transform Fisher's z to the correlation scale (``tanh``).

    >>> float(z_to_r(0.5493061443340549)[0])
    0.5
    """
    return np.tanh(np.atleast_1d(np.asarray(z, dtype=np.float64)))


def smd(
    m1: ArrayLike,
    sd1: ArrayLike,
    n1: ArrayLike,
    m2: ArrayLike,
    sd2: ArrayLike,
    n2: ArrayLike,
    corrected: bool = True,
    slab: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Standardised mean difference (Hedges' g; metafor measure SMD, vtype LS).

    ``yi = c(m) (m1 - m2) / sd_pooled`` with the exact small-sample factor
    ``c(m) = Gamma(m/2) / (sqrt(m/2) Gamma((m-1)/2))``, ``m = n1 + n2 - 2``;
    ``vi = 1/n1 + 1/n2 + yi^2 / (2 (n1 + n2))``. ``corrected=False`` gives Cohen's d.

    >>> smd([10], [2], [20], [9], [2], [20]).round(5).to_dict("records")
    [{'yi': 0.49006, 'vi': 0.103}]
    """
    a = [as_vector(x, nm, slab) for x, nm in zip((m1, sd1, n1, m2, sd2, n2), _SMD_NAMES)]
    mean1, s1, size1, mean2, s2, size2 = a
    _require((s1 > 0) & (s2 > 0), "standard deviations must be > 0", slab)
    _require((size1 >= 2) & (size2 >= 2), "each group needs n >= 2", slab)
    df = size1 + size2 - 2.0
    sp = np.sqrt(((size1 - 1) * s1**2 + (size2 - 1) * s2**2) / df)
    d = (mean1 - mean2) / sp
    if corrected:
        d = d * np.exp(gammaln(df / 2) - 0.5 * np.log(df / 2) - gammaln((df - 1) / 2))
    return _frame(d, 1 / size1 + 1 / size2 + d**2 / (2 * (size1 + size2)))


_SMD_NAMES = ("m1", "sd1", "n1", "m2", "sd2", "n2")


def _cells(
    ai: ArrayLike, bi: ArrayLike, ci: ArrayLike, di: ArrayLike, slab: Sequence[str] | None
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    cells = [as_vector(x, nm, slab) for x, nm in zip((ai, bi, ci, di), ("ai", "bi", "ci", "di"))]
    stacked = np.vstack(cells)
    _require((stacked >= 0).all(axis=0), "cell counts must be >= 0", slab)
    zero = (stacked == 0).any(axis=0)
    stacked = stacked + 0.5 * zero  # metafor's default: add 1/2 to rows with a zero cell
    return stacked[0], stacked[1], stacked[2], stacked[3]


def log_risk_ratio(
    ai: ArrayLike, bi: ArrayLike, ci: ArrayLike, di: ArrayLike, slab: Sequence[str] | None = None
) -> pd.DataFrame:
    """Log risk ratio from a 2x2 table per study (measure RR).

    ``ai``/``bi`` are events/non-events in group 1, ``ci``/``di`` in group 2.
    Studies with a zero cell get 1/2 added to every cell (metafor's default).

    >>> log_risk_ratio([4], [119], [11], [128]).round(6).to_dict("records")
    [{'yi': -0.889311, 'vi': 0.325585}]
    """
    a, b, c, d = _cells(ai, bi, ci, di, slab)
    _require((a > 0) & (c > 0), "a log risk ratio needs events in both groups", slab)
    return _frame(
        np.log(a / (a + b)) - np.log(c / (c + d)), 1 / a - 1 / (a + b) + 1 / c - 1 / (c + d)
    )


def log_odds_ratio(
    ai: ArrayLike, bi: ArrayLike, ci: ArrayLike, di: ArrayLike, slab: Sequence[str] | None = None
) -> pd.DataFrame:
    """Log odds ratio from a 2x2 table per study (measure OR), 1/2 added to zero cells.

    >>> log_odds_ratio([4], [119], [11], [128]).round(6).to_dict("records")
    [{'yi': -0.938694, 'vi': 0.357125}]
    """
    a, b, c, d = _cells(ai, bi, ci, di, slab)
    return _frame(np.log(a * d / (b * c)), 1 / a + 1 / b + 1 / c + 1 / d)


def log_ratio_of_means(
    m1: ArrayLike,
    sd1: ArrayLike,
    n1: ArrayLike,
    m2: ArrayLike,
    sd2: ArrayLike,
    n2: ArrayLike,
    slab: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Log ratio of means (measure ROM): ``yi = log(m1/m2)``, delta-method variance.

    >>> log_ratio_of_means([12], [3], [25], [10], [2], [25]).round(6).to_dict("records")
    [{'yi': 0.182322, 'vi': 0.0041}]
    """
    a = [as_vector(x, nm, slab) for x, nm in zip((m1, sd1, n1, m2, sd2, n2), _SMD_NAMES)]
    mean1, s1, size1, mean2, s2, size2 = a
    _require((mean1 > 0) & (mean2 > 0), "ratio of means needs positive means", slab)
    _require((size1 >= 1) & (size2 >= 1), "each group needs n >= 1", slab)
    yi = np.log(mean1 / mean2)
    return _frame(yi, s1**2 / (size1 * mean1**2) + s2**2 / (size2 * mean2**2))
