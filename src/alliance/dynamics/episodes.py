"""Alert episodes: one alert per event or ongoing condition, updated while it lasts.

A therapist acts on a situation, not on every session that shows it. So an alert here is an
**episode**: it opens at the session where the event happens or the condition starts, keeps
its "since session N", updates its numbers and its ``last_session`` while the condition
lasts, and closes by itself when the condition ends, with the reason ("repaired at session
9: back to 4.10"). Severity never falls within an episode; it rises with size and
persistence. With ``prospective=True`` (the default, and what the clinic uses) every
session is judged with the data up to and including it, plus fixed reference values (the
norms), so feeding sessions one at a time gives exactly the episodes of the full run.

Kinds and their rules (thresholds are :class:`~alliance.dynamics.alerts.AlertSettings`):

``rupture``
    A drop found by the rupture method (``rci_drop``: reliably below the patient's running
    baseline, Jacobson & Truax 1991; needs norms). Opens *warning*; **high** when the fall
    is at least twice the reliable-change threshold, reaches the floor of the scale, falls
    again by that threshold (or to the floor) while open, or is not repaired within
    ``repair_within`` sessions. Closes when repaired (the method's repair rule). A drop
    while an episode is open escalates it instead of opening another.
``below_cutoff``
    The score is below a published cutoff (SRS < 36). Consecutive sessions below form one
    episode; **high** from the ``persistent_sessions``-th session in a row; closes at the
    first session at or above the cutoff. Where a cutoff exists it also covers low early
    alliance, which is not raised twice.
``low_early_alliance``
    Without a cutoff: the mean of sessions 1..``early_sessions`` is below the clinic's
    10th percentile, estimated as ``mean - 1.2816 x SD`` of the norms (normal
    approximation; the norms' mean and SD of first sessions). Judged at the first scored
    session numbered ``early_sessions`` or later; closes at the first later score at or
    above that threshold. Warning.
``rating_discrepancy``
    Patient and therapist ratings of a session differ by at least ``discrepancy_sd`` norm
    SDs; a session with only one rating keeps the episode as it was; **high** when the gap
    reaches twice that. Closes when the ratings agree again. It rests on *both* scores'
    keys: a therapist total without a published key (the WAI-SR and WAI-S therapist forms)
    is unverified, so the episode is off unless unverified alerts are allowed.
``self_reported_rupture``
    The post-session question says a rupture occurred. *info* and closed at once when rated
    resolved in the session; otherwise warning, **high** when the intensity is 4 or more of
    5 or a rupture is reported again while open; closes at the first later session with no
    rupture or one rated resolved.
``below_expected``
    The score is under the lower edge of the range the clinic's own growth model expects
    for this patient's session *given their earlier sessions* (the ``expected_lower``
    column, from :func:`alliance.research.multilevel.expected.expected_band`; the clinic
    stores each session's edge the day it is analysed). By design about one session in
    ten falls under a 10 % edge, so one session opens nothing: the episode opens at the
    ``expected_sessions``-th session in a row under it (warning), is **high** from the
    ``persistent_sessions``-th, and closes at the first session at or above its edge.
    Sessions an open rupture, below-cutoff or low-early-alliance episode already covers
    do not count (the same fall is not raised twice). Expected-response signals of this
    kind come from outcome monitoring (Finch, Lambert & Schaalje 2001).
``ceiling_break``
    After ``ceiling_sessions`` or more sessions at the top of the scale, the first lower
    score (Meier & Feeley 2022: ceiling effects on client-rated alliance are common and
    grow over sessions, so at the ceiling a small dip is the informative signal). Warning,
    not raised where a rupture opened at the same session; closes when the score is back at
    the top.
``signal:<instrument>:<id>``
    A post-session answer that an instrument file marks as a signal (``[[signals]]``), with
    the file's own title, severity, guidance and sources; closes at the first later answer
    that is not a signal answer.

Straight-lining (the same answer on every item; Meier 2022 found it frequent on alliance
measures) opens nothing by itself: it may be a careless answer or a truly uniform view.
Where the session that opened an episode was straight-lined, the reason says so.

Example
-------
>>> import textwrap
>>> import pandas as pd
>>> from alliance.dynamics import Norms
>>> t = pd.DataFrame({"patient_id": "a", "session": range(1, 9),
...                   "wai_sr_total": [4.0, 4.1, 3.9, 4.0, 3.2, 3.3, 4.0, 4.1]})
>>> ep = alert_episodes(t, "wai_sr_total", norms=Norms(0.6, 0.9, "example"))
>>> ep[["kind", "opened_session", "closed_session", "severity"]].to_dict("records")
[{'kind': 'rupture', 'opened_session': 5, 'closed_session': 7, 'severity': 'warning'}]
>>> print(textwrap.fill(ep["reason"].iloc[0], 80))
WAI-SR total fell from 4.00 to 3.20 at session 5, more than the 0.62 that
measurement error explains.
>>> ep["close_reason"].iloc[0]
'repaired at session 7: back to 4.00'
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

from alliance.dynamics._series import (
    DynamicsInputError,
    FloatArray,
    IntArray,
    Series,
    prepare_series,
    require_columns,
)
from alliance.dynamics.alerts import (
    AlertSettings,
    cutoff_of,
    flagged,
    key_status_of,
    load_guidance,
    resolve_instrument,
    score_id_of,
    score_label,
    score_range,
)
from alliance.dynamics.reliable_change import Norms, reliable_drop_threshold
from alliance.dynamics.ruptures import CRITERIA, detect_ruptures
from alliance.instruments import Instrument, list_instruments

EPISODE_COLUMNS = [
    "patient_id",
    "therapist_id",
    "kind",
    "opened_session",
    "last_session",
    "closed_session",
    "state",
    "severity",
    "escalated_session",
    "title",
    "reason",
    "detail",
    "close_reason",
    "method",
    "value",
    "threshold",
    "score",
    "key_status",
    "guidance",
    "sources",
]
SEVERITIES = ("info", "warning", "high")
SEVERITY_RANK = {name: rank for rank, name in enumerate(SEVERITIES)}
INFO, WARNING, HIGH = 0, 1, 2
Z_10TH_PERCENTILE = 1.2815515655446004  # standard normal quantile at 0.10
_EPS = 1e-9
_NEVER = 10**6  # repair window meaning "whenever it comes"


def workflow_status(current: str, stored_severity: str, new_severity: str) -> str:
    """The clinician's status of an episode after new data: an episode that escalated above
    the severity it had is ``"open"`` again (it needs a new look), otherwise unchanged.

    >>> workflow_status("acknowledged", "warning", "high")
    'open'
    >>> workflow_status("acknowledged", "warning", "warning")
    'acknowledged'
    """
    rose = SEVERITY_RANK.get(new_severity, 0) > SEVERITY_RANK.get(stored_severity, 0)
    return "open" if rose else current


@dataclass
class _Ctx:
    sessions: pd.DataFrame
    score: str
    inst: Instrument | None
    score_id: str | None
    metric: Literal["mean", "sum"] | None
    key_status: str
    cfg: AlertSettings
    norms: Norms | None
    prospective: bool
    series: Series
    notices: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return score_label(self.inst, self.score_id, self.score)

    @cached_property
    def straight_lined(self) -> npt.NDArray[np.bool_]:
        """Per series row: every item of the score answered with the same value."""
        return _straight_lined(self)


@dataclass
class _Parts:
    """Episodes of one kind as columns (one entry per episode)."""

    patient: list[Any] = field(default_factory=list)
    kind: list[str] = field(default_factory=list)
    opened: list[int] = field(default_factory=list)
    last: list[int] = field(default_factory=list)
    closed: list[float] = field(default_factory=list)
    severity: list[int] = field(default_factory=list)
    escalated: list[float] = field(default_factory=list)
    reason: list[str] = field(default_factory=list)
    detail: list[str] = field(default_factory=list)
    close_reason: list[str] = field(default_factory=list)
    method: list[str] = field(default_factory=list)
    value: list[float] = field(default_factory=list)
    threshold: list[float] = field(default_factory=list)

    def frame(self, **constant: Any) -> pd.DataFrame:
        data = {
            "patient_id": self.patient,
            "kind": self.kind,
            "opened_session": self.opened,
            "last_session": self.last,
            "closed_session": self.closed,
            "severity": self.severity,
            "escalated_session": self.escalated,
            "reason": self.reason,
            "detail": self.detail,
            "close_reason": self.close_reason,
            "method": self.method,
            "value": self.value,
            "threshold": self.threshold,
        }
        out = pd.DataFrame(data)
        for name, value in constant.items():
            out[name] = value
        return out


def alert_episodes(
    sessions: pd.DataFrame,
    score: str,
    *,
    instrument: Instrument | str | None = None,
    metric: Literal["mean", "sum"] | None = None,
    therapist_score: str | None = None,
    norms: Norms | None = None,
    settings: AlertSettings | None = None,
    prospective: bool = True,
    expected_lower: str | None = None,
) -> pd.DataFrame:
    """Alert episodes of a long table of scored sessions; one row per episode.

    ``score`` is the patient's score column (e.g. ``wai_sr_total``); ``instrument`` (id or
    definition, inferred from the column name when omitted) gives cutoffs, the scale and the
    key status; ``therapist_score`` the therapist's rating of the same sessions on the same
    metric; ``norms`` the reference SD and reliability (measurement error) and, for low
    early alliance, the reference mean. ``prospective=False`` lets clinic-level thresholds
    come from the whole table (research use; then earlier decisions can change with later
    data). ``expected_lower`` names the column with each session's lower edge of its
    expected range (``below_expected``; NaN where the session has none). Columns:
    :data:`EPISODE_COLUMNS`; ``attrs["notices"]`` says what was off and why.
    """
    cfg = settings or AlertSettings()
    require_columns(sessions, ["patient_id", "session", score])
    inst = resolve_instrument(score, instrument)
    score_id = score_id_of(inst, score)
    used_metric = metric or (inst.default_metric if inst is not None else None)
    ctx = _Ctx(
        sessions,
        score,
        inst,
        score_id,
        used_metric,
        key_status_of(inst, score),
        cfg,
        norms,
        prospective,
        prepare_series(sessions, score),
    )
    frames: list[pd.DataFrame] = []
    if ctx.key_status == "unverified" and not cfg.allow_unverified:
        ctx.notices.append(
            f"score {score!r} rests on an unverified key: score-based alerts are off "
            "(allow unverified alerts to turn them on)"
        )
    else:
        ruptures = _rupture_episodes(ctx)
        frames += [ruptures, _cutoff_episodes(ctx), _low_early_episodes(ctx)]
        frames.append(_ceiling_episodes(ctx, ruptures))
        if expected_lower is not None:
            frames.append(_expected_episodes(ctx, expected_lower, frames[:3]))
        if therapist_score is not None:
            frames.append(_discrepancy_episodes(ctx, therapist_score))
    frames.append(_self_report_episodes(ctx))
    frames += _signal_episodes(ctx)
    return _finish(frames, ctx)


# -- shared pieces ------------------------------------------------------------------------
def _row_of(s: Series, patients: pd.Series, sessions: pd.Series) -> IntArray:
    """Row in the series of each (patient label, session) pair."""
    code = pd.Index(s.patients).get_indexer(pd.Index(patients))
    span = int(s.session.max()) + 2 if s.session.size else 1
    keys = s.code * span + s.session
    wanted = code * span + sessions.to_numpy(dtype=np.int64)
    return np.asarray(np.searchsorted(keys, wanted), dtype=np.int64)


def _runs(s: Series, holds: npt.NDArray[np.bool_]) -> tuple[IntArray, IntArray, IntArray]:
    """Maximal runs of consecutive scored rows where ``holds``, within each patient.

    Returns the first row, the last row, and the row that ends the run (the next row of
    the same patient, or -1 while the run lasts to the patient's latest session).
    """
    first = s.first_in_group()
    prev = np.concatenate(([False], holds[:-1])) & ~first
    starts = np.flatnonzero(holds & ~prev)
    nxt_same = np.concatenate((~first[1:], [False]))
    nxt = np.concatenate((holds[1:], [False])) & nxt_same
    ends = np.flatnonzero(holds & ~nxt)
    close = np.where(nxt_same[ends], ends + 1, -1)
    return starts, ends, close.astype(np.int64)


def _carry_forward(s: Series, known: FloatArray) -> FloatArray:
    """Within each patient, replace NaN with the last known value (NaN before the first)."""
    frame = pd.Series(known)
    return np.asarray(frame.groupby(s.code).ffill().to_numpy(dtype=np.float64))


def _merge_events(patients: np.ndarray, sessions: np.ndarray, ends: np.ndarray) -> list[list[int]]:
    """Group events (sorted by patient and session) into episodes: an event that happens
    while an earlier one of the same patient is still open (before its end; NaN = open)
    joins it. The episode ends when every event in it has ended."""
    groups: list[list[int]] = []
    current_end = np.nan  # end of the episode being built; NaN while it has none
    for i in range(len(sessions)):
        same = bool(groups) and patients[groups[-1][0]] == patients[i]
        if same and (np.isnan(current_end) or sessions[i] < current_end):
            groups[-1].append(i)
            open_still = np.isnan(current_end) or np.isnan(ends[i])
            current_end = np.nan if open_still else max(current_end, ends[i])
        else:
            groups.append([i])
            current_end = ends[i]
    return groups


def _straight_lined(ctx: _Ctx) -> npt.NDArray[np.bool_]:
    """Per series row: every item of the score answered with the same value."""
    out = np.zeros(ctx.series.x.size, dtype=bool)
    if ctx.inst is None or ctx.score_id is None:
        return out
    columns = [f"{ctx.inst.id}_{n}" for n in ctx.inst.score_items(ctx.score_id)]
    if len(columns) < 2 or not set(columns) <= set(ctx.sessions.columns):
        return out
    items = ctx.sessions[columns].to_numpy(dtype=np.float64)[ctx.series.rows]
    complete = ~np.isnan(items).any(axis=1)
    same = np.all(items == items[:, :1], axis=1)
    return np.asarray(complete & same)


def _straight_note(ctx: _Ctx, row: int, lined: npt.NDArray[np.bool_]) -> str:
    if not lined[row]:
        return ""
    n = len(ctx.inst.score_items(ctx.score_id)) if ctx.inst and ctx.score_id else 0
    return f" All {n} answers that session were the same (straight-lining)."


# -- ruptures -----------------------------------------------------------------------------
def _rupture_episodes(ctx: _Ctx) -> pd.DataFrame:
    cfg, s = ctx.cfg, ctx.series
    if "rupture" not in cfg.kinds:
        return pd.DataFrame()
    method = cfg.rupture_method or ("rci_drop" if ctx.norms is not None else None)
    if method is None:
        ctx.notices.append(
            "no norms (SD, reliability) for this score: drops are not judged, because the "
            "score's measurement error is unknown"
        )
        return pd.DataFrame()
    events = detect_ruptures(
        ctx.sessions,
        ctx.score,
        method,
        norms=ctx.norms,
        z=cfg.z,
        repair_within=_NEVER,
        gumz_sd=cfg.gumz_sd,
        prospective=ctx.prospective,
    )
    if events.empty:
        return pd.DataFrame()
    rows = _row_of(s, events["patient_id"], events["rupture_session"])
    repair = events["repair_session"].to_numpy(dtype=np.float64, na_value=np.nan)
    groups = _merge_events(s.code[rows], events["rupture_session"].to_numpy(), repair)
    crit = (
        reliable_drop_threshold(ctx.norms, cfg.z)
        if ctx.norms is not None
        else float(np.nanmin(events["threshold"].to_numpy(dtype=float)))
    )
    floor = _floor(ctx)
    lined = ctx.straight_lined
    out = _Parts()
    for group in groups:
        _one_rupture(ctx, events, rows, repair, group, crit, floor, method, lined, out)
    return out.frame()


def _floor(ctx: _Ctx) -> float:
    bounds = score_range(ctx.inst, ctx.score_id, ctx.metric)
    return -np.inf if bounds is None else bounds[0]


def _one_rupture(
    ctx: _Ctx,
    events: pd.DataFrame,
    rows: IntArray,
    repair: FloatArray,
    group: list[int],
    crit: float,
    floor: float,
    method: str,
    lined: npt.NDArray[np.bool_],
    out: _Parts,
) -> None:
    s, x, w = ctx.series, ctx.series.x, ctx.cfg.repair_within
    first = group[0]
    open_row = int(rows[first])
    opened = int(s.session[open_row])
    ends = repair[group]
    closed = np.nan if np.isnan(ends).any() else float(ends.max())
    last_row = int(s.last_row[s.code[open_row]])
    span_end = last_row  # last row judged while the episode is open
    if not np.isnan(closed):
        block = s.session[open_row : last_row + 1]
        span_end = open_row + int(np.searchsorted(block, closed)) - 1
    before, at, drop = (float(events[c].iloc[first]) for c in ("score_before", "score_at", "drop"))
    severity = HIGH if drop >= 2 * crit - _EPS or at <= floor + _EPS else WARNING
    escalations: list[tuple[int, str]] = []
    for r in range(open_row + 1, span_end + 1):
        fell = x[r - 1] - x[r] >= crit - _EPS
        if fell or x[r] <= floor + _EPS:
            where = " (the bottom of the scale)" if x[r] <= floor + _EPS else ""
            escalations.append((r, f"Fell again to {x[r]:.2f} at session {s.session[r]}{where}."))
        if s.session[r] >= opened + w and s.session[r - 1] < opened + w:
            escalations.append((r, f"Not repaired after {w} sessions."))
    escalated = np.nan
    if escalations and severity < HIGH:
        escalated = float(s.session[min(r for r, _ in escalations)])
    if escalations:
        severity = HIGH
    reason = (
        f"{ctx.label} fell from {before:.2f} to {at:.2f} at session {opened}, more than "
        f"the {crit:.2f} that measurement error explains."
    )
    reason += _straight_note(ctx, open_row, lined)
    reason += "".join(" " + text for _, text in sorted(escalations)[:2])
    if np.isnan(closed) and span_end > open_row:
        reason += f" Now {x[span_end]:.2f} at session {s.session[span_end]}."
    close_reason = ""
    if not np.isnan(closed):
        close_row = span_end + 1
        close_reason = f"repaired at session {int(closed)}: back to {x[close_row]:.2f}"
    threshold = float(events["threshold"].iloc[first])
    detail = (
        f"{method}: {CRITERIA[method].description}. Fall {drop:.3f} >= threshold "
        f"{threshold:.3f}"
        + (
            f"; reliable change {ctx.cfg.z:.2f} x S_diff {ctx.norms.s_diff:.3f} = {crit:.3f} "
            f"(norms: SD {ctx.norms.sd:.3f}, reliability {ctx.norms.reliability:.3f}; "
            f"{ctx.norms.source})"
            if ctx.norms is not None
            else ""
        )
        + f". High when the fall is at least {2 * crit:.2f}, reaches the floor of the scale, "
        f"falls again by {crit:.2f}, or is not repaired within {w} sessions."
    )
    if len(group) > 1:
        later = ", ".join(str(int(events["rupture_session"].iloc[g])) for g in group[1:])
        detail += f" Further drops detected at sessions {later}."
    out.patient.append(s.patients[s.code[open_row]])
    out.kind.append("rupture")
    out.opened.append(opened)
    out.last.append(int(s.session[span_end]) if np.isnan(closed) else int(closed))
    out.closed.append(closed)
    out.severity.append(severity)
    out.escalated.append(escalated)
    out.reason.append(reason)
    out.detail.append(detail)
    out.close_reason.append(close_reason)
    out.method.append(method)
    out.value.append(drop)
    out.threshold.append(threshold)


# -- conditions on the score --------------------------------------------------------------
def _condition_episodes(
    ctx: _Ctx,
    kind: str,
    holds: npt.NDArray[np.bool_],
    severity_rows: IntArray,
    describe: Any,
    close_text: Any,
    value: FloatArray,
    threshold: float,
    keep: npt.NDArray[np.bool_] | None = None,
) -> pd.DataFrame:
    """Episodes from runs of a per-row condition; ``keep`` filters runs by their first row."""
    s = ctx.series
    starts, ends, close = _runs(s, holds)
    if keep is not None:
        chosen = keep[starts]
        starts, ends, close = starts[chosen], ends[chosen], close[chosen]
    out = _Parts()
    for a, b, c in zip(starts.tolist(), ends.tolist(), close.tolist(), strict=True):
        sev = severity_rows[a : b + 1]
        top = int(sev.max())
        escalated = np.nan
        if top > sev[0]:
            escalated = float(s.session[a + int(np.argmax(sev == top))])
        out.patient.append(s.patients[s.code[a]])
        out.kind.append(kind)
        out.opened.append(int(s.session[a]))
        out.last.append(int(s.session[b]) if c < 0 else int(s.session[c]))
        out.closed.append(np.nan if c < 0 else float(s.session[c]))
        out.severity.append(top)
        out.escalated.append(escalated)
        out.reason.append(describe(a, b, c))
        out.detail.append("")
        out.close_reason.append("" if c < 0 else close_text(c))
        out.method.append("")
        out.value.append(float(value[b]))
        out.threshold.append(threshold)
    return out.frame()


def _cutoff_episodes(ctx: _Ctx) -> pd.DataFrame:
    cut = cutoff_of(ctx.inst, ctx.score_id, ctx.metric)
    if cut is None or "below_cutoff" not in ctx.cfg.kinds:
        return pd.DataFrame()
    s, x, k = ctx.series, ctx.series.x, ctx.cfg.persistent_sessions
    holds = flagged(x, cut)
    starts, _, _ = _runs(s, holds)
    run_start = np.zeros(x.size, dtype=np.int64)
    run_start[starts] = starts
    run_start = np.maximum.accumulate(run_start)
    position = np.arange(x.size) - run_start
    severity = np.where(position >= k - 1, HIGH, WARNING).astype(np.int64)
    word = cut.flag_when.replace("_", " ")
    early = ctx.cfg.early_sessions

    def describe(a: int, b: int, c: int) -> str:
        when = " early in treatment" if s.session[a] <= early else ""
        text = (
            f"{ctx.label} {x[a]:.2f} at session {s.session[a]}{when} is {word} the cutoff "
            f"{cut.value:g}."
        )
        if b > a:
            text += (
                f" Still {word} it at session {s.session[b]} ({x[b]:.2f}; "
                f"{b - a + 1} sessions in a row)."
            )
        return text

    frame = _condition_episodes(
        ctx,
        "below_cutoff",
        holds,
        severity,
        describe,
        lambda c: f"back to {x[c]:.2f} at session {s.session[c]}, no longer {word} {cut.value:g}",
        x,
        cut.value,
    )
    if len(frame):
        frame["detail"] = (
            f"Cutoff: {word} {cut.value:g} ({cut.meaning} Source: {cut.source}). High from the "
            f"{k}th session in a row."
        )
    return frame


def _low_early_threshold(ctx: _Ctx) -> tuple[float, str] | None:
    if ctx.norms is not None and ctx.norms.mean is not None:
        value = ctx.norms.mean - Z_10TH_PERCENTILE * ctx.norms.sd
        return value, (
            f"the 10th percentile of first sessions ({value:.2f} = mean {ctx.norms.mean:.2f} "
            f"- 1.28 x SD {ctx.norms.sd:.2f}; {ctx.norms.source})"
        )
    if ctx.prospective:
        ctx.notices.append(
            "low early alliance: no cutoff and no reference mean in the norms, so it is not "
            "judged prospectively"
        )
        return None
    early = _early_means(ctx)[1]
    known = early[~np.isnan(early)]
    if known.size < 10:
        ctx.notices.append("low early alliance: fewer than 10 patients, no clinic percentile")
        return None
    pct = ctx.cfg.low_early_percentile
    value = float(np.percentile(known, pct))
    return value, f"this data's {pct:g}th percentile ({value:.2f}, {known.size} patients)"


def _early_means(ctx: _Ctx) -> tuple[IntArray, FloatArray]:
    """Per patient: the row where early alliance is judged (-1 if none yet) and its mean."""
    s, n = ctx.series, ctx.cfg.early_sessions
    early = s.session <= n
    count = s.group_sum(early.astype(np.float64))
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = s.group_sum(np.where(early, s.x, 0.0)) / count
    judged = np.full(s.n_patients, -1, dtype=np.int64)
    at_or_after = np.flatnonzero(s.session >= n)
    first_rows = pd.Series(at_or_after).groupby(s.code[at_or_after]).min()
    judged[first_rows.index.to_numpy()] = first_rows.to_numpy()
    mean[judged < 0] = np.nan
    mean[count == 0] = np.nan
    return judged, mean


def _low_early_episodes(ctx: _Ctx) -> pd.DataFrame:
    if "low_early_alliance" not in ctx.cfg.kinds:
        return pd.DataFrame()
    if cutoff_of(ctx.inst, ctx.score_id, ctx.metric) is not None:
        return pd.DataFrame()  # below_cutoff covers it
    found = _low_early_threshold(ctx)
    if found is None:
        return pd.DataFrame()
    threshold, basis = found
    s, x, n = ctx.series, ctx.series.x, ctx.cfg.early_sessions
    judged, mean = _early_means(ctx)
    start = np.zeros(x.size, dtype=bool)
    valid = (judged >= 0) & (mean < threshold)
    start[judged[valid]] = True
    after = s.position >= np.where(judged >= 0, judged - s.starts, np.iinfo(np.int64).max)[s.code]
    holds = start | (after & (x < threshold))
    severity = np.full(x.size, WARNING, dtype=np.int64)

    def describe(a: int, b: int, c: int) -> str:
        text = (
            f"Mean {ctx.label} over sessions 1-{n} is {mean[s.code[a]]:.2f}, below "
            f"{threshold:.2f}, the level most patients of the reference sample reach."
        )
        if b > a:
            text += f" Now {x[b]:.2f} at session {s.session[b]}."
        return text

    frame = _condition_episodes(
        ctx,
        "low_early_alliance",
        holds,
        severity,
        describe,
        lambda c: f"{x[c]:.2f} at session {s.session[c]}, at or above {threshold:.2f}",
        x,
        threshold,
        keep=start,
    )
    if len(frame):
        frame["detail"] = f"Threshold: {basis}."
        frame["value"] = mean[pd.Index(s.patients).get_indexer(pd.Index(frame["patient_id"]))]
    return frame


def _ceiling_episodes(ctx: _Ctx, ruptures: pd.DataFrame) -> pd.DataFrame:
    if "ceiling_break" not in ctx.cfg.kinds:
        return pd.DataFrame()
    bounds = score_range(ctx.inst, ctx.score_id, ctx.metric)
    if bounds is None:
        return pd.DataFrame()
    s, x, top = ctx.series, ctx.series.x, bounds[1]
    at_top = x >= top - _EPS
    tops_before: IntArray = np.cumsum(at_top) - at_top
    tops_before -= tops_before[s.starts][s.code]
    all_top_before = (tops_before == s.position) & (s.position >= ctx.cfg.ceiling_sessions)
    breaks = all_top_before & ~at_top
    if len(ruptures):
        taken = _row_of(s, ruptures["patient_id"], ruptures["opened_session"])
        breaks[taken] = False
    if not breaks.any():
        return pd.DataFrame()
    lined = ctx.straight_lined

    def describe(a: int, b: int, c: int) -> str:
        text = (
            f"After {s.position[a]} sessions at the top of the scale, {ctx.label} is "
            f"{x[a]:.2f} of {top:g} at session {s.session[a]}: the first rating below the "
            "maximum."
        )
        return text + _straight_note(ctx, a, lined)

    frame = _condition_episodes(
        ctx,
        "ceiling_break",
        ~at_top,
        np.full(x.size, WARNING, dtype=np.int64),
        describe,
        lambda c: f"back at the top of the scale at session {s.session[c]}",
        x,
        top,
        keep=breaks,
    )
    if len(frame):
        frame["detail"] = (
            f"Ceiling: {ctx.cfg.ceiling_sessions} or more sessions at {top:g} before this one."
        )
    return frame


def _covered(s: Series, frames: Sequence[pd.DataFrame]) -> npt.NDArray[np.bool_]:
    """Per series row: inside an episode of ``frames`` (from its opening session while it
    is open; a closed episode no longer covers the session that closed it)."""
    out = np.zeros(s.x.size, dtype=bool)
    found = [f for f in frames if len(f)]
    if not found:
        return out
    spans = pd.concat(found, ignore_index=True)
    code = pd.Index(s.patients).get_indexer(pd.Index(spans["patient_id"]))
    end = spans["closed_session"].to_numpy(np.float64)
    end = np.where(np.isnan(end), np.inf, end)
    for c, a, b in zip(code.tolist(), spans["opened_session"].tolist(), end.tolist(), strict=True):
        rows = slice(int(s.starts[c]), int(s.starts[c] + s.sizes[c]))
        out[rows] |= (s.session[rows] >= a) & (s.session[rows] < b)
    return out


def _expected_episodes(ctx: _Ctx, column: str, covering: Sequence[pd.DataFrame]) -> pd.DataFrame:
    if "below_expected" not in ctx.cfg.kinds:
        return pd.DataFrame()
    require_columns(ctx.sessions, [column])
    s, x, cfg = ctx.series, ctx.series.x, ctx.cfg
    edge = pd.to_numeric(ctx.sessions[column], errors="coerce").to_numpy(np.float64)[s.rows]
    with np.errstate(invalid="ignore"):
        under = (x < edge - _EPS) & ~_covered(s, covering)
    starts, _, _ = _runs(s, under)
    run_start = np.zeros(x.size, dtype=np.int64)
    run_start[starts] = starts
    in_run = np.arange(x.size) - np.maximum.accumulate(run_start)
    holds = under & (in_run >= cfg.expected_sessions - 1)
    severity = np.where(in_run >= cfg.persistent_sessions - 1, HIGH, WARNING).astype(np.int64)

    def describe(a: int, b: int, c: int) -> str:
        first = a - int(in_run[a])
        seen = ", ".join(f"{x[r]:.2f} at session {s.session[r]}" for r in range(first, a + 1))
        text = (
            f"{ctx.label} {seen}: each below the lower edge of the range the clinic's model "
            f"expects for this patient given the sessions before it ({edge[a]:.2f} at session "
            f"{s.session[a]})."
        )
        if b > a:
            text += f" Still below at session {s.session[b]} ({x[b]:.2f} under {edge[b]:.2f})."
        return text

    frame = _condition_episodes(
        ctx,
        "below_expected",
        holds,
        severity,
        describe,
        lambda c: f"{x[c]:.2f} at session {s.session[c]}, back within the expected range",
        x,
        np.nan,
    )
    if len(frame):
        last = _row_of(s, frame["patient_id"], frame["last_session"])
        frame["threshold"] = edge[last]
        frame["detail"] = (
            "Expected range: the clinic's growth model of its own sessions, given the "
            f"patient's earlier sessions ({column}). Opens at {cfg.expected_sessions} "
            f"sessions in a row below it, high from {cfg.persistent_sessions}."
        )
    return frame


# -- two raters ----------------------------------------------------------------------------
def _discrepancy_episodes(ctx: _Ctx, therapist_score: str) -> pd.DataFrame:
    if "rating_discrepancy" not in ctx.cfg.kinds:
        return pd.DataFrame()
    require_columns(ctx.sessions, [therapist_score])
    t_status = key_status_of(ctx.inst, therapist_score)
    if t_status == "unverified" and not ctx.cfg.allow_unverified:
        ctx.notices.append(
            f"{therapist_score!r} has no published key (an unverified fallback total): "
            "rating-discrepancy alerts are off (allow unverified alerts to turn them on)"
        )
        return pd.DataFrame()
    s, x = ctx.series, ctx.series.x
    if ctx.norms is not None:
        sd, basis = ctx.norms.sd, f"norm SD {ctx.norms.sd:.3f} ({ctx.norms.source})"
    elif not ctx.prospective:
        sd = float(np.nanstd(x, ddof=1)) if x.size > 2 else np.nan
        basis = f"SD {sd:.3f} of {ctx.score} in this data"
    else:
        ctx.notices.append("rating discrepancy: no norms (reference SD), not judged")
        return pd.DataFrame()
    limit = ctx.cfg.discrepancy_sd * sd
    if not np.isfinite(limit) or limit <= 0:
        return pd.DataFrame()
    therapist = pd.to_numeric(ctx.sessions[therapist_score], errors="coerce").to_numpy(
        dtype=np.float64
    )[s.rows]
    gap = therapist - x
    with np.errstate(invalid="ignore"):
        known = np.where(np.isnan(gap), np.nan, (np.abs(gap) >= limit - _EPS).astype(float))
        big = np.where(np.isnan(gap), np.nan, (np.abs(gap) >= 2 * limit - _EPS).astype(float))
    holds = np.nan_to_num(_carry_forward(s, known)) > 0.5
    severity = np.where(np.nan_to_num(big) > 0.5, HIGH, WARNING).astype(np.int64)

    def describe(a: int, b: int, c: int) -> str:
        g = gap[a]
        text = (
            f"At session {s.session[a]} you rated {therapist[a]:.2f} and the patient "
            f"{x[a]:.2f}: yours is {abs(g):.2f} {'higher' if g > 0 else 'lower'}, beyond the "
            f"{limit:.2f} that counts as a real difference."
        )
        if b > a:
            text += f" Still apart at session {s.session[b]}."
        return text

    frame = _condition_episodes(
        ctx,
        "rating_discrepancy",
        holds,
        severity,
        describe,
        lambda c: (
            f"ratings agree again at session {s.session[c]} ({therapist[c]:.2f} and {x[c]:.2f})"
        ),
        np.abs(gap),
        limit,
    )
    if len(frame):
        frame["detail"] = (
            f"Limit: {ctx.cfg.discrepancy_sd:g} x {basis} = {limit:.3f}; high at twice that. "
            f"Therapist score {therapist_score} (key: {t_status})."
        )
        frame["key_status"] = (
            "unverified" if "unverified" in (t_status, ctx.key_status) else ctx.key_status
        )
    return frame


# -- post-session answers ------------------------------------------------------------------
def _self_report_episodes(ctx: _Ctx) -> pd.DataFrame:
    if "self_reported_rupture" not in ctx.cfg.kinds:
        return pd.DataFrame()
    if not any(c in ctx.sessions.columns for c in ("psq_rupture", "psq_1")):
        return pd.DataFrame()
    if not ctx.cfg.allow_unverified:
        ctx.notices.append(
            "post-session rupture answers present, but the questionnaire's key is unverified: "
            "self-reported rupture alerts are off (allow unverified alerts to turn them on)"
        )
        return pd.DataFrame()
    ev = detect_ruptures(
        ctx.sessions, None, "self_report", resolved_at=ctx.cfg.resolved_at, repair_within=_NEVER
    )
    if ev.empty:
        return pd.DataFrame()
    end = ev["repair_session"].to_numpy(dtype=np.float64, na_value=np.nan)
    sess = ev["rupture_session"].to_numpy(dtype=np.int64)
    in_session = end == sess
    merge_end = np.where(in_session, sess + 0.5, end)  # resolved at once: nothing joins it
    groups = _merge_events(ev["patient_id"].to_numpy(), sess, merge_end)
    intensity = ev["intensity"].to_numpy(dtype=np.float64)
    out = _Parts()
    for group in groups:
        first = group[0]
        ends = end[group]
        closed = np.nan if np.isnan(ends).any() else float(ends.max())
        at_once = bool(in_session[first]) and len(group) == 1
        severity = INFO if at_once else WARNING
        escalated = np.nan
        later = [int(sess[g]) for g in group[1:]]
        later += [int(sess[g]) for g in group[1:] if intensity[g] >= 4]
        if intensity[first] >= 4:
            severity = HIGH
        elif later:
            severity, escalated = HIGH, float(min(later))
        s0 = int(sess[first])
        level = f" (intensity {intensity[first]:g} of 5)" if not np.isnan(intensity[first]) else ""
        reason = f"The patient reported a rupture after session {s0}{level}"
        reason += "; rated resolved in the session." if at_once else "; not rated resolved."
        if len(group) > 1:
            reason += (
                f" Reported again at session {', '.join(str(int(sess[g])) for g in group[1:])}."
            )
        close_reason = ""
        if not np.isnan(closed):
            close_reason = (
                "rated resolved in the session"
                if at_once
                else f"no rupture reported or rated resolved at session {int(closed)}"
            )
        out.patient.append(ev["patient_id"].iloc[first])
        out.kind.append("self_reported_rupture")
        out.opened.append(s0)
        out.last.append(int(closed) if not np.isnan(closed) else int(sess[group[-1]]))
        out.closed.append(closed)
        out.severity.append(severity)
        out.escalated.append(escalated)
        out.reason.append(reason)
        out.detail.append(
            f"Post-session question; resolved when rated {ctx.cfg.resolved_at:g} or more, or "
            "when a later session reports no rupture. High at intensity 4 or more, or when "
            "reported again while open."
        )
        out.close_reason.append(close_reason)
        out.method.append("self_report")
        out.value.append(float(intensity[first]))
        out.threshold.append(np.nan)
    return out.frame(key_status="unverified")


def _signal_episodes(ctx: _Ctx) -> list[pd.DataFrame]:
    if "signal" not in ctx.cfg.kinds:
        return []
    frames = []
    for inst in list_instruments():
        for signal in getattr(inst, "signals", ()):
            column = f"{inst.id}_{signal.item}"
            if column not in ctx.sessions.columns:
                continue
            if signal.key_status == "unverified" and not ctx.cfg.allow_unverified:
                ctx.notices.append(
                    f"{inst.short_name} signal {signal.id!r} rests on an unverified key: off "
                    "(allow unverified alerts to turn it on)"
                )
                continue
            frames.append(_one_signal(ctx, inst, signal, column))
    return frames


def _one_signal(ctx: _Ctx, inst: Instrument, signal: Any, column: str) -> pd.DataFrame:
    s = prepare_series(ctx.sessions, column)
    x = s.x
    holds = np.isin(x, np.asarray(signal.values, dtype=np.float64))
    scale = inst.item_scale(signal.item)
    anchors = {a.value: a.descriptor for a in scale.anchors}

    def names(value: Any) -> str:
        return anchors.get(float(value), f"{value:g}")

    item = next(i for i in inst.items if i.number == signal.item)
    sub = _Ctx(
        ctx.sessions, column, inst, None, None, signal.key_status, ctx.cfg, None, ctx.prospective, s
    )
    severity = np.full(x.size, SEVERITY_RANK[signal.severity], dtype=np.int64)
    frame = _condition_episodes(
        sub,
        f"signal:{inst.id}:{signal.id}",
        holds,
        severity,
        lambda a, b, c: (
            f"After session {s.session[a]} the patient answered "
            f"'{names(x[a])}' to: {item.descriptor}."
        ),
        lambda c: f"answered '{names(x[c])}' at session {s.session[c]}",
        x,
        np.nan,
    )
    if len(frame):
        cited = {c.key: c.text for c in inst.citations}
        frame["title"] = signal.title
        frame["guidance"] = signal.guidance
        frame["sources"] = " | ".join(cited[k] for k in signal.sources if k in cited)
        frame["key_status"] = signal.key_status
        frame["score"] = column
        frame["detail"] = f"{inst.short_name} item {signal.item}: a signal of the instrument file."
    return frame


# -- output --------------------------------------------------------------------------------
def _finish(frames: Sequence[pd.DataFrame], ctx: _Ctx) -> pd.DataFrame:
    frames = [f for f in frames if len(f)]
    if not frames:
        out = pd.DataFrame({c: pd.Series(dtype=object) for c in EPISODE_COLUMNS})
        out.attrs["notices"] = list(ctx.notices)
        return out
    out = pd.concat(frames, ignore_index=True)
    guide = load_guidance()
    for column, default in (("score", ctx.score), ("key_status", ctx.key_status)):
        if column not in out.columns:
            out[column] = default
        out[column] = out[column].fillna(default)
    kinds = guide["kinds"]
    for column in ("title", "guidance", "sources"):
        if column not in out.columns:
            out[column] = pd.Series([""] * len(out), dtype=object, index=out.index)
    plain = ~out["kind"].str.startswith("signal:")
    out.loc[plain, "title"] = out.loc[plain, "kind"].map(lambda k: kinds[k]["title"])
    out.loc[plain, "guidance"] = out.loc[plain, "kind"].map(lambda k: kinds[k]["guidance"])
    out.loc[plain, "sources"] = out.loc[plain, "kind"].map(
        lambda k: " | ".join(guide["sources"][s] for s in kinds[k]["sources"])
    )
    out["severity"] = [SEVERITIES[int(v)] for v in out["severity"]]
    for column in ("closed_session", "escalated_session"):
        out[column] = pd.array(out[column].to_numpy(dtype=np.float64), dtype="Float64").astype(
            "Int64"
        )
    out["state"] = np.where(out["closed_session"].isna(), "open", "closed")
    out["therapist_id"] = _therapists(ctx.sessions, out["patient_id"])
    out = out.sort_values(["patient_id", "opened_session", "kind"], kind="stable")
    out = out[EPISODE_COLUMNS].reset_index(drop=True)
    out.attrs["notices"] = list(ctx.notices)
    return out


def _therapists(sessions: pd.DataFrame, patients: pd.Series) -> pd.Series:
    if "therapist_id" not in sessions.columns or patients.empty:
        return pd.Series([pd.NA] * len(patients), index=patients.index, dtype=object)
    first = sessions.drop_duplicates("patient_id").set_index("patient_id")["therapist_id"]
    return pd.Series(first.reindex(patients.to_numpy()).to_numpy(), index=patients.index)


def episodes_as_of(episodes: pd.DataFrame, session: int) -> pd.DataFrame:
    """What the episodes looked like when ``session`` was the latest: episodes opened by
    then, open unless closed by then, severity as of then (for replay checks).

    >>> import pandas as pd
    >>> ep = pd.DataFrame({"patient_id": [1], "kind": ["rupture"], "opened_session": [3],
    ...     "closed_session": pd.array([8], dtype="Int64"), "severity": ["high"],
    ...     "escalated_session": pd.array([6], dtype="Int64")})
    >>> episodes_as_of(ep, 5)[["state", "severity"]].to_dict("records")
    [{'state': 'open', 'severity': 'warning'}]
    """
    out = episodes[episodes["opened_session"] <= session].copy()
    closed = out["closed_session"].astype("Float64")
    still_open = closed.isna() | (closed > session)
    out["state"] = np.where(still_open.to_numpy(dtype=bool), "open", "closed")
    out["closed_session"] = out["closed_session"].where(~still_open, pd.NA)
    escalated = out["escalated_session"].astype("Float64")
    later = (escalated > session).fillna(False).to_numpy(dtype=bool)
    lowered = out["severity"].map(lambda v: SEVERITIES[max(SEVERITY_RANK[v] - 1, 0)])
    out["severity"] = np.where(later, lowered, out["severity"])
    out["escalated_session"] = out["escalated_session"].where(~later, pd.NA)
    return out


__all__ = [
    "EPISODE_COLUMNS",
    "SEVERITIES",
    "SEVERITY_RANK",
    "DynamicsInputError",
    "alert_episodes",
    "episodes_as_of",
    "workflow_status",
]
