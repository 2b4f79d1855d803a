"""Rupture and repair detection in session-by-session alliance scores.

Five methods, each selectable by name; every event is one output row.

``stiles2004``
    Session-level V-shaped criterion after Stiles, W. B., Glick, M. J., Osatuke, K.,
    Hardy, G. E., Shapiro, D. A., Agnew-Davies, R., Rees, A., & Barkham, M. (2004).
    Patterns of alliance development and the rupture-repair hypothesis: Are productive
    relationships U-shaped or V-shaped? *Journal of Counseling Psychology, 51*(1), 81–92.
    doi:10.1037/0022-0167.51.1.81
``strauss2006``
    Session-level criterion after Strauss, J. L., Hayes, A. M., Johnson, S. L., Newman,
    C. F., Brown, G. K., Barber, J. P., Laurenceau, J.-P., & Beck, A. T. (2006). Early
    alliance, alliance ruptures, and symptom change in a nonrandomized trial of cognitive
    therapy for avoidant and obsessive-compulsive personality disorders. *Journal of
    Consulting and Clinical Psychology, 74*(2), 337–345. doi:10.1037/0022-006X.74.2.337
``gumz2012``
    After Gumz, A., Brähler, E., Geyer, M., & Erices, R. (2012). Crisis-repair sequences –
    considerations on the classification and assessment of breaches in the therapeutic
    relationship. *BMC Medical Research Methodology, 12*, 10. doi:10.1186/1471-2288-12-10.
    They propose combining the patient's own (intra-individual) variability with the
    sample's (inter-individual) and taking the stricter threshold: here a drop from the
    previous scored session of at least ``gumz_sd`` (default 1; they use 1 and 2) times the
    larger of the patient's SD and the sample SD (``norms.sd``). The repair rule (a return
    to the pre-rupture session's level) is our convention.
``rci_drop``
    A drop below the patient's own running baseline (mean of the earlier sessions, or of
    the last ``baseline_window``) larger than reliable change (Jacobson & Truax 1991).
``self_report``
    The patient (or therapist) answered "yes" to the post-session rupture question
    (Muran et al. 2009 post-session questionnaire; stored as ``psq_1`` / ``psq_rupture``).

What is and is not verified about the two published criteria
-------------------------------------------------------------
We could not read either paper's method section in this project (no copy reachable with
our search tools). What we *could* confirm, from Gumz, Brähler, Geyer & Erices (2012,
*BMC Medical Research Methodology, 12*:10, doi:10.1186/1471-2288-12-10), which compared
both criteria: both identify ruptures from session-to-session alliance ratings as brief
V-shaped deteriorations followed by repair; they use *different SD-based thresholds*, one
stricter (2 SD) and one less strict (1 SD); both rest on the patient's own (intra-
individual) variability; Stiles et al. called their criterion ad hoc and preliminary; and
Strauss et al. wrote that their method "is most similar to that of Stiles et al. (2004)".
Gumz et al. note that neither criterion captures declines spread over several sessions.

Everything else below is **our reconstruction, not a verified transcription**, and every
piece of it is a parameter:

* which paper uses 2 SD and which 1 SD (we assign 2 SD to Stiles and 1 SD to Strauss,
  following the order of Gumz et al.'s sentence);
* that the drop is measured from the previous scored session and the SD is the SD of all
  the patient's scored sessions (retrospective: it changes as sessions are added);
* the repair rules (Stiles: a rise of the same size from the rupture session; Strauss: a
  return to the pre-rupture score) and the repair window (``repair_within`` sessions,
  default 3);
* at least 3 scored sessions are needed for a patient SD.

Prospective and retrospective detection
---------------------------------------
``prospective=True`` judges each session with the data up to and including that session
only: the patient SD of ``stiles2004``, ``strauss2006`` and ``gumz2012`` is the SD of the
scores so far, so a decision about session 5 never changes when session 12 arrives. This is
what the clinic and ``alliance alerts`` use. ``prospective=False`` (the default of this
function, for research) uses the SD of the whole series, as a retrospective study would;
it is labelled so in ``frame.attrs["mode"]``. ``rci_drop`` is prospective in both modes
(its baseline is the mean of the earlier sessions). Repairs are always observed later, in
sessions after the rupture.

Measurement error
-----------------
With ``norms``, no score-based method reports a drop smaller than the reliable-change
threshold ``z x S_diff`` (Jacobson & Truax 1991; see
:func:`alliance.dynamics.reliable_change.reliable_drop_threshold`): each threshold is the
larger of the method's own and that bound. Without norms the measurement error of the score
is unknown, so ``method="all"`` runs no score-based method (``attrs["notices"]`` says why);
naming ``stiles2004`` or ``strauss2006`` explicitly still runs them, without the bound.

Shared conventions (all methods)
--------------------------------
* Missing sessions are skipped: "previous" means the previous *scored* session.
* Ties count: a drop exactly equal to the threshold is a rupture.
* ``repaired`` is ``"yes"`` (with ``repair_session``), ``"no"`` when sessions up to
  ``rupture_session + repair_within`` were observed without repair, and ``"not yet"`` when
  the patient's data end before that window closes.
* The first session can never be a rupture (nothing to drop from); a patient with one
  session has no events.

Example
-------
>>> import pandas as pd
>>> v = pd.DataFrame({"patient_id": "a", "session": range(1, 9),
...                   "s": [4.0, 4.1, 4.0, 4.0, 2.5, 4.0, 4.1, 4.0]})
>>> out = detect_ruptures(v, "s", method="strauss2006")
>>> out[["rupture_session", "repaired", "repair_session"]].to_dict("records")
[{'rupture_session': 5, 'repaired': 'yes', 'repair_session': 6}]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

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
from alliance.dynamics.reliable_change import Z_95, Norms, reliable_drop_threshold

_EPS = 1e-9


@dataclass(frozen=True)
class Criterion:
    """A detection method: name, what it does, its source and how sure we are of it."""

    name: str
    description: str
    source: str
    status: str


CRITERIA: dict[str, Criterion] = {
    "stiles2004": Criterion(
        "stiles2004",
        "drop from the previous scored session >= 2 x the patient's SD; repaired by a rise "
        "of the same size within the repair window",
        "Stiles et al. (2004), J Couns Psychol 51(1), 81-92, doi:10.1037/0022-0167.51.1.81",
        "reconstructed: SD-based V-shape and 2 SD per Gumz et al. (2012); exact rules unverified",
    ),
    "strauss2006": Criterion(
        "strauss2006",
        "drop from the previous scored session >= 1 x the patient's SD; repaired when the "
        "score returns to the pre-rupture session's level within the repair window",
        "Strauss et al. (2006), J Consult Clin Psychol 74(2), 337-345, "
        "doi:10.1037/0022-006X.74.2.337",
        "reconstructed: SD-based V-shape and 1 SD per Gumz et al. (2012); exact rules unverified",
    ),
    "gumz2012": Criterion(
        "gumz2012",
        "drop from the previous scored session >= gumz_sd x the larger of the patient's SD "
        "and the sample SD; repaired when the score returns to the pre-rupture level",
        "Gumz et al. (2012), BMC Med Res Methodol 12, 10, doi:10.1186/1471-2288-12-10",
        "threshold rule confirmed (stricter of intra- and inter-individual SD, at 1 or 2 SD); "
        "drop reference and repair rule are project conventions",
    ),
    "rci_drop": Criterion(
        "rci_drop",
        "score below the patient's running baseline by more than z x S_diff (reliable "
        "change); repaired when no longer reliably below that baseline",
        "Jacobson & Truax (1991), J Consult Clin Psychol 59(1), 12-19, "
        "doi:10.1037/0022-006X.59.1.12",
        "project method built on a verified formula",
    ),
    "self_report": Criterion(
        "self_report",
        "post-session question 'did a rupture occur' answered yes; repaired when rated "
        "resolved (>= resolved_at) or when a later session reports no rupture",
        "Muran et al. (2009), Psychotherapy 46(2), 233-248, doi:10.1037/a0016085",
        "item order unverified (instruments-facts.md); repair rule is a project convention",
    ),
}

METHODS: tuple[str, ...] = tuple(CRITERIA)
REPAIR_STATUS: tuple[str, ...] = ("yes", "no", "not yet")

OUTPUT_COLUMNS = [
    "method",
    "rupture_session",
    "score_before",
    "score_at",
    "drop",
    "threshold",
    "repaired",
    "repair_session",
    "sessions_to_repair",
    "intensity",
]


@dataclass(frozen=True)
class _Events:
    series: Series
    index: IntArray  # row of each rupture in the series
    before: FloatArray
    drop: FloatArray
    threshold: FloatArray
    status: npt.NDArray[np.int8]  # index into REPAIR_STATUS
    repair_session: FloatArray
    intensity: FloatArray


def detect_ruptures(
    sessions: pd.DataFrame,
    score: str | None = None,
    method: str | Sequence[str] = "all",
    *,
    repair_within: int = 3,
    norms: Norms | None = None,
    z: float = Z_95,
    baseline_window: int | None = None,
    stiles_sd: float = 2.0,
    strauss_sd: float = 1.0,
    gumz_sd: float = 1.0,
    prospective: bool = False,
    rupture_col: str | None = None,
    resolution_col: str | None = None,
    intensity_col: str | None = None,
    resolved_at: float = 4.0,
    patient: str = "patient_id",
    session: str = "session",
) -> pd.DataFrame:
    """Detect rupture events with one or more methods; one row per event.

    ``method`` is a name from :data:`METHODS`, a list of them, or ``"all"`` (every method
    whose inputs are present: the score-based ones need ``norms``, see "Measurement error"
    above; ``self_report`` needs a rupture column). ``prospective`` judges each session with
    the data up to it only. Output columns: ``patient_id, method, rupture_session,
    score_before, score_at, drop, threshold, repaired, repair_session, sessions_to_repair,
    intensity``; ``attrs["mode"]`` and ``attrs["notices"]``.

    >>> import pandas as pd
    >>> flat = pd.DataFrame({"patient_id": 1, "session": [1, 2, 3, 4],
    ...                      "s": [4.0, 4.0, 4.0, 4.0]})
    >>> len(detect_ruptures(flat, "s", method=["stiles2004", "strauss2006"]))
    0
    """
    if repair_within < 1:
        raise DynamicsInputError("repair_within must be at least 1 session")
    notices: list[str] = []
    chosen = _choose_methods(sessions, score, method, norms, rupture_col, notices)
    multipliers = {"stiles2004": stiles_sd, "strauss2006": strauss_sd, "gumz2012": gumz_sd}
    sd_rule = _SdRule(norms, z, prospective, multipliers)
    parts: list[tuple[str, _Events]] = []
    series: Series | None = None
    for name in chosen:
        if name == "self_report":
            events = _self_report(
                sessions,
                rupture_col,
                resolution_col,
                intensity_col,
                resolved_at,
                repair_within,
                patient,
                session,
            )
        else:
            if score is None:
                raise DynamicsInputError(f"method {name!r} needs a score column")
            if series is None:
                series = prepare_series(sessions, score, patient=patient, session=session)
            events = _score_method(series, name, repair_within, sd_rule, baseline_window)
        parts.append((name, events))
    frame = _to_frame(parts, patient)
    frame.attrs["mode"] = "prospective" if prospective else "retrospective"
    frame.attrs["notices"] = notices
    return frame


def _choose_methods(
    sessions: pd.DataFrame,
    score: str | None,
    method: str | Sequence[str],
    norms: Norms | None,
    rupture_col: str | None,
    notices: list[str],
) -> list[str]:
    has_self_report = _find_column(sessions, rupture_col, ("psq_rupture", "psq_1")) is not None
    if method == "all":
        chosen = []
        if score is not None and norms is not None:
            chosen = ["stiles2004", "strauss2006", "gumz2012", "rci_drop"]
        elif score is not None:
            notices.append(
                "no norms (SD, reliability): the score's measurement error is unknown, so no "
                "score-based method ran; estimate norms from the data or name a method"
            )
        if has_self_report:
            chosen.append("self_report")
        return chosen
    names = [method] if isinstance(method, str) else list(method)
    for name in names:
        if name not in CRITERIA:
            raise DynamicsInputError(
                f"unknown method {name!r}; choose from {', '.join(METHODS)} or 'all'"
            )
        if name in ("rci_drop", "gumz2012") and norms is None:
            raise DynamicsInputError(
                f"method {name!r} needs norms (SD and reliability): take them from the "
                "instrument file or estimate them from the data"
            )
        if name in ("stiles2004", "strauss2006") and norms is None:
            notices.append(
                f"{name}: no norms, so no measurement-error bound: drops smaller than the "
                "score's measurement error can be reported"
            )
        if name == "self_report" and not has_self_report:
            raise DynamicsInputError(
                "method 'self_report' needs a post-session rupture column "
                "(psq_rupture or psq_1, or name it with rupture_col)"
            )
    return names


def _find_column(table: pd.DataFrame, given: str | None, defaults: tuple[str, ...]) -> str | None:
    if given is not None:
        require_columns(table, [given])
        return given
    return next((c for c in defaults if c in table.columns), None)


# -- score-based methods --------------------------------------------------------------------
@dataclass(frozen=True)
class _SdRule:
    """What the SD-based methods need: norms (bound, sample SD), z, mode and multipliers."""

    norms: Norms | None
    z: float
    prospective: bool
    multipliers: dict[str, float]

    @property
    def bound(self) -> float:
        """The measurement-error bound on any drop (0 without norms)."""
        return 0.0 if self.norms is None else reliable_drop_threshold(self.norms, self.z)


def _score_method(
    s: Series, name: str, window: int, rule: _SdRule, baseline_window: int | None
) -> _Events:
    if name == "rci_drop":
        assert rule.norms is not None
        return _rci_drop(s, rule.norms, rule.z, baseline_window, window)
    return _sd_drop(s, name, rule, window)


def _patient_sd(s: Series, prospective: bool) -> FloatArray:
    """Per row: the patient's SD as known at that row (NaN with fewer than 3 scores)."""
    if prospective:
        return s.expanding_sd_through(s.x, min_n=3)
    sd = s.sd.copy()
    sd[s.sizes < 3] = np.nan
    return np.asarray(s.broadcast(sd), dtype=np.float64)


