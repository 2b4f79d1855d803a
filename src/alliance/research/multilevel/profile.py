"""Profile-likelihood confidence intervals of the variance components, as lme4 computes them.

The parameters are each random term's standard deviations and correlations, and the residual
sigma (lme4's ``profile`` names: ``sd_(Intercept)|patient``, ``cor_session.(Intercept)|patient``,
``sigma``). As in lme4 (``devfun2`` refits by ML before profiling: Bates et al. 2015, J Stat
Softw 67(1), section 5.1), the profile is of the ML deviance, for REML fits too. For each
parameter the others are optimised at fixed values of it, ``zeta = sign(v - v_hat) *
sqrt(dev(v) - dev_min)``, and the interval is where ``|zeta|`` reaches the normal quantile;
a bound that the likelihood never reaches (an SD whose profile stays low down to 0, a
correlation up to +-1) is that limit. lme4 interpolates its profile with splines on a grid;
here each bound is a root found to 1e-7 relative, so the two agree to the accuracy of lme4's
splines.

Our own because no Python package profiles a mixed model's likelihood.

>>> import pandas as pd
>>> from alliance.research.multilevel import lmm
>>> t = pd.DataFrame({"g": list("aabbccddee"), "y": [1.0, 2, 4, 5, 2.5, 3.5, 0, 1, 3, 3.2]})
>>> ci = confint(lmm("y ~ 1 + (1 | g)", t))
>>> list(ci.index), bool(ci.loc["sigma", "lower"] < ci.loc["sigma", "estimate"])
(['sd_(Intercept)|g', 'sigma'], True)
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import optimize, stats

from alliance.research.multilevel.lmm import MixedModelFit, _column_major, _factors

FloatArray = npt.NDArray[np.float64]
_COR_LIMIT = 1.0 - 1e-7  # a correlation's profile is taken inside (-1, 1)


class _Scale:
    """Between (theta, sigma) and lme4's (SDs and correlations per term, sigma)."""

    def __init__(self, fit: MixedModelFit) -> None:
        self.fit = fit
        self.terms = fit.model.design.terms
        names, is_sd = [], []
        for term in self.terms:
            rows, cols = _column_major(term.k)
            for r, c in zip(rows, cols, strict=True):
                effects = term.spec.effects
                label = effects[r] if r == c else f"{effects[r]}.{effects[c]}"
                names.append(f"{'sd' if r == c else 'cor'}_{label}|{term.spec.name}")
                is_sd.append(r == c)
        self.names = [*names, "sigma"]
        self.is_sd = np.array([*is_sd, True])

    def from_theta(self, theta: FloatArray, sigma: float) -> FloatArray:
        out = []
        for term, t in zip(self.terms, _factors(self.fit.model.design, theta), strict=True):
            cov = sigma**2 * (t @ t.T)
            sd = np.sqrt(np.diag(cov))
            with np.errstate(invalid="ignore", divide="ignore"):
                cor = np.nan_to_num(cov / np.outer(sd, sd))
            rows, cols = _column_major(term.k)
            out += [sd[r] if r == c else cor[r, c] for r, c in zip(rows, cols, strict=True)]
        return np.array([*out, sigma])

    def to_varpar(self, sv: FloatArray) -> FloatArray | None:
        """``(theta, sigma)`` of SDs and correlations; None where the correlations are not
        those of a positive-definite matrix."""
        sigma, at, theta = float(sv[-1]), 0, []
        for term in self.terms:
            rows, cols = _column_major(term.k)
            values = sv[at : at + rows.size]
            at += rows.size
            r_mat, sd = np.eye(term.k), np.zeros(term.k)
            for v, r, c in zip(values, rows, cols, strict=True):
                if r == c:
                    sd[r] = v
                else:
                    r_mat[r, c] = r_mat[c, r] = v
            try:
                chol = np.linalg.cholesky(r_mat)
            except np.linalg.LinAlgError:
                return None
            t = (sd[:, None] * chol) / sigma
            theta += [t[r, c] for r, c in zip(rows, cols, strict=True)]
        return np.array([*theta, sigma])


