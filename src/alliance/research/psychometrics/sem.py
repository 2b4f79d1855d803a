"""Structural equation models by maximum likelihood, and the random-intercept cross-lagged
panel model (RI-CLPM) of Hamaker, Kuiper & Grasman (2015), exactly as lavaan fits them.

Why our own: no maintained Python SEM reproduces lavaan here. semopy's statistics differ
(its RMSEA divides by N - 1 and its FIML fit is wrong; ``python_peers_results.json`` in the
shared oracles), and the question the RI-CLPM answers for alliance research, "does a
better-than-usual alliance precede fewer symptoms than usual?", needs lavaan's numbers to be
comparable with the published literature. The CFA engine (:mod:`.cfa`) already has lavaan's
ML discrepancy, log-likelihood, SRMR, CFI/TLI and RMSEA with its interval; this module adds
structural regressions among latent variables and reuses those helpers unchanged.

The model is the LISREL "all-y" form, one group, complete rows (listwise deletion)::

    Σ = Λ (I - B)⁻¹ Ψ (I - B)⁻ᵀ Λ' + Θ        μ = ν + Λ (I - B)⁻¹ α

with ``=~`` filling Λ, ``~`` (among latent variables) B, ``~~`` Ψ or Θ and ``~1`` α or ν.
Every parameter is listed; anything not listed is fixed to 0 (lavaan's ``lavaan()`` with no
``auto.*`` option), except that the observed intercepts are free (``int.ov.free = TRUE``).
Fit is lavaan's ``F = log|Σ| + tr(SΣ⁻¹) - log|S| - p + (ȳ - μ)'Σ⁻¹(ȳ - μ)``, ``chisq = N F``,
standard errors from the expected information (``information = "expected"``).

>>> import numpy as np, pandas as pd
>>> rng = np.random.default_rng(7)
>>> x = rng.normal(size=(300, 3)) + rng.normal(size=(300, 1))  # stable person level + noise
>>> y = 0.5 * x + rng.normal(size=(300, 3)) + rng.normal(size=(300, 1))
>>> d = pd.DataFrame(np.c_[x, y], columns=["x1", "x2", "x3", "y1", "y2", "y3"])
>>> res = riclpm(d, ["x1", "x2", "x3"], ["y1", "y2", "y3"])
>>> res.converged, int(res.fit["df"])
(True, 1)
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import NamedTuple

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from scipy import stats

# lavaan's statistics live in the CFA engine; an implied (Σ, μ) enters them as a _Mats with
# Λ = I, Φ = Σ, Θ = 0, ν = μ, α = 0 (see _as_cfa), so nothing is computed twice.
from alliance.research.psychometrics.cfa import (
    CFAError,
    MLFit,
    _group_discrepancy,
    _group_logl,
    _Mats,
    _Moments,
    _sample_moments,
    _srmr,
    ml_fit_measures,
    newton_minimise,
)

Array = NDArray[np.float64]
IntArray = NDArray[np.intp]

__all__ = ["Parameter", "SEMError", "SEMResult", "clpm", "riclpm", "sem"]

_OPS = ("=~", "~", "~~", "~1")
_Z95 = float(stats.norm.ppf(0.975))


class SEMError(CFAError):
    """The data or the model cannot be fitted; the message names the cause."""


@dataclass(frozen=True)
class Parameter:
    """One row of a model in lavaan's vocabulary: ``lhs op rhs``.

    ``fixed`` holds the value of a fixed parameter (``None``: free); free parameters with the
    same non-empty ``label`` are constrained equal; ``start`` overrides the start value.
    ``=~``: latent ``lhs`` measured by observed ``rhs``; ``~``: latent ``lhs`` regressed on
    latent ``rhs``; ``~~``: (residual) (co)variance; ``~1``: intercept of ``lhs``.

    >>> Parameter("f", "=~", "x1", fixed=1.0)
    Parameter(lhs='f', op='=~', rhs='x1', fixed=1.0, label='', start=None)
    """

    lhs: str
    op: str
    rhs: str = ""
    fixed: float | None = None
    label: str = ""
    start: float | None = None


# --------------------------------------------------------------------------- model structure


@dataclass(frozen=True)
class _Entry:
    """A parameter placed in matrix L (Λ), B, P (Ψ), T (Θ), N (ν) or A (α) at (row, col)."""

    par: Parameter
    mat: str
    row: int
    col: int


class _Implied(NamedTuple):
    """The model matrices at one parameter vector, and the products the derivatives need."""

    lam: Array
    beta: Array
    psi: Array
    theta: Array
    nu: Array
    alpha: Array
    inv_ib: Array  # A = (I - B)⁻¹

    @property
    def g(self) -> Array:  # Λ A: observed on the exogenous parts of the latent variables
        return np.asarray(self.lam @ self.inv_ib)

    @property
    def veta(self) -> Array:  # total latent covariance A Ψ A'
        return np.asarray(self.inv_ib @ self.psi @ self.inv_ib.T)

    @property
    def sigma(self) -> Array:
        return np.asarray(self.lam @ self.veta @ self.lam.T + self.theta)

    @property
    def mu(self) -> Array:
        return np.asarray(self.nu + self.g @ self.alpha)


def _as_cfa(sigma: Array, mu: Array) -> _Mats:
    """An implied (Σ, μ) in the CFA engine's form, so its lavaan statistics apply as they are."""
    p = len(mu)
    return _Mats(np.eye(p), sigma, np.zeros((p, p)), mu, np.zeros(p))


