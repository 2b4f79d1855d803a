"""rma() against metafor 3.8-1: every tau^2 estimator, KNHA, PI, Q-profile, meta-regression.

Reference files (copied from ../shared/oracles into tests/data/meta):
- metafor_computed.json        metafor 3.8-1 defaults (REML threshold 1e-5)  -> rtol 1e-4 / 1e-3
- metafor_computed_tight.json  same models with threshold 1e-12              -> rtol 1e-6
- metafor_upstream_test_expectations.json  numbers from metafor's own testthat files -> rtol 1e-2
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from metafor_refs import COMPUTED, DATA, EXTRA, TIGHT, UPSTREAM

from alliance.research.meta import MetaInputError, fisher_z, predict, rma, wald_test

BCG = pd.read_csv(DATA / "dat.bcg.escalc_RR.csv")
RAUD = pd.read_csv(DATA / "dat.raudenbush1985.csv")
MOLLOY = pd.read_csv(DATA / "dat.molloy2014.csv")
MZ = fisher_z(MOLLOY["ri"], MOLLOY["ni"])

# Non-iterative estimators are exact (rtol 1e-8); iterative ones carry metafor's 1e-5 threshold.
EXACT = ("EE", "DL", "HE", "HS", "SJ")
DATASETS = {"dat.bcg": BCG, "dat.raudenbush1985": RAUD}


def _close(actual: float, expected: float, rtol: float) -> None:
    assert actual == pytest.approx(expected, rel=rtol, abs=1e-12)


@pytest.mark.parametrize(
    ("data", "key"),
    [("dat.bcg", m) for m in ("EE", "DL", "REML", "ML", "PM", "HE", "SJ", "HS", "EB")]
    + [("dat.bcg", "REML_knha"), ("dat.bcg", "DL_knha")]
    + [("dat.raudenbush1985", m) for m in ("EE", "ML", "REML", "DL", "HE", "PM", "SJ")]
    + [("dat.raudenbush1985", f"{m}_knha") for m in ("EE", "ML", "REML", "DL", "HE", "PM", "SJ")],
)
@pytest.mark.filterwarnings("ignore:test='knha' with an equal-effects model")  # as metafor
def test_estimators_match_metafor_computed(data: str, key: str) -> None:
    # Expected: metafor 3.8-1 rma(yi, vi, method=..., test=...) on <data>, metafor_computed.json
    exp = COMPUTED[data][key]
    method, _, test = key.partition("_")
    res = rma(DATASETS[data]["yi"], DATASETS[data]["vi"], method=method, test=test or "z")
    rtol = 1e-8 if method in EXACT else 1e-3
    for ours, theirs in [
        (res.estimate, "estimate"),
        (float(res.se[0]), "se"),
        (float(res.stat[0]), "zval"),
        (float(res.pval[0]), "pval"),
        (float(res.ci_lower[0]), "ci_lb"),
        (float(res.ci_upper[0]), "ci_ub"),
        (res.tau2, "tau2"),
        (res.q, "QE"),
        (res.q_p, "QEp"),
        (res.i2, "I2"),
        (res.h2, "H2"),
        (res.ll_ml, "ll_ML"),
        (res.ll_reml, "ll_REML"),
    ]:
        _close(ours, exp[theirs], rtol)
    assert res.k == exp["k"]
    if exp["pi_lb"] != []:
        _close(res.pi_lower or np.nan, exp["pi_lb"], rtol)
        _close(res.pi_upper or np.nan, exp["pi_ub"], rtol)
    if method != "EE":  # metafor's estimator-specific formula for se(tau^2)
        _close(res.se_tau2 or np.nan, exp["se_tau2"], rtol)


@pytest.mark.parametrize(
    ("key", "data", "method", "test"),
    [
        ("bcg_REML", BCG, "REML", "z"),
        ("bcg_ML", BCG, "ML", "z"),
        ("bcg_PM", BCG, "PM", "z"),
        ("bcg_REML_knha", BCG, "REML", "knha"),
        ("raudenbush_REML", RAUD, "REML", "z"),
        ("raudenbush_REML_knha", RAUD, "REML", "knha"),
        ("molloy_REML", MZ, "REML", "z"),
        ("molloy_REML_knha", MZ, "REML", "knha"),
    ],
)
def test_tight_convergence_to_1e6(key: str, data: pd.DataFrame, method: str, test: str) -> None:
    # Expected: metafor 3.8-1 with control threshold 1e-12, metafor_computed_tight.json
    exp = TIGHT[key]
    res = rma(data["yi"], data["vi"], method=method, test=test)
    assert res.converged
    for ours, theirs in [
        (res.estimate, exp["estimate"]),
        (float(res.se[0]), exp["se"]),
        (res.tau2, exp["tau2"]),
        (float(res.ci_lower[0]), exp["ci"][0]),
        (float(res.ci_upper[0]), exp["ci"][1]),
        (res.i2, exp["I2"]),
        (res.h2, exp["H2"]),
        (res.q, exp["QE"]),
        (res.pi_lower or np.nan, exp["pi"][0]),
        (res.pi_upper or np.nan, exp["pi"][1]),
        (res.se_tau2 or np.nan, exp["se_tau2"]),
    ]:
        _close(ours, theirs, 1e-6)


def test_molloy_back_transformed_to_r() -> None:
    # Expected: metafor 3.8-1 predict(rma(..., test="knha"), transf=transf.ztor),
    #   tight file "r_pred"
    # = [pred, ci.lb, ci.ub, pi.lb, pi.ub] on the r scale
    d = rma(MZ["yi"], MZ["vi"], test="knha", measure="ZCOR").to_dict()
    got = [d["r"], d["r_ci_lower"], d["r_ci_upper"], d["r_pi_lower"], d["r_pi_upper"]]
    np.testing.assert_allclose(got, TIGHT["molloy_REML_knha"]["r_pred"], rtol=1e-6)


def test_bcg_exp_predictions() -> None:
    # Expected: metafor 3.8-1 predict(rma(REML), transf=exp) on dat.bcg, metafor_computed.json
    res = rma(BCG["yi"], BCG["vi"])
    p = predict(res, [[1.0]]).iloc[0]
    got = np.exp([p["pred"], p["ci_lower"], p["ci_upper"], p["pi_lower"], p["pi_upper"]])
    np.testing.assert_allclose(got, COMPUTED["dat.bcg"]["REML"]["exp_pred"], rtol=1e-4)


@pytest.mark.parametrize(("name", "data"), [("molloy", MZ), ("bcg", BCG)])
def test_qprofile_ci_for_tau2_i2_h2(name: str, data: pd.DataFrame) -> None:
    fit = rma(data["yi"], data["vi"])
    # Expected: metafor 3.8-1 confint(rma(REML, threshold 1e-12), control=list(tol=1e-12)),
    # metafor_extra.json "qprofile_tight" (generate_metafor_extra.R)
    exp = EXTRA["qprofile_tight"]
    np.testing.assert_allclose(fit.tau2_ci, exp[f"{name}_tau2"], rtol=1e-7)
    np.testing.assert_allclose(fit.i2_ci, exp[f"{name}_I2"], rtol=1e-7)
    np.testing.assert_allclose(fit.h2_ci, exp[f"{name}_H2"], rtol=1e-7)
    # Expected: metafor 3.8-1 confint() defaults (uniroot tol ~1.2e-4 absolute),
    #   metafor_computed.json
    key = {"molloy": "dat.molloy2014", "bcg": "dat.bcg"}[name]
    np.testing.assert_allclose(fit.tau2_ci, COMPUTED[key]["REML"]["tau2_ci_qprofile"], atol=1.2e-4)


@pytest.mark.parametrize(
    ("key", "cols", "test"),
    [
        ("REML_mods_ablat", ["ablat"], "z"),
        ("REML_mods_ablat_knha", ["ablat"], "knha"),
        ("REML_mods_ablat_year_alloc", ["ablat", "year", "alloc"], "z"),
    ],
)
def test_meta_regression_bcg(key: str, cols: list[str], test: str) -> None:
    # Expected: metafor 3.8-1 rma(yi, vi, mods = ~ <cols>, test=...) on dat.bcg,
    #   metafor_computed.json
    exp = COMPUTED["dat.bcg"][key]
    res = rma(BCG["yi"], BCG["vi"], mods=BCG[cols], test=test)
    np.testing.assert_allclose(res.beta, exp["estimate"], rtol=1e-3)
    np.testing.assert_allclose(res.se, exp["se"], rtol=1e-3)
    np.testing.assert_allclose(res.stat, exp["zval"], rtol=1e-3)
    np.testing.assert_allclose(res.pval, exp["pval"], rtol=1e-3)
    np.testing.assert_allclose(res.ci_lower, exp["ci_lb"], rtol=1e-3)
    for ours, theirs in [
        (res.tau2, "tau2"),
        (res.q, "QE"),
        (res.qm, "QM"),
        (res.qm_p, "QMp"),
        (res.i2, "I2"),
        (res.h2, "H2"),
        (res.r2, "R2"),
        (res.ll_reml, "ll_REML"),
    ]:
        _close(float(ours or 0.0), exp[theirs], 1e-3)
    assert res.qm_df == (exp["QMdf"][0], None if exp["QMdf"][1] == "NA" else exp["QMdf"][1])


def test_meta_regression_tight() -> None:
    # Expected: metafor 3.8-1 rma(yi, vi, mods = ~ ablat), threshold 1e-12,
    #   metafor_computed_tight.json
    exp = TIGHT["bcg_REML_ablat"]
    res = rma(BCG["yi"], BCG["vi"], mods=BCG[["ablat"]])
    np.testing.assert_allclose(res.beta, exp["estimate"], rtol=1e-6)
    np.testing.assert_allclose(res.se, exp["se"], rtol=1e-6)
    np.testing.assert_allclose(
        [res.tau2, res.i2, res.h2], [exp["tau2"], exp["I2"], exp["H2"]], rtol=1e-6
    )


@pytest.mark.parametrize(
    ("key", "cols"),
    [("REML_mods_meanage_quality", ["meanage", "quality"]), ("REML_mods_design", ["design"])],
)
def test_meta_regression_molloy(key: str, cols: list[str]) -> None:
    # Expected: metafor 3.8-1 rma(yi, vi, mods = ~ <cols>) on dat.molloy2014 (ZCOR),
    #   metafor_computed.json
    exp = COMPUTED["dat.molloy2014"][key]
    res = rma(MZ["yi"], MZ["vi"], mods=MOLLOY[cols])
    np.testing.assert_allclose(res.beta, exp["estimate"], rtol=1e-3)
    np.testing.assert_allclose(res.se, exp["se"], rtol=1e-3)
    _close(res.qm or 0.0, exp["QM"], 1e-3)
    _close(res.tau2, exp["tau2"], 1e-3)
    assert res.r2 == exp["R2"] == 0


def test_wald_test_equals_omnibus() -> None:
    # Expected: metafor 3.8-1 QM for mods = ~ ablat + year + alloc (4 df), metafor_computed.json
    res = rma(BCG["yi"], BCG["vi"], mods=BCG[["ablat", "year", "alloc"]])
    stat, df, p = wald_test(res, ["ablat", "year", "alloc[random]", "alloc[systematic]"])
    exp = COMPUTED["dat.bcg"]["REML_mods_ablat_year_alloc"]
    assert df == 4
    _close(stat, exp["QM"], 1e-3)
    _close(p, exp["QMp"], 1e-3)


@pytest.mark.filterwarnings("ignore:test='knha' with an equal-effects model")  # as metafor
def test_upstream_raudenbush_table() -> None:
    # Expected: metafor tests/testthat/test_analysis_example_raudenbush2009.r (Raudenbush 2009,
    #   Table 16.3),
    # metafor_upstream_test_expectations.json, 4-decimal values (their tolerance: rtol 1e-2)
    for case, test in [
        ("raudenbush1985_estimators_z", "z"),
        ("raudenbush1985_estimators_knha", "knha"),
    ]:
        exp = UPSTREAM[case]["expected"]
        for i, method in enumerate(exp["rows"]):
            res = rma(RAUD["yi"], RAUD["vi"], method=method, test=test)
            stat = exp["z"] if test == "z" else exp["t"]
            got = [res.tau2, res.estimate, res.se[0], res.stat[0], res.ci_lower[0], res.ci_upper[0]]
            want = [
                exp["tau2"][i],
                exp["mu"][i],
                exp["se"][i],
                stat[i],
                exp["ci_lb"][i],
                exp["ci_ub"][i],
            ]
            np.testing.assert_allclose(got, want, rtol=1e-2, atol=1e-4)


def test_upstream_konstantopoulos_two_level_qprofile() -> None:
    # Expected: metafor tests/testthat/test_analysis_example_konstantopoulos2011.r, rtol 1e-2
    d = pd.read_csv(DATA / "dat.konstantopoulos2011.csv")
    for case, mods in [
        ("konst_2level_REML", None),
        ("konst_2level_REML_year", d["year"] - d["year"].mean()),
    ]:
        exp = UPSTREAM[case]["expected"]
        res = rma(d["yi"], d["vi"], mods=mods)
        coef = exp.get("coef", [exp.get("estimate")])
        np.testing.assert_allclose(res.beta, coef, rtol=1e-2, atol=1e-4)
        np.testing.assert_allclose(
            [res.tau2, res.se_tau2], [exp["tau2"], exp["se_tau2"]], rtol=1e-2
        )
        np.testing.assert_allclose(res.tau2_ci, exp["tau2_ci_qprofile"], rtol=1e-2)


def test_fixed_tau2_and_summary_text() -> None:
    # Expected: with tau2 fixed at metafor's REML estimate the estimate equals metafor's (tight
    #   file)
    res = rma(BCG["yi"], BCG["vi"], tau2=TIGHT["bcg_REML"]["tau2"])
    _close(res.estimate, TIGHT["bcg_REML"]["estimate"], 1e-9)
    text = rma(MZ["yi"], MZ["vi"], measure="ZCOR").summary()
    assert "Random-effects model (k = 16" in text
    assert "Back-transformed to r: 0.1488 [0.0878, 0.2087]" in text  # metafor r_pred (rounded)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"yi": [0.1], "vi": [0.01]}, "at least 2 studies"),
        ({"yi": [0.1, 0.2], "vi": [0.01, 0.0]}, "row 2"),
        ({"yi": [0.1, np.nan], "vi": [0.01, 0.02]}, "yi: missing or not finite in row 2"),
        ({"yi": [0.1, 0.2, 0.3], "vi": [0.01, 0.02, 0.03], "method": "XX"}, "method 'XX'"),
        ({"yi": [0.1, 0.2], "vi": [0.01, 0.02], "mods": [1.0, 2.0]}, "k - p < 1"),
        ({"yi": [0.1, 0.2], "vi": [0.01, 0.02], "slab": ["A", "B"], "tau2": -1.0}, "tau2"),
    ],
)
def test_bad_input_is_named(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(MetaInputError, match=message.replace("(", r"\(")):
        rma(**kwargs)  # type: ignore[arg-type]


def test_error_names_study_label() -> None:
    with pytest.raises(MetaInputError, match=r"row 2 \(study 'Bruce'\)"):
        rma([0.1, 0.2], [0.01, -0.02], slab=["Axelsson", "Bruce"])
