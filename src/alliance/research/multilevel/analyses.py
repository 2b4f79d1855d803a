"""The multilevel questions of alliance research, each a table in and a result out.

- :func:`within_between`: does a better alliance in a session go with a better outcome for
  that patient (within), or does it only tell patients apart (between)? Person-mean
  centring separates the two (Curran & Bauer 2011, Annu Rev Psychol 62:583-619,
  doi:10.1146/annurev.psych.093008.100356); ``lagged=True`` predicts the next session's
  outcome from this session's alliance, controlling for this session's outcome, as in
  Falkenström, Granström & Holmqvist (2013), J Couns Psychol 60(3):317-328,
  doi:10.1037/a0032258.
- :func:`therapist_effects`: how much of a score belongs to the therapist (the ICC with a
  profile-likelihood interval) and each therapist's shrunken effect with its interval, for
  a caterpillar chart; raw therapist means rank noise (Crits-Christoph et al. 2011, Psychother
  Res 21(3):267-276: one session's alliance has a generalizability of about .77, and
  dependable therapist scores need many patients).
- :func:`alliance_outcome_split`: the alliance-outcome association split into its therapist
  and patient parts (Baldwin, Wampold & Imel 2007, J Consult Clin Psychol 75(6):842-852,
  doi:10.1037/0022-006X.75.6.842: therapists' alliance variability predicted outcome,
  patients' did not).

>>> t = pd.DataFrame({"th": np.repeat(list("abcd"), 6), "y": np.arange(24.0) % 7})
>>> therapist_effects(t, "y", therapist="th").icc.columns.tolist()
['estimate', 'lower', 'upper']
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd
from scipy import optimize, stats

from alliance.research.multilevel.formula import FormulaError
from alliance.research.multilevel.lmm import MixedModelFit, lmm

_Z95 = float(stats.norm.ppf(0.975))


@dataclass(frozen=True)
class MultilevelResult:
    """A table of the effects asked for, the model behind them and a plain reading."""

    table: pd.DataFrame
    fit: MixedModelFit
    reading: str


def _need(data: pd.DataFrame, **columns: str | None) -> None:
    missing = {arg: c for arg, c in columns.items() if c is not None and c not in data.columns}
    if missing:
        arg, col = next(iter(missing.items()))
        raise FormulaError(f"{arg}: column {col!r} is not in the table")


def _grouping(patient: str, therapist: str | None) -> str:
    return f"(1 | {therapist}/{patient})" if therapist else f"(1 | {patient})"


def _effects(fit: MixedModelFit, names: dict[str, str]) -> pd.DataFrame:
    table = fit.fixed.loc[list(names)].rename(index=names)
    table.index.name = "effect"
    return table[["estimate", "se", "df", "lower", "upper", "p"]]


def within_between(
    data: pd.DataFrame,
    outcome: str,
    predictor: str,
    *,
    patient: str,
    therapist: str | None = None,
    time: str | None = None,
    lagged: bool = False,
    covariates: Sequence[str] = (),
) -> MultilevelResult:
    """Within- and between-patient effects of a session-level ``predictor`` on ``outcome``.

    The predictor is split into each patient's mean (centred on the mean over sessions) and
    the session's deviation from it; both enter one model with random intercepts for
    patients (nested in therapists when ``therapist`` is given) and ``time`` as a covariate.
    ``lagged=True`` models the outcome of the patient's next session (ordered by ``time``)
    from this session's predictor and outcome. ``covariates`` (numeric columns, such as a
    patient's intake expectancy from :func:`alliance.research.expectancy.ceq_scores`) enter
    the model as they are; their effects are in ``fit.fixed``. Patients must be unique
    within a therapist.

    >>> t = pd.DataFrame({"p": np.repeat(list("abcdef"), 4), "s": np.tile(range(4), 6),
    ...                   "wai": np.linspace(3, 5, 24) + np.tile([0, .2, -.2, 0], 6)})
    >>> t["sx"] = 20 - 2 * t["wai"] + np.tile([0.1, -0.1, 0.05, 0.0], 6)
    >>> r = within_between(t, "sx", "wai", patient="p", time="s")
    >>> list(r.table.index)
    ['within', 'between']
    """
    _need(data, outcome=outcome, predictor=predictor, patient=patient, therapist=therapist,
          time=time, **{f"covariates[{i}]": c for i, c in enumerate(covariates)})  # fmt: skip
    if lagged and time is None:
        raise FormulaError("lagged: needs time, the column that orders each patient's sessions")
    keys = [c for c in (therapist, patient) if c]
    extra = [c for c in covariates if c not in (*keys, outcome, predictor, time)]
    rows = data[[*keys, outcome, predictor, *([time] if time else []), *extra]].dropna().copy()
    if lagged:
        rows = rows.sort_values([*keys, str(time)])
        rows["_next"] = rows.groupby(keys, sort=False)[outcome].shift(-1)
        rows = rows.dropna(subset=["_next"])
    person_mean = rows.groupby(keys, sort=False)[predictor].transform("mean")
    rows["_within"] = rows[predictor] - person_mean
    rows["_between"] = person_mean - person_mean.mean()
    terms = ""
    if lagged:  # this session's outcome, split the same way, as the control
        own = rows.groupby(keys, sort=False)[outcome].transform("mean")
        rows["_now_within"], rows["_now_between"] = rows[outcome] - own, own - own.mean()
        terms += " + _now_within + _now_between"
    if time:
        terms += f" + {time}"
    terms += "".join(f" + {c}" for c in covariates)
    response = "_next" if lagged else outcome
    formula = f"{response} ~ _within + _between{terms} + {_grouping(patient, therapist)}"
    fit = lmm(formula, rows)
    table = _effects(fit, {"_within": "within", "_between": "between"})
    return MultilevelResult(table, fit, _within_between_reading(table, predictor, outcome, lagged))


def _row(table: pd.DataFrame, name: str) -> pd.Series:
    row = table.loc[name]
    assert isinstance(row, pd.Series)
    return row


def _interval(row: pd.Series) -> str:
    return f"{row['estimate']:+.3f} (95% CI {row['lower']:.3f} to {row['upper']:.3f})"


def _within_between_reading(table: pd.DataFrame, predictor: str, outcome: str, lagged: bool) -> str:
    target = f"the next session's {outcome}" if lagged else outcome
    w, b = _row(table, "within"), _row(table, "between")

    def clear(row: pd.Series) -> str:
        return "" if row["lower"] <= 0 <= row["upper"] else "; the interval excludes 0"

    return (
        f"Within patients: in a session where a patient's {predictor} is 1 point above their "
        f"own mean, {target} differs by {_interval(w)}{clear(w)}. "
        f"Between patients: a patient whose mean {predictor} is 1 point higher has "
        f"{target} differing by {_interval(b)}{clear(b)}."
    )


# -- therapist effects ---------------------------------------------------------------------
def _share_interval(
    fit: MixedModelFit, inside: np.ndarray, level: float = 0.95
) -> tuple[float, float]:
    """Profile-likelihood interval of the share of the variance held by the intercept
    terms marked ``inside`` (the therapist's; or patient and therapist together).

    With intercept-only terms the share is sum_inside theta^2 / (1 + sum theta^2), a
    function of theta alone, so it is profiled on the fit's own criterion (REML or ML) with
    sigma and beta profiled out: at a fixed share the other thetas, and how the share splits
    between the terms inside (softmax weights), are optimised."""
    model, theta = fit.model, fit.theta
    outside, n_in = ~inside, int(inside.sum())
    base = fit.deviance
    z = float(stats.norm.ppf(0.5 + level / 2.0))
    estimate = float((theta[inside] ** 2).sum() / (1.0 + (theta**2).sum()))
    weights = np.maximum(theta[inside] ** 2, 1e-12)
    start = np.concatenate([np.log(weights[1:] / weights[0]), np.maximum(theta[outside], 1e-2)])
    bounds = [(None, None)] * (n_in - 1) + [(0.0, None)] * int(outside.sum())

    def full(rho: float, free: np.ndarray) -> np.ndarray:
        logits, others = np.concatenate([[0.0], free[: n_in - 1]]), free[n_in - 1 :]
        split = np.exp(logits - logits.max())
        th = theta.copy()
        th[outside] = others
        th[inside] = np.sqrt(
            rho * (1.0 + float((others**2).sum())) / (1.0 - rho) * split / split.sum()
        )
        return th

    def deviance(th: np.ndarray) -> float:
        try:
            return model.deviance(th)
        except np.linalg.LinAlgError:  # a share so near 1 that X'V^-1X is singular
            return base + 1e10

    def zeta(rho: float) -> float:
        if start.size:
            best = optimize.minimize(lambda f: deviance(full(rho, f)), start,
                                     method="L-BFGS-B", bounds=bounds,
                                     options={"ftol": 1e-12, "gtol": 1e-8})  # fmt: skip
            dev = float(best.fun)
        else:
            dev = deviance(full(rho, start))
        return float(np.sign(rho - estimate) * math.sqrt(max(dev - base, 0.0)))

    lower = 0.0
    if estimate > 1e-8 and zeta(1e-10) < -z:
        lower = optimize.brentq(lambda r: zeta(r) + z, 1e-10, estimate, xtol=1e-9)
    top = 1.0 - 1e-9
    upper = top if zeta(top) < z else optimize.brentq(lambda r: zeta(r) - z, estimate, top,
                                                      xtol=1e-9)  # fmt: skip
    return float(lower), float(upper)


@dataclass(frozen=True)
class TherapistResult:
    """``table`` (one row per therapist) and the ``fit`` behind it; ``icc`` (the therapist's
    share of the variance and, with patients, the share of patient and therapist together,
    the correlation of two sessions of one patient, each with its profile-likelihood
    interval) and the plain ``reading`` are computed when first asked for: the profiles cost
    more than the fit, and a view of the shrunken effects alone does not need them."""

    table: pd.DataFrame
    fit: MixedModelFit
    score: str
    therapist: str
    patient: str | None

    @cached_property
    def icc(self) -> pd.DataFrame:
        names = [t.spec.name for t in self.fit.model.design.terms]
        return _icc_table(self.fit, names, self.therapist, self.patient)

    @cached_property
    def reading(self) -> str:
        share, table = self.icc.loc[self.therapist], self.table
        separable = (
            f"{int(table['distinct'].sum())} of {len(table)} therapists differ from the clinic "
            "mean beyond their interval."
            if table["distinct"].any()
            else "The data cannot separate these therapists: every therapist's interval "
            "overlaps the clinic mean."
        )
        return (
            f"Therapists account for {share['estimate']:.1%} of the variance in {self.score} "
            f"(95% CI {share['lower']:.1%} to {share['upper']:.1%}). {separable}"
        )


def therapist_effects(
    data: pd.DataFrame, score: str, *, therapist: str, patient: str | None = None
) -> TherapistResult:
    """The therapist share (ICC) of ``score`` and each therapist's shrunken effect.

    With ``patient`` (several sessions per patient) the model is
    ``score ~ 1 + (1 | therapist/patient)``, else ``score ~ 1 + (1 | therapist)`` (one row
    per patient, an outcome say). ``table`` has one row per therapist: ``effect`` (the
    conditional mode: its deviation from the clinic mean after shrinkage), ``lower`` and
    ``upper`` (the mode +- 1.96 conditional SDs), ``raw`` (its raw mean's deviation), the
    numbers of patients and rows behind it and ``distinct`` (its interval excludes the clinic
    mean). ``icc`` gives the shares with their profile intervals.

    >>> t = pd.DataFrame({"th": np.repeat(list("abcd"), 6), "y": np.arange(24.0) % 7})
    >>> r = therapist_effects(t, "y", therapist="th")
    >>> list(r.table.columns)
    ['effect', 'lower', 'upper', 'raw', 'patients', 'rows', 'distinct']
    """
    _need(data, score=score, therapist=therapist, patient=patient)
    rows = data[[c for c in (therapist, patient, score) if c]].dropna()
    if rows[therapist].nunique() < 2:
        raise FormulaError(f"therapist: {score} needs rows of at least 2 therapists to compare")
    fit = lmm(f"{score} ~ 1 + {_grouping(patient, therapist) if patient else f'(1 | {therapist})'}",
              rows)  # fmt: skip
    modes = fit.ranef[fit.ranef["group"] == therapist].set_index("level")
    raw = rows.groupby(therapist)[score].mean() - rows[score].mean()
    raw.index = raw.index.astype(str)
    counts = rows.groupby(therapist).agg(
        patients=(patient or score, "nunique" if patient else "size"), rows=(score, "size")
    )
    counts.index = counts.index.astype(str)
    table = pd.DataFrame(
        {
            "effect": modes["mode"],
            "lower": modes["mode"] - _Z95 * modes["condsd"],
            "upper": modes["mode"] + _Z95 * modes["condsd"],
            "raw": raw.reindex(modes.index),
        }
    ).join(counts)
    table["distinct"] = (table["lower"] > 0) | (table["upper"] < 0)
    table.index.name = therapist
    return TherapistResult(table.sort_values("effect"), fit, score, therapist, patient)


def _icc_table(
    fit: MixedModelFit, names: list[str], therapist: str, patient: str | None
) -> pd.DataFrame:
    theta = fit.theta
    total = 1.0 + float((theta**2).sum())
    is_therapist = np.array([name == therapist for name in names])
    rows = {therapist: (theta[is_therapist][0] ** 2 / total, *_share_interval(fit, is_therapist))}
    if patient:
        everyone = np.ones(theta.size, dtype=bool)
        rows[f"{patient} (incl. {therapist})"] = (
            float((theta**2).sum()) / total,
            *_share_interval(fit, everyone),
        )
    return pd.DataFrame.from_dict(rows, orient="index", columns=["estimate", "lower", "upper"])


def alliance_outcome_split(
    data: pd.DataFrame, alliance: str, outcome: str, *, therapist: str
) -> MultilevelResult:
    """The therapist and patient parts of the alliance-outcome association (Baldwin,
    Wampold & Imel 2007), on one row per patient: ``outcome ~ therapist mean alliance
    (centred) + the patient's deviation from it + (1 | therapist)``.

    >>> t = pd.DataFrame({"th": np.repeat(list("abcdef"), 5),
    ...                   "wai": np.tile([4.0, 4.5, 5, 5.5, 6], 6) + np.repeat(range(6), 5)})
    >>> mean = t.groupby("th")["wai"].transform("mean")
    >>> t["out"] = 30 - 2 * mean + np.tile([1, -1, 0, 0.5, -0.5], 6)
    >>> list(alliance_outcome_split(t, "wai", "out", therapist="th").table.index)
    ['therapist', 'patient']
    """
    _need(data, alliance=alliance, outcome=outcome, therapist=therapist)
    rows = data[[therapist, alliance, outcome]].dropna().copy()
    mean = rows.groupby(therapist)[alliance].transform("mean")
    rows["_therapist"] = mean - mean.mean()
    rows["_patient"] = rows[alliance] - mean
    fit = lmm(f"{outcome} ~ _therapist + _patient + (1 | {therapist})", rows)
    table = _effects(fit, {"_therapist": "therapist", "_patient": "patient"})
    t, p = _row(table, "therapist"), _row(table, "patient")
    reading = (
        f"Therapist part: patients of a therapist whose patients' mean {alliance} is 1 point "
        f"higher have {outcome} differing by {_interval(t)}. Patient part: a patient whose "
        f"{alliance} is 1 point above their therapist's mean has {outcome} differing by "
        f"{_interval(p)}."
    )
    return MultilevelResult(table, fit, reading)


# -- rates ------------------------------------------------------------------------------------
def shrunken_rates(
    table: pd.DataFrame, events: str, trials: str, *, group: str, level: float = 0.95
) -> pd.DataFrame:
    """Empirical-Bayes rates per group (ruptures per session, repairs per rupture): each
    group's rate drawn toward the pooled rate by as much as its few trials warrant.

    The groups' true rates are taken as Beta(a, b), fitted by maximum likelihood of the
    beta-binomial (Casella 1985, Am Stat 39(2):83-87); a group's estimate is its posterior
    mean Beta(a + events, b + trials - events) and its interval the posterior quantiles.
    Where the groups do not differ beyond chance, a + b grows (to at most the number of all
    trials) and every estimate is near the pooled rate, with about the pooled rate's
    uncertainty; with no events at all, every group has the pooled Jeffreys interval.
    Columns: ``rate``, ``lower``, ``upper``, ``raw``, ``events``, ``trials``, ``distinct``
    (the interval excludes the pooled rate).

    >>> t = pd.DataFrame({"th": list("abc"), "k": [1, 9, 5], "n": [20, 30, 25]})
    >>> r = shrunken_rates(t, "k", "n", group="th")
    >>> r["raw"].round(3).tolist(), r["rate"].round(3).tolist()  # drawn in from 0.05 and 0.3
    ([0.05, 0.3, 0.2], [0.138, 0.244, 0.196])
    """
    _need(table, events=events, trials=trials, group=group)
    data = table.groupby(group)[[events, trials]].sum()
    k, n = data[events].to_numpy(np.float64), data[trials].to_numpy(np.float64)
    if len(data) < 2 or (n <= 0).any() or (k < 0).any() or (k > n).any():
        raise FormulaError(
            f"{events}/{trials}: need at least 2 {group}s, each with trials > 0 and "
            "0 <= events <= trials"
        )
    pooled = float(k.sum() / n.sum())

    def minus_loglik(x: np.ndarray) -> float:  # x: logit of the mean, log of a + b
        mean, strength = 1.0 / (1.0 + math.exp(-x[0])), math.exp(x[1])
        return -float(stats.betabinom.logpmf(k, n, mean * strength, (1 - mean) * strength).sum())

    if 0.0 < k.sum() < n.sum():
        # a + b is at most all the trials together: when the groups do not differ the
        # likelihood runs a + b to infinity, and intervals would then claim a certainty
        # about the pooled rate that the pooled data themselves do not have
        start = np.array([math.log(pooled / (1.0 - pooled)), math.log(min(10.0, n.sum()))])
        bounds = [(-20.0, 20.0), (-8.0, math.log(n.sum()))]
        best = optimize.minimize(minus_loglik, start, method="L-BFGS-B", bounds=bounds)
        mean, strength = 1.0 / (1.0 + math.exp(-best.x[0])), math.exp(best.x[1])
        post_a, post_b = mean * strength + k, (1.0 - mean) * strength + n - k
    else:  # no events at all (or only events): nothing tells the groups apart, and the
        # beta-binomial's optimum is degenerate; every group gets the pooled Jeffreys
        # interval, Beta(1/2 + events, 1/2 + non-events) of all groups together
        post_a = np.full(k.size, 0.5 + k.sum())
        post_b = np.full(k.size, 0.5 + n.sum() - k.sum())
    tail = (1.0 - level) / 2.0
    out = pd.DataFrame(
        {
            "rate": post_a / (post_a + post_b),
            "lower": stats.beta.ppf(tail, post_a, post_b),
            "upper": stats.beta.ppf(1.0 - tail, post_a, post_b),
            "raw": k / n,
            "events": k.astype(int),
            "trials": n.astype(int),
        },
        index=data.index,
    )
    out["distinct"] = (out["lower"] > pooled) | (out["upper"] < pooled)
    out.attrs["pooled"] = pooled
    return out
