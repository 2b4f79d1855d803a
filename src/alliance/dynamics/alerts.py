"""Alerts for the therapist: why each fired, the numbers behind it, and what may help.

Kinds (severity in brackets):

* ``low_early_alliance`` [warning] — mean of sessions 1..3 below the instrument's cutoff for
  the score, or, where none is published, below the clinic's own lower percentile
  (default 10th) of early alliance in the data given.
* ``reliable_drop`` [warning] — the score fell reliably below the patient's running
  baseline (``rci_drop`` in :mod:`alliance.dynamics.ruptures`); needs norms.
* ``rupture`` [warning] / ``unrepaired_rupture`` [high] — a detected rupture whose repair
  window is still open / has closed without repair.
* ``self_reported_rupture`` [warning; info if rated resolved in the session].
* ``rating_discrepancy`` [warning] — patient and therapist ratings of the same session
  differ by at least ``discrepancy_sd`` clinic SDs of the patient score.
* ``below_cutoff`` [warning] — a session score below a published cutoff (e.g. SRS < 36).

Unverified keys: when the score's key status in the instrument file is ``unverified``,
score-based alerts are *not* produced unless ``allow_unverified=True``; the same holds for
self-reported ruptures (the post-session questionnaire's item order is unverified). The
returned frame says why in ``frame.attrs["notices"]`` and each alert carries the
``key_status`` of the score it rests on.

Guidance texts live in ``guidance.toml`` beside this module (our own words, with sources).

Example
-------
>>> import pandas as pd
>>> t = pd.DataFrame({"patient_id": ["a"] * 3 + ["b"] * 3, "session": [1, 2, 3] * 2,
...                   "srs_total": [30.0, 33.0, 38.0, 38.0, 39.0, 39.5]})
>>> out = compute_alerts(t, "srs_total", instrument="srs")
>>> sorted(set(out["kind"]))
['below_cutoff', 'low_early_alliance']
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any, Literal

import numpy as np
import pandas as pd

from alliance.dynamics._series import DynamicsInputError, prepare_series, require_columns
from alliance.dynamics.reliable_change import Z_95, Norms, estimate_norms, instrument_norms
from alliance.dynamics.ruptures import detect_ruptures
from alliance.dynamics.trajectories import summarize_trajectories
from alliance.instruments import Cutoff, Instrument, get_instrument

ALERT_COLUMNS = [
    "patient_id",
    "therapist_id",
    "session",
    "kind",
    "severity",
    "title",
    "reason",
    "value",
    "threshold",
    "score",
    "key_status",
    "guidance",
    "sources",
]


@dataclass(frozen=True)
class AlertSettings:
    """Tunable rules of :func:`compute_alerts` (defaults in brackets in each docstring)."""

    early_sessions: int = 3
    low_early_percentile: float = 10.0
    repair_within: int = 3
    rupture_methods: tuple[str, ...] | None = None  # None: rci_drop if norms, else strauss2006
    discrepancy_sd: float = 1.0
    z: float = Z_95
    resolved_at: float = 4.0
    allow_unverified: bool = False
    kinds: frozenset[str] = field(
        default_factory=lambda: frozenset(
            {
                "low_early_alliance",
                "reliable_drop",
                "rupture",
                "unrepaired_rupture",
                "self_reported_rupture",
                "rating_discrepancy",
                "below_cutoff",
            }
        )
    )


@cache
def load_guidance() -> dict[str, Any]:
    """The guidance file as a dict: ``{"sources": {...}, "kinds": {kind: {...}}}``.

    >>> sorted(load_guidance()["kinds"])[:2]
    ['below_cutoff', 'low_early_alliance']
    """
    text = (resources.files("alliance.dynamics") / "guidance.toml").read_text(encoding="utf-8")
    data = tomllib.loads(text)
    for kind, entry in data["kinds"].items():
        unknown = set(entry["sources"]) - set(data["sources"])
        if unknown:
            raise ValueError(f"guidance.toml: kind {kind} cites unknown {sorted(unknown)}")
    return data


@dataclass(frozen=True)
class _Context:
    sessions: pd.DataFrame
    score: str
    instrument: Instrument | None
    score_id: str | None
    metric: Literal["mean", "sum"] | None
    key_status: str
    settings: AlertSettings
    notices: list[str]


def compute_alerts(
    sessions: pd.DataFrame,
    score: str,
    *,
    instrument: Instrument | str | None = None,
    metric: Literal["mean", "sum"] | None = None,
    therapist_score: str | None = None,
    norms: Norms | None = None,
    estimate_norms_from_data: bool = False,
    reliability: float | None = None,
    settings: AlertSettings | None = None,
) -> pd.DataFrame:
    """All alerts for a long table of scored sessions, one row per alert.

    ``score`` is the patient's score column (e.g. ``wai_sr_total``); ``instrument`` (an id
    or definition) supplies cutoffs, norms and key status, and is inferred from the column
    name when omitted. ``therapist_score`` names the therapist's rating of the same
    sessions on the same metric. Norms for reliable change come from ``norms``, else the
    instrument file, else (only when ``estimate_norms_from_data``) the data themselves.
    Columns: see :data:`ALERT_COLUMNS`; ``frame.attrs["notices"]`` lists what was skipped.
    """
    cfg = settings or AlertSettings()
    require_columns(sessions, ["patient_id", "session", score])
    ctx = _context(sessions, score, instrument, metric, cfg)
    norms = norms or _norms(ctx, estimate_norms_from_data, reliability)
    frames: list[pd.DataFrame] = []
    score_ok = ctx.key_status != "unverified" or cfg.allow_unverified
    if not score_ok:
        ctx.notices.append(
            f"score {score!r} rests on an unverified key: score-based alerts are off "
            "(pass allow_unverified=True to turn them on)"
        )
    else:
        frames += [_low_early(ctx), _below_cutoff(ctx)]
        frames += _rupture_alerts(ctx, norms)
        if therapist_score is not None:
            frames.append(_discrepancy(ctx, therapist_score))
    frames.append(_self_reported(ctx))
    return _finish(frames, ctx)


# -- context --------------------------------------------------------------------------------
def _context(
    sessions: pd.DataFrame,
    score: str,
    instrument: Instrument | str | None,
    metric: Literal["mean", "sum"] | None,
    cfg: AlertSettings,
) -> _Context:
    inst = _resolve_instrument(score, instrument)
    score_id = None
    key_status = "not from an instrument"
    if inst is not None:
        score_id = score.removeprefix(f"{inst.id}_")
        try:
            key_status = inst.get_score(score_id).key_status
        except KeyError:
            score_id = None
    used_metric = metric or (inst.default_metric if inst is not None else None)
    return _Context(sessions, score, inst, score_id, used_metric, key_status, cfg, [])


def _resolve_instrument(score: str, instrument: Instrument | str | None) -> Instrument | None:
    if isinstance(instrument, Instrument):
        return instrument
    if isinstance(instrument, str):
        return get_instrument(instrument)
    from alliance.instruments import list_instruments

    matches = [i for i in list_instruments() if score.startswith(f"{i.id}_")]
    return max(matches, key=lambda i: len(i.id)) if matches else None


def _norms(ctx: _Context, estimate: bool, reliability: float | None) -> Norms | None:
    found = None
    if ctx.instrument is not None and ctx.score_id is not None:
        found = instrument_norms(ctx.instrument, ctx.score_id, ctx.metric)
    if found is None and estimate:
        items = _item_columns(ctx)
        try:
            found = estimate_norms(
                ctx.sessions, ctx.score, item_columns=items or None, reliability=reliability
            )
        except DynamicsInputError as exc:
            ctx.notices.append(f"norms could not be estimated: {exc}")
    if found is None and not estimate:
        ctx.notices.append(
            "no published norms (SD, reliability) for this score: reliable-drop alerts are "
            "off; estimate them from the data on request"
        )
    return found


def _item_columns(ctx: _Context) -> list[str]:
    if ctx.instrument is None or ctx.score_id is None:
        return []
    numbers = ctx.instrument.score_items(ctx.score_id)
    cols = [f"{ctx.instrument.id}_{n}" for n in numbers]
    return [c for c in cols if c in ctx.sessions.columns]


def _cutoff(ctx: _Context) -> Cutoff | None:
    if ctx.instrument is None or ctx.score_id is None:
        return None
    for cut in ctx.instrument.cutoffs:
        if cut.score == ctx.score_id and cut.metric == ctx.metric:
            return cut
    return None


def _flagged(values: np.ndarray, cut: Cutoff) -> np.ndarray:
    ops = {
        "below": values < cut.value,
        "below_or_equal": values <= cut.value,
        "above": values > cut.value,
        "above_or_equal": values >= cut.value,
    }
    return np.asarray(ops[cut.flag_when])


# -- alert kinds ------------------------------------------------------------------------------
def _alerts(
    ctx: _Context,
    kind: str,
    patient: Any,
    session: Any,
    reason: Any,
    value: Any,
    threshold: Any,
    severity: Any = None,
) -> pd.DataFrame:
    guide = load_guidance()["kinds"][kind]
    frame = pd.DataFrame(
        {
            "patient_id": patient,
            "session": session,
            "kind": kind,
            "severity": guide["severity"] if severity is None else severity,
            "reason": reason,
            "value": value,
            "threshold": threshold,
        }
    )
    return frame


def _low_early(ctx: _Context) -> pd.DataFrame:
    if "low_early_alliance" not in ctx.settings.kinds:
        return pd.DataFrame()
    n = ctx.settings.early_sessions
    summary = summarize_trajectories(ctx.sessions, ctx.score, early_sessions=n)
    summary = summary[summary["early_n"] > 0]
    cut = _cutoff(ctx)
    early = summary["early_alliance"].to_numpy(dtype=float)
    if cut is not None:
        flagged = _flagged(early, cut)
        basis = f"the {cut.flag_when.replace('_', ' ')} {cut.value:g} cutoff ({cut.source})"
        threshold = cut.value
    else:
        if len(summary) < 10:
            ctx.notices.append("low early alliance: fewer than 10 patients, no clinic percentile")
            return pd.DataFrame()
        pct = ctx.settings.low_early_percentile
        threshold = float(np.percentile(early, pct))
        flagged = early < threshold
        basis = f"this clinic's {pct:g}th percentile ({threshold:.2f}, {len(summary)} patients)"
    hit = summary[flagged]
    at = _early_session(ctx, hit["patient_id"], n)
    reason = [
        f"Mean {ctx.score} over sessions 1-{n} ({k} scored) is {v:.2f}, below {basis}."
        for v, k in zip(hit["early_alliance"], hit["early_n"], strict=True)
    ]
    return _alerts(
        ctx, "low_early_alliance", hit["patient_id"], at, reason, hit["early_alliance"], threshold
    )


def _early_session(ctx: _Context, patients: pd.Series, n: int) -> np.ndarray:
    """Session at which the early mean became known: the last scored session <= n."""
    t = ctx.sessions[["patient_id", "session", ctx.score]].dropna()
    t = t[t["session"] <= n]
    last = t.groupby("patient_id", sort=False)["session"].max()
    return np.asarray(last.reindex(patients.to_numpy()).to_numpy())


def _below_cutoff(ctx: _Context) -> pd.DataFrame:
    cut = _cutoff(ctx)
    if cut is None or "below_cutoff" not in ctx.settings.kinds:
        return pd.DataFrame()
    s = prepare_series(ctx.sessions, ctx.score)
    hit = np.flatnonzero(_flagged(s.x, cut))
    values = s.x[hit]
    reason = [
        f"{ctx.score} = {v:g}, {cut.flag_when.replace('_', ' ')} the cutoff {cut.value:g} "
        f"({cut.meaning} Source: {cut.source})"
        for v in values
    ]
    return _alerts(
        ctx, "below_cutoff", s.patients[s.code[hit]], s.session[hit], reason, values, cut.value
    )


def _rupture_alerts(ctx: _Context, norms: Norms | None) -> list[pd.DataFrame]:
    cfg = ctx.settings
    methods = list(cfg.rupture_methods or (["rci_drop"] if norms else ["strauss2006"]))
    if norms is None and "rci_drop" in methods:
        methods.remove("rci_drop")
    wanted = set(methods) | ({"rci_drop"} if norms and "reliable_drop" in cfg.kinds else set())
    if not wanted:
        return []
    events = detect_ruptures(
        ctx.sessions,
        ctx.score,
        sorted(wanted),
        norms=norms,
        z=cfg.z,
        repair_within=cfg.repair_within,
    )
    out = []
    if norms is not None and "reliable_drop" in cfg.kinds:
        drops = events[events["method"] == "rci_drop"]
        reason = [
            f"{ctx.score} = {a:.2f} at session {s}, {d:.2f} below the running baseline "
            f"{b:.2f}; reliable change needs {t:.2f} (z {cfg.z:.2f} x S_diff {norms.s_diff:.3f}; "
            f"norms: {norms.source})."
            for a, s, d, b, t in zip(
                drops["score_at"],
                drops["rupture_session"],
                drops["drop"],
                drops["score_before"],
                drops["threshold"],
                strict=True,
            )
        ]
        out.append(
            _alerts(
                ctx,
                "reliable_drop",
                drops["patient_id"],
                drops["rupture_session"],
                reason,
                drops["drop"],
                drops["threshold"],
            )
        )
    chosen = events[events["method"].isin(methods)]
    out.append(_open_ruptures(ctx, chosen[chosen["repaired"] == "not yet"]))
    out.append(_unrepaired(ctx, chosen[chosen["repaired"] == "no"]))
    return out


def _open_ruptures(ctx: _Context, ev: pd.DataFrame) -> pd.DataFrame:
    if "rupture" not in ctx.settings.kinds:
        return pd.DataFrame()
    reason = [
        f"{ctx.score} fell by {d:.2f} (from {b:.2f} to {a:.2f}) at session {s} "
        f"({m}: threshold {t:.2f}); no repair yet, window open until session "
        f"{s + ctx.settings.repair_within}."
        for d, b, a, s, m, t in zip(
            ev["drop"],
            ev["score_before"],
            ev["score_at"],
            ev["rupture_session"],
            ev["method"],
            ev["threshold"],
            strict=True,
        )
    ]
    return _alerts(
        ctx, "rupture", ev["patient_id"], ev["rupture_session"], reason, ev["drop"], ev["threshold"]
    )


def _unrepaired(ctx: _Context, ev: pd.DataFrame) -> pd.DataFrame:
    if "unrepaired_rupture" not in ctx.settings.kinds:
        return pd.DataFrame()
    w = ctx.settings.repair_within
    reason = [
        f"{ctx.score} fell by {d:.2f} (from {b:.2f} to {a:.2f}) at session {s} ({m}) and "
        f"did not recover within {w} sessions."
        for d, b, a, s, m in zip(
            ev["drop"],
            ev["score_before"],
            ev["score_at"],
            ev["rupture_session"],
            ev["method"],
            strict=True,
        )
    ]
    return _alerts(
        ctx,
        "unrepaired_rupture",
        ev["patient_id"],
        ev["rupture_session"] + w,
        reason,
        ev["drop"],
        ev["threshold"],
    )


def _discrepancy(ctx: _Context, therapist_score: str) -> pd.DataFrame:
    if "rating_discrepancy" not in ctx.settings.kinds:
        return pd.DataFrame()
    require_columns(ctx.sessions, [therapist_score])
    t = ctx.sessions[["patient_id", "session", ctx.score, therapist_score]].dropna()
    if len(t) < 3:
        return pd.DataFrame()
    sd = float(t[ctx.score].std(ddof=1))
    limit = ctx.settings.discrepancy_sd * sd
    gap = t[therapist_score] - t[ctx.score]
    hit = t[(gap.abs() >= limit) & (limit > 0)]
    gap = gap[hit.index]
    reason = [
        f"Therapist rated {th:.2f}, patient {pa:.2f}: the therapist's rating is "
        f"{abs(g):.2f} {'higher' if g > 0 else 'lower'}; the alert needs "
        f"{ctx.settings.discrepancy_sd:g} SD of {ctx.score} ({limit:.2f})."
        for th, pa, g in zip(hit[therapist_score], hit[ctx.score], gap, strict=True)
    ]
    return _alerts(
        ctx, "rating_discrepancy", hit["patient_id"], hit["session"], reason, gap.to_numpy(), limit
    )


def _self_reported(ctx: _Context) -> pd.DataFrame:
    if "self_reported_rupture" not in ctx.settings.kinds:
        return pd.DataFrame()
    if not any(c in ctx.sessions.columns for c in ("psq_rupture", "psq_1")):
        return pd.DataFrame()
    if not ctx.settings.allow_unverified:
        ctx.notices.append(
            "post-session rupture answers present, but the questionnaire's key is unverified: "
            "self-reported rupture alerts are off (allow_unverified=True turns them on)"
        )
        return pd.DataFrame()
    ev = detect_ruptures(
        ctx.sessions,
        None,
        "self_report",
        resolved_at=ctx.settings.resolved_at,
        repair_within=ctx.settings.repair_within,
    )
    resolved = (ev["repaired"] == "yes") & (ev["repair_session"] == ev["rupture_session"])
    reason = [
        f"Rupture reported after session {s}"
        + (f" (intensity {i:g} of 5)" if pd.notna(i) else "")
        + ("; rated resolved in the session." if r else "; not rated resolved in the session.")
        for s, i, r in zip(ev["rupture_session"], ev["intensity"], resolved, strict=True)
    ]
    severity = np.where(resolved, "info", "warning")
    frame = _alerts(
        ctx,
        "self_reported_rupture",
        ev["patient_id"],
        ev["rupture_session"],
        reason,
        ev["intensity"],
        np.nan,
        severity,
    )
    return frame.assign(key_status="unverified")


def _finish(frames: list[pd.DataFrame], ctx: _Context) -> pd.DataFrame:
    frames = [f for f in frames if len(f)]
    guide = load_guidance()
    if frames:
        out = pd.concat(frames, ignore_index=True)
    else:
        out = pd.DataFrame({c: pd.Series(dtype=object) for c in ALERT_COLUMNS})
    if "key_status" not in out.columns:
        out["key_status"] = ctx.key_status
    out["key_status"] = out["key_status"].fillna(ctx.key_status)
    out["score"] = ctx.score
    out["title"] = out["kind"].map(lambda k: guide["kinds"][k]["title"])
    out["guidance"] = out["kind"].map(lambda k: guide["kinds"][k]["guidance"])
    out["sources"] = out["kind"].map(
        lambda k: " | ".join(guide["sources"][s] for s in guide["kinds"][k]["sources"])
    )
    out["therapist_id"] = _therapists(ctx.sessions, out["patient_id"])
    order = {"high": 0, "warning": 1, "info": 2}
    out = out.assign(_rank=out["severity"].map(order))
    out = out.sort_values(["patient_id", "session", "_rank", "kind"], kind="stable")
    out = out[ALERT_COLUMNS].reset_index(drop=True)
    out.attrs["notices"] = list(ctx.notices)
    return out


def _therapists(sessions: pd.DataFrame, patients: pd.Series) -> pd.Series:
    if "therapist_id" not in sessions.columns or patients.empty:
        return pd.Series([pd.NA] * len(patients), index=patients.index, dtype=object)
    first = sessions.drop_duplicates("patient_id").set_index("patient_id")["therapist_id"]
    return pd.Series(first.reindex(patients.to_numpy()).to_numpy(), index=patients.index)