@dataclass(frozen=True)
class _Model:
    observed: tuple[str, ...]
    latent: tuple[str, ...]
    entries: tuple[_Entry, ...]

    @cached_property
    def slots(self) -> IntArray:
        """Position of each entry in the free vector x; -1 where fixed; labels share one."""
        seen: dict[str, int] = {}
        out = [
            -1 if e.par.fixed is not None else seen.setdefault(e.par.label or f"#{k}", len(seen))
            for k, e in enumerate(self.entries)
        ]
        return np.asarray(out, dtype=np.intp)

    @property
    def n_free(self) -> int:
        return int(self.slots.max(initial=-1)) + 1

    @cached_property
    def fixed_values(self) -> Array:
        return np.array([e.par.fixed or 0.0 for e in self.entries], dtype=float)

    @cached_property
    def index(self) -> dict[str, tuple[IntArray, IntArray, IntArray]]:
        """Per matrix: the entries in it and their rows and columns."""
        out = {}
        for mat in "LBPTNA":
            k = np.array([i for i, e in enumerate(self.entries) if e.mat == mat], dtype=np.intp)
            rows = np.array([self.entries[i].row for i in k], dtype=np.intp)
            cols = np.array([self.entries[i].col for i in k], dtype=np.intp)
            out[mat] = (k, rows, cols)
        return out

    def values(self, x: Array) -> Array:
        """Every entry's value: x where free, the fixed value elsewhere."""
        return np.where(self.slots >= 0, x[np.maximum(self.slots, 0)], self.fixed_values)

    def implied(self, x: Array) -> _Implied | None:
        """The matrices at x; None where I - B is singular."""
        p, m = len(self.observed), len(self.latent)
        shapes = {"L": (p, m), "B": (m, m), "P": (m, m), "T": (p, p), "N": (p, 1), "A": (m, 1)}
        v = self.values(x)
        mats = {}
        for mat, shape in shapes.items():
            k, rows, cols = self.index[mat]
            a = np.zeros(shape)
            a[rows, cols] = v[k]
            if mat in "PT":  # symmetric: each covariance is listed once
                a[cols, rows] = v[k]
            mats[mat] = a
        try:
            inv_ib = np.asarray(np.linalg.inv(np.eye(m) - mats["B"]), dtype=float)
        except np.linalg.LinAlgError:
            return None
        return _Implied(
            mats["L"],
            mats["B"],
            mats["P"],
            mats["T"],
            mats["N"][:, 0],
            mats["A"][:, 0],
            inv_ib,
        )


