"""Instrument forms for the web: questions to render, and validation + scoring of answers.

Validation and scoring are the scoring core's (:func:`alliance.scoring.score_values`, the
same checks and arithmetic as :func:`alliance.score` without the tables, which would cost
more than the scoring for a few forms); this module only turns form fields into the answer
matrix the core expects and its verdict into messages.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from alliance.instruments import Instrument, get_instrument
from alliance.instruments.schema import ResponseScale

if TYPE_CHECKING:
    from alliance.scoring import ValueScores


@dataclass(frozen=True)
class Option:
    """One choice of a Likert or binary item."""

    value: str
    label: str


@dataclass(frozen=True)
class Question:
    """One item as shown on a form."""

    name: str
    number: int
    text: str
    kind: str
    options: tuple[Option, ...] = ()
    low: float = 0.0
    high: float = 0.0
    low_label: str = ""
    high_label: str = ""
    condition: str = ""


@dataclass(frozen=True)
class FormView:
    """An instrument form ready for a template."""

    instrument_id: str
    form_id: str
    title: str
    questions: tuple[Question, ...]
    official: bool
    language: str
    licence: str


@dataclass
class FieldIssue:
    """A rejected answer: the field, the value and the rule it broke."""

    field: str
    value: str
    rule: str


@dataclass
class Scored:
    """Answers and scores of one valid form."""

    items: dict[str, float | None]
    scores: dict[str, Any] = field(default_factory=dict)


class SubmissionInvalid(ValueError):
    """The answers broke the instrument's rules; nothing was stored."""

    def __init__(self, instrument_id: str, issues: list[FieldIssue]) -> None:
        self.instrument_id = instrument_id
        self.issues = issues
        text = "; ".join(f"{i.field}: {i.rule}" for i in issues)
        super().__init__(f"{instrument_id}: {text}")


def form_languages(instrument_ids: Iterable[str], patient_language: str) -> set[str]:
    """The languages a session's forms can be shown in: the patient's own, every chrome
    catalogue and every installed wording of the due instruments."""
    from alliance.web import i18n

    found = {patient_language, *i18n.available()}
    for instrument_id in instrument_ids:
        found.update(installed_languages(instrument_id))
    return found


def language_issue(requested: str | None, offered: Iterable[str]) -> FieldIssue | None:
    """The broken rule when a submission names a language its forms are not offered in
    (none named: the patient's own language is recorded).

    >>> language_issue("de", {"en", "de"}) is None, language_issue(None, {"en"}) is None
    (True, True)
    >>> language_issue("tlh", {"en", "de"}).rule
    'must be one of de, en'
    """
    if not requested or requested in offered:
        return None
    return FieldIssue("lang", requested, f"must be one of {', '.join(sorted(offered))}")


def installed_text(instrument_id: str, language: str) -> dict[int, str] | None:
    """Official item wordings from an installed text pack, if the text-pack reader exists."""
    try:
        from alliance.io import textpacks  # the lead's module; absent in early builds
    except ImportError:
        return None
    result: dict[int, str] | None = textpacks.installed_text(instrument_id, language)
    return result


def installed_languages(instrument_id: str) -> list[str]:
    """Languages with an installed text pack for this instrument."""
    try:
        from alliance.io import textpacks
    except ImportError:
        return []
    return list(textpacks.installed_languages(instrument_id))


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def _options(scale: ResponseScale) -> tuple[Option, ...]:
    labels = {a.value: a.descriptor for a in scale.anchors}
    step = scale.step or 1.0
    count = round((scale.max - scale.min) / step) + 1
    values = [scale.min + k * step for k in range(count)]
    return tuple(
        Option(_fmt(v), f"{_fmt(v)} – {labels[v]}" if v in labels else _fmt(v)) for v in values
    )


def _question(inst: Instrument, number: int, text: str) -> Question:
    item = inst.items[number - 1]
    scale = inst.item_scale(number)
    condition = ""
    if item.asked_if:
        cond_scale = inst.item_scale(item.asked_if.item)
        labels = {a.value: a.descriptor for a in cond_scale.anchors}
        shown = labels.get(item.asked_if.equals, _fmt(item.asked_if.equals))
        condition = f"Answer only if your answer to question {item.asked_if.item} was “{shown}”."
    name = f"{inst.id}_{number}"
    if scale.kind == "vas":
        ends = {a.value: a.descriptor for a in scale.anchors}
        return Question(
            name,
            number,
            text,
            "vas",
            low=scale.min,
            high=scale.max,
            low_label=ends.get(scale.min, ""),
            high_label=ends.get(scale.max, ""),
            condition=condition,
        )
    return Question(name, number, text, "choice", options=_options(scale), condition=condition)


