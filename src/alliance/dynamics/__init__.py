"""Alliance over time: reliable change, trajectories, rupture–repair detection, alert
episodes and one status per patient (prospective: each session judged with the data of
that day).

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
from alliance.dynamics.alerts import AlertSettings, load_guidance
from alliance.dynamics.episodes import (
    EPISODE_COLUMNS,
    alert_episodes,
    episodes_as_of,
    workflow_status,
)
from alliance.dynamics.monitor import Monitoring, monitor
from alliance.dynamics.reliable_change import (
    MIN_PATIENTS_FOR_NORMS,
    Norms,
    clinic_norms,
    cronbach_alpha,
    estimate_norms,
    instrument_norms,
    reliable_change,
    reliable_drop_threshold,
    s_diff,
)
from alliance.dynamics.ruptures import CRITERIA, METHODS, criteria_table, detect_ruptures
from alliance.dynamics.status import STATUS_COLUMNS, STATUS_LEVELS, patient_status
from alliance.dynamics.trajectories import summarize_trajectories

__all__ = [
    "CRITERIA",
    "EPISODE_COLUMNS",
    "METHODS",
    "MIN_PATIENTS_FOR_NORMS",
    "STATUS_COLUMNS",
    "STATUS_LEVELS",
    "AlertSettings",
    "DynamicsInputError",
    "Monitoring",
    "Norms",
    "alert_episodes",
    "clinic_norms",
    "criteria_table",
    "cronbach_alpha",
    "detect_ruptures",
    "episodes_as_of",
    "estimate_norms",
    "instrument_norms",
    "load_guidance",
    "monitor",
    "patient_status",
    "reliable_change",
    "reliable_drop_threshold",
    "s_diff",
    "summarize_trajectories",
    "workflow_status",
]
