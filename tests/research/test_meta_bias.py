"""Small-study bias tests and case diagnostics against metafor 3.8-1."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from metafor_refs import COMPUTED, DATA, EXTRA

from alliance.research.meta import (
    MetaInputError,
    fisher_z,
    influence,
    leave1out,
    log_odds_ratio,
    ranktest,
    regtest,
    rma,
    trimfill,
)

BCG = pd.read_csv(DATA / "dat.bcg.escalc_RR.csv")
HACK = pd.read_csv(DATA / "dat.hackshaw1998.csv")
MOLLOY = pd.read_csv(DATA / "dat.molloy2014.csv")
MZ = fisher_z(MOLLOY["ri"], MOLLOY["ni"])
EGG = pd.read_csv(DATA / "dat.egger2001.csv")
EGG_OR = log_odds_ratio(EGG["ai"], EGG["n1i"] - EGG["ai"], EGG["ci"], EGG["n2i"] - EGG["ci"])


def test_regtest_bcg_default_and_classic() -> None:
    res = rma(BCG["yi"], BCG["vi"])
    # Expected: metafor 3.8-1 regtest(rma(REML)) on dat.bcg, metafor_computed.json "regtest_default"
    exp = COMPUTED["dat.bcg"]["regtest_default"]
    eg = regtest(res)
    np.testing.assert_allclose(
        [eg.stat, eg.pval, eg.limit_estimate, *eg.limit_ci],
        [exp["zval"], exp["pval"], exp["limit_est"], *exp["limit_ci"]],
        rtol=1e-5,
    )
    # Expected: regtest(model="lm") (classic Egger),
    #   metafor_computed.json "regtest_lm_classic_egger"
    exp = COMPUTED["dat.bcg"]["regtest_lm_classic_egger"]
    lm = regtest(res, model="lm")
    np.testing.assert_allclose([lm.stat, lm.pval], [exp["zval"], exp["pval"]], rtol=1e-8)
    assert lm.df == exp["dfs"]


def test_regtest_egger2001_predictors() -> None:
    res = rma(EGG_OR["yi"], EGG_OR["vi"])
    # Expected: metafor 3.8-1 on dat.egger2001 (OR), metafor_computed.json "regtest_*"
    exp = COMPUTED["dat.egger2001"]
    assert res.estimate == pytest.approx(exp["REML"]["estimate"], rel=1e-4)
    eg = regtest(res)
    np.testing.assert_allclose(
        [eg.stat, eg.pval, eg.limit_estimate],
        [exp["regtest_default"][k] for k in ("zval", "pval", "limit_est")],
        rtol=1e-4,
    )
    lm = regtest(res, model="lm")
    np.testing.assert_allclose(
        [lm.stat, lm.pval], [exp["regtest_lm"]["zval"], exp["regtest_lm"]["pval"]], rtol=1e-8
    )
    n = EGG["n1i"] + EGG["n2i"]
    lm2 = regtest(res, model="lm", predictor="sqrtninv", ni=n)
    np.testing.assert_allclose(
        [lm2.stat, lm2.pval],
        [exp["regtest_lm_sqrtninv"]["zval"], exp["regtest_lm_sqrtninv"]["pval"]],
        rtol=1e-8,
    )


def test_regtest_other_datasets() -> None:
    # Expected: metafor 3.8-1 regtest() on dat.hackshaw1998 and dat.molloy2014,
    #   metafor_computed.json
    # (metafor's default REML threshold 1e-5 on tau2 ~ 0.01 leaves ~1e-4 relative error: rtol 1e-3)
    h = regtest(rma(HACK["yi"], HACK["vi"]))
    assert [h.stat, h.pval] == pytest.approx(
        [COMPUTED["dat.hackshaw1998"]["regtest_default"][k] for k in ("zval", "pval")], rel=1e-4
    )
    m = regtest(rma(MZ["yi"], MZ["vi"]))
    assert [m.stat, m.pval, m.limit_estimate] == pytest.approx(
        [COMPUTED["dat.molloy2014"]["regtest_default"][k] for k in ("zval", "pval", "limit_est")],
        rel=1e-3,
    )


@pytest.mark.parametrize(("data", "frame"), [("dat.bcg", BCG), ("dat.egger2001", EGG_OR)])
def test_ranktest(data: str, frame: pd.DataFrame) -> None:
    # Expected: metafor 3.8-1 ranktest() (exact Kendall p), metafor_computed.json "ranktest"
    tau, p = ranktest(rma(frame["yi"], frame["vi"]))
    exp = COMPUTED[data]["ranktest"]
    assert [tau, p] == pytest.approx([exp["tau"], exp["pval"]], rel=1e-8)


def test_trimfill_bcg_right_side() -> None:
    # Expected: metafor 3.8-1 trimfill(rma(REML)) on dat.bcg, metafor_computed.json "trimfill_REML"
    exp = COMPUTED["dat.bcg"]["trimfill_REML"]
    tf = trimfill(rma(BCG["yi"], BCG["vi"]))
    assert (tf.k0, tf.side) == (exp["k0"], exp["side"])
    assert tf.se_k0 == pytest.approx(exp["se_k0"], rel=1e-8)
    got = [tf.fit.estimate, tf.fit.se[0], tf.fit.ci_lower[0], tf.fit.ci_upper[0], tf.fit.tau2]
    np.testing.assert_allclose(
        got, [exp["estimate"], exp["se"], *exp["ci"], exp["tau2"]], rtol=1e-4
    )


def test_trimfill_hackshaw_fills_seven() -> None:
    # Expected: metafor 3.8-1 trimfill(rma(REML)) / trimfill(rma(EE)) on dat.hackshaw1998,
    # metafor_computed.json "trimfill_REML_L0", "trimfill_REML_R0", "trimfill_EE_L0"
    exp = COMPUTED["dat.hackshaw1998"]
    for estimator in ("L0", "R0"):
        tf = trimfill(rma(HACK["yi"], HACK["vi"]), estimator=estimator)
        e = exp[f"trimfill_REML_{estimator}"]
        assert (tf.k0, tf.side) == (e["k0"], e["side"])
        np.testing.assert_allclose(np.sort(tf.filled_yi)[::-1], e["filled_yi"], rtol=1e-4)
        np.testing.assert_allclose(
            [tf.fit.estimate, tf.fit.se[0], *tf.fit.ci_lower, *tf.fit.ci_upper, tf.fit.tau2],
            [e["estimate"], e["se"], *e["ci"], e["tau2"]],
            rtol=1e-4,
        )
    tf = trimfill(rma(HACK["yi"], HACK["vi"], method="EE"))
    e = exp["trimfill_EE_L0"]
    assert tf.k0 == e["k0"]
    np.testing.assert_allclose(
        [tf.fit.estimate, *tf.fit.ci_lower, *tf.fit.ci_upper], [e["estimate"], *e["ci"]], rtol=1e-8
    )


def test_trimfill_molloy_on_r_scale() -> None:
    # Expected: metafor 3.8-1 trimfill(rma(REML)) on dat.molloy2014 (ZCOR), metafor_computed.json
    e = COMPUTED["dat.molloy2014"]["trimfill_REML"]
    tf = trimfill(rma(MZ["yi"], MZ["vi"], measure="ZCOR"))
    assert (tf.k0, tf.side) == (e["k0"], e["side"])
    np.testing.assert_allclose(
        [tf.fit.estimate, *tf.fit.ci_lower, *tf.fit.ci_upper, tf.fit.tau2],
        [e["estimate"], *e["ci"], e["tau2"]],
        rtol=1e-3,
    )
    assert tf.fit.to_dict()["r"] == pytest.approx(e["r_estimate"], rel=1e-4)


def test_leave1out_molloy() -> None:
    # Expected: metafor 3.8-1 leave1out(rma(REML, threshold 1e-12)) on dat.molloy2014,
    # metafor_extra.json "molloy_leave1out"
    exp = EXTRA["molloy_leave1out"]
    got = leave1out(rma(MZ["yi"], MZ["vi"]))
    for ours, theirs in [
        ("estimate", "estimate"),
        ("se", "se"),
        ("stat", "zval"),
        ("pval", "pval"),
        ("ci_lower", "ci_lb"),
        ("ci_upper", "ci_ub"),
        ("q", "Q"),
        ("q_p", "Qp"),
        ("tau2", "tau2"),
        ("i2", "I2"),
        ("h2", "H2"),
    ]:
        np.testing.assert_allclose(got[ours], exp[theirs], rtol=1e-6, err_msg=ours)


def test_leave1out_knha_bcg() -> None:
    # Expected: metafor 3.8-1 leave1out(rma(REML, test="knha")) on dat.bcg, metafor_extra.json
    exp = EXTRA["bcg_knha_leave1out"]
    got = leave1out(rma(BCG["yi"], BCG["vi"], test="knha"))
    for ours, theirs in [
        ("estimate", "estimate"),
        ("se", "se"),
        ("stat", "zval"),
        ("pval", "pval"),
        ("ci_lower", "ci_lb"),
        ("ci_upper", "ci_ub"),
        ("tau2", "tau2"),
    ]:
        np.testing.assert_allclose(got[ours], exp[theirs], rtol=1e-6, err_msg=ours)


SHARED_INFLUENCE = ["rstudent", "dffits", "cook_d", "cov_r", "tau2_del", "hat"]


@pytest.mark.parametrize(
    ("case", "fit", "columns"),
    [
        # Expected: metafor 3.8-1 influence(rma(REML, threshold 1e-12)) on dat.molloy2014
        (
            "molloy_influence",
            lambda: rma(MZ["yi"], MZ["vi"]),
            {"qe_del": "QE_del", "weight": "weight", "dfbs_intrcpt": "dfbs"},
        ),
        # Expected: metafor 3.8-1 influence(rma(yi, vi, mods = ~ ablat, test="knha")) on dat.bcg
        (
            "bcg_ablat_knha_influence",
            lambda: rma(BCG["yi"], BCG["vi"], mods=BCG[["ablat"]], test="knha"),
            {"dfbs_intrcpt": "dfbs_intrcpt", "dfbs_ablat": "dfbs_ablat"},
        ),
    ],
)
def test_influence_matches_metafor(case: str, fit: Any, columns: dict[str, str]) -> None:
    exp = EXTRA[case]  # metafor_extra.json
    got = influence(fit())
    for ours, theirs in [*((c, c) for c in SHARED_INFLUENCE), *columns.items()]:
        np.testing.assert_allclose(got[ours], exp[theirs], rtol=1e-6, err_msg=ours)
    assert got["influential"].tolist() == [bool(x) for x in exp["inf"]]


def test_bias_functions_refuse_meta_regression() -> None:
    res = rma(BCG["yi"], BCG["vi"], mods=BCG[["ablat"]])
    for fn in (regtest, trimfill, leave1out):
        with pytest.raises(MetaInputError, match="intercept-only"):
            fn(res)  # type: ignore[operator]
    with pytest.raises(MetaInputError, match="needs sample sizes"):
        regtest(rma(BCG["yi"], BCG["vi"]), predictor="ninv")
