"""What the clinic runs after each submission: episodes, ruptures and one status per patient.

All clinical policy of the clinic is here, not in ``web/``: which score a patient is
followed on (the first alliance measure in the instruments' monitoring order with a total
for that patient), the therapist rating compared with it, the rupture method (``rci_drop``
with the clinic's norms; none without norms, since measurement error is then unknown), and
prospective judgement: each patient's sessions are judged with that patient's data up to
each session, the clinic's frozen norms and, where the table has a
``<instrument>_total_expected_lower`` column, the edge of each session's expected range as
stored the day it was analysed, so monitoring one patient alone gives that
patient's part of a whole-clinic run, and sessions fed one at a time give the same result.

Example
-------
>>> import pandas as pd
>>> from alliance.dynamics import Norms
>>> t = pd.DataFrame({"patient_id": [7] * 6, "therapist_id": 1, "session": range(1, 7),
...                   "wai_sr_total": [4.0, 4.1, 3.9, 4.0, 2.4, 2.5]})
>>> m = monitor(t, norms={"wai_sr": Norms(0.6, 0.9, "example")})
>>> m.status[["status", "reason"]].to_dict("records")[0]["status"]
'act'
>>> m.episodes[["kind", "severity", "state"]].to_dict("records")
[{'kind': 'rupture', 'severity': 'high', 'state': 'open'}]
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from alliance.dynamics.alerts import AlertSettings
from alliance.dynamics.episodes import EPISODE_COLUMNS, alert_episodes
from alliance.dynamics.reliable_change import Norms
from alliance.dynamics.ruptures import OUTPUT_COLUMNS, detect_ruptures
from alliance.dynamics.status import patient_status
from alliance.instruments import alliance_measures

#: Suffix of the column holding a score's lower edge of the expected range per session.
EXPECTED_LOWER = "_expected_lower"


@dataclass(frozen=True)
class Monitoring:
    """Episodes, rupture events and statuses of the patients in a session table."""

    episodes: pd.DataFrame
    ruptures: pd.DataFrame
    status: pd.DataFrame
    notices: list[str] = field(default_factory=list)
    instrument: dict[Any, str] = field(default_factory=dict)


def primary_instruments(table: pd.DataFrame) -> dict[Any, str]:
    """Each patient's alliance measure: the first, in monitoring order, with a total.

    >>> t = pd.DataFrame({"patient_id": [1, 2], "srs_total": [30.0, None],
    ...                   "wai_sr_total": [None, 4.0]})
    >>> primary_instruments(t)
    {2: 'wai_sr', 1: 'srs'}
    """
    chosen: dict[Any, str] = {}
    for instrument_id in alliance_measures():
        column = f"{instrument_id}_total"
        if column not in table.columns:
            continue
        for patient in table.loc[table[column].notna(), "patient_id"].unique():
            chosen.setdefault(
                patient.item() if hasattr(patient, "item") else patient, instrument_id
            )
    return chosen


def monitor(
    table: pd.DataFrame,
    *,
    norms: Mapping[str, Norms] | None = None,
    settings: AlertSettings | None = None,
) -> Monitoring:
    """Prospective episodes, ruptures and statuses for every patient of a clinic table.

    ``table`` is wide (``patient_id, therapist_id, session, <id>_<n>, <id>_total,
    <id>_therapist_total, psq_rupture, ...``); ``norms`` maps an instrument id to the
    clinic's frozen norms of its total.
    """
    cfg = settings or AlertSettings()
    primary = primary_instruments(table)
    episodes, ruptures, notices = [], [], []
    for instrument_id in dict.fromkeys(primary.values()):
        ids = [p for p, i in primary.items() if i == instrument_id]
        rows = table[table["patient_id"].isin(ids)]
        score = f"{instrument_id}_total"
        therapist = f"{instrument_id}_therapist_total"
        has_therapist = therapist in rows.columns and rows[therapist].notna().any()
        chosen = (norms or {}).get(instrument_id)
        edge = f"{score}{EXPECTED_LOWER}"
        found = alert_episodes(
            rows,
            score,
            instrument=instrument_id,
            therapist_score=therapist if has_therapist else None,
            norms=chosen,
            settings=cfg,
            expected_lower=edge if edge in rows.columns else None,
        )
        episodes.append(found)
        notices += [f"{instrument_id}: {n}" for n in found.attrs.get("notices", [])]
        ruptures.append(_ruptures(rows, score, chosen, cfg))
    all_episodes = _concat(episodes, EPISODE_COLUMNS)
    status = patient_status(all_episodes, list(dict.fromkeys(table["patient_id"])))
    return Monitoring(
        all_episodes, _concat(ruptures, ["patient_id", *OUTPUT_COLUMNS]), status, notices, primary
    )


def _ruptures(
    rows: pd.DataFrame, score: str, norms: Norms | None, cfg: AlertSettings
) -> pd.DataFrame:
    methods = []
    method = cfg.rupture_method or ("rci_drop" if norms is not None else None)
    if method is not None:
        methods.append(method)
    if cfg.allow_unverified and "psq_rupture" in rows.columns and rows["psq_rupture"].notna().any():
        methods.append("self_report")
    if not methods:
        return pd.DataFrame()
    return detect_ruptures(
        rows,
        score,
        methods,
        norms=norms,
        z=cfg.z,
        repair_within=cfg.repair_within,
        gumz_sd=cfg.gumz_sd,
        prospective=True,
        resolved_at=cfg.resolved_at,
    )


def _concat(frames: list[pd.DataFrame], columns: list[str]) -> pd.DataFrame:
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in columns})
    return pd.concat(frames, ignore_index=True)
