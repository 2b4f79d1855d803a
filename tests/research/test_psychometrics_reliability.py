"""Reliability functions against psych, published values and closed forms.

References (each value's source is named beside it):
- ``../shared/oracles/psychometrics_mlm_computed.json``: psych 2.2.9 (Debian r-cran-psych, R
  4.2.2) ``alpha`` on HolzingerSwineford1939 and ``ICC`` on the Shrout & Fleiss (1979) ratings;
- ``../shared/oracles/synthetic_computed.json``: psych ``alpha`` on the synthetic WAI-SR items;
- ``../shared/oracles/python_peers_results.json``: pingouin 0.7.0's Feldt interval (3 decimals);
- Shrout & Fleiss (1979, Psychol Bull 86(2):420-428), Table 4, at their printed precision;
- Feldt, Woodruff & Salih (1987, Appl Psychol Meas 11(1):93-103), eq. for the alpha interval.
Tests needing the shared oracles are skipped when that folder is absent.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import stats

from alliance.research.psychometrics import (
    PsychometricsError,
    alpha_if_deleted,
    cronbach_alpha,
    guttman_lambda6,
    icc,
    item_total,
    split_half,
)
from alliance.research.psychometrics import reliability as rel

ORACLES = Path(__file__).parents[1] / "data" / "psychometrics"  # copied from ../shared/oracles
X = [f"x{i}" for i in range(1, 10)]
RATERS = ["J1", "J2", "J3", "J4"]


def _oracle_json(name: str) -> Any:
    path = ORACLES / name
    if not path.exists():
        pytest.skip(f"{path} is absent (the shared oracles are not checked out)")
    return json.loads(path.read_text())


def _oracle_csv(name: str) -> pd.DataFrame:
    path = ORACLES / name
    if not path.exists():
        pytest.skip(f"{path} is absent (the shared oracles are not checked out)")
    return pd.read_csv(path)


@pytest.fixture(scope="module")
def hs() -> pd.DataFrame:
    return _oracle_csv("HolzingerSwineford1939.csv")


@pytest.fixture(scope="module")
def sf() -> pd.DataFrame:
    return _oracle_csv("shrout_fleiss_1979.csv")


def _textbook_alpha(x: np.ndarray) -> float:
    """Cronbach (1951): k/(k-1) (1 - sum of item variances / variance of the total)."""
    k = x.shape[1]
    return float(k / (k - 1) * (1 - x.var(axis=0, ddof=1).sum() / x.sum(axis=1).var(ddof=1)))


# -- Cronbach's alpha -------------------------------------------------------------------------


def test_alpha_matches_psych_on_holzinger_swineford(hs: pd.DataFrame) -> None:
    ref = _oracle_json("psychometrics_mlm_computed.json")["alpha"]
    r = cronbach_alpha(hs, X)
    assert r.alpha == pytest.approx(ref["x1_x9"]["raw_alpha"], rel=1e-6)  # psych 0.7604885958
    assert r.std_alpha == pytest.approx(ref["x1_x9"]["std_alpha"], rel=1e-6)  # psych 0.760402219
    assert r.average_r == pytest.approx(ref["x1_x9"]["average_r"], rel=1e-6)  # psych 0.2606990013
    assert (r.n, r.k, r.n_dropped, r.method) == (301, 9, 0, "feldt")
    r3 = cronbach_alpha(hs, X[:3])
    assert r3.alpha == pytest.approx(ref["x1_x3"]["raw_alpha"], rel=1e-6)  # psych 0.6261171319
    assert r3.std_alpha == pytest.approx(ref["x1_x3"]["std_alpha"], rel=1e-6)  # psych 0.6271838544


def test_alpha_matches_psych_on_synthetic_waisr() -> None:
    ref = _oracle_json("synthetic_computed.json")["synthetic_waisr"]
    w = _oracle_csv("synthetic_waisr_items.csv")
    items = [c for c in w.columns if c != "id"]
    # psych::alpha raw_alpha, synthetic_computed.json: total 0.8894662064, goal 0.814177423,
    # task 0.8098642725, bond 0.8115536952
    assert cronbach_alpha(w, items).alpha == pytest.approx(ref["alpha_total"], rel=1e-6)
    for sub in ("goal", "task", "bond"):
        sub_items = [c for c in items if c.startswith(sub)]
        assert cronbach_alpha(w, sub_items).alpha == pytest.approx(ref[f"alpha_{sub}"], rel=1e-6)


def test_feldt_interval_matches_the_closed_form(hs: pd.DataFrame) -> None:
    r = cronbach_alpha(hs, X, ci=0.90)
    n, k, a = 301, 9, r.alpha
    # Feldt, Woodruff & Salih (1987): (1 - alpha) / (1 - a) ~ F(n - 1, (n - 1)(k - 1)), so the
    # 90% limits are 1 - (1 - a) F_.95 and 1 - (1 - a) F_.05 (upper-tail quantiles via isf)
    df1, df2 = n - 1, (n - 1) * (k - 1)
    assert r.lower == pytest.approx(1 - (1 - a) * stats.f.isf(0.05, df1, df2), rel=1e-12)
    assert r.upper == pytest.approx(1 - (1 - a) * stats.f.isf(0.95, df1, df2), rel=1e-12)
    assert r.lower < r.alpha < r.upper
    assert r.ci == 0.90


def test_feldt_interval_matches_pingouin(hs: pd.DataFrame) -> None:
    peer = _oracle_json("python_peers_results.json")["pingouin_alpha_x1_x9"]
    r = cronbach_alpha(hs, X)
    assert r.alpha == pytest.approx(peer[0], rel=1e-12)  # pingouin 0.7.0: 0.760488595824792
    assert (round(r.lower, 3), round(r.upper, 3)) == tuple(peer[1])  # pingouin: [0.718, 0.799]


def test_feldt_interval_covers_true_alpha_at_nominal_rate() -> None:
    # parallel items x_ij = t_i + e_ij, var(t) = 1, var(e) = 2, k = 5: alpha = 5 / (5 + 2)
    rng = np.random.default_rng(20261204)
    reps, n, k, true_alpha = 400, 40, 5, 5 / 7
    x = rng.normal(size=(reps, n, 1)) + rng.normal(scale=np.sqrt(2), size=(reps, n, k))
    hits = 0
    for sample in x:
        r = cronbach_alpha(pd.DataFrame(sample, columns=list("abcde")))
        hits += r.lower <= true_alpha <= r.upper
    assert 0.92 <= hits / reps <= 0.98


def test_bootstrap_interval_is_seeded_and_brackets_alpha(hs: pd.DataFrame) -> None:
    a = cronbach_alpha(hs, X, method="bootstrap", n_boot=500, seed=1)
    b = cronbach_alpha(hs, X, method="bootstrap", n_boot=500, seed=1)
    c = cronbach_alpha(hs, X, method="bootstrap", n_boot=500, seed=2)
    assert a == b and a.lower != c.lower
    assert a.lower < a.alpha < a.upper and a.method == "bootstrap"
    feldt = cronbach_alpha(hs, X)
    assert abs(a.lower - feldt.lower) < 0.03 and abs(a.upper - feldt.upper) < 0.03


def test_bootstrap_equals_a_plain_loop_over_resamples() -> None:
    rng = np.random.default_rng(5)
    x = rng.normal(size=(30, 1)) + rng.normal(size=(30, 4))
    r = cronbach_alpha(pd.DataFrame(x, columns=list("abcd")), method="bootstrap", n_boot=200)
    idx = np.random.default_rng(0).integers(0, 30, size=(200, 30))  # the same draws, seed 0
    boot = [_textbook_alpha(x[i]) for i in idx]
    assert (r.lower, r.upper) == pytest.approx(tuple(np.quantile(boot, [0.025, 0.975])), rel=1e-12)


def test_bootstrap_chunks_do_not_change_the_result(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(6)
    t = pd.DataFrame(rng.normal(size=(25, 1)) + rng.normal(size=(25, 3)), columns=list("abc"))
    whole = cronbach_alpha(t, method="bootstrap", n_boot=300)
    monkeypatch.setattr(rel, "_BOOT_CHUNK", 25 * 3 * 7)  # 7 resamples per chunk
    assert cronbach_alpha(t, method="bootstrap", n_boot=300) == whole


def test_listwise_deletion_is_reported() -> None:
    t = pd.DataFrame(
        {"a": [1, 2, 3, 4, 5, np.nan], "b": [2, 2, 3, 5, 4, 1], "c": [1, 3, 3, 4, 5, 2]}
    )
    r = cronbach_alpha(t)
    assert (r.n, r.n_dropped) == (5, 1)
    assert r.alpha == pytest.approx(_textbook_alpha(t.dropna().to_numpy()), rel=1e-12)
    assert r.to_frame().loc[0, "n"] == 5


@settings(max_examples=60, deadline=None)
@given(
    arrays(np.int64, st.tuples(st.integers(4, 25), st.integers(3, 6)), elements=st.integers(1, 5))
)
def test_alpha_is_the_textbook_formula_and_shift_invariant(x: np.ndarray) -> None:
    assume((np.ptp(x, axis=0) > 0).all() and x.sum(axis=1).var() > 0)
    t = pd.DataFrame(x, columns=[f"i{j}" for j in range(x.shape[1])])
    r = cronbach_alpha(t)
    assert r.alpha == pytest.approx(_textbook_alpha(x.astype(float)), rel=1e-9, abs=1e-12)
    shifted = cronbach_alpha(t * 2 + np.arange(x.shape[1]))  # same scale factor, item shifts
    assert shifted.alpha == pytest.approx(r.alpha, rel=1e-9, abs=1e-12)


# -- item-total statistics -------------------------------------------------------------------


def test_item_total_against_direct_correlations(hs: pd.DataFrame) -> None:
    table = item_total(hs, X)
    assert list(table.index) == X and (table["n"] == 301).all()
    for item in X:
        others = [c for c in X if c != item]
        rest, total = hs[others].sum(axis=1), hs[X].sum(axis=1)
        row = table.loc[item]
        assert row["corrected_r"] == pytest.approx(np.corrcoef(hs[item], rest)[0, 1], rel=1e-10)
        assert row["total_r"] == pytest.approx(np.corrcoef(hs[item], total)[0, 1], rel=1e-10)
        assert row["alpha_if_deleted"] == pytest.approx(
            _textbook_alpha(hs[others].to_numpy()), rel=1e-10
        )
        assert row["mean"] == pytest.approx(hs[item].mean(), rel=1e-12)
        assert row["sd"] == pytest.approx(hs[item].std(), rel=1e-12)
    assert alpha_if_deleted(hs, X).equals(table["alpha_if_deleted"])


def test_alpha_if_deleted_of_two_items_is_nan() -> None:
    t = pd.DataFrame({"a": [1, 2, 3, 4], "b": [2, 1, 4, 3]})
    assert alpha_if_deleted(t).isna().all()


# -- split half and lambda-6 ------------------------------------------------------------------


def test_lambda6_matches_psych(hs: pd.DataFrame) -> None:
    ref = _oracle_json("psychometrics_mlm_computed.json")["alpha"]["x1_x9"]
    assert split_half(hs, X).lambda6 == pytest.approx(ref["G6"], rel=1e-6)  # psych 0.8084867408


def test_split_half_against_direct_computation(hs: pd.DataFrame) -> None:
    r = split_half(hs, X)
    assert r.first == ("x1", "x3", "x5", "x7", "x9") and r.second == ("x2", "x4", "x6", "x8")
    a, b = hs[list(r.first)].sum(axis=1), hs[list(r.second)].sum(axis=1)
    rho = np.corrcoef(a, b)[0, 1]
    assert r.r == pytest.approx(rho, rel=1e-12)
    assert r.spearman_brown == pytest.approx(2 * rho / (1 + rho), rel=1e-12)  # Spearman-Brown
    # Guttman (1945) split-half: 2 (1 - (var A + var B) / var(A + B))
    assert r.guttman_split == pytest.approx(
        2 * (1 - (a.var() + b.var()) / (a + b).var()), rel=1e-12
    )
    fs = split_half(hs, X, method="first_second")
    assert fs.first == tuple(X[:5]) and fs.second == tuple(X[5:])
    assert fs.to_frame().loc[0, "first"] == "x1,x2,x3,x4,x5"


def test_lambda6_of_two_items_is_their_correlation() -> None:
    # smc of each item is r^2, so G6 = 1 - 2 (1 - r^2) / (2 + 2 r) = r (closed form)
    assert guttman_lambda6(np.array([[1.0, 0.3], [0.3, 1.0]])) == pytest.approx(0.3, rel=1e-12)


def test_lambda6_refuses_a_singular_matrix() -> None:
    with pytest.raises(PsychometricsError, match="singular"):
        guttman_lambda6(np.ones((3, 3)))


# -- ICC ----------------------------------------------------------------------------------------


def test_icc_matches_psych_on_shrout_fleiss(sf: pd.DataFrame) -> None:
    ref = _oracle_json("psychometrics_mlm_computed.json")["icc_shrout_fleiss"]
    table = icc(sf, RATERS)
    assert list(table["type"]) == [r["type"] for r in ref]
    for row, expected in zip(table.to_dict("records"), ref):
        # psych::ICC, psychometrics_mlm_computed.json "icc_shrout_fleiss" (e.g. ICC2 0.2897637795,
        # lower 0.01878651337, upper 0.7610843696)
        assert row["icc"] == pytest.approx(expected["ICC"], rel=1e-6)
        for key in ("F", "p", "lower", "upper"):
            assert row[key] == pytest.approx(expected[key], rel=1e-6), (row["type"], key)
        assert (row["df1"], row["df2"]) == (expected["df1"], expected["df2"])
    assert table.attrs == {"n": 6, "k": 4, "n_dropped": 0}


def test_icc_matches_shrout_fleiss_table_4(sf: pd.DataFrame) -> None:
    # Shrout & Fleiss (1979), Table 4: ICC(1,1) .17, ICC(2,1) .29, ICC(3,1) .71,
    # ICC(1,4) .44, ICC(2,4) .62, ICC(3,4) .91
    published = {"ICC1": 0.17, "ICC2": 0.29, "ICC3": 0.71, "ICC1k": 0.44, "ICC2k": 0.62,
                 "ICC3k": 0.91}  # fmt: skip
    got = icc(sf.set_index("target")).set_index("type")["icc"].round(2)
    assert got.to_dict() == published


def test_icc_rater_shift_changes_agreement_not_consistency(sf: pd.DataFrame) -> None:
    base = icc(sf, RATERS).set_index("type")["icc"]
    shifted = sf[RATERS] + np.array([0, 3, 0, 0])  # rater J2 becomes more lenient
    moved = icc(shifted).set_index("type")["icc"]
    assert moved["ICC3"] == pytest.approx(base["ICC3"], rel=1e-12)  # consistency unchanged
    assert moved["ICC2"] != pytest.approx(base["ICC2"])
    assert (icc(sf[RATERS] + 10).set_index("type")["icc"] - base).abs().max() < 1e-12


def test_icc_drops_targets_with_a_missing_rating(sf: pd.DataFrame) -> None:
    extra = pd.concat([sf[RATERS], pd.DataFrame({"J1": [5.0], "J2": [np.nan]})])
    table = icc(extra, RATERS)
    assert table.attrs["n_dropped"] == 1
    assert table["icc"].to_numpy() == pytest.approx(icc(sf, RATERS)["icc"].to_numpy(), rel=1e-12)


# -- bad input ---------------------------------------------------------------------------------

GOOD = pd.DataFrame({"a": [1, 2, 3, 4], "b": [2, 1, 4, 3], "c": [1, 3, 2, 4]})


@pytest.mark.parametrize(
    ("data", "items", "message"),
    [
        (GOOD.assign(c=3), None, "c: item is constant"),
        (GOOD.head(2), None, "at least 3 rows"),
        (GOOD, ["a"], "at least 2 numeric item columns"),
        (GOOD.assign(c=list("wxyz")), ["a", "c"], "c: column is not numeric"),
        (GOOD, ["a", "zz"], "zz: column is missing"),
        (GOOD, "a", "list of column names"),
        (GOOD, ["a", "a"], "twice"),
        (GOOD.assign(b=[1.0, np.inf, 2.0, 3.0]), None, "b: column holds an infinite"),
    ],
)
def test_bad_input_names_column_and_rule(
    data: pd.DataFrame, items: list[str] | None, message: str
) -> None:
    for fn in (cronbach_alpha, item_total, split_half):
        with pytest.raises(PsychometricsError, match=message):
            fn(data, items)


def test_bad_options_are_refused() -> None:
    with pytest.raises(PsychometricsError, match="method must be"):
        cronbach_alpha(GOOD, method="kr20")  # type: ignore[arg-type]
    with pytest.raises(PsychometricsError, match="ci must lie"):
        cronbach_alpha(GOOD, ci=95)
    with pytest.raises(PsychometricsError, match="n_boot"):
        cronbach_alpha(GOOD, method="bootstrap", n_boot=10)
    with pytest.raises(PsychometricsError, match="method must be"):
        split_half(GOOD, method="random")  # type: ignore[arg-type]
    with pytest.raises(PsychometricsError, match="DataFrame"):
        cronbach_alpha(GOOD.to_numpy())  # type: ignore[arg-type]
    with pytest.raises(PsychometricsError, match="no within-target variance"):
        icc(pd.DataFrame({"r1": [1, 2, 3], "r2": [1, 2, 3]}))
