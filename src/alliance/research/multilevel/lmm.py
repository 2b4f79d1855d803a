"""Linear mixed models fitted as lme4 fits them: the profiled deviance over the relative
covariance factor, by REML or ML.

The model is ``y = X beta + Z b + e`` with ``b = Lambda(theta) u``, ``u ~ N(0, sigma^2 I)``
and ``e ~ N(0, sigma^2 I)``. For a given ``theta`` the penalised least-squares problem has
a closed form, so ``beta``, ``sigma`` and the conditional modes are profiled out and only
``theta`` (the lower-triangular factors of each term's covariance, relative to sigma) is
optimised: Bates, Maechler, Bolker & Walker (2015), "Fitting linear mixed-effects models
using lme4", J Stat Softw 67(1), doi:10.18637/jss.v067.i01, sections 3.1-3.6.

Why our own: statsmodels' MixedLM takes one grouping factor (nested and crossed factors
only as variance components inside it) and is slow at scale; this engine takes any number
of nested or crossed terms, works on sparse ``Z`` and is checked against lme4 itself
(``tests/research/test_multilevel_lme4.py``).

>>> import pandas as pd
>>> dyes = pd.DataFrame({"batch": list("AABBCC"), "y": [1.0, 2.0, 4.0, 5.0, 2.5, 3.5]})
>>> fit = lmm("y ~ 1 + (1 | batch)", dyes)
>>> round(float(fit.fixed.loc["(Intercept)", "estimate"]), 6)
3.0
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import scipy.linalg as la
import scipy.sparse as sp
from scipy import optimize, stats
from scipy.sparse.linalg import splu
from threadpoolctl import threadpool_limits

from alliance.research.multilevel.formula import (
    INTERCEPT,
    Formula,
    FormulaError,
    RandomTerm,
    parse_formula,
)
from alliance.research.multilevel.inference import (
    satterthwaite_df,
    varpar_derivatives,
)

FloatArray = npt.NDArray[np.float64]
DENSE_UP_TO = 2000  # random-effect columns up to which A is factored as a dense matrix


def _serial_blas() -> threadpool_limits:
    """BLAS on one thread while fitting: the factorizations are small and many, and
    OpenBLAS's threads then cost more than they save (on two cores a 200,000-row fit took
    5.1 s with two threads, 2.9 s with one)."""
    return threadpool_limits(limits=1, user_api="blas")


@dataclass(frozen=True)
class _Term:
    """One random term's design: per row its level and effect values; ``levels`` names."""

    spec: RandomTerm
    level: npt.NDArray[np.int64]  # (n,) level code of each row
    values: FloatArray  # (n, k) effect columns
    levels: pd.Index

    @property
    def k(self) -> int:
        return int(self.values.shape[1])

    @property
    def n_theta(self) -> int:
        return self.k * (self.k + 1) // 2


@dataclass(frozen=True)
class _Design:
    y: FloatArray
    x: FloatArray
    fixed_names: list[str]
    terms: list[_Term]
    rows: pd.DataFrame  # the complete rows the model is fitted on

    @property
    def q(self) -> int:
        return sum(t.k * len(t.levels) for t in self.terms)


# -- design ----------------------------------------------------------------------------------
def _design(f: Formula, data: pd.DataFrame) -> _Design:
    used = [f.response, *[c for t in f.fixed for c in t.split(":")]]
    for term in f.random:
        used += [*(e for e in term.effects if e != INTERCEPT), *term.group]
    missing = [c for c in dict.fromkeys(used) if c not in data.columns]
    if missing:
        raise FormulaError(f"formula names column(s) not in the table: {missing}")
    rows = data[list(dict.fromkeys(used))].dropna()
    if rows.empty:
        raise FormulaError("no complete rows for the columns of the formula")
    y = pd.to_numeric(rows[f.response], errors="coerce").to_numpy(np.float64)
    if np.isnan(y).any():
        raise FormulaError(f"response {f.response!r}: must be numeric")
    x, names = _fixed_matrix(f, rows)
    if np.linalg.matrix_rank(x) < x.shape[1]:
        raise FormulaError(f"fixed effects {names}: the design is rank deficient")
    terms = [_term(term, rows) for term in f.random]
    if not terms:
        raise FormulaError("formula has no random term '(effects | group)': use a linear model")
    # lme4's order: terms by number of levels, most first (a stable sort)
    return _Design(y, x, names, sorted(terms, key=lambda t: -len(t.levels)), rows)