def build_form(instrument_id: str, form_id: str, language: str = "en") -> FormView:
    """The questions of one instrument form, in the official wording where installed."""
    inst = get_instrument(instrument_id)
    form = inst.get_form(form_id)
    official = installed_text(instrument_id, language)
    questions = tuple(
        _question(inst, item.number, (official or {}).get(item.number) or item.descriptor)
        for item in inst.items
    )
    return FormView(
        instrument_id=inst.id,
        form_id=form.id,
        title=f"{inst.short_name} – {form.name}",
        questions=questions,
        official=bool(official),
        language=language,
        licence=inst.licence,
    )


def _answer_row(inst: Instrument, data: Mapping[str, str]) -> dict[str, object]:
    """The raw answers of one form; answers to questions the form said to skip (their
    filter question has another answer) are dropped, as the form instructed."""
    row: dict[str, object] = {}
    for column in inst.item_columns:
        raw = str(data.get(column) or "").strip()
        row[column] = _as_number(raw) if raw else None
    for item in inst.items:
        if item.asked_if:
            filter_raw = row[f"{inst.id}_{item.asked_if.item}"]
            if _clean(filter_raw) != item.asked_if.equals:
                row[f"{inst.id}_{item.number}"] = None
    return row


def _answer_matrix(inst: Instrument, rows: list[dict[str, object]]) -> np.ndarray[Any, Any]:
    """Answers as an (n, p) matrix for the core: floats when every answer is a number (its
    fast path), else objects, so that the core itself names the cell and rule ("not a
    number")."""
    numeric = all(v is None or isinstance(v, float) for row in rows for v in row.values())
    cells = [[row[c] for c in inst.item_columns] for row in rows]
    return np.array(cells, dtype=float if numeric else object).reshape(len(rows), -1)


PLAIN_NUMBER = re.compile(r"-?[0-9]+(\.[0-9]+)?")


def _as_number(raw: str) -> float | str:
    """The answer as a float when it is a plain decimal number in ASCII digits, else
    unchanged (the core then says "not a number"): ``float`` alone would take "４"
    (fullwidth), "1_0", "inf" and "1e3"."""
    if not PLAIN_NUMBER.fullmatch(raw):
        return raw
    value = float(raw)
    return value if math.isfinite(value) else raw


