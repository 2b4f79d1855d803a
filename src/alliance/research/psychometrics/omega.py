"""Exploratory factor analysis and McDonald's omega as ``psych::omega`` computes them.

What: :func:`efa` extracts factors from a correlation matrix by minimum residual ("minres":
the uniquenesses that minimise the sum of squared off-diagonal residuals, loadings from the
leading eigenvectors of the reduced matrix) and rotates them (GPArotation's oblimin with
gamma 0 by the gradient projection algorithm, stats' varimax, or none); :func:`omega_sl`
applies the Schmid-Leiman transformation to a three- (or more) factor oblimin solution, as
``psych::omega(x, nfactors)`` (psych 2.2.9) does with its defaults, and returns omega
hierarchical, omega total, the per-group omegas and the g loadings.

How psych does it, step by step (each step is reproduced here and checked against R):

1. ``r = cor(x)``; start uniquenesses ``1 - smc(r)``; minimise the off-diagonal residual sum
   of squares with R's L-BFGS-B (bounds 0.005..1, ``parscale = 0.01``, psych's gradient
   ``diag(LL' + Psi - R)``, R's default stopping rule ``factr = 1e7``). psych does not run the
   optimiser to convergence of the uniquenesses: it stops after a handful of steps about
   1e-5 from the exact minimum (communalities ~7e-6 off on Holzinger-Swineford), so we run
   scipy's L-BFGS-B (the same Byrd-Lu-Nocedal-Zhu algorithm) with the same scaling, memory (5)
   and stopping rule, and land on the same point (agreement ~1e-10 on the data checked).
2. Columns are signed to positive sums; varimax (``stats::varimax``, Kaiser normalised,
   stopping at a relative gain below 1e-5); columns signed and sorted by their sums of
   squares, as ``psych::fa`` does.
3. ``GPArotation::oblimin`` of those varimax loadings (start at the identity, stop when the
   projected gradient's norm falls below 1e-5): pattern loadings and factor correlations.
   ``omega`` keeps this order. ``fa(rotate = "oblimin")`` (what :func:`efa` returns) instead
   rotates the unrotated loadings, then signs the columns to positive sums and sorts them by
   ``diag(Phi L'L)``; the two oblimin solutions differ slightly (different stopping points).
4. A one-factor minres analysis of the factor correlations gives the general factor's
   loadings on the group factors (for two factors both are ``sqrt(phi12)``, psych's
   ``option = "equal"``); g loadings = pattern @ those; group loadings = pattern times
   ``sqrt(1 - gload^2)``; ``h2`` = the minres communality, ``u2 = 1 - h2``.
5. Items with a negative g loading are reversed (``flip = TRUE``); with ``V = sum(r)``:
   omega_h = (sum g)^2 / V, omega_t = (V - sum u2) / V, and for each group factor (the items
   whose largest absolute group loading is on it) the same ratios on its block of ``r``.

Why our own: no well-kept Python package reproduces psych's omega. factor_analyzer (0.5.1)
has no Schmid-Leiman omega, and its minres differs from psych's in the details that matter at
1e-6: it minimises the residual including the diagonal, with numerical gradients and scipy's
default L-BFGS-B settings (no parscale, memory 10), and sorts factors by variance ignoring
Phi; its oblimin is a port of GPArotation's algorithm but starts from the unrotated solution,
whereas ``omega`` starts from the varimax one. On this project's stack it does not run at all:
on Holzinger-Swineford it raised ``ValueError('assignment destination is read-only')``
(``python_peers_results.json``, key ``factor_analyzer_cfa_HS``; pandas 3 / scikit-learn >=
1.6). The CFA-based omegas are in :mod:`alliance.research.psychometrics.cfa`.

Missing answers: rows with any missing item are left out (psych uses pairwise correlations;
the two agree when nothing is missing).

>>> import numpy as np
>>> lam = np.array([[0.7, 0, 0], [0.6, 0, 0], [0.5, 0, 0], [0, 0.7, 0], [0, 0.6, 0],
...                 [0, 0.5, 0], [0, 0, 0.7], [0, 0, 0.6], [0, 0, 0.5]])
>>> phi = np.array([[1, 0.5, 0.4], [0.5, 1, 0.3], [0.4, 0.3, 1]])
>>> r = lam @ phi @ lam.T
>>> np.fill_diagonal(r, 1.0)
>>> round(omega_sl(r).omega_t, 3)  # psych::omega(r, 3): 0.7542679554
0.754
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray
from scipy import optimize

from alliance.research.psychometrics.reliability import PsychometricsError, numeric_block

FloatArray = NDArray[np.float64]
Rotation = Literal["oblimin", "varimax", "none"]

#: R's L-BFGS-B defaults as psych calls optim: factr 1e7 (relative gain), lmm 5, maxit 100
_FACTR = 1e7
_PARSCALE = 0.01
_PSI_LOWER = 0.005
#: GPArotation's and stats::varimax's stopping rules and iteration caps
_GPA_EPS = 1e-5
_GPA_MAXIT = 1000
_VARIMAX_EPS = 1e-5


@dataclass(frozen=True)
class EFAResult:
    """Minres factor solution: ``loadings`` (pattern, items x factors), factor correlations
    ``phi`` (identity unless oblique), ``communalities`` and ``uniquenesses`` (1 - h2)."""

    loadings: pd.DataFrame
    phi: pd.DataFrame
    communalities: pd.Series
    uniquenesses: pd.Series
    rotate: str
    converged: bool


@dataclass(frozen=True)
class OmegaResult:
    """Schmid-Leiman omegas as ``psych::omega``: ``omega_h`` (general factor), ``omega_t``
    (all factors), ``omega_lim`` (omega_h / omega_t), ``alpha``, ``ecv`` (general share of the
    common variance); ``groups`` has psych's ``omega.group`` columns (total, general, group)
    for g and each group factor; ``loadings`` its ``schmid$sl`` (g, F1*.., h2, u2, p2);
    ``key`` the item signs used (-1 = reversed because its g loading was negative)."""

    omega_h: float
    omega_t: float
    omega_lim: float
    alpha: float
    ecv: float
    groups: pd.DataFrame
    loadings: pd.DataFrame
    key: pd.Series
    n_factors: int
    n: int | None
    n_dropped: int


# ---------------------------------------------------------------- input


def _as_correlation(
    data_or_corr: pd.DataFrame | ArrayLike, items: Sequence[str] | None
) -> tuple[FloatArray, tuple[str, ...], int | None, int]:
    """Correlation matrix, item names, rows used (None for a matrix input), rows dropped."""
    if isinstance(data_or_corr, pd.DataFrame):
        frame = data_or_corr
        square = frame.shape[0] == frame.shape[1] and list(frame.index) == list(frame.columns)
        if square and items is None and _is_correlation(frame.to_numpy(dtype=float)):
            return frame.to_numpy(dtype=np.float64), tuple(map(str, frame.columns)), None, 0
        block = numeric_block(frame, items, min_items=3, min_rows=4)
        corr = np.asarray(np.corrcoef(block.values, rowvar=False), dtype=np.float64)
        return corr, block.columns, int(block.values.shape[0]), block.n_dropped
    arr = np.asarray(data_or_corr, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[0] != arr.shape[1] or not _is_correlation(arr):
        raise PsychometricsError(
            "an array input must be a correlation matrix (square, symmetric, unit diagonal); "
            "pass item answers as a pandas DataFrame"
        )
    if items is not None:
        raise PsychometricsError("items only apply to a DataFrame of item answers")
    return arr, tuple(f"V{i + 1}" for i in range(arr.shape[0])), None, 0


def _is_correlation(arr: FloatArray) -> bool:
    return bool(
        np.all(np.isfinite(arr))
        and np.allclose(arr, arr.T, atol=1e-10)
        and np.allclose(np.diag(arr), 1.0, atol=1e-10)
        and np.all(np.abs(arr) <= 1.0 + 1e-10)
    )


def _check_factors(n_factors: int, n_items: int, low: int = 1) -> None:
    if isinstance(n_factors, bool) or not isinstance(n_factors, (int, np.integer)):
        raise PsychometricsError(f"n_factors must be an integer, got {n_factors!r}")
    if not low <= n_factors < n_items:
        raise PsychometricsError(
            f"n_factors must be at least {low} and less than the {n_items} items, got {n_factors}"
        )


# ---------------------------------------------------------------- minres extraction


def _smc(corr: FloatArray) -> FloatArray:
    """Squared multiple correlations 1 - 1/diag(R^-1) (pseudo-inverse), clipped to [0, 1]."""
    smc = 1.0 - 1.0 / np.diag(np.linalg.pinv(corr))
    return np.asarray(np.clip(smc, 0.0, 1.0), dtype=np.float64)


def _leading(reduced: FloatArray, nf: int, floor: float) -> FloatArray:
    """Loadings from the nf leading eigenpairs of a symmetric matrix, eigenvalues floored."""
    values, vectors = np.linalg.eigh(reduced)
    order = np.argsort(values)[::-1][:nf]
    top = np.maximum(values[order], floor)
    return np.asarray(vectors[:, order] * np.sqrt(top), dtype=np.float64)


def _minres_objective(psi: FloatArray, corr: FloatArray, nf: int) -> float:
    reduced = corr.copy()
    np.fill_diagonal(reduced, 1.0 - psi)
    lam = _leading(reduced, nf, 100 * np.finfo(float).eps)
    resid = (reduced - lam @ lam.T)[np.tril_indices_from(reduced, -1)]
    return float(np.sum(resid**2))


def _minres_gradient(psi: FloatArray, corr: FloatArray, nf: int) -> FloatArray:
    """psych's gradient: diag(LL' + Psi - R), L from R - Psi (half the gradient of the full
    residual sum of squares; zero where Psi = 1 - h2)."""
    lam = _leading(corr - np.diag(psi), nf, 0.0)
    return np.asarray(np.sum(lam**2, axis=1) + psi - np.diag(corr), dtype=np.float64)


def _minres(corr: FloatArray, nf: int) -> tuple[FloatArray, bool]:
    """Unrotated minres loadings, columns signed to positive sums, and the optimiser's flag."""
    smc = _smc(corr)
    upper = max(float(smc.max()), 1.0)
    start = np.diag(corr) - smc
    if nf > 1 and float(smc.sum()) == nf:
        start = np.full(corr.shape[0], 0.5)
    fit = optimize.minimize(
        lambda u: _minres_objective(u * _PARSCALE, corr, nf),
        start / _PARSCALE,
        jac=lambda u: _minres_gradient(u * _PARSCALE, corr, nf) * _PARSCALE,
        method="L-BFGS-B",
        bounds=[(_PSI_LOWER / _PARSCALE, upper / _PARSCALE)] * corr.shape[0],
        options={"maxcor": 5, "ftol": _FACTR * np.finfo(float).eps, "gtol": 0.0, "maxiter": 100},
    )
    lam = _leading(corr - np.diag(fit.x * _PARSCALE), nf, 0.0)
    return _sign_columns(lam), bool(fit.success)


