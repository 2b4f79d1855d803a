"""Supervisor summaries and the researcher's de-identified export (pages; the API reuses)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from fastapi import APIRouter, Depends, HTTPException
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm import Session

from alliance.store import repo
from alliance.store.models import User
from alliance.web import monitoring
from alliance.web.deps import Ctx, get_ctx
from alliance.web.security import pseudonym

router = APIRouter(include_in_schema=False)
EXPORT_FORMATS = {"csv": "text/csv", "parquet": "application/vnd.apache.parquet"}
IDENTIFYING = ("patient_id", "therapist_id", "date", "submitted_at", "research_id")


# -- supervision -------------------------------------------------------------------------
def team_summary(s: Session, supervisor: User) -> list[dict[str, Any]]:
    """Per therapist of the team: caseload, patients by status, alliance level, rupture
    and repair rates, open alerts (all as stored by the analytics; nothing computed)."""
    team = list(repo.team_of(s, supervisor))
    rows = []
    for therapist in team:
        patients = list(repo.patients_for(s, therapist))
        ids = [p.id for p in patients]
        table = monitoring.session_table(s, ids) if ids else pd.DataFrame()
        ruptures = list(repo.ruptures_of(s, ids)) if ids else []
        primary = monitoring.primary_instrument(list(table.columns)) if len(table) else None
        level = early = np.nan
        if primary:
            summary = monitoring.trajectory_summary(table, f"{primary}_total")
            level = float(summary["level"].mean())
            early = float(summary["early_alliance"].mean())
        n_sessions = len(table)
        repaired = sum(1 for r in ruptures if r.repaired)
        open_alerts = sum(repo.open_alert_counts(s, ids).values()) if ids else 0
        rows.append(
            {
                "therapist": therapist.display_name,
                "therapist_id": therapist.id,
                "patients": len(patients),
                "patients_act": sum(1 for p in patients if p.status == "act"),
                "patients_watch": sum(1 for p in patients if p.status == "watch"),
                "sessions": n_sessions,
                "instrument": primary or "",
                "mean_level": level,
                "mean_early": early,
                "ruptures": len(ruptures),
                "rupture_rate": len(ruptures) / n_sessions * 100 if n_sessions else np.nan,
                "repair_rate": repaired / len(ruptures) if ruptures else np.nan,
                "open_alerts": open_alerts,
            }
        )
    return rows


@router.get("/supervision", response_class=HTMLResponse)
def supervision(ctx: Ctx = Depends(get_ctx)) -> Response:
    """Per-therapist alliance summary and rupture/repair rates for the supervisor's team."""
    user = ctx.require("supervisor", "admin")
    with ctx.db.audited() as s:
        rows = team_summary(s, user)
        repo.audit(s, user, "read", "team-summary", detail=f"{len(rows)} therapists")
    return ctx.render("supervision.html", rows=rows, fmt=monitoring.fmt)


# -- de-identified export ----------------------------------------------------------------
def deidentified(s: Session, secret_key: str) -> pd.DataFrame:
    """Item-level answers and scores without codes, names, ids or calendar dates.

    Patients and therapists appear as keyed pseudonyms; dates become days since the
    patient's first session.
    """
    return deidentify(repo.responses_frame(s), secret_key)


def deidentify(long: pd.DataFrame, secret_key: str) -> pd.DataFrame:
    """:func:`deidentified` of a long response table (:func:`repo.responses_frame`)."""
    if long.empty:
        return pd.DataFrame(columns=["patient", "therapist", "session", "day"])
    first = long.groupby("patient_id")["date"].transform("min")
    out = pd.DataFrame(
        {
            "patient": [pseudonym(secret_key, "patient", r) for r in long["research_id"]],
            "therapist": [pseudonym(secret_key, "therapist", t) for t in long["therapist_id"]],
            "session": long["session"].astype("int64"),
            "day": (long["date"] - first).dt.days.astype("int64"),
        }
    )
    rest = [c for c in long.columns if c not in (*IDENTIFYING, "session")]
    return pd.concat([out, long[rest].reset_index(drop=True)], axis=1)


def export_bytes(frame: pd.DataFrame, fmt: str) -> bytes:
    """The export as CSV or Parquet bytes."""
    if fmt == "csv":
        return frame.to_csv(index=False).encode("utf-8")
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


def export_response(db: Any, user: User, secret_key: str, fmt: str) -> Response:
    """Audit and send the de-identified export in the requested format."""
    if fmt not in EXPORT_FORMATS:
        raise HTTPException(422, f"format: must be one of {', '.join(EXPORT_FORMATS)}")
    with db.audited() as s:
        long = repo.responses_frame(s)
        frame = deidentify(long, secret_key)
        shown = [int(p) for p in long["patient_id"].unique()] if not long.empty else []
        repo.audit(
            s, user, "export", "deidentified", fmt, detail=f"{len(frame)} rows", patients=shown
        )
    headers = {"Content-Disposition": f'attachment; filename="alliance-export.{fmt}"'}
    return Response(export_bytes(frame, fmt), media_type=EXPORT_FORMATS[fmt], headers=headers)


@router.get("/export", response_class=HTMLResponse)
def export_page(ctx: Ctx = Depends(get_ctx)) -> Response:
    """The researcher's export page."""
    ctx.require("researcher", "admin")
    return ctx.render("export.html", formats=list(EXPORT_FORMATS))


@router.get("/export/data.{fmt}")
def export_file(fmt: str, ctx: Ctx = Depends(get_ctx)) -> Response:
    """Download the de-identified item-level data and scores."""
    user = ctx.require("researcher", "admin")
    return export_response(ctx.db, user, ctx.signer.secret_key, fmt)


def columns_of(frame: pd.DataFrame) -> Sequence[str]:
    """Column names (for tests and the API description)."""
    return [str(c) for c in frame.columns]