def _fixed_matrix(f: Formula, rows: pd.DataFrame) -> tuple[FloatArray, list[str]]:
    columns: list[FloatArray] = []
    names: list[str] = []
    if f.intercept:
        columns.append(np.ones(len(rows)))
        names.append(INTERCEPT)
    for term in f.fixed:
        parts = [_columns_of(rows[c], c) for c in term.split(":")]
        combined = parts[0]
        for other in parts[1:]:
            combined = {
                f"{a}:{b}": va * vb for a, va in combined.items() for b, vb in other.items()
            }
        for name, values in combined.items():
            columns.append(values)
            names.append(name)
    return np.column_stack(columns), names


def _columns_of(column: pd.Series, name: str) -> dict[str, FloatArray]:
    """A numeric column as itself; a text or categorical one as treatment dummies."""
    if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
        return {name: column.to_numpy(np.float64)}
    levels = sorted(column.astype(str).unique())
    text = column.astype(str).to_numpy()
    return {f"{name}{lv}": (text == lv).astype(np.float64) for lv in levels[1:]}


def _term(spec: RandomTerm, rows: pd.DataFrame) -> _Term:
    codes, levels = _levels(rows[spec.name.split(":")])
    values = [np.ones(len(rows)) if e == INTERCEPT else _numeric(rows[e], e) for e in spec.effects]
    return _Term(spec, codes.astype(np.int64), np.column_stack(values), pd.Index(levels))


