"""Polychoric correlations and WLSMV against lavaan 0.6-14 itself (no R needed here).

References: ``tests/data/psychometrics/ordinal_lavaan.json``, written by ``ordinal_refs.R`` in
the same folder (R 4.2.2, lavaan 0.6-14 and psych 2.2.9 from Debian; see its ``_provenance``),
on copies of the shared oracle data: the 12 synthetic WAI-SR items (5 categories, 600 rows),
those items with every answer above 3 recoded to 3 (a ceiling effect), Holzinger-Swineford
x1..x9 cut into 4 categories at the fixed points stored in the JSON (301 rows, with empty
cells), and three binary items with one empty cell in a 2x2 table.

Tolerances, from what lavaan's own stopping rules leave: its polychorics (nlminb, rel.tol
1e-10) agree with ours to ~2e-8 and are checked at 1e-7; thresholds are closed-form (1e-9);
Γ at 1e-6 relative (seen 1e-7); the WLSMV estimates at 2e-6 absolute (nlminb on the DWLS
function stops ~7e-7 from the optimum ours reaches); SEs, test statistics and fit measures
at 1e-6 relative (seen ~1e-7). psych's polychoric optimises more loosely: 1e-4.
Independent checks without lavaan: Φ₂ against a numerical Plackett integral, the closed-form
tetrachoric of a table with median splits, and recovery of a known threshold model.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy import integrate, stats

from alliance.research.psychometrics.cfa import CFAError
from alliance.research.psychometrics.ordinal import (
    OrdinalError,
    _bvn_cdf,
    cfa_ordinal,
    polychoric,
)

DATA = Path(__file__).resolve().parents[1] / "data" / "psychometrics"
REF: dict[str, Any] = json.loads((DATA / "ordinal_lavaan.json").read_text())

WAI3 = {f: [f"{f}{i}" for i in range(1, 5)] for f in ("goal", "task", "bond")}
HS3 = {"visual": ["x1", "x2", "x3"], "textual": ["x4", "x5", "x6"], "speed": ["x7", "x8", "x9"]}


def _waisr() -> pd.DataFrame:
    return pd.read_csv(DATA / "synthetic_waisr_items.csv").drop(columns="id")


def _data_sets() -> dict[str, pd.DataFrame]:
    wai = _waisr()
    hs = pd.read_csv(DATA / "HolzingerSwineford1939.csv")
    # the same cut as ordinal_refs.R: category = 1 + number of cut points below the value
    hs4 = pd.DataFrame(
        {
            v: (hs[v].to_numpy()[:, None] > np.array(c)).sum(axis=1) + 1
            for v, c in REF["cuts"].items()
        }
    )
    patterns = pd.DataFrame(REF["binary_patterns"])
    binary = patterns.loc[patterns.index.repeat(patterns["n"]), ["a", "b", "c"]]
    return {
        "waisr": wai,
        "hs4": hs4,
        "ceiling3": wai.clip(upper=3),
        "binary": binary.reset_index(drop=True),
    }


SETS = _data_sets()
FITS: dict[str, tuple[str, dict[str, list[str]], dict[str, Any]]] = {
    "waisr_3f": ("waisr", WAI3, {}),
    "waisr_1f": ("waisr", {"f": list(SETS["waisr"].columns)}, {}),
    "waisr_bifactor": ("waisr", WAI3, {"bifactor": "g", "std_lv": True}),
    "hs4_3f": ("hs4", HS3, {}),
    "ceiling3_3f": ("ceiling3", WAI3, {}),
    "goal_saturated": ("waisr", {"f": ["goal1", "goal2", "goal3"]}, {}),
}


@pytest.fixture(scope="module")
def fits() -> dict[str, Any]:
    return {name: cfa_ordinal(SETS[data], model, **kw) for name, (data, model, kw) in FITS.items()}


def _key(lhs: str, op: str, rhs: str) -> tuple[str, str, str]:
    # a covariance is symmetric: lavaan writes "goal ~~ g" where our table has "g ~~ goal"
    if op == "~~":
        lhs, rhs = sorted((lhs, rhs))
    return lhs, op, rhs


def _indexed(rows: list[dict[str, Any]] | pd.DataFrame) -> pd.DataFrame:
    table = pd.DataFrame(rows)
    keys = [_key(a, o, b) for a, o, b in zip(table["lhs"], table["op"], table["rhs"])]
    return table.set_index(pd.MultiIndex.from_tuples(keys, names=["lhs", "op", "rhs"]))


# --------------------------------------------------------------------------- polychoric


@pytest.mark.parametrize("name", ["waisr", "hs4", "ceiling3", "binary"])
def test_polychoric_matches_lavcor(name: str) -> None:
    ref = REF["polychoric"][name]
    res = polychoric(SETS[name])
    assert list(res.thresholds.index) == list(ref["th"])
    np.testing.assert_allclose(res.thresholds, list(ref["th"].values()), rtol=0, atol=1e-9)
    np.testing.assert_allclose(res.correlation, ref["cor"], rtol=0, atol=1e-7)


@pytest.mark.parametrize("name", ["waisr", "hs4", "ceiling3"])
def test_polychoric_cross_checks_psych(name: str) -> None:
    """psych::polychoric(correct = 0): the same two-step estimator, optimised more loosely."""
    res = polychoric(SETS[name])
    np.testing.assert_allclose(res.correlation, REF["polychoric"][name]["psych_rho"], atol=1e-4)


def test_zero_cell_2x2_follows_lavaan_not_psych() -> None:
    """a x b has one empty cell: lavaan (and we) move 0.5 into it keeping the margins, 0.915;
    psych without correction runs towards 1 (0.998). The other pairs agree with both."""
    res = polychoric(SETS["binary"])
    ref = REF["polychoric"]["binary"]
    assert res.empty_cells == [("a", "b")]
    assert res.correlation.loc["a", "b"] == pytest.approx(ref["cor"][0][1], abs=1e-7)
    assert ref["psych_rho"][0][1] > 0.99
    np.testing.assert_allclose(res.correlation.iloc[2, :2], ref["psych_rho"][2][:2], atol=1e-4)


def test_hs4_tables_with_empty_cells_are_used_as_they_are() -> None:
    res = polychoric(SETS["hs4"])
    assert res.empty_cells == [("x4", "x5"), ("x4", "x6"), ("x5", "x6")]


@pytest.mark.parametrize("name", list(FITS))
def test_nacov_matches_lavaan_gamma(name: str, fits: dict[str, Any]) -> None:
    ref = REF["cfa"][name]
    nacov = fits[name].polychoric.nacov
    assert list(nacov.index) == ref["gamma_names"]
    np.testing.assert_allclose(np.diag(nacov), ref["gamma_diag"], rtol=1e-6)
    if ref["gamma"] is not None:  # the full matrix is stored for the 9-item set
        full = np.asarray(ref["gamma"])
        np.testing.assert_allclose(nacov, full, rtol=0, atol=1e-6 * np.abs(full).max())


# --------------------------------------------------------------------------- WLSMV fits


@pytest.mark.parametrize("name", list(FITS))
def test_wlsmv_estimates_and_robust_ses(name: str, fits: dict[str, Any]) -> None:
    fit = fits[name]
    assert fit.converged
    mine, ref = _indexed(fit.params), _indexed(REF["cfa"][name]["params"])
    ref = ref[ref.index.get_level_values("op").isin(["=~", "|", "~~"])]
    assert set(ref.index) == set(mine.index)
    mine = mine.loc[ref.index]
    np.testing.assert_allclose(mine["est"], ref["est"], rtol=0, atol=2e-6)
    np.testing.assert_allclose(mine["se"], ref["se"], rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("name", list(FITS))
def test_standardized_solution(name: str, fits: dict[str, Any]) -> None:
    std = _indexed(REF["cfa"][name]["std"])
    std = std[std.index.get_level_values("op").isin(["=~", "|", "~~"])]
    mine = _indexed(fits[name].params).loc[std.index]
    np.testing.assert_allclose(mine["std_all"], std["est_std"], rtol=0, atol=2e-6)
    np.testing.assert_allclose(mine["std_se"], std["se"], rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("name", list(FITS))
def test_scaled_shifted_test_and_fit_measures(name: str, fits: dict[str, Any]) -> None:
    ref, fit = REF["cfa"][name], fits[name].fit
    # cfi.robust / rmsea.robust (Savalei 2021: a second, ML fit to the polychorics) are
    # stored for reference but not implemented
    for key, value in ref["fit"].items():
        if key.endswith(".robust"):
            assert key not in fit
            continue
        assert fit[key] == pytest.approx(value, rel=1e-6, abs=1e-8), key
    shifted = ref["scaled_shifted"]
    if shifted["scaling_factor"] is None:  # df = 0: lavaan has no scaled test
        assert math.isnan(fit["chisq.scaling.factor"])
        return
    assert fit["chisq.scaling.factor"] == pytest.approx(shifted["scaling_factor"], rel=1e-6)
    assert fit["chisq.shift.parameter"] == pytest.approx(shifted["shift_parameter"], rel=1e-6)


def test_wlsmv_differs_from_ml_on_pearson() -> None:
    """The point of the module: ML on the 1..5 codes attenuates the loadings."""
    from alliance.research.psychometrics.cfa import cfa

    wai = SETS["ceiling3"]
    ordinal = cfa_ordinal(wai, WAI3).params.query("op == '=~'")["std_all"].mean()
    pearson = cfa(wai, WAI3).params.query("op == '=~'")["std_all"].mean()
    assert ordinal > pearson + 0.05


# --------------------------------------------------------------------------- independent


@pytest.mark.parametrize(
    ("h", "k", "rho"),
    [(0.3, -1.2, 0.5), (0.0, 0.7, -0.6), (0.0, 0.0, 0.9), (-0.4, 0.0, 0.2), (1.5, 1.6, 0.95)],
)
def test_bivariate_normal_cdf_against_plackett_integral(h: float, k: float, rho: float) -> None:
    """Φ₂(h, k; ρ) = Φ(h)Φ(k) + ∫₀^ρ φ₂(h, k; r) dr (Plackett 1954), integrated by quad."""

    def density(r: float) -> float:
        q = (h * h - 2 * r * h * k + k * k) / (1 - r * r)
        return math.exp(-q / 2) / (2 * math.pi * math.sqrt(1 - r * r))

    expected = (
        stats.norm.cdf(h) * stats.norm.cdf(k) + integrate.quad(density, 0, rho, epsabs=1e-14)[0]
    )
    got = float(_bvn_cdf(np.array([h]), np.array([k]), rho)[0])
    assert got == pytest.approx(expected, abs=1e-13)


def test_tetrachoric_with_median_splits_is_closed_form() -> None:
    """Both thresholds 0: P(0, 0) = 1/4 + asin(ρ)/(2π), so ρ = sin(2π(p₀₀ - 1/4))."""
    counts = {(0, 0): 37, (0, 1): 13, (1, 0): 13, (1, 1): 37}
    rows = [pair for pair, n in counts.items() for _ in range(n)]
    d = pd.DataFrame(rows, columns=["a", "b"])
    res = polychoric(d)
    assert res.thresholds.tolist() == [0.0, 0.0]
    expected = math.sin(2 * math.pi * (37 / 100 - 0.25))
    assert res.correlation.loc["a", "b"] == pytest.approx(expected, abs=1e-10)


def test_recovers_a_known_threshold_model() -> None:
    """Normal latent responses with ρ = 0.6 cut at known thresholds: estimates within 4 SE,
    the SEs from the NACOV."""
    rng = np.random.default_rng(11)
    n = 20000
    z = rng.multivariate_normal([0, 0], [[1, 0.6], [0.6, 1]], size=n)
    cuts = ([-1.0, 0.2, 1.1], [-0.5, 0.8])
    d = pd.DataFrame({"a": np.digitize(z[:, 0], cuts[0]), "b": np.digitize(z[:, 1], cuts[1])})
    res = polychoric(d)
    se = np.sqrt(np.diag(res.nacov) / n)
    est = np.r_[res.thresholds.to_numpy(), res.correlation.loc["a", "b"]]
    truth = np.r_[cuts[0], cuts[1], 0.6]
    assert np.all(np.abs(est - truth) < 4 * se)


# --------------------------------------------------------------------------- errors


def test_errors_are_cfa_errors() -> None:
    assert issubclass(OrdinalError, CFAError)


def test_single_category_item() -> None:
    d = SETS["waisr"].assign(goal1=3)
    with pytest.raises(OrdinalError, match="'goal1' has only the answer 3"):
        polychoric(d)


def test_non_integer_answers() -> None:
    d = SETS["waisr"].astype(float)
    d.loc[5, "task2"] = 2.5
    with pytest.raises(OrdinalError, match="non-integer answers in task2"):
        cfa_ordinal(d, WAI3)


def test_text_answers() -> None:
    d = SETS["waisr"].astype(object)
    d.loc[0, "bond1"] = "agree"
    with pytest.raises(OrdinalError, match="integer answers"):
        polychoric(d)


def test_too_few_rows() -> None:
    with pytest.raises(OrdinalError, match="too few complete rows: 40"):
        cfa_ordinal(SETS["waisr"].head(40), WAI3)


def test_two_empty_cells_in_2x2() -> None:
    d = pd.DataFrame({"a": [0] * 10 + [1] * 10, "b": [0] * 10 + [1] * 10, "c": [0, 1] * 10})
    with pytest.raises(OrdinalError, match="a and b is undefined: their 2x2 table has two"):
        polychoric(d)


def test_perfectly_ordered_larger_table() -> None:
    a = np.repeat([1, 2, 3], 10)
    d = pd.DataFrame({"a": a, "b": a, "c": np.tile([1, 2, 3], 10)})
    with pytest.raises(OrdinalError, match=r"a and b is undefined.*towards ρ = \+1"):
        polychoric(d)


def test_missing_rows_are_dropped_listwise() -> None:
    d = SETS["waisr"].astype(float)
    d.loc[[3, 7], "goal2"] = np.nan
    res = polychoric(d)
    assert (res.n, res.n_dropped) == (598, 2)


def test_missing_column_and_unidentified_model() -> None:
    with pytest.raises(OrdinalError, match="not in the data: nope"):
        polychoric(SETS["waisr"], ["goal1", "nope"])
    with pytest.raises(CFAError, match="not identified"):
        cfa_ordinal(SETS["waisr"], {"f": ["goal1"]})