def _sd_drop(s: Series, name: str, rule: _SdRule, window: int) -> _Events:
    x = s.x
    sd = _patient_sd(s, rule.prospective)
    if name == "gumz2012":
        assert rule.norms is not None
        sd = np.fmax(sd, rule.norms.sd)  # the stricter of intra- and inter-individual SD
        sd[np.isnan(_patient_sd(s, rule.prospective))] = np.nan
    sd[sd <= 0] = np.nan
    threshold_rows = np.fmax(rule.multipliers[name] * sd, rule.bound)
    threshold_rows[np.isnan(sd)] = np.nan
    drop = s.shift(x) - x  # NaN on first rows: nothing to fall from
    hit = drop >= threshold_rows - _EPS  # NaN compares False
    idx = np.flatnonzero(hit)
    threshold = threshold_rows[idx]
    before = x[idx - 1]
    target = x[idx] + threshold if name == "stiles2004" else before
    status, repair = _find_repairs(s, idx, lambda rows, ev: x[rows] >= target[ev] - _EPS, window)
    return _Events(
        s, idx, before, before - x[idx], threshold, status, repair, np.full(idx.size, np.nan)
    )


def _rci_drop(
    s: Series, norms: Norms, z: float, baseline_window: int | None, window: int
) -> _Events:
    x = s.x
    baseline = (
        s.expanding_mean_before(x)
        if baseline_window is None
        else rolling_mean_before(s, x, baseline_window)
    )
    crit = reliable_drop_threshold(norms, z)
    below = baseline - x >= crit - _EPS  # NaN baselines (first sessions) compare False
    # onset: below now, not below at the previous scored session (a first session is never
    # below, so the previous row always belongs to the same patient when it matters)
    onset = below.copy()
    onset[1:] &= ~below[:-1]
    idx = np.flatnonzero(onset)
    floor = baseline[idx] - crit
    status, repair = _find_repairs(s, idx, lambda rows, ev: x[rows] > floor[ev] + _EPS, window)
    drop = baseline[idx] - x[idx]
    return _Events(
        s,
        idx,
        baseline[idx],
        drop,
        np.full(idx.size, crit),
        status,
        repair,
        np.full(idx.size, np.nan),
    )


