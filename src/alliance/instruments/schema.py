"""Typed schema of an instrument definition.

An instrument is data: one TOML file per instrument under ``instruments/data``. This module
says what such a file may contain and checks its internal consistency on load, so that the
single vectorised scorer in :mod:`alliance.scoring` never meets an ill-formed key.

Example
-------
>>> from alliance.instruments import get_instrument
>>> wai_sr = get_instrument("wai_sr")
>>> wai_sr.score_items("goal")
(4, 6, 8, 11)
>>> wai_sr.role, wai_sr.monitoring_order, get_instrument("psq").role
('alliance', 1, 'post_session')
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

KeyStatus = Literal["verified", "likely", "unverified", "not published"]
Respondent = Literal["client", "therapist", "observer"]
Metric = Literal["mean", "sum"]
Role = Literal["alliance", "post_session", "outcome", "expectancy"]
KeyLevel = Literal["verified", "partly verified", "unverified"]


class UnknownFormError(KeyError):
    """The instrument has no form with the requested id (as :class:`UnknownInstrumentError`
    for instruments: a ``KeyError`` whose message names the known forms)."""

    def __str__(self) -> str:
        return str(self.args[0])


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Citation(_Strict):
    """A source, in author-year form with a DOI where one exists."""

    key: str = Field(description="short handle used by other fields, e.g. 'hatcher2006'")
    text: str
    doi: str | None = None


class Anchor(_Strict):
    """A labelled point of the response scale, described in our own words."""

    value: float
    descriptor: str


class ResponseScale(_Strict):
    """Likert (integer steps) or visual-analogue (continuous) response scale."""

    kind: Literal["likert", "vas", "binary"]
    min: float
    max: float
    step: float | None = Field(
        default=None, description="allowed increment from min; leave out for continuous (VAS)"
    )
    anchors: tuple[Anchor, ...] = ()

    @model_validator(mode="after")
    def _check(self) -> ResponseScale:
        if self.max <= self.min:
            raise ValueError(f"scale max ({self.max}) must exceed min ({self.min})")
        if self.kind == "vas" and self.step is not None:
            raise ValueError("a visual-analogue scale is continuous: leave step out")
        if self.kind != "vas" and (self.step is None or self.step <= 0):
            raise ValueError(f"a {self.kind} scale needs a positive step")
        for anchor in self.anchors:
            if not self.min <= anchor.value <= self.max:
                raise ValueError(f"anchor {anchor.value} lies outside {self.min}..{self.max}")
        return self


class Form(_Strict):
    """A respondent version of the instrument (client, therapist or observer)."""

    id: str
    respondent: Respondent
    name: str
    scorable: bool = Field(
        default=True, description="False where no published key exists for this form"
    )
    note: str = ""
    sources: tuple[str, ...] = ()


class AskedIf(_Strict):
    """The item is asked only when another item has a given answer (skip logic)."""

    item: int
    equals: float


class Item(_Strict):
    """One item: its number, the scores it belongs to and our own construct descriptor."""

    number: int = Field(ge=1)
    descriptor: str = Field(min_length=3, description="our own words, never the official text")
    scores: tuple[str, ...] = ()
    reverse: bool = False
    scale: ResponseScale | None = Field(
        default=None, description="overrides the instrument's scale for this item"
    )
    asked_if: AskedIf | None = None


class Score(_Strict):
    """A subscale, total or single-item score."""

    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    label: str
    kind: Literal["subscale", "total", "item"]
    key_status: KeyStatus
    sources: tuple[str, ...] = ()
    from_subscales: bool = Field(
        default=False,
        description="total computed as the mean of subscale scores (CALPAS) "
        "rather than over all its items",
    )
    note: str = ""


class MissingRule(_Strict):
    """How many unanswered items a score tolerates before it is not computed.

    A score is computed from the answered items (mean, or the mean prorated to the full
    item count for sums) when at most ``max_missing_fraction`` of its items are missing.
    """

    max_missing_fraction: float = Field(ge=0.0, lt=1.0)
    source: str


class Cutoff(_Strict):
    """A published threshold on a score, with its direction and source."""

    score: str
    metric: Metric
    value: float
    flag_when: Literal["below", "below_or_equal", "above", "above_or_equal"]
    meaning: str
    source: str
    level: KeyStatus


class Signal(_Strict):
    """An answer on a post-session item that a clinician should see (one alert per answer).

    The instrument file says which answers of which item raise the signal, with a short
    title, a severity, guidance in our own words and the sources behind it. The alert
    episodes themselves are opened by :mod:`alliance.dynamics`; this is only the data.
    """

    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$", description="snake_case, unique per file")
    item: int = Field(ge=1, description="item number of this instrument")
    values: tuple[float, ...] = Field(
        min_length=1, description="answers that raise the signal, each on the item's scale"
    )
    title: str = Field(min_length=3, description="short, plain words")
    severity: Literal["warning", "high"]
    guidance: str = Field(
        min_length=20, description="2-4 sentences in our own words: a prompt for reflection"
    )
    sources: tuple[str, ...] = Field(
        min_length=1, description="citation keys of the file's [[citations]]"
    )
    key_status: KeyLevel
    note: str = ""


class Norm(_Strict):
    """Published statistics of a score in a named sample (reliability for RCI, mean, SD)."""

    score: str
    metric: Metric
    sample: str
    n: int | None = None
    mean: float | None = None
    sd: float | None = None
    reliability: float | None = Field(default=None, description="e.g. Cronbach's alpha")
    source: str
    level: KeyStatus


class Instrument(_Strict):
    """A complete instrument definition, validated for internal consistency."""

    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    name: str
    short_name: str
    measures: str = Field(description="what the instrument measures, in our words")
    key_status: KeyLevel
    key_note: str = ""
    role: Role = Field(
        default="alliance",
        description="alliance: measures the alliance and is monitored as such; post_session: "
        "questions asked after a session (ruptures and the like); outcome: symptoms or change; "
        "expectancy: the patient's expectations of therapy (an intake measure)",
    )
    monitoring_order: int = Field(
        default=100,
        description="preference among alliance measures when a patient has several "
        "(lower first; ties by id)",
    )
    citations: tuple[Citation, ...]
    licence: str = Field(description="who holds the wording and where a clinic gets it")
    default_metric: Metric = "mean"
    scale: ResponseScale
    forms: tuple[Form, ...]
    items: tuple[Item, ...]
    scores: tuple[Score, ...]
    missing: MissingRule
    cutoffs: tuple[Cutoff, ...] = ()
    norms: tuple[Norm, ...] = ()
    signals: tuple[Signal, ...] = ()

    @model_validator(mode="after")
    def _consistent(self) -> Instrument:
        numbers = [item.number for item in self.items]
        if numbers != list(range(1, len(numbers) + 1)):
            raise ValueError(f"items must be numbered 1..{len(numbers)} in order")
        score_ids = [s.id for s in self.scores]
        if len(set(score_ids)) != len(score_ids):
            raise ValueError("score ids must be unique")
        cited = {c.key for c in self.citations}
        for item in self.items:
            unknown = set(item.scores) - set(score_ids)
            if unknown:
                raise ValueError(f"item {item.number} names unknown score(s) {sorted(unknown)}")
            if item.asked_if and not 1 <= item.asked_if.item <= len(numbers):
                raise ValueError(f"item {item.number}: asked_if names no such item")
        for score in self.scores:
            if score.from_subscales and score.kind != "total":
                raise ValueError(f"score {score.id}: from_subscales is for totals only")
            if score.kind == "item" and len(self.score_items(score.id)) != 1:
                raise ValueError(f"single-item score {score.id} must have exactly one item")
            missing_sources = set(score.sources) - cited
            if missing_sources:
                raise ValueError(f"score {score.id} cites unknown {sorted(missing_sources)}")
        referenced = [("cutoff", c.score) for c in self.cutoffs] + [
            ("norm", n.score) for n in self.norms
        ]
        for kind, ref in referenced:
            if ref not in score_ids:
                raise ValueError(f"{kind} names unknown score {ref!r}")
        form_ids = [f.id for f in self.forms]
        if len(set(form_ids)) != len(form_ids) or not form_ids:
            raise ValueError("forms must be a non-empty list of unique ids")
        self._check_signals(cited)
        return self

    def _check_signals(self, cited: set[str]) -> None:
        seen: set[str] = set()
        for n, signal in enumerate(self.signals):
            where = f"signals.{n} ({signal.id!r})"
            if signal.id in seen:
                raise ValueError(f"{where}.id: signal ids must be unique; {signal.id!r} repeats")
            seen.add(signal.id)
            if not 1 <= signal.item <= len(self.items):
                raise ValueError(
                    f"{where}.item: names no item {signal.item} "
                    f"(the instrument has items 1..{len(self.items)})"
                )
            scale = self.item_scale(signal.item)
            for value in signal.values:
                if not _on_scale(value, scale):
                    step = "" if scale.step is None else f" in steps of {scale.step:g}"
                    raise ValueError(
                        f"{where}.values: {value:g} is not an answer on item {signal.item}'s "
                        f"scale {scale.min:g}..{scale.max:g}{step}"
                    )
            unknown = sorted(set(signal.sources) - cited)
            if unknown:
                raise ValueError(f"{where}.sources: cites unknown {unknown} (not in [[citations]])")

    # -- derived views -------------------------------------------------------------------
    @property
    def item_columns(self) -> tuple[str, ...]:
        """Column names of the items, ``<id>_<n>``."""
        return tuple(f"{self.id}_{item.number}" for item in self.items)

    def score_items(self, score_id: str) -> tuple[int, ...]:
        """Item numbers that make up a score (for a from-subscales total: all their items)."""
        score = self.get_score(score_id)
        if score.from_subscales:
            subscales = self.subscales_of(score_id)
            return tuple(i.number for i in self.items if any(s in subscales for s in i.scores))
        return tuple(item.number for item in self.items if score_id in item.scores)

    def subscales_of(self, total_id: str) -> tuple[str, ...]:
        """The subscales a from-subscales total averages (empty for other scores)."""
        if not self.get_score(total_id).from_subscales:
            return ()
        return tuple(s.id for s in self.scores if s.kind == "subscale")

    def get_score(self, score_id: str) -> Score:
        for score in self.scores:
            if score.id == score_id:
                return score
        raise KeyError(f"instrument {self.id!r} has no score {score_id!r}")

    def get_form(self, form_id: str | None) -> Form:
        """The named form, or the first (default) form when ``form_id`` is None."""
        if form_id is None:
            return self.forms[0]
        for form in self.forms:
            if form.id == form_id:
                return form
        known = ", ".join(f.id for f in self.forms)
        raise UnknownFormError(f"instrument {self.id!r} has no form {form_id!r} (forms: {known})")

    def item_scale(self, number: int) -> ResponseScale:
        """The response scale of one item (its own, or the instrument's)."""
        return self.items[number - 1].scale or self.scale

    def signals_on(self, number: int) -> tuple[Signal, ...]:
        """The signals raised by answers on one item."""
        return tuple(s for s in self.signals if s.item == number)

    @property
    def scorable_scores(self) -> tuple[Score, ...]:
        """Scores that have a key (at least one item or subscales to combine)."""
        return tuple(s for s in self.scores if self.score_items(s.id))

    @property
    def missing_key(self) -> str | None:
        """Why nothing can be scored (no item keyed to any score, e.g. the CALPAS until a
        clinic installs the manual's key), or None when the instrument has a key."""
        if self.scorable_scores:
            return None
        return f"{self.short_name} cannot be scored: {self.key_note}"


def _on_scale(value: float, scale: ResponseScale) -> bool:
    """Whether ``value`` is an answer the scale allows (in range, and on its step grid)."""
    if not scale.min <= value <= scale.max:
        return False
    if scale.step is None:
        return True
    steps = (value - scale.min) / scale.step
    return math.isclose(steps, round(steps), abs_tol=1e-9)
