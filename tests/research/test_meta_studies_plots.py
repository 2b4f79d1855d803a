"""Study-table loader (dat.molloy2014), subgroups, bootstrap batches and the chart specs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from metafor_refs import DATA, EXTRA, TIGHT

from alliance.research.meta import (
    MetaInputError,
    MetaWarning,
    analysis_table,
    bootstrap,
    chart_bytes,
    forest_chart,
    forest_data,
    funnel_chart,
    rma,
    rma_batch,
    study_table,
    subgroup,
    trimfill,
)

MOLLOY = pd.read_csv(DATA / "dat.molloy2014.csv")


def _molloy_table() -> pd.DataFrame:
    """dat.molloy2014 as an alliance-style study table (the README example)."""
    frame = MOLLOY.assign(
        study=MOLLOY["authors"] + " (" + MOLLOY["year"].astype(str) + ")", rater="patient"
    )
    return study_table(
        frame, study="study", n="ni", r="ri", measure="c_measure", moderators=["meanage", "design"]
    )


def test_study_table_on_molloy_reproduces_metafor() -> None:
    table = _molloy_table()
    assert table.columns.tolist() == [
        "study",
        "n",
        "r",
        "yi",
        "vi",
        "rater",
        "measure",
        "meanage",
        "design",
    ]
    assert table["study"].iloc[0] == "Axelsson et al. (2009)"
    # Expected: escalc(measure="ZCOR") on dat.molloy2014, dat.molloy2014.escalc_ZCOR.csv
    ref = pd.read_csv(DATA / "dat.molloy2014.escalc_ZCOR.csv")
    np.testing.assert_allclose(table["yi"], ref["yi"], rtol=1e-9)
    # Expected: metafor 3.8-1 rma(REML, knha, threshold 1e-12) back-transformed, tight file "r_pred"
    res = rma(table["yi"], table["vi"], test="knha", measure="ZCOR", slab=table["study"])
    assert res.to_dict()["r"] == pytest.approx(TIGHT["molloy_REML_knha"]["r_pred"][0], rel=1e-6)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda f: f.assign(ri=f["ri"].where(f.index != 2, 1.0)),
            r"row 3 \(study 'Bruce et al. \(2010\)'\): correlation",
        ),
        (
            lambda f: f.assign(ni=f["ni"].where(f.index != 0, 3)),
            r"row 1 .*sample size n must be greater than 3",
        ),
        (
            lambda f: f.assign(ni=f["ni"].astype(object).where(f.index != 4, "many")),
            r"ni: not a number in row 5 .*",
        ),
        (lambda f: f.assign(ri=f["ri"].where(f.index != 5, np.nan)), r"ri: missing in row 6 .*"),
        (lambda f: f.assign(rater="nurse"), r"rater: not a rater in row 1 .* = 'nurse', row 2"),
        (lambda f: f.drop(columns=["meanage"]), r"moderator column 'meanage' is not in the table"),
    ],
)
def test_study_table_errors_name_the_row(change: object, message: str) -> None:
    frame = MOLLOY.assign(
        study=MOLLOY["authors"] + " (" + MOLLOY["year"].astype(str) + ")", rater="client"
    )
    with pytest.raises(MetaInputError, match=message):
        study_table(change(frame), n="ni", r="ri", moderators=["meanage"])  # type: ignore[operator]


def test_analysis_table_accepts_yi_vi_or_r_n() -> None:
    t, measure = analysis_table(pd.read_csv(DATA / "dat.bcg.escalc_RR.csv"), ["ablat"])
    assert measure == "GEN" and t.columns.tolist() == ["study", "yi", "vi", "ablat"]
    with pytest.warns(MetaWarning, match="'Axelsson et al.' label several rows"):
        t, measure = analysis_table(MOLLOY.rename(columns={"ri": "r", "ni": "n"}))
    assert measure == "ZCOR" and len(t) == 16
    with pytest.raises(MetaInputError, match="needs columns yi and vi, or r and n"):
        analysis_table(pd.DataFrame({"a": [1]}))


def test_subgroups_match_separate_metafor_fits() -> None:
    table = _molloy_table()
    sg = subgroup(table["yi"], table["vi"], table["design"])
    # Expected: metafor 3.8-1 rma(REML, subset = design == g) per design, metafor_extra.json
    for row in sg.table.itertuples():
        e = EXTRA[f"molloy_subgroup_{str(row.group).replace('-', '_')}"]
        assert (row.k, row.estimate, row.se, row.tau2) == pytest.approx(
            (e["k"], e["estimate"], e["se"], e["tau2"]), rel=1e-6, abs=1e-12
        )
    # Closed form: Q_between = (b1 - b2)^2 / (se1^2 + se2^2) for two subgroups
    b, s = sg.table["estimate"].to_numpy(), sg.table["se"].to_numpy()
    assert sg.q_between == pytest.approx((b[0] - b[1]) ** 2 / (s[0] ** 2 + s[1] ** 2), rel=1e-10)
    assert sg.df == 1


def test_bootstrap_is_batched_refits() -> None:
    res = rma(_molloy_table()["yi"], _molloy_table()["vi"], test="knha")
    boot = bootstrap(res, 300, seed=7)
    assert boot.converged.all() and boot.estimate.shape == (300,)
    idx = np.random.default_rng(7).integers(0, res.k, size=(300, res.k))
    for i in (0, 150, 299):  # each resample equals a separate fit of the same rows
        one = rma(res.yi[idx[i]], res.vi[idx[i]], test="knha")
        assert boot.tau2[i] == pytest.approx(one.tau2, rel=1e-9, abs=1e-15)
        assert boot.se[i] == pytest.approx(float(one.se[0]), rel=1e-9)
    lo, hi = boot.percentile_ci()
    assert lo < res.estimate < hi


def test_rma_batch_masks_are_leave_one_out() -> None:
    res = rma(MOLLOY["ri"], 1 / (MOLLOY["ni"] - 3))
    k = res.k
    out = rma_batch(np.tile(res.yi, (k, 1)), np.tile(res.vi, (k, 1)), mask=1 - np.eye(k))
    one = rma(np.delete(res.yi, 3), np.delete(res.vi, 3))
    assert out.estimate[3] == pytest.approx(one.estimate, rel=1e-10)


def test_forest_and_funnel_specs_and_files() -> None:
    table = _molloy_table()
    res = rma(table["yi"], table["vi"], measure="ZCOR", slab=table["study"])
    data = forest_data(res)
    assert data["row"].iloc[-2:].tolist() == ["RE model", "95% prediction interval"]
    assert len(data) == res.k + 2
    # forest rows are on the r scale for correlations: the pooled row is tanh(estimate)
    assert data["est"].iloc[-2] == pytest.approx(np.tanh(res.estimate))
    spec = forest_chart(res).to_dict()
    assert spec["$schema"].startswith("https://vega.github.io/schema/vega-lite/")
    tf = trimfill(res)
    fspec = funnel_chart(res, tf).to_dict()
    assert len(fspec["layer"]) == 4  # cone, estimate, points, adjusted estimate
    png = chart_bytes(forest_chart(res), "png")
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    svg = chart_bytes(funnel_chart(res, tf), "svg").decode()
    assert svg.startswith("<svg") and "Filled 1" in svg  # imputed studies are drawn (aria labels)
    html = chart_bytes(funnel_chart(res), "html").decode()
    assert "<script" in html and "cdn.jsdelivr" not in html and "https://cdn" not in html


def test_forest_refuses_meta_regression() -> None:
    res = rma(MOLLOY["ri"], 1 / (MOLLOY["ni"] - 3), mods=MOLLOY[["meanage"]])
    with pytest.raises(MetaInputError, match="intercept-only"):
        forest_data(res)
