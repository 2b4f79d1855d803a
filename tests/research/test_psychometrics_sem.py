"""The SEM engine and the RI-CLPM against lavaan 0.6-14 itself.

References (no R needed here): ``../shared/oracles/synthetic_computed.json`` key
``synthetic_riclpm`` (lavaan 0.6-14 from Debian on R 4.2.2: Hamaker, Kuiper & Grasman's
2015 RI-CLPM, lagged effects free at every lag, ML, free observed means) fitted to
``../shared/oracles/synthetic_riclpm_wide.csv`` (800 rows, 5 waves of x and y); the oracle
tests skip when that folder is absent. The values there are ``signif(x, 10)`` of lavaan's
estimates, which lavaan's optimiser (nlminb, relative tolerance ~1e-10 on F) leaves up to
4e-7 from the exact optimum ours reaches (our chi-square is 3.5e-9 lower), so estimates are
compared at 1e-6 and SEs at 1e-7 (absolute; the brief's target is 1e-4). The CFA engine the
SEM reuses is itself checked against lavaan in ``test_psychometrics_cfa.py``; here sem()
must give the same numbers as cfa() where both apply.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from alliance.research.psychometrics.cfa import CFAError, _Moments, cfa
from alliance.research.psychometrics.sem import (
    Parameter,
    SEMError,
    SEMResult,
    _build,
    _discrepancy,
    _gradient,
    _information,
    clpm,
    riclpm,
    sem,
)

# copied from ../shared/oracles (tests/data/psychometrics/README.md)
ORACLES = Path(__file__).resolve().parents[1] / "data" / "psychometrics"
needs_oracles = pytest.mark.skipif(not ORACLES.is_dir(), reason="../shared/oracles absent")

X = [f"x{t}" for t in range(1, 6)]
Y = [f"y{t}" for t in range(1, 6)]
HS_MODEL = {
    "visual": ["x1", "x2", "x3"],
    "textual": ["x4", "x5", "x6"],
    "speed": ["x7", "x8", "x9"],
}


def _oracle() -> dict[str, Any]:
    out: dict[str, Any] = json.loads((ORACLES / "synthetic_computed.json").read_text())
    return dict(out["synthetic_riclpm"])


def _panel() -> pd.DataFrame:
    return pd.read_csv(ORACLES / "synthetic_riclpm_wide.csv")


@pytest.fixture(scope="module")
def fitted() -> SEMResult:
    return riclpm(_panel(), X, Y, names=("alliance", "symptoms"))


def _toy_panel(n: int = 300, waves: int = 3, seed: int = 0) -> pd.DataFrame:
    """Stable person levels plus wave noise: a population an RI-CLPM fits."""
    rng = np.random.default_rng(seed)
    stable = rng.normal(size=(n, 2))
    cols = {
        f"{v}{t}": stable[:, k] + rng.normal(size=n)
        for k, v in enumerate("xy")
        for t in range(1, waves + 1)
    }
    return pd.DataFrame(cols)


# --------------------------------------------------------------------------- lavaan oracle


@needs_oracles
def test_riclpm_fit_measures_match_lavaan(fitted: SEMResult) -> None:
    # synthetic_computed.json synthetic_riclpm.fit: chisq 30.7250005, df 21, pvalue
    # 0.07835803431, cfi 0.9979465043, tli 0.9955996521, rmsea 0.02405969819, srmr
    # 0.0158543323, logl -11775.28161 (lavaan 0.6-14). Reached: chisq, pvalue, cfi, tli,
    # rmsea to 3e-10 relative; srmr to 1.7e-6 relative (2.7e-8 absolute, lavaan's estimates
    # sit 1e-7 from ours); logl to 2.7e-6 absolute, the oracle's 10th significant digit.
    ref = _oracle()["fit"]
    assert fitted.converged and fitted.n == 800 and fitted.n_dropped == 0
    for key in ("chisq", "pvalue", "cfi", "tli", "rmsea"):
        assert fitted.fit[key] == pytest.approx(ref[key], rel=1e-6), key
    assert fitted.fit["df"] == ref["df"] == 21
    assert fitted.fit["srmr"] == pytest.approx(ref["srmr"], rel=1e-5)
    assert fitted.fit["logl"] == pytest.approx(ref["logl"], abs=1e-5)
    # 65 moments (55 (co)variances + 10 means) - 21 df = 44 free parameters
    assert fitted.fit["npar"] == 44
    assert fitted.fit["aic"] == pytest.approx(-2 * ref["logl"] + 2 * 44, abs=2e-5)


@needs_oracles
def test_riclpm_estimates_and_ses_match_lavaan(fitted: SEMResult) -> None:
    # synthetic_computed.json synthetic_riclpm.params: 22 parameterEstimates() rows (the 16
    # lagged paths, wx1 ~~ wy1, the RI (co)variances, the wave-1 within variances), est and
    # se from expected information. Reached: est within 3.7e-7, se within 2.2e-8 (absolute).
    ref = _oracle()["params"]
    assert len(ref) == 22
    for r in ref:
        ours = fitted.row(r["lhs"], r["op"], r["rhs"])
        assert ours["est"] == pytest.approx(r["est"], abs=1e-6), (r["lhs"], r["rhs"])
        assert ours["se"] == pytest.approx(r["se"], abs=1e-7), (r["lhs"], r["rhs"])
        assert ours["z"] == pytest.approx(r["est"] / r["se"], abs=1e-4)


@needs_oracles
def test_riclpm_structure_is_hamakers(fitted: SEMResult) -> None:
    # Hamaker, Kuiper & Grasman (2015), Psychological Methods 20(1), 102-116, and the
    # oracle's spec: loadings fixed to 1, observed residual variances 0, RIs uncorrelated
    # with the wave-1 within parts, 4 paths per lag, free observed means
    p = fitted.params
    loadings = p[p["op"] == "=~"]
    assert len(loadings) == 20 and (loadings["est"] == 1).all() and (loadings["se"] == 0).all()
    assert len(p[p["op"] == "~"]) == 16
    for v in X + Y:
        assert fitted.row(v, "~~", v)["est"] == 0 and fitted.row(v, "~~", v)["se"] == 0
        assert fitted.row(v, "~1")["se"] > 0
    for ri in ("RIx", "RIy"):
        for w in ("wx1", "wy1"):
            assert fitted.row(ri, "~~", w)["est"] == 0 and fitted.row(ri, "~~", w)["se"] == 0
    # the observed means are saturated, so they equal the sample means (800 rows, CSV)
    means = _panel()[X + Y].mean()
    for v in X + Y:
        assert fitted.row(v, "~1")["est"] == pytest.approx(means[v], abs=1e-7)


@needs_oracles
def test_riclpm_std_all_is_lavaans_definition(fitted: SEMResult) -> None:
    # lavaan's standardizedSolution(): covariances as correlations of the (residual)
    # variances (cov.std = TRUE), paths b·sd(rhs)/sd(lhs) with total latent SDs, exogenous
    # variances 1. Checked against the definitions on our own estimates (no oracle value).
    r = fitted.row("RIx", "~~", "RIy")
    vx, vy = fitted.row("RIx", "~~", "RIx")["est"], fitted.row("RIy", "~~", "RIy")["est"]
    assert r["std_all"] == pytest.approx(r["est"] / np.sqrt(vx * vy), rel=1e-12)
    assert fitted.row("RIx", "~~", "RIx")["std_all"] == pytest.approx(1.0)
    # wx1 and wy1 are exogenous: the path wx2 ~ wx1 scales by sd(wx1) / sd(wx2) (total)
    b = fitted.row("wx2", "~", "wx1")
    v1 = fitted.row("wx1", "~~", "wx1")["est"]
    res2 = fitted.row("wx2", "~~", "wx2")["est"]
    c11 = fitted.row("wx1", "~~", "wy1")["est"]
    v1y = fitted.row("wy1", "~~", "wy1")["est"]
    g = fitted.row("wx2", "~", "wy1")["est"]
    var2 = b["est"] ** 2 * v1 + g**2 * v1y + 2 * b["est"] * g * c11 + res2
    assert b["std_all"] == pytest.approx(b["est"] * np.sqrt(v1 / var2), rel=1e-10)
    # RIx =~ x1: sqrt(var RIx / implied var x1), implied var x1 = RIx + wx1 variances
    assert fitted.row("RIx", "=~", "x1")["std_all"] == pytest.approx(
        np.sqrt(vx / (vx + v1)), rel=1e-10
    )


# --------------------------------------------------------------------------- recovery


@needs_oracles
def test_riclpm_recovers_the_generating_lagged_effects(fitted: SEMResult) -> None:
    # synthetic_computed.json synthetic_riclpm.true_values: "autoreg x .35, y .40; cross-lag
    # y->x .05, x->y -.15; cor(RIx,RIy)=.4". One sample of 800, so each of the 16 lagged
    # estimates must lie within 3 SEs of its population value (largest here: 2.4 SEs,
    # wx3 ~ wx2 = 0.457); the RI correlation within 3 of its approximate SE (se(cov)/sd·sd).
    truth = {("x", "x"): 0.35, ("y", "y"): 0.40, ("y", "x"): 0.05, ("x", "y"): -0.15}
    p = fitted.params
    lags = p[p["op"] == "~"]
    for _, row in lags.iterrows():
        effect, cause = row["lhs"][1], row["rhs"][1]  # "wx3" -> "x"
        gap = abs(row["est"] - truth[(cause, effect)])
        assert gap < 3 * row["se"], (row["lhs"], row["rhs"], row["est"])
    r = fitted.row("RIx", "~~", "RIy")
    scale = r["est"] / r["std_all"]
    assert abs(r["std_all"] - 0.4) < 3 * r["se"] / scale


@needs_oracles
def test_riclpm_reading_states_the_within_person_effects(fitted: SEMResult) -> None:
    # the plain-language reading follows the estimates above: every x -> y lag has a 95%
    # CI below 0 (wave 1 to 2: b = -0.179, SE 0.045), no y -> x lag excludes 0
    text = fitted.reading
    assert text.startswith(
        "Within patients, higher alliance than usual at one wave goes with lower symptoms "
        "than usual at the next (wave 1 to 2: b = -0.18, 95% CI -0.27 to -0.09;"
    )
    assert "higher symptoms than usual at one wave does not detectably predict alliance" in text
    assert "Between patients, those with higher alliance on average have higher symptoms" in text
    assert "r = 0.44" in text


@needs_oracles
def test_clpm_is_nested_and_fits_worse() -> None:
    # the CLPM is the RI-CLPM with the RI variances and covariance fixed to 0: 3 more df
    # and a chi-square no smaller (here 265.0 against 30.7, as the data have stable traits)
    data = _panel()
    full, nested = riclpm(data, X, Y), clpm(data, X, Y)
    assert nested.converged
    assert nested.fit["df"] == full.fit["df"] + 3 == 24
    assert nested.fit["chisq"] > full.fit["chisq"] + 100
    assert nested.fit["cfi"] < full.fit["cfi"] and nested.fit["rmsea"] > full.fit["rmsea"]
    assert not nested.params["lhs"].isin(["RIx", "RIy"]).any()
    assert nested.reading.startswith("Higher x than average at one wave")


@needs_oracles
def test_wave_labels_name_the_latents_without_changing_the_fit(fitted: SEMResult) -> None:
    relabelled = riclpm(_panel(), X, Y, waves=[2, 4, 6, 8, 10])
    assert relabelled.fit["chisq"] == pytest.approx(fitted.fit["chisq"], rel=1e-10)
    assert relabelled.row("wy4", "~", "wx2")["est"] == pytest.approx(
        fitted.row("wy2", "~", "wx1")["est"], abs=1e-8
    )
    assert "wave 2 to 4" in relabelled.reading


# --------------------------------------------------------------------------- the engine


def _hs_parameters(regress: bool) -> list[Parameter]:
    """The Holzinger-Swineford 3-factor CFA in sem() terms; with ``regress`` speed is
    regressed on visual and textual instead of covarying with them (an equivalent model)."""
    pars = [
        Parameter(f, "=~", v, fixed=1.0 if k == 0 else None)
        for f, items in HS_MODEL.items()
        for k, v in enumerate(items)
    ]
    pars += [Parameter(v, "~~", v) for items in HS_MODEL.values() for v in items]
    pars += [Parameter(f, "~~", f) for f in HS_MODEL]
    pars += [Parameter("visual", "~~", "textual")]
    pars += [Parameter(f, "~1", fixed=0.0) for f in HS_MODEL]  # as cfa() lists them
    if regress:
        pars += [Parameter("speed", "~", "visual"), Parameter("speed", "~", "textual")]
    else:
        pars += [Parameter("visual", "~~", "speed"), Parameter("textual", "~~", "speed")]
    return pars


@needs_oracles
def test_sem_reproduces_cfa_and_an_equivalent_regression_model() -> None:
    # sem() on the CFA must give cfa()'s numbers (cfa() matches lavaan 0.6-14 to 1e-6 on this
    # model, test_psychometrics_cfa.py), and regressing speed on visual and textual is the
    # same model re-expressed: same chi-square, and b = Φ_vt⁻¹ Φ_(vt),s from the CFA's Φ
    data = pd.read_csv(ORACLES / "HolzingerSwineford1939.csv")
    ref = cfa(data, HS_MODEL, meanstructure=True)
    ours = sem(data, _hs_parameters(regress=False))
    for key in ("chisq", "df", "cfi", "tli", "rmsea", "srmr", "logl", "aic", "bic"):
        assert ours.fit[key] == pytest.approx(ref.fit[key], rel=1e-8), key
    for _, r in ref.params.iterrows():
        row = ours.row(r["lhs"], r["op"], r["rhs"])
        for col in ("est", "se", "std_all"):
            assert row[col] == pytest.approx(r[col], rel=1e-6, abs=1e-9), (r["rhs"], col)
    reg = sem(data, _hs_parameters(regress=True))
    assert reg.converged
    assert reg.fit["chisq"] == pytest.approx(ref.fit["chisq"], rel=1e-8)
    phi = ref.matrices()[1].to_numpy()
    b = np.linalg.solve(phi[:2, :2], phi[:2, 2])
    assert reg.row("speed", "~", "visual")["est"] == pytest.approx(b[0], rel=1e-6)
    assert reg.row("speed", "~", "textual")["est"] == pytest.approx(b[1], rel=1e-6)


def test_equality_labels_share_one_parameter() -> None:
    # tau-equivalence: four loadings labelled alike are one parameter (3 more df)
    rng = np.random.default_rng(5)
    f = rng.normal(size=(500, 1))
    data = pd.DataFrame(f + rng.normal(scale=0.7, size=(500, 4)), columns=list("abcd"))
    pars = [Parameter("f", "=~", v, label="lam") for v in "abcd"]
    pars += [Parameter(v, "~~", v) for v in "abcd"] + [Parameter("f", "~~", "f", fixed=1.0)]
    res = sem(data, pars)
    free = [Parameter("f", "=~", v) for v in "abcd"] + pars[4:]
    assert res.fit["df"] == sem(data, free).fit["df"] + 3 == 5
    loadings = res.params[res.params["op"] == "=~"]
    assert loadings["est"].nunique() == 1 and loadings["se"].nunique() == 1
    assert loadings["est"].iloc[0] == pytest.approx(1.0, abs=0.1)  # population value 1


def _numeric_check(pars: list[Parameter], x: np.ndarray) -> None:
    """Analytic gradient and information against finite differences of F. At data equal to
    the model's own moments the Hessian of F is exactly twice the expected information."""
    model = _build(pars)
    imp = model.implied(x)
    assert imp is not None
    exact = _Moments(imp.sigma, imp.mu, 100)
    h = 1e-5
    eye = np.eye(len(x))
    hess = np.array(
        [
            (_gradient(model, x + h * e, exact) - _gradient(model, x - h * e, exact)) / (2 * h)
            for e in eye
        ]
    )
    np.testing.assert_allclose(hess, 2 * _information(model, x), atol=1e-6)
    # the gradient away from the optimum, on other moments
    other = _Moments(imp.sigma + 0.1 * np.eye(len(imp.mu)), imp.mu + 0.2, 100)
    numeric = [
        (_discrepancy(model, x + h * e, other) - _discrepancy(model, x - h * e, other)) / (2 * h)
        for e in eye
    ]
    np.testing.assert_allclose(_gradient(model, x, other), numeric, atol=1e-7)


