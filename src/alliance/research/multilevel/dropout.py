"""Dropout and the alliance: a discrete-time hazard model, one row per patient and session.

Each session a patient attends is a period at risk; the event is that the patient does not
come back (their last session, when they ended before the planned or agreed end). The
hazard is logistic in the session's alliance, its change since the previous session and the
log of the session number (Singer & Willett 2003, Applied Longitudinal Data Analysis, ch.
10-11: the person-period data set and the discrete-time hazard model). Its discrimination
(AUC) and calibration are those of predictions for patients the model was not fitted on
(k-fold by patient), so they say how it would do on the next patients.

The logistic regression is fitted by iteratively reweighted least squares (a few lines with
numpy; tested against statsmodels' GLM) so that the core needs no statsmodels.

>>> import pandas as pd
>>> rows = [(f"p{i}", s, 4.0 + ((7 * i + 3 * s) % 5) * 0.2)
...         for i in range(30) for s in range(1, 7 if i % 3 else 4 + i % 2)]
>>> t = pd.DataFrame(rows, columns=["patient", "session", "wai"])
>>> t["dropped"] = t["patient"].map(lambda p: int(p[1:]) % 3 == 0)
>>> r = dropout_model(t, patient="patient", session="session", alliance="wai",
...                   dropped="dropped", folds=3, seed=1)
>>> list(r.coefficients.index)
['(Intercept)', 'alliance', 'change', 'log_session']
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import stats

from alliance.research.multilevel.formula import FormulaError

FloatArray = npt.NDArray[np.float64]
PREDICTORS = ["alliance", "change", "log_session"]


def person_period(
    table: pd.DataFrame, *, patient: str, session: str, alliance: str, dropped: str
) -> pd.DataFrame:
    """One row per attended session with a score: the predictors and ``event`` (1 at the
    last session of a patient marked in ``dropped``)."""
    missing = [c for c in (patient, session, alliance, dropped) if c not in table.columns]
    if missing:
        raise FormulaError(f"column(s) {missing} are not in the table")
    rows = table[[patient, session, alliance, dropped]].dropna(subset=[alliance])
    rows = rows.sort_values([patient, session]).reset_index(drop=True)
    flags = rows.groupby(patient)[dropped].agg(["min", "max"])
    if (flags["min"] != flags["max"]).any():
        raise FormulaError(
            f"dropped: column {dropped!r} must be the same on all of a patient's rows"
        )
    last = rows.groupby(patient)[session].transform("max") == rows[session]
    return pd.DataFrame(
        {
            "patient": rows[patient],
            "session": rows[session],
            "alliance": rows[alliance].astype(float),
            "change": rows.groupby(patient)[alliance].diff().fillna(0.0).astype(float),
            "log_session": np.log(rows[session].astype(float)),
            "event": (last & rows[dropped].astype(bool)).astype(int),
        }
    )


def logistic(x: FloatArray, y: FloatArray, max_iter: int = 50) -> tuple[FloatArray, FloatArray]:
    """Maximum-likelihood logistic regression by IRLS: coefficients and their covariance.

    >>> x = np.column_stack([np.ones(6), [0.0, 1, 2, 3, 4, 5]])
    >>> beta, _ = logistic(x, np.array([0.0, 0, 1, 0, 1, 1]))
    >>> bool(beta[1] > 0)
    True
    """
    beta = np.zeros(x.shape[1])
    for _ in range(max_iter):
        p = 1.0 / (1.0 + np.exp(-(x @ beta)))
        w = np.clip(p * (1 - p), 1e-12, None)
        step = np.linalg.solve(x.T @ (w[:, None] * x), x.T @ (y - p))
        beta = beta + step
        if np.max(np.abs(step)) < 1e-10:
            break
    p = 1.0 / (1.0 + np.exp(-(x @ beta)))
    cov = np.asarray(np.linalg.inv(x.T @ ((p * (1 - p))[:, None] * x)), dtype=np.float64)
    return beta, cov


def auc(y: FloatArray, score: FloatArray) -> float:
    """The area under the ROC curve: the chance that an event scores above a non-event
    (ties count half), from the Mann-Whitney rank sum.

    >>> auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8]))
    0.75
    """
    positives = y == 1
    n1, n0 = int(positives.sum()), int((~positives).sum())
    if n1 == 0 or n0 == 0:
        return float("nan")
    ranks = stats.rankdata(score)
    return float((ranks[positives].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


@dataclass(frozen=True)
class DropoutResult:
    """``coefficients`` (log-odds per unit, SE, z, p, odds ratio with its 95% interval),
    the cross-validated ``auc``, ``calibration`` (by tenths of predicted risk: mean
    predicted, observed rate, periods), its ``calibration_slope`` and ``_intercept`` (1 and
    0 when calibrated), the ``periods`` table with the out-of-fold ``risk``, and a reading."""

    coefficients: pd.DataFrame
    auc: float
    calibration: pd.DataFrame
    calibration_slope: float
    calibration_intercept: float
    periods: pd.DataFrame
    reading: str


def _design(periods: pd.DataFrame) -> FloatArray:
    return np.column_stack([np.ones(len(periods)), periods[PREDICTORS].to_numpy(np.float64)])


def dropout_model(
    table: pd.DataFrame,
    *,
    patient: str,
    session: str,
    alliance: str,
    dropped: str,
    folds: int = 5,
    seed: int | None = 0,
) -> DropoutResult:
    """Fit the discrete-time dropout model and judge it on patients left out of the fit."""
    periods = person_period(table, patient=patient, session=session, alliance=alliance,
                            dropped=dropped)  # fmt: skip
    y = periods["event"].to_numpy(np.float64)
    if not 0 < y.sum() < len(y):
        raise FormulaError(f"dropped: needs both patients who dropped out and others ({dropped!r})")
    x = _design(periods)
    beta, cov = logistic(x, y)
    se = np.sqrt(np.diag(cov))
    z = beta / se
    coefficients = pd.DataFrame(
        {
            "estimate": beta, "se": se, "z": z, "p": 2 * stats.norm.sf(np.abs(z)),
            "odds_ratio": np.exp(beta), "lower": np.exp(beta - 1.96 * se),
            "upper": np.exp(beta + 1.96 * se),
        },
        index=["(Intercept)", *PREDICTORS],
    )  # fmt: skip
    risk = _out_of_fold(periods, x, y, folds, seed)
    periods = periods.assign(risk=risk)
    slope_intercept, _ = logistic(np.column_stack([np.ones(len(y)), np.log(risk / (1 - risk))]), y)
    calibration = _calibration(y, risk)
    odds = coefficients.loc["alliance"]
    value = auc(y, risk)
    reading = (
        f"Each point higher alliance in a session multiplies the odds of not coming back by "
        f"{odds['odds_ratio']:.2f} (95% CI {odds['lower']:.2f} to {odds['upper']:.2f}). "
        f"On patients the model was not fitted on it ranks a session that ended treatment "
        f"above one that did not with probability {value:.2f} (AUC)."
    )
    return DropoutResult(coefficients, value, calibration, float(slope_intercept[1]),
                         float(slope_intercept[0]), periods, reading)  # fmt: skip


def _out_of_fold(
    periods: pd.DataFrame, x: FloatArray, y: FloatArray, folds: int, seed: int | None
) -> FloatArray:
    """Each period's risk from a model fitted without its patient's fold."""
    patients = periods["patient"].unique()
    if folds < 2 or folds > len(patients):
        raise FormulaError(f"folds: must be between 2 and the number of patients ({len(patients)})")
    rng = np.random.default_rng(seed)
    fold_of = dict(zip(rng.permutation(patients), np.arange(len(patients)) % folds, strict=True))
    fold = periods["patient"].map(fold_of).to_numpy()
    risk = np.empty(len(y))
    for k in range(folds):
        held = fold == k
        beta, _ = logistic(x[~held], y[~held])
        risk[held] = 1.0 / (1.0 + np.exp(-(x[held] @ beta)))
    return np.clip(risk, 1e-9, 1 - 1e-9)


def _calibration(y: FloatArray, risk: FloatArray, groups: int = 10) -> pd.DataFrame:
    tenth = pd.qcut(pd.Series(risk), groups, labels=False, duplicates="drop")
    frame = pd.DataFrame({"group": tenth.to_numpy() + 1, "predicted": risk, "observed": y})
    return frame.groupby("group").agg(
        predicted=("predicted", "mean"), observed=("observed", "mean"),
        periods=("observed", "size"),
    )  # fmt: skip
