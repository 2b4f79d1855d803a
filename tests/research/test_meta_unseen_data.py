"""Regression tests of issue 18: statistics that disagreed with the references on data the
earlier tests never used.

References: ``tests/data/issue18/references.json``, written by ``generate.R`` beside it
(R 4.2.2; metafor 3.8-1, clubSandwich 0.5.8, psych 2.2.9 from Debian), on data sets that the
same script generates with fixed seeds (the CSV files there) and on dat.bcg.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from metafor_refs import DATA as META_DATA
from scipy import optimize

from alliance.research.meta import MetaWarning, rma, rma_mv, robust
from alliance.research.meta.bias import influence, leave1out, ranktest
from alliance.research.meta.multilevel import _loglik

DATA = Path(__file__).parents[1] / "data" / "issue18"
REF = json.loads((DATA / "references.json").read_text())
TOY = pd.DataFrame(
    {"yi": [0, 0.6, 0.5, 0.1, 0.2, 0.45, 0.55, 0.05, 0.3, 0.35], "vi": [0.01] * 10}
).assign(cluster=np.repeat(np.arange(1, 6), 2))
BOUNDARY = pd.read_csv(DATA / "boundary_3level.csv")


# -- 1. the three-level model at a boundary ----------------------------------------------------
@pytest.mark.parametrize(("name", "data"), [("toy_3level", TOY), ("boundary_3level", BOUNDARY)])
def test_three_level_fit_matches_metafor_at_and_near_the_boundary(
    name: str, data: pd.DataFrame
) -> None:
    # Expected: metafor rma.mv(yi, vi, random = ~ 1 | cluster/esid), REML and ML, nlminb
    # rel.tol 1e-10; clubSandwich coef_test(vcov = "CR2"): references.json[name]
    exp = REF[name]
    reml = rma_mv(data["yi"], data["vi"], data["cluster"])
    assert reml.converged
    np.testing.assert_allclose(reml.sigma2, exp["sigma2"], rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(
        [reml.estimate, reml.se[0], reml.loglik],
        [exp["estimate"], exp["se"], exp["logLik"]],
        rtol=1e-6,
    )
    ml = rma_mv(data["yi"], data["vi"], data["cluster"], method="ML")
    assert ml.converged
    np.testing.assert_allclose(ml.sigma2, exp["ml_sigma2"], rtol=1e-6, atol=1e-9)
    assert ml.loglik == pytest.approx(exp["ml_logLik"], rel=1e-8)
    cr2 = robust(reml)
    np.testing.assert_allclose([cr2.se[0], cr2.df[0]], [exp["cr2_se"], exp["cr2_df"]], rtol=1e-5)


def _loglik_at(data: pd.DataFrame, ml: bool) -> Callable[[float, float], float]:
    """The (restricted) log-likelihood of the three-level model as a function of sigma2."""
    y, v = data["yi"].to_numpy(float), data["vi"].to_numpy(float)
    codes = pd.factorize(data["cluster"])[0]
    same = (codes[:, None] == codes[None, :]).astype(float)
    X = np.ones((y.size, 1))
    return lambda a, b: _loglik(y, X, np.diag(v) + a * same + b * np.eye(y.size), ml)


@pytest.mark.parametrize("seed", range(25))
def test_three_level_loglik_is_the_maximum_on_random_data_with_boundary_components(
    seed: int,
) -> None:
    # No true between-cluster variance (and, in half of the data sets, no within-cluster
    # variance either): the estimates often sit at 0. Converged must mean: no point of
    # sigma2 >= 0 that a second optimiser (L-BFGS-B, four starts) or a 41 x 41 grid finds
    # is better.
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 5, rng.integers(5, 12))
    cluster = np.repeat(np.arange(sizes.size), sizes)
    vi = rng.uniform(0.01, 0.1, cluster.size)
    within = 0.0 if seed % 2 else 0.03
    y = rng.normal(0.3, np.sqrt(vi + within))
    data = pd.DataFrame({"yi": y, "vi": vi, "cluster": cluster})
    top = 2 * float(np.var(y))
    at_bound = 0
    for ml in (False, True):
        res = rma_mv(data["yi"], data["vi"], data["cluster"], method="ML" if ml else "REML")
        loglik = _loglik_at(data, ml)
        assert res.converged
        assert res.loglik == pytest.approx(loglik(*res.sigma2), rel=1e-12)
        starts = [(0.0, top / 2), (top / 2, 0.0), (top / 4, top / 4), (0.0, 0.0)]
        second = max(
            -optimize.minimize(
                lambda s, f=loglik: -f(*s), x0, method="L-BFGS-B", bounds=[(0, None)] * 2
            ).fun
            for x0 in starts
        )
        grid = np.linspace(0, top, 41)
        best = max(loglik(a, b) for a in grid for b in grid)
        assert res.loglik >= max(second, best) - 1e-9
        at_bound += int(np.any(res.sigma2 == 0))
    if seed in (0, 1):  # the property is exercised where it matters: at the boundary
        assert at_bound >= 1


# -- 2. Sidik-Jonkman with moderators ----------------------------------------------------------
@pytest.mark.parametrize("name", ["bcg_SJ_ablat", "metareg_SJ"])
def test_sidik_jonkman_meta_regression_starts_as_metafor_does(name: str) -> None:
    # Expected: metafor rma(yi, vi, mods = ~ x, method = "SJ"): references.json[name]
    if name == "bcg_SJ_ablat":
        d = pd.read_csv(META_DATA / "dat.bcg.escalc_RR.csv")
        mods = d[["ablat"]]
    else:
        d = pd.read_csv(DATA / "metareg_sj.csv")
        mods = d[["x"]]
    exp = REF[name]
    res = rma(d["yi"], d["vi"], mods=mods, method="SJ")
    assert res.tau2 == pytest.approx(exp["tau2"], rel=1e-9)
    assert res.se_tau2 == pytest.approx(exp["se_tau2"], rel=1e-9)
    np.testing.assert_allclose(res.se, exp["se"], rtol=1e-9)
    np.testing.assert_allclose(res.beta, exp["beta"], rtol=1e-9)
    assert res.r2 == pytest.approx(exp["R2"], rel=1e-9, abs=1e-12)


# -- 3. the rank correlation test with k >= 50 -------------------------------------------------
def test_rank_test_is_exact_without_ties_at_60_studies() -> None:
    # Expected: metafor ranktest(rma(yi, vi)) (exact = TRUE): references.json["ranktest60"]
    d = pd.read_csv(DATA / "ranktest60.csv")
    tau, p = ranktest(rma(d["yi"], d["vi"]))
    assert tau == pytest.approx(REF["ranktest60"]["tau"], rel=1e-12)
    assert p == pytest.approx(REF["ranktest60"]["pval"], rel=1e-9)


# -- 4. R^2 when there is no heterogeneity to explain -----------------------------------------
def test_r2_is_zero_when_the_intercept_only_tau2_is_zero() -> None:
    # Expected: metafor rma(yi, vi, mods = ~ x)$R2 = 0, with tau^2 = 0 in rma(yi, vi):
    # references.json["r2_zero"]
    d = pd.read_csv(DATA / "r2_zero.csv")
    assert rma(d["yi"], d["vi"]).tau2 == REF["r2_zero"]["tau2_intercept_only"] == 0
    assert rma(d["yi"], d["vi"], mods=d[["x"]]).r2 == REF["r2_zero"]["R2"] == 0


# -- 6. where metafor warns, we warn in our words; leave1out at k = 2 is quiet and exact ------
def test_extreme_variance_ratio_warns_as_metafor_does() -> None:
    warned = REF["warnings"]  # 1 where metafor 3.8-1 warned
    assert warned["variance_ratio_1e7"] == 1 and warned["variance_ratio_below"] == 0
    with pytest.warns(MetaWarning, match=r"vi: the largest sampling variance is 2e\+07 times"):
        rma([0.1, 0.3, 0.2, 0.5], [1e-6, 0.02, 0.03, 20])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rma([0.1, 0.3, 0.2, 0.5], [3e-6, 0.02, 0.03, 20])


def test_equal_effects_with_knapp_hartung_warns_as_metafor_does() -> None:
    assert REF["warnings"]["ee_knha"] == 1
    with pytest.warns(MetaWarning, match="Knapp-Hartung"):
        rma([0.1, 0.3, 0.2, 0.5], [0.01, 0.02, 0.03, 0.02], method="EE", test="knha")


@pytest.mark.parametrize("method", ["REML", "DL", "EE"])
@pytest.mark.parametrize("test", ["z", "knha"])
def test_leave1out_at_two_studies_matches_metafor_without_numpy_warnings(
    method: str, test: str
) -> None:
    ref = REF[f"leave1out_k2_{method}_{test}"]
    if method == "EE" and test == "knha":
        with pytest.warns(MetaWarning, match="Knapp-Hartung"):
            fit = rma([0.1, 0.3], [0.01, 0.02], method=method, test=test)
    else:
        fit = rma([0.1, 0.3], [0.01, 0.02], method=method, test=test)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning from numpy, no MetaWarning
        out = leave1out(fit)
        influence(fit)
    _assert_leave1out(out, ref)


def test_leave1out_with_a_zero_standard_error_is_quiet() -> None:
    ref = REF["leave1out_k3_knha"]  # the two studies left agree: se 0, stat inf (metafor too)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = leave1out(rma([0.1, 0.3, 0.3], [0.01, 0.02, 0.01], test="knha"))
    _assert_leave1out(out, ref)


def _assert_leave1out(out: pd.DataFrame, ref: dict[str, list[float]]) -> None:
    # metafor's leave1out column names -> ours
    columns = {"estimate": "estimate", "se": "se", "pval": "pval", "ci_lb": "ci_lower",
               "ci_ub": "ci_upper", "Q": "q", "Qp": "q_p", "tau2": "tau2", "I2": "i2",
               "H2": "h2"}  # fmt: skip
    for theirs, ours in columns.items():
        np.testing.assert_allclose(out[ours], ref[theirs], rtol=1e-9, atol=1e-12, err_msg=ours)