def _sign_columns(lam: FloatArray) -> FloatArray:
    sign = np.sign(lam.sum(axis=0))
    sign[sign == 0] = 1.0
    return np.asarray(lam * sign, dtype=np.float64)


# ---------------------------------------------------------------- rotations


def _varimax(lam: FloatArray) -> FloatArray:
    """stats::varimax with Kaiser normalisation; stops when sum of singular values gains
    less than a relative 1e-5."""
    scale = np.sqrt(np.sum(lam**2, axis=1))
    x = lam / scale[:, None]
    p, k = x.shape
    rot = np.eye(k)
    d = 0.0
    for _ in range(1000):
        z = x @ rot
        b = x.T @ (z**3 - z * np.sum(z**2, axis=0) / p)
        u, s, vt = np.linalg.svd(b)
        rot = u @ vt
        d_past, d = d, float(s.sum())
        if d < d_past * (1 + _VARIMAX_EPS):
            break
    return np.asarray((x @ rot) * scale[:, None], dtype=np.float64)


def _quartimin(lam: FloatArray) -> tuple[float, FloatArray]:
    """Oblimin criterion with gamma 0 (quartimin) and its gradient in the loadings."""
    sq = lam**2
    other = sq @ (1.0 - np.eye(lam.shape[1]))
    return float(np.sum(sq * other) / 4.0), lam * other