def test_derivatives_of_paths_loadings_and_means_match_finite_differences() -> None:
    # a latent chain f1 -> f2 -> f3 with free loadings, a labelled pair of paths, a latent
    # mean and a residual covariance: every kind of derivative in the engine
    pars = [
        Parameter(f"f{j}", "=~", f"v{j}{k}", fixed=1.0 if k == 0 else None)
        for j in (1, 2, 3)
        for k in range(3)
    ]
    pars += [Parameter("f2", "~", "f1", label="b"), Parameter("f3", "~", "f2", label="b")]
    pars += [Parameter("f3", "~", "f1")]
    pars += [Parameter(f"f{j}", "~~", f"f{j}") for j in (1, 2, 3)]
    pars += [Parameter(f"v{j}{k}", "~~", f"v{j}{k}") for j in (1, 2, 3) for k in range(3)]
    pars += [Parameter("v11", "~~", "v21"), Parameter("f1", "~1")]
    pars += [Parameter(f"v{j}0", "~1", fixed=0.0) for j in (1, 2, 3)]
    model = _build(pars)
    rng = np.random.default_rng(1)
    x = rng.uniform(0.3, 0.9, size=model.n_free)
    # a small residual covariance keeps Θ, and so Σ, positive definite
    x[[k for e, k in zip(model.entries, model.slots) if e.mat == "T" and e.row != e.col]] = 0.1
    _numeric_check(pars, x)


