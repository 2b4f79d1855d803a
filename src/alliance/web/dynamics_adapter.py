"""Thin adapter from the clinic's session table to :mod:`alliance.dynamics`.

No alert or rupture rule lives here: this module picks the score columns, calls
:func:`alliance.dynamics.compute_alerts` and :func:`alliance.dynamics.detect_ruptures`,
and turns their frames into rows for the store.

Ruptures are found as reliable drops below the patient's running baseline (``rci_drop``),
with the norms of the instrument file or, where it has none, norms estimated from the
clinic's own first sessions (SD of the totals, Cronbach's alpha of the items) once at least
:data:`MIN_PATIENTS_FOR_NORMS` patients have them. Before that the clinic falls back to the
session-level 1-SD criterion (``strauss2006``), which needs no norms but flags smaller dips
(precision .22 against .59 for ``rci_drop`` on simulated clinics; README, "Rupture
methods").

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

from alliance.dynamics.reliable_change import Norms

ALLIANCE_INSTRUMENTS = ("wai_sr", "wai_s", "wai", "haq2", "calpas", "srs")
FALLBACK_RUPTURE_METHOD = "strauss2006"
# Our choice, not a published rule: with fewer first sessions, alpha and the SD (and so
# the reliable-change threshold) move too much from one new patient to the next.
MIN_PATIENTS_FOR_NORMS = 30


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


def clinic_norms(table: pd.DataFrame, instrument_id: str) -> Norms | None:
    """Norms for reliable change of the instrument's total: the instrument file's, else
    estimated from the clinic's first sessions when enough patients have one, else None.

    >>> import numpy as np
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
    from alliance.dynamics import DynamicsInputError
    from alliance.dynamics.reliable_change import estimate_norms, instrument_norms
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
        return estimate_norms(table, score, item_columns=items)
    except DynamicsInputError:
        return None


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
        norms = clinic_norms(rows, instrument_id)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            frame = compute_alerts(
                rows,
                score,
                instrument=instrument_id,
                therapist_score=therapist if therapist in rows.columns else None,
                norms=norms,
                settings=settings,
            )
            methods = ["rci_drop" if norms else FALLBACK_RUPTURE_METHOD]
            if "psq_rupture" in rows.columns and rows["psq_rupture"].notna().any():
                methods.append("self_report")
            events = detect_ruptures(rows, score, methods, norms=norms)
        alerts += _alert_rows(frame)
        ruptures += _rupture_rows(events)
        done.update(int(p) for p in rows["patient_id"].unique())
    return alerts, ruptures
