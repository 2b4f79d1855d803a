"""The ML confirmatory factor analysis engine against lavaan 0.6-14 itself.

References (no R needed here): ``../shared/oracles/psychometrics_mlm_computed.json`` (lavaan
0.6-14 from Debian on R 4.2.2, HolzingerSwineford1939 x1..x9) and
``../shared/oracles/synthetic_computed.json`` (lavaan on ``synthetic_waisr_items.csv``); the
oracle tests skip when that folder is absent. The values there are ``signif(x, 10)`` of
lavaan's estimates, which lavaan's optimiser (nlminb, relative tolerance ~1e-10 on F) leaves
~1e-7 from the exact optimum ours reaches, so estimates are compared at 1e-5 and fit
measures at 1e-6 (relative). lavaan's RMSEA interval comes from ``uniroot`` at its default
tolerance, hence 1e-5 there. The modification indices are lavaan's tutorial printout
(https://lavaan.ugent.be/tutorial/modindices.html, three decimals).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from alliance.research.psychometrics.cfa import (
    CFAError,
    HeywoodWarning,
    bifactor_omega,
    cfa,
    factor_omegas,
    measurement_invariance,
    one_factor,
)

# copied from ../shared/oracles (tests/data/psychometrics/README.md)
ORACLES = Path(__file__).resolve().parents[1] / "data" / "psychometrics"
needs_oracles = pytest.mark.skipif(not ORACLES.is_dir(), reason="../shared/oracles absent")

HS_MODEL = {
    "visual": ["x1", "x2", "x3"],
    "textual": ["x4", "x5", "x6"],
    "speed": ["x7", "x8", "x9"],
}
WAI_MODEL = {k: [f"{k}{i}" for i in range(1, 5)] for k in ("goal", "task", "bond")}
FIT_KEYS = ["chisq", "df", "pvalue", "cfi", "tli", "rmsea", "srmr", "aic", "bic", "logl"]
CI_KEYS = ["rmsea.ci.lower", "rmsea.ci.upper"]


def _json(name: str) -> dict[str, Any]:
    out: dict[str, Any] = json.loads((ORACLES / name).read_text())
    return out


def _csv(name: str) -> pd.DataFrame:
    return pd.read_csv(ORACLES / name)


def _check_fit(ours: dict[str, float], lavaan: dict[str, float], srmr_rel: float = 1e-6) -> None:
    for key, value in lavaan.items():
        if key == "pvalue" and value == 0:  # lavaan prints p below 1e-16 as 0
            assert ours[key] < 1e-16
            continue
        rel = 1e-5 if key in CI_KEYS else srmr_rel if key == "srmr" else 1e-6
        if key == "pvalue" and value < 1e-6:
            # far-tail p (1e-11): ours equals a 40-digit mpmath upper incomplete gamma to
            # 1e-15; lavaan's differs from it by up to 1.5e-6 (relative)
            rel = 1e-5
        assert ours[key] == pytest.approx(value, rel=rel, abs=1e-12), key


def _row(params: pd.DataFrame, lhs: str, op: str, rhs: str) -> pd.Series:
    hit = params[(params["lhs"] == lhs) & (params["op"] == op) & (params["rhs"] == rhs)]
    assert len(hit) == 1, (lhs, op, rhs)
    return hit.iloc[0]


# --------------------------------------------------------------------------- lavaan oracles


@needs_oracles
def test_hs_three_factor_fit_measures_match_lavaan() -> None:
    # psychometrics_mlm_computed.json cfa_3factor.fit: chisq 85.30552177, df 24, cfi
    # 0.9305596518, tli 0.8958394777, rmsea 0.09212148451 [0.07141849044, 0.1136780168],
    # srmr 0.06520505718, aic 7517.489853, bic 7595.339169, logl -3737.744927 (lavaan 0.6-14)
    ref = _json("psychometrics_mlm_computed.json")["cfa_3factor"]
    fit = cfa(_csv("HolzingerSwineford1939.csv"), HS_MODEL)
    assert fit.converged and fit.heywood == [] and fit.n == ref["n"] == 301
    _check_fit(fit.fit, ref["fit"])
    # q = 21: the covariance-structure parameters only (lavaan's meanstructure is off)
    assert fit.fit["npar"] == 21
    # baseline: "Minimum Function Test Statistic 918.852, df 36" in lavaan's summary
    # (stats.stackexchange.com/questions/157962, lavaan 0.5-18 printout, 3 decimals)
    assert fit.fit["baseline.chisq"] == pytest.approx(918.852, abs=5e-4)
    assert fit.fit["baseline.df"] == 36


@needs_oracles
def test_hs_three_factor_estimates_ses_and_std_all_match_lavaan() -> None:
    # psychometrics_mlm_computed.json cfa_3factor.params: parameterEstimates() est and se
    # (expected information, N) and standardizedSolution() std.all, 24 rows in lavaan's order
    ref = _json("psychometrics_mlm_computed.json")["cfa_3factor"]["params"]
    params = cfa(_csv("HolzingerSwineford1939.csv"), HS_MODEL).params
    assert list(zip(params["lhs"], params["op"], params["rhs"])) == [
        (r["lhs"], r["op"], r["rhs"]) for r in ref
    ]
    for (_, ours), r in zip(params.iterrows(), ref):
        for col in ("est", "se", "std_all"):
            assert ours[col] == pytest.approx(r[col], rel=1e-5, abs=1e-7), (r["rhs"], col)
    fixed = params[params["se"] == 0]
    assert fixed["z"].isna().all() and fixed["p"].isna().all()
    # x2's z: "x2 0.554 0.100 5.554 0.000" (lavaan summary, stackexchange 157962)
    assert _row(params, "visual", "=~", "x2")["z"] == pytest.approx(5.554, abs=5e-4)


@needs_oracles
def test_hs_one_factor_fit_matches_lavaan() -> None:
    # psychometrics_mlm_computed.json cfa_1factor_fit: chisq 312.2641594, df 27, cfi
    # 0.6768832238, rmsea 0.1873520611, srmr 0.1431417488, logl -3851.224245 (lavaan 0.6-14)
    ref = _json("psychometrics_mlm_computed.json")["cfa_1factor_fit"]
    fit = cfa(_csv("HolzingerSwineford1939.csv"), one_factor([f"x{i}" for i in range(1, 10)]))
    assert fit.converged
    _check_fit(fit.fit, ref)


@needs_oracles
def test_hs_bifactor_reproduces_lavaans_heywood_solution() -> None:
    # psychometrics_mlm_computed.json cfa_bifactor (std.lv=TRUE, orthogonal=TRUE): lavaan
    # "converged" to an improper solution, x1's residual variance -1.141233242 with
    # visual =~ x1 -1.163994522; we land on the same optimum and flag x1, never silently
    ref = _json("psychometrics_mlm_computed.json")["cfa_bifactor"]
    with pytest.warns(HeywoodWarning, match="negative residual variance.*x1"):
        fit = cfa(_csv("HolzingerSwineford1939.csv"), HS_MODEL, bifactor="g", std_lv=True)
    assert fit.converged is ref["converged"] is True
    assert fit.heywood == ["x1"]
    assert any("x1" in note for note in fit.notes)
    _check_fit(fit.fit, ref["fit"])
    params = fit.params
    g = params[(params["op"] == "=~") & (params["lhs"] == "g")]
    specific = params[(params["op"] == "=~") & (params["lhs"] != "g")]
    residual = params[(params["op"] == "~~") & params["lhs"].str.match(r"x\d$")]
    # visual =~ x1 and x1 ~~ x1 sit on a flat ridge (SE 3.6 and 8.5), where lavaan's
    # stopping rule leaves them 3e-6 and 6e-6 (relative) from the optimum
    np.testing.assert_allclose(g["est"], ref["g_loadings"], rtol=1e-5)
    np.testing.assert_allclose(specific["est"], ref["specific_loadings"], rtol=1e-5)
    np.testing.assert_allclose(residual["est"], ref["residual_vars"], rtol=1e-5)
    # omega_h 0.5509908471, omega_t 0.8998543059 (same file; model-implied total variance)
    omega = bifactor_omega(fit, "g")
    assert omega["omega_h"] == pytest.approx(ref["omega_h"], rel=1e-5)
    assert omega["omega_t"] == pytest.approx(ref["omega_t"], rel=1e-5)


@needs_oracles
def test_hs_omega_per_factor_matches_oracle() -> None:
    # psychometrics_mlm_computed.json omega_cfa_per_factor: visual 0.6253180156, textual
    # 0.8851753603, speed 0.6877600372, (Σλ)²φ / ((Σλ)²φ + Σθ) from the 3-factor fit
    ref = _json("psychometrics_mlm_computed.json")["omega_cfa_per_factor"]
    omegas = factor_omegas(cfa(_csv("HolzingerSwineford1939.csv"), HS_MODEL))
    for factor, value in omegas.items():
        assert value == pytest.approx(ref[factor], rel=1e-5), factor


@needs_oracles
@pytest.mark.parametrize(
    ("key", "kwargs"), [("cfa_3factor", {}), ("cfa_bifactor", {"bifactor": "gen"})]
)
def test_synthetic_wai_sr_matches_lavaan(key: str, kwargs: dict[str, Any]) -> None:
    # synthetic_computed.json synthetic_waisr.cfa_3factor (chisq 73.63970575, df 51, cfi
    # 0.9920983688, rmsea 0.02720036149, srmr 0.02387211849, logl -9468.449419) and
    # .cfa_bifactor (chisq 54.73585678, df 42, ...), with their std_all loadings
    ref = _json("synthetic_computed.json")["synthetic_waisr"][key]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a proper solution: no Heywood warning
        fit = cfa(_csv("synthetic_waisr_items.csv"), WAI_MODEL, **kwargs)
    assert fit.converged and fit.n == 600
    _check_fit(fit.fit, ref["fit"])
    for r in ref["std_loadings"]:
        ours = _row(fit.params, r["lhs"], "=~", r["rhs"])["std_all"]
        assert ours == pytest.approx(r["std_all"], rel=1e-5), (r["lhs"], r["rhs"])


@needs_oracles
def test_synthetic_wai_sr_one_factor_and_bifactor_omega_match_lavaan() -> None:
    # synthetic_computed.json synthetic_waisr.cfa_1factor (chisq 499.4430234, df 54, ...) and
    # cfa_bifactor omega_h 0.7974160444, omega_t 0.9130200617, ecv 0.6934235158
    ref = _json("synthetic_computed.json")["synthetic_waisr"]
    items = [i for items in WAI_MODEL.values() for i in items]
    data = _csv("synthetic_waisr_items.csv")
    _check_fit(cfa(data, one_factor(items)).fit, ref["cfa_1factor"])
    omega = bifactor_omega(cfa(data, WAI_MODEL, bifactor="gen"), "gen")
    for key in ("omega_h", "omega_t", "ecv"):
        assert omega[key] == pytest.approx(ref["cfa_bifactor"][key], rel=1e-5), key


@needs_oracles
def test_modification_indices_match_lavaans_tutorial() -> None:
    # modindices(fit, sort = TRUE, maximum.number = 5) on the HS 3-factor model,
    # https://lavaan.ugent.be/tutorial/modindices.html (mi, epc, sepc.all to 3 decimals)
    lavaan = [
        ("visual", "=~", "x9", 36.411, 0.577, 0.515),
        ("x7", "~~", "x8", 34.145, 0.536, 0.859),
        ("visual", "=~", "x7", 18.631, -0.422, -0.349),
        ("x8", "~~", "x9", 14.946, -0.423, -0.805),
        ("textual", "=~", "x3", 9.151, -0.272, -0.238),
    ]
    mi = cfa(_csv("HolzingerSwineford1939.csv"), HS_MODEL).modification_indices(sort=True)
    top = mi.head(5)
    assert list(zip(top["lhs"], top["op"], top["rhs"])) == [r[:3] for r in lavaan]
    for (_, ours), r in zip(top.iterrows(), lavaan):
        assert ours["mi"] == pytest.approx(r[3], abs=5e-4)
        assert ours["epc"] == pytest.approx(r[4], abs=5e-4)
        assert ours["sepc_all"] == pytest.approx(r[5], abs=5e-4)
    # 18 cross-loadings + 36 residual covariances; no marker loadings or variances
    assert len(mi) == 54 and (mi["mi"] >= 0).all()


@needs_oracles
def test_modification_index_is_close_to_the_likelihood_ratio_of_freeing_it() -> None:
    # the score test approximates the chi-square drop of freeing the parameter
    hs = _csv("HolzingerSwineford1939.csv")
    base = cfa(hs, HS_MODEL)
    mi = base.modification_indices().set_index(["lhs", "op", "rhs"])
    freed = cfa(hs, HS_MODEL, residual_covariances=[("x7", "x8")])
    drop = base.fit["chisq"] - freed.fit["chisq"]
    assert freed.fit["df"] == base.fit["df"] - 1
    assert mi.loc[("x7", "~~", "x8"), "mi"] == pytest.approx(drop, rel=0.25)
    # the EPC overshoots here (0.536 against 0.353), as EPCs do; its sign is what it tells
    assert mi.loc[("x7", "~~", "x8"), "epc"] > _row(freed.params, "x7", "~~", "x8")["est"] > 0


@needs_oracles
def test_measurement_invariance_by_school_matches_lavaan() -> None:
    # psychometrics_mlm_computed.json invariance_school: cfa(..., group = "school",
    # group.equal = c(), "loadings", + "intercepts", + "residuals"), e.g. configural chisq
    # 115.8513439 df 48, metric 124.0435442 df 54, scalar 164.1028309 df 60, strict
    # 181.5113452 df 69, each with cfi/tli/rmsea [CI]/srmr/aic/bic/logl (lavaan 0.6-14)
    ref = _json("psychometrics_mlm_computed.json")["invariance_school"]
    res = measurement_invariance(_csv("HolzingerSwineford1939.csv"), HS_MODEL, "school")
    for level, fit in res.fits.items():
        assert fit.converged and fit.groups == ["Pasteur", "Grant-White"], level
        # lavaan's configural optimum sits ~1e-6 off ours, which SRMR (linear in the
        # estimates, unlike chisq) shows at 3e-6
        _check_fit(fit.fit, ref[level], srmr_rel=1e-5)
    # lrt_metric_vs_configural [8.192200304, 6, 0.2243577468], lrt_scalar_vs_metric
    # [40.05928675, 6, 4.43456618e-07] (lavTestLRT, same file)
    lrt = res.lrt.set_index("model")
    for level, key in (("metric", "lrt_metric_vs_configural"), ("scalar", "lrt_scalar_vs_metric")):
        chisq, df, p = ref[key]
        assert lrt.loc[level, "chisq_diff"] == pytest.approx(chisq, rel=1e-6)
        assert lrt.loc[level, "df_diff"] == df
        assert lrt.loc[level, "p"] == pytest.approx(p, rel=1e-6)


@needs_oracles
def test_invariance_constraints_hold_in_the_estimates() -> None:
    hs = _csv("HolzingerSwineford1939.csv")
    scalar = cfa(hs, HS_MODEL, group="school", group_equal=["loadings", "intercepts"])
    params = scalar.params
    by_group = [params[params["group"] == g].reset_index(drop=True) for g in (1, 2)]
    loads = [b[b["op"] == "=~"]["est"].to_numpy() for b in by_group]
    ints = [b[(b["op"] == "~1") & b["lhs"].str.match(r"x\d")]["est"].to_numpy() for b in by_group]
    np.testing.assert_array_equal(loads[0], loads[1])
    np.testing.assert_array_equal(ints[0], ints[1])
    means = params[(params["op"] == "~1") & params["lhs"].isin(HS_MODEL)]
    assert (means[means["group"] == 1]["est"] == 0).all()  # the reference group
    assert (means[means["group"] == 2]["se"] > 0).all()  # freed elsewhere
    mi = scalar.modification_indices()
    assert set(mi["group"]) == {1, 2} and (mi["mi"] >= -1e-9).all()


# --------------------------------------------------------------------------- properties


def _simulate(n: int, rng: np.random.Generator) -> pd.DataFrame:
    return pd.DataFrame(rng.standard_normal((n, 9)) @ np.linalg.cholesky(SIGMA).T, columns=COLS)


COLS = [f"y{i}" for i in range(1, 10)]
SIM_MODEL = {"a": COLS[:3], "b": COLS[3:6], "c": COLS[6:]}
LAMBDA = np.zeros((9, 3))
LAMBDA[0:3, 0], LAMBDA[3:6, 1], LAMBDA[6:9, 2] = [1, 0.8, 0.6], [1, 1.2, 0.7], [1, 0.9, 0.5]
PHI = np.array([[1.0, 0.3, 0.4], [0.3, 0.8, 0.2], [0.4, 0.2, 0.6]])
SIGMA = LAMBDA @ PHI @ LAMBDA.T + np.diag([0.5, 0.6, 0.7, 0.4, 0.5, 0.6, 0.5, 0.6, 0.7])
FREE_LOADINGS = np.array([0.8, 0.6, 1.2, 0.7, 0.9, 0.5])


def test_wald_intervals_cover_the_true_loadings_at_the_nominal_rate() -> None:
    # 200 seeded replications, n = 500: each free loading inside est ± 1.96 se
    rng = np.random.default_rng(20261204)
    hits = []
    for _ in range(200):
        fit = cfa(_simulate(500, rng), SIM_MODEL)
        assert fit.converged and not fit.heywood
        load = fit.params[(fit.params["op"] == "=~") & (fit.params["se"] > 0)]
        hits.append(np.abs(load["est"].to_numpy() - FREE_LOADINGS) < 1.96 * load["se"].to_numpy())
    coverage = np.mean(hits, axis=0)
    assert 0.90 <= coverage.mean() <= 0.99  # pooled; 0.945 with this seed
    assert coverage.min() >= 0.88


def test_identification_choice_changes_scale_not_fit() -> None:
    data = _simulate(400, np.random.default_rng(7))
    marker, std = cfa(data, SIM_MODEL), cfa(data, SIM_MODEL, std_lv=True)
    assert marker.fit["chisq"] == pytest.approx(std.fit["chisq"], rel=1e-9)
    np.testing.assert_allclose(marker.params["std_all"], std.params["std_all"], atol=1e-7)
    variances = std.params[(std.params["op"] == "~~") & std.params["lhs"].isin(SIM_MODEL)]
    assert (variances[variances["lhs"] == variances["rhs"]]["est"] == 1).all()


def test_a_saturated_mean_structure_changes_only_the_parameter_count() -> None:
    # lavaan: meanstructure = TRUE adds p free intercepts equal to the sample means and p
    # sample means to the moments, so chisq, df and logl stay and AIC grows by 2p
    data = _simulate(400, np.random.default_rng(6))
    plain, means = cfa(data, SIM_MODEL), cfa(data, SIM_MODEL, meanstructure=True)
    for key in ("chisq", "df", "logl", "cfi", "rmsea"):
        assert means.fit[key] == pytest.approx(plain.fit[key], rel=1e-9, abs=1e-12), key
    assert means.fit["npar"] == plain.fit["npar"] + 9
    assert means.fit["aic"] == pytest.approx(plain.fit["aic"] + 18, rel=1e-12)
    ints = means.params[means.params["op"] == "~1"].set_index("lhs")["est"]
    np.testing.assert_allclose(ints[COLS], data[COLS].mean(), atol=1e-8)


def test_orthogonal_fixes_factor_covariances_at_zero() -> None:
    data = _simulate(400, np.random.default_rng(8))
    free, ortho = cfa(data, SIM_MODEL), cfa(data, SIM_MODEL, orthogonal=True)
    assert ortho.fit["df"] == free.fit["df"] + 3
    covs = ortho.params[(ortho.params["op"] == "~~") & (ortho.params["lhs"] != ortho.params["rhs"])]
    assert (covs["est"] == 0).all() and (covs["se"] == 0).all()
    assert ortho.fit["chisq"] > free.fit["chisq"]
    # freed by a score test: the three factor covariances are candidates
    mi = ortho.modification_indices()
    assert len(mi[mi["lhs"].isin(SIM_MODEL) & (mi["op"] == "~~")]) == 3


def test_listwise_deletion_reports_n_and_equals_the_complete_rows() -> None:
    data = _simulate(300, np.random.default_rng(9))
    holes = data.copy()
    holes.loc[[3, 50, 51], "y2"] = np.nan
    holes.loc[7, "y9"] = None
    fit = cfa(holes, SIM_MODEL)
    assert (fit.n, fit.n_dropped) == (296, 4)
    complete = cfa(holes.dropna(), SIM_MODEL)
    assert fit.fit["chisq"] == pytest.approx(complete.fit["chisq"], rel=1e-12)


def test_one_hundred_thousand_rows_cost_nothing_extra() -> None:
    data = _simulate(100_000, np.random.default_rng(10))
    fit = cfa(data, SIM_MODEL)
    assert fit.converged and fit.n == 100_000
    load = fit.params[(fit.params["op"] == "=~") & (fit.params["se"] > 0)]
    np.testing.assert_allclose(load["est"], FREE_LOADINGS, atol=0.03)
    assert fit.fit["rmsea"] < 0.01  # the model is true


def test_rmsea_interval_brackets_the_estimate_and_is_zero_at_perfect_fit() -> None:
    fit = cfa(_simulate(500, np.random.default_rng(11)), SIM_MODEL)
    f = fit.fit
    assert f["rmsea.ci.lower"] <= f["rmsea"] <= f["rmsea.ci.upper"]
    just = cfa(_simulate(500, np.random.default_rng(12)), {"a": COLS[:3]})
    assert just.fit["df"] == 0 and just.fit["chisq"] == pytest.approx(0, abs=1e-9)
    assert just.fit["cfi"] == pytest.approx(1) and just.fit["rmsea"] == 0
    assert np.isnan(just.fit["pvalue"])


# --------------------------------------------------------------------------- bad input


@pytest.fixture
def data() -> pd.DataFrame:
    return _simulate(200, np.random.default_rng(13))


def test_constant_column_is_named(data: pd.DataFrame) -> None:
    data["y5"] = 3.0
    with pytest.raises(CFAError, match=r"constant column.*y5"):
        cfa(data, SIM_MODEL)


def test_too_few_rows(data: pd.DataFrame) -> None:
    with pytest.raises(CFAError, match=r"too few complete rows: 9 .* at least 10"):
        cfa(data.head(9), SIM_MODEL)
    holes = data.head(12).copy()
    holes.loc[[0, 1, 2], "y1"] = np.nan  # 9 complete rows after listwise deletion
    with pytest.raises(CFAError, match="too few complete rows: 9"):
        cfa(holes, SIM_MODEL)


def test_missing_column_is_named(data: pd.DataFrame) -> None:
    with pytest.raises(CFAError, match="not in the data: y3, y7"):
        cfa(data.drop(columns=["y3", "y7"]), SIM_MODEL)


def test_one_indicator_factor_is_not_identified(data: pd.DataFrame) -> None:
    with pytest.raises(CFAError, match="not identified: factor 'c' has one indicator"):
        cfa(data, {"a": COLS[:3], "b": COLS[3:6], "c": ["y7"]})


def test_two_indicator_factor_alone_is_not_identified(data: pd.DataFrame) -> None:
    with pytest.raises(CFAError, match="not identified: factor 'c' has two indicators"):
        cfa(data, {"a": COLS[:3], "c": ["y7", "y8"]}, orthogonal=True)
    # correlated with another factor it is identified
    assert cfa(data, {"a": COLS[:3], "c": ["y7", "y8"]}).converged


def test_collinear_indicators_are_refused(data: pd.DataFrame) -> None:
    data["y9"] = data["y7"] + data["y8"]
    with pytest.raises(CFAError, match="not positive definite"):
        cfa(data, SIM_MODEL)


def test_group_errors_name_the_group(data: pd.DataFrame) -> None:
    data["site"] = ["a"] * 191 + ["b"] * 9
    with pytest.raises(CFAError, match="too few complete rows in group 'b': 9"):
        cfa(data, SIM_MODEL, group="site")
    data["site"] = ["a"] * 100 + ["b"] * 100
    data.loc[data["site"] == "b", "y4"] = 2.0
    with pytest.raises(CFAError, match=r"constant column.* in group 'b'.*y4"):
        cfa(data, SIM_MODEL, group="site")
    with pytest.raises(CFAError, match="group column 'clinic' not in the data"):
        cfa(data, SIM_MODEL, group="clinic")
    with pytest.raises(CFAError, match="fewer than two groups"):
        cfa(data.assign(site="a"), SIM_MODEL, group="site")
    with pytest.raises(CFAError, match="unknown"):
        cfa(data, SIM_MODEL, group="site", group_equal=["thresholds"])
    with pytest.raises(CFAError, match="needs a group column"):
        cfa(data, SIM_MODEL, group_equal=["loadings"])


def test_other_input_errors(data: pd.DataFrame) -> None:
    with pytest.raises(CFAError, match="only 'ML'"):
        cfa(data, SIM_MODEL, estimator="ULS")
    with pytest.raises(CFAError, match="lists an indicator twice"):
        cfa(data, {"a": ["y1", "y2", "y1"]})
    with pytest.raises(CFAError, match="no factors"):
        cfa(data, {})
    with pytest.raises(CFAError, match="numeric"):
        cfa(data.assign(y1="x"), SIM_MODEL)
    with pytest.raises(CFAError, match="'zz' is not an indicator"):
        cfa(data, SIM_MODEL, residual_covariances=[("y1", "zz")])
    with pytest.raises(CFAError, match="16 free parameters but only 15"):
        pairs = [("y1", "y2"), ("y1", "y3"), ("y1", "y4"), ("y1", "y5"), ("y2", "y3"), ("y2", "y4")]
        cfa(data, {"a": COLS[:5]}, residual_covariances=pairs)
    with pytest.raises(CFAError, match="listed twice"):
        cfa(data, SIM_MODEL, residual_covariances=[("y1", "y2"), ("y2", "y1")])
    assert isinstance(CFAError("x"), ValueError)
