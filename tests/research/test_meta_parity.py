"""metafor parity gaps of issue 17: every tau^2 estimator with moderators, ``influence`` when
a deletion leaves the model inestimable, and the cheap computational path at any k.

References: ``tests/data/issue17/references.json``, written by ``generate.R`` beside it
(R 4.2.2, metafor 3.8-1, metadat 1.2-0 from Debian).
"""

from __future__ import annotations

import json
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from alliance.research.meta import influence, rma

DATA = Path(__file__).parents[1] / "data" / "issue17"
REF = json.loads((DATA / "references.json").read_text())
BCG = pd.read_csv(DATA / "bcg_rr.csv")  # yi, vi to 17 digits, as metafor computed them
METHODS = ("DL", "HE", "HS", "SJ", "ML", "REML", "PM", "EB")


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("mods", ["ablat", "ablat_year"])
@pytest.mark.parametrize("test", ["z", "knha"])
def test_every_estimator_with_moderators_matches_metafor(method: str, mods: str, test: str) -> None:
    # Expected: metafor rma(yi, vi, mods = ~ ablat [+ year], method, test) on dat.bcg (RR),
    # threshold 1e-12: references.json["bcg_mods"]
    exp = REF["bcg_mods"][f"{method}_{mods}_{test}"]
    cols = ["ablat"] if mods == "ablat" else ["ablat", "year"]
    res = rma(BCG["yi"], BCG["vi"], mods=BCG[cols], method=method, test=test)
    # With ~ ablat + year (years near 1950) the design is ill-conditioned and metafor's own
    # values carry ~1e-10 relative error: for DL it gives tau2 0.0790389578091, where
    # 50-digit arithmetic (mpmath) gives 0.0790389578152545 and we 0.0790389578152551.
    iterative = method in ("ML", "REML", "PM", "EB")
    rtol = 1e-7 if iterative else 1e-10 if mods == "ablat" else 1e-8
    assert res.tau2 == pytest.approx(exp["tau2"], rel=rtol, abs=1e-12)
    np.testing.assert_allclose(res.beta, exp["beta"], rtol=rtol)
    np.testing.assert_allclose(res.se, exp["se"], rtol=rtol)
    assert res.qm == pytest.approx(exp["QM"], rel=rtol)
    assert res.q == pytest.approx(exp["QE"], rel=1e-10)
    assert res.i2 == pytest.approx(exp["I2"], rel=rtol)
    assert res.r2 == pytest.approx(exp["R2"], rel=1e-6, abs=1e-9)
    if exp["se_tau2"] is not None:
        assert res.se_tau2 == pytest.approx(exp["se_tau2"], rel=1e-6)


def test_influence_is_missing_for_a_study_whose_deletion_leaves_the_model_inestimable() -> None:
    # Expected: metafor influence(rma(yi, vi, mods = ~ g)) where level "c" has one study
    # (row 7): NA for that study except hat and weight, references.json
    # ["influence_one_study_level"]
    d = pd.read_csv(DATA / "one_study_level.csv")
    exp = REF["influence_one_study_level"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = influence(rma(d["yi"], d["vi"], mods=d[["g"]]))
    ours = {"dfbs_gb": "dfbs_g[b]", "dfbs_gc": "dfbs_g[c]"}  # our dummy names
    for column in exp:
        want = np.array([np.nan if x is None else x for x in exp[column]], dtype=float)
        got = out[ours.get(column, column)]
        np.testing.assert_allclose(got, want, rtol=1e-7, atol=1e-10, err_msg=column)
    assert out["influential"].tolist() == [True] + [False] * 6  # metafor marks study 1 only


@pytest.mark.parametrize(
    ("method", "k"), [("REML", 2000), ("DL", 6000), ("HE", 6000), ("SJ", 6000)]
)
def test_a_large_meta_regression_builds_no_k_by_k_matrix(method: str, k: int) -> None:
    # A k x k float64 matrix is 32 MB at k = 2000 and 288 MB at k = 6000; the fit needs
    # O(k p^2). Speed against the dense forms: bench/meta_regression.py.
    rng = np.random.default_rng(k)
    vi = 1 / rng.integers(40, 400, k)
    x = np.column_stack([rng.uniform(1990, 2025, k), rng.normal(35, 8, k)])
    yi = 0.3 + 0.004 * (x[:, 0] - 2005) + rng.normal(0, 0.1, k) + rng.normal(0, np.sqrt(vi))
    tracemalloc.start()
    try:
        res = rma(yi, vi, mods=x, method=method)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert res.converged and res.se_tau2 is not None
    assert peak < 8 * k * k / 4, f"peak {peak / 1e6:.0f} MB"


def test_the_cheap_traces_agree_with_the_cancellation_free_ones() -> None:
    # Expected: the complete-QR sums of squares (P = A A', no subtraction) on the same fit.
    from alliance.research.meta import _engine as eng

    rng = np.random.default_rng(3)
    for v_low in (-2, -6):  # ordinary weights, and weights spanning 7 orders of magnitude
        vi = 10 ** rng.uniform(v_low, 0, 300)
        X = np.column_stack([np.ones(300), rng.normal(size=(300, 2))])
        batch = eng.make_batch(rng.normal(size=300), vi, X)
        mo = eng.wls(batch, eng.weights(batch, np.array([0.05])))
        np.testing.assert_allclose(eng.traces(batch, mo), eng._stable_general(batch, mo.w),
                                   rtol=1e-9)  # fmt: skip
