"""One status per patient, derived from the open alert episodes.

* ``act``: at least one open episode is *high* (a large or lasting rupture, a rupture not
  repaired in time, a score below its cutoff session after session, a strong or repeated
  self-reported rupture).
* ``watch``: open episodes, none high.
* ``steady``: no open episode.

Episodes a clinician has resolved (a ``workflow`` column equal to ``"resolved"``, when
given) no longer count: the clinician has acted. The reason is the newest, most severe open
episode's reason, with the number of other open episodes.

Example
-------
>>> import pandas as pd
>>> ep = pd.DataFrame({"patient_id": ["a", "a", "b"], "kind": ["rupture", "below_cutoff",
...     "rupture"], "state": ["open", "open", "closed"], "severity": ["high", "warning",
...     "warning"], "opened_session": [5, 3, 2], "reason": ["Fell.", "Low.", "Fell."]})
>>> out = patient_status(ep, ["a", "b", "c"])
>>> out["status"].tolist(), out["reason"].iloc[0]
(['act', 'steady', 'steady'], 'Fell. (1 more open alert.)')
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

STATUS_LEVELS = ("act", "watch", "steady")
STATUS_COLUMNS = ["patient_id", "status", "reason", "open_episodes", "since_session"]
_RANK = {"info": 0, "warning": 1, "high": 2}


def patient_status(episodes: pd.DataFrame, patients: Sequence[Any] | None = None) -> pd.DataFrame:
    """One row per patient: ``patient_id, status, reason, open_episodes, since_session``.

    ``patients`` lists every patient to report (those without open episodes are steady);
    by default the patients that appear in ``episodes``. ``since_session`` is the earliest
    opening session among the open episodes of the status's level (NA when steady).
    """
    wanted = list(dict.fromkeys(episodes["patient_id"])) if patients is None else list(patients)
    live = episodes[episodes["state"] == "open"]
    if "workflow" in live.columns:
        live = live[live["workflow"] != "resolved"]
    live = live.assign(_rank=live["severity"].map(_RANK).fillna(0))
    live = live.sort_values(["_rank", "opened_session"], ascending=[False, False])
    rows: list[tuple[Any, str, str, int, Any]] = []
    by_patient = dict(tuple(live.groupby("patient_id", sort=False))) if len(live) else {}
    for patient in wanted:
        own = by_patient.get(patient)
        if own is None or own.empty:
            rows.append((patient, "steady", "No open alerts.", 0, pd.NA))
            continue
        top = own.iloc[0]
        status = "act" if top["_rank"] >= 2 else "watch"
        level = own[own["_rank"] == top["_rank"]]
        more = len(own) - 1
        reason = str(top["reason"])
        if more:
            reason += f" ({more} more open alert{'s' if more > 1 else ''}.)"
        rows.append((patient, status, reason, len(own), int(level["opened_session"].min())))
    out = pd.DataFrame(rows, columns=STATUS_COLUMNS)
    out["since_session"] = out["since_session"].astype("Int64")
    return out
