"""The discrete-time dropout model (issue 11): its logistic fit against statsmodels' GLM,
its AUC against a pairwise count, and recovery of a known hazard with calibrated
out-of-fold risks."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

from alliance.research.multilevel import FormulaError
from alliance.research.multilevel.dropout import auc, dropout_model, logistic, person_period

TRUE = {"(Intercept)": -1.0, "alliance": -0.8, "change": -1.0, "log_session": 0.0}


def _study(seed: int, patients: int = 600, sessions: int = 12) -> pd.DataFrame:
    """Alliance per session (patient level + noise); each session the patient leaves with
    the logistic hazard of TRUE, or completes after ``sessions``."""
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(patients):
        level, previous = rng.normal(0, 1), None
        for s in range(1, sessions + 1):
            a = level + rng.normal(0, 0.7)
            change = 0.0 if previous is None else a - previous
            logit = TRUE["(Intercept)"] + TRUE["alliance"] * a + TRUE["change"] * change
            leaves = rng.random() < 1 / (1 + np.exp(-logit))
            rows.append((f"p{p}", s, a, leaves))
            previous = a
            if leaves:
                break
    t = pd.DataFrame(rows, columns=["patient", "session", "wai", "left"])
    t["dropped"] = t.groupby("patient")["left"].transform("any")
    return t.drop(columns="left")


@pytest.fixture(scope="module")
def study() -> pd.DataFrame:
    return _study(2007)


def test_logistic_matches_statsmodels_glm(study: pd.DataFrame) -> None:
    periods = person_period(study, patient="patient", session="session", alliance="wai",
                            dropped="dropped")  # fmt: skip
    x = sm.add_constant(periods[["alliance", "change", "log_session"]].to_numpy())
    y = periods["event"].to_numpy(float)
    ref = sm.GLM(y, x, family=sm.families.Binomial()).fit(tol=1e-12)
    beta, cov = logistic(x, y)
    np.testing.assert_allclose(beta, ref.params, rtol=1e-8)
    np.testing.assert_allclose(np.sqrt(np.diag(cov)), ref.bse, rtol=1e-6)


def test_auc_is_the_share_of_event_pairs_ranked_right() -> None:
    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, 60)
    score = np.round(rng.random(60), 1)  # with ties
    pairs = [(i, j) for i, j in itertools.product(range(60), repeat=2) if y[i] == 1 > y[j]]
    count = sum(1.0 if score[i] > score[j] else 0.5 if score[i] == score[j] else 0.0
                for i, j in pairs)  # fmt: skip
    assert auc(y, score) == pytest.approx(count / len(pairs), rel=1e-12)


def test_a_known_hazard_is_recovered_with_calibrated_risks(study: pd.DataFrame) -> None:
    r = dropout_model(study, patient="patient", session="session", alliance="wai",
                      dropped="dropped")  # fmt: skip
    for name, truth in TRUE.items():
        est, se = r.coefficients.loc[name, ["estimate", "se"]]
        assert abs(est - truth) <= 3 * se, name
    assert r.auc > 0.7
    assert 0.85 <= r.calibration_slope <= 1.15 and abs(r.calibration_intercept) < 0.25
    assert (r.calibration["observed"] - r.calibration["predicted"]).abs().max() < 0.06
    assert "odds of not coming back" in r.reading


def test_the_event_is_the_last_session_of_a_patient_who_dropped_out() -> None:
    t = pd.DataFrame({"p": ["a"] * 3 + ["b"] * 2, "s": [1, 2, 3, 1, 2],
                      "wai": [4.0, 3.5, 3.0, 4.0, 4.5], "d": [True] * 3 + [False] * 2})  # fmt: skip
    periods = person_period(t, patient="p", session="s", alliance="wai", dropped="d")
    assert periods["event"].tolist() == [0, 0, 1, 0, 0]
    assert periods["change"].tolist() == [0.0, -0.5, -0.5, 0.0, 0.5]


def test_bad_dropout_input_names_the_rule(study: pd.DataFrame) -> None:
    mixed = study.copy()
    mixed.loc[mixed.index[0], "dropped"] = not mixed.loc[mixed.index[0], "dropped"]
    with pytest.raises(FormulaError, match="same on all of a patient's rows"):
        dropout_model(mixed, patient="patient", session="session", alliance="wai",
                      dropped="dropped")  # fmt: skip
    none = study.assign(dropped=False)
    with pytest.raises(FormulaError, match="both patients who dropped out and others"):
        dropout_model(none, patient="patient", session="session", alliance="wai",
                      dropped="dropped")  # fmt: skip
