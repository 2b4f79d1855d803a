"""Per-patient summaries of an alliance trajectory.

For each patient: number of scored sessions, first and last session, level (mean of all
scored sessions), slope (ordinary least squares of score on session number), early alliance
(mean of the scored sessions numbered 1 to ``early_sessions``, default 1–3), variability
(within-patient SD) and the root mean square of successive differences (instability that a
slow trend does not inflate). All computed with group sums, no loop over patients.

Example
-------
>>> import pandas as pd
>>> t = pd.DataFrame({"patient_id": ["a"] * 4, "session": [1, 2, 3, 4],
...                   "s": [3.0, 3.5, 4.0, 4.5]})
>>> row = summarize_trajectories(t, "s").iloc[0]
>>> float(row["level"]), float(row["slope"]), float(row["early_alliance"])
(3.75, 0.5, 3.5)
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from alliance.dynamics._series import prepare_series


def summarize_trajectories(
    sessions: pd.DataFrame,
    score: str,
    *,
    early_sessions: int = 3,
    patient: str = "patient_id",
    session: str = "session",
) -> pd.DataFrame:
    """One row per patient: ``n_sessions, first_session, last_session, level, slope,
    early_alliance, early_n, variability, rmssd, last_score``.

    ``slope`` is NaN with fewer than two sessions; ``variability`` (SD, ddof = 1) too;
    ``rmssd`` needs two sessions; ``early_alliance`` is NaN when none of sessions
    1..``early_sessions`` was scored.
    """
    s = prepare_series(sessions, score, patient=patient, session=session)
    x = s.x
    t = s.session.astype(np.float64)
    level = s.group_mean(x)
    t_mean = s.group_mean(t)
    dt = t - s.broadcast(t_mean)
    dx = x - s.broadcast(level)
    sxx = s.group_sum(dt * dt)
    with np.errstate(invalid="ignore", divide="ignore"):
        slope = s.group_sum(dt * dx) / sxx
    slope[s.sizes < 2] = np.nan
    early = (s.session >= 1) & (s.session <= early_sessions)
    early_n = s.group_sum(early.astype(np.float64))
    with np.errstate(invalid="ignore", divide="ignore"):
        early_mean = s.group_sum(np.where(early, x, 0.0)) / early_n
    diff = x - s.shift(x)
    has_diff = ~np.isnan(diff)
    n_diff = s.group_sum(has_diff.astype(np.float64))
    with np.errstate(invalid="ignore", divide="ignore"):
        rmssd = np.sqrt(s.group_sum(np.where(has_diff, diff * diff, 0.0)) / n_diff)
    ends = s.starts + s.sizes - 1
    return pd.DataFrame(
        {
            patient: s.patients,
            "n_sessions": s.sizes,
            "first_session": s.session[s.starts],
            "last_session": s.session[ends],
            "level": level,
            "slope": slope,
            "early_alliance": early_mean,
            "early_n": early_n.astype(np.int64),
            "variability": s.group_sd(x),
            "rmssd": rmssd,
            "last_score": x[ends],
        }
    )
