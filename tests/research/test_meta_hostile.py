"""Iterative estimators on hostile inputs: k = 2, tau^2 at 0, variance ratios up to 1e16.

Fixed cases are checked against metafor 3.8-1 (metafor_extra.json, generate_metafor_extra.R);
hypothesis-generated cases against the estimating equations themselves, evaluated here with
dense matrix algebra independent of the package's closed-form engine.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from metafor_refs import EXTRA

from alliance.research.meta import rma, rma_batch

# Extreme variance ratios are the point here; that they warn is tested in test_meta_unseen_data.
pytestmark = pytest.mark.filterwarnings("ignore::alliance.research.meta.MetaWarning")

RATIO_Y = [0.2, 0.5, -0.1, 0.9, 0.4, 0.3]
RATIO_V = [1e-6, 1e2, 1e-4, 10, 1e-2, 1]  # largest / smallest = 1e8


def test_k2_matches_metafor() -> None:
    # Expected: metafor 3.8-1 rma(c(0, 1), c(0.1, 0.2)) (z and knha), metafor_extra.json "k2_REML*"
    res = rma([0, 1], [0.1, 0.2])
    e = EXTRA["k2_REML"]
    np.testing.assert_allclose(
        [res.estimate, res.se[0], res.tau2], [e["estimate"], e["se"], e["tau2"]], rtol=1e-9
    )
    res = rma([0, 1], [0.1, 0.2], test="knha")
    e = EXTRA["k2_REML_knha"]
    np.testing.assert_allclose(
        [res.estimate, res.se[0], res.ci_lower[0], res.ci_upper[0], res.tau2],
        [e["estimate"], e["se"], e["ci_lb"], e["ci_ub"], e["tau2"]],
        rtol=1e-9,
    )
    assert res.converged


def test_boundary_tau2_zero_matches_metafor() -> None:
    # Expected: metafor 3.8-1 rma() on homogeneous data: tau2 = 0, CI [0, 0], metafor_extra.json
    e = EXTRA["boundary_REML"]
    res = rma([0.10, 0.12, 0.11, 0.09], [0.05, 0.04, 0.06, 0.05])
    assert res.converged and res.tau2 == e["tau2"] == 0
    assert res.tau2_ci == tuple(e["tau2_ci"])
    np.testing.assert_allclose([res.estimate, res.se[0]], [e["estimate"], e["se"]], rtol=1e-12)


@pytest.mark.parametrize("method", ["REML", "ML", "PM", "DL"])
def test_variance_ratio_1e8_matches_metafor(method: str) -> None:
    # Expected: metafor 3.8-1 rma(method=..., threshold 1e-12) with vi spanning 1e-6..1e2,
    # metafor_extra.json "ratio1e8_*" (metafor warns; its PM root-finder stops at ~1e-4 relative)
    e = EXTRA[f"ratio1e8_{method}"]
    res = rma(RATIO_Y, RATIO_V, method=method)
    assert res.converged
    rtol = 1e-3 if method == "PM" else 1e-7
    np.testing.assert_allclose(
        [res.estimate, res.se[0], res.tau2], [e["estimate"], e["se"], e["tau2"]], rtol=rtol
    )


# ------------------------------------------------------------------ independent checks
# The estimating equations are evaluated in exact rational arithmetic (fractions), so the
# check does not share the package's floating-point shortcuts or its cancellation risks.


def _exact(y: np.ndarray, v: np.ndarray, tau2: float) -> tuple[Fraction, ...]:
    w = [1 / (Fraction(float(vi)) + Fraction(float(tau2))) for vi in v]
    yy = [Fraction(float(yi)) for yi in y]
    sw = sum(w)
    mu = sum(wi * yi for wi, yi in zip(w, yy)) / sw
    e = [yi - mu for yi in yy]
    q = sum(wi * ei * ei for wi, ei in zip(w, e))  # y'Py
    yppy = sum((wi * ei) ** 2 for wi, ei in zip(w, e))
    sw2 = sum(wi * wi for wi in w)
    sw3 = sum(wi**3 for wi in w)
    tr_p = sw - sw2 / sw
    tr_pp = sw2 - 2 * sw3 / sw + (sw2 / sw) ** 2
    return q, yppy, tr_p, tr_pp, sw, sw2


def _score_and_info(y: np.ndarray, v: np.ndarray, tau2: float, method: str) -> tuple[float, float]:
    """Twice the score and expected information of the (RE)ML likelihood in tau^2."""
    _, yppy, tr_p, tr_pp, sw, sw2 = _exact(y, v, tau2)
    if method == "REML":
        return float(yppy - tr_p), float(tr_pp)
    return float(yppy - sw), float(sw2)


studies = st.integers(min_value=2, max_value=25).flatmap(
    lambda k: st.tuples(
        st.lists(st.floats(-3, 3, allow_nan=False), min_size=k, max_size=k),
        st.lists(st.floats(-8, 8, allow_nan=False), min_size=k, max_size=k),
    )
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=studies, method=st.sampled_from(["REML", "ML"]))
def test_ml_reml_solve_their_score_equation(
    data: tuple[list[float], list[float]], method: str
) -> None:
    y = np.array(data[0])
    v = 10.0 ** np.array(data[1])  # variance ratios up to 1e16
    res = rma(y, v, method=method)
    assert res.converged, "converged flag must be honest"
    assert res.tau2 >= 0 and np.isfinite([res.estimate, res.se[0], res.tau2]).all()
    score, info = _score_and_info(y, v, res.tau2, method)
    scale = res.tau2 + v.min()  # tau2 below 1e-6 * min(v) changes no weight noticeably
    if res.tau2 == 0:
        assert score / info <= 1e-6 * scale  # boundary: the likelihood falls into tau2 > 0
    else:
        assert abs(score / info) <= 1e-6 * scale  # interior: the score is zero


@settings(max_examples=100, deadline=None)
@given(data=studies)
def test_paule_mandel_solves_generalised_q(data: tuple[list[float], list[float]]) -> None:
    y = np.array(data[0])
    v = 10.0 ** np.array(data[1])
    res = rma(y, v, method="PM")
    k = len(y)
    assert res.converged and res.tau2 >= 0
    q = float(_exact(y, v, res.tau2)[0])
    if res.tau2 == 0:
        assert q <= (k - 1) * (1 + 1e-9)
    else:
        assert q == pytest.approx(k - 1, rel=1e-6)


@settings(max_examples=40, deadline=None)
@given(data=studies, method=st.sampled_from(["REML", "ML", "DL", "PM"]))
def test_batch_equals_single_fits(data: tuple[list[float], list[float]], method: str) -> None:
    y = np.array(data[0])
    v = 10.0 ** (np.array(data[1]) / 2)
    rows = np.vstack([y, y[::-1], y * 2])
    vs = np.vstack([v, v[::-1], v])
    out = rma_batch(rows, vs, method=method, test="knha")
    for i in range(3):
        one = rma(rows[i], vs[i], method=method, test="knha")
        assert out.tau2[i] == pytest.approx(one.tau2, rel=1e-9, abs=1e-12 * v.mean())
        # the estimate inherits tau2's solver tolerance: compare on the scale of its SE
        tol = 1e-9 * float(np.sqrt(v.mean()))
        assert out.estimate[i] == pytest.approx(one.estimate, rel=1e-9, abs=tol)
        assert out.se[i] == pytest.approx(float(one.se[0]), rel=1e-7)


def _exact_reml_mods(
    y: np.ndarray, v: np.ndarray, x: np.ndarray, tau2: float
) -> tuple[float, float]:
    """REML score and information of y ~ 1 + x in exact arithmetic (2 x 2 algebra by hand)."""
    w = [1 / (Fraction(float(vi)) + Fraction(float(tau2))) for vi in v]
    X = [(Fraction(1), Fraction(float(xi))) for xi in x]
    yy = [Fraction(float(yi)) for yi in y]

    def xtdx(d: list[Fraction]) -> list[list[Fraction]]:
        return [[sum(di * r[i] * r[j] for di, r in zip(d, X)) for j in range(2)] for i in range(2)]

    a = xtdx(w)
    det = a[0][0] * a[1][1] - a[0][1] * a[1][0]
    ainv = [[a[1][1] / det, -a[0][1] / det], [-a[1][0] / det, a[0][0] / det]]
    rhs = [sum(wi * r[i] * yi for wi, r, yi in zip(w, X, yy)) for i in range(2)]
    beta = [ainv[i][0] * rhs[0] + ainv[i][1] * rhs[1] for i in range(2)]
    e = [yi - r[0] * beta[0] - r[1] * beta[1] for yi, r in zip(yy, X)]

    def mat(m1: list[list[Fraction]], m2: list[list[Fraction]]) -> list[list[Fraction]]:
        return [[sum(m1[i][t] * m2[t][j] for t in range(2)) for j in range(2)] for i in range(2)]

    c2 = mat(ainv, xtdx([wi * wi for wi in w]))
    c3 = mat(ainv, xtdx([wi**3 for wi in w]))
    tr_p = sum(w) - (c2[0][0] + c2[1][1])
    c22 = mat(c2, c2)
    tr_pp = sum(wi * wi for wi in w) - 2 * (c3[0][0] + c3[1][1]) + c22[0][0] + c22[1][1]
    yppy = sum((wi * ei) ** 2 for wi, ei in zip(w, e))
    return float(yppy - tr_p), float(tr_pp)


mods_cases = st.integers(min_value=4, max_value=15).flatmap(
    lambda k: st.tuples(
        st.lists(st.floats(-3, 3, allow_nan=False), min_size=k, max_size=k),
        st.lists(st.floats(-4, 4, allow_nan=False), min_size=k, max_size=k),
        # distinct moderator values on a 0.01 grid: a non-degenerate design (values such as
        # 0, 1e-50, 1e-147 are numerically collinear and rightly refused as such)
        st.lists(st.integers(-200, 200), min_size=k, max_size=k, unique=True).map(
            lambda xs: [x / 100 for x in xs]
        ),
    )
)


@settings(max_examples=60, deadline=None)
@given(data=mods_cases)
def test_meta_regression_reml_is_honest(data: tuple[list[float], ...]) -> None:
    y, v, x = np.array(data[0]), 10.0 ** np.array(data[1]), np.array(data[2])
    res = rma(y, v, mods=x[:, None])
    assert res.tau2 >= 0 and np.isfinite(res.beta).all() and np.isfinite(res.se).all()
    if res.converged:  # the flag promises a solution of the REML estimating equation
        score, info = _exact_reml_mods(y, v, x, res.tau2)
        scale = res.tau2 + v.min()
        if res.tau2 == 0:
            assert score / info <= 1e-6 * scale
        else:
            assert abs(score / info) <= 1e-6 * scale