def _place(par: Parameter, obs: dict[str, int], lat: dict[str, int]) -> _Entry:
    """The matrix cell of one parameter; the message names the row that cannot be placed."""
    a, b, where = par.lhs, par.rhs, f"{par.lhs} {par.op} {par.rhs}".strip()
    if par.op == "=~" and a in lat and b in obs:
        return _Entry(par, "L", obs[b], lat[a])
    if par.op == "~" and a in lat and b in lat:
        return _Entry(par, "B", lat[a], lat[b])
    if par.op == "~~" and a in lat and b in lat:
        r, c = sorted((lat[a], lat[b]), reverse=True)
        return _Entry(par, "P", r, c)
    if par.op == "~~" and a in obs and b in obs:
        r, c = sorted((obs[a], obs[b]), reverse=True)
        return _Entry(par, "T", r, c)
    if par.op == "~1" and not b:
        return _Entry(par, "N", obs[a], 0) if a in obs else _Entry(par, "A", lat[a], 0)
    raise SEMError(
        f"{where}: not supported here; '=~' needs a latent lhs and an observed rhs, '~' and "
        "'~~' two latent or (for '~~') two observed variables (give an observed variable a "
        "latent twin with a loading fixed to 1 to regress on it)"
    )


def _build(parameters: Sequence[Parameter]) -> _Model:
    bad = [p.op for p in parameters if p.op not in _OPS]
    if bad:
        raise SEMError(f"unknown operator(s) {sorted(set(bad))}; use {list(_OPS)}")
    if not parameters:
        raise SEMError("the model has no parameters")
    latent = tuple(dict.fromkeys(p.lhs for p in parameters if p.op == "=~"))
    names = (n for p in parameters for n in (p.lhs, p.rhs) if n)
    observed = tuple(n for n in dict.fromkeys(names) if n not in latent)
    obs, lat = {v: k for k, v in enumerate(observed)}, {v: k for k, v in enumerate(latent)}
    entries = [_place(p, obs, lat) for p in parameters]
    cells = [(e.mat, e.row, e.col) for e in entries]
    twice = {
        f"{e.par.lhs} {e.par.op} {e.par.rhs}" for e, c in zip(entries, cells) if cells.count(c) > 1
    }
    if twice:
        raise SEMError(f"parameter(s) listed twice: {', '.join(sorted(twice))}")
    # lavaan's int.ov.free: an observed intercept not listed is free
    listed = {e.row for e in entries if e.mat == "N"}
    entries += [
        _Entry(Parameter(v, "~1"), "N", i, 0) for i, v in enumerate(observed) if i not in listed
    ]
    return _Model(observed, latent, tuple(entries))


# --------------------------------------------------------------------------- ML machinery


def _discrepancy(model: _Model, x: Array, mo: _Moments) -> float:
    imp = model.implied(x)
    if imp is None:
        return math.inf
    return _group_discrepancy(_as_cfa(imp.sigma, imp.mu), mo, True)


def _entry_derivatives(model: _Model, imp: _Implied) -> tuple[Array, Array]:
    """dΣ/dθ (n, p, p) and dμ/dθ (n, p) for every entry, fixed ones included.

    With A = (I - B)⁻¹, G = ΛA, K = AΨG' and a = Aα: a loading Λ_ij and a path B_ij both
    change Σ by u K_j' + K_j u' and μ by u a_j, with u = e_i for Λ and u = G_i for B."""
    p, n = len(model.observed), len(model.entries)
    g = imp.g
    k_mat = imp.inv_ib @ imp.psi @ g.T
    a = imp.inv_ib @ imp.alpha
    d_sigma, d_mu = np.zeros((n, p, p)), np.zeros((n, p))
    eye = np.eye(p)
    for mat, left in (("L", eye), ("B", g.T)):
        k, rows, cols = model.index[mat]
        u = left[rows]  # e_i or G_i, one per entry
        outer = u[:, :, None] * k_mat[cols][:, None, :]
        d_sigma[k] = outer + outer.transpose(0, 2, 1)
        d_mu[k] = u * a[cols][:, None]
    k, rows, cols = model.index["P"]
    outer = g.T[rows][:, :, None] * g.T[cols][:, None, :]
    off = (rows != cols)[:, None, None]  # a covariance enters Σ twice, a variance once
    d_sigma[k] = outer + off * outer.transpose(0, 2, 1)
    k, rows, cols = model.index["T"]
    d_sigma[k, rows, cols] = 1.0
    d_sigma[k, cols, rows] = 1.0
    k, rows, _ = model.index["N"]
    d_mu[k] = eye[rows]
    k, rows, _ = model.index["A"]
    d_mu[k] = g.T[rows]
    return d_sigma, d_mu


