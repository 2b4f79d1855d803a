"""Ordinal factor analysis: polychoric correlations and lavaan's WLSMV estimator.

Why: alliance items are Likert answers with few categories and ceiling effects, so maximum
likelihood on Pearson covariances (:mod:`.cfa`) underestimates loadings and misstates fit.
The standard remedy is a factor model for the polychoric correlations of normal latent
responses, fitted by diagonally weighted least squares with robust standard errors and a
mean-and-variance adjusted chi-square, which lavaan calls ``estimator = "WLSMV"``. No
maintained Python package gives those numbers, so this is our own implementation of the
published method (Muthén 1984; Muthén, du Toit & Spisic 1997; Asparouhov & Muthén 2010),
checked against lavaan 0.6-14 (``tests/data/psychometrics/ordinal_lavaan.json``).

Steps, each as lavaan takes them for a single group without covariates:

1. thresholds of each item from its marginal proportions, ``τ_k = Φ⁻¹(P(y ≤ k))``;
2. each polychoric correlation by maximising the bivariate-normal likelihood of the two-way
   table with the thresholds held fixed (two-step). Empty cells are handled as lavaan does:
   a 2x2 table with one empty cell gets 0.5 moved into it (and the margins kept), larger
   tables are used as they are; a table whose likelihood keeps rising towards ρ = ±1 (two
   empty cells of a 2x2 table, or a perfectly ordered larger table) raises :class:`OrdinalError`;
3. the asymptotic covariance ``Γ`` of the thresholds and correlations (lavaan's NACOV,
   ``lavInspect(fit, "gamma")``), a sandwich of the stage-wise casewise scores;
4. the model ``Σ* = ΛΦΛ' + Θ`` with ``diag(Σ*) = 1`` (delta parameterisation: Θ is not free
   but ``1 - diag(ΛΦΛ')``), fitted by DWLS with weights ``1 / diag(Γ)``; robust (sandwich)
   standard errors and lavaan's ``scaled.shifted`` test statistic. As lavaan 0.6 does for
   (D)WLS, the test statistic is (N - 1)·F and the RMSEA divides by N - 1.

The bivariate normal distribution function is computed exactly through Owen's T function
(``scipy.special.owens_t``), so the polychoric correlations are converged to ~1e-12.

>>> import numpy as np, pandas as pd
>>> rng = np.random.default_rng(7)
>>> z = rng.normal(size=(500, 1)) @ [[0.8, 0.7, 0.6, 0.7]] + rng.normal(scale=0.6, size=(500, 4))
>>> data = pd.DataFrame(np.digitize(z, [-0.5, 0.3, 1.0]) + 1, columns=list("abcd"))
>>> fit = cfa_ordinal(data, {"f": list("abcd")})
>>> fit.converged, int(fit.fit["df"])
(True, 2)
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from scipy import optimize, special, stats

from alliance.research.psychometrics.cfa import (
    CFAError,
    HeywoodWarning,
    ModelSpec,
    _build_structure,
    _check_identified,
    _check_spec,
    _derivatives,
    _heywood,
    _incremental,
    _Moments,
    _param_table,
    _rmsea,
    _start,
    _Structure,
)

Array = NDArray[np.float64]
IntArray = NDArray[np.intp]

__all__ = [
    "OrdinalCFAResult",
    "OrdinalError",
    "PolychoricResult",
    "cfa_ordinal",
    "polychoric",
]

_RHO_BOUND = 0.999  # lavaan's bound on a polychoric correlation
_HUGE = 1e100  # the score where the likelihood is -∞ (brentq needs finite values)
_ZERO_ADD_2X2 = 0.5  # lavaan's zero.add[1]: moved into the one empty cell of a 2x2 table


class OrdinalError(CFAError):
    """Ordinal data that cannot give thresholds, polychorics or a WLSMV fit; says why."""


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class _Coded:
    """Items as category codes 0..K-1 (K the number of observed categories)."""

    items: tuple[str, ...]
    codes: IntArray  # (n, p)
    levels: tuple[tuple[float, ...], ...]
    n_dropped: int


def _code_items(data: pd.DataFrame, items: Sequence[str]) -> _Coded:
    """Listwise-complete integer answers as codes; errors name the offending item."""
    missing = [v for v in items if v not in data.columns]
    if missing:
        raise OrdinalError(f"column(s) not in the data: {', '.join(missing)}")
    if len(items) < 2:
        raise OrdinalError("polychoric correlations need at least two items")
    try:
        block = data.loc[:, list(items)].apply(pd.to_numeric).to_numpy(dtype=float)
    except (TypeError, ValueError) as exc:
        raise OrdinalError(f"ordinal items must hold integer answers: {exc}") from exc
    keep = np.isfinite(block).all(axis=1)
    block = block[keep]
    fractional = [v for v, col in zip(items, block.T) if np.any(col != np.round(col))]
    if fractional:
        raise OrdinalError(
            f"non-integer answers in {', '.join(fractional)}: ordinal items take whole "
            "numbers (category codes); cut continuous columns into categories first"
        )
    levels, codes = [], np.empty(block.shape, dtype=np.intp)
    for j, col in enumerate(block.T):
        values, codes[:, j] = np.unique(col, return_inverse=True)
        if len(values) < 2:
            seen = "no answers" if len(values) == 0 else f"only the answer {values[0]:g}"
            raise OrdinalError(
                f"item {items[j]!r} has {seen}: one observed category gives no threshold "
                "and no correlation; drop the item"
            )
        levels.append(tuple(float(v) for v in values))
    return _Coded(tuple(items), codes, tuple(levels), int((~keep).sum()))


def _check_rows(coded: _Coded) -> None:
    n, p = coded.codes.shape
    n_stats = sum(len(lv) - 1 for lv in coded.levels) + p * (p - 1) // 2
    if n <= n_stats:
        raise OrdinalError(
            f"too few complete rows: {n}, need more than the {n_stats} thresholds and "
            "correlations, else their asymptotic covariance (estimated from the rows' "
            "scores) is singular"
        )


# --------------------------------------------------------------------------- normal kernels


def _bvn_cdf(h: Array, k: Array, rho: float) -> Array:
    """Φ₂(h, k; ρ) for finite h, k by Owen's (1956) T-function identity, exact to ~1e-15."""
    s = math.sqrt((1 - rho) * (1 + rho))
    with np.errstate(divide="ignore", invalid="ignore"):
        a_h = (k - rho * h) / (h * s)
        a_k = (h - rho * k) / (k * s)
        out = 0.5 * (special.ndtr(h) + special.ndtr(k))
        out = out - special.owens_t(h, a_h) - special.owens_t(k, a_k)
    # Owen's correction: subtract 1/2 where h and k have opposite signs
    opposite = (h * k < 0) | ((h * k == 0) & (h + k < 0))
    out = np.where(opposite, out - 0.5, out)
    both_zero = (h == 0) & (k == 0)
    return np.where(both_zero, 0.25 + math.asin(rho) / (2 * math.pi), out)