class _Profiler:
    """The ML deviance as a function of the SDs and correlations, one of them held fixed."""

    def __init__(self, fit: MixedModelFit) -> None:
        self.ml = fit.refit(reml=False)
        self.scale = _Scale(self.ml)
        self.optimum = self.scale.from_theta(self.ml.theta, self.ml.sigma)
        self.base = self.ml.deviance
        self.bounds = [(0.0, None) if sd else (-_COR_LIMIT, _COR_LIMIT) for sd in self.scale.is_sd]
        self.bounds[-1] = (1e-8 * self.ml.sigma, None)
        self.size = np.where(self.scale.is_sd, np.maximum(self.optimum, 1e-3 * self.ml.sigma), 1.0)

    def deviance(self, sv: FloatArray) -> float:
        # outside the parameter space (correlations of no positive-definite matrix, or a
        # variance so extreme that X'V^-1X is singular): a finite wall, since the
        # optimiser's finite differences cannot take inf - inf
        wall = self.base + 1e10
        varpar = self.scale.to_varpar(sv)
        if varpar is None:
            return wall
        try:
            value = float(self.ml.model.varpar_deviance(varpar))
        except np.linalg.LinAlgError:
            return wall
        return value if np.isfinite(value) else wall

    def zeta(self, j: int, value: float, start: FloatArray) -> tuple[float, FloatArray]:
        """Signed root deviance at parameter ``j`` = ``value``, and the others' optimum."""
        free = np.arange(self.optimum.size) != j

        def deviance_of_free(x: FloatArray) -> float:
            sv = self.optimum.copy()
            sv[j], sv[free] = value, x * self.size[free]
            return self.deviance(sv)

        bounds = [
            (None if lo is None else lo / s, None if hi is None else hi / s)
            for (lo, hi), s in zip(np.array(self.bounds, dtype=object)[free], self.size[free])
        ]
        if not free.any():
            dev, x = deviance_of_free(np.empty(0)), np.empty(0)
        else:
            # from the last point and from the optimum (a warm start alone can stay in a
            # poorer valley); an SD at 0 is a stationary point (the deviance depends on its
            # square), so a start there is moved off it
            dev, x = float("inf"), np.empty(0)
            for origin in (start, self.optimum):
                x0 = origin[free] / self.size[free]
                x0 = np.where(self.scale.is_sd[free] & (x0 < 1e-3), 0.1, x0)
                best = optimize.minimize(
                    deviance_of_free,
                    x0,
                    method="L-BFGS-B",
                    bounds=bounds,
                    options={"ftol": 1e-12, "gtol": 1e-8, "maxiter": 500},
                )
                if best.fun < dev:
                    dev, x = float(best.fun), best.x
        sv = self.optimum.copy()
        sv[j], sv[free] = value, x * self.size[free]
        gap = max(dev - self.base, 0.0)
        return float(np.sign(value - self.optimum[j]) * np.sqrt(gap)), sv

    def bound(self, j: int, z: float) -> float:
        """Where zeta crosses ``z`` (negative: below the estimate) or the parameter's limit."""
        est = self.optimum[j]
        lo, hi = self.bounds[j]
        limit = lo if z < 0 else hi
        step = 0.25 * self.size[j] if self.scale.is_sd[j] else 0.25
        start, inner = self.optimum.copy(), est
        for _ in range(60):
            outer = inner + np.sign(z) * step
            if limit is not None and (outer - limit) * np.sign(z) >= 0:
                outer = float(limit)
            zeta, start = self.zeta(j, outer, start)
            if (zeta - z) * np.sign(z) >= 0:
                break
            if limit is not None and outer == limit:
                return float(limit)
            inner, step = outer, 2.0 * step
        else:
            return float("nan")
        return float(
            optimize.brentq(
                lambda v: self.zeta(j, v, start)[0] - z, inner, outer, xtol=1e-9, rtol=1e-7
            )
        )


def confint(
    fit: MixedModelFit, level: float = 0.95, which: list[str] | None = None
) -> pd.DataFrame:
    """Profile-likelihood intervals of each SD, correlation and sigma (or of those named in
    ``which``): estimate (of the fit's own criterion, REML or ML), lower, upper, as lme4's
    ``confint(profile(fit))``."""
    if not 0.0 < level < 1.0:
        raise ValueError(f"level: must be between 0 and 1, got {level}")
    profiler = _Profiler(fit)
    names = profiler.scale.names
    unknown = sorted(set(which or []) - set(names))
    if unknown:
        raise ValueError(f"which: {unknown} are not parameters of this fit; it has {names}")
    z = float(stats.norm.ppf(0.5 + level / 2.0))
    estimate = _Scale(fit).from_theta(fit.theta, fit.sigma)
    chosen = [j for j, name in enumerate(names) if which is None or name in which]
    rows = [(estimate[j], profiler.bound(j, -z), profiler.bound(j, z)) for j in chosen]
    index = [names[j] for j in chosen]
    return pd.DataFrame(rows, columns=["estimate", "lower", "upper"], index=index)