def _derivatives(model: _Model, imp: _Implied) -> tuple[Array, Array]:
    """dΣ/dx and dμ/dx over the free vector: entries sharing a label add up."""
    d_sigma, d_mu = _entry_derivatives(model, imp)
    free = model.slots >= 0
    slots = model.slots[free]
    out_s = np.zeros((model.n_free, *d_sigma.shape[1:]))
    out_m = np.zeros((model.n_free, d_mu.shape[1]))
    np.add.at(out_s, slots, d_sigma[free])
    np.add.at(out_m, slots, d_mu[free])
    return out_s, out_m


def _gradient(model: _Model, x: Array, mo: _Moments) -> Array:
    """dF/dx = tr(W dΣ) + h'dμ, W = Σ⁻¹(Σ - S - dd')Σ⁻¹, h = -2Σ⁻¹d, d = ȳ - μ."""
    imp = model.implied(x)
    if imp is None:
        return np.zeros(model.n_free)
    inv = np.linalg.inv(imp.sigma)
    d = mo.mean - imp.mu
    w = inv - inv @ (mo.cov + np.outer(d, d)) @ inv
    d_sigma, d_mu = _derivatives(model, imp)
    return np.asarray(np.einsum("kij,ij->k", d_sigma, w) - 2 * d_mu @ (inv @ d))


def _information(model: _Model, x: Array) -> Array:
    """Expected information per observation: ½ tr(Σ⁻¹Σ_a Σ⁻¹Σ_b) + μ_a'Σ⁻¹μ_b."""
    imp = model.implied(x)
    if imp is None:
        return np.eye(model.n_free)
    inv = np.linalg.inv(imp.sigma)
    d_sigma, d_mu = _derivatives(model, imp)
    prod = inv @ d_sigma
    return np.asarray(0.5 * np.einsum("aij,bji->ab", prod, prod) + d_mu @ inv @ d_mu.T)


def _start(model: _Model, mo: _Moments) -> Array:
    """lavaan's simple starts: free loadings 1, paths 0, latent variances 0.05, residual
    variances half the observed ones, intercepts the sample means; a given start wins."""
    x = np.full(model.n_free, np.nan)
    for e, k in zip(model.entries, model.slots):
        if k < 0 or not np.isnan(x[k]):
            continue
        if e.par.start is not None:
            x[k] = e.par.start
        elif e.mat == "L":
            x[k] = 1.0
        elif e.mat in "PT" and e.row == e.col:
            x[k] = 0.05 if e.mat == "P" else 0.5 * mo.cov[e.row, e.row]
        else:
            x[k] = mo.mean[e.row] if e.mat == "N" else 0.0
    return x


def _minimise(model: _Model, x0: Array, mo: _Moments) -> tuple[Array, bool, int]:
    """Trust-region Newton on F with the expected Hessian 2·I, to |dF/dθ| ≈ 1e-10."""
    if not math.isfinite(_discrepancy(model, x0, mo)):
        raise SEMError(
            "the start values give a model-implied covariance matrix that is not positive "
            "definite; give start values (Parameter.start) for the variances"
        )
    return newton_minimise(
        lambda x: _discrepancy(model, x, mo),
        lambda x: _gradient(model, x, mo),
        lambda x: 2.0 * _information(model, x),
        x0,
    )


# --------------------------------------------------------------------------- results


def _fit_measures(model: _Model, x: Array, mo: _Moments) -> dict[str, float]:
    """lavaan's fitMeasures, from the CFA engine's helpers on the implied (Σ, μ)."""
    p, npar, n = len(model.observed), model.n_free, mo.n
    imp = model.implied(x)
    assert imp is not None  # the optimiser never leaves a finite F
    fitted = _as_cfa(imp.sigma, imp.mu)
    f = _group_discrepancy(fitted, mo, True)
    # the baseline (independence) model: Σ = diag(S), μ = ȳ; the saturated one: Σ = S
    base_chisq = n * _group_discrepancy(_as_cfa(np.diag(np.diag(mo.cov)), mo.mean), mo, True)
    return ml_fit_measures(
        MLFit(
            f, n, 1, npar, p * (p + 3) / 2 - npar, base_chisq, p * (p - 1) / 2,
            _group_logl(fitted, mo, True), _group_logl(_as_cfa(mo.cov, mo.mean), mo, True),
            _srmr(fitted, mo, True),
        )
    )  # fmt: skip