def rolling_mean_before(s: Series, values: FloatArray, k: int) -> FloatArray:
    """Mean of the up to ``k`` previous observed values of the same patient.

    >>> import pandas as pd
    >>> t = pd.DataFrame({"patient_id": 1, "session": [1, 2, 3, 4], "v": [1.0, 2, 3, 4]})
    >>> s = prepare_series(t, "v")
    >>> rolling_mean_before(s, s.x, 2).tolist()
    [nan, 1.0, 1.5, 2.5]
    """
    if k < 1:
        raise DynamicsInputError("baseline_window must be at least 1")
    # The window summed directly, nearest session first: each patient's own values only,
    # so the mean is the same whichever patients share the batch.
    m = np.minimum(s.position, k)
    total = np.zeros(values.size)
    for lag in range(1, min(k, int(m.max(initial=0))) + 1):
        reach = m >= lag
        total[reach] += values[np.flatnonzero(reach) - lag]
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total / m
    mean[m == 0] = np.nan
    return np.asarray(mean, dtype=np.float64)


def _find_repairs(
    s: Series,
    idx: IntArray,
    repaired_at: Callable[[IntArray, IntArray], npt.NDArray[np.bool_]],
    window: int,
    *,
    include_same: npt.NDArray[np.bool_] | None = None,
) -> tuple[npt.NDArray[np.int8], FloatArray]:
    """Look ahead up to ``window`` session numbers for the first repairing session.

    ``repaired_at(rows, events)`` says, for candidate rows and the events they belong to,
    whether that row repairs the event.
    """
    rupture_session = s.session[idx]
    last_row = s.last_row[s.code[idx]]
    room = last_row - idx  # later scored sessions of the same patient
    repair = np.full(idx.size, np.nan)
    found = np.zeros(idx.size, dtype=bool)
    if include_same is not None:
        found |= include_same
        repair[include_same] = rupture_session[include_same]
    limit = rupture_session + window
    pending = np.flatnonzero(~found)  # events still looking for a repair
    for step in range(1, window + 1):
        pending = pending[room[pending] >= step]
        if pending.size == 0:
            break
        rows = idx[pending] + step
        inside = s.session[rows] <= limit[pending]  # later steps are further out: drop them
        pending, rows = pending[inside], rows[inside]
        hit = np.asarray(repaired_at(rows, pending), dtype=bool)
        found[pending[hit]] = True
        repair[pending[hit]] = s.session[rows[hit]]
        pending = pending[~hit]
    last = s.session[last_row]
    status = np.where(found, 0, np.where(last >= rupture_session + window, 1, 2))
    return status.astype(np.int8), repair


