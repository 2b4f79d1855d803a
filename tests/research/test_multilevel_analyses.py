"""Within/between effects, therapist effects and the Baldwin split (issue 11).

The point estimates are checked against lme4 (``../shared/oracles/synthetic_computed.json``,
copied into ``tests/data/multilevel/references.json`` by ``generate.R``); the intervals by
recovery: over simulated replications the true value falls inside them at close to the
nominal 95%.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from alliance.research.multilevel import FormulaError
from alliance.research.multilevel.analyses import (
    alliance_outcome_split,
    shrunken_rates,
    therapist_effects,
    within_between,
)

DATA = Path(__file__).parents[1] / "data" / "multilevel"
# lme4 1.1-31 on the synthetic sessions (../shared/oracles/synthetic_computed.json,
# "synthetic_sessions"): within/between REML fit and the null model's ICCs
ORACLE = {
    "within": (-1.094904462, 0.08128943675),
    "between": (-1.908465486, 0.1193710949),
    "icc_therapist": 0.02361921338,
    "icc_patient_incl_therapist": 0.2792675774,
}


@pytest.fixture(scope="module")
def sessions() -> pd.DataFrame:
    return pd.read_csv(
        DATA / "synthetic_alliance_sessions.csv", dtype={"therapist": str, "patient": str}
    )


def test_within_between_match_lme4(sessions: pd.DataFrame) -> None:
    r = within_between(
        sessions, "symptoms", "alliance", patient="patient", therapist="therapist", time="session"
    )
    for effect in ("within", "between"):
        est, se = ORACLE[effect]
        assert r.table.loc[effect, "estimate"] == pytest.approx(est, rel=1e-6)
        assert r.table.loc[effect, "se"] == pytest.approx(se, rel=1e-6)
    assert "interval excludes 0" in r.reading and "Within patients" in r.reading


def test_therapist_icc_matches_lme4(sessions: pd.DataFrame) -> None:
    r = therapist_effects(sessions, "symptoms", therapist="therapist", patient="patient")
    ours = r.icc.loc["therapist", "estimate"]
    both = r.icc.loc["patient (incl. therapist)", "estimate"]
    # the shared oracle is lme4 at its default tolerance (the therapist variance 1e-4 off)
    assert ours == pytest.approx(ORACLE["icc_therapist"], rel=2e-4)
    assert both == pytest.approx(ORACLE["icc_patient_incl_therapist"], rel=2e-4)
    # the tightly converged lme4 fit of the same model (references.json, generate.R)
    vc = json.loads((DATA / "references.json").read_text())["fits"]["sessions_null"]["varcorr"]
    patient_var, therapist_var, residual = vc["vcov"]
    total = patient_var + therapist_var + residual
    assert ours == pytest.approx(therapist_var / total, rel=1e-5)
    assert both == pytest.approx((patient_var + therapist_var) / total, rel=1e-6)
    for row, value in (("therapist", ours), ("patient (incl. therapist)", both)):
        low, high = r.icc.loc[row, ["lower", "upper"]]
        assert 0.0 <= low < value < high < 1.0


def _lagged_patients(rng: np.random.Generator, within: float) -> pd.DataFrame:
    """60 patients x 12 sessions: symptoms next session = own level + within x this
    session's alliance deviation + noise; patients' mean alliance unrelated to symptoms."""
    frames = []
    for p in range(60):
        level, mean_alliance = rng.normal(20, 3), rng.normal(4.5, 0.5)
        alliance = mean_alliance + rng.normal(0, 0.6, 12)
        symptoms = np.empty(12)
        symptoms[0] = level + rng.normal(0, 1)
        for s in range(1, 12):
            symptoms[s] = level + within * (alliance[s - 1] - mean_alliance) + rng.normal(0, 1)
        frames.append(
            pd.DataFrame(
                {
                    "patient": f"p{p}",
                    "session": np.arange(12),
                    "alliance": alliance,
                    "symptoms": symptoms,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


@pytest.mark.slow
def test_lagged_within_effect_is_recovered_at_the_nominal_rate() -> None:
    rng = np.random.default_rng(2013)
    covered = []
    for _ in range(40):
        r = within_between(
            _lagged_patients(rng, -0.5), "symptoms", "alliance", patient="patient",
            time="session", lagged=True,
        )  # fmt: skip
        low, high = r.table.loc["within", ["lower", "upper"]]
        covered.append(low <= -0.5 <= high)
    # 40 replications: a 95% interval covers 34 or more with probability ~.97; a biased
    # estimator (no lag, or no person-mean centring) covers far fewer
    assert sum(covered) >= 34


def test_icc_interval_covers_the_true_share_at_close_to_95_percent() -> None:
    rng = np.random.default_rng(2007)
    true_icc, covered = 0.1, 0
    reps = 100
    for _ in range(reps):
        therapist = np.repeat(np.arange(30), 10)
        y = rng.normal(0, np.sqrt(true_icc), 30)[therapist] + rng.normal(0, np.sqrt(0.9), 300)
        t = pd.DataFrame({"therapist": therapist.astype(str), "outcome": y})
        low, high = therapist_effects(t, "outcome", therapist="therapist").icc.loc[
            "therapist", ["lower", "upper"]
        ]
        covered += low <= true_icc <= high
    # binomial(100, .95): 89 or more with probability > .99
    assert 89 <= covered <= 100


@pytest.mark.slow
def test_patient_and_therapist_share_interval_covers_the_truth() -> None:
    """Sessions in patients in therapists: the share of patient and therapist together
    (ICCs .05 + .30) is inside its profile interval at close to 95%."""
    rng = np.random.default_rng(1979)
    covered, reps = 0, 60
    for _ in range(reps):
        patient = np.repeat(np.arange(90), 4)
        therapist = patient // 6
        y = rng.normal(0, np.sqrt(0.05), 15)[therapist] + rng.normal(0, np.sqrt(0.30), 90)[patient]
        y += rng.normal(0, np.sqrt(0.65), 360)
        t = pd.DataFrame({"therapist": therapist.astype(str), "patient": patient.astype(str),
                          "y": y})  # fmt: skip
        icc = therapist_effects(t, "y", therapist="therapist", patient="patient").icc
        low, high = icc.loc["patient (incl. therapist)", ["lower", "upper"]]
        covered += low <= 0.35 <= high
    # binomial(60, .95): 52 or more with probability ~.98
    assert covered >= 52


def test_therapist_effects_are_shrunken_raw_means(sessions: pd.DataFrame) -> None:
    r = therapist_effects(sessions, "symptoms", therapist="therapist", patient="patient")
    t = r.table
    assert len(t) == sessions["therapist"].nunique() and (t["patients"] == 8).all()
    # balanced design: every conditional mode is its raw deviation pulled toward 0
    assert (np.abs(t["effect"]) < np.abs(t["raw"])).all()
    assert (np.sign(t["effect"]) == np.sign(t["raw"])).all()
    assert list(t["effect"]) == sorted(t["effect"])  # caterpillar order
    assert (t["distinct"] == ((t["lower"] > 0) | (t["upper"] < 0))).all()


def test_no_separable_therapists_is_said_plainly() -> None:
    rng = np.random.default_rng(1)
    t = pd.DataFrame({"therapist": np.repeat(list("abcdef"), 5), "y": rng.normal(0, 1, 30)})
    r = therapist_effects(t, "y", therapist="therapist")
    assert not r.table["distinct"].any()
    assert "cannot separate these therapists" in r.reading


def test_baldwin_split_recovers_a_therapist_only_association() -> None:
    """Outcome depends on the therapist's mean alliance (-2 per point), not on a patient's
    deviation from it: the split finds the first and an interval around 0 for the second."""
    rng = np.random.default_rng(2007)
    therapist = np.repeat(np.arange(80), 12)
    ability = rng.normal(0, 0.5, 80)
    alliance = 5 + ability[therapist] + rng.normal(0, 0.7, therapist.size)
    outcome = 20 - 2 * ability[therapist] + rng.normal(0, 2, therapist.size)
    t = pd.DataFrame({"therapist": therapist.astype(str), "wai": alliance, "out": outcome})
    r = alliance_outcome_split(t, "wai", "out", therapist="therapist")
    th, pa = r.table.loc["therapist"], r.table.loc["patient"]
    assert th["lower"] <= -2 <= th["upper"] and th["upper"] < 0
    assert pa["lower"] <= 0 <= pa["upper"]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda s: within_between(s, "nope", "alliance", patient="patient"), "outcome: column"),
        (lambda s: within_between(s, "symptoms", "alliance", patient="patient", lagged=True),
         "lagged: needs time"),
        (lambda s: therapist_effects(s, "alliance", therapist="who"), "therapist: column"),
    ],
)  # fmt: skip
def test_bad_columns_name_the_argument(sessions: pd.DataFrame, call, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(FormulaError, match=message):
        call(sessions)


# A beta-binomial fitted in base R (4.2.2) by its own code: the log-likelihood written with
# lchoose/lbeta, maximised by optim(BFGS, reltol 1e-14) on log a, log b; posterior means
# (a + k) / (a + b + n) and qbeta(.025, a + k, b + n - k).
BB_K = [1, 6, 12, 1, 3, 0, 4, 9, 2, 5]
BB_N = [50, 44, 45, 28, 15, 10, 30, 40, 25, 33]
BB_R = {
    "rate": [0.05529228629, 0.1343088306, 0.2199688428, 0.07892311072, 0.1575686878,
             0.09148765506, 0.1320709029, 0.1900340148, 0.104435912, 0.142761865],
    "lower": [0.0156891015, 0.06448680449, 0.130832625, 0.02266454469, 0.06216932453,
              0.02033844769, 0.05614243413, 0.1041458601, 0.03586030988, 0.06514986476],
}  # fmt: skip


def test_shrunken_rates_match_a_beta_binomial_fitted_in_r() -> None:
    t = pd.DataFrame({"therapist": [f"t{i:02d}" for i in range(10)], "k": BB_K, "n": BB_N})
    r = shrunken_rates(t, "k", "n", group="therapist")
    np.testing.assert_allclose(r["rate"], BB_R["rate"], rtol=1e-5)
    np.testing.assert_allclose(r["lower"], BB_R["lower"], rtol=1e-5)


def test_shrunken_rate_intervals_cover_the_true_rates() -> None:
    rng = np.random.default_rng(75)
    inside = total = 0
    for _ in range(50):
        p = rng.beta(2, 18, 40)
        n = rng.integers(5, 80, 40)
        t = pd.DataFrame({"g": range(40), "k": rng.binomial(n, p), "n": n})
        r = shrunken_rates(t, "k", "n", group="g")
        inside += int(((r["lower"] <= p) & (p <= r["upper"])).sum())
        total += 40
    # empirical Bayes ignores the uncertainty in (a, b), so a little under 95% is expected
    assert 0.91 <= inside / total <= 0.98


def test_rates_that_do_not_differ_are_pooled_with_honest_intervals() -> None:
    rng = np.random.default_rng(3)
    n = np.full(12, 40)
    covered = 0
    for rep in range(100):
        t = pd.DataFrame({"g": range(12), "k": rng.binomial(n, 0.1), "n": n})
        r = shrunken_rates(t, "k", "n", group="g")
        covered += int(r["lower"].le(0.1).mul(r["upper"].ge(0.1)).sum())
        if rep == 0:
            assert np.ptp(r["rate"]) < 0.5 * np.ptp(r["raw"])
            assert not r["distinct"].any()
    # without a cap on a + b the intervals shrink to the pooled point and miss 0.1 often
    assert covered / 1200 >= 0.9


def test_no_events_at_all_gives_the_pooled_jeffreys_interval() -> None:
    t = pd.DataFrame({"g": ["a", "b", "c"], "k": [0, 0, 0], "n": [10, 30, 20]})
    r = shrunken_rates(t, "k", "n", group="g")
    # Jeffreys: Beta(0.5, 60.5); its 97.5% quantile by scipy.stats.beta
    assert list(r["rate"]) == pytest.approx([0.5 / 61] * 3)
    assert list(r["upper"]) == pytest.approx([float(stats.beta.ppf(0.975, 0.5, 60.5))] * 3)
    assert (r["lower"] < 1e-4).all()


def test_rates_need_two_groups_and_sane_counts() -> None:
    with pytest.raises(FormulaError, match="at least 2"):
        shrunken_rates(pd.DataFrame({"g": ["a"], "k": [1], "n": [5]}), "k", "n", group="g")
    bad = pd.DataFrame({"g": ["a", "b"], "k": [6, 1], "n": [5, 5]})
    with pytest.raises(FormulaError, match="events <= trials"):
        shrunken_rates(bad, "k", "n", group="g")