def _bvn_pdf(h: Array, k: Array, rho: float) -> Array:
    one_m = (1 - rho) * (1 + rho)
    q = (h * h - 2 * rho * h * k + k * k) / one_m
    return np.asarray(np.exp(-0.5 * q) / (2 * math.pi * math.sqrt(one_m)))


@dataclass(frozen=True)
class _Pair:
    """Cell probabilities of a two-way table and their derivatives at (τ₁, τ₂, ρ)."""

    prob: Array  # (K1, K2)
    d_rho: Array  # dP/dρ
    d_t1: Array  # (K1, K2, K1-1): dP/dτ₁
    d_t2: Array  # (K1, K2, K2-1): dP/dτ₂


def _edges(t: Array) -> Array:
    return np.concatenate(([-np.inf], t, [np.inf]))


def _cell_probs(t1: Array, t2: Array, rho: float) -> Array:
    """P(cell) as double differences of Φ₂ on the threshold grid (edges at ±∞)."""
    grid = np.zeros((len(t1) + 2, len(t2) + 2))
    h, k = np.meshgrid(t1, t2, indexing="ij")
    grid[1:-1, 1:-1] = _bvn_cdf(h, k, rho)
    grid[-1, 1:-1], grid[1:-1, -1], grid[-1, -1] = special.ndtr(t2), special.ndtr(t1), 1.0
    return np.asarray(np.diff(np.diff(grid, axis=0), axis=1))


def _rho_derivative(t1: Array, t2: Array, rho: float) -> Array:
    """dP(cell)/dρ: Plackett's identity dΦ₂/dρ = φ₂, zero on the infinite edges."""
    grid = np.zeros((len(t1) + 2, len(t2) + 2))
    h, k = np.meshgrid(t1, t2, indexing="ij")
    grid[1:-1, 1:-1] = _bvn_pdf(h, k, rho)
    return np.asarray(np.diff(np.diff(grid, axis=0), axis=1))