# -- self-reported ruptures -------------------------------------------------------------------
def _self_report(
    sessions: pd.DataFrame,
    rupture_col: str | None,
    resolution_col: str | None,
    intensity_col: str | None,
    resolved_at: float,
    window: int,
    patient: str,
    session: str,
) -> _Events:
    r_col = _find_column(sessions, rupture_col, ("psq_rupture", "psq_1"))
    assert r_col is not None
    res_col = _find_column(sessions, resolution_col, ("psq_resolution", "psq_3"))
    int_col = _find_column(sessions, intensity_col, ("psq_intensity", "psq_2"))
    s = prepare_series(sessions, r_col, patient=patient, session=session)
    reported = s.x >= 0.5
    resolution = _aligned(sessions, res_col, s)
    intensity = _aligned(sessions, int_col, s)
    idx = np.flatnonzero(reported)
    resolved_now = resolution[idx] >= resolved_at

    def repairs(rows: IntArray, _ev: IntArray) -> npt.NDArray[np.bool_]:
        return np.asarray((~reported[rows]) | (resolution[rows] >= resolved_at))

    status, repair = _find_repairs(s, idx, repairs, window, include_same=resolved_now)
    nan = np.full(idx.size, np.nan)
    return _Events(s, idx, nan, nan, nan, status, repair, intensity[idx])