# --------------------------------------------------------------------------- bad input


def test_bad_panel_input_names_the_cause() -> None:
    data = _toy_panel(waves=3)
    x, y = ["x1", "x2", "x3"], ["y1", "y2", "y3"]
    with pytest.raises(SEMError, match=r"not in the data: x9"):
        riclpm(data, ["x1", "x2", "x9"], y)
    with pytest.raises(SEMError, match=r"x has 3 wave column\(s\) but y has 2"):
        riclpm(data, x, ["y1", "y2"])
    with pytest.raises(SEMError, match=r"at least 3 waves.*got 2"):
        riclpm(data, ["x1", "x2"], ["y1", "y2"])
    with pytest.raises(SEMError, match=r"constant column\(s\).*y2"):
        riclpm(data.assign(y2=4.0), x, y)
    with pytest.raises(SEMError, match=r"more than once: x1"):
        riclpm(data, x, ["x1", "y2", "y3"])
    with pytest.raises(SEMError, match=r"3 distinct labels"):
        riclpm(data, x, y, waves=[1, 2])
    with pytest.raises(SEMError, match=r"must be numeric"):
        riclpm(data.assign(x2="a"), x, y)
    # one except clause catches them all: SEMError is the CFA engine's error
    assert issubclass(SEMError, CFAError)