def _threshold_derivative(t_own: Array, t_other: Array, rho: float) -> Array:
    """dP(cell)/dτ_k of the row variable, shape (K_own, K_other, K_own - 1).

    dΦ₂(h, k)/dh = φ(h) Φ((k - ρh)/√(1-ρ²)); τ_k bounds row k from above, row k+1 below.
    """
    s = math.sqrt((1 - rho) * (1 + rho))
    cond = special.ndtr((_edges(t_other)[None, :] - rho * t_own[:, None]) / s)
    strip = stats.norm.pdf(t_own)[:, None] * np.diff(cond, axis=1)  # (K_own-1, K_other)
    n_cat = len(t_own) + 1
    sign = np.eye(n_cat, n_cat - 1) - np.eye(n_cat, n_cat - 1, k=-1)  # +1 at a=k, -1 at a=k+1
    return np.asarray(np.einsum("ak,kb->abk", sign, strip))


def _pair(t1: Array, t2: Array, rho: float) -> _Pair:
    d_t2 = _threshold_derivative(t2, t1, rho).transpose(1, 0, 2)
    return _Pair(
        _cell_probs(t1, t2, rho),
        _rho_derivative(t1, t2, rho),
        _threshold_derivative(t1, t2, rho),
        d_t2,
    )


# --------------------------------------------------------------------------- step 1 and 2


def _thresholds(codes: IntArray, n_cat: int) -> Array:
    cum = np.cumsum(np.bincount(codes, minlength=n_cat))[:-1] / len(codes)
    return np.asarray(special.ndtri(cum))


def _table(c1: IntArray, c2: IntArray, k1: int, k2: int) -> Array:
    return np.bincount(c1 * k2 + c2, minlength=k1 * k2).reshape(k1, k2).astype(float)


def _fill_2x2(freq: Array) -> Array:
    """lavaan's zero.add for a 2x2 table with one empty cell: add 0.5 to that cell and its
    diagonal partner, take it from the other two, so the margins (thresholds) stay."""
    diagonal = freq[0, 0] == 0 or freq[1, 1] == 0
    step = _ZERO_ADD_2X2 if diagonal else -_ZERO_ADD_2X2
    return freq + step * np.array([[1.0, -1.0], [-1.0, 1.0]])


def _pair_score(freq: Array, t1: Array, t2: Array, rho: float) -> float:
    """d/dρ of Σ n log P: the estimating equation of the two-step polychoric."""
    prob, d_rho = _cell_probs(t1, t2, rho), _rho_derivative(t1, t2, rho)
    used = freq > 0  # empty cells add nothing to the likelihood
    if (prob[used] <= 0).any():
        # near ρ = ±1 an answered cell's probability underflows: the likelihood falls to
        # -∞ towards that bound, so the root lies inside; a huge finite slope says so
        return -math.copysign(_HUGE, rho)
    return float((freq[used] * d_rho[used] / prob[used]).sum())


def _polychoric_pair(freq: Array, t1: Array, t2: Array, names: tuple[str, str]) -> float:
    """The two-step ML polychoric correlation of one table, as lavaan's bounded search."""
    if freq.shape == (2, 2):
        empty = int((freq == 0).sum())
        if empty >= 2:
            raise OrdinalError(
                f"polychoric correlation of {names[0]} and {names[1]} is undefined: their 2x2 "
                "table has two empty cells (perfect association, ρ = ±1)"
            )
        if empty == 1:
            freq = _fill_2x2(freq)
        if freq[0, 0] * freq[1, 1] == freq[0, 1] * freq[1, 0]:
            return 0.0  # independence exactly; the root finder would only approach it
    lo, hi = _pair_score(freq, t1, t2, -_RHO_BOUND), _pair_score(freq, t1, t2, _RHO_BOUND)
    if lo <= 0 or hi >= 0:
        edge = "+1" if hi >= 0 else "-1"
        raise OrdinalError(
            f"polychoric correlation of {names[0]} and {names[1]} is undefined: the likelihood "
            f"of their table keeps rising towards ρ = {edge} (empty cells put all answers on "
            "one ordered path); merge sparse categories"
        )
    return float(
        optimize.brentq(lambda r: _pair_score(freq, t1, t2, r), -_RHO_BOUND, _RHO_BOUND, xtol=1e-14)
    )


# --------------------------------------------------------------------------- step 3 (Γ)


