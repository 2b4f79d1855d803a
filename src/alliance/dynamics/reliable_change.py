"""Reliable change (Jacobson & Truax 1991) between sessions and against baseline.

The reliable change index divides an observed change by the standard error of a difference
between two scores, ``S_diff = SD * sqrt(2) * sqrt(1 - r)``, where ``SD`` is the spread of
the score in a reference sample and ``r`` its reliability. ``|RCI| >= 1.96`` is a change
larger than measurement error alone would produce 95 % of the time.

Source: Jacobson, N. S., & Truax, P. (1991). Clinical significance: A statistical approach
to defining meaningful change in psychotherapy research. *Journal of Consulting and
Clinical Psychology, 59*(1), 12–19. doi:10.1037/0022-006X.59.1.12

Norms (``SD`` and ``r``) come from the instrument file (its ``norms`` table) or, on request,
from the user's own data: the SD of each patient's first observed score and Cronbach's
alpha of the items at that first session.

Example
-------
>>> round(s_diff(sd=0.6, reliability=0.9), 4)  # 0.6 * sqrt(2) * sqrt(0.1)
0.2683
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from alliance.dynamics._series import DynamicsInputError, FloatArray, prepare_series
from alliance.instruments import Instrument

Z_95 = 1.959963984540054


@dataclass(frozen=True)
class Norms:
    """Reference SD and reliability of one score, and where they came from."""

    sd: float
    reliability: float
    source: str

    def __post_init__(self) -> None:
        if not (self.sd > 0 and np.isfinite(self.sd)):
            raise DynamicsInputError(f"norm SD must be a positive number, got {self.sd}")
        if not 0 <= self.reliability < 1:
            raise DynamicsInputError(
                f"reliability must lie in [0, 1), got {self.reliability} "
                "(a reliability of 1 makes every change reliable)"
            )

    @property
    def s_diff(self) -> float:
        return s_diff(self.sd, self.reliability)


def s_diff(sd: float, reliability: float) -> float:
    """Standard error of the difference between two scores (Jacobson & Truax 1991).

    >>> round(s_diff(10.0, 0.75), 4)  # 10 * sqrt(2 * 0.25)
    7.0711
    """
    return float(sd * np.sqrt(2.0) * np.sqrt(1.0 - reliability))


def instrument_norms(
    instrument: Instrument, score_id: str, metric: Literal["mean", "sum"] | None = None
) -> Norms | None:
    """The first norm of the instrument for ``score_id`` with both an SD and a reliability."""
    wanted = metric or instrument.default_metric
    for norm in instrument.norms:
        sd, reliability = norm.sd, norm.reliability
        if norm.score == score_id and norm.metric == wanted and sd and reliability is not None:
            return Norms(sd, reliability, f"{instrument.short_name} norm: {norm.source}")
    return None


def cronbach_alpha(items: pd.DataFrame) -> float:
    """Cronbach's alpha of complete rows of an item table.

    >>> cronbach_alpha(pd.DataFrame({"a": [1, 2, 3, 4], "b": [1, 2, 3, 4]}))
    1.0
    """
    complete = items.dropna().to_numpy(dtype=float)
    k = complete.shape[1]
    if k < 2 or complete.shape[0] < 3:
        raise DynamicsInputError("alpha needs at least 2 items and 3 complete rows")
    item_var = complete.var(axis=0, ddof=1).sum()
    total_var = complete.sum(axis=1).var(ddof=1)
    if total_var == 0:
        raise DynamicsInputError("alpha is undefined: the item totals do not vary")
    return float(k / (k - 1) * (1 - item_var / total_var))


def estimate_norms(
    sessions: pd.DataFrame,
    score: str,
    *,
    item_columns: list[str] | None = None,
    reliability: float | None = None,
    patient: str = "patient_id",
    session: str = "session",
) -> Norms:
    """Norms estimated from the user's data (each patient's first observed session).

    ``SD`` is the SD of the first observed score across patients; the reliability is
    Cronbach's alpha of ``item_columns`` at those sessions, or the ``reliability`` given.

    >>> t = pd.DataFrame({"patient_id": [1, 1, 2, 3], "session": [1, 2, 1, 1],
    ...                   "s": [3.0, 9.0, 4.0, 5.0]})
    >>> estimate_norms(t, "s", reliability=0.8).sd  # SD of 3, 4, 5
    1.0
    """
    series = prepare_series(sessions, score, patient=patient, session=session)
    if series.n_patients < 3:
        raise DynamicsInputError("estimating norms needs at least 3 patients with a score")
    first_rows = series.rows[series.starts]
    sd = float(np.std(series.x[series.starts], ddof=1))
    if reliability is None:
        if not item_columns:
            raise DynamicsInputError(
                "no reliability: give item columns (alpha is computed) or a reliability"
            )
        reliability = cronbach_alpha(sessions.iloc[first_rows][item_columns])
        origin = (
            f"estimated from this data (SD of first sessions, alpha of {len(item_columns)} items)"
        )
    else:
        origin = "SD estimated from this data (first sessions); reliability given by the user"
    return Norms(sd, min(reliability, 0.999), origin)


def classify_rci(rci: FloatArray, z: float = Z_95) -> np.ndarray:
    """Label each RCI: 'improved', 'deteriorated', 'no reliable change' or '' (missing)."""
    out = np.full(rci.size, "no reliable change", dtype=object)
    out[rci >= z] = "improved"
    out[rci <= -z] = "deteriorated"
    out[np.isnan(rci)] = ""
    return out


def reliable_change(
    sessions: pd.DataFrame,
    score: str,
    norms: Norms,
    *,
    z: float = Z_95,
    patient: str = "patient_id",
    session: str = "session",
) -> pd.DataFrame:
    """Session-to-session and baseline-to-now reliable change, one row per scored session.

    Columns: ``patient_id, session, <score>, change_prev, rci_prev, reliable_prev,
    change_baseline, rci_baseline, reliable_baseline``. Baseline is the patient's first
    observed session; "prev" is the previous observed session (missing sessions skipped).

    >>> t = pd.DataFrame({"patient_id": [1, 1, 1], "session": [1, 2, 3],
    ...                   "s": [4.0, 3.0, 4.5]})
    >>> out = reliable_change(t, "s", Norms(sd=0.5, reliability=0.5, source="example"))
    >>> out["rci_prev"].round(3).tolist()  # S_diff = 0.5; changes -1.0 and +1.5
    [nan, -2.0, 3.0]
    >>> out["reliable_baseline"].tolist()
    ['', 'deteriorated', 'no reliable change']
    """
    series = prepare_series(sessions, score, patient=patient, session=session)
    x = series.x
    change_prev = x - series.shift(x)
    baseline = series.broadcast(x[series.starts])
    change_base = x - baseline
    change_base[series.first_in_group()] = np.nan
    sd = norms.s_diff
    return pd.DataFrame(
        {
            patient: series.patients[series.code],
            session: series.session,
            score: x,
            "change_prev": change_prev,
            "rci_prev": change_prev / sd,
            "reliable_prev": classify_rci(change_prev / sd, z),
            "change_baseline": change_base,
            "rci_baseline": change_base / sd,
            "reliable_baseline": classify_rci(change_base / sd, z),
        }
    )
