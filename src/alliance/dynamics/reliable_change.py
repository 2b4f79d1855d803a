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
alpha of the items at that first session. :func:`clinic_norms` is the clinic's rule for
choosing between them (and when there is not yet enough data to estimate them).

The same numbers give the **measurement-error bound** that every default rupture method
respects: a fall between two sessions counts only when it reaches the reliable-change
threshold ``z x S_diff`` (:func:`reliable_drop_threshold`). We use reliable change rather
than the standard error of measurement because a drop is a *difference* of two scores, each
with its own error; ``S_diff = sqrt(2) x SEM`` is the error of that difference.

Example
-------
>>> round(s_diff(sd=0.6, reliability=0.9), 4)  # 0.6 * sqrt(2) * sqrt(0.1)
0.2683
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from alliance.dynamics._series import DynamicsInputError, FloatArray, prepare_series
from alliance.instruments import Instrument
from alliance.scoring import keyed_items

Z_95 = 1.959963984540054
# Our threshold, not a published one: with fewer first sessions, alpha and the SD (and so
# the reliable-change threshold) move too much from one new patient to the next.
MIN_PATIENTS_FOR_NORMS = 30


@dataclass(frozen=True)
class Norms:
    """Reference SD and reliability of one score, where they came from, and (when known)
    the mean of the reference sample (used for a clinic-relative low-alliance threshold).

    >>> n = Norms(0.6, 0.9, "example", mean=3.9)
    >>> Norms.from_dict(n.to_dict()) == n
    True
    """

    sd: float
    reliability: float
    source: str
    mean: float | None = None

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

    @property
    def sem(self) -> float:
        """Standard error of measurement, ``SD x sqrt(1 - r)``."""
        return float(self.sd * np.sqrt(1.0 - self.reliability))

    def to_dict(self) -> dict[str, float | str | None]:
        """Plain values for storing the norms (the clinic freezes the first it gets)."""
        return {
            "sd": self.sd,
            "reliability": self.reliability,
            "source": self.source,
            "mean": self.mean,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Norms:
        """Norms from :meth:`to_dict`'s values."""
        mean = data.get("mean")
        return cls(
            float(data["sd"]),
            float(data["reliability"]),
            str(data["source"]),
            None if mean is None else float(mean),
        )


def reliable_drop_threshold(norms: Norms, z: float = Z_95) -> float:
    """Smallest fall between two scores that measurement error does not explain.

    >>> round(reliable_drop_threshold(Norms(0.6, 0.9, "example")), 3)  # 1.96 x 0.268
    0.526
    """
    return float(z * norms.s_diff)


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
            return Norms(sd, reliability, f"{instrument.short_name} norm: {norm.source}", norm.mean)
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
    instrument: str | None = None,
    patient: str = "patient_id",
    session: str = "session",
) -> Norms:
    """Norms estimated from the user's data (each patient's first observed session).

    ``SD`` is the SD of the first observed score across patients; the reliability is
    Cronbach's alpha of ``item_columns`` at those sessions, or the ``reliability`` given.
    The reverse-keyed items of ``instrument`` (by default the instrument the item columns
    belong to) are mirrored first (:func:`alliance.scoring.keyed_items`): alpha of raw
    answers to reversed items is far too low, and the reliable-change threshold too wide.

    >>> t = pd.DataFrame({"patient_id": [1, 1, 2, 3], "session": [1, 2, 1, 1],
    ...                   "s": [3.0, 9.0, 4.0, 5.0]})
    >>> estimate_norms(t, "s", reliability=0.8).sd  # SD of 3, 4, 5
    1.0
    """
    series = prepare_series(sessions, score, patient=patient, session=session)
    if series.n_patients < 3:
        raise DynamicsInputError("estimating norms needs at least 3 patients with a score")
    first_rows = series.rows[series.starts]
    first = series.x[series.starts]
    sd = float(np.std(first, ddof=1))
    if reliability is None:
        if not item_columns:
            raise DynamicsInputError(
                "no reliability: give item columns (alpha is computed) or a reliability"
            )
        items = sessions.iloc[first_rows][item_columns]
        reliability = cronbach_alpha(keyed_items(items, instrument))
        origin = (
            f"estimated from this data (SD of first sessions, alpha of {len(item_columns)} items)"
        )
    else:
        origin = "SD estimated from this data (first sessions); reliability given by the user"
    return Norms(sd, min(reliability, 0.999), origin, float(np.mean(first)))


def clinic_norms(table: pd.DataFrame, instrument_id: str) -> Norms | None:
    """Norms for reliable change of the instrument's total: the instrument file's, else
    estimated from the clinic's first sessions once :data:`MIN_PATIENTS_FOR_NORMS` patients
    have one, else None (then no drop is judged: measurement error is unknown).

    >>> rng = np.random.default_rng(1)
    >>> person = rng.normal(4, 0.5, (40, 1))
    >>> items = np.clip(np.rint(person + rng.normal(0, 0.4, (40, 12))), 1, 5)
    >>> table = pd.DataFrame(items, columns=[f"wai_sr_{i}" for i in range(1, 13)])
    >>> table.insert(0, "patient_id", range(40))
    >>> table.insert(1, "session", 1)
    >>> table["wai_sr_total"] = items.mean(axis=1)
    >>> norms = clinic_norms(table, "wai_sr")
    >>> round(norms.reliability, 2), norms.source.startswith("estimated from this data")
    (0.93, True)
    >>> clinic_norms(table.head(10), "wai_sr") is None  # too few patients yet
    True
    """
    from alliance.instruments import get_instrument

    inst = get_instrument(instrument_id)
    published = instrument_norms(inst, "total")
    if published is not None:
        return published
    score, items = f"{instrument_id}_total", list(inst.item_columns)
    if score not in table.columns or not set(items) <= set(table.columns):
        return None
    if table.loc[table[score].notna(), "patient_id"].nunique() < MIN_PATIENTS_FOR_NORMS:
        return None
    try:
        return estimate_norms(table, score, item_columns=items, instrument=instrument_id)
    except DynamicsInputError:
        return None


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
