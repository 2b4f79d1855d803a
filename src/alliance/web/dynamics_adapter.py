"""Map the frames of :func:`alliance.dynamics.monitor.monitor` to rows for the store.

No clinical policy lives here (which method, which thresholds, when an episode opens,
escalates or closes, what a patient's status is: all in :mod:`alliance.dynamics`). This
module only turns the :class:`~alliance.dynamics.monitor.Monitoring` frames into plain
rows, per patient, for :func:`alliance.store.repo.replace_analytics`: missing values become
``None``, NumPy scalars Python ones. The patient's status is not taken from the frames: the
store recomputes it from the stored episodes with the same rule
(:func:`alliance.dynamics.status.patient_status`), so that episodes a clinician resolved and
episodes of earlier runs count as they should.

>>> import pandas as pd
>>> frame = pd.DataFrame({"patient_id": [3], "method": ["rci_drop"], "rupture_session": [4],
...                       "drop": [1.2], "repaired": ["not yet"],
...                       "repair_session": [pd.NA]})
>>> rupture_rows(frame)[0]["repair_session"] is None
True
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:
    from alliance.dynamics.monitor import Monitoring

TEXT_FIELDS = (
    "kind",
    "state",
    "severity",
    "title",
    "reason",
    "detail",
    "close_reason",
    "method",
    "score",
    "key_status",
    "guidance",
    "sources",
)
SESSION_FIELDS = ("last_session", "closed_session", "escalated_session")
FLOAT_FIELDS = ("value", "threshold")


def clean(value: Any) -> Any:
    """``None`` for missing values (None, NaN, pandas NA), Python scalars otherwise."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if hasattr(value, "item"):
        return clean(value.item())
    return value


def _int(value: Any) -> int | None:
    value = clean(value)
    return None if value is None else int(value)


def _float(value: Any) -> float | None:
    value = clean(value)
    return None if value is None else float(value)


def _text(value: Any) -> str:
    value = clean(value)
    return "" if value is None else str(value)


def episode_rows(episodes: pd.DataFrame) -> list[dict[str, Any]]:
    """Alert episodes (``EPISODE_COLUMNS``) as store rows keyed by ``opened_session``."""
    rows = []
    for rec in episodes.to_dict("records"):
        opened = _int(rec.get("opened_session"))
        if opened is None:
            continue
        row: dict[str, Any] = {"patient_id": int(rec["patient_id"]), "opened_session": opened}
        row.update({name: _text(rec.get(name)) for name in TEXT_FIELDS})
        row.update({name: _int(rec.get(name)) for name in SESSION_FIELDS})
        row.update({name: _float(rec.get(name)) for name in FLOAT_FIELDS})
        if row["last_session"] is None:
            row["last_session"] = opened
        rows.append(row)
    return rows


def rupture_rows(events: pd.DataFrame) -> list[dict[str, Any]]:
    """Rupture events (``detect_ruptures`` columns) as ``ruptures`` rows."""
    rows = []
    for rec in events.to_dict("records"):
        repaired = _text(rec.get("repaired"))
        rows.append(
            {
                "patient_id": int(rec["patient_id"]),
                "session": int(rec["rupture_session"]),
                "kind": _text(rec.get("method")),
                "depth": _float(rec.get("drop")),
                "repaired": repaired == "yes",
                "repair_session": _int(rec.get("repair_session")),
                "detail": "repair window still open" if repaired == "not yet" else "",
            }
        )
    return rows


@dataclass
class PatientRows:
    """One patient's rows for :func:`alliance.store.repo.replace_analytics`."""

    episodes: list[dict[str, Any]] = field(default_factory=list)
    ruptures: list[dict[str, Any]] = field(default_factory=list)


def store_rows(result: Monitoring) -> dict[int, PatientRows]:
    """The monitoring result as store rows, by patient id."""
    out: dict[int, PatientRows] = {}
    for row in episode_rows(result.episodes):
        out.setdefault(row["patient_id"], PatientRows()).episodes.append(row)
    for row in rupture_rows(result.ruptures):
        out.setdefault(row["patient_id"], PatientRows()).ruptures.append(row)
    return out
