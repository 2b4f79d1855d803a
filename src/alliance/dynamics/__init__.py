"""Alliance over time: reliable change, trajectories, rupture–repair detection and alerts.

Pure analytics on long session tables (``patient_id, session, <score>``); no I/O. Every
function is vectorised across patients: rows are sorted by patient and session once and
group statistics come from NumPy reductions over patient blocks.

Example
-------
>>> import pandas as pd
>>> from alliance.dynamics import detect_ruptures
>>> t = pd.DataFrame({"patient_id": "a", "session": range(1, 7),
...                   "s": [4.0, 4.0, 4.1, 2.6, 4.0, 4.1]})
>>> detect_ruptures(t, "s", method="stiles2004")["rupture_session"].tolist()
[4]
"""

from alliance.dynamics._series import DynamicsInputError
from alliance.dynamics.alerts import ALERT_COLUMNS, AlertSettings, compute_alerts, load_guidance
from alliance.dynamics.reliable_change import (
    Norms,
    cronbach_alpha,
    estimate_norms,
    instrument_norms,
    reliable_change,
    s_diff,
)
from alliance.dynamics.ruptures import CRITERIA, METHODS, criteria_table, detect_ruptures
from alliance.dynamics.trajectories import summarize_trajectories

__all__ = [
    "ALERT_COLUMNS",
    "CRITERIA",
    "METHODS",
    "AlertSettings",
    "DynamicsInputError",
    "Norms",
    "compute_alerts",
    "criteria_table",
    "cronbach_alpha",
    "detect_ruptures",
    "estimate_norms",
    "instrument_norms",
    "load_guidance",
    "reliable_change",
    "s_diff",
    "summarize_trajectories",
]