def _oblimin(a: FloatArray) -> tuple[FloatArray, FloatArray, bool]:
    """GPArotation::GPFoblq for oblimin (gamma 0), unnormalised, from T = I: pattern, Phi."""
    tmat = np.eye(a.shape[1])
    lam = a @ np.linalg.inv(tmat).T
    f, gq = _quartimin(lam)
    grad = -(lam.T @ gq @ np.linalg.inv(tmat)).T
    step = 1.0
    converged = False
    for _ in range(_GPA_MAXIT + 1):
        gp = grad - tmat * np.sum(tmat * grad, axis=0)
        s = float(np.sqrt(np.sum(gp**2)))
        if s < _GPA_EPS:
            converged = True
            break
        step *= 2.0
        for _ in range(11):
            x = tmat - step * gp
            t_new = x / np.sqrt(np.sum(x**2, axis=0))
            lam = a @ np.linalg.inv(t_new).T
            f_new, gq = _quartimin(lam)
            if f - f_new > 0.5 * s**2 * step:
                break
            step /= 2.0
        tmat, f = t_new, f_new
        grad = -(lam.T @ gq @ np.linalg.inv(t_new)).T
    return lam, tmat.T @ tmat, converged


def _sort_columns(lam: FloatArray, phi: FloatArray) -> tuple[FloatArray, FloatArray]:
    """psych::fa's order: sign columns to positive sums, sort by diag(Phi L'L) decreasing."""
    sign = np.sign(lam.sum(axis=0))
    sign[sign == 0] = 1.0
    lam, phi = lam * sign, phi * np.outer(sign, sign)
    order = np.argsort(-np.diag(phi @ lam.T @ lam), kind="stable")
    return lam[:, order], phi[np.ix_(order, order)]


