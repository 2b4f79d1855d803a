"""Three-level models (rma.mv) and cluster-robust CR1/CR2 against metafor and clubSandwich."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from metafor_refs import COMPUTED, DATA, EXTRA, TIGHT

from alliance.research.meta import MetaInputError, rma_mv, robust

KONST = pd.read_csv(DATA / "dat.konstantopoulos2011.csv")
ASSINK = pd.read_csv(DATA / "dat.assink2016.csv")


def test_konstantopoulos_reml_tight() -> None:
    # Expected: metafor 3.8-1 rma.mv(yi, vi, random = ~ 1 | district/study), rel.tol 1e-12,
    # metafor_computed_tight.json "konst_3level_REML"
    exp = TIGHT["konst_3level_REML"]
    res = rma_mv(KONST["yi"], KONST["vi"], KONST["district"])
    assert res.converged
    np.testing.assert_allclose(
        [res.estimate, res.se[0], *res.sigma2, res.loglik],
        [exp["estimate"], exp["se"], *exp["sigma2"], exp["logLik"]],
        rtol=1e-6,
    )


def test_konstantopoulos_reml_derived_quantities() -> None:
    # Expected: metafor 3.8-1 rma.mv REML, predict(), I^2 per level, ICC, metafor_computed.json
    exp = COMPUTED["dat.konstantopoulos2011"]["REML_3level"]
    res = rma_mv(KONST["yi"], KONST["vi"], KONST["district"])
    np.testing.assert_allclose([res.ci_lower[0], res.ci_upper[0]], exp["ci"], rtol=1e-6)
    np.testing.assert_allclose([res.pi_lower, res.pi_upper], exp["pi"], rtol=1e-6)
    np.testing.assert_allclose(res.i2_levels, exp["I2_levels"], rtol=1e-6)
    assert res.i2_total == pytest.approx(exp["I2_total"], rel=1e-6)
    assert res.icc == pytest.approx(exp["ICC_level3"], rel=1e-6)
    assert res.q == pytest.approx(exp["QE"], rel=1e-9)
    assert res.k == exp["k"]


def test_konstantopoulos_ml_and_moderator() -> None:
    # Expected: metafor 3.8-1 rma.mv(method="ML") and rma.mv(mods = ~ I(year - mean(year))),
    # metafor_computed.json "ML_3level", "REML_3level_mods_year" (rma.mv default rel.tol 1e-8)
    c = COMPUTED["dat.konstantopoulos2011"]
    ml = rma_mv(KONST["yi"], KONST["vi"], KONST["district"], method="ML")
    e = c["ML_3level"]
    np.testing.assert_allclose(
        [ml.estimate, ml.se[0], *ml.sigma2, ml.loglik, ml.pi_lower, ml.pi_upper],
        [e["estimate"], e["se"], *e["sigma2"], e["logLik"], *e["pi"]],
        rtol=1e-6,
    )
    year_c = (KONST["year"] - KONST["year"].mean()).to_frame()
    mod = rma_mv(KONST["yi"], KONST["vi"], KONST["district"], mods=year_c)
    e = c["REML_3level_mods_year"]
    np.testing.assert_allclose(mod.beta, e["estimate"], rtol=1e-6)
    np.testing.assert_allclose(mod.se, e["se"], rtol=1e-6)
    np.testing.assert_allclose(mod.stat, e["zval"], rtol=1e-6)
    np.testing.assert_allclose([*mod.sigma2, mod.loglik], [*e["sigma2"], e["logLik"]], rtol=1e-6)


def test_assink_reml_and_categorical_moderator() -> None:
    # Expected: metafor 3.8-1 rma.mv(yi, vi, random = ~ 1 | study/esid) on dat.assink2016,
    # metafor_computed.json "REML_3level"; with mods = ~ deltype, metafor_extra.json
    e = COMPUTED["dat.assink2016"]["REML_3level"]
    res = rma_mv(ASSINK["yi"], ASSINK["vi"], ASSINK["study"])
    np.testing.assert_allclose(
        [res.estimate, res.se[0], *res.sigma2, res.loglik, res.pi_lower, res.pi_upper],
        [e["estimate"], e["se"], *e["sigma2"], e["logLik"], *e["pi"]],
        rtol=1e-6,
    )
    e = EXTRA["assink_mods_deltype"]
    mod = rma_mv(ASSINK["yi"], ASSINK["vi"], ASSINK["study"], mods=ASSINK[["deltype"]])
    assert mod.coef_names == ("intrcpt", "deltype[general]", "deltype[overt]")
    np.testing.assert_allclose(
        [*mod.beta, *mod.se, *mod.sigma2, mod.loglik],
        [*e["estimate"], *e["se"], *e["sigma2"], e["logLik"]],
        rtol=1e-6,
    )


def test_cluster_robust_konstantopoulos() -> None:
    # Expected: metafor 3.8-1 robust(res, cluster=district, adjust=TRUE) (CR1) and
    # robust(res, cluster=district, clubSandwich=TRUE) (CR2, Satterthwaite df),
    #   metafor_computed.json
    res = rma_mv(KONST["yi"], KONST["vi"], KONST["district"])
    for adjust in ("CR1", "CR2"):
        e = COMPUTED["dat.konstantopoulos2011"][f"REML_3level_robust_district_{adjust}"]
        rb = robust(res, adjust=adjust)
        np.testing.assert_allclose(
            [rb.se[0], rb.stat[0], rb.df[0], rb.ci_lower[0], rb.ci_upper[0]],
            [e["se"], e["t"], e["df"], *e["ci"]],
            rtol=1e-6,
        )


def test_cluster_robust_assink() -> None:
    # Expected: metafor 3.8-1 + clubSandwich robust(..., cluster=study) on dat.assink2016,
    #   metafor_extra.json
    res = rma_mv(ASSINK["yi"], ASSINK["vi"], ASSINK["study"])
    e = EXTRA["assink_CR2"]
    rb = robust(res, adjust="CR2")
    np.testing.assert_allclose(
        [rb.se[0], rb.df[0], rb.ci_lower[0], rb.ci_upper[0]],
        [e["se"], e["df"], e["ci_lb"], e["ci_ub"]],
        rtol=1e-6,
    )
    cr1 = robust(res, cluster=ASSINK["study"], adjust="CR1")
    np.testing.assert_allclose(
        [cr1.se[0], cr1.df[0]], [EXTRA["assink_CR1"]["se"], EXTRA["assink_CR1"]["df"]], rtol=1e-6
    )


def test_multilevel_input_errors() -> None:
    with pytest.raises(MetaInputError, match="cluster: missing in row 2"):
        rma_mv([0.1, 0.2, 0.3, 0.4], [0.01] * 4, [1, None, 2, 2])
    with pytest.raises(MetaInputError, match="REML or ML"):
        rma_mv([0.1, 0.2, 0.3, 0.4], [0.01] * 4, [1, 1, 2, 2], method="DL")
    res = rma_mv([0.1, 0.2, 0.3, 0.4], [0.01] * 4, [1, 1, 2, 2])
    with pytest.raises(MetaInputError, match="too few"):
        robust(res, cluster=[1, 1, 1, 1])
