"""Fill a fresh database with a simulated clinic for ``alliance demo``.

Users: one admin, one supervisor per two therapists, the therapists, one researcher.
Patients, sessions and answers come from :func:`alliance.simulate.simulate_clinic`;
scores from the scoring core. Then the analytics run once for every patient, as the clinic
runs them after each submission (:func:`alliance.web.monitoring.refresh_patients`): the
clinic's norms are frozen from the seeded first sessions, and every session is judged
prospectively, so the episodes and statuses are those the clinic would have reached had
the answers come in one session at a time. Answers are dated on their session's day; the
expected-trajectory model is fitted as of the middle date of the sessions on the answers
given by then, as the clinic's worker would have done, so the later half of the sessions
carries expected ranges and ``below_expected`` episodes (the worker refits it at start-up).
"""

from __future__ import annotations

import secrets
import warnings
from collections.abc import Mapping
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import insert, select, update

from alliance.instruments import get_instrument
from alliance.store import repo
from alliance.store.db import Database
from alliance.store.models import Patient, Response, ScheduleEntry, TherapySession, User
from alliance.web import monitoring
from alliance.web.security import hash_password

DEMO_PASSWORD = "demo-password"
CLIENT_FORMS = {"wai_sr": "client", "psq": "patient", "srs": "client"}


def _simulate(
    therapists: int, patients: int, seed: int, sessions: tuple[int, int] | None
) -> pd.DataFrame:
    from alliance.simulate import simulate_clinic

    per_therapist = max(1, round(patients / max(therapists, 1)))
    lengths = {"min_sessions": sessions[0], "max_sessions": sessions[1]} if sessions else {}
    clinic = simulate_clinic(
        therapists,
        per_therapist,
        therapist_form=True,
        post_session_questions=True,
        seed=seed,
        **lengths,  # type: ignore[arg-type]
    )
    table: pd.DataFrame = clinic.sessions
    return table


def rating_blocks(sessions: pd.DataFrame) -> list[tuple[str, str, str, list[str], list[str]]]:
    """(instrument, form, respondent, source columns, item columns) found in the table."""
    blocks = []
    for instrument_id in ("wai_sr", "srs", "psq"):
        inst = get_instrument(instrument_id)
        items = list(inst.item_columns)
        if all(c in sessions.columns for c in items):
            blocks.append((instrument_id, CLIENT_FORMS[instrument_id], "client", items, items))
        for form in inst.forms:
            if form.respondent != "therapist":
                continue
            for prefix in (f"t_{instrument_id}_", f"{instrument_id}_therapist_"):
                cols = [f"{prefix}{n}" for n in range(1, len(items) + 1)]
                if all(c in sessions.columns for c in cols):
                    blocks.append((instrument_id, form.id, "therapist", cols, items))
                    break
    return blocks