def _rotated(
    corr: FloatArray, nf: int, rotate: str
) -> tuple[FloatArray, FloatArray, FloatArray, bool]:
    """Loadings, Phi and communalities as psych::fa(r, nf, fm = "minres", rotate) gives them."""
    lam, ok = _minres(corr, nf)
    h2 = np.sum(lam**2, axis=1)
    phi = np.eye(nf)
    if nf > 1 and rotate == "varimax":
        lam = _varimax(lam)
    elif nf > 1 and rotate == "oblimin":
        lam, phi, rot_ok = _oblimin(lam)
        ok = ok and rot_ok
    if nf > 1:
        lam, phi = _sort_columns(lam, phi)
    return lam, phi, h2, ok


# ---------------------------------------------------------------- public API


def efa(
    data_or_corr: pd.DataFrame | ArrayLike,
    n_factors: int,
    *,
    rotate: Rotation = "oblimin",
    items: Sequence[str] | None = None,
) -> EFAResult:
    """Minres factor analysis of item answers (a DataFrame) or a correlation matrix, rotated
    as ``psych::fa(r, n_factors, fm = "minres", rotate = rotate)``; factor columns signed to
    positive sums and sorted by explained variance (psych's order, named MR1, MR2, ...).

    >>> import numpy as np
    >>> lam = np.array([[0.8, 0], [0.7, 0], [0.6, 0], [0, 0.8], [0, 0.5], [0, 0.4]])
    >>> r = lam @ np.array([[1, 0.3], [0.3, 1]]) @ lam.T
    >>> np.fill_diagonal(r, 1.0)
    >>> res = efa(r, 2)
    >>> round(float(res.phi.iloc[0, 1]), 3), round(float(res.communalities.iloc[0]), 3)
    (0.3, 0.64)
    """
    if rotate not in ("oblimin", "varimax", "none"):
        raise PsychometricsError(f"rotate must be 'oblimin', 'varimax' or 'none', got {rotate!r}")
    corr, names, _, _ = _as_correlation(data_or_corr, items)
    _check_factors(n_factors, len(names))
    lam, phi, h2, ok = _rotated(corr, int(n_factors), rotate)
    cols = [f"MR{i + 1}" for i in range(int(n_factors))]
    return EFAResult(
        loadings=pd.DataFrame(lam, index=list(names), columns=cols),
        phi=pd.DataFrame(phi, index=cols, columns=cols),
        communalities=pd.Series(h2, index=list(names), name="h2"),
        uniquenesses=pd.Series(np.diag(corr) - h2, index=list(names), name="u2"),
        rotate=rotate,
        converged=ok,
    )


def _general_loadings(phi: FloatArray) -> FloatArray:
    """The general factor's loadings on the group factors (psych::schmid)."""
    if phi.shape[0] == 2:  # psych's option = "equal": not identified with two factors
        root = np.sqrt(abs(phi[0, 1]))
        return np.array([root, np.sign(phi[0, 1]) * root])
    gl = _minres(phi, 1)[0][:, 0]
    return np.asarray(gl, dtype=np.float64)