def _uni_scores(codes: IntArray, t: Array) -> Array:
    """Casewise d log P(y)/dτ of one item, (n, K-1)."""
    n_cat = len(t) + 1
    p = np.diff(special.ndtr(_edges(t)))
    sign = np.eye(n_cat, n_cat - 1) - np.eye(n_cat, n_cat - 1, k=-1)
    per_cat = sign * stats.norm.pdf(t)[None, :] / p[:, None]
    return np.asarray(per_cat[codes])


def _pair_index(p: int) -> list[tuple[int, int]]:
    """Correlations in lavaan's order: lower triangle by columns, (i, j) with i > j."""
    return [(i, j) for j in range(p) for i in range(j + 1, p)]


def _correlation_scores(
    codes: IntArray, th: list[Array], rho: Array, starts: IntArray
) -> tuple[Array, Array]:
    """Casewise d log P/dρ of every pair (n, pairs), and A21: their cross products with the
    pair's casewise d log P/dτ (pairs, thresholds)."""
    pairs = _pair_index(codes.shape[1])
    sc_cor = np.empty((len(codes), len(pairs)))
    a21 = np.zeros((len(pairs), starts[-1]))
    for r, (i, j) in enumerate(pairs):
        # the pair's first variable is j (the column), as in lavaan's bivariate call
        pr = _pair(th[j], th[i], float(rho[i, j]))
        cj, ci = codes[:, j], codes[:, i]
        prob = pr.prob[cj, ci]
        sc_cor[:, r] = pr.d_rho[cj, ci] / prob
        a21[r, starts[j] : starts[j + 1]] = sc_cor[:, r] @ (pr.d_t1[cj, ci] / prob[:, None])
        a21[r, starts[i] : starts[i + 1]] = sc_cor[:, r] @ (pr.d_t2[cj, ci] / prob[:, None])
    return sc_cor, a21


def _bread_inverse(inner: Array, a21: Array, starts: IntArray) -> Array:
    """B⁻¹ of the block lower-triangular B = [[A11, 0], [A21, A22]]."""
    n_th = int(starts[-1])
    a11 = np.zeros((n_th, n_th))
    for lo, hi in itertools.pairwise(starts.tolist()):
        a11[lo:hi, lo:hi] = inner[lo:hi, lo:hi]  # thresholds of different items: no A11 term
    a11_inv = np.linalg.inv(a11)
    a22_inv = 1.0 / np.diag(inner)[n_th:]
    return np.block(
        [
            [a11_inv, np.zeros((n_th, len(a22_inv)))],
            [-(a22_inv[:, None] * a21) @ a11_inv, np.diag(a22_inv)],
        ]
    )


def _gamma(coded: _Coded, th: list[Array], rho: Array) -> Array:
    """N × the sandwich B⁻¹ (S'S) B⁻ᵀ of the stacked stage-wise casewise scores S
    (Muthén 1984).

    B is block lower-triangular: A11 the per-item blocks of the threshold scores' cross
    products, A22 the diagonal of the correlation scores' ones, A21 the cross products of
    correlation scores with the bivariate threshold scores (outer products replace the
    Hessians, as lavaan does), so B⁻¹ is explicit.
    """
    codes = coded.codes
    starts = np.concatenate(([0], np.cumsum([len(t) for t in th]))).astype(np.intp)
    sc_th = np.hstack([_uni_scores(codes[:, j], t) for j, t in enumerate(th)])
    sc_cor, a21 = _correlation_scores(codes, th, rho, starts)
    scores = np.hstack([sc_th, sc_cor])
    inner = scores.T @ scores
    b_inv = _bread_inverse(inner, a21, starts)
    return np.asarray(len(codes) * b_inv @ inner @ b_inv.T)


# --------------------------------------------------------------------------- polychoric


@dataclass(frozen=True)
class PolychoricResult:
    """Thresholds, polychoric correlations and their asymptotic covariance.

    ``thresholds`` is indexed as lavaan names them (``"item|t1"``); ``correlation`` is the
    polychoric matrix; ``nacov`` is N times the asymptotic covariance of (thresholds,
    correlations), ordered as lavaan's ``lavInspect(fit, "gamma")``: thresholds item by item,
    then the correlations of the lower triangle column by column (``"a~~b"``).
    ``empty_cells`` lists the item pairs whose two-way table has an empty cell.
    """

    thresholds: pd.Series
    correlation: pd.DataFrame
    nacov: pd.DataFrame
    n: int
    n_dropped: int
    levels: dict[str, tuple[float, ...]]
    empty_cells: list[tuple[str, str]]