def _levels(columns: pd.DataFrame) -> tuple[npt.NDArray[np.intp], pd.Index]:
    """Each row's level code and the sorted level names, a level named by its values in
    the order of the term's name ("cask:batch"), as lme4 names it. Only the distinct
    combinations are joined into names, so this is O(rows), not O(rows) string joins."""
    text = columns.astype(str)
    combination = text.groupby(list(text.columns), sort=False).ngroup().to_numpy()
    firsts = np.unique(combination, return_index=True)[1]
    first_rows = [text[c].iloc[firsts] for c in text.columns]
    others: list[Any] = first_rows[1:]
    names = first_rows[0].str.cat(others, sep=":").to_numpy(dtype=object)
    order = np.argsort(names, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    return rank[combination], pd.Index(names[order])


def _numeric(column: pd.Series, name: str) -> FloatArray:
    if not pd.api.types.is_numeric_dtype(column):
        raise FormulaError(f"random effect {name!r}: must be a numeric column")
    return column.to_numpy(np.float64)


# -- the profiled deviance ---------------------------------------------------------------------
def _factors(design: _Design, theta: FloatArray) -> list[FloatArray]:
    """Each term's lower-triangular relative covariance factor T from ``theta``
    (its lower triangle in column-major order, as lme4 orders it)."""
    out, at = [], 0
    for term in design.terms:
        t = np.zeros((term.k, term.k))
        t[_column_major(term.k)] = theta[at : at + term.n_theta]
        out.append(t)
        at += term.n_theta
    return out


class _Cross:
    """The cross-products every evaluation of the deviance needs, computed once: after
    them a step of the optimiser costs O(non-zeros of Z'Z), not O(rows)."""

    def __init__(self, design: _Design) -> None:
        n = design.y.size
        blocks, self.offsets = [], [0]
        for term in design.terms:
            k = term.k
            cols = term.level[:, None] * k + np.arange(k)[None, :]
            rows = np.repeat(np.arange(n), k)
            shape = (n, k * len(term.levels))
            blocks.append(sp.csc_matrix((term.values.ravel(), (rows, cols.ravel())), shape=shape))
            self.offsets.append(self.offsets[-1] + shape[1])
        z = sp.hstack(blocks, format="csc")
        self.ztz = (z.T @ z).tocsc()
        self.ztx = np.asarray(z.T @ design.x)
        self.zty = np.asarray(z.T @ design.y)
        self.xtx = design.x.T @ design.x
        self.xty = design.x.T @ design.y
        self.yty = float(design.y @ design.y)
        # The leading terms on the first term's grouping factor ((1 | patient) and
        # (0 + session | patient) alike) form one block per level: Z1'Z1 is block diagonal
        # (a row has one level), its m (K x K) blocks taken level by level ("interleaved").
        lead = self.lead = _sharing_first_factor(design.terms)
        self.first_order = _interleaved(design.terms[:lead], self.offsets)
        q1 = self.offsets[lead]
        self.ztz_dense = self.ztz.toarray() if self.ztz.shape[0] <= DENSE_UP_TO else None
        self.blockwise = self.ztz.shape[0] > DENSE_UP_TO and self.ztz.shape[0] - q1 <= DENSE_UP_TO
        if self.blockwise:  # the pieces of Z'Z the blockwise path uses
            rows_first = self.ztz[self.first_order]
            width = sum(t.k for t in design.terms[:lead])
            diagonal = rows_first[:, self.first_order].tocoo()  # block diagonal, K x K blocks
            self.first_blocks = np.zeros((len(design.terms[0].levels), width, width))
            self.first_blocks[diagonal.row // width, diagonal.row % width, diagonal.col % width] = (
                diagonal.data
            )
            self.z1tz2 = rows_first[:, q1:].tocsr()
            self.z2tz2 = self.ztz[q1:, q1:].toarray()


def _sharing_first_factor(terms: list[_Term]) -> int:
    """How many leading terms share the first term's grouping factor."""
    count = 1
    while count < len(terms) and terms[count].spec.name == terms[0].spec.name:
        count += 1
    return count


def _interleaved(terms: list[_Term], offsets: list[int]) -> npt.NDArray[np.intp]:
    """For each position of the level-by-level order of terms on one factor, its index in
    the term-by-term order of u (level i of term j, effect e at offsets[j] + i k_j + e)."""
    m = len(terms[0].levels)
    parts = [
        offsets[j] + np.arange(m)[:, None] * t.k + np.arange(t.k)[None, :]
        for j, t in enumerate(terms)
    ]
    return np.concatenate(parts, axis=1).ravel()


def _block_diagonal(blocks: FloatArray) -> sp.csr_matrix:
    """The sparse block-diagonal matrix of ``m`` (k x k) blocks."""
    m, k, _ = blocks.shape
    rows = np.repeat(np.arange(m * k), k)
    cols = (np.arange(m)[:, None, None] * k + np.arange(k)[None, None, :]).repeat(k, 1)
    return sp.csr_matrix((blocks.ravel(), (rows, cols.ravel())), shape=(m * k, m * k))


def _lambda(terms: list[_Term], factors: list[FloatArray]) -> sp.csr_matrix:
    """Lambda(theta): block diagonal, I (levels) kron T for each term."""
    parts = [
        _block_diagonal(np.broadcast_to(t, (len(term.levels), term.k, term.k)))
        for term, t in zip(terms, factors, strict=True)
    ]
    return sp.block_diag(parts, format="csr")


def _lambda_t_times(design: _Design, factors: list[FloatArray], b: FloatArray) -> FloatArray:
    """Lambda' b without forming Lambda: each term's rows of ``b`` times its T' level by
    level."""
    out, at = np.empty_like(b), 0
    for term, t in zip(design.terms, factors, strict=True):
        m, k = len(term.levels), term.k
        part = b[at : at + m * k].reshape(m, k, -1).transpose(0, 2, 1)  # (m, p, k)
        out[at : at + m * k] = (
            (part.reshape(-1, k) @ t).reshape(m, -1, k).transpose(0, 2, 1).reshape(m * k, -1)
        )
        at += m * k
    return out


def _congruence(blocks: FloatArray, t: FloatArray) -> FloatArray:
    """T' B T for each symmetric block B, as two large products rather than m small ones."""
    m, k, _ = blocks.shape
    bt = (blocks.reshape(m * k, k) @ t).reshape(m, k, k)  # B T; its transpose is T' B
    return (bt.transpose(0, 2, 1).reshape(m * k, k) @ t).reshape(m, k, k)


def _spd_inverse(blocks: FloatArray) -> tuple[FloatArray, float]:
    """Inverses and summed log-determinant of a stack of small positive definite blocks;
    closed forms for 1 x 1 and 2 x 2, LAPACK beyond."""
    k = blocks.shape[1]
    if k == 1:
        return np.asarray(1.0 / blocks, dtype=np.float64), float(np.log(blocks).sum())
    if k == 2:
        a, b, d = blocks[:, 0, 0], blocks[:, 0, 1], blocks[:, 1, 1]
        det = a * d - b * b
        inverse = np.stack([np.stack([d, -b], -1), np.stack([-b, a], -1)], -2) / det[:, None, None]
        return np.asarray(inverse, dtype=np.float64), float(np.log(det).sum())
    return np.asarray(np.linalg.inv(blocks), dtype=np.float64), float(
        np.linalg.slogdet(blocks)[1].sum()
    )


class _Solver:
    """Log-determinant of, and solves with, A = Lambda'Z'Z Lambda + I.

    Three ways by size: a dense Cholesky up to :data:`DENSE_UP_TO` columns; else, when the
    terms after the first have at most that many columns (patients' intercepts and slopes,
    then therapists), the first term's block-diagonal part is eliminated block by block and
    the rest factored densely as its Schur complement, in O(levels) and without forming A;
    else a sparse LU with a fill-reducing ordering (A is symmetric positive definite, so
    the diagonal of its U gives the log-determinant)."""

    def __init__(self, design: _Design, cross: _Cross, factors: list[FloatArray]) -> None:
        self.size = cross.ztz.shape[0]
        if cross.blockwise:
            self.kind = "blocks"
            self._blocks(design, cross, factors)
            return
        if cross.ztz_dense is not None:
            self.kind = "dense"
            # Lambda' (Z'Z) Lambda as two passes of Lambda' over the rows (Z'Z is symmetric)
            half = _lambda_t_times(design, factors, cross.ztz_dense)
            a_dense = _lambda_t_times(design, factors, np.ascontiguousarray(half.T))
            self.chol = la.cho_factor(a_dense + np.eye(self.size), lower=True)
            self.logdet = 2.0 * float(np.log(np.diag(self.chol[0])).sum())
        else:
            lam = _lambda(design.terms, factors)
            a = (lam.T @ cross.ztz @ lam + sp.identity(self.size, format="csc")).tocsc()
            self.kind = "sparse"
            self.lu = splu(
                a,
                permc_spec="MMD_AT_PLUS_A",
                diag_pivot_thresh=0.0,
                options={"SymmetricMode": True},
            )
            self.logdet = float(np.log(np.abs(self.lu.U.diagonal())).sum())

    def _blocks(self, design: _Design, cross: _Cross, factors: list[FloatArray]) -> None:
        lead = cross.lead
        t1, q1 = la.block_diag(*factors[:lead]), cross.offsets[lead]
        a11 = _congruence(cross.first_blocks, t1) + np.eye(t1.shape[0])
        self.first_inverse, logdet11 = _spd_inverse(a11)
        self.a11_inv = _block_diagonal(self.first_inverse)
        lam1 = _block_diagonal(np.broadcast_to(t1, a11.shape))
        lam2 = _lambda(design.terms[lead:], factors[lead:])
        self.a12 = (lam1.T @ cross.z1tz2 @ lam2).tocsr()
        self.w = (self.a11_inv @ self.a12).tocsr()  # A11^-1 A12
        a22 = lam2.T @ (lam2.T @ cross.z2tz2).T + np.eye(lam2.shape[0])
        self.chol = la.cho_factor(a22 - (self.a12.T @ self.w).toarray(), lower=True)
        self.q1, self.order, self.lead = q1, cross.first_order, lead
        self.logdet = logdet11 + 2.0 * float(np.log(np.diag(self.chol[0])).sum())

    def solve(self, b: FloatArray) -> FloatArray:
        if self.kind == "dense":
            return np.asarray(la.cho_solve(self.chol, b), dtype=np.float64)
        if self.kind == "sparse":
            return np.asarray(self.lu.solve(b), dtype=np.float64)
        b1, b2 = b[self.order], b[self.q1 :]  # the first factor's part level by level
        x1 = self.a11_inv @ b1
        x2 = la.cho_solve(self.chol, b2 - self.a12.T @ x1)
        out = np.empty_like(b, dtype=np.float64)
        out[self.order] = x1 - self.w @ x2
        out[self.q1 :] = x2
        return out

    def inverse_blocks(self, shapes: list[tuple[int, int]]) -> list[FloatArray]:
        """The diagonal blocks of A^-1, one (levels, k, k) array per term of ``shapes``
        ((levels, k) each): what the conditional variances of the modes need."""
        if self.kind == "blocks":
            return self._inverse_blocks_schur(shapes)
        out, at = [], 0
        for m, k in shapes:
            blocks = np.empty((m, k, k))
            step = max(1, 4096 // k)  # levels per batch of unit right-hand sides
            for lo in range(0, m, step):
                hi = min(m, lo + step)
                unit = np.zeros((self.size, (hi - lo) * k))
                unit[at + lo * k + np.arange((hi - lo) * k), np.arange((hi - lo) * k)] = 1.0
                cols = self.solve(unit)[at + lo * k : at + hi * k]  # rows of this batch
                blocks[lo:hi] = cols.reshape(hi - lo, k, hi - lo, k)[
                    np.arange(hi - lo), :, np.arange(hi - lo), :
                ]
            out.append(blocks)
            at += m * k
        return out

    def _inverse_blocks_schur(self, shapes: list[tuple[int, int]]) -> list[FloatArray]:
        """Blockwise inverse: (A^-1)_11 = A11^-1 + W S^-1 W' and (A^-1)_22 = S^-1."""
        s_inv = la.cho_solve(self.chol, np.eye(self.chol[0].shape[0]))
        m, k = self.first_inverse.shape[:2]
        first: FloatArray = np.array(self.first_inverse, dtype=np.float64)
        step = max(1, 8192 // k)
        for lo in range(0, m, step):
            hi = min(m, lo + step)
            w = self.w[lo * k : hi * k].toarray().reshape(hi - lo, k, -1)
            first[lo:hi] += np.einsum("mjc,cd,mld->mjl", w, s_inv, w, optimize=True)
        out: list[FloatArray] = []
        at = 0
        for _, k_t in shapes[: self.lead]:  # each term's own effects of the level blocks
            out.append(first[:, at : at + k_t, at : at + k_t])
            at += k_t
        at = 0
        for m_t, k_t in shapes[self.lead :]:
            idx = at + np.arange(m_t * k_t).reshape(m_t, k_t)
            out.append(s_inv[idx[:, :, None], idx[:, None, :]])
            at += m_t * k_t
        return out


@dataclass(frozen=True)
class _Profile:
    """Everything the profiled deviance computes at one ``theta``."""

    deviance: float
    beta: FloatArray
    u: FloatArray
    rx: FloatArray  # X'X - (Z Lambda)'X A^-1 (Z Lambda)'X: sigma^2 times its inverse is Var(beta)
    pwrss: float  # penalised residual sum of squares at the solution
    solver: _Solver


class _Model:
    """A model's design and cross-products with the deviance functions the fit and its
    tests need (Bates et al. 2015, eqs. 34 and 41)."""

    def __init__(self, formula: str, data: pd.DataFrame, reml: bool) -> None:
        self.formula = formula
        self.parsed = parse_formula(formula)
        self.design = _design(self.parsed, data)
        self.cross = _Cross(self.design)
        self.reml = reml
        n, p = self.design.x.shape
        self.n, self.p = n, p

    def profile(self, theta: FloatArray) -> _Profile:
        design, cross = self.design, self.cross
        factors = _factors(design, theta)
        solver = _Solver(design, cross, factors)
        zlx = _lambda_t_times(design, factors, cross.ztx)
        zly = _lambda_t_times(design, factors, cross.zty[:, None])[:, 0]
        p_mat = solver.solve(zlx)
        w = solver.solve(zly)
        rx = cross.xtx - zlx.T @ p_mat
        beta = la.solve(rx, cross.xty - zlx.T @ w, assume_a="pos")
        u = w - p_mat @ beta
        # At the penalised least-squares solution r'r + u'u = y'r (X'r = 0, (Z Lambda)'r = u).
        pwrss = max(cross.yty - float(beta @ cross.xty) - float(u @ zly), 1e-300)
        dof = self.n - self.p if self.reml else self.n
        deviance = solver.logdet + dof * (1.0 + math.log(2.0 * math.pi * pwrss / dof))
        if self.reml:
            deviance += float(np.linalg.slogdet(rx)[1])
        return _Profile(deviance, beta, u, rx, pwrss, solver)

    def deviance(self, theta: FloatArray) -> float:
        """The profiled deviance (REML criterion) at ``theta``: sigma and beta at their best."""
        return self.profile(np.asarray(theta, dtype=np.float64)).deviance

    def varpar_deviance(self, varpar: FloatArray) -> float:
        """The deviance at ``(theta, sigma)`` (sigma not profiled), as lmerTest's
        ``devfun_vp``: the function whose Hessian gives Var(theta, sigma)."""
        theta, sigma2 = varpar[:-1], float(varpar[-1]) ** 2
        best = self.profile(np.asarray(theta, dtype=np.float64))
        log2pis2 = math.log(2.0 * math.pi * sigma2)
        dev = best.solver.logdet + best.pwrss / sigma2 + self.n * log2pis2
        if self.reml:
            dev += float(np.linalg.slogdet(best.rx)[1]) - self.p * log2pis2
        return float(dev)

    def cov_beta(self, varpar: FloatArray) -> FloatArray:
        """Var(beta-hat) at ``(theta, sigma)``: sigma^2 (R_X'R_X)^-1."""
        best = self.profile(np.asarray(varpar[:-1], dtype=np.float64))
        return np.asarray(float(varpar[-1]) ** 2 * la.inv(best.rx), dtype=np.float64)

    def bounds(self) -> list[tuple[float | None, float | None]]:
        """Diagonal elements of each factor are >= 0 (lme4's lower bounds), the rest free."""
        out: list[tuple[float | None, float | None]] = []
        for term in self.design.terms:
            rows, cols = _column_major(term.k)
            out += [
                (0.0, None) if r == c else (None, None) for r, c in zip(rows, cols, strict=True)
            ]
        return out

    def fit(self) -> MixedModelFit:
        bounds = self.bounds()
        start = np.array([1.0 if lo == 0.0 else 0.0 for lo, _ in bounds])  # lme4's start
        theta, converged = _optimise(self.deviance, start, bounds)
        return MixedModelFit(self, theta, converged)


def _column_major(k: int) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """Row and column of each lower-triangle element of a k x k factor, column by column."""
    rows, cols = np.tril_indices(k)
    order = np.lexsort((rows, cols))
    return rows[order], cols[order]


def _optimise(
    deviance: Callable[[FloatArray], float],
    start: FloatArray,
    bounds: list[tuple[float | None, float | None]],
) -> tuple[FloatArray, bool]:
    """COBYQA (a derivative-free trust-region method with quadratic models, the successor of
    the BOBYQA lme4 uses); a bounded quasi-Newton run from its end point only when it stops
    short (at its tight radius it already matches lme4's optimum, so polishing every fit
    would cost a third more deviance evaluations for nothing)."""
    with _serial_blas():
        first = optimize.minimize(
            deviance,
            start,
            method="COBYQA",
            bounds=bounds,
            options={"f_target": -np.inf, "final_tr_radius": 1e-10, "maxfev": 20000},
        )
    if first.success:
        return np.asarray(first.x, dtype=np.float64), True
    with _serial_blas():
        polish = optimize.minimize(
            deviance,
            first.x,
            method="L-BFGS-B",
            bounds=bounds,
            options={"ftol": 1e-15, "gtol": 1e-9, "maxiter": 500},
        )
    best = polish if polish.fun <= first.fun else first
    return np.asarray(best.x, dtype=np.float64), bool(polish.success)


def lmm(formula: str, data: pd.DataFrame, *, reml: bool = True) -> MixedModelFit:
    """Fit a linear mixed model written in lme4's notation.

    Rows with a missing value in any column the formula uses are left out (as R's
    ``na.omit``). ``reml=False`` fits by maximum likelihood (for likelihood-ratio tests of
    fixed effects).

    >>> import pandas as pd
    >>> t = pd.DataFrame({"g": list("aabbcc"), "x": [0, 1] * 3, "y": [1.0, 2, 3, 4.5, 2, 2.5]})
    >>> fit = lmm("y ~ x + (1 | g)", t)
    >>> list(fit.fixed.index), list(fit.varcorr["group"])
    (['(Intercept)', 'x'], ['g', 'Residual'])
    """
    return _Model(formula, data, reml).fit()


class MixedModelFit:
    """A fitted linear mixed model, read as lme4's summaries are read.

    ``fixed``: estimate, se, Satterthwaite df, t and p per fixed effect (rows named as R
    names them); ``varcorr``: each variance, covariance and the residual (``group, var1,
    var2, vcov, sdcor`` as lme4's ``as.data.frame(VarCorr(fit))``); ``ranef``: the
    conditional modes (BLUPs) with their conditional SDs, one row per level and effect;
    ``loglik`` is the REML criterion's log-likelihood for a REML fit, as lme4 reports it.
    """

    def __init__(self, model: _Model, theta: FloatArray, converged: bool) -> None:
        self.model = model
        self.formula, self.reml = model.formula, model.reml
        self.theta, self.converged = theta, converged
        self._best = model.profile(theta)
        dof = model.n - model.p if model.reml else model.n
        self.sigma = math.sqrt(self._best.pwrss / dof)
        self.loglik = -0.5 * self._best.deviance
        self.n_obs = model.n
        self.n_params = model.p + theta.size + 1
        self.coef = pd.Series(self._best.beta, index=model.design.fixed_names)

    def __repr__(self) -> str:
        kind = "REML" if self.reml else "ML"
        return f"<MixedModelFit {self.formula!r} {kind} n={self.n_obs} logLik={self.loglik:.4f}>"

    @property
    def deviance(self) -> float:
        """-2 log-likelihood (the REML criterion for a REML fit)."""
        return -2.0 * self.loglik

    @property
    def aic(self) -> float:
        return float(-2.0 * self.loglik + 2.0 * self.n_params)

    @property
    def bic(self) -> float:
        return float(-2.0 * self.loglik + math.log(self.n_obs) * self.n_params)

    @property
    def varpar(self) -> FloatArray:
        """``(theta, sigma)``: the variance parameters of Satterthwaite's approximation."""
        return np.append(self.theta, self.sigma)

    @property
    def singular(self) -> bool:
        """A variance at (or within 1e-4 relative of) zero, as lme4's ``isSingular``."""
        lower = np.array([lo == 0.0 for lo, _ in self.model.bounds()])
        return bool((np.abs(self.theta[lower]) < 1e-4).any())

    @cached_property
    def vcov(self) -> pd.DataFrame:
        """Var(beta-hat): sigma^2 (R_X'R_X)^-1, rows and columns named by fixed effect."""
        names = self.model.design.fixed_names
        return pd.DataFrame(self.model.cov_beta(self.varpar), index=names, columns=names)

    @cached_property
    def varpar_derivatives(self) -> tuple[FloatArray, FloatArray]:
        """Var(theta, sigma) and d Var(beta) / d(theta, sigma), for Satterthwaite's df."""
        with _serial_blas():
            return varpar_derivatives(self)

    @cached_property
    def fixed(self) -> pd.DataFrame:
        """estimate, se, df (Satterthwaite, as lmerTest), t, p and the 95% interval
        (estimate +- t quantile x se on those df) of each fixed effect."""
        estimate = self.coef.to_numpy()
        se = np.sqrt(np.diag(self.vcov.to_numpy()))
        df = satterthwaite_df(self, np.eye(self.model.p))
        t = estimate / se
        p = 2.0 * stats.t.sf(np.abs(t), df)
        half = stats.t.ppf(0.975, df) * se
        return pd.DataFrame(
            {"estimate": estimate, "se": se, "df": df, "t": t, "p": p,
             "lower": estimate - half, "upper": estimate + half},
            index=self.coef.index,
        )  # fmt: skip

    @cached_property
    def varcorr(self) -> pd.DataFrame:
        sigma2 = self.sigma**2
        rows: list[tuple[object, ...]] = []
        for term, t in zip(self.model.design.terms, self._factors(), strict=True):
            cov = sigma2 * (t @ t.T)
            sd = np.sqrt(np.diag(cov))
            names = term.spec.effects
            for i in range(term.k):
                rows.append((term.spec.name, names[i], None, cov[i, i], sd[i]))
            for j in range(term.k):
                for i in range(j + 1, term.k):
                    corr = cov[i, j] / (sd[i] * sd[j]) if sd[i] > 0 and sd[j] > 0 else np.nan
                    rows.append((term.spec.name, names[j], names[i], cov[i, j], corr))
        rows.append(("Residual", None, None, sigma2, self.sigma))
        return pd.DataFrame(rows, columns=["group", "var1", "var2", "vcov", "sdcor"])

    @cached_property
    def ranef(self) -> pd.DataFrame:
        """Conditional modes ``b = Lambda u`` and their conditional SDs, the square roots of
        the diagonal of sigma^2 Lambda A^-1 Lambda' (lme4's ``ranef(condVar = TRUE)``)."""
        terms = self.model.design.terms
        shapes = [(len(term.levels), term.k) for term in terms]
        inverse = self._best.solver.inverse_blocks(shapes)
        frames, at = [], 0
        for term, t, a_inv in zip(terms, self._factors(), inverse, strict=True):
            m, k = len(term.levels), term.k
            b = self._best.u[at : at + m * k].reshape(m, k) @ t.T
            cond = self.sigma**2 * np.einsum("ab,mbc,dc->mad", t, a_inv, t)
            at += m * k
            for j, effect in enumerate(term.spec.effects):
                frames.append(
                    pd.DataFrame(
                        {
                            "group": term.spec.name,
                            "level": term.levels,
                            "effect": effect,
                            "mode": b[:, j],
                            "condsd": np.sqrt(cond[:, j, j]),
                        }
                    )
                )
        return pd.concat(frames, ignore_index=True)

    def refit(self, *, reml: bool) -> MixedModelFit:
        """The same model on the same rows by the other criterion (ML for LR tests)."""
        return (
            self if reml == self.reml else _Model(self.formula, self.model.design.rows, reml).fit()
        )

    def _factors(self) -> list[FloatArray]:
        return _factors(self.model.design, self.theta)