def _schmid(corr: FloatArray, nf: int) -> tuple[FloatArray, FloatArray]:
    """Schmid-Leiman loadings (g, group factors) and communalities, as psych::schmid."""
    orth, _, _, _ = _rotated(corr, nf, "varimax")
    pattern, phi, _ = _oblimin(orth)
    gload = _general_loadings(phi)
    g = pattern @ gload
    group = np.sign(pattern) * np.sqrt(np.clip(pattern**2 * (1.0 - gload**2), 0.0, None))
    h2 = np.sum(orth**2, axis=1)  # psych: diag(orth.load %*% t(orth.load))
    return np.column_stack([g, group]), h2


def _group_omegas(sl: FloatArray, corr: FloatArray, omega_t: float) -> FloatArray:
    """psych's omega.group rows: for g, then each group factor's items (largest |loading|)."""
    nf = sl.shape[1] - 1
    out = np.full((nf + 1, 3), np.nan)
    member = np.argmax(np.abs(sl[:, 1:]), axis=1)
    total_group = 0.0
    for k in range(nf):
        idx = np.flatnonzero(member == k)
        if idx.size == 0:
            continue
        v = corr[np.ix_(idx, idx)].sum()
        gr, gg = sl[idx, k + 1].sum() ** 2, sl[idx, 0].sum() ** 2
        total_group += gr
        out[k + 1] = ((gr + gg) / v, gg / v, gr / v)
    out[0] = (omega_t, sl[:, 0].sum() ** 2 / corr.sum(), total_group / corr.sum())
    return out


def omega_sl(
    data: pd.DataFrame | ArrayLike,
    items: Sequence[str] | None = None,
    n_factors: int = 3,
) -> OmegaResult:
    """McDonald's omega_h and omega_t from a Schmid-Leiman transformed minres/oblimin solution,
    as ``psych::omega(data, n_factors)`` with its defaults (items with negative g loadings
    reversed). ``data`` holds item answers (all numeric columns unless ``items``) or is a
    correlation matrix. Two factors use psych's equal-loadings constraint (not identified).

    >>> import numpy as np
    >>> lam = np.array([[0.7, 0, 0], [0.6, 0, 0], [0.5, 0, 0], [0, 0.7, 0], [0, 0.6, 0],
    ...                 [0, 0.5, 0], [0, 0, 0.7], [0, 0, 0.6], [0, 0, 0.5]])
    >>> r = lam @ np.array([[1, 0.5, 0.4], [0.5, 1, 0.3], [0.4, 0.3, 1]]) @ lam.T
    >>> np.fill_diagonal(r, 1.0)
    >>> res = omega_sl(r)
    >>> round(res.omega_h, 3), list(res.groups.index)  # psych::omega(r, 3): 0.5142505229
    (0.514, ['g', 'F1*', 'F2*', 'F3*'])
    """
    corr, names, n, dropped = _as_correlation(data, items)
    _check_factors(n_factors, len(names), low=2)
    nf = int(n_factors)
    sl, h2 = _schmid(corr, nf)
    key = np.where(sl[:, 0] < 0, -1.0, 1.0)
    sl = sl * key[:, None]
    corr = corr * np.outer(key, key)
    total, u2 = float(corr.sum()), np.diag(corr) - h2
    gsq = float(sl[:, 0].sum() ** 2)
    omega_t = (total - float(u2.sum())) / total
    k = len(names)
    ev = np.sum(sl**2, axis=0)
    cols = ["g"] + [f"F{i + 1}*" for i in range(nf)]
    table = np.column_stack([sl, h2, u2, sl[:, 0] ** 2 / h2])
    return OmegaResult(
        omega_h=gsq / total,
        omega_t=omega_t,
        omega_lim=gsq / (total - float(u2.sum())),
        alpha=(total - float(np.trace(corr))) / total * k / (k - 1),
        ecv=float(ev[0] / ev.sum()),
        groups=pd.DataFrame(
            _group_omegas(sl, corr, omega_t), index=cols, columns=["total", "general", "group"]
        ),
        loadings=pd.DataFrame(table, index=list(names), columns=[*cols, "h2", "u2", "p2"]),
        key=pd.Series(key.astype(int), index=list(names), name="key"),
        n_factors=nf,
        n=n,
        n_dropped=dropped,
    )