def _estimate(coded: _Coded) -> PolychoricResult:
    codes, items, (_, p) = coded.codes, coded.items, coded.codes.shape
    k = [len(lv) for lv in coded.levels]
    th = [_thresholds(codes[:, j], k[j]) for j in range(p)]
    rho, empty = np.eye(p), []
    for i, j in _pair_index(p):
        freq = _table(codes[:, j], codes[:, i], k[j], k[i])
        if (freq == 0).any():
            empty.append((items[j], items[i]))
        rho[i, j] = rho[j, i] = _polychoric_pair(freq, th[j], th[i], (items[j], items[i]))
    th_names = [f"{v}|t{m + 1}" for v, t in zip(items, th) for m in range(len(t))]
    names = th_names + [f"{items[j]}~~{items[i]}" for i, j in _pair_index(p)]
    gamma = _gamma(coded, th, rho)
    return PolychoricResult(
        thresholds=pd.Series(np.concatenate(th), index=th_names),
        correlation=pd.DataFrame(rho, index=list(items), columns=list(items)),
        nacov=pd.DataFrame(gamma, index=names, columns=names),
        n=len(codes),
        n_dropped=coded.n_dropped,
        levels=dict(zip(items, coded.levels)),
        empty_cells=empty,
    )


def polychoric(data: pd.DataFrame, items: Sequence[str] | None = None) -> PolychoricResult:
    """Two-step polychoric correlations of ordinal items, as lavaan's ``lavCor(ordered=)``.

    Thresholds come from each item's marginal proportions; each correlation maximises the
    bivariate-normal likelihood of its two-way table with those thresholds fixed. Rows with
    a missing answer are dropped (listwise). Categories are the distinct answers observed.
    Raises :class:`OrdinalError` for non-integer answers, an item with one category, a
    correlation at ±1 forced by empty cells, or too few rows.

    >>> import pandas as pd
    >>> d = pd.DataFrame({"a": [1, 1, 2, 2, 3, 3, 1, 2, 3, 3] * 3,
    ...                   "b": [1, 2, 2, 2, 3, 2, 1, 1, 3, 3] * 3})
    >>> res = polychoric(d)
    >>> round(float(res.correlation.loc["a", "b"]), 4), res.thresholds.round(4).tolist()
    (0.9008, [-0.5244, 0.2533, -0.5244, 0.5244])
    """
    coded = _code_items(data, list(data.columns if items is None else items))
    _check_rows(coded)
    return _estimate(coded)


# --------------------------------------------------------------------------- the model


def _delta_structure(structure: _Structure, theta: Array | None = None) -> _Structure:
    """The structure with residual variances not free (delta parameterisation); with
    ``theta``, they carry those values (1 - explained variance) for reporting."""
    pars = tuple(
        replace(q, free=False, value=0.0 if theta is None else float(theta[q.row]))
        if q.mat == "T" and q.row == q.col
        else q
        for q in structure.pars
    )
    return _Structure(structure.observed, structure.factors, pars)


def _implied(structure: _Structure, x: Array) -> Array:
    """Model correlations of the latent responses (off-diagonal, lavaan's order)."""
    sigma = structure.matrices(x).sigma
    i, j = np.array(_pair_index(len(structure.observed))).T
    return np.asarray(sigma[i, j])


def _jacobian(structure: _Structure, x: Array) -> Array:
    """d(implied correlations)/dx, (correlations, free parameters)."""
    d_sigma, _ = _derivatives(structure.matrices(x), [q for q, _ in structure.local(0)])
    i, j = np.array(_pair_index(len(structure.observed))).T
    return np.asarray(d_sigma[:, i, j].T)


def _fit_dwls(structure: _Structure, x0: Array, r: Array, w: Array) -> tuple[Array, bool, int]:
    """Minimise Σ w (r - σ(x))² by Levenberg-Marquardt (a least-squares problem)."""
    root_w = np.sqrt(w)
    res = optimize.least_squares(
        lambda x: root_w * (r - _implied(structure, x)),
        x0,
        jac=lambda x: -root_w[:, None] * _jacobian(structure, x),
        method="lm",
        ftol=1e-15,
        xtol=1e-15,
        gtol=1e-15,
        max_nfev=2000,
    )
    x = np.asarray(res.x, dtype=float)
    grad = _jacobian(structure, x).T @ (w * (r - _implied(structure, x)))
    return x, bool(np.abs(grad).max(initial=0.0) < 1e-8), int(res.nfev)


@dataclass(frozen=True)
class _Sandwich:
    vcov: Array  # over (thresholds, x)
    trace1: float  # tr(UΓ)
    trace2: float  # tr((UΓ)²)


