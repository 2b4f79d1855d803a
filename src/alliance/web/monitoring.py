"""Session tables, trajectories and charts for the clinic, and the bridge to the dynamics.

Alert and rupture logic lives in :mod:`alliance.dynamics`; this module only assembles the
long session table it expects from the stored responses, calls it, and stores the result.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import pandas as pd
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from alliance.instruments import get_instrument, list_instruments
from alliance.store import repo
from alliance.store.db import Database

log = logging.getLogger("alliance.web")
ALLIANCE_INSTRUMENTS = ("wai_sr", "wai_s", "wai", "haq2", "calpas", "srs")
META_COLUMNS = ("patient_id", "research_id", "therapist_id", "session", "date")


def rating_prefix(instrument_id: str, respondent: str) -> str:
    """Column prefix of a rating: ``wai_sr`` for the client, ``wai_sr_therapist`` otherwise."""
    return instrument_id if respondent == "client" else f"{instrument_id}_{respondent}"


def session_table(s: Session, patient_ids: Sequence[int] | None = None) -> pd.DataFrame:
    """Wide session table: one row per patient and session, items and scores as columns.

    Client ratings keep the item and score names of the core (``wai_sr_4``,
    ``wai_sr_total``); ratings by the therapist (or an observer) carry the respondent after
    the instrument id (``wai_sr_therapist_total``).
    """
    long = repo.responses_frame(s, patient_ids)
    if long.empty:
        return pd.DataFrame(columns=list(META_COLUMNS))
    parts = []
    for (instrument_id, respondent), group in long.groupby(["instrument_id", "respondent"]):
        prefix = rating_prefix(str(instrument_id), str(respondent))
        columns = [
            c for c in group.columns if c.startswith(f"{instrument_id}_") and group[c].notna().any()
        ]
        part = group[[*META_COLUMNS, *columns]].copy()
        if prefix != instrument_id:
            part = part.rename(columns={c: prefix + c[len(str(instrument_id)) :] for c in columns})
        parts.append(part.set_index(list(META_COLUMNS)))
    wide = pd.concat(parts, axis=1).reset_index()
    return wide.sort_values(["patient_id", "session"]).reset_index(drop=True)


def primary_instrument(columns: Sequence[str]) -> str | None:
    """The alliance measure shown first: the first of WAI-SR, WAI-S, ... with a total."""
    for instrument_id in ALLIANCE_INSTRUMENTS:
        if f"{instrument_id}_total" in columns:
            return instrument_id
    return None


def score_columns(table: pd.DataFrame, instrument_id: str) -> list[tuple[str, str]]:
    """(column, label) of the instrument's scores present in the table, both raters."""
    inst = get_instrument(instrument_id)
    found = []
    for respondent in ("client", "therapist", "observer"):
        prefix = rating_prefix(instrument_id, respondent)
        who = "patient" if respondent == "client" else respondent
        for score in inst.scorable_scores:
            column = f"{prefix}_{score.id}"
            if column in table.columns and table[column].notna().any():
                found.append((column, f"{score.label} ({who})"))
    return found


def answer_labels(columns: list[tuple[str, str]]) -> dict[str, dict[float, str]]:
    """For single-item scores of a yes/no item, the anchor label of each value."""
    labels: dict[str, dict[float, str]] = {}
    for column, _label in columns:
        for inst in list_instruments():
            score_id = column.removeprefix(f"{inst.id}_")
            if score_id == column or score_id not in {sc.id for sc in inst.scores}:
                continue
            items = inst.score_items(score_id)
            scale = inst.item_scale(items[0]) if len(items) == 1 else None
            if scale is not None and scale.kind == "binary":
                labels[column] = {a.value: a.descriptor for a in scale.anchors}
    return labels


def latest(table: pd.DataFrame, column: str) -> float | None:
    """The most recent non-missing value of a column."""
    if column not in table.columns:
        return None
    values = table[column].dropna()
    return None if values.empty else float(values.iloc[-1])