def test_bad_models_name_the_cause() -> None:
    data = _toy_panel(waves=3)
    with pytest.raises(SEMError, match=r"unknown operator"):
        sem(data, [Parameter("x1", "<-", "x2")])
    with pytest.raises(SEMError, match=r"x1 ~ x2: not supported"):
        sem(data, [Parameter("x1", "~", "x2")])
    with pytest.raises(SEMError, match=r"listed twice: x1 ~~ x1"):
        sem(data, [Parameter("x1", "~~", "x1"), Parameter("x1", "~~", "x1")])
    # 3 observed: 9 moments, 3 + 3 + 6 = 12 free parameters
    too_many = [Parameter("f", "=~", v) for v in ("x1", "x2", "x3")]
    too_many += [Parameter(v, "~~", v) for v in ("x1", "x2", "x3", "f")]
    too_many += [Parameter("x1", "~~", "x2"), Parameter("x1", "~~", "x3")]
    with pytest.raises(SEMError, match=r"not identified: 12 free parameters but only 9"):
        sem(data, too_many)
    # enough moments but a loading and the factor variance trade off: singular information
    # (4 observed: 14 moments, 4 + 5 + 4 = 13 free parameters)
    loose = [Parameter("f", "=~", v) for v in ("x1", "x2", "x3", "y1")]
    loose += [Parameter(v, "~~", v) for v in ("x1", "x2", "x3", "y1", "f")]
    with pytest.raises(SEMError, match=r"information matrix is singular"):
        sem(data, loose)


def test_listwise_deletion_counts_the_dropped_rows() -> None:
    data = _toy_panel(waves=3)
    data.loc[[0, 5, 9], "y2"] = np.nan
    res = riclpm(data, ["x1", "x2", "x3"], ["y1", "y2", "y3"])
    assert res.n == 297 and res.n_dropped == 3 and res.converged