def _sandwich(delta: Array, w: Array, gamma: Array, n: int) -> _Sandwich:
    """Robust covariance (Δ'WΔ)⁻¹Δ'WΓWΔ(Δ'WΔ)⁻¹/(N - 1) and the traces of UΓ,
    U = W - WΔ(Δ'WΔ)⁻¹Δ'W (Satorra 1992), for lavaan's ``robust.sem`` and scaled test.

    N - 1, not N: lavaan scales the (D)WLS fit function by (N - 1)/N, which carries into
    its information matrix (the traces do not change: U and Γ scale inversely)."""
    wd = w[:, None] * delta
    bread = np.linalg.inv(delta.T @ wd)
    meat = wd.T @ gamma @ wd
    u_gamma = w[:, None] * gamma - wd @ bread @ (wd.T @ gamma)
    return _Sandwich(
        bread @ meat @ bread / (n - 1),
        float(np.trace(u_gamma)),
        float(np.einsum("ij,ji->", u_gamma, u_gamma)),
    )


def _scaled_shifted(chisq: float, df: float, trace1: float, trace2: float) -> tuple[float, float]:
    """Asparouhov & Muthén's (2010) T3: a·T + (df - a·tr(UΓ)), a = √(df / tr((UΓ)²))."""
    if df == 0:  # a saturated model: nothing to scale (lavaan: the same 0, factor NA)
        return chisq, math.nan
    a = math.sqrt(df / trace2)
    shift = df - a * trace1
    return a * chisq + shift, 1 / a


# --------------------------------------------------------------------------- result


@dataclass(frozen=True)
class OrdinalCFAResult:
    """A WLSMV fit in lavaan's vocabulary.

    ``params`` has ``parameterEstimates`` columns lhs, op, rhs, est, se, z, p (robust SEs;
    thresholds as ``item | t1``; the residual variances ``1 - explained`` are not free, so
    their se is 0, as in lavaan) plus ``std_all`` and its delta-method ``std_se`` from
    ``standardizedSolution``. ``fit`` uses ``fitMeasures`` names (chisq, chisq.scaled,
    cfi.scaled, rmsea.scaled, ...). ``polychoric`` holds the sample statistics.
    """

    params: pd.DataFrame
    fit: dict[str, float]
    polychoric: PolychoricResult
    converged: bool
    heywood: list[str]
    notes: list[str]
    n: int
    n_dropped: int
    iterations: int
    implied_cor: pd.DataFrame
    _structure: _Structure = field(repr=False)
    _x: Array = field(repr=False)


def _std_all(structure: _Structure, x: Array) -> Array:
    """std.all of every row of the table (thresholds are already standardised)."""
    m = structure.matrices(x)
    theta = 1 - np.einsum("ij,jk,ik->i", m.lam, m.phi, m.lam)
    full = _delta_structure(structure, theta)
    table = _param_table(full, x, np.zeros((len(x), len(x))))
    return np.asarray(table["std_all"].to_numpy(dtype=float))


def _std_se(structure: _Structure, x: Array, vcov_x: Array) -> Array:
    """Delta-method SEs of std.all, by central differences (θ follows x)."""
    step = 1e-6 * np.maximum(1.0, np.abs(x))
    jac = np.column_stack(
        [
            (_std_all(structure, x + e) - _std_all(structure, x - e)) / (2 * h)
            for e, h in zip(np.diag(step), step)
        ]
    )
    return np.asarray(np.sqrt(np.clip(np.einsum("ra,ab,rb->r", jac, vcov_x, jac), 0, None)))


def _threshold_rows(poly: PolychoricResult, se: Array) -> pd.DataFrame:
    names = poly.thresholds.index
    est = poly.thresholds.to_numpy(dtype=float)
    z = est / se
    return pd.DataFrame(
        {
            "lhs": [s.split("|")[0] for s in names],
            "op": "|",
            "rhs": [s.split("|")[1] for s in names],
            "est": est,
            "se": se,
            "z": z,
            "p": 2 * stats.norm.sf(np.abs(z)),
            "std_all": est,  # Σ* has unit diagonal: thresholds are already standardised
        }
    )