def fmt(value: Any, digits: int = 2, labels: dict[float, str] | None = None) -> str:
    """A score for display ('–' when missing; the anchor label for yes/no answers)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, str):
        return value
    if labels and float(value) in labels:
        return labels[float(value)]
    return f"{float(value):.{digits}f}"


# -- alerts ------------------------------------------------------------------------------
def refresh_alerts(db: Database, patient_ids: Sequence[int] | None = None) -> int:
    """Recompute alerts and ruptures for patients with new responses; returns new alerts.

    The dynamics see the whole clinic's table (clinic percentiles and SDs need it); only
    the stale patients' alerts and ruptures are stored.
    """
    with db.read() as s:
        stale = repo.stale_patient_ids(s, patient_ids)
        if not stale:
            return 0
        table = session_table(s)
    try:
        alerts, ruptures = compute_dynamics(table)
    except Exception as exc:  # analytics failure must not take the clinic pages down
        log.warning("alert computation failed (%s); patients stay marked stale", type(exc).__name__)
        return 0
    wanted = set(stale)
    alerts = [a for a in alerts if a["patient_id"] in wanted]
    ruptures = [r for r in ruptures if r["patient_id"] in wanted]
    try:
        with db.write() as s:
            return repo.replace_analytics(s, stale, alerts, ruptures)
    except IntegrityError:  # another worker stored the same alerts first
        return 0


def compute_dynamics(table: pd.DataFrame) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Alerts and ruptures of a session table, from :mod:`alliance.dynamics`."""
    from alliance.web import dynamics_adapter

    return dynamics_adapter.alerts_and_ruptures(table)


# -- charts ------------------------------------------------------------------------------
def trajectory_long(table: pd.DataFrame, instrument_id: str) -> pd.DataFrame:
    """Long table (session, score, rater, value) of an instrument's scores for charting."""
    rows = []
    inst = get_instrument(instrument_id)
    for respondent in ("client", "therapist"):
        prefix = rating_prefix(instrument_id, respondent)
        for score in inst.scorable_scores:
            column = f"{prefix}_{score.id}"
            if column not in table.columns:
                continue
            part = table[["session", column]].dropna()
            for session, value in zip(part["session"], part[column], strict=True):
                rows.append(
                    {
                        "session": int(session),
                        "score": score.label,
                        "rater": "patient" if respondent == "client" else "therapist",
                        "value": float(value),
                    }
                )
    return pd.DataFrame(rows, columns=["session", "score", "rater", "value"])


def trajectory_spec(
    table: pd.DataFrame, instrument_id: str, ruptures: Sequence[int] = ()
) -> dict[str, Any]:
    """One declarative Vega-Lite spec (via Altair) of the patient's alliance trajectory."""
    import altair as alt

    data = trajectory_long(table, instrument_id)
    scale = get_instrument(instrument_id).scale
    lines = (
        alt.Chart(data)
        .mark_line(point=True)
        .encode(
            x=alt.X("session:Q", title="Session", axis=alt.Axis(tickMinStep=1)),
            y=alt.Y(
                "value:Q",
                title=get_instrument(instrument_id).short_name,
                scale=alt.Scale(domain=[scale.min, scale.max]),
            ),
            color=alt.Color("score:N", title="Score"),
            strokeDash=alt.StrokeDash(
                "rater:N", title="Rater", legend=alt.Legend(symbolType="stroke")
            ),
            tooltip=["session:Q", "score:N", "rater:N", alt.Tooltip("value:Q", format=".2f")],
        )
    )
    chart: Any = lines
    if ruptures:
        marks = pd.DataFrame({"session": list(ruptures)})
        rules = alt.Chart(marks).mark_rule(color="#b00020", strokeDash=[2, 2]).encode(x="session:Q")
        chart = alt.layer(lines, rules)
    chart = chart.properties(width=560, height=260, title="Alliance trajectory")
    spec: dict[str, Any] = chart.to_dict()
    return spec


def spec_to_svg(spec: dict[str, Any]) -> str:
    """Render a Vega-Lite spec to SVG on the server (no JavaScript, no CDN)."""
    import vl_convert as vlc

    svg: str = vlc.vegalite_to_svg(spec)
    return svg


def trajectory_summary(table: pd.DataFrame, column: str) -> pd.DataFrame:
    """Per-patient level, slope and early alliance from :mod:`alliance.dynamics`."""
    from alliance.dynamics.trajectories import summarize_trajectories

    return summarize_trajectories(table[["patient_id", "session", column]], column)
