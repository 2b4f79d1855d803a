"""Maximum-likelihood confirmatory factor analysis, exactly as lavaan defines it.

Why our own engine: semopy's ML objective reproduces lavaan's chi-square, but its RMSEA
divides by N - 1 and its FIML statistics are wrong (``python_peers_results.json`` in the
shared oracles), and it is not a dependency of ours. A CFA needs little: the data enter only
through each group's biased sample covariance S (divisor N), its means and N, so a few matrix
functions and one scipy optimiser give lavaan 0.6's numbers (``estimator = "ML"``,
``likelihood = "normal"``, ``information = "expected"``) to 1e-6, on 100 rows or 100,000.

The model is ``Σ = Λ Φ Λ' + Θ`` (and ``μ = ν + Λ α`` with a mean structure); the fit function
is lavaan's ``F = log|Σ| + tr(S Σ⁻¹) - log|S| - p (+ (ȳ - μ)' Σ⁻¹ (ȳ - μ))``, the test
statistic ``chisq = Σ_g N_g F_g``. ``measurement_invariance`` fits lavaan's configural,
metric, scalar and strict models across groups.

>>> import numpy as np, pandas as pd
>>> rng = np.random.default_rng(1)
>>> f = rng.normal(size=(400, 1))
>>> data = pd.DataFrame(f @ [[0.8, 0.7, 0.6, 0.5]] + rng.normal(scale=0.6, size=(400, 4)),
...                     columns=["a", "b", "c", "d"])
>>> fit = cfa(data, one_factor(["a", "b", "c", "d"]))
>>> fit.converged, int(fit.fit["df"])
(True, 2)
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import NamedTuple

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from scipy import optimize, stats

from alliance.research.psychometrics.reliability import PsychometricsError

Array = NDArray[np.float64]
ModelSpec = Mapping[str, Sequence[str]]

__all__ = [
    "CFAError",
    "CFAResult",
    "HeywoodWarning",
    "InvarianceResult",
    "bifactor_omega",
    "cfa",
    "factor_omegas",
    "measurement_invariance",
    "one_factor",
]

_GRAD_TOL = 1e-10  # on F, whose scale is O(1): estimates then sit ~1e-10 from the optimum
_CONVERGED_GRAD = 1e-6  # max |dF/dθ| we still call converged
_EQUAL = frozenset({"loadings", "intercepts", "residuals"})


class CFAError(PsychometricsError):
    """The data or the model cannot be fitted; the message names the cause."""


class HeywoodWarning(UserWarning):
    """An improper solution: a negative variance or a standardized loading beyond ±1."""


def one_factor(items: Sequence[str], name: str = "f") -> dict[str, list[str]]:
    """A model spec with every item on one factor.

    >>> one_factor(["x1", "x2", "x3"])
    {'f': ['x1', 'x2', 'x3']}
    """
    return {name: list(items)}


# --------------------------------------------------------------------------- parameter table


@dataclass(frozen=True)
class _Par:
    """One parameter: matrix L (Λ), P (Φ), T (Θ), N (ν) or A (α) at (row, col) of a group.

    Free parameters with the same non-empty ``label`` share one value (lavaan's group.equal).
    """

    lhs: str
    op: str
    rhs: str
    mat: str
    row: int
    col: int
    free: bool
    value: float = 0.0
    group: int = 0
    label: str = ""


class _Mats(NamedTuple):
    lam: Array
    phi: Array
    theta: Array
    nu: Array
    alpha: Array

    @property
    def sigma(self) -> Array:
        return np.asarray(self.lam @ self.phi @ self.lam.T + self.theta)

    @property
    def mu(self) -> Array:
        return np.asarray(self.nu + self.lam @ self.alpha)


@dataclass(frozen=True)
class _Moments:
    cov: Array
    mean: Array
    n: int


@dataclass(frozen=True)
class _Structure:
    observed: tuple[str, ...]
    factors: tuple[str, ...]
    pars: tuple[_Par, ...]
    n_groups: int = 1
    means: bool = False

    @cached_property
    def slots(self) -> tuple[int, ...]:
        """Position of each parameter in the free vector x; -1 where fixed."""
        seen: dict[str, int] = {}
        out = []
        for k, q in enumerate(self.pars):
            if q.free:
                out.append(seen.setdefault(q.label or f"#{k}", len(seen)))
            else:
                out.append(-1)
        return tuple(out)

    @property
    def n_free(self) -> int:
        return max(self.slots, default=-1) + 1

    def local(self, g: int) -> list[tuple[_Par, int]]:
        """The free parameters of group g with their positions in x."""
        return [(q, k) for q, k in zip(self.pars, self.slots) if q.group == g and k >= 0]

    def matrices(self, x: Array, g: int = 0) -> _Mats:
        """Λ, Φ, Θ, ν, α of group g with the free parameters set to x."""
        p, m = len(self.observed), len(self.factors)
        mats = {
            "L": np.zeros((p, m)),
            "P": np.zeros((m, m)),
            "T": np.zeros((p, p)),
            "N": np.zeros((p, 1)),
            "A": np.zeros((m, 1)),
        }
        for q, k in zip(self.pars, self.slots):
            if q.group != g:
                continue
            v = float(x[k]) if k >= 0 else q.value
            mats[q.mat][q.row, q.col] = v
            if q.mat in "PT":
                mats[q.mat][q.col, q.row] = v
        return _Mats(mats["L"], mats["P"], mats["T"], mats["N"][:, 0], mats["A"][:, 0])


def _check_spec(model: ModelSpec, general: str | None) -> dict[str, list[str]]:
    spec = {str(f): [str(i) for i in items] for f, items in model.items()}
    if not spec:
        raise CFAError("the model has no factors")
    if general is not None:
        if general in spec:
            raise CFAError(f"bifactor: the general factor name {general!r} is already a factor")
        everything = list(dict.fromkeys(i for items in spec.values() for i in items))
        spec = {general: everything, **spec}
    for f, items in spec.items():
        if len(set(items)) != len(items):
            raise CFAError(f"factor {f!r} lists an indicator twice")
        clash = set(items) & set(spec)
        if clash:
            raise CFAError(f"factor {f!r}: {sorted(clash)} are factors, not observed columns")
    return spec


def _check_identified(spec: dict[str, list[str]], orthogonal: bool) -> None:
    for f, items in spec.items():
        if len(items) == 1:
            raise CFAError(
                f"model not identified: factor {f!r} has one indicator ({items[0]!r}); "
                "its variance and the indicator's residual variance cannot be separated"
            )
        alone = orthogonal or len(spec) == 1
        if len(items) == 2 and alone:
            raise CFAError(
                f"model not identified: factor {f!r} has two indicators and no covariance "
                "with another factor; give it a third indicator or let factors correlate"
            )


def _residual_pairs(
    pairs: Sequence[tuple[str, str]], pos: Mapping[str, int]
) -> list[tuple[int, int]]:
    """Validated residual covariances as (row, col) of Θ's lower triangle."""
    out: list[tuple[int, int]] = []
    for a, b in pairs:
        for v in (a, b):
            if v not in pos:
                raise CFAError(f"residual covariance {a} ~~ {b}: {v!r} is not an indicator")
        if a == b:
            raise CFAError(f"residual covariance {a} ~~ {b} is a variance, already free")
        i, k = sorted((pos[a], pos[b]))
        if (k, i) in out:
            raise CFAError(f"residual covariance {a} ~~ {b} is listed twice")
        out.append((k, i))
    return out


def _group_block(
    spec: dict[str, list[str]],
    observed: tuple[str, ...],
    resid: list[tuple[int, int]],
    g: int,
    *,
    std_lv: bool,
    orthogonal: bool,
    means: bool,
    equal: frozenset[str],
) -> list[_Par]:
    """One group's parameters in lavaan's order: =~, residual ~~, latent ~~, ~1."""
    factors, pos = tuple(spec), {v: k for k, v in enumerate(observed)}

    def tag(kind: str, *idx: int) -> str:
        return f"{kind}{idx}" if kind in equal else ""

    pars: list[_Par] = []
    for j, f in enumerate(factors):
        for k, item in enumerate(spec[f]):
            fix = k == 0 and not std_lv  # lavaan's default: first loading fixed to 1
            i = pos[item]
            lab = "" if fix else tag("loadings", i, j)
            pars.append(_Par(f, "=~", item, "L", i, j, not fix, float(fix), g, lab))
    pars += [
        _Par(v, "~~", v, "T", i, i, True, 0.0, g, tag("residuals", i))
        for i, v in enumerate(observed)
    ]
    pars += [_Par(observed[c], "~~", observed[r], "T", r, c, True, 0.0, g) for r, c in resid]
    pars += [_Par(f, "~~", f, "P", j, j, not std_lv, 1.0, g) for j, f in enumerate(factors)]
    for j in range(len(factors)):
        for k in range(j + 1, len(factors)):
            pars.append(_Par(factors[j], "~~", factors[k], "P", k, j, not orthogonal, 0.0, g))
    if means:
        pars += [
            _Par(v, "~1", "", "N", i, 0, True, 0.0, g, tag("intercepts", i))
            for i, v in enumerate(observed)
        ]
        # with equal intercepts the factor means are free beyond the first group
        free_mean = "intercepts" in equal and g > 0
        pars += [_Par(f, "~1", "", "A", j, 0, free_mean, 0.0, g) for j, f in enumerate(factors)]
    return pars


def _build_structure(
    spec: dict[str, list[str]],
    *,
    std_lv: bool,
    orthogonal: bool,
    residual_covariances: Sequence[tuple[str, str]],
    n_groups: int = 1,
    means: bool = False,
    equal: frozenset[str] = frozenset(),
) -> _Structure:
    observed = tuple(dict.fromkeys(i for items in spec.values() for i in items))
    resid = _residual_pairs(residual_covariances, {v: k for k, v in enumerate(observed)})
    pars = [
        par
        for g in range(n_groups)
        for par in _group_block(
            spec,
            observed,
            resid,
            g,
            std_lv=std_lv,
            orthogonal=orthogonal,
            means=means,
            equal=equal,
        )
    ]
    return _Structure(observed, tuple(spec), tuple(pars), n_groups, means)


# --------------------------------------------------------------------------- data


def _numeric_block(data: pd.DataFrame, observed: Sequence[str]) -> Array:
    missing = [v for v in observed if v not in data.columns]
    if missing:
        raise CFAError(f"column(s) not in the data: {', '.join(missing)}")
    try:
        block = data.loc[:, list(observed)].apply(pd.to_numeric)
    except (TypeError, ValueError) as exc:
        raise CFAError(f"indicator columns must be numeric: {exc}") from exc
    return np.asarray(block.to_numpy(dtype=float), dtype=float)


def _moments(x: Array, observed: Sequence[str], where: str) -> _Moments:
    """Mean and biased covariance (divisor N) of complete rows, checked for fitness."""
    n, p = x.shape
    if n < p + 1:
        raise CFAError(
            f"too few complete rows{where}: {n} after listwise deletion, need at least "
            f"{p + 1} (indicators + 1)"
        )
    mean = x.mean(axis=0)
    centred = x - mean
    s = centred.T @ centred / n
    scale = np.maximum(1.0, np.abs(mean)) ** 2
    constant = [v for v, var, c in zip(observed, np.diag(s), scale) if var <= 1e-14 * c]
    if constant:
        raise CFAError(f"constant column(s){where}, variance 0: {', '.join(constant)}")
    d = 1 / np.sqrt(np.diag(s))
    if np.linalg.eigvalsh(s * np.outer(d, d))[0] <= 1e-10:
        raise CFAError(
            f"the sample covariance matrix{where} is not positive definite (an indicator is "
            "a linear combination of others, or duplicated)"
        )
    return _Moments(s, mean, n)


def _sample_moments(
    data: pd.DataFrame, observed: Sequence[str], group: str | None
) -> tuple[list[_Moments], list[str], int]:
    """Per-group moments of the complete rows, the group names and the rows dropped."""
    values = _numeric_block(data, observed)
    keep = np.isfinite(values).all(axis=1)
    if group is None:
        return [_moments(values[keep], observed, "")], [], int((~keep).sum())
    if group not in data.columns:
        raise CFAError(f"group column {group!r} not in the data")
    labels = data[group].to_numpy()
    keep &= pd.notna(labels)
    names = list(dict.fromkeys(labels[keep]))  # lavaan: groups in order of appearance
    if len(names) < 2:
        raise CFAError(f"group column {group!r} has fewer than two groups")
    moments = [
        _moments(values[keep & (labels == name)], observed, f" in group {name!r}") for name in names
    ]
    return moments, [str(v) for v in names], int((~keep).sum())


# --------------------------------------------------------------------------- start values


def _three_indicator(s: Array, std_lv: bool) -> Array:
    """Closed-form one-factor loadings from a 3x3 covariance, with lavaan's sanity bounds."""
    s21, s31, s32 = s[1, 0], s[2, 0], s[2, 1]
    if s21 * s31 * s32 < 0:  # no proper solution: fall back to flat loadings
        return np.full(3, 0.7 if std_lv else 1.0)
    psi, lam = s21 * s31 / s32, np.array([1.0, s32 / s31, s32 / s21])
    low = 0.1 * s[0, 0]  # assume the marker's reliability is at least 0.1
    psi = min(max(psi, low), s[0, 0])
    bound = np.sqrt(np.diag(s)[1:] / low)
    lam[1:] = np.clip(lam[1:], -bound, bound)
    return lam * math.sqrt(psi) if std_lv else lam


def _fabin3(s: Array, std_lv: bool) -> Array:
    """Hägglund's (1982) FABIN3 instrumental-variable loadings, marker first, as lavaan starts."""
    nvar = s.shape[0]
    if nvar == 2:  # borrow a pseudo third indicator, as lavaan does
        extra = np.array([np.diag(s).mean(), s[1, 0]])
        s = np.block([[s, extra[:, None]], [extra[None, :], np.diag(s).max()]])
        return _three_indicator(s, std_lv)[:2]
    if nvar == 3:
        return _three_indicator(s, std_lv)
    lam = np.ones(nvar)
    for i in range(1, nvar):
        rest = [k for k in range(1, nvar) if k != i]
        w = np.linalg.lstsq(s[np.ix_(rest, rest)], s[rest, 0], rcond=None)[0]
        lam[i] = s[i, rest] @ w / (s[rest, 0] @ w)
    bound = np.sqrt(np.diag(s)[1:] / (0.1 * s[0, 0]))
    lam[1:] = np.clip(lam[1:], -bound, bound)
    if not std_lv:
        return lam
    # least-squares residual variances, then the factor variance, to rescale to var(F) = 1
    d = np.outer(lam, lam) / (lam @ lam)
    theta = np.linalg.solve(np.eye(nvar) - d * d, np.diag(s - d @ s @ d))
    psi = lam @ (s - np.diag(theta)) @ lam / (lam @ lam) ** 2
    return lam * math.copysign(math.sqrt(abs(psi)), psi)


def _start(
    structure: _Structure, spec: dict[str, list[str]], moments: list[_Moments], std_lv: bool
) -> Array:
    """lavaan's default start: FABIN3 loadings, half the observed variances, var(F) 0.05,
    the sample means; a parameter shared by groups starts at its first group's value."""
    pos = {v: k for k, v in enumerate(structure.observed)}
    x = np.full(structure.n_free, np.nan)
    for g, mo in enumerate(moments):
        s = mo.cov
        loadings: dict[tuple[str, str], float] = {}
        for f, items in spec.items():
            idx = [pos[i] for i in items]
            loadings.update(zip(((f, i) for i in items), _fabin3(s[np.ix_(idx, idx)], std_lv)))
        for q, k in structure.local(g):
            if not np.isnan(x[k]):
                continue
            if q.mat == "L":
                x[k] = loadings[(q.lhs, q.rhs)]
            elif q.mat == "T":
                x[k] = 0.5 * s[q.row, q.row] if q.row == q.col else 0.0
            elif q.mat == "P":
                x[k] = 0.05 if q.row == q.col else 0.0
            else:
                x[k] = mo.mean[q.row] if q.mat == "N" else 0.0
    return x


# --------------------------------------------------------------------------- ML machinery


def _group_discrepancy(m: _Mats, mo: _Moments, means: bool) -> float:
    """F_ML of one group; +inf where Σ is not positive definite (the optimiser backs off)."""
    sigma = m.sigma
    try:
        chol = np.linalg.cholesky(sigma)
    except np.linalg.LinAlgError:
        return math.inf
    logdet = 2.0 * float(np.log(np.diag(chol)).sum())
    half = np.linalg.solve(chol, mo.cov)
    trace = float(np.trace(np.linalg.solve(chol, half.T)))
    f = logdet + trace - float(np.linalg.slogdet(mo.cov)[1]) - float(len(mo.mean))
    if means:
        z = np.linalg.solve(chol, mo.mean - m.mu)
        f += float(z @ z)
    return f


def _weights(moments: Sequence[_Moments]) -> list[float]:
    total = sum(mo.n for mo in moments)
    return [mo.n / total for mo in moments]


def _objective(structure: _Structure, x: Array, moments: Sequence[_Moments]) -> float:
    """Σ_g (N_g / N) F_g, so that chisq = N times it."""
    return sum(
        w * _group_discrepancy(structure.matrices(x, g), mo, structure.means)
        for g, (w, mo) in enumerate(zip(_weights(moments), moments))
    )


def _sigma_inv(sigma: Array) -> Array | None:
    try:
        np.linalg.cholesky(sigma)
    except np.linalg.LinAlgError:
        return None
    return np.asarray(np.linalg.inv(sigma))


def _gradient_blocks(m: _Mats, mo: _Moments, means: bool) -> dict[str, Array] | None:
    """dF by matrix: with W = Σ⁻¹(Σ - S - dd')Σ⁻¹ and h = -2Σ⁻¹d, d = ȳ - μ:
    dΛ = 2WΛΦ + hα', dΦ = Λ'WΛ, dΘ = W, dν = h, dα = Λ'h."""
    inv = _sigma_inv(m.sigma)
    if inv is None:
        return None
    d = mo.mean - m.mu if means else np.zeros_like(mo.mean)
    w = inv - inv @ (mo.cov + np.outer(d, d)) @ inv
    h = -2 * inv @ d
    return {
        "L": 2 * w @ m.lam @ m.phi + np.outer(h, m.alpha),
        "P": m.lam.T @ w @ m.lam,
        "T": w,
        "N": h[:, None],
        "A": (m.lam.T @ h)[:, None],
    }


def _partial(blocks: dict[str, Array], q: _Par) -> float:
    twice = q.mat in "PT" and q.row != q.col  # a symmetric off-diagonal enters twice
    return float(blocks[q.mat][q.row, q.col]) * (2.0 if twice else 1.0)


def _gradient(structure: _Structure, x: Array, moments: Sequence[_Moments]) -> Array:
    grad = np.zeros(structure.n_free)
    for g, (w, mo) in enumerate(zip(_weights(moments), moments)):
        blocks = _gradient_blocks(structure.matrices(x, g), mo, structure.means)
        if blocks is None:
            return np.zeros(structure.n_free)
        for q, k in structure.local(g):
            grad[k] += w * _partial(blocks, q)
    return grad


def _derivatives(m: _Mats, pars: Sequence[_Par]) -> tuple[Array, Array]:
    """dΣ/dθ (q, p, p) and dμ/dθ (q, p) for the listed parameters of one group."""
    lam_phi = m.lam @ m.phi
    p = m.lam.shape[0]
    d_sigma, d_mu = np.zeros((len(pars), p, p)), np.zeros((len(pars), p))
    for k, q in enumerate(pars):
        if q.mat == "L":
            d_sigma[k, q.row, :] += lam_phi[:, q.col]
            d_sigma[k, :, q.row] += lam_phi[:, q.col]
            d_mu[k, q.row] = m.alpha[q.col]
        elif q.mat == "P":
            a, b = m.lam[:, q.row], m.lam[:, q.col]
            d_sigma[k] = np.outer(a, b) if q.row == q.col else np.outer(a, b) + np.outer(b, a)
        elif q.mat == "T":
            d_sigma[k, q.row, q.col] = d_sigma[k, q.col, q.row] = 1.0
        elif q.mat == "N":
            d_mu[k, q.row] = 1.0
        else:
            d_mu[k] = m.lam[:, q.row]
    return d_sigma, d_mu


def _group_information(m: _Mats, pars: Sequence[_Par]) -> Array:
    """Expected information per observation: ½ tr(Σ⁻¹Σ_a Σ⁻¹Σ_b) + μ_a'Σ⁻¹μ_b."""
    inv = _sigma_inv(m.sigma)
    if inv is None:
        return np.eye(len(pars))
    d_sigma, d_mu = _derivatives(m, pars)
    prod = inv @ d_sigma
    info = 0.5 * np.einsum("aij,bji->ab", prod, prod) + d_mu @ inv @ d_mu.T
    return np.asarray(info)


def _information(
    structure: _Structure, x: Array, moments: Sequence[_Moments], extra: Sequence[_Par] = ()
) -> Array:
    """Unit expected information over x (and any extra, group-specific parameters)."""
    size = structure.n_free + len(extra)
    total = np.zeros((size, size))
    for g, w in enumerate(_weights(moments)):
        local = structure.local(g)
        local += [(q, structure.n_free + k) for k, q in enumerate(extra) if q.group == g]
        pick = np.zeros((len(local), size))
        pick[np.arange(len(local)), [k for _, k in local]] = 1.0
        info = _group_information(structure.matrices(x, g), [q for q, _ in local])
        total += w * pick.T @ info @ pick
    return total


def _minimise(
    structure: _Structure, x0: Array, moments: Sequence[_Moments]
) -> tuple[Array, bool, int]:
    """Trust-region Newton on F with the expected Hessian 2·I, to |dF/dθ| ≈ 1e-10."""
    return newton_minimise(
        lambda x: _objective(structure, x, moments),
        lambda x: _gradient(structure, x, moments),
        lambda x: 2.0 * _information(structure, x, moments),
        x0,
    )


def newton_minimise(
    objective: Callable[[Array], float],
    gradient: Callable[[Array], Array],
    hessian: Callable[[Array], Array],
    x0: Array,
) -> tuple[Array, bool, int]:
    """Trust-region Newton with the expected-information Hessian (Fisher scoring in a trust
    region): the estimate, whether its gradient is below :data:`_CONVERGED_GRAD`, and the
    iterations. Shared by the CFA and SEM engines."""
    res = optimize.minimize(
        objective, x0, jac=gradient, hess=hessian, method="trust-exact",
        options={"gtol": _GRAD_TOL, "maxiter": 500},
    )  # fmt: skip
    x = np.asarray(res.x, dtype=float)
    grad = float(np.abs(gradient(x)).max(initial=0.0))
    ok = math.isfinite(objective(x)) and grad < _CONVERGED_GRAD
    return x, ok, int(res.nit)


# --------------------------------------------------------------------------- fit measures


def _rmsea_ci(chisq: float, df: float, n: int) -> tuple[float, float]:
    """90% CI: the noncentralities λ with P(χ²_df(λ) ≤ chisq) = 0.95 and 0.05."""

    def bound(level: float) -> float:
        def cdf_gap(lam: float) -> float:
            cdf = stats.ncx2.cdf(chisq, df, lam) if lam > 0 else stats.chi2.cdf(chisq, df)
            return float(cdf) - level

        if cdf_gap(0.0) < 0:
            return 0.0
        hi = max(chisq, 1.0)
        while cdf_gap(hi) > 0:
            hi *= 2
        lam = optimize.brentq(cdf_gap, 0.0, hi, xtol=1e-12, rtol=1e-14)
        return math.sqrt(lam / (n * df))

    return bound(0.95), bound(0.05)


def _group_logl(m: _Mats, mo: _Moments, means: bool) -> float:
    p = len(mo.mean)
    f = _group_discrepancy(m, mo, means) + float(np.linalg.slogdet(mo.cov)[1]) + p
    return -mo.n / 2 * (p * math.log(2 * math.pi) + f)


def _fit_measures(structure: _Structure, x: Array, moments: Sequence[_Moments]) -> dict[str, float]:
    p, ng, npar = len(structure.observed), len(moments), structure.n_free
    n = sum(mo.n for mo in moments)
    mats = [structure.matrices(x, g) for g in range(ng)]
    f_total = _objective(structure, x, moments)
    df = ng * (p * (p + 1) / 2 + (p if structure.means else 0)) - npar
    base_chisq = sum(
        mo.n * (float(np.log(np.diag(mo.cov)).sum()) - float(np.linalg.slogdet(mo.cov)[1]))
        for mo in moments
    )
    base_df = ng * p * (p - 1) / 2
    logl = sum(_group_logl(m, mo, structure.means) for m, mo in zip(mats, moments))
    unrestricted = sum(
        -mo.n / 2 * (p * math.log(2 * math.pi) + float(np.linalg.slogdet(mo.cov)[1]) + p)
        for mo in moments
    )
    srmr = sum(mo.n * _srmr(m, mo, structure.means) for m, mo in zip(mats, moments)) / n
    return ml_fit_measures(
        MLFit(f_total, n, ng, npar, df, base_chisq, base_df, logl, unrestricted, srmr)
    )


class MLFit(NamedTuple):
    """What lavaan's ML fit measures are computed from (per fit, summed over groups)."""

    f: float  # Σ_g (N_g / N) F_g
    n: int
    n_groups: int
    npar: int
    df: float
    base_chisq: float
    base_df: float
    logl: float
    unrestricted_logl: float
    srmr: float


def ml_fit_measures(fit: MLFit) -> dict[str, float]:
    """lavaan's ``fitMeasures`` of an ML fit, by lavaan's names (shared with :mod:`.sem`)."""
    chisq, df, n = fit.n * fit.f, fit.df, fit.n
    return {
        "npar": float(fit.npar),
        "fmin": fit.f / 2,  # lavaan reports half of F_ML
        "chisq": chisq,
        "df": df,
        "pvalue": float(stats.chi2.sf(chisq, df)) if df > 0 else math.nan,
        "baseline.chisq": fit.base_chisq,
        "baseline.df": fit.base_df,
        "baseline.pvalue": float(stats.chi2.sf(fit.base_chisq, fit.base_df)),
        **_incremental(chisq, df, fit.base_chisq, fit.base_df),
        "logl": fit.logl,
        "unrestricted.logl": fit.unrestricted_logl,
        "aic": -2 * fit.logl + 2 * fit.npar,
        "bic": -2 * fit.logl + fit.npar * math.log(n),
        **_rmsea(chisq, df, n, fit.n_groups),
        "srmr": fit.srmr,
        "ntotal": float(n),
    }


def _incremental(chisq: float, df: float, base_chisq: float, base_df: float) -> dict[str, float]:
    """CFI and TLI against the independence model, with lavaan's truncation at 0."""
    t1 = max(chisq - df, 0.0)
    t2 = max(chisq - df, base_chisq - base_df, 0.0)
    cfi = 1.0 if t2 == 0 else 1 - t1 / t2
    if df > 0:
        ratio = base_chisq / base_df
        tli = (ratio - chisq / df) / (ratio - 1)
    else:
        tli = 1.0
    return {"cfi": cfi, "tli": tli}


def _rmsea(chisq: float, df: float, n: int, n_groups: int) -> dict[str, float]:
    """RMSEA with N (not N - 1), times √G across groups, as lavaan 0.6 has it."""
    if df <= 0:  # a saturated model fits exactly: RMSEA 0, no test of close fit
        return {
            "rmsea": 0.0,
            "rmsea.ci.lower": 0.0,
            "rmsea.ci.upper": 0.0,
            "rmsea.pvalue": math.nan,
        }
    lower, upper = _rmsea_ci(chisq, df, n)
    root_g = math.sqrt(n_groups)
    return {
        "rmsea": math.sqrt(max(chisq - df, 0.0) / (df * n)) * root_g,
        "rmsea.ci.lower": lower * root_g,
        "rmsea.ci.upper": upper * root_g,
        # P(RMSEA ≤ 0.05): the test of close fit
        "rmsea.pvalue": float(stats.ncx2.sf(chisq, df, n * df * 0.05**2 / n_groups)),
    }


def _srmr(m: _Mats, mo: _Moments, means: bool) -> float:
    """Bentler's SRMR (lavaan's default): residuals scaled by the sample SDs, diagonal (and
    means, with a mean structure) included."""
    sd = np.sqrt(np.diag(mo.cov))
    resid = (mo.cov - m.sigma) / np.outer(sd, sd)
    parts = [resid[np.tril_indices_from(resid)]]
    if means:
        parts.append((mo.mean - m.mu) / sd)
    squares = np.concatenate(parts) ** 2
    return float(np.sqrt(squares.mean()))


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class CFAResult:
    """A fitted CFA, in lavaan's vocabulary.

    ``params`` has lavaan's ``parameterEstimates`` columns (lhs, op, rhs, est, se, z, p; and
    group, 1-based, with several groups) plus ``std_all`` from ``standardizedSolution``;
    ``fit`` uses ``fitMeasures`` names. ``heywood`` lists the variables of an improper
    solution (each problem is also in ``notes`` and issued as a ``HeywoodWarning``).
    ``sample_cov``/``implied_cov`` are stacked by group when there are several.
    """

    params: pd.DataFrame
    fit: dict[str, float]
    converged: bool
    heywood: list[str]
    notes: list[str]
    n: int
    n_dropped: int
    iterations: int
    groups: list[str]
    sample_cov: pd.DataFrame
    implied_cov: pd.DataFrame
    _structure: _Structure = field(repr=False)
    _x: Array = field(repr=False)
    _moments: list[_Moments] = field(repr=False)

    def modification_indices(self, *, sort: bool = False, minimum: float = 0.0) -> pd.DataFrame:
        """Score tests for each fixed-to-zero loading and (residual or factor) covariance.

        Columns as lavaan's ``modindices``: lhs, op, rhs, (group,) mi, epc, sepc_all.

        >>> import numpy as np, pandas as pd
        >>> rng = np.random.default_rng(0)
        >>> f = rng.normal(size=(300, 2))
        >>> y = np.c_[f[:, [0]] * [1, 0.8, 0.7], f[:, [1]] * [1, 0.8, 0.7]]
        >>> d = pd.DataFrame(y + rng.normal(size=(300, 6)), columns=list("abcdef"))
        >>> fit = cfa(d, {"f1": ["a", "b", "c"], "f2": ["d", "e", "f"]})
        >>> mi = fit.modification_indices()
        >>> list(mi.columns), len(mi)
        (['lhs', 'op', 'rhs', 'mi', 'epc', 'sepc_all'], 21)
        """
        table = _modification_indices(self._structure, self._x, self._moments)
        table = table[table["mi"] >= minimum]
        if sort:
            table = table.sort_values("mi", ascending=False, kind="stable")
        return table.reset_index(drop=True)

    def matrices(self, group: int = 0) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
        """The estimated Λ (loadings), Φ (factor covariances), Θ (residuals) of a group."""
        m = self._structure.matrices(self._x, group)
        ov, lv = list(self._structure.observed), list(self._structure.factors)
        return (
            pd.DataFrame(m.lam, index=ov, columns=lv),
            pd.DataFrame(m.phi, index=lv, columns=lv),
            pd.DataFrame(m.theta, index=ov, columns=ov),
        )


def _candidates(structure: _Structure) -> list[_Par]:
    """Parameters a score test can free: zero loadings and covariances, per group."""
    ov, lv = structure.observed, structure.factors
    out: list[_Par] = []
    for g in range(structure.n_groups):
        mine = [q for q in structure.pars if q.group == g]
        taken = {(q.mat, q.row, q.col) for q in mine}
        out += [
            _Par(f, "=~", v, "L", i, j, True, group=g)
            for j, f in enumerate(lv)
            for i, v in enumerate(ov)
            if ("L", i, j) not in taken
        ]
        out += [
            _Par(ov[j], "~~", ov[i], "T", i, j, True, group=g)
            for j in range(len(ov))
            for i in range(j + 1, len(ov))
            if ("T", i, j) not in taken
        ]
        out += [
            _Par(q.lhs, q.op, q.rhs, q.mat, q.row, q.col, True, group=g)
            for q in mine
            if q.mat == "P" and q.row != q.col and not q.free
        ]
    return out


def _modification_indices(
    structure: _Structure, x: Array, moments: Sequence[_Moments]
) -> pd.DataFrame:
    """MI = N g² / (4 V), EPC = -g / (2 V), V the candidate's information net of the model's."""
    cand = _candidates(structure)
    info = _information(structure, x, moments, cand)
    k = structure.n_free
    i11, i12 = info[:k, :k], info[:k, k:]
    v = np.diag(info[k:, k:]) - np.einsum("ka,ka->a", i12, np.linalg.solve(i11, i12))
    weights, grad, scale = _weights(moments), np.zeros(len(cand)), np.zeros(len(cand))
    for g, mo in enumerate(moments):
        m = structure.matrices(x, g)
        blocks = _gradient_blocks(m, mo, structure.means)
        assert blocks is not None  # Σ is positive definite at a converged estimate
        for a, q in enumerate(cand):
            if q.group == g:
                grad[a] = weights[g] * _partial(blocks, q)
                scale[a] = _std_scale(q, m)
    n = sum(mo.n for mo in moments)
    with np.errstate(divide="ignore", invalid="ignore"):
        mi, epc = n * grad**2 / (4 * v), -grad / (2 * v)
    table = pd.DataFrame({"lhs": [q.lhs for q in cand], "op": [q.op for q in cand]})
    table["rhs"] = [q.rhs for q in cand]
    if structure.n_groups > 1:
        table["group"] = [q.group + 1 for q in cand]
    table["mi"], table["epc"], table["sepc_all"] = mi, epc, epc * scale
    return table


def _std_scale(q: _Par, m: _Mats) -> float:
    """Factor taking a parameter to lavaan's std.all (covariances as correlations)."""
    sigma = np.diag(m.sigma)
    with np.errstate(invalid="ignore", divide="ignore"):
        if q.mat == "L":
            return float(np.sqrt(m.phi[q.col, q.col] / sigma[q.row]))
        if q.mat == "P":
            return float(1 / np.sqrt(m.phi[q.row, q.row] * m.phi[q.col, q.col]))
        if q.mat == "N":
            return float(1 / np.sqrt(sigma[q.row]))
        if q.mat == "A":
            return float(1 / np.sqrt(m.phi[q.row, q.row]))
        if q.row == q.col:
            return float(1 / sigma[q.row])
        return float(1 / np.sqrt(m.theta[q.row, q.row] * m.theta[q.col, q.col]))


def _param_table(structure: _Structure, x: Array, vcov: Array) -> pd.DataFrame:
    se_free = np.sqrt(np.clip(np.diag(vcov), 0, None))
    mats = [structure.matrices(x, g) for g in range(structure.n_groups)]
    pars, slots = structure.pars, structure.slots
    est = np.array([x[k] if k >= 0 else q.value for q, k in zip(pars, slots)], dtype=float)
    se = np.array([se_free[k] if k >= 0 else 0.0 for k in slots], dtype=float)
    table = pd.DataFrame({"lhs": [q.lhs for q in pars], "op": [q.op for q in pars]})
    table["rhs"] = [q.rhs for q in pars]
    if structure.n_groups > 1:
        table["group"] = [q.group + 1 for q in pars]
    table["est"], table["se"] = est, se
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(se > 0, est / np.where(se > 0, se, 1.0), np.nan)
    table["z"], table["p"] = z, 2 * stats.norm.sf(np.abs(z))
    table["std_all"] = [e * _std_scale(q, mats[q.group]) for q, e in zip(pars, est)]
    return table


def _heywood(
    table: pd.DataFrame, factors: Sequence[str], groups: Sequence[str]
) -> tuple[list[str], list[str]]:
    """Variables of an improper solution, and a sentence for each problem."""
    names: list[str] = []
    notes: list[str] = []
    for g, block in _by_group(table, len(groups)):
        where = f" in group {groups[g]!r}" if groups else ""
        variances = block[(block["op"] == "~~") & (block["lhs"] == block["rhs"])]
        negative = list(variances[variances["est"] < 0]["lhs"])
        loadings = block[(block["op"] == "=~") & (block["std_all"].abs() > 1)]
        covs = block[(block["op"] == "~~") & (block["lhs"] != block["rhs"])]
        beyond = covs[covs["lhs"].isin(factors) & (covs["std_all"].abs() > 1)]
        neg_ov = [v for v in negative if v not in factors]
        neg_lv = [v for v in negative if v in factors]
        if neg_ov:
            notes.append(f"negative residual variance(s){where}: {', '.join(neg_ov)} (Heywood)")
        if neg_lv:
            notes.append(f"negative factor variance(s){where}: {', '.join(neg_lv)}")
        if len(loadings):
            pairs = [f"{a} =~ {b}" for a, b in zip(loadings["lhs"], loadings["rhs"])]
            notes.append(f"standardized loading(s) beyond ±1{where}: {', '.join(pairs)}")
        if len(beyond):
            pairs = [f"{a} ~~ {b}" for a, b in zip(beyond["lhs"], beyond["rhs"])]
            notes.append(f"factor correlation(s) beyond ±1{where}: {', '.join(pairs)}")
        found = [*negative, *loadings["rhs"], *beyond["lhs"], *beyond["rhs"]]
        names += [v for v in dict.fromkeys(found) if v not in names]
    return names, notes


def _by_group(table: pd.DataFrame, n_groups: int) -> list[tuple[int, pd.DataFrame]]:
    if "group" not in table.columns:
        return [(0, table)]
    return [(g, table[table["group"] == g + 1]) for g in range(n_groups)]


# --------------------------------------------------------------------------- entry point


def cfa(
    data: pd.DataFrame,
    model: ModelSpec,
    *,
    std_lv: bool = False,
    orthogonal: bool = False,
    bifactor: str | None = None,
    residual_covariances: Sequence[tuple[str, str]] = (),
    group: str | None = None,
    group_equal: Sequence[str] = (),
    meanstructure: bool | None = None,
    estimator: str = "ML",
) -> CFAResult:
    """Fit a confirmatory factor model by maximum likelihood, as lavaan's ``cfa()`` does.

    ``model`` maps each factor to its indicators (columns of ``data``). By default the first
    loading of each factor is fixed to 1 (lavaan's marker variable); ``std_lv=True`` fixes the
    factor variances to 1 instead. ``orthogonal`` fixes the factor covariances to 0.
    ``bifactor="g"`` adds a general factor ``g`` on every indicator, all factors orthogonal.
    ``group`` fits one model per level of that column (in order of appearance, as lavaan),
    with ``group_equal`` any of "loadings", "intercepts", "residuals" held equal; the mean
    structure is on by default with groups, off without (lavaan's ``meanstructure``).
    Rows with a missing indicator are dropped (listwise); ``n`` is the number used.

    >>> import numpy as np, pandas as pd
    >>> rng = np.random.default_rng(2)
    >>> f = rng.normal(size=(500, 1))
    >>> d = pd.DataFrame(f @ [[1.0, 0.8, 0.6]] + rng.normal(scale=0.5, size=(500, 3)),
    ...                  columns=["a", "b", "c"])
    >>> fit = cfa(d, {"f": ["a", "b", "c"]})
    >>> round(fit.fit["chisq"], 8), fit.n  # three indicators: just identified
    (0.0, 500)
    """
    if estimator.upper() != "ML":
        raise CFAError(f"estimator {estimator!r} is not supported; only 'ML'")
    equal = frozenset(group_equal)
    if equal - _EQUAL:
        raise CFAError(f"group_equal: unknown {sorted(equal - _EQUAL)}; use {sorted(_EQUAL)}")
    if equal and group is None:
        raise CFAError("group_equal needs a group column")
    means = group is not None if meanstructure is None else meanstructure
    if "intercepts" in equal and not means:
        raise CFAError("equal intercepts need the mean structure")
    spec = _check_spec(model, bifactor)
    orthogonal = orthogonal or bifactor is not None
    _check_identified(spec, orthogonal)
    observed = tuple(dict.fromkeys(i for items in spec.values() for i in items))
    moments, groups, dropped = _sample_moments(data, observed, group)
    structure = _build_structure(
        spec,
        std_lv=std_lv,
        orthogonal=orthogonal,
        residual_covariances=residual_covariances,
        n_groups=len(moments),
        means=means,
        equal=equal,
    )
    _check_counts(structure, len(moments))
    x0 = _start(structure, spec, moments, std_lv)
    x, converged, iterations = _minimise(structure, x0, moments)
    return _result(structure, x, moments, groups, dropped, converged, iterations)


def _check_counts(structure: _Structure, n_groups: int) -> None:
    p = len(structure.observed)
    known = n_groups * (p * (p + 1) // 2 + (p if structure.means else 0))
    if structure.n_free > known:
        raise CFAError(
            f"model not identified: {structure.n_free} free parameters but only {known} "
            "sample moments (variances, covariances and means)"
        )


def _result(
    structure: _Structure,
    x: Array,
    moments: list[_Moments],
    groups: list[str],
    dropped: int,
    converged: bool,
    iterations: int,
) -> CFAResult:
    info = _information(structure, x, moments)
    eig = np.linalg.eigvalsh(info)
    if eig[0] <= 1e-10 * eig[-1]:
        raise CFAError(
            "model not identified: the information matrix is singular at the estimate "
            "(a parameter is not determined by the data)"
        )
    n = sum(mo.n for mo in moments)
    vcov = np.asarray(np.linalg.inv(n * info), dtype=float)
    table = _param_table(structure, x, vcov)
    names, notes = _heywood(table, structure.factors, groups)
    for note in notes:
        warnings.warn(note, HeywoodWarning, stacklevel=3)
    if not converged:
        notes.insert(0, "the optimiser did not converge; estimates are not trustworthy")
        warnings.warn(notes[0], RuntimeWarning, stacklevel=3)
    sample, implied = _stacked(structure, x, moments, groups)
    return CFAResult(
        params=table,
        fit=_fit_measures(structure, x, moments),
        converged=converged,
        heywood=names,
        notes=notes,
        n=n,
        n_dropped=dropped,
        iterations=iterations,
        groups=groups,
        sample_cov=sample,
        implied_cov=implied,
        _structure=structure,
        _x=x,
        _moments=moments,
    )


def _stacked(
    structure: _Structure, x: Array, moments: list[_Moments], groups: list[str]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    ov = list(structure.observed)
    sample = [pd.DataFrame(mo.cov, index=ov, columns=ov) for mo in moments]
    implied = [
        pd.DataFrame(structure.matrices(x, g).sigma, index=ov, columns=ov)
        for g in range(len(moments))
    ]
    if not groups:
        return sample[0], implied[0]
    return pd.concat(sample, keys=groups), pd.concat(implied, keys=groups)


# --------------------------------------------------------------------------- invariance


@dataclass(frozen=True)
class InvarianceResult:
    """Nested multi-group fits, from configural to strict, and their likelihood-ratio tests."""

    fits: dict[str, CFAResult]
    table: pd.DataFrame
    lrt: pd.DataFrame


_LEVELS: dict[str, tuple[str, ...]] = {
    "configural": (),
    "metric": ("loadings",),
    "scalar": ("loadings", "intercepts"),
    "strict": ("loadings", "intercepts", "residuals"),
}


def measurement_invariance(
    data: pd.DataFrame, model: ModelSpec, group: str, *, std_lv: bool = False
) -> InvarianceResult:
    """Configural, metric, scalar and strict invariance across ``group``, as lavaan's
    ``group.equal`` gives them; ``lrt`` compares each with the one before (chi-square
    difference, as ``lavTestLRT`` for ML).

    >>> import numpy as np, pandas as pd
    >>> rng = np.random.default_rng(4)
    >>> f = rng.normal(size=(600, 1))
    >>> d = pd.DataFrame(f @ [[1.0, 0.8, 0.7, 0.6]] + rng.normal(size=(600, 4)),
    ...                  columns=list("abcd")).assign(site=np.repeat(["x", "y"], 300))
    >>> res = measurement_invariance(d, {"f": list("abcd")}, "site")
    >>> res.lrt["df_diff"].tolist()
    [3.0, 3.0, 4.0]
    """
    fits = {
        level: cfa(data, model, group=group, group_equal=equal, std_lv=std_lv)
        for level, equal in _LEVELS.items()
    }
    keys = ["npar", "chisq", "df", "pvalue", "cfi", "tli", "rmsea", "srmr", "aic", "bic"]
    table = pd.DataFrame({k: [f.fit[key] for key in keys] for k, f in fits.items()}, index=keys).T
    rows = []
    levels = list(fits)
    for simpler, richer in zip(levels[1:], levels[:-1]):
        diff = fits[simpler].fit["chisq"] - fits[richer].fit["chisq"]
        ddf = fits[simpler].fit["df"] - fits[richer].fit["df"]
        rows.append(
            {
                "model": simpler,
                "versus": richer,
                "chisq_diff": diff,
                "df_diff": ddf,
                "p": float(stats.chi2.sf(diff, ddf)),
            }
        )
    return InvarianceResult(fits, table, pd.DataFrame(rows))


# --------------------------------------------------------------------------- reliability


def _single_group(result: CFAResult) -> _Mats:
    if result.groups:
        raise CFAError("omega is defined here for a single-group fit; fit each group alone")
    return result._structure.matrices(result._x)


def factor_omegas(result: CFAResult) -> dict[str, float]:
    """McDonald's omega total of each factor's indicators, from the fitted model.

    ``(Σλ)² φ / ((Σλ)² φ + Σθ)`` per factor, Σθ over the factor's indicators (their residual
    covariances, if any were freed, counted twice as in the sum score). Meant for simple
    structure; for a bifactor model use ``bifactor_omega``.

    >>> import numpy as np, pandas as pd
    >>> rng = np.random.default_rng(3)
    >>> f = rng.normal(size=(1000, 1))
    >>> d = pd.DataFrame(f @ [[1.0, 1.0, 1.0]] + rng.normal(size=(1000, 3)), columns=list("abc"))
    >>> round(factor_omegas(cfa(d, {"f": ["a", "b", "c"]}))["f"], 3)  # population: 0.75
    0.75
    """
    m = _single_group(result)
    out = {}
    for j, f in enumerate(result._structure.factors):
        items = np.flatnonzero(m.lam[:, j])
        common = float(m.lam[items, j].sum()) ** 2 * float(m.phi[j, j])
        unique = float(m.theta[np.ix_(items, items)].sum())
        out[f] = common / (common + unique)
    return out


def bifactor_omega(result: CFAResult, general: str) -> dict[str, float]:
    """Omega hierarchical, omega total and ECV of a bifactor fit.

    Omegas divide by the model-implied variance of the sum score, ``1'Σ1``; ECV is the
    general factor's share of the common variance ``Σλ²φ``, in the items' metric (so the
    same under either identification).

    >>> import numpy as np, pandas as pd
    >>> rng = np.random.default_rng(5)
    >>> g, s = rng.normal(size=(2000, 1)), rng.normal(size=(2000, 3))
    >>> y = g * 0.7 + np.repeat(s, 3, axis=1) * 0.5 + rng.normal(scale=0.6, size=(2000, 9))
    >>> d = pd.DataFrame(y, columns=[f"y{i}" for i in range(9)])
    >>> spec = {f"s{k}": [f"y{i}" for i in range(3 * k, 3 * k + 3)] for k in range(3)}
    >>> fit = cfa(d, spec, bifactor="g", std_lv=True)
    >>> {k: round(v, 2) for k, v in bifactor_omega(fit, "g").items()}  # population .80 .93 .66
    {'omega_h': 0.78, 'omega_t': 0.93, 'ecv': 0.64}
    """
    factors = result._structure.factors
    if general not in factors:
        raise CFAError(f"{general!r} is not a factor of this model")
    m = _single_group(result)
    total = float(m.sigma.sum())
    part = m.lam.sum(axis=0) ** 2 * np.diag(m.phi)
    common = (m.lam**2).sum(axis=0) * np.diag(m.phi)
    g = factors.index(general)
    return {
        "omega_h": float(part[g]) / total,
        "omega_t": float(part.sum()) / total,
        "ecv": float(common[g] / common.sum()),
    }