def _params(structure: _Structure, x: Array, poly: PolychoricResult, vcov: Array) -> pd.DataFrame:
    """lavaan's order: loadings, thresholds, residual variances, factor (co)variances."""
    n_th = len(poly.thresholds)
    vcov_x = vcov[n_th:, n_th:]
    m = structure.matrices(x)
    theta = 1 - np.einsum("ij,jk,ik->i", m.lam, m.phi, m.lam)
    table = _param_table(_delta_structure(structure, theta), x, vcov_x)
    table["std_se"] = _std_se(structure, x, vcov_x)
    ths = _threshold_rows(poly, np.sqrt(np.diag(vcov)[:n_th]))
    ths["std_se"] = ths["se"]
    loadings = table["op"] == "=~"
    out = pd.concat([table[loadings], ths, table[~loadings]], ignore_index=True)
    return out


def _fit_measures(
    chisq: float, df: float, n: int, sw: _Sandwich, base: tuple[float, float, float]
) -> dict[str, float]:
    """lavaan's WLSMV fitMeasures: N - 1 in the RMSEA (lavaan's choice for WLS),
    CFI/TLI against the independence model of the correlations, both unscaled and
    on the scaled-shifted statistics."""
    base_chisq, base_scaled, base_df = base
    scaled, factor = _scaled_shifted(chisq, df, sw.trace1, sw.trace2)
    out = {
        "chisq": chisq,
        "df": df,
        "pvalue": float(stats.chi2.sf(chisq, df)) if df > 0 else math.nan,
        "chisq.scaled": scaled,
        "df.scaled": df,
        "pvalue.scaled": float(stats.chi2.sf(scaled, df)) if df > 0 else math.nan,
        "chisq.scaling.factor": factor,
        "chisq.shift.parameter": df - sw.trace1 / factor,
        "baseline.chisq": base_chisq,
        "baseline.df": base_df,
        "baseline.chisq.scaled": base_scaled,
        "baseline.df.scaled": base_df,
        "baseline.pvalue": float(stats.chi2.sf(base_chisq, base_df)),
        "baseline.pvalue.scaled": float(stats.chi2.sf(base_scaled, base_df)),
        **_incremental(chisq, df, base_chisq, base_df),
    }
    scaled_inc = _incremental(scaled, df, base_scaled, base_df)
    out["cfi.scaled"], out["tli.scaled"] = scaled_inc["cfi"], scaled_inc["tli"]
    rmsea, rmsea_scaled = _rmsea(chisq, df, n - 1, 1), _rmsea(scaled, df, n - 1, 1)
    for key in ("rmsea", "rmsea.ci.lower", "rmsea.ci.upper"):
        out[key], out[f"{key}.scaled"] = rmsea[key], rmsea_scaled[key]
    out["rmsea.pvalue"] = rmsea["rmsea.pvalue"]
    out["rmsea.pvalue.scaled"] = rmsea_scaled["rmsea.pvalue"]
    return out


def _baseline(poly: PolychoricResult, w: Array, gamma: Array) -> tuple[float, float, float]:
    """Independence model (thresholds free, correlations 0): its chisq, scaled, df.

    Its U keeps only the correlation block of W, so tr(UΓ) is the number of correlations.
    """
    n_th, n = len(poly.thresholds), poly.n
    r = _lower(poly.correlation.to_numpy())
    w_r, g_rr = w[n_th:], gamma[n_th:, n_th:]
    chisq = (n - 1) * float(w_r @ r**2)  # lavaan: (N - 1) F for (D)WLS
    ug = w_r[:, None] * g_rr
    df = float(len(r))
    scaled, _ = _scaled_shifted(chisq, df, float(np.trace(ug)), float(np.sum(ug * ug.T)))
    return chisq, scaled, df


def _lower(mat: Array) -> Array:
    i, j = np.array(_pair_index(mat.shape[0])).T
    return np.asarray(mat[i, j])


def _srmr(r: Array, implied: Array) -> float:
    """lavaan's SRMR for correlation structures: root mean square of the correlation
    residuals over the p(p+1)/2 elements (the diagonal residuals are 0)."""
    p = (1 + math.isqrt(1 + 8 * len(r))) // 2
    return math.sqrt(float(((r - implied) ** 2).sum()) / (p * (p + 1) / 2))


# --------------------------------------------------------------------------- entry point


