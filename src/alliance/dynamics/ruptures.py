"""Rupture and repair detection in session-by-session alliance scores.

Four methods, each selectable by name; every event is one output row.

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
from alliance.dynamics.reliable_change import Z_95, Norms

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
    status: npt.NDArray[np.object_]
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
    rupture_col: str | None = None,
    resolution_col: str | None = None,
    intensity_col: str | None = None,
    resolved_at: float = 4.0,
    patient: str = "patient_id",
    session: str = "session",
) -> pd.DataFrame:
    """Detect rupture events with one or more methods; one row per event.

    ``method`` is a name from :data:`METHODS`, a list of them, or ``"all"`` (every method
    whose inputs are present: ``rci_drop`` needs ``norms``; ``self_report`` needs a rupture
    column). Output columns: ``patient_id, method, rupture_session, score_before, score_at,
    drop, threshold, repaired, repair_session, sessions_to_repair, intensity``.

    >>> import pandas as pd
    >>> flat = pd.DataFrame({"patient_id": 1, "session": [1, 2, 3, 4],
    ...                      "s": [4.0, 4.0, 4.0, 4.0]})
    >>> len(detect_ruptures(flat, "s", method=["stiles2004", "strauss2006"]))
    0
    """
    if repair_within < 1:
        raise DynamicsInputError("repair_within must be at least 1 session")
    chosen = _choose_methods(sessions, score, method, norms, rupture_col)
    frames = []
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
            series = prepare_series(sessions, score, patient=patient, session=session)
            events = _score_method(
                series, name, repair_within, norms, z, baseline_window, stiles_sd, strauss_sd
            )
        frames.append(_to_frame(events, name, patient))
    if not frames:
        return _empty(patient)
    out = pd.concat(frames, ignore_index=True)
    return out.sort_values([patient, "rupture_session", "method"], kind="stable").reset_index(
        drop=True
    )


def _choose_methods(
    sessions: pd.DataFrame,
    score: str | None,
    method: str | Sequence[str],
    norms: Norms | None,
    rupture_col: str | None,
) -> list[str]:
    has_self_report = _find_column(sessions, rupture_col, ("psq_rupture", "psq_1")) is not None
    if method == "all":
        chosen = [m for m in ("stiles2004", "strauss2006") if score is not None]
        if norms is not None and score is not None:
            chosen.append("rci_drop")
        if has_self_report:
            chosen.append("self_report")
        return chosen
    names = [method] if isinstance(method, str) else list(method)
    for name in names:
        if name not in CRITERIA:
            raise DynamicsInputError(
                f"unknown method {name!r}; choose from {', '.join(METHODS)} or 'all'"
            )
        if name == "rci_drop" and norms is None:
            raise DynamicsInputError(
                "method 'rci_drop' needs norms (SD and reliability): take them from the "
                "instrument file or estimate them from the data"
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
def _score_method(
    s: Series,
    name: str,
    window: int,
    norms: Norms | None,
    z: float,
    baseline_window: int | None,
    stiles_sd: float,
    strauss_sd: float,
) -> _Events:
    if name == "rci_drop":
        assert norms is not None
        return _rci_drop(s, norms, z, baseline_window, window)
    multiplier = stiles_sd if name == "stiles2004" else strauss_sd
    return _sd_drop(s, multiplier, window, rise_of_same_size=name == "stiles2004")


def _sd_drop(s: Series, multiplier: float, window: int, *, rise_of_same_size: bool) -> _Events:
    x = s.x
    sd = s.group_sd(x)
    usable = (s.sizes >= 3) & (sd > 0)
    threshold = s.broadcast(multiplier * sd)
    before = s.shift(x)
    drop = before - x
    hit = s.broadcast(usable.astype(np.float64)) > 0
    hit &= ~np.isnan(drop) & (drop >= threshold - _EPS * np.maximum(1.0, threshold))
    idx = np.flatnonzero(hit)
    target = x[idx] + threshold[idx] if rise_of_same_size else before[idx]
    status, repair = _find_repairs(s, idx, lambda rows, ev: x[rows] >= target[ev] - _EPS, window)
    return _Events(
        s, idx, before[idx], drop[idx], threshold[idx], status, repair, np.full(idx.size, np.nan)
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
    crit = z * norms.s_diff
    below = (baseline - x) >= crit - _EPS
    below &= ~np.isnan(baseline)
    was_below = s.shift(below.astype(np.float64)) > 0
    idx = np.flatnonzero(below & ~was_below)
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
    before = np.cumsum(values) - values
    pos = np.arange(values.size) - np.repeat(s.starts, s.sizes)
    m = np.minimum(pos, k)
    total = before - before[np.arange(values.size) - m]
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
) -> tuple[npt.NDArray[np.object_], FloatArray]:
    """Look ahead up to ``window`` session numbers for the first repairing session.

    ``repaired_at(rows, events)`` says, for candidate rows and the events they belong to,
    whether that row repairs the event.
    """
    n = s.x.size
    rupture_session = s.session[idx]
    repair = np.full(idx.size, np.nan)
    found = np.zeros(idx.size, dtype=bool)
    if include_same is not None:
        found |= include_same
        repair[include_same] = rupture_session[include_same]
    events = np.arange(idx.size)
    for step in range(1, window + 1):
        rows = idx + step
        ok = (~found) & (rows < n)
        rows_ok = rows[ok]
        ev_ok = events[ok]
        same = (s.code[rows_ok] == s.code[idx[ev_ok]]) & (
            s.session[rows_ok] <= rupture_session[ev_ok] + window
        )
        rows_ok, ev_ok = rows_ok[same], ev_ok[same]
        hit = np.asarray(repaired_at(rows_ok, ev_ok), dtype=bool)
        found[ev_ok[hit]] = True
        repair[ev_ok[hit]] = s.session[rows_ok[hit]]
    last = s.session[(s.starts + s.sizes - 1)[s.code[idx]]]
    status = np.where(found, "yes", np.where(last >= rupture_session + window, "no", "not yet"))
    return status.astype(object), repair


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
def _to_frame(ev: _Events, method: str, patient: str) -> pd.DataFrame:
    s = ev.series
    rupture_session = s.session[ev.index]
    repair = pd.array(
        np.where(np.isnan(ev.repair_session), 0, ev.repair_session).astype(np.int64),
        dtype="Int64",
    )
    repair[np.isnan(ev.repair_session)] = pd.NA
    frame = pd.DataFrame(
        {
            patient: s.patients[s.code[ev.index]],
            "method": method,
            "rupture_session": rupture_session,
            "score_before": ev.before,
            "score_at": s.x[ev.index] if method != "self_report" else np.nan,
            "drop": ev.drop,
            "threshold": ev.threshold,
            "repaired": ev.status,
            "repair_session": repair,
            "sessions_to_repair": repair - rupture_session,
            "intensity": ev.intensity,
        }
    )
    return frame


def _empty(patient: str) -> pd.DataFrame:
    frame = pd.DataFrame({patient: pd.Series(dtype=object)})
    for column in OUTPUT_COLUMNS:
        frame[column] = pd.Series(dtype=object)
    return frame


def criteria_table() -> pd.DataFrame:
    """The methods with their description, source and verification status.

    >>> criteria_table()["method"].tolist()
    ['stiles2004', 'strauss2006', 'rci_drop', 'self_report']
    """
    return pd.DataFrame(
        [
            {"method": c.name, "description": c.description, "source": c.source, "status": c.status}
            for c in CRITERIA.values()
        ]
    )