def _clean(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def score_answers(instrument_id: str, form_id: str, data: Mapping[str, str]) -> Scored:
    """Validate and score one submitted form with the scoring core.

    Raises :class:`SubmissionInvalid` naming every rejected field and rule.
    """
    result = score_batch(instrument_id, form_id, [data])[0]
    if isinstance(result, SubmissionInvalid):
        raise result
    return result


def score_batch(
    instrument_id: str, form_id: str, batch: list[Mapping[str, str]]
) -> list[Scored | SubmissionInvalid]:
    """Validate and score many submissions of one form in one vectorised call of the core.

    Each entry is either the scored answers or a :class:`SubmissionInvalid` naming the
    rejected fields and rules of that submission only.
    """

    inst = get_instrument(instrument_id)
    form = inst.get_form(form_id)
    rows = [_answer_row(inst, data) for data in batch]
    answers = _answer_matrix(inst, rows)
    out = _score_rows(inst, form_id, form.scorable, form.respondent, rows, answers)
    gaps = _unscorable_gaps(inst, form.scorable, answers)
    return [_with_gaps(instrument_id, verdict, gap) for verdict, gap in zip(out, gaps, strict=True)]


def _unscorable_gaps(inst: Instrument, scorable: bool, answers: Any) -> list[list[str]]:
    """Per submission, the unanswered items when the scorer could not score it under the
    instrument's missing-item rule (:func:`alliance.scoring.validate.unanswered_beyond_rule`)."""
    from alliance.scoring import compile_key
    from alliance.scoring.keys import compile_unkeyed_total
    from alliance.scoring.validate import check_values, unanswered_beyond_rule

    key = compile_key(inst) if scorable else compile_unkeyed_total(inst)
    return unanswered_beyond_rule(check_values(answers, key), key)


def _with_gaps(
    instrument_id: str, verdict: Scored | SubmissionInvalid, gap: list[str]
) -> Scored | SubmissionInvalid:
    """The verdict, refused with every unanswered item named when too many are missing."""
    if not gap:
        return verdict
    rule = "not answered (too many questions of this form are unanswered to score it)"
    issues = [FieldIssue(column, "", rule) for column in gap]
    if isinstance(verdict, SubmissionInvalid):
        issues = verdict.issues + issues
    return SubmissionInvalid(instrument_id, issues)


def _score_rows(
    inst: Instrument,
    form_id: str,
    scorable: bool,
    respondent: str,
    rows: list[dict[str, object]],
    answers: Any,
) -> list[Scored | SubmissionInvalid]:
    """Validate and score the rows (invalid answers named per row)."""
    from alliance.scoring import score_unkeyed_values, score_values

    instrument_id = inst.id
    if not scorable:  # one call checks and scores the whole batch
        unkeyed = score_unkeyed_values(answers, inst)
        bad = {} if unkeyed.issues is None else _issues_by_row(instrument_id, unkeyed.issues)
        scored = [_unkeyed_scores(inst, unkeyed, respondent, i) for i in range(len(rows))]
        return [
            bad.get(i) or Scored(items=_items(rows[i]), scores=scored[i]) for i in range(len(rows))
        ]
    result = score_values(answers, inst, form=form_id)
    bad = {} if result.issues is None else _issues_by_row(instrument_id, result.issues)
    out: list[Scored | SubmissionInvalid] = []
    for i, (row, values) in enumerate(zip(rows, result.scores.tolist(), strict=True)):
        if i in bad:
            out.append(bad[i])
            continue
        scores: dict[str, Any] = {c: _clean(v) for c, v in zip(result.columns, values, strict=True)}
        scores[f"{inst.id}_status"] = result.status[i]
        out.append(Scored(items=_items(row), scores=scores))
    return out


def _issues_by_row(instrument_id: str, issues: pd.DataFrame) -> dict[int, SubmissionInvalid]:
    found: dict[int, list[FieldIssue]] = {}
    for r in issues.itertuples(index=False):
        value = "" if r.value is None else str(r.value)
        row = int(r.row)  # type: ignore[arg-type]
        found.setdefault(row, []).append(FieldIssue(str(r.column), value, str(r.rule)))
    return {row: SubmissionInvalid(instrument_id, items) for row, items in found.items()}


def unkeyed_total(inst: Instrument, respondent: str, items: Mapping[str, object]) -> dict[str, Any]:
    """Total of a therapist form without a published key: the scoring core's all-item
    total (:func:`alliance.scoring.score_unkeyed_values`: the instrument's reverse keys and
    missing-item rule; a project convention, key unverified), flagged in the status."""
    from alliance.scoring import score_unkeyed_values

    answers = _answer_matrix(inst, [{c: items.get(c) for c in inst.item_columns}])
    return _unkeyed_scores(inst, score_unkeyed_values(answers, inst), respondent, 0)


def _unkeyed_scores(
    inst: Instrument, result: ValueScores, respondent: str, row: int
) -> dict[str, Any]:
    """Row ``row`` of an unkeyed total as stored scores (therapist forms only)."""
    if respondent != "therapist":
        return {}
    status = (
        f"total only: all-item {inst.default_metric} with reverse keys, "
        "no published key for this form"
    )
    if result.status[row] != "ok":
        status = f"{status}; {result.status[row]}"
    return {result.columns[0]: _clean(result.scores[row, 0]), f"{inst.id}_status": status}


def _items(row: Mapping[str, object]) -> dict[str, float | None]:
    return {c: _clean(v) for c, v in row.items()}


def score_names(instrument_id: str) -> dict[str, str]:
    """Score column -> label, for tables and charts."""
    inst = get_instrument(instrument_id)
    return {f"{inst.id}_{s.id}": s.label for s in inst.scorable_scores}
