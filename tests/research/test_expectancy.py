"""The CEQ (issue 11): credibility scored by the scorer, both factors from standardised
items (hand-computed), and intake expectancy as a patient-level covariate of the models."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from alliance.instruments import get_instrument
from alliance.research.expectancy import ceq_scores
from alliance.research.multilevel.analyses import within_between
from alliance.scoring import score

ANSWERS = pd.DataFrame(
    {"ceq_1": [7, 5, 9], "ceq_2": [6, 5, 8], "ceq_3": [7, 4, 9],
     "ceq_4": [60, 30, 90], "ceq_5": [7, 4, 8], "ceq_6": [50, 30, 80]}
)  # fmt: skip


def test_ceq_file_keys_and_flags() -> None:
    ceq = get_instrument("ceq")
    assert ceq.role == "expectancy" and ceq.key_status == "partly verified"
    assert ceq.score_items("credibility") == (1, 2, 3)
    assert ceq.score_items("expectancy") == ()  # mixed formats: not summed raw
    assert (ceq.item_scale(4).min, ceq.item_scale(4).max, ceq.item_scale(4).step) == (0, 100, 10)
    assert all(s.key_status == "likely" for s in ceq.scores)


def test_scorer_sums_credibility_and_refuses_off_scale_percentages() -> None:
    out = score(ANSWERS, "ceq")
    assert out["ceq_credibility"].tolist() == [20.0, 14.0, 26.0]  # 7+6+7, 5+5+4, 9+8+9
    assert "ceq_expectancy" not in out.columns
    bad = ANSWERS.assign(ceq_4=[65, 30, 90])  # not on the 10% grid
    assert score(bad, "ceq", errors="flag")["ceq_status"].iloc[0] != "ok"


def test_factor_scores_are_sums_of_z_scores() -> None:
    z = (ANSWERS - ANSWERS.mean()) / ANSWERS.std(ddof=1)  # by hand, column by column
    got = ceq_scores(ANSWERS)
    np.testing.assert_allclose(got["ceq_credibility"], z[["ceq_1", "ceq_2", "ceq_3"]].sum(axis=1))
    np.testing.assert_allclose(got["ceq_expectancy"], z[["ceq_4", "ceq_5", "ceq_6"]].sum(axis=1))
    # by a reference norm the score of a patient does not depend on the others in the table
    norm = {c: (5.0, 2.0) if c != "ceq_4" and c != "ceq_6" else (50.0, 20.0) for c in ANSWERS}
    alone = ceq_scores(ANSWERS.iloc[[0]], reference=norm)
    together = ceq_scores(ANSWERS, reference=norm)
    assert alone.iloc[0].tolist() == together.iloc[0].tolist()
    assert alone["ceq_credibility"].iloc[0] == pytest.approx((2 + 1 + 2) / 2.0)


def test_ceq_scores_name_bad_columns() -> None:
    with pytest.raises(ValueError, match="ceq_6: column is missing"):
        ceq_scores(ANSWERS.drop(columns="ceq_6"))
    with pytest.raises(ValueError, match=r"ceq_4: answers must lie in 0\.\.100"):
        ceq_scores(ANSWERS.assign(ceq_4=[60, 130, 90]))


def test_intake_expectancy_enters_the_model_as_a_patient_covariate() -> None:
    """Sessions whose alliance depends on the patient's intake expectancy (+0.5 per SD):
    the covariate's effect is recovered beside the within/between split."""
    rng = np.random.default_rng(2000)
    patients = 80
    expectancy = rng.normal(0, 1, patients)
    level = rng.normal(0, 0.5, patients)
    rows = []
    for p in range(patients):
        for s in range(1, 9):
            a = rng.normal(0, 1)
            y = 10 + 0.5 * expectancy[p] - 0.4 * a + level[p] + rng.normal(0, 0.5)
            rows.append((f"p{p}", s, a, y, expectancy[p]))
    t = pd.DataFrame(rows, columns=["patient", "session", "wai", "phq", "ceq_expectancy"])
    r = within_between(t, "phq", "wai", patient="patient", time="session",
                       covariates=["ceq_expectancy"])  # fmt: skip
    fixed = r.fit.fixed.loc["ceq_expectancy"]
    assert fixed["lower"] <= 0.5 <= fixed["upper"]
    assert r.table.loc["within", "lower"] <= -0.4 <= r.table.loc["within", "upper"]
    with pytest.raises(Exception, match=r"covariates\[0\]: column 'nope'"):
        within_between(t, "phq", "wai", patient="patient", covariates=["nope"])
