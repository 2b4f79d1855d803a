"""Supervisor summaries, the researcher's de-identified export and psychometric report
(pages; the API reuses)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

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
    """Per therapist of the team: caseload, patients by status, open alerts, and the
    alliance level and rupture and repair rates as shrunken estimates with 95% intervals
    (:mod:`alliance.research.multilevel.analyses`), never raw means: a therapist with few
    patients is drawn toward the team. With one therapist (or no alliance data) the
    estimates are left empty."""
    team = list(repo.team_of(s, supervisor))
    rows: list[dict[str, Any]] = []
    therapist_of: dict[int, str] = {}
    rupture_rows: list[tuple[str, int, int]] = []
    for therapist in team:
        patients = list(repo.patients_for(s, therapist))
        ids = [p.id for p in patients]
        therapist_of |= dict.fromkeys(ids, str(therapist.id))
        ruptures = list(repo.ruptures_of(s, ids)) if ids else []
        rupture_rows.append((str(therapist.id), len(ruptures), sum(r.repaired for r in ruptures)))
        rows.append(
            {
                "therapist": therapist.display_name,
                "therapist_id": therapist.id,
                "patients": len(patients),
                "patients_act": sum(1 for p in patients if p.status == "act"),
                "patients_watch": sum(1 for p in patients if p.status == "watch"),
                "open_alerts": sum(repo.open_alert_counts(s, ids).values()) if ids else 0,
            }
        )
    table = monitoring.session_table(s, list(therapist_of)) if therapist_of else pd.DataFrame()
    counts = pd.DataFrame(rupture_rows, columns=["therapist", "ruptures", "repaired"])
    counts["sessions"] = 0
    if len(table):
        sessions = table.groupby(table["patient_id"].map(therapist_of)).size()
        counts["sessions"] = counts["therapist"].map(sessions).fillna(0).astype(int)
    estimates = _team_estimates(table, therapist_of, counts)
    for row, (_, count) in zip(rows, counts.iterrows(), strict=True):
        row |= {"sessions": int(count["sessions"]), "ruptures": int(count["ruptures"])}
        row |= estimates.get(str(row["therapist_id"]), {})
    return rows


def _team_estimates(
    table: pd.DataFrame, therapist_of: dict[int, str], counts: pd.DataFrame
) -> dict[str, dict[str, Any]]:
    """Shrunken alliance level (relative to the team), rupture rate per 100 sessions and
    repair rate of each therapist, with intervals; empty where they cannot be estimated."""
    from alliance.research.multilevel import FormulaError
    from alliance.research.multilevel.analyses import shrunken_rates, therapist_effects

    out: dict[str, dict[str, Any]] = {t: {} for t in counts["therapist"]}
    primary = monitoring.primary_instrument(list(table.columns)) if len(table) else None
    if primary:
        scores = table[["patient_id", f"{primary}_total"]].assign(
            therapist=table["patient_id"].map(therapist_of)
        )
        try:
            effects = therapist_effects(
                scores, f"{primary}_total", therapist="therapist", patient="patient_id"
            )
        except FormulaError:
            effects = None
        if effects is not None:
            for t, e in effects.table.iterrows():
                out[str(t)] |= {
                    "instrument": primary, "level": e["effect"], "level_lower": e["lower"],
                    "level_upper": e["upper"], "level_distinct": bool(e["distinct"]),
                }  # fmt: skip
    for name, events, trials, scale in (
        ("rupture_rate", "ruptures", "sessions", 100.0),
        ("repair_rate", "repaired", "ruptures", 1.0),
    ):
        usable = counts[counts[trials] > 0]
        try:
            rates = shrunken_rates(usable, events, trials, group="therapist")
        except FormulaError:
            continue
        for t, r in rates.iterrows():
            out[str(t)] |= {
                name: r["rate"] * scale, f"{name}_lower": r["lower"] * scale,
                f"{name}_upper": r["upper"] * scale,
            }  # fmt: skip
    return out


def expected_summary(s: Session) -> list[dict[str, Any]]:
    """Per score with an expected-trajectory model: the fit in force (when, on how many
    patients and sessions) and the clinic's own calibration check, the share of sessions
    judged by a stored band that fell under its 10% edge (about 10% when calibrated)."""
    calibration = repo.expected_calibration(s)
    out = []
    for score, fit in sorted(repo.expected_models_in_force(s).items()):
        judged, under = calibration.get(score, (0, 0))
        out.append({
            "score": score, "fitted_at": repo.aware(fit.fitted_at).strftime("%Y-%m-%d %H:%M UTC"),
            "patients": fit.n_patients, "sessions": fit.n_sessions, "judged": judged,
            "under": under, "share": under / judged if judged else None,
        })  # fmt: skip
    return out


@router.get("/supervision", response_class=HTMLResponse)
def supervision(ctx: Ctx = Depends(get_ctx)) -> Response:
    """Per-therapist alliance summary and rupture/repair rates for the supervisor's team."""
    user = ctx.require("supervisor", "admin")
    with ctx.db.audited() as s:
        rows = team_summary(s, user)
        expected = expected_summary(s)
        repo.audit(s, user, "read", "team-summary", detail=f"{len(rows)} therapists")
    from alliance.research.multilevel.expected import MIN_PATIENTS, MIN_SESSIONS

    return ctx.render(
        "supervision.html", rows=rows, expected=expected, fmt=monitoring.fmt,
        min_patients=MIN_PATIENTS, min_sessions=MIN_SESSIONS,
    )  # fmt: skip


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