def _aligned(sessions: pd.DataFrame, column: str | None, s: Series) -> FloatArray:
    if column is None:
        return np.full(s.x.size, np.nan)
    values = pd.to_numeric(sessions[column], errors="coerce").to_numpy(dtype=np.float64)
    return np.asarray(values[s.rows], dtype=np.float64)


# -- output -----------------------------------------------------------------------------------
def _to_frame(parts: list[tuple[str, _Events]], patient: str) -> pd.DataFrame:
    """One table of all events, sorted by patient, rupture session and method."""
    if not parts:
        return _empty(patient)
    labels = np.concatenate([ev.series.patients[ev.series.code[ev.index]] for _, ev in parts])
    session = np.concatenate([ev.series.session[ev.index] for _, ev in parts])
    method = np.concatenate([np.full(ev.index.size, METHODS.index(n)) for n, ev in parts])

    def cat(attr: str) -> np.ndarray:
        return np.concatenate([getattr(ev, attr) for _, ev in parts])

    score_at = np.concatenate(
        [
            ev.series.x[ev.index] if n != "self_report" else np.full(ev.index.size, np.nan)
            for n, ev in parts
        ]
    )
    order = _event_order(parts, session, method)
    repair = cat("repair_session")[order]
    has_repair = ~np.isnan(repair)
    repair_int = pd.array(np.where(has_repair, repair, 0).astype(np.int64), dtype="Int64")
    repair_int[~has_repair] = pd.NA
    rupture_session = session[order]
    return pd.DataFrame(
        copy=False,
        data={
            patient: labels[order],
            "method": _categorical(method[order], METHODS),
            "rupture_session": rupture_session,
            "score_before": cat("before")[order],
            "score_at": score_at[order],
            "drop": cat("drop")[order],
            "threshold": cat("threshold")[order],
            "repaired": _categorical(cat("status")[order], REPAIR_STATUS),
            "repair_session": repair_int,
            "sessions_to_repair": repair_int - rupture_session,
            "intensity": cat("intensity")[order],
        },
    )


