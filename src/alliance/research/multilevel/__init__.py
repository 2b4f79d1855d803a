"""Multilevel models of sessions nested in patients nested in therapists (issue 11).

``lmm`` fits linear mixed models written in lme4's notation, by REML or ML, with any number
of nested or crossed random terms; the results are tables, as lme4's summaries are.
``confint`` gives profile-likelihood intervals of the variance components, ``lrt``
likelihood-ratio tests of nested fits.

>>> import pandas as pd
>>> from alliance.research.multilevel import lmm
>>> t = pd.DataFrame({"g": list("aabbcc"), "y": [1.0, 2.0, 4.0, 5.0, 2.5, 3.5]})
>>> round(lmm("y ~ 1 + (1 | g)", t).sigma, 6)
0.707107
"""

from alliance.research.multilevel.formula import Formula, FormulaError, RandomTerm, parse_formula
from alliance.research.multilevel.inference import lrt, satterthwaite_df
from alliance.research.multilevel.lmm import MixedModelFit, lmm
from alliance.research.multilevel.profile import confint

__all__ = [
    "Formula",
    "FormulaError",
    "MixedModelFit",
    "RandomTerm",
    "confint",
    "lmm",
    "lrt",
    "parse_formula",
    "satterthwaite_df",
]
