"""Power by simulation (issue 11): the test holds its level under the null, and the
simulated power of the between-patient effect agrees with the closed form of a two-level
design (design effect) within simulation error; the intervals cover the true effect."""

from __future__ import annotations

import importlib
import math

import numpy as np
import pytest

from alliance.research.multilevel.power import (
    Design,
    design_effect_power,
    power,
    power_curve,
    simulate_design,
)


@pytest.mark.slow
def test_type_one_error_is_nominal_over_1000_null_replications() -> None:
    null = Design(therapists=8, patients=5, sessions=4, therapist_icc=0.1, patient_icc=0.3)
    r = power(null, "between", replications=1000, seed=2007)
    assert r.failed == 0
    assert 0.035 <= r.power <= 0.065  # the 0.05 +- 0.015


@pytest.mark.slow
def test_simulated_power_agrees_with_the_design_effect_closed_form() -> None:
    design = Design(therapists=None, patients=40, sessions=5, therapist_icc=0.0, between=0.25)
    expected = design_effect_power(design)
    assert 0.6 < expected < 0.8  # a design where power is informative
    r = power(design, "between", replications=400, seed=11)
    assert abs(r.power - expected) <= 3 * math.sqrt(expected * (1 - expected) / 400)
    assert r.coverage >= 0.92  # the true effect inside the 95% interval (recovery)


def test_within_and_between_are_tested_separately() -> None:
    """A within effect only: the within test rejects nearly always, the between one at
    about its level."""
    design = Design(therapists=None, patients=30, sessions=6, within=0.5)
    within = power(design, "within", replications=40, seed=3)
    between = power(design, "between", replications=40, seed=3)
    assert within.power >= 0.95
    assert between.power <= 0.2


def test_simulated_design_has_the_asked_shape_and_dropout() -> None:
    rng = np.random.default_rng(1)
    full = simulate_design(Design(therapists=3, patients=4, sessions=6), rng)
    assert len(full) == 3 * 4 * 6 and full.groupby("therapist")["patient"].nunique().eq(4).all()
    left = simulate_design(Design(therapists=3, patients=40, sessions=6, dropout=0.3), rng)
    per_patient = left.groupby("patient").size()
    assert per_patient.min() >= 1 and per_patient.mean() < 6


def test_power_curve_grows_with_patients() -> None:
    design = Design(therapists=None, patients=10, sessions=4, between=0.6)
    curve = power_curve(design, "patients", [10, 60], "between", replications=30, seed=4)
    assert list(curve["patients"]) == [10, 60]
    assert curve["power"].iloc[1] > curve["power"].iloc[0]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"therapists": 1}, "therapists"), ({"patient_icc": 0.99}, "patient_icc"),
     ({"dropout": 1.0}, "dropout")],
)  # fmt: skip
def test_impossible_designs_name_the_field(kwargs: dict[str, float], field: str) -> None:
    with pytest.raises(ValueError, match=f"^{field}: out of range"):
        Design(**kwargs)  # type: ignore[arg-type]


def test_a_failed_fit_is_counted_and_still_moves_the_progress_bar(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    module = importlib.import_module("alliance.research.multilevel.power")
    real, calls = module.within_between, {"n": 0}

    def every_other_fails(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] % 2:
            raise ValueError("cannot fit")
        return real(*args, **kwargs)

    monkeypatch.setattr(module, "within_between", every_other_fails)
    seen: list[int] = []
    r = power(Design(therapists=None, patients=10, sessions=3), replications=4, seed=1,
              progress=seen.append)  # fmt: skip
    assert r.failed == 2 and seen == [1, 2, 3, 4]
