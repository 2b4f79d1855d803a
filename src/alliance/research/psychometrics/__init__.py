"""Psychometrics of alliance instruments: reliability, items and factor structure.

Flat functions on wide tables (one column per item, one row per administration), as in the
rest of :mod:`alliance.research`: Cronbach's alpha with Feldt or bootstrap intervals,
item-total statistics, split-half reliability and Guttman's lambda-6, the six Shrout-Fleiss
ICCs (:mod:`.reliability`); floor/ceiling effects and straight-lining (:mod:`.items`);
maximum-likelihood CFA as lavaan defines it, with omegas and measurement invariance
(:mod:`.cfa`); psych's omega by exploratory factor analysis and Schmid-Leiman
(:mod:`.omega`); polychoric correlations and WLSMV for ordinal items (:mod:`.ordinal`);
structural models and the random-intercept cross-lagged panel model
(:mod:`.sem`); and the report that gathers them for an instrument (:mod:`.report`).

>>> import pandas as pd
>>> from alliance.research.psychometrics import cronbach_alpha
>>> t = pd.DataFrame({"a": [1, 2, 3, 4, 5], "b": [2, 2, 3, 5, 4], "c": [1, 3, 3, 4, 5]})
>>> round(cronbach_alpha(t).alpha, 4)
0.9451
"""

from alliance.research.psychometrics.cfa import (
    CFAError,
    CFAResult,
    HeywoodWarning,
    bifactor_omega,
    cfa,
    factor_omegas,
    measurement_invariance,
    one_factor,
)
from alliance.research.psychometrics.items import (
    floor_ceiling,
    straight_lining,
    straight_lining_share,
)
from alliance.research.psychometrics.omega import EFAResult, OmegaResult, efa, omega_sl
from alliance.research.psychometrics.ordinal import (
    OrdinalCFAResult,
    OrdinalError,
    PolychoricResult,
    cfa_ordinal,
    polychoric,
)
from alliance.research.psychometrics.reliability import (
    AlphaResult,
    PsychometricsError,
    SplitHalfResult,
    alpha_if_deleted,
    cronbach_alpha,
    guttman_lambda6,
    icc,
    item_total,
    split_half,
)
from alliance.research.psychometrics.report import (
    PsychometricsReport,
    instrument_scales,
    psychometrics_report,
)
from alliance.research.psychometrics.sem import SEMError, SEMResult, clpm, riclpm, sem

__all__ = [
    "AlphaResult",
    "CFAError",
    "CFAResult",
    "EFAResult",
    "HeywoodWarning",
    "OmegaResult",
    "OrdinalCFAResult",
    "OrdinalError",
    "PolychoricResult",
    "PsychometricsError",
    "PsychometricsReport",
    "SEMError",
    "SEMResult",
    "SplitHalfResult",
    "alpha_if_deleted",
    "bifactor_omega",
    "cfa",
    "cfa_ordinal",
    "clpm",
    "cronbach_alpha",
    "efa",
    "factor_omegas",
    "floor_ceiling",
    "guttman_lambda6",
    "icc",
    "instrument_scales",
    "item_total",
    "measurement_invariance",
    "omega_sl",
    "one_factor",
    "polychoric",
    "psychometrics_report",
    "riclpm",
    "sem",
    "split_half",
    "straight_lining",
    "straight_lining_share",
]
