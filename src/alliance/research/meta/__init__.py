"""Meta-analysis of alliance-outcome associations, validated against R's metafor.

Pure functions on arrays and tables (no file I/O, no printing):

- effect sizes: :func:`fisher_z`, :func:`smd`, :func:`log_risk_ratio`,
  :func:`log_odds_ratio`, :func:`log_ratio_of_means`, :func:`z_to_r`;
- models: :func:`rma` (EE/DL/HE/HS/SJ/ML/REML/PM/EB; z, t or Knapp-Hartung;
  Q-profile CI for tau^2, prediction interval, Q, I^2, H^2, meta-regression
  with QM and R^2), :func:`predict`, :func:`subgroup`, :func:`wald_test`;
- dependent effects: :func:`rma_mv` (three-level), :func:`robust` (CR1/CR2);
- small-study bias and diagnostics: :func:`regtest`, :func:`ranktest`,
  :func:`trimfill`, :func:`leave1out`, :func:`influence`;
- charts: :func:`forest_chart`, :func:`funnel_chart`, :func:`chart_bytes`;
- study tables: :func:`study_table`, :func:`analysis_table`;
- many analyses at once (bootstrap, simulation): :func:`rma_batch`.

>>> from alliance.research.meta import fisher_z, rma
>>> es = fisher_z([0.25, 0.31, 0.18, 0.22], [120, 64, 210, 95])
>>> res = rma(es["yi"], es["vi"], measure="ZCOR")
>>> round(res.to_dict()["r"], 3)
0.222
"""

from typing import Any

from alliance.research.meta._validate import MetaInputError, MetaWarning
from alliance.research.meta.batch import BatchResult, bootstrap, rma_batch
from alliance.research.meta.bias import (
    RegTest,
    TrimFill,
    influence,
    leave1out,
    ranktest,
    regtest,
    trimfill,
)
from alliance.research.meta.effects import (
    fisher_z,
    log_odds_ratio,
    log_ratio_of_means,
    log_risk_ratio,
    smd,
    z_to_r,
)
from alliance.research.meta.models import METHODS, TESTS, MetaResult, predict, rma, tau2_qprofile
from alliance.research.meta.multilevel import MultilevelResult, RobustResult, rma_mv, robust
from alliance.research.meta.regression import SubgroupResult, design_matrix, subgroup, wald_test
from alliance.research.meta.studies import analysis_table, study_table

_PLOTS = ("chart_bytes", "forest_chart", "forest_data", "funnel_chart")


def __getattr__(name: str) -> Any:
    """Load the chart functions (and Altair) only when first used."""
    if name in _PLOTS:
        from alliance.research.meta import plots

        return getattr(plots, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "METHODS",
    "TESTS",
    "BatchResult",
    "MetaInputError",
    "MetaResult",
    "MetaWarning",
    "MultilevelResult",
    "RegTest",
    "RobustResult",
    "SubgroupResult",
    "TrimFill",
    "analysis_table",
    "bootstrap",
    "chart_bytes",
    "design_matrix",
    "fisher_z",
    "forest_chart",
    "forest_data",
    "funnel_chart",
    "influence",
    "leave1out",
    "log_odds_ratio",
    "log_ratio_of_means",
    "log_risk_ratio",
    "predict",
    "ranktest",
    "regtest",
    "rma",
    "rma_batch",
    "rma_mv",
    "robust",
    "smd",
    "study_table",
    "subgroup",
    "tau2_qprofile",
    "trimfill",
    "wald_test",
    "z_to_r",
]
