"""Thin adapter from the clinic's session table to :mod:`alliance.dynamics`.

No alert or rupture rule lives here: this module picks the score columns, calls
:func:`alliance.dynamics.compute_alerts` and :func:`alliance.dynamics.detect_ruptures`,
and turns their frames into rows for the store.

Clinic setting: ``ALLIANCE_ALERTS_ALLOW_UNVERIFIED=1`` lets alerts rest on keys marked
unverified, chiefly the post-session rupture questions a clinic schedules on purpose; each
such alert says so in its reason. The default is off, as the instrument rules require
(shared/instruments-facts.md: no alert on an unverified key by default); ``alliance demo``
turns it on for its synthetic clinic.
"""

from __future__ import annotations

import math
import os
import warnings
from typing import Any

import pandas as pd

ALLIANCE_INSTRUMENTS = ("wai_sr", "wai_s", "wai", "haq2", "calpas", "srs")
RUPTURE_METHOD = "strauss2006"


def _allow_unverified() -> bool:
    return os.environ.get("ALLIANCE_ALERTS_ALLOW_UNVERIFIED", "0") in ("1", "true", "yes")


def _clean(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    return value.item() if hasattr(value, "item") else value


def _alert_rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    rows = []
    for rec in frame.to_dict("records"):
        if _clean(rec.get("session")) is None:
            continue
        reason = str(rec.get("reason", ""))
        if rec.get("key_status") == "unverified":
            reason += " (Rests on a key marked unverified.)"
        rows.append(
            {
                "patient_id": int(rec["patient_id"]),
                "session": int(rec["session"]),
                "kind": str(rec["kind"]),
                "severity": str(rec["severity"]),
                "reason": reason,
                "guidance": str(rec.get("guidance") or ""),
                "sources": str(rec.get("sources") or ""),
            }
        )
    return rows


def _rupture_rows(events: pd.DataFrame) -> list[dict[str, Any]]:
    rows = []
    for rec in events.to_dict("records"):
        repair = _clean(rec.get("repair_session"))
        drop = _clean(rec.get("drop"))
        rows.append(
            {
                "patient_id": int(rec["patient_id"]),
                "session": int(rec["rupture_session"]),
                "kind": str(rec["method"]),
                "depth": float(drop) if drop is not None else None,
                "repaired": rec.get("repaired") == "yes",
                "repair_session": int(repair) if repair is not None else None,
                "detail": "repair window still open" if rec.get("repaired") == "not yet" else "",
            }
        )
    return rows


def alerts_and_ruptures(
    table: pd.DataFrame,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Alerts and rupture events for every patient in a wide session table."""
    from alliance.dynamics import AlertSettings, compute_alerts, detect_ruptures

    settings = AlertSettings(allow_unverified=_allow_unverified())
    alerts: list[dict[str, Any]] = []
    ruptures: list[dict[str, Any]] = []
    if table.empty:
        return alerts, ruptures
    done: set[int] = set()
    for instrument_id in ALLIANCE_INSTRUMENTS:
        score = f"{instrument_id}_total"
        if score not in table.columns:
            continue
        rows = table[table[score].notna() & ~table["patient_id"].isin(done)]
        if rows.empty:
            continue
        rows = table[table["patient_id"].isin(rows["patient_id"].unique())]
        therapist = f"{instrument_id}_therapist_total"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            frame = compute_alerts(
                rows,
                score,
                instrument=instrument_id,
                therapist_score=therapist if therapist in rows.columns else None,
                settings=settings,
            )
            methods = [RUPTURE_METHOD]
            if "psq_rupture" in rows.columns and rows["psq_rupture"].notna().any():
                methods.append("self_report")
            events = detect_ruptures(rows, score, methods)
        alerts += _alert_rows(frame)
        ruptures += _rupture_rows(events)
        done.update(int(p) for p in rows["patient_id"].unique())
    return alerts, ruptures
