"""The psychometric report (issue 12): the pieces it gathers are the validated ones (lavaan
and psych values from ``../shared/oracles/synthetic_computed.json`` on its synthetic
WAI-SR-like items, copied to ``tests/data/psychometrics``), reverse keys are recoded,
unverified keys flagged, and the invariance verdict follows Chen (2007)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from alliance.instruments import get_instrument
from alliance.research.psychometrics import PsychometricsError, cronbach_alpha
from alliance.research.psychometrics.report import (
    _verdict,
    competing_models,
    instrument_scales,
    psychometrics_report,
)

ITEMS = Path(__file__).parents[1] / "data" / "psychometrics" / "synthetic_waisr_items.csv"


def waisr_items() -> pd.DataFrame:
    """The synthetic items under the WAI-SR's column names (goal1 -> its first goal item)."""
    scales = instrument_scales("wai_sr")
    names = {f"{s}{k + 1}": c for s in ("goal", "task", "bond") for k, c in enumerate(scales[s])}
    return pd.read_csv(ITEMS).drop(columns=["id"]).rename(columns=names)


@pytest.fixture(scope="module")
def report():  # type: ignore[no-untyped-def]
    return psychometrics_report(waisr_items(), "wai_sr")


def test_the_report_carries_lavaans_and_psychs_numbers(report) -> None:  # type: ignore[no-untyped-def]
    # lavaan 0.6-14 and psych 2.2.9 on synthetic_waisr_items.csv (synthetic_computed.json)
    assert report.reliability.loc["total", "alpha"] == pytest.approx(0.8894662064, rel=1e-6)
    assert report.reliability.loc["bond", "alpha"] == pytest.approx(0.8115536952, rel=1e-6)
    models = report.models
    assert models.loc["3 correlated factors", "chisq"] == pytest.approx(73.63970575, rel=1e-6)
    assert models.loc["3 correlated factors", "cfi"] == pytest.approx(0.9920983688, rel=1e-6)
    assert models.loc["one factor", "chisq"] == pytest.approx(499.4430234, rel=1e-6)
    assert models.loc["bifactor", "srmr"] == pytest.approx(0.01776210039, rel=1e-5)
    assert report.bifactor["omega_h"] == pytest.approx(0.7974160444, rel=1e-5)
    assert report.bifactor["omega_t"] == pytest.approx(0.9130200617, rel=1e-5)
    # the Bond vs Goal + Task model of Falkenström, Hatcher & Holmqvist (2015) sits between
    two = models.loc["two factors (bond; goal + task)", "chisq"]
    assert models.loc["3 correlated factors", "chisq"] < two < models.loc["one factor", "chisq"]
    assert report.loadings.loc["wai_sr_3", "factor"] == "bond"
    assert report.notes == []


def test_items_shares_and_distribution_are_the_data_counts(report) -> None:  # type: ignore[no-untyped-def]
    data = waisr_items()
    assert report.items.loc["wai_sr_4", "ceiling"] == pytest.approx((data["wai_sr_4"] == 5).mean())
    assert report.items.loc["wai_sr_4", "floor"] == pytest.approx((data["wai_sr_4"] == 1).mean())
    shares = report.distribution.groupby("item")["share"].sum()
    np.testing.assert_allclose(shares.to_numpy(), 1.0)
    assert report.straight_lining.loc["all", "n"] == len(data)


def test_reverse_keyed_items_are_recoded_before_alpha() -> None:
    inst = get_instrument("haq2")
    reverse = [f"haq2_{i.number}" for i in inst.items if i.reverse]
    assert reverse  # the HAq-II has negatively worded items
    rng = np.random.default_rng(3)
    trait = rng.normal(size=(400, 1))
    columns = list(inst.item_columns)
    answers = np.clip(np.rint(3.5 + trait * 1.2 + rng.normal(size=(400, len(columns)))), 1, 6)
    table = pd.DataFrame(answers, columns=columns)
    for c in reverse:  # as a patient answers a negatively worded item
        table[c] = 7 - table[c]
    got = psychometrics_report(table, inst)
    recoded = table.copy()
    for c in reverse:
        recoded[c] = 7 - recoded[c]
    total = instrument_scales(inst)
    every = [c for cols in total.values() for c in cols]
    want = cronbach_alpha(recoded, every).alpha
    name = "total" if len(total) > 1 else next(iter(total))
    assert got.reliability.loc[name, "alpha"] == pytest.approx(want, rel=1e-12)
    assert got.reliability.loc[name, "alpha"] > 0.8  # unrecoded, the items would cancel