def _std_all(model: _Model, imp: _Implied, est: Array) -> Array:
    """lavaan's std.all: loadings and paths in SD units of the total variances, variances
    as shares of the total, covariances as correlations of the (residual) variances."""
    sd_ov, sd_lv = np.sqrt(np.diag(imp.sigma)), np.sqrt(np.diag(imp.veta))
    var = {"P": np.diag(imp.psi), "T": np.diag(imp.theta)}
    total = {"P": np.diag(imp.veta), "T": np.diag(imp.sigma)}
    scale = np.full(len(est), np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        for mat, (num, den) in {"L": (sd_lv, sd_ov), "B": (sd_lv, sd_lv)}.items():
            k, rows, cols = model.index[mat]
            scale[k] = num[cols] / den[rows]
        for mat in "PT":
            k, rows, cols = model.index[mat]
            off = 1 / np.sqrt(var[mat][rows] * var[mat][cols])
            scale[k] = np.where(rows == cols, 1 / total[mat][rows], off)
        for mat, sd in (("N", sd_ov), ("A", sd_lv)):
            k, rows, _ = model.index[mat]
            scale[k] = 1 / sd[rows]
        return np.asarray(est * scale)


def _param_table(model: _Model, x: Array, vcov: Array) -> pd.DataFrame:
    imp = model.implied(x)
    assert imp is not None
    se_free = np.sqrt(np.clip(np.diag(vcov), 0, None))
    est = model.values(x)
    se = np.where(model.slots >= 0, se_free[np.maximum(model.slots, 0)], 0.0)
    pars = [e.par for e in model.entries]
    table = pd.DataFrame({"lhs": [q.lhs for q in pars], "op": [q.op for q in pars]})
    table["rhs"] = [q.rhs for q in pars]
    table["est"], table["se"] = est, se
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(se > 0, est / np.where(se > 0, se, 1.0), np.nan)
    table["z"], table["p"] = z, 2 * stats.norm.sf(np.abs(z))
    table["std_all"] = _std_all(model, imp, est)
    return table


@dataclass(frozen=True)
class SEMResult:
    """A fitted SEM in lavaan's vocabulary.

    ``params`` has ``parameterEstimates`` columns (lhs, op, rhs, est, se, z, p) and
    ``std_all`` from ``standardizedSolution``; ``fit`` uses ``fitMeasures`` names;
    ``reading`` is a plain-language summary (panel models only); ``notes`` lists problems
    (non-convergence, negative variances), each also issued as a warning.
    """

    params: pd.DataFrame
    fit: dict[str, float]
    converged: bool
    notes: list[str]
    n: int
    n_dropped: int
    iterations: int
    sample_cov: pd.DataFrame
    implied_cov: pd.DataFrame
    reading: str = ""
    _x: Array = field(default_factory=lambda: np.zeros(0), repr=False)

    def row(self, lhs: str, op: str, rhs: str = "") -> pd.Series:
        """The parameter ``lhs op rhs`` of ``params``.

        >>> import pandas as pd
        >>> d = pd.DataFrame({"a": [1.0, 2, 4, 3], "b": [2.0, 1, 3, 5]})
        >>> res = sem(d, [Parameter("a", "~~", "a"), Parameter("b", "~~", "b")])
        >>> round(float(res.row("a", "~~", "a")["est"]), 4)  # the biased variance of a
        1.25
        """
        p = self.params
        hit = p[(p["lhs"] == lhs) & (p["op"] == op) & (p["rhs"] == rhs)]
        if len(hit) != 1:
            raise KeyError(f"{lhs} {op} {rhs}".strip())
        return hit.iloc[0]


def _problems(table: pd.DataFrame, converged: bool) -> list[str]:
    notes = []
    if not converged:
        notes.append("the optimiser did not converge; estimates are not trustworthy")
    var = table[(table["op"] == "~~") & (table["lhs"] == table["rhs"]) & (table["se"] > 0)]
    negative = list(var[var["est"] < 0]["lhs"])
    if negative:
        notes.append(f"negative variance(s): {', '.join(negative)} (an improper solution)")
    for note in notes:
        warnings.warn(note, RuntimeWarning, stacklevel=4)
    return notes


def _result(model: _Model, x: Array, mo: _Moments, dropped: int, ok: bool, nit: int) -> SEMResult:
    info = _information(model, x)
    eig = np.linalg.eigvalsh(info)
    if eig[0] <= 1e-10 * eig[-1]:
        raise SEMError(
            "model not identified: the information matrix is singular at the estimate "
            "(a parameter is not determined by the data)"
        )
    vcov = np.asarray(np.linalg.inv(mo.n * info), dtype=float)
    table = _param_table(model, x, vcov)
    imp = model.implied(x)
    assert imp is not None
    ov = list(model.observed)
    return SEMResult(
        params=table,
        fit=_fit_measures(model, x, mo),
        converged=ok,
        notes=_problems(table, ok),
        n=mo.n,
        n_dropped=dropped,
        iterations=nit,
        sample_cov=pd.DataFrame(mo.cov, index=ov, columns=ov),
        implied_cov=pd.DataFrame(imp.sigma, index=ov, columns=ov),
        _x=x,
    )


# --------------------------------------------------------------------------- entry point


def _complete_moments(data: pd.DataFrame, observed: Sequence[str]) -> tuple[_Moments, int]:
    """Moments of the complete rows and the rows dropped; data problems raise SEMError."""
    try:
        moments, _, dropped = _sample_moments(data, observed, None)
    except SEMError:
        raise
    except CFAError as exc:  # the CFA engine's checks, re-raised as ours for one except clause
        raise SEMError(str(exc)) from exc
    return moments[0], dropped


def sem(data: pd.DataFrame, parameters: Sequence[Parameter]) -> SEMResult:
    """Fit a structural equation model by maximum likelihood, as lavaan's ``lavaan()``.

    ``parameters`` lists every free or fixed parameter (see :class:`Parameter`); latent
    variables are the left-hand sides of ``=~``, every other name is a column of ``data``.
    Unlisted parameters are 0, except the observed intercepts, which are free. Rows with a
    missing value are dropped (listwise); ``n`` is the number used.

    >>> import numpy as np, pandas as pd
    >>> rng = np.random.default_rng(3)
    >>> f = rng.normal(size=(500, 1))
    >>> d = pd.DataFrame(f * [1.0, 0.8, 0.6] + rng.normal(scale=0.5, size=(500, 3)),
    ...                  columns=["a", "b", "c"])
    >>> model = [Parameter("f", "=~", v, fixed=1.0 if v == "a" else None) for v in "abc"]
    >>> model += [Parameter(v, "~~", v) for v in ["a", "b", "c", "f"]]
    >>> res = sem(d, model)
    >>> int(res.fit["df"]), round(res.fit["chisq"], 8)  # just identified
    (0, 0.0)
    """
    model = _build(parameters)
    mo, dropped = _complete_moments(data, model.observed)
    p = len(model.observed)
    known = p * (p + 3) // 2
    if model.n_free > known:
        raise SEMError(
            f"model not identified: {model.n_free} free parameters but only {known} sample "
            "moments (variances, covariances and means)"
        )
    x, ok, nit = _minimise(model, _start(model, mo), mo)
    return _result(model, x, mo, dropped, ok, nit)


# --------------------------------------------------------------------------- panel models


def _check_panel(
    data: pd.DataFrame, x: Sequence[str], y: Sequence[str], waves: Sequence[object] | None
) -> list[str]:
    """The wave labels; every problem with the columns raises, naming its cause."""
    x, y = list(x), list(y)
    if len(x) != len(y):
        raise SEMError(f"x has {len(x)} wave column(s) but y has {len(y)}; give one per wave")
    if len(x) < 3:
        raise SEMError(
            f"the RI-CLPM needs at least 3 waves to separate the random intercepts from the "
            f"within-person dynamics; got {len(x)}"
        )
    both = sorted(set(x) & set(y))
    repeated = [v for v in dict.fromkeys(x + y) if (x + y).count(v) > 1]
    if both or repeated:
        raise SEMError(f"column(s) used more than once: {', '.join(both or repeated)}")
    missing = [v for v in x + y if v not in data.columns]
    if missing:
        raise SEMError(f"column(s) not in the data: {', '.join(missing)}")
    labels = [str(w) for w in (range(1, len(x) + 1) if waves is None else waves)]
    if len(labels) != len(x) or len(set(labels)) != len(labels):
        raise SEMError(f"waves must give {len(x)} distinct labels, one per wave column")
    return labels


def _panel_model(
    x: Sequence[str], y: Sequence[str], waves: Sequence[str], data: pd.DataFrame, *, ri: bool
) -> list[Parameter]:
    """Hamaker et al.'s (2015) lavaan syntax, as parameters (the CLPM without the RIs)."""
    wx, wy = [f"wx{w}" for w in waves], [f"wy{w}" for w in waves]
    # start near the solution (half the variance to each of RI and within part), since
    # lavaan's 0.05 for every latent variance is far from it for outcomes with SD 10
    var = data[list(x) + list(y)].var().to_numpy(dtype=float)
    half = dict(zip(wx + wy, (0.5 if ri else 1.0) * var))
    pars: list[Parameter] = []
    if ri:
        pars += [Parameter("RIx", "=~", v, fixed=1.0) for v in x]
        pars += [Parameter("RIy", "=~", v, fixed=1.0) for v in y]
    pars += [Parameter(w, "=~", v, fixed=1.0) for w, v in zip(wx + wy, list(x) + list(y))]
    for t in range(1, len(waves)):
        for lhs in (wx[t], wy[t]):
            pars += [Parameter(lhs, "~", wx[t - 1]), Parameter(lhs, "~", wy[t - 1])]
    pars += [Parameter(a, "~~", b) for a, b in zip(wx, wy)]
    if ri:
        half_x, half_y = 0.5 * var[: len(x)].mean(), 0.5 * var[len(x) :].mean()
        pars += [Parameter("RIx", "~~", "RIx", start=half_x)]
        pars += [Parameter("RIy", "~~", "RIy", start=half_y), Parameter("RIx", "~~", "RIy")]
    pars += [Parameter(w, "~~", w, start=half[w]) for w in wx + wy]
    pars += [Parameter(v, "~~", v, fixed=0.0) for v in list(x) + list(y)]
    if ri:  # the random intercepts are uncorrelated with the wave-1 within deviations
        pars += [Parameter(r, "~~", w, fixed=0.0) for r in ("RIx", "RIy") for w in (wx[0], wy[0])]
    return pars


def _lag_sentence(
    rows: pd.DataFrame, cause: str, effect: str, waves: Sequence[str], ri: bool
) -> str:
    """One cross-lagged direction in words; b is in units of effect per unit of cause."""
    lo, hi = rows["est"] - _Z95 * rows["se"], rows["est"] + _Z95 * rows["se"]
    parts = [
        f"wave {a} to {b}: b = {e:.2f}, 95% CI {l_:.2f} to {h:.2f}"
        for a, b, e, l_, h in zip(waves[:-1], waves[1:], rows["est"], lo, hi)
    ]
    detail = "; ".join(parts)
    up, down = int((lo > 0).sum()), int((hi < 0).sum())
    # with random intercepts a deviation is from the patient's own level, else from the mean
    usual = "than usual" if ri else "than average"
    start = f"{'Within patients, h' if ri else 'H'}igher {cause} {usual} at one wave"
    if up == down == 0:
        return f"{start} does not detectably predict {effect} at the next ({detail})."
    sign = "higher" if up >= down else "lower"
    share = "" if max(up, down) == len(rows) else f" at {max(up, down)} of {len(rows)} lags"
    return f"{start} goes with {sign} {effect} {usual} at the next{share} ({detail})."


def _p_text(p: float) -> str:
    return "p < .001" if p < 0.001 else f"p = {p:.3f}"


def _reading(res: SEMResult, names: tuple[str, str], waves: Sequence[str], ri: bool) -> str:
    p = res.params
    lags = p[p["op"] == "~"]
    within = {v: [f"w{v}{w}" for w in waves] for v in "xy"}
    # rows of one path type (cause -> effect), in wave order: lhs at t, rhs at t - 1
    pick = {
        c + e: lags[lags["lhs"].isin(within[e][1:]) & lags["rhs"].isin(within[c][:-1])]
        for c in "xy"
        for e in "xy"
    }
    x_name, y_name = names
    auto = {v: (pick[v + v]["est"].min(), pick[v + v]["est"].max()) for v in "xy"}
    out = [
        _lag_sentence(pick["xy"], x_name, y_name, waves, ri),
        _lag_sentence(pick["yx"], y_name, x_name, waves, ri),
        "Carry-over (autoregression) from one wave to the next: "
        f"{x_name} b = {auto['x'][0]:.2f} to {auto['x'][1]:.2f}, "
        f"{y_name} b = {auto['y'][0]:.2f} to {auto['y'][1]:.2f}.",
    ]
    if ri:
        r = res.row("RIx", "~~", "RIy")
        sign = "higher" if r["std_all"] > 0 else "lower"
        out.append(
            f"Between patients, those with higher {x_name} on average have {sign} "
            f"{y_name} on average (r = {r['std_all']:.2f}, {_p_text(float(r['p']))})."
        )
    else:
        out.append(
            "Without random intercepts these lagged effects mix stable differences between "
            "patients with change within them; prefer the RI-CLPM when its fit is better."
        )
    return " ".join(out)


def _panel(
    data: pd.DataFrame,
    x: Sequence[str],
    y: Sequence[str],
    waves: Sequence[object] | None,
    names: tuple[str, str],
    *,
    ri: bool,
) -> SEMResult:
    labels = _check_panel(data, x, y, waves)
    # constant or non-numeric columns raise here, naming the column, before any start value
    _complete_moments(data, list(x) + list(y))
    res = sem(data, _panel_model(x, y, labels, data, ri=ri))
    return replace(res, reading=_reading(res, names, labels, ri))


def riclpm(
    data: pd.DataFrame,
    x: Sequence[str],
    y: Sequence[str],
    *,
    waves: Sequence[object] | None = None,
    names: tuple[str, str] = ("x", "y"),
) -> SEMResult:
    """The random-intercept cross-lagged panel model (Hamaker, Kuiper & Grasman, 2015).

    ``x`` and ``y`` are the wave columns of the two measures, in time order (e.g. alliance
    and symptoms at sessions 1..T, T ≥ 3). Random intercepts ``RIx``, ``RIy`` (loadings 1)
    hold each patient's stable level; ``wx<t>``, ``wy<t>`` are the deviations from it at
    wave t (``waves`` gives the labels, default 1..T), with autoregressive and cross-lagged
    paths between consecutive waves, free at every lag as in lavaan's usual syntax. The
    within parts covary at wave 1 and their residuals at later waves; ``RIx ~~ RIy`` is free
    and the intercepts are uncorrelated with the wave-1 deviations; observed means are free.
    ``names`` are the measures' names for ``reading``.

    >>> import numpy as np, pandas as pd
    >>> rng = np.random.default_rng(11)
    >>> stable = rng.normal(size=(400, 2))
    >>> cols = {f"{v}{t}": stable[:, k] + rng.normal(size=400) for k, v in enumerate("ab")
    ...         for t in (1, 2, 3)}
    >>> res = riclpm(pd.DataFrame(cols), ["a1", "a2", "a3"], ["b1", "b2", "b3"],
    ...              names=("alliance", "symptoms"))
    >>> res.reading.startswith("Within patients, higher alliance than usual")
    True
    """
    return _panel(data, x, y, waves, names, ri=True)


def clpm(
    data: pd.DataFrame,
    x: Sequence[str],
    y: Sequence[str],
    *,
    waves: Sequence[object] | None = None,
    names: tuple[str, str] = ("x", "y"),
) -> SEMResult:
    """The traditional cross-lagged panel model: :func:`riclpm` without random intercepts
    (their variances and covariance fixed to 0), so nested in it with three more df.

    >>> import numpy as np, pandas as pd
    >>> rng = np.random.default_rng(11)
    >>> d = pd.DataFrame(rng.normal(size=(300, 6)), columns=["a1", "a2", "a3", "b1", "b2", "b3"])
    >>> int(clpm(d, ["a1", "a2", "a3"], ["b1", "b2", "b3"]).fit["df"])
    4
    """
    return _panel(data, x, y, waves, names, ri=False)
