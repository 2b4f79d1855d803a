"""One psychometric report of an instrument's items: what ``alliance psychometrics`` prints.

For a wide table of item answers (one row per administration) it gathers the pieces of this
package: reliability per scale (Cronbach's alpha with Feldt's interval, omega from the
correlated-factor model), item statistics with floor and ceiling shares, straight-lining
(per session where a session column is given, since ceiling effects grow over sessions),
the competing factor models of the alliance (one factor; the instrument's correlated
subscales; for Goal/Task/Bond measures two factors, Bond against Goal + Task, after
Falkenström, Hatcher & Holmqvist 2015; a bifactor model from three subscales on) with
lavaan's fit indices, and, with a group column, measurement invariance with a plain verdict.

Reverse-keyed items are recoded (``min + max - answer``) before anything is computed, as the
scorer does; a subscale whose key is unverified (``shared/instruments-facts.md``) is
analysed but flagged in ``notes``.

With ``ordinal=True`` the factor models are fitted to the polychoric correlations by WLSMV
(:mod:`.ordinal`, as lavaan's ``estimator = "WLSMV"``) and the table shows the scaled
(mean- and variance-adjusted) statistics; omegas and invariance stay on the ML fits.

The invariance verdict follows Chen (2007; Structural Equation Modeling, 14, 464-504): a
step is rejected when CFI falls by more than .010 together with RMSEA rising by more than
.015 (metric and scalar steps; the chi-square difference test is shown beside it, since
with large samples it rejects trivial differences).

>>> import numpy as np, pandas as pd
>>> rng = np.random.default_rng(2)
>>> f = rng.normal(size=(300, 1))
>>> raw = np.clip(np.rint(3 + f + rng.normal(scale=0.8, size=(300, 4))), 1, 5)
>>> t = pd.DataFrame(raw, columns=["a", "b", "c", "d"])
>>> rep = psychometrics_report(t, scales={"all": ["a", "b", "c", "d"]}, low=1, high=5)
>>> list(rep.models.index), int(rep.reliability.loc["all", "k"])
(['one factor'], 4)
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from alliance.instruments import Instrument, get_instrument
from alliance.research.psychometrics.cfa import (
    CFAError,
    CFAResult,
    HeywoodWarning,
    bifactor_omega,
    cfa,
    factor_omegas,
    measurement_invariance,
)
from alliance.research.psychometrics.items import floor_ceiling, straight_lining_share
from alliance.research.psychometrics.ordinal import cfa_ordinal
from alliance.research.psychometrics.reliability import (
    PsychometricsError,
    cronbach_alpha,
    item_total,
)

FIT_COLUMNS = ["chisq", "df", "pvalue", "cfi", "tli", "rmsea", "rmsea.ci.lower",
               "rmsea.ci.upper", "srmr", "aic", "bic"]  # fmt: skip
# WLSMV: the scaled-shifted statistics under the ML table's names (lavaan's fitMeasures)
SCALED = {"chisq": "chisq.scaled", "pvalue": "pvalue.scaled", "cfi": "cfi.scaled",
          "tli": "tli.scaled", "rmsea": "rmsea.scaled", "rmsea.ci.lower": "rmsea.ci.lower.scaled",
          "rmsea.ci.upper": "rmsea.ci.upper.scaled"}  # fmt: skip
GENERAL = "general"  # the bifactor model's general factor
CHEN_CFI, CHEN_RMSEA = -0.010, 0.015  # Chen (2007) cutoffs for a rejected invariance step


@dataclass(frozen=True)
class PsychometricsReport:
    """The report's tables (see the module docstring); ``notes`` says what was flagged."""

    n: int
    scales: dict[str, list[str]]
    reliability: pd.DataFrame
    items: pd.DataFrame
    straight_lining: pd.DataFrame
    models: pd.DataFrame
    loadings: pd.DataFrame
    distribution: pd.DataFrame = field(default_factory=pd.DataFrame)
    by_session: pd.DataFrame | None = None
    bifactor: dict[str, float] | None = None
    invariance: pd.DataFrame | None = None
    verdict: str | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``--format json``."""

        def rows(frame: pd.DataFrame | None) -> list[dict[str, Any]] | None:
            if frame is None:
                return None
            named = frame.reset_index(names=frame.index.name or "name")
            return [{str(k): v for k, v in r.items()} for r in named.to_dict(orient="records")]

        return {
            "n": self.n, "scales": self.scales, "reliability": rows(self.reliability),
            "items": rows(self.items), "straight_lining": rows(self.straight_lining),
            "models": rows(self.models), "loadings": rows(self.loadings),
            "distribution": self.distribution.to_dict(orient="records"),
            "by_session": rows(self.by_session),
            "bifactor": self.bifactor, "invariance": rows(self.invariance),
            "verdict": self.verdict, "notes": self.notes,
        }  # fmt: skip


def instrument_scales(instrument: Instrument | str) -> dict[str, list[str]]:
    """The instrument's subscales as a factor model spec (subscale -> item columns); a
    measure without subscales gives its total.

    >>> instrument_scales("wai_sr")["bond"]
    ['wai_sr_3', 'wai_sr_5', 'wai_sr_7', 'wai_sr_9']
    """
    inst = get_instrument(instrument) if isinstance(instrument, str) else instrument
    chosen = [s for s in inst.scores if s.kind == "subscale" and inst.score_items(s.id)]
    chosen = chosen or [s for s in inst.scores if s.kind == "total" and inst.score_items(s.id)]
    return {s.id: [f"{inst.id}_{n}" for n in inst.score_items(s.id)] for s in chosen}


def competing_models(scales: Mapping[str, Sequence[str]]) -> dict[str, dict[str, Any]]:
    """The factor models the report compares, as ``cfa`` keyword arguments by name."""
    every = [c for cols in scales.values() for c in cols]
    models: dict[str, dict[str, Any]] = {"one factor": {"model": {"alliance": every}}}
    if len(scales) >= 2:
        models[f"{len(scales)} correlated factors"] = {"model": dict(scales)}
    if {"goal", "task", "bond"} <= set(scales):  # Falkenström, Hatcher & Holmqvist 2015
        merged = {"bond": list(scales["bond"]), "goal_task": [*scales["goal"], *scales["task"]]}
        models["two factors (bond; goal + task)"] = {"model": merged}
    if len(scales) >= 3:
        models["bifactor"] = {"model": dict(scales), "bifactor": GENERAL, "std_lv": True}
    return models


def psychometrics_report(
    data: pd.DataFrame,
    instrument: Instrument | str | None = None,
    *,
    scales: Mapping[str, Sequence[str]] | None = None,
    low: float | None = None,
    high: float | None = None,
    group: str | None = None,
    session: str | None = None,
    ordinal: bool = False,
) -> PsychometricsReport:
    """The report of ``data``'s items: by ``instrument`` (its subscales, scale bounds and
    reverse keys), or by explicit ``scales`` (factor -> item columns; with an instrument,
    its items in another model, e.g. a user's) with ``low``/``high`` answer bounds where
    there is no instrument; ``group`` adds measurement invariance, ``session`` per-session
    shares, ``ordinal`` WLSMV fits of the factor models."""
    inst = get_instrument(instrument) if isinstance(instrument, str) else instrument
    if inst is None and scales is None:
        raise PsychometricsError("give an instrument or scales (factor -> item columns)")
    spec = {k: list(v) for k, v in (scales or instrument_scales(inst)).items()}  # type: ignore[arg-type]
    every = [c for cols in spec.values() for c in cols]
    missing = [c for c in every if c not in data.columns]
    if missing:
        raise PsychometricsError(f"item column(s) not in the data: {', '.join(missing)}")
    notes: list[str] = []
    table = _recoded(data, inst, every, notes)
    bounds: dict[str, Any] = {"instrument": inst.id} if inst is not None else {}
    if not bounds:
        if low is None or high is None:
            raise PsychometricsError("low, high: give the answer bounds (or an instrument)")
        bounds = {"low": low, "high": high}
    items = _items(table, every, bounds)  # first: it refuses answers off the scale
    fits, models = _fit_models(table, spec, notes)
    if ordinal:
        _, models = _fit_models(table, spec, notes, ordinal=True)
    loadings = _loadings(fits.get(f"{len(spec)} correlated factors") or fits.get("one factor"))
    omegas = _omegas(fits, spec)
    invariance, verdict = _invariance(table, spec, group, notes) if group else (None, None)
    return PsychometricsReport(
        n=int(table[every].notna().all(axis=1).sum()),
        scales=spec,
        reliability=_reliability(table, spec, omegas),
        items=items,
        straight_lining=straight_lining_share(table, every, by=session),
        models=models,
        loadings=loadings,
        distribution=_distribution(table, every),
        by_session=_by_session(table, every, bounds, session) if session else None,
        bifactor=bifactor_omega(fits["bifactor"], GENERAL) if "bifactor" in fits else None,
        invariance=invariance,
        verdict=verdict,
        notes=notes,
    )


def _recoded(
    data: pd.DataFrame, inst: Instrument | None, columns: list[str], notes: list[str]
) -> pd.DataFrame:
    """The item columns with reverse-keyed items recoded; unverified keys noted."""
    table = data.copy()
    if inst is None:
        return table
    for item in inst.items:
        column = f"{inst.id}_{item.number}"
        if item.reverse and column in columns:
            scale = inst.item_scale(item.number)
            table[column] = scale.min + scale.max - pd.to_numeric(table[column])
    for score in inst.scores:
        if score.key_status == "unverified" and inst.score_items(score.id):
            notes.append(f"{inst.id} {score.id}: its key is unverified; read it with care")
    return table


def _fit_models(
    table: pd.DataFrame, spec: dict[str, list[str]], notes: list[str], ordinal: bool = False
) -> tuple[dict[str, Any], pd.DataFrame]:
    """The competing models, fitted by ML (or WLSMV, with its scaled statistics)."""
    engine, names, tag = (cfa_ordinal, SCALED, " (WLSMV)") if ordinal else (cfa, {}, "")
    fits: dict[str, Any] = {}
    rows = {}
    for name, kwargs in competing_models(spec).items():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", HeywoodWarning)
                fit = engine(table, **kwargs)
        except CFAError as exc:
            notes.append(f"{name}{tag}: not fitted ({exc})")
            continue
        fits[name] = fit
        rows[name] = {c: fit.fit.get(names.get(c, c), np.nan) for c in FIT_COLUMNS} | {
            "estimator": "WLSMV" if ordinal else "ML", "converged": fit.converged,
            "heywood": ", ".join(fit.heywood),
        }  # fmt: skip
        if fit.heywood:
            notes.append(f"{name}{tag}: improper solution (Heywood case) at "
                         f"{', '.join(fit.heywood)}")  # fmt: skip
        if not fit.converged:
            notes.append(f"{name}{tag}: did not converge; its numbers are not an optimum")
    models = pd.DataFrame.from_dict(rows, orient="index")
    if ordinal and len(models):
        models = models.drop(columns=["aic", "bic"])  # no likelihood under WLSMV
    models.index.name = "model"
    return fits, models


def _loadings(fit: CFAResult | None) -> pd.DataFrame:
    if fit is None:
        return pd.DataFrame(columns=["factor", "item", "std_loading", "se"])
    p = fit.params[fit.params["op"] == "=~"]
    out = p.rename(columns={"lhs": "factor", "rhs": "item", "std_all": "std_loading"})
    return out.set_index("item")[["factor", "std_loading", "est", "se"]]


def _omegas(fits: dict[str, CFAResult], spec: dict[str, list[str]]) -> dict[str, float]:
    correlated = fits.get(f"{len(spec)} correlated factors")
    out = factor_omegas(correlated) if correlated is not None else {}
    if "one factor" in fits:
        out["total"] = factor_omegas(fits["one factor"])["alliance"]
    return out


def _reliability(
    table: pd.DataFrame, spec: dict[str, list[str]], omegas: dict[str, float]
) -> pd.DataFrame:
    scales = dict(spec)
    if len(spec) > 1:
        scales["total"] = [c for cols in spec.values() for c in cols]
    rows = {}
    for name, cols in scales.items():
        a = cronbach_alpha(table, cols)
        rows[name] = {"k": len(cols), "n": a.n, "alpha": a.alpha, "alpha_lower": a.lower,
                      "alpha_upper": a.upper, "omega": omegas.get(name, np.nan)}  # fmt: skip
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.index.name = "scale"
    return out


def _items(table: pd.DataFrame, columns: list[str], bounds: dict[str, Any]) -> pd.DataFrame:
    stats = item_total(table, columns)
    shares = floor_ceiling(table, columns, **bounds)
    return stats.join(shares[["floor", "ceiling"]], how="left")


def _by_session(
    table: pd.DataFrame, columns: list[str], bounds: dict[str, Any], session: str
) -> pd.DataFrame:
    """The scale's floor and ceiling shares per session (ceiling effects grow over sessions)."""
    shares = floor_ceiling(table, columns, by=session, **bounds)
    scale = pd.DataFrame(shares.xs("scale", level="item"))
    return scale[["n", "floor", "ceiling"]]


def _distribution(table: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Long table of each item's answer shares: ``item, answer, share``."""
    complete = table.loc[table[columns].notna().all(axis=1), columns]
    long = complete.melt(var_name="item", value_name="answer")
    shares = long.groupby(["item", "answer"], sort=False).size() / len(complete)
    return shares.rename("share").reset_index()


def _invariance(
    table: pd.DataFrame, spec: dict[str, list[str]], group: str, notes: list[str]
) -> tuple[pd.DataFrame | None, str | None]:
    if group not in table.columns:
        raise PsychometricsError(f"{group}: group column is not in the data")
    model = spec if len(spec) > 1 else {"alliance": spec[next(iter(spec))]}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", HeywoodWarning)
            result = measurement_invariance(table, model, group)
    except CFAError as exc:
        notes.append(f"invariance across {group}: not fitted ({exc})")
        return None, None
    out = result.table[["chisq", "df", "cfi", "rmsea", "srmr"]].copy()
    out["delta_cfi"] = out["cfi"].diff()
    out["delta_rmsea"] = out["rmsea"].diff()
    lrt = result.lrt.set_index("model")
    out = out.join(lrt[["chisq_diff", "df_diff", "p"]])
    out.index.name = "level"
    return out, _verdict(out, group)


def _verdict(table: pd.DataFrame, group: str) -> str:
    """The highest level the data support by Chen's (2007) change-in-fit rule."""
    held = "configural"
    for level in ("metric", "scalar", "strict"):
        row = table.loc[level]
        if row["delta_cfi"] < CHEN_CFI and row["delta_rmsea"] > CHEN_RMSEA:
            break
        held = level
    meaning = {
        "configural": "only the same factor pattern holds; compare no scores across groups",
        "metric": "loadings are equal: correlations with the factors compare across groups, "
        "means do not",
        "scalar": "loadings and intercepts are equal: scale means compare across groups",
        "strict": "loadings, intercepts and residual variances are equal: observed scores "
        "compare across groups",
    }[held]
    return f"Across {group}: {held} invariance holds ({meaning}; Chen 2007 criteria)."