def _categorical(codes: np.ndarray, labels: tuple[str, ...]) -> pd.Categorical[str]:
    """Labels stored as integer codes (no per-row strings to build for millions of rows)."""
    return pd.Categorical.from_codes(
        np.asarray(codes, dtype=np.int64), categories=pd.Index(list(labels))
    )


def _event_order(parts: list[tuple[str, _Events]], session: IntArray, method: IntArray) -> IntArray:
    """Order events by patient label, session and method with one integer sort key.

    Patients are ranked over the union of the series' patients (a small array); each
    method's events are already sorted by row, so the stable sort mostly merges runs.
    """
    distinct: list[Series] = []
    for _, ev in parts:
        if not any(ev.series is d for d in distinct):
            distinct.append(ev.series)
    union = np.concatenate([d.patients for d in distinct])
    ranks = pd.factorize(union, sort=True)[0].astype(np.int64) if union.size else union
    offsets = np.cumsum([0] + [d.patients.size for d in distinct])
    start = {id(d): int(o) for d, o in zip(distinct, offsets, strict=False)}
    rank = np.concatenate(
        [ranks[start[id(ev.series)] + ev.series.code[ev.index]] for _, ev in parts]
    )
    span = int(session.max() - session.min() + 1) if session.size else 1
    key = (rank * span + (session - (session.min() if session.size else 0))) * len(METHODS)
    return np.asarray(np.argsort(key + method, kind="stable"), dtype=np.int64)


def _empty(patient: str) -> pd.DataFrame:
    frame = pd.DataFrame({patient: pd.Series(dtype=object)})
    for column in OUTPUT_COLUMNS:
        frame[column] = pd.Series(dtype=object)
    return frame


def criteria_table() -> pd.DataFrame:
    """The methods with their description, source and verification status.

    >>> criteria_table()["method"].tolist()
    ['stiles2004', 'strauss2006', 'gumz2012', 'rci_drop', 'self_report']
    """
    return pd.DataFrame(
        [
            {"method": c.name, "description": c.description, "source": c.source, "status": c.status}
            for c in CRITERIA.values()
        ]
    )
