"""Reliability of a scale from a wide table of item answers (one row per administration).

Implemented: Cronbach's alpha with a Feldt (1965; Feldt, Woodruff & Salih 1987) F-based or a
row-bootstrap percentile interval, standardised alpha and the mean inter-item correlation;
item-total statistics and alpha if an item is deleted; split-half reliability with the
Spearman-Brown correction and Guttman's lambda-6 (from squared multiple correlations, as
``psych::alpha`` computes it); and the six intraclass correlations of Shrout & Fleiss (1979)
with their F tests and intervals, as ``psych::ICC`` computes them.

Why our own: no well-kept Python library gives these with the intervals we need and the
numbers of ``psych`` (pingouin is not a dependency, and has no G6, no bootstrap interval and
no item-total table). Each estimate is a few lines of linear algebra on the covariance matrix.

Missing answers: rows with any missing item are left out (listwise deletion); every result
says how many rows it used (``n``) and how many it dropped.

>>> import pandas as pd
>>> t = pd.DataFrame({"a": [1, 2, 3, 4, 5], "b": [2, 2, 3, 5, 4], "c": [1, 3, 3, 4, 5]})
>>> round(cronbach_alpha(t).alpha, 4)
0.9451
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from scipy import stats

FloatArray = NDArray[np.float64]

#: cap on the floats one bootstrap chunk holds (resamples x rows x items), about 64 MB
_BOOT_CHUNK = 8_000_000


class PsychometricsError(ValueError):
    """Input a psychometric function cannot use; the message names the column and the rule."""


@dataclass(frozen=True)
class Block:
    """The numeric item answers left after listwise deletion (private helper's result)."""

    values: FloatArray
    columns: tuple[str, ...]
    n_dropped: int
    complete: NDArray[np.bool_]  # per input row: every item answered


def numeric_block(
    data: pd.DataFrame,
    items: Sequence[str] | None,
    *,
    min_items: int = 2,
    min_rows: int = 3,
    constant_ok: bool = False,
    exclude: Sequence[str] = (),
    what: str = "item",
) -> Block:
    """Check and extract the item columns (all numeric ones when ``items`` is None, less
    ``exclude``), then drop rows with any missing answer. Shared by this package's modules."""
    if not isinstance(data, pd.DataFrame):
        raise PsychometricsError(f"data must be a pandas DataFrame, not {type(data).__name__}")
    if items is None:
        cols = [
            str(c)
            for c in data.columns
            if c not in exclude
            and pd.api.types.is_numeric_dtype(data[c])
            and not pd.api.types.is_bool_dtype(data[c])
        ]
    else:
        if isinstance(items, str):
            raise PsychometricsError(
                f"items must be a list of column names, not the string {items!r}"
            )
        cols = [str(c) for c in items]
        for c in cols:
            if c not in data.columns:
                raise PsychometricsError(f"{c}: column is missing from the data")
            if not pd.api.types.is_numeric_dtype(data[c]) or pd.api.types.is_bool_dtype(data[c]):
                raise PsychometricsError(f"{c}: column is not numeric (dtype {data[c].dtype})")
        if len(set(cols)) < len(cols):
            raise PsychometricsError(f"items name a column twice: {cols}")
    if len(cols) < min_items:
        raise PsychometricsError(
            f"need at least {min_items} numeric {what} columns, got {len(cols)}: {cols}"
        )
    values = data[cols].to_numpy(dtype=np.float64, na_value=np.nan)
    if np.isinf(values).any():
        bad = cols[int(np.flatnonzero(np.isinf(values).any(axis=0))[0])]
        raise PsychometricsError(f"{bad}: column holds an infinite value")
    complete = ~np.isnan(values).any(axis=1)
    values = values[complete]
    if values.shape[0] < min_rows:
        raise PsychometricsError(
            f"need at least {min_rows} rows with every {what} answered, got {values.shape[0]}"
        )
    if not constant_ok:
        constant = np.ptp(values, axis=0) == 0
        if constant.any():
            bad = cols[int(np.flatnonzero(constant)[0])]
            raise PsychometricsError(
                f"{bad}: {what} is constant ({values[0, constant][0]:g}) in the rows used; "
                "a correlation with it is undefined"
            )
    return Block(values, tuple(cols), int((~complete).sum()), complete)


def _alpha_from_cov(cov: FloatArray) -> FloatArray:
    """Alpha of each covariance matrix in a stack (..., k, k): k/(k-1) (1 - tr C / sum C)."""
    k = cov.shape[-1]
    trace = np.trace(cov, axis1=-2, axis2=-1)
    total = cov.sum(axis=(-2, -1))
    return np.asarray(k / (k - 1) * (1.0 - trace / total), dtype=np.float64)


def _cov_to_cor(cov: FloatArray) -> FloatArray:
    sd = np.sqrt(np.diag(cov))
    return np.asarray(cov / np.outer(sd, sd), dtype=np.float64)


def _check_ci(ci: float) -> None:
    if not 0.0 < ci < 1.0:
        raise PsychometricsError(f"ci must lie strictly between 0 and 1, got {ci}")


@dataclass(frozen=True)
class AlphaResult:
    """Cronbach's alpha with its interval; ``n`` rows used, ``n_dropped`` left out."""

    alpha: float
    std_alpha: float
    lower: float
    upper: float
    ci: float
    method: str
    n: int
    k: int
    average_r: float
    n_dropped: int

    def to_frame(self) -> pd.DataFrame:
        """The result as a one-row table."""
        return pd.DataFrame([asdict(self)])


def cronbach_alpha(
    data: pd.DataFrame,
    items: Sequence[str] | None = None,
    ci: float = 0.95,
    method: Literal["feldt", "bootstrap"] = "feldt",
    n_boot: int = 2000,
    seed: int = 0,
) -> AlphaResult:
    """Cronbach's alpha, standardised alpha (from the mean inter-item correlation) and an
    interval: Feldt's, where (1 - alpha) / (1 - alpha_hat) ~ F(n - 1, (n - 1)(k - 1)), or a
    percentile bootstrap over rows (``n_boot`` resamples, seeded).

    >>> import pandas as pd
    >>> t = pd.DataFrame({"a": [1, 2, 3, 4, 5], "b": [2, 2, 3, 5, 4], "c": [1, 3, 3, 4, 5]})
    >>> r = cronbach_alpha(t)
    >>> round(r.alpha, 4), round(r.lower, 4), round(r.upper, 4), r.n
    (0.9451, 0.7225, 0.9939, 5)
    """
    _check_ci(ci)
    block = numeric_block(data, items)
    x, (n, k) = block.values, block.values.shape
    cov = np.cov(x, rowvar=False)
    if not cov.sum() > 0:
        raise PsychometricsError("the variance of the total score is zero; alpha is undefined")
    alpha = float(_alpha_from_cov(cov))
    cor = _cov_to_cor(cov)
    average_r = float((cor.sum() - k) / (k * (k - 1)))
    std_alpha = k * average_r / (1 + (k - 1) * average_r)
    tail = (1.0 - ci) / 2.0
    if method == "feldt":
        df1, df2 = n - 1, (n - 1) * (k - 1)
        # large F quantile -> low alpha: the upper F quantile gives the lower bound
        lower = 1.0 - (1.0 - alpha) * float(stats.f.ppf(1.0 - tail, df1, df2))
        upper = 1.0 - (1.0 - alpha) * float(stats.f.ppf(tail, df1, df2))
    elif method == "bootstrap":
        if n_boot < 100:
            raise PsychometricsError(
                f"n_boot must be at least 100 for a percentile CI, got {n_boot}"
            )
        boot = _bootstrap_alpha(x, n_boot, seed)
        lower, upper = (float(q) for q in np.nanquantile(boot, [tail, 1.0 - tail]))
    else:
        raise PsychometricsError(f"method must be 'feldt' or 'bootstrap', got {method!r}")
    return AlphaResult(alpha, std_alpha, lower, upper, ci, method, n, k, average_r, block.n_dropped)


def _bootstrap_alpha(x: FloatArray, n_boot: int, seed: int) -> FloatArray:
    """Alpha in ``n_boot`` row resamples, in chunks so memory stays bounded."""
    n, k = x.shape
    rng = np.random.default_rng(seed)
    chunk = max(1, _BOOT_CHUNK // (n * k))
    out = np.empty(n_boot)
    for start in range(0, n_boot, chunk):
        m = min(chunk, n_boot - start)
        xb = x[rng.integers(0, n, size=(m, n))]  # (m, n, k)
        item_var = xb.var(axis=1, ddof=1).sum(axis=1)
        total_var = xb.sum(axis=2).var(axis=1, ddof=1)
        with np.errstate(divide="ignore", invalid="ignore"):  # a degenerate resample -> nan
            out[start : start + m] = k / (k - 1) * (1.0 - item_var / total_var)
    return out


def item_total(data: pd.DataFrame, items: Sequence[str] | None = None) -> pd.DataFrame:
    """Per item: ``mean``, ``sd``, ``corrected_r`` (with the sum of the other items; psych's
    ``r.drop``), ``total_r`` (with the total including the item; psych's ``raw.r``),
    ``alpha_if_deleted`` (nan for a 2-item scale), and ``n`` rows used.

    >>> import pandas as pd
    >>> t = pd.DataFrame({"a": [1, 2, 3, 4, 5], "b": [2, 2, 3, 5, 4], "c": [1, 3, 3, 4, 5]})
    >>> item_total(t)["corrected_r"].round(3).to_dict()
    {'a': 0.97, 'b': 0.809, 'c': 0.899}
    """
    block = numeric_block(data, items)
    x, n = block.values, block.values.shape[0]
    cov = np.cov(x, rowvar=False)
    var, rowsum, total = np.diag(cov), cov.sum(axis=1), cov.sum()
    rest_var = total - 2.0 * rowsum + var  # variance of the total without item j
    table = pd.DataFrame(
        {
            "mean": x.mean(axis=0),
            "sd": np.sqrt(var),
            "corrected_r": (rowsum - var) / np.sqrt(var * rest_var),
            "total_r": rowsum / np.sqrt(var * total),
            "alpha_if_deleted": _alpha_without_each(cov),
            "n": n,
        },
        index=pd.Index(block.columns, name="item"),
    )
    return table


def _alpha_without_each(cov: FloatArray) -> FloatArray:
    """Alpha of the k scales of k - 1 items, from the full covariance matrix in one pass."""
    k = cov.shape[0]
    if k < 3:
        return np.full(k, np.nan)
    var, rowsum = np.diag(cov), cov.sum(axis=1)
    trace = np.trace(cov) - var
    total = cov.sum() - 2.0 * rowsum + var
    return np.asarray((k - 1) / (k - 2) * (1.0 - trace / total), dtype=np.float64)


def alpha_if_deleted(data: pd.DataFrame, items: Sequence[str] | None = None) -> pd.Series:
    """Cronbach's alpha of the scale without each item in turn (a Series by item).

    >>> import pandas as pd
    >>> t = pd.DataFrame({"a": [1, 2, 3, 4, 5], "b": [2, 2, 3, 5, 4], "c": [1, 3, 3, 4, 5]})
    >>> alpha_if_deleted(t).round(4).to_dict()
    {'a': 0.8529, 'b': 0.9783, 'c': 0.9091}
    """
    return item_total(data, items)["alpha_if_deleted"]


@dataclass(frozen=True)
class SplitHalfResult:
    """Split-half reliability of one split, and Guttman's lambda-6 of the whole scale."""

    r: float
    spearman_brown: float
    guttman_split: float
    lambda6: float
    first: tuple[str, ...]
    second: tuple[str, ...]
    method: str
    n: int
    k: int
    n_dropped: int

    def to_frame(self) -> pd.DataFrame:
        """The result as a one-row table (the halves as comma-joined names)."""
        row = asdict(self)
        row["first"], row["second"] = ",".join(self.first), ",".join(self.second)
        return pd.DataFrame([row])


def guttman_lambda6(cor: FloatArray) -> float:
    """Guttman's lambda-6 as psych computes it: 1 - sum(1 - smc) / sum(R), where
    smc_j = 1 - 1 / (R^-1)_jj is item j's squared multiple correlation on the others.

    >>> import numpy as np
    >>> round(guttman_lambda6(np.array([[1.0, 0.5], [0.5, 1.0]])), 4)
    0.5
    """
    try:
        inv = np.linalg.inv(cor)
    except np.linalg.LinAlgError as exc:
        raise PsychometricsError(
            "the item correlation matrix is singular (an item is a linear combination of "
            "others); lambda-6 needs its inverse"
        ) from exc
    smc = 1.0 - 1.0 / np.diag(inv)
    return float(1.0 - (1.0 - smc).sum() / cor.sum())


def split_half(
    data: pd.DataFrame,
    items: Sequence[str] | None = None,
    method: Literal["odd_even", "first_second"] = "odd_even",
) -> SplitHalfResult:
    """Correlation of the two half-scale sums (``r``), its Spearman-Brown step-up
    2r / (1 + r), the Flanagan-Rulon (Guttman) split-half 4 cov(A, B) / var(A + B), and
    Guttman's lambda-6 of all items. Halves: items 1, 3, 5, ... against 2, 4, 6, ...
    (``odd_even``) or the first ceil(k/2) items against the rest (``first_second``).

    >>> import pandas as pd
    >>> t = pd.DataFrame({"a": [1, 2, 3, 4, 5], "b": [2, 2, 3, 5, 4],
    ...                   "c": [1, 3, 3, 4, 5], "d": [2, 1, 4, 4, 5]})
    >>> r = split_half(t)
    >>> r.first, round(r.r, 4), round(r.spearman_brown, 4)
    (('a', 'c'), 0.844, 0.9154)
    """
    block = numeric_block(data, items)
    x, (n, k) = block.values, block.values.shape
    positions = np.arange(k)
    if method == "odd_even":
        in_first = positions % 2 == 0
    elif method == "first_second":
        in_first = positions < (k + 1) // 2
    else:
        raise PsychometricsError(f"method must be 'odd_even' or 'first_second', got {method!r}")
    cov2 = np.cov(x[:, in_first].sum(axis=1), x[:, ~in_first].sum(axis=1))
    r = float(cov2[0, 1] / np.sqrt(cov2[0, 0] * cov2[1, 1]))
    cols = np.array(block.columns)
    return SplitHalfResult(
        r=r,
        spearman_brown=2.0 * r / (1.0 + r),
        guttman_split=float(4.0 * cov2[0, 1] / cov2.sum()),
        lambda6=guttman_lambda6(_cov_to_cor(np.cov(x, rowvar=False))),
        first=tuple(str(c) for c in cols[in_first]),
        second=tuple(str(c) for c in cols[~in_first]),
        method=method,
        n=n,
        k=k,
        n_dropped=block.n_dropped,
    )


def icc(data: pd.DataFrame, ratings: Sequence[str] | None = None, ci: float = 0.95) -> pd.DataFrame:
    """The six intraclass correlations of Shrout & Fleiss (1979) from a targets x raters
    table (one row per target, one column per rater): ICC1 (one-way random), ICC2 (two-way
    random, absolute agreement), ICC3 (two-way mixed, consistency), and ICC1k/ICC2k/ICC3k for
    the mean of the k raters; with F tests and intervals as ``psych::ICC`` gives them (ICC2's
    interval by the Satterthwaite approximation of McGraw & Wong 1996). Targets with a missing
    rating are left out; the table's ``attrs`` hold ``n`` and ``n_dropped``.

    >>> import pandas as pd
    >>> t = pd.DataFrame({"r1": [9, 6, 8, 7, 10, 6], "r2": [2, 1, 4, 1, 5, 2],
    ...                   "r3": [5, 3, 6, 2, 6, 4], "r4": [8, 2, 8, 6, 9, 7]})
    >>> icc(t).round(3)[["type", "icc", "lower", "upper"]].head(3)
       type    icc  lower  upper
    0  ICC1  0.166 -0.133  0.723
    1  ICC2  0.290  0.019  0.761
    2  ICC3  0.715  0.342  0.946
    """
    _check_ci(ci)
    block = numeric_block(data, ratings, min_rows=2, constant_ok=True, what="rater")
    x, (n, k) = block.values, block.values.shape
    grand = x.mean()
    ss_rows = k * ((x.mean(axis=1) - grand) ** 2).sum()
    ss_cols = n * ((x.mean(axis=0) - grand) ** 2).sum()
    ss_err = ((x - grand) ** 2).sum() - ss_rows - ss_cols
    msr, msc = ss_rows / (n - 1), ss_cols / (k - 1)
    mse, msw = ss_err / ((n - 1) * (k - 1)), (ss_cols + ss_err) / (n * (k - 1))
    if not (msw > 0 and mse > 0):
        raise PsychometricsError("the ratings have no within-target variance; ICC is undefined")
    table = pd.DataFrame(_icc_rows(msr, msc, mse, msw, n, k, 1.0 - ci))
    table.attrs.update(n=n, k=k, n_dropped=block.n_dropped)
    return table


def _icc_rows(
    msr: float, msc: float, mse: float, msw: float, n: int, k: int, alpha: float
) -> list[dict[str, object]]:
    """The six forms (Shrout & Fleiss 1979, Table 2; intervals as in psych::ICC)."""
    f1, df1a, df1b = msr / msw, n - 1, n * (k - 1)
    f3, df3a, df3b = msr / mse, n - 1, (n - 1) * (k - 1)
    icc1 = (msr - msw) / (msr + (k - 1) * msw)
    icc2 = (msr - mse) / (msr + (k - 1) * mse + k * (msc - mse) / n)
    icc3 = (msr - mse) / (msr + (k - 1) * mse)
    q = 1.0 - alpha / 2.0
    f1l, f1u = f1 / stats.f.ppf(q, df1a, df1b), f1 * stats.f.ppf(q, df1b, df1a)
    f3l, f3u = f3 / stats.f.ppf(q, df3a, df3b), f3 * stats.f.ppf(q, df3b, df3a)
    lo1, up1 = (f1l - 1) / (f1l + k - 1), (f1u - 1) / (f1u + k - 1)
    lo3, up3 = (f3l - 1) / (f3l + k - 1), (f3u - 1) / (f3u + k - 1)
    # ICC2: Satterthwaite degrees of freedom for the mix of mean squares (Fleiss & Shrout 1978)
    fj = msc / mse
    a = n * (1 + (k - 1) * icc2) - k * icc2
    v = (k - 1) * (n - 1) * (k * icc2 * fj + a) ** 2
    v /= (n - 1) * k**2 * icc2**2 * fj**2 + a**2
    f2u, f2l = stats.f.ppf(q, n - 1, v), stats.f.ppf(q, v, n - 1)
    denom = k * msc + (k * n - k - n) * mse
    lo2 = n * (msr - f2u * mse) / (f2u * denom + n * msr)
    up2 = n * (f2l * msr - mse) / (denom + n * f2l * msr)
    p1, p3 = float(stats.f.sf(f1, df1a, df1b)), float(stats.f.sf(f3, df3a, df3b))

    def k_form(x: float) -> float:  # Spearman-Brown step-up to the mean of k raters
        return float(k * x / (1 + (k - 1) * x))

    icc2k = (msr - mse) / (msr + (msc - mse) / n)
    rows = [
        ("ICC1", icc1, f1, df1a, df1b, p1, lo1, up1),
        ("ICC2", icc2, f3, df3a, df3b, p3, lo2, up2),
        ("ICC3", icc3, f3, df3a, df3b, p3, lo3, up3),
        ("ICC1k", (msr - msw) / msr, f1, df1a, df1b, p1, 1 - 1 / f1l, 1 - 1 / f1u),
        ("ICC2k", icc2k, f3, df3a, df3b, p3, k_form(lo2), k_form(up2)),
        ("ICC3k", (msr - mse) / msr, f3, df3a, df3b, p3, 1 - 1 / f3l, 1 - 1 / f3u),
    ]
    return [
        {
            "type": t,
            "icc": float(v),
            "F": float(f),
            "df1": int(d1),
            "df2": int(d2),
            "p": p,
            "lower": float(lo),
            "upper": float(up),
        }
        for t, v, f, d1, d2, p, lo, up in rows
    ]