def cfa_ordinal(
    data: pd.DataFrame,
    model: ModelSpec,
    *,
    std_lv: bool = False,
    orthogonal: bool = False,
    bifactor: str | None = None,
    residual_covariances: Sequence[tuple[str, str]] = (),
) -> OrdinalCFAResult:
    """Fit a CFA to ordinal items by WLSMV, as lavaan's ``cfa(ordered=, estimator="WLSMV")``.

    The model spec and identification options are those of :func:`.cfa.cfa` (marker loading
    fixed to 1 by default, ``std_lv``, ``orthogonal``, ``bifactor="g"``). Estimates are DWLS
    on the polychoric correlations with weights ``1 / diag(Γ)``, delta parameterisation
    (latent response variances 1), robust standard errors, and the scaled-shifted chi-square
    in ``fit["chisq.scaled"]``. Rows with a missing answer are dropped.

    >>> import numpy as np, pandas as pd
    >>> rng = np.random.default_rng(3)
    >>> z = rng.normal(size=(800, 1)) @ [[0.8] * 3] + rng.normal(scale=0.6, size=(800, 3))
    >>> d = pd.DataFrame(np.digitize(z, [-1.0, 0.0, 1.5]) + 1, columns=["a", "b", "c"])
    >>> fit = cfa_ordinal(d, {"f": ["a", "b", "c"]}, std_lv=True)
    >>> fit.params.query("op == '=~'")["est"].round(2).tolist()  # population 0.8 / 1 = 0.8
    [0.81, 0.78, 0.81]
    """
    spec = _check_spec(model, bifactor)
    orthogonal = orthogonal or bifactor is not None
    _check_identified(spec, orthogonal)
    observed = tuple(dict.fromkeys(i for items in spec.values() for i in items))
    coded = _code_items(data, observed)
    _check_rows(coded)
    poly = _estimate(coded)
    structure = _delta_structure(
        _build_structure(
            spec,
            std_lv=std_lv,
            orthogonal=orthogonal,
            residual_covariances=residual_covariances,
        )
    )
    n_cor = len(observed) * (len(observed) - 1) // 2
    if structure.n_free > n_cor:
        raise OrdinalError(
            f"model not identified: {structure.n_free} free parameters but only {n_cor} "
            "polychoric correlations"
        )
    return _fit(structure, spec, poly, std_lv)


def _fit(
    structure: _Structure, spec: dict[str, list[str]], poly: PolychoricResult, std_lv: bool
) -> OrdinalCFAResult:
    gamma = poly.nacov.to_numpy()
    w = 1 / np.diag(gamma)
    n_th, n = len(poly.thresholds), poly.n
    rho = poly.correlation.to_numpy()
    r = _lower(rho)
    x0 = _start(structure, spec, [_Moments(rho, np.zeros(len(rho)), n)], std_lv)
    x, converged, iterations = _fit_dwls(structure, x0, r, w[n_th:])
    jac = _jacobian(structure, x)
    delta = np.block([[np.eye(n_th), np.zeros((n_th, len(x)))], [np.zeros((len(r), n_th)), jac]])
    if np.linalg.matrix_rank(jac.T @ (w[n_th:, None] * jac)) < len(x):
        raise OrdinalError(
            "model not identified: the weighted information is singular at the estimate "
            "(a parameter is not determined by the correlations)"
        )
    sw = _sandwich(delta, w, gamma, n)
    implied = _implied(structure, x)
    chisq = (n - 1) * float(w[n_th:] @ (r - implied) ** 2)  # lavaan: (N - 1) F for (D)WLS
    df = float(len(r) - len(x))
    fit = _fit_measures(chisq, df, n, sw, _baseline(poly, w, gamma))
    fit = {"npar": float(n_th + len(x)), **fit, "srmr": _srmr(r, implied)}
    fit["fmin"], fit["ntotal"] = chisq / (2 * n), float(n)
    params = _params(structure, x, poly, sw.vcov)
    return _result(structure, x, poly, params, fit, converged, iterations)


def _result(
    structure: _Structure,
    x: Array,
    poly: PolychoricResult,
    params: pd.DataFrame,
    fit: dict[str, float],
    converged: bool,
    iterations: int,
) -> OrdinalCFAResult:
    names, notes = _heywood(params, structure.factors, [])
    for note in notes:
        warnings.warn(note, HeywoodWarning, stacklevel=3)
    if not converged:
        notes.insert(0, "the optimiser did not converge; estimates are not trustworthy")
        warnings.warn(notes[0], RuntimeWarning, stacklevel=3)
    ov = list(structure.observed)
    implied = structure.matrices(x).sigma
    np.fill_diagonal(implied, 1.0)
    return OrdinalCFAResult(
        params=params,
        fit=fit,
        polychoric=poly,
        converged=converged,
        heywood=names,
        notes=notes,
        n=poly.n,
        n_dropped=poly.n_dropped,
        iterations=iterations,
        implied_cor=pd.DataFrame(implied, index=ov, columns=ov),
        _structure=structure,
        _x=x,
    )
