"""Alert settings, guidance texts and the instrument facts alerts rest on.

The alerts themselves are *episodes* (:mod:`alliance.dynamics.episodes`): one per event or
ongoing condition, updated while it lasts and closed when it ends. This module holds what
they share: :class:`AlertSettings` (every tunable rule, with its default), the guidance file
``guidance.toml`` (our own words, with sources), and how an alert finds the instrument, the
cutoff, the key status and the range of the score it rests on.

Example
-------
>>> load_guidance()["kinds"]["rupture"]["title"]
'Possible rupture'
>>> score_range(get_instrument("srs"), "total", "sum")
(0.0, 40.0)
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, Literal

import numpy as np

from alliance.instruments import Cutoff, Instrument, get_instrument, list_instruments

# The clinic tests every patient at every session, so a two-sided 95 % criterion (2.5 % false
# falls per session) would flag about a third of steady patients once over 15 sessions. A
# fall is one-sided; at 99 % (z = 2.326) that share is about one in seven. This is our
# choice for monitoring (Jacobson & Truax's 1.96 stays the research default of
# ``detect_ruptures``); on simulated clinics it moves rupture-alert precision from .61 to
# about .70 at a recall of about .66 (docs/dynamics.md).
Z_99_ONE_SIDED = 2.3263478740408408

KINDS = frozenset(
    {
        "rupture",
        "low_early_alliance",
        "rating_discrepancy",
        "below_cutoff",
        "self_reported_rupture",
        "ceiling_break",
        "below_expected",
        "signal",
    }
)


@dataclass(frozen=True)
class AlertSettings:
    """Tunable rules of the alert episodes (:func:`alliance.dynamics.alert_episodes`).

    ``rupture_method`` None means ``rci_drop`` (reliable drop below the running baseline)
    when norms are known, and no drop detection otherwise (the measurement error of the
    score is then unknown); ``z`` is the one-sided 99 % criterion for a reliable fall (see
    :data:`Z_99_ONE_SIDED`). ``persistent_sessions``: a score below its cutoff at this many
    scored sessions in a row is high. ``ceiling_sessions``: sessions at the top of the scale
    before the first lower score counts as a ceiling break. ``expected_sessions``: sessions
    in a row below the expected range before it is raised. ``kinds`` selects the kinds.

    >>> AlertSettings().repair_within
    3
    """

    early_sessions: int = 3
    low_early_percentile: float = 10.0
    repair_within: int = 3
    rupture_method: str | None = None
    gumz_sd: float = 1.0
    discrepancy_sd: float = 1.0
    z: float = Z_99_ONE_SIDED
    resolved_at: float = 4.0
    persistent_sessions: int = 3
    ceiling_sessions: int = 2
    expected_sessions: int = 2
    allow_unverified: bool = False
    kinds: frozenset[str] = KINDS


@cache
def load_guidance() -> dict[str, Any]:
    """The guidance file as a dict: ``{"sources": {...}, "kinds": {kind: {...}}}``.

    >>> sorted(load_guidance()["kinds"])[:2]
    ['below_cutoff', 'below_expected']
    """
    text = (resources.files("alliance.dynamics") / "guidance.toml").read_text(encoding="utf-8")
    data = tomllib.loads(text)
    for kind, entry in data["kinds"].items():
        unknown = set(entry["sources"]) - set(data["sources"])
        if unknown:
            raise ValueError(f"guidance.toml: kind {kind} cites unknown {sorted(unknown)}")
    return data


def resolve_instrument(score: str, instrument: Instrument | str | None) -> Instrument | None:
    """The instrument given, or the one whose id prefixes the score column (longest wins)."""
    if isinstance(instrument, Instrument):
        return instrument
    if isinstance(instrument, str):
        return get_instrument(instrument)
    matches = [i for i in list_instruments() if score.startswith(f"{i.id}_")]
    return max(matches, key=lambda i: len(i.id)) if matches else None


def score_id_of(inst: Instrument | None, column: str) -> str | None:
    """The instrument's score id behind a column (``wai_sr_total`` -> ``total``), if any."""
    if inst is None:
        return None
    for prefix in (f"{inst.id}_therapist_", f"t_{inst.id}_", f"{inst.id}_"):
        if column.startswith(prefix):
            candidate = column.removeprefix(prefix)
            if candidate in {s.id for s in inst.scores}:
                return candidate
    return None


def key_status_of(inst: Instrument | None, column: str) -> str:
    """Key status of the score a column holds; a therapist column of a form without its own
    published key is ``unverified`` (its total is the project's fallback, see
    :func:`alliance.scoring.score_unkeyed_total`)."""
    score_id = score_id_of(inst, column)
    if inst is None or score_id is None:
        return "not from an instrument"
    status = inst.get_score(score_id).key_status
    rater = column.startswith((f"{inst.id}_therapist_", f"t_{inst.id}_"))
    if rater:
        form = next((f for f in inst.forms if f.respondent == "therapist"), None)
        if form is None or not form.scorable:
            return "unverified"
    return status


def cutoff_of(inst: Instrument | None, score_id: str | None, metric: str | None) -> Cutoff | None:
    """The instrument's published cutoff for this score and metric, if any."""
    if inst is None or score_id is None:
        return None
    for cut in inst.cutoffs:
        if cut.score == score_id and cut.metric == metric:
            return cut
    return None


def flagged(values: np.ndarray, cut: Cutoff) -> np.ndarray:
    """Which values the cutoff flags (NaN is never flagged)."""
    with np.errstate(invalid="ignore"):
        ops = {
            "below": values < cut.value,
            "below_or_equal": values <= cut.value,
            "above": values > cut.value,
            "above_or_equal": values >= cut.value,
        }
    return np.asarray(ops[cut.flag_when])


def score_range(
    inst: Instrument | None, score_id: str | None, metric: Literal["mean", "sum"] | str | None
) -> tuple[float, float] | None:
    """Lowest and highest possible value of a score (sums: item count times the scale)."""
    if inst is None or score_id is None:
        return None
    items = inst.score_items(score_id)
    if not items:
        return None
    scales = [inst.item_scale(n) for n in items]
    low, high = min(sc.min for sc in scales), max(sc.max for sc in scales)
    if metric == "sum":
        return float(sum(sc.min for sc in scales)), float(sum(sc.max for sc in scales))
    return float(low), float(high)


def score_label(inst: Instrument | None, score_id: str | None, column: str) -> str:
    """A short name for the score in plain sentences ("WAI-SR total")."""
    if inst is None or score_id is None:
        return column
    return f"{inst.short_name} {inst.get_score(score_id).label.lower()}"