def _users(db: Database, therapists: int) -> tuple[dict[str, list[str]], list[int]]:
    password = hash_password(DEMO_PASSWORD)
    logins: dict[str, list[str]] = {"admin": ["admin"], "supervisor": [], "therapist": []}
    therapist_ids = []
    with db.write() as s:
        repo.create_user(s, "admin", password, "admin", "Clinic admin")
        supervisors = []
        for k in range(max(1, (therapists + 1) // 2)):
            sup = repo.create_user(
                s, f"supervisor{k + 1}", password, "supervisor", f"Supervisor {k + 1}"
            )
            supervisors.append(sup)
            logins["supervisor"].append(sup.username)
        for k in range(therapists):
            t = repo.create_user(
                s,
                f"therapist{k + 1}",
                password,
                "therapist",
                f"Therapist {k + 1}",
                supervisors[k // 2].id,
            )
            therapist_ids.append(t.id)
            logins["therapist"].append(t.username)
        repo.create_user(s, "researcher", password, "researcher", "Researcher")
        logins["researcher"] = ["researcher"]
    return logins, therapist_ids


def _score_block(
    frame: pd.DataFrame, instrument_id: str, form: str, source: list[str], items: list[str]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Item table (renamed to item columns) and the core's scores for one rating block."""
    answers = frame[source].set_axis(items, axis=1)
    inst = get_instrument(instrument_id)
    if not inst.get_form(form).scorable:
        from alliance.simulate import score_therapist_form

        unkeyed = pd.DataFrame(index=answers.index)
        unkeyed[f"{instrument_id}_total"] = score_therapist_form(
            answers.set_axis([f"t_{c}" for c in items], axis=1), instrument_id
        )
        unkeyed[f"{instrument_id}_status"] = "total only: all-item mean, no published key"
        return answers, unkeyed
    from alliance.scoring import score

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scored = score(answers, instrument_id, form=form, errors="flag")
    return answers, scored.drop(columns=[c for c in scored.columns if c in items])


def _jsonable(row: Mapping[Any, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in row.items():
        if isinstance(value, float | np.floating) and np.isnan(value):
            out[str(key)] = None
        elif isinstance(value, np.generic):
            out[str(key)] = value.item()
        else:
            out[str(key)] = value
    return out


def fill_demo(
    db: Database,
    therapists: int = 4,
    patients: int = 40,
    seed: int = 7,
    sessions_per_patient: tuple[int, int] | None = None,
    analytics: bool = True,
) -> dict[str, list[str]]:
    """Create users, patients, sessions and scored answers, then run the analytics for
    every patient (unless ``analytics`` is False: the patients stay stale). Returns logins.

    ``sessions_per_patient``: (fewest, most) sessions of a patient (simulator default).
    """
    sessions = _simulate(therapists, patients, seed, sessions_per_patient)
    logins, therapist_ids = _users(db, therapists)
    blocks = rating_blocks(sessions)
    sim_therapists = sorted(sessions["therapist_id"].unique(), key=str)
    therapist_of = {t: therapist_ids[i % len(therapist_ids)] for i, t in enumerate(sim_therapists)}
    today = datetime.now(UTC).date()
    with db.write() as s:
        patient_ids: dict[Any, int] = {}
        for k, (pid, group) in enumerate(sessions.groupby("patient_id", sort=True)):
            patient = Patient(
                code=f"P{k + 1:03d}",
                research_id=secrets.token_hex(8),
                therapist_id=therapist_of[group["therapist_id"].iloc[0]],
            )
            s.add(patient)
            s.flush()
            patient_ids[pid] = patient.id
            for instrument_id, form, respondent, _src, _items in blocks:
                s.add(
                    ScheduleEntry(
                        patient_id=patient.id,
                        instrument_id=instrument_id,
                        form_id=form,
                        respondent=respondent,
                        every=1,
                    )
                )
        s.flush()
        sessions = sessions.sort_values(["patient_id", "session"]).reset_index(drop=True)
        last = sessions.groupby("patient_id")["session"].transform("max")
        offsets = (last - sessions["session"]) * 7
        if "date" in sessions.columns:
            shift = today - pd.Timestamp(sessions["date"].max()).date()
            dates = [pd.Timestamp(d).date() + shift for d in sessions["date"]]
        else:
            dates = [today - timedelta(days=int(o)) for o in offsets]
        session_rows = [
            {"patient_id": patient_ids[p], "number": int(n), "date": d}
            for p, n, d in zip(sessions["patient_id"], sessions["session"], dates, strict=True)
        ]
        s.execute(insert(TherapySession), session_rows)
        ids = {
            (row.patient_id, row.number): row.id
            for row in s.execute(
                select(TherapySession.id, TherapySession.patient_id, TherapySession.number)
            )
        }
        responses = []
        for instrument_id, form, respondent, source, items in blocks:
            answers, scores = _score_block(sessions, instrument_id, form, source, items)
            answered = answers.notna().any(axis=1)
            for i in np.flatnonzero(answered.to_numpy()):
                pid = patient_ids[sessions["patient_id"].iloc[i]]
                answered_on = datetime.combine(dates[i], time(12), tzinfo=UTC)
                responses.append(
                    {
                        "session_id": ids[(pid, int(sessions["session"].iloc[i]))],
                        "patient_id": pid,
                        "instrument_id": instrument_id,
                        "form_id": form,
                        "respondent": respondent,
                        "language": "en",
                        "items": _jsonable(answers.iloc[i].to_dict()),
                        "scores": _jsonable(scores.iloc[i].to_dict()),
                        "source": "demo" if respondent == "client" else "therapist",
                        "submitted_at": answered_on,
                    }
                )
        if responses:
            s.execute(insert(Response), responses)
        s.execute(update(Patient).values(alerts_stale=True))
        repo.audit(
            s, None, "create", "demo-data", actor="demo", detail=f"{len(responses)} responses"
        )
    if analytics:
        middle = sorted(dates)[len(dates) // 2]
        monitoring.refit_expected(db, now=datetime.combine(middle, time(0), tzinfo=UTC))
        monitoring.refresh_patients(db)
    _ = date, User
    return logins
