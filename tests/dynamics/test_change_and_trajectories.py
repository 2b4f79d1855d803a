"""Reliable change and trajectory summaries against closed-form values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from alliance.dynamics import (
    DynamicsInputError,
    Norms,
    cronbach_alpha,
    estimate_norms,
    reliable_change,
    s_diff,
    summarize_trajectories,
)


def test_s_diff_matches_jacobson_truax_formula() -> None:
    # Jacobson & Truax (1991): S_diff = sqrt(2 * SE^2), SE = SD * sqrt(1 - r)
    sd, r = 7.5, 0.88
    se = sd * np.sqrt(1 - r)
    assert s_diff(sd, r) == pytest.approx(np.sqrt(2 * se**2))


def test_rci_previous_and_baseline() -> None:
    t = pd.DataFrame(
        {
            "patient_id": ["a"] * 4 + ["b"],
            "session": [1, 2, 4, 5, 1],
            "s": [4.0, 3.0, 4.5, 2.0, 3.0],
        }
    )
    out = reliable_change(t, "s", Norms(sd=0.5, reliability=0.5, source="x"))  # S_diff = 0.5
    a = out[out["patient_id"] == "a"]
    # changes from previous scored session: -1.0, +1.5, -2.5 -> RCI -2, 3, -5
    assert a["rci_prev"].tolist()[1:] == pytest.approx([-2.0, 3.0, -5.0])
    # changes from baseline 4.0: -1.0, +0.5, -2.0 -> RCI -2, 1, -4
    assert a["rci_baseline"].tolist()[1:] == pytest.approx([-2.0, 1.0, -4.0])
    assert a["reliable_baseline"].tolist() == [
        "",
        "deteriorated",
        "no reliable change",
        "deteriorated",
    ]
    assert out[out["patient_id"] == "b"]["reliable_prev"].tolist() == [""]


def test_norms_reject_impossible_values() -> None:
    with pytest.raises(DynamicsInputError):
        Norms(sd=0.0, reliability=0.8, source="x")
    with pytest.raises(DynamicsInputError):
        Norms(sd=1.0, reliability=1.0, source="x")


def test_cronbach_alpha_closed_form() -> None:
    # two items x and x + e: var(x) = 1, var(x+e) = 1.25 (as built), cov = 1
    items = pd.DataFrame({"a": [1.0, 2.0, 3.0, 4.0], "b": [1.5, 1.5, 3.5, 3.5]})
    var_a, var_b = items.var(ddof=1)
    var_total = items.sum(axis=1).var(ddof=1)
    expected = 2 * (1 - (var_a + var_b) / var_total)
    assert cronbach_alpha(items) == pytest.approx(expected)


def test_estimate_norms_from_items_at_first_session() -> None:
    t = pd.DataFrame(
        {
            "patient_id": [1, 1, 2, 3, 4],
            "session": [1, 2, 1, 1, 1],
            "s": [2.0, 5.0, 3.0, 4.0, 5.0],
            "i1": [2.0, 5.0, 3.0, 4.0, 5.0],
            "i2": [2.0, 1.0, 3.0, 4.0, 5.0],
        }
    )
    norms = estimate_norms(t, "s", item_columns=["i1", "i2"])
    assert norms.sd == pytest.approx(np.std([2.0, 3.0, 4.0, 5.0], ddof=1))
    assert norms.reliability == pytest.approx(0.999)  # identical items -> alpha 1, capped
    with pytest.raises(DynamicsInputError, match="reliability"):
        estimate_norms(t, "s")


def test_trajectory_summary_closed_form() -> None:
    t = pd.DataFrame(
        {
            "patient_id": ["a"] * 5 + ["b"],
            "session": [1, 2, 3, 5, 6, 4],
            "s": [3.0, 4.0, np.nan, 5.0, 6.0, 2.0],
        }
    )
    out = summarize_trajectories(t, "s").set_index("patient_id")
    a = out.loc["a"]
    # scored sessions 1, 2, 5, 6 with scores 3, 4, 5, 6
    t_ = np.array([1, 2, 5, 6.0])
    x = np.array([3, 4, 5, 6.0])
    assert a["n_sessions"] == 4
    assert a["level"] == pytest.approx(4.5)
    assert a["slope"] == pytest.approx(np.polyfit(t_, x, 1)[0])
    assert a["early_alliance"] == pytest.approx(3.5)  # sessions 1 and 2 (3 missing)
    assert a["early_n"] == 2
    assert a["variability"] == pytest.approx(np.std(x, ddof=1))
    assert a["rmssd"] == pytest.approx(1.0)  # successive differences all 1
    b = out.loc["b"]
    assert np.isnan(b["slope"]) and np.isnan(b["variability"]) and np.isnan(b["early_alliance"])
    assert b["last_score"] == 2.0