def test_unverified_keys_are_flagged_not_silent() -> None:
    # the WAI-S's goal and task keys are unverified (shared/instruments-facts.md)
    scales = instrument_scales("wai_s")
    rng = np.random.default_rng(8)
    factors = (
        rng.normal(size=(500, len(scales)))
        @ np.linalg.cholesky(np.full((len(scales), len(scales)), 0.6) + 0.4 * np.eye(len(scales))).T
    )
    columns = {c: k for k, cols in enumerate(scales.values()) for c in cols}
    answers = {c: np.clip(np.rint(4 + factors[:, k] + rng.normal(size=500)), 1, 7)
               for c, k in columns.items()}  # fmt: skip
    got = psychometrics_report(pd.DataFrame(answers), "wai_s")
    assert got.notes == [
        "wai_s goal: its key is unverified; read it with care",
        "wai_s task: its key is unverified; read it with care",
    ]
    assert psychometrics_report(waisr_items(), "wai_sr").notes == []


def test_invariance_across_a_group_and_chens_verdict() -> None:
    data = waisr_items().assign(site=np.repeat(["a", "b"], 300))
    got = psychometrics_report(data, "wai_sr", group="site")
    assert list(got.invariance.index) == ["configural", "metric", "scalar", "strict"]
    assert got.verdict is not None and got.verdict.startswith("Across site: strict invariance")
    # a metric step that loses .02 CFI and gains .02 RMSEA fails (Chen 2007: -.010 / +.015)
    table = pd.DataFrame({"delta_cfi": [np.nan, -0.02, 0.0, 0.0],
                          "delta_rmsea": [np.nan, 0.02, 0.0, 0.0]},
                         index=["configural", "metric", "scalar", "strict"])  # fmt: skip
    assert "configural invariance holds" in _verdict(table, "site")
    table.loc["metric"] = [-0.02, 0.01]  # CFI alone is not enough under Chen's joint rule
    assert "strict invariance holds" in _verdict(table, "site")


def test_the_models_compared_follow_the_subscales() -> None:
    assert list(competing_models({"a": ["x", "y", "z"]})) == ["one factor"]
    assert list(competing_models({"goal": ["a"], "task": ["b"], "bond": ["c"]})) == [
        "one factor", "3 correlated factors", "two factors (bond; goal + task)", "bifactor",
    ]  # fmt: skip


def test_bad_input_names_the_cause() -> None:
    data = waisr_items()
    with pytest.raises(PsychometricsError, match="wai_sr_4"):
        psychometrics_report(data.drop(columns=["wai_sr_4"]), "wai_sr")
    with pytest.raises(PsychometricsError, match="wai_sr_5"):
        psychometrics_report(data.assign(wai_sr_5=3), "wai_sr")
    with pytest.raises(PsychometricsError, match="site"):
        psychometrics_report(data, "wai_sr", group="site")
    with pytest.raises(PsychometricsError, match="low, high"):
        psychometrics_report(data, scales={"all": list(data.columns)})


def test_the_scales_ceiling_per_session() -> None:
    data = waisr_items().assign(session=np.tile(np.arange(1, 7), 100))
    top = (data["session"] >= 5) & (np.arange(len(data)) % 4 == 0)  # a ceiling that grows
    data.loc[top, [c for c in data.columns if c.startswith("wai_sr_")]] = 5
    got = psychometrics_report(data, "wai_sr", session="session").by_session
    want = top.groupby(data["session"]).mean()
    np.testing.assert_allclose(got["ceiling"].to_numpy(), want.to_numpy())
    assert list(got.index) == [1, 2, 3, 4, 5, 6] and got["n"].tolist() == [100] * 6


def test_ordinal_models_are_the_wlsmv_fits() -> None:
    from alliance.research.psychometrics import cfa_ordinal

    data = waisr_items()
    got = psychometrics_report(data, "wai_sr", ordinal=True)
    want = cfa_ordinal(data, instrument_scales("wai_sr"))
    row = got.models.loc["3 correlated factors"]
    assert row["estimator"] == "WLSMV"
    assert row["chisq"] == pytest.approx(want.fit["chisq.scaled"], rel=1e-12)
    assert row["cfi"] == pytest.approx(want.fit["cfi.scaled"], rel=1e-12)
    assert set(got.models.index) == {
        "one factor", "3 correlated factors", "two factors (bond; goal + task)", "bifactor",
    }  # fmt: skip