# -- psychometrics of the clinic's own answers ----------------------------------------------
MIN_REPORT_ROWS = 30  # complete administrations before the factor models are worth fitting


def psychometrics_rows(long: pd.DataFrame, instrument_id: str) -> pd.DataFrame:
    """The de-identified client answers to one instrument, one row per administration."""
    if long.empty or "instrument_id" not in long.columns:
        return pd.DataFrame()
    mine = long[(long["instrument_id"] == instrument_id) & (long["respondent"] == "client")]
    return mine.dropna(axis=1, how="all").reset_index(drop=True)


def _psychometrics(db: Any, user: User, secret_key: str, instrument_id: str) -> dict[str, Any]:
    """The report of the clinic's answers to ``instrument_id`` (audited; de-identified)."""
    from alliance.instruments import alliance_measures, get_instrument
    from alliance.research.psychometrics import PsychometricsError
    from alliance.research.psychometrics.report import psychometrics_report

    if instrument_id not in alliance_measures():
        raise HTTPException(422, f"instrument: must be one of {', '.join(alliance_measures())}")
    inst = get_instrument(instrument_id)
    with db.audited() as s:
        long = repo.responses_frame(s)
        rows = psychometrics_rows(deidentify(long, secret_key), instrument_id)
        shown = sorted({int(p) for p in long["patient_id"].unique()}) if not long.empty else []
        repo.audit(s, user, "read", "psychometrics", instrument_id,
                   detail=f"{len(rows)} administrations", patients=shown)  # fmt: skip
    view: dict[str, Any] = {"instrument": inst, "rows": len(rows), "report": None, "error": ""}
    if len(rows) < MIN_REPORT_ROWS:
        return view
    try:
        view["report"] = psychometrics_report(rows, inst, session="session")
    except PsychometricsError as exc:
        view["error"] = str(exc)
    return view


@router.get("/research/psychometrics", response_class=HTMLResponse)
def psychometrics_page(instrument: str = "wai_sr", ctx: Ctx = Depends(get_ctx)) -> Response:
    """Reliability, items and factor structure of the clinic's de-identified answers."""
    from alliance.instruments import alliance_measures

    user = ctx.require("researcher", "admin")
    view = _psychometrics(ctx.db, user, ctx.signer.secret_key, instrument)
    return ctx.render("psychometrics.html", measures=alliance_measures(),
                      min_rows=MIN_REPORT_ROWS, **view)  # fmt: skip


@router.get("/research/psychometrics/report.html")
def psychometrics_download(instrument: str = "wai_sr", ctx: Ctx = Depends(get_ctx)) -> Response:
    """The same report as one HTML file with its charts."""
    from alliance.research.psychometrics.plots import report_html

    user = ctx.require("researcher", "admin")
    view = _psychometrics(ctx.db, user, ctx.signer.secret_key, instrument)
    if view["report"] is None:
        raise HTTPException(409, f"instrument: {view['error'] or 'too few complete answers'}")
    inst = view["instrument"]
    page = report_html(view["report"], f"{inst.short_name}: the clinic's answers", inst.scale.max)
    headers = {"Content-Disposition": f'attachment; filename="psychometrics-{inst.id}.html"'}
    return Response(page, media_type="text/html", headers=headers)


def columns_of(frame: pd.DataFrame) -> Sequence[str]:
    """Column names (for tests and the API description)."""
    return [str(c) for c in frame.columns]
