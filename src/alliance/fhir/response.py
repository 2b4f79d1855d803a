"""QuestionnaireResponses in and out: one form's answers, checked against its instrument.

Out, :func:`to_questionnaire_response` writes a :class:`FormResponse` (one administration
of one form: its item answers, who answered, when) as a QuestionnaireResponse. In,
:func:`read_questionnaire_response` checks a QuestionnaireResponse and returns the
:class:`FormResponse`, or raises :class:`FhirInputError` naming each problem: not a
QuestionnaireResponse, a Questionnaire we do not have, an unknown or repeated linkId, an
answer of the wrong type, off the scale or given to an item its ``enableWhen`` did not ask,
a required item unanswered. Score items (the Questionnaire's calculated expressions) are
accepted and ignored: scores are always our scorer's. Round trips are exact.

Example
-------
>>> r = FormResponse("psq", "patient", {"psq_1": 1.0, "psq_2": 3.0, "psq_3": 4.0},
...                  subject="P-007", session=4, authored="2026-03-02")
>>> qr = to_questionnaire_response(r)
>>> qr["item"][0]["linkId"], qr["item"][0]["answer"][0]["valueCoding"]["display"]
('psq_1', '1 – yes')
>>> read_questionnaire_response(qr) == r
True
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from alliance.fhir._common import (
    ANSWER_SYSTEM,
    MAX_RESOURCE_BYTES,
    PATIENT_CODE_SYSTEM,
    RESEARCH_ID_SYSTEM,
    SESSION_EXTENSION,
    FhirInputError,
    Issue,
    fhir_id,
    key_status_tag,
    number_code,
    structure_issues,
    validated,
)
from alliance.fhir.questionnaire import (
    SCORES_GROUP,
    answer_codings,
    answer_type,
    form_of,
    questionnaire_id,
    questionnaire_url,
)
from alliance.instruments import Instrument, get_instrument
from alliance.instruments.schema import _on_scale

ACCEPTED_STATUS = ("completed", "amended")


@dataclass(frozen=True)
class FormResponse:
    """One administration of one instrument form.

    ``items`` maps every answered item column to its value (unanswered items may be left
    out or None); ``subject`` is the patient's code (or research id, when de-identified);
    ``authored`` an ISO date or date-time.
    """

    instrument_id: str
    form_id: str
    items: Mapping[str, float | None] = field(compare=False)
    subject: str | None = None
    session: int | None = None
    authored: str | None = None
    language: str = "en"
    id: str | None = None
    deidentified: bool = False
    answered: dict[str, float] = field(init=False, repr=False, compare=True)

    def __post_init__(self) -> None:
        kept = {k: float(v) for k, v in self.items.items() if v is not None and not _nan(v)}
        object.__setattr__(self, "answered", kept)


def _nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def to_questionnaire_response(response: FormResponse) -> dict[str, Any]:
    """The QuestionnaireResponse of one stored form (answered items only)."""
    inst = get_instrument(response.instrument_id)
    form = inst.get_form(response.form_id)
    resource: dict[str, Any] = {"resourceType": "QuestionnaireResponse"}
    if response.id:
        resource["id"] = fhir_id(response.id)
    tags = key_status_tag(inst.key_status if form.scorable else "unverified")
    if tags:
        resource["meta"] = {"tag": tags}
    resource["language"] = response.language
    if response.session is not None:
        resource["extension"] = [{"url": SESSION_EXTENSION, "valueInteger": response.session}]
    resource["questionnaire"] = questionnaire_url(inst.id, form.id)
    resource["status"] = "completed"
    if response.subject is not None:
        system = RESEARCH_ID_SYSTEM if response.deidentified else PATIENT_CODE_SYSTEM
        resource["subject"] = {"identifier": {"system": system, "value": response.subject}}
    if response.authored is not None:
        resource["authored"] = response.authored
    resource["item"] = [
        {"linkId": column, "answer": [_answer(inst, number, response.answered[column])]}
        for number, column in enumerate(inst.item_columns, start=1)
        if column in response.answered
    ]
    return validated(resource)


def _answer(inst: Instrument, number: int, value: float) -> dict[str, Any]:
    if answer_type(inst, number) == "decimal":
        return {"valueDecimal": value}
    code = number_code(value)
    coding = next(c for c in answer_codings(inst.item_scale(number)) if c["code"] == code)
    return {"valueCoding": coding}


# -- reading -----------------------------------------------------------------------------
def read_questionnaire_response(body: Any) -> FormResponse:
    """Check a QuestionnaireResponse (a parsed JSON object, or its text) against the form
    it names and return its answers; :class:`FhirInputError` lists every problem."""
    resource = _parsed(body)
    issues = structure_issues(resource, "QuestionnaireResponse")
    if issues:
        raise FhirInputError(issues)
    try:
        inst, form = form_of(str(resource.get("questionnaire") or ""))
    except KeyError as exc:
        where = "QuestionnaireResponse.questionnaire"
        raise FhirInputError([Issue(where, str(exc.args[0]), "not-found")]) from None
    if resource.get("status") not in ACCEPTED_STATUS:
        issues.append(
            Issue(
                "QuestionnaireResponse.status",
                f"must be one of {', '.join(ACCEPTED_STATUS)} (only finished forms are scored)",
                "value",
            )
        )
    answers = _answers(inst, questionnaire_id(inst.id, form.id), resource, issues)
    _check_asked(inst, answers, issues)
    subject, deidentified = _subject(resource.get("subject"), issues)
    if issues:
        raise FhirInputError(issues)
    return FormResponse(
        inst.id,
        form.id,
        {column: value for column, (value, _) in answers.items()},
        subject=subject,
        session=_session(resource),
        authored=resource.get("authored"),
        language=str(resource.get("language") or "en"),
        id=resource.get("id"),
        deidentified=deidentified,
    )


def _parsed(body: Any) -> Any:
    if isinstance(body, bytes | str):
        if len(body) > MAX_RESOURCE_BYTES:
            rule = f"must be at most {MAX_RESOURCE_BYTES} bytes"
            raise FhirInputError([Issue("QuestionnaireResponse", rule, "too-long")])
        try:
            return json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise FhirInputError([Issue("(body)", "not valid JSON", "structure")]) from None
    return body


def _walk(items: Any, path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    for k, item in enumerate(items or []):
        where = f"{path}.item[{k}]"
        yield where, item
        yield from _walk(item.get("item"), where)


def _answers(
    inst: Instrument, qid: str, resource: dict[str, Any], issues: list[Issue]
) -> dict[str, tuple[float, str]]:
    """Item column -> (value, location) of each answered item."""
    columns = {c: n for n, c in enumerate(inst.item_columns, start=1)}
    ignored = {SCORES_GROUP, *(f"{inst.id}_{s.id}" for s in inst.scores)}
    found: dict[str, tuple[float, str]] = {}
    seen: set[str] = set()
    for where, item in _walk(resource.get("item"), "QuestionnaireResponse"):
        link = str(item.get("linkId", ""))
        if link in ignored:
            continue
        if link not in columns:
            shown = repr(link[:64])
            issues.append(Issue(f"{where}.linkId", f"{shown} is not an item of {qid}", "value"))
            continue
        if link in seen:
            issues.append(Issue(f"{where}.linkId", f"{link} appears more than once", "value"))
            continue
        seen.add(link)
        value = _answer_value(inst, columns[link], item.get("answer") or [], where, issues)
        if value is not None:
            found[link] = (value, where)
    return found


def _answer_value(
    inst: Instrument, number: int, answers: list[Any], where: str, issues: list[Issue]
) -> float | None:
    column = f"{inst.id}_{number}"
    if not answers:
        return None
    if len(answers) > 1:
        issues.append(Issue(f"{where}.answer", f"{column} takes one answer", "value"))
        return None
    answer = answers[0]
    at = f"{where}.answer[0]"
    if answer.get("item"):
        issues.append(Issue(f"{at}.item", f"{column}: nested items are not part of the form"))
        return None
    scale = inst.item_scale(number)
    kind = answer_type(inst, number)
    if "valueCoding" in answer and kind == "choice":
        coding = answer["valueCoding"]
        codes = {c["code"]: c for c in answer_codings(scale)}
        system = coding.get("system")
        if system not in (None, ANSWER_SYSTEM) or coding.get("code") not in codes:
            rule = f"{column}: must be one of the answer options {', '.join(codes)}"
            issues.append(Issue(f"{at}.valueCoding", rule, "value"))
            return None
        return float(coding["code"])
    number_value = answer.get("valueDecimal", answer.get("valueInteger"))
    if isinstance(number_value, int | float) and not isinstance(number_value, bool):
        value = float(number_value) if abs(number_value) < 1e300 else math.inf  # no overflow
        if _on_scale(value, scale):
            return value
        step = "" if scale.step is None else f" in steps of {scale.step:g}"
        rule = f"{column}: must lie in {scale.min:g}..{scale.max:g}{step}"
        issues.append(Issue(at, rule, "value"))
        return None
    wanted = "valueCoding (an answer option)" if kind == "choice" else "valueDecimal"
    given = next((k for k in answer if k.startswith("value")), "no value")
    if given in ("valueDecimal", "valueInteger"):  # the models accept a numeric string
        given = f"{given} given as text"
    issues.append(Issue(at, f"{column}: must be a {wanted}, not {given}", "value"))
    return None


def _check_asked(
    inst: Instrument, answers: dict[str, tuple[float, str]], issues: list[Issue]
) -> None:
    """Answers to items their enableWhen did not ask, and required items left out."""
    for item in inst.items:
        column = f"{inst.id}_{item.number}"
        asked = True
        if item.asked_if:
            trigger = answers.get(f"{inst.id}_{item.asked_if.item}")
            asked = trigger is not None and trigger[0] == item.asked_if.equals
        if column in answers and not asked:
            condition = f"{inst.id}_{item.asked_if.item} = {number_code(item.asked_if.equals)}"  # type: ignore[union-attr]
            rule = f"{column} is answered but not asked (enableWhen {condition})"
            issues.append(Issue(answers[column][1], rule, "business-rule"))
        required = inst.missing.max_missing_fraction == 0
        if required and asked and column not in answers:
            issues.append(Issue("QuestionnaireResponse.item", f"{column}: required", "required"))


def _subject(subject: Any, issues: list[Issue]) -> tuple[str | None, bool]:
    """The patient code (or research id) a response is about."""
    if not subject:
        return None, False
    identifier = subject.get("identifier") or {}
    system = identifier.get("system")
    if identifier.get("value") and system in (None, PATIENT_CODE_SYSTEM, RESEARCH_ID_SYSTEM):
        return str(identifier["value"]), system == RESEARCH_ID_SYSTEM
    reference = str(subject.get("reference") or "")
    if reference.startswith("Patient/") and len(reference) > len("Patient/"):
        return reference.removeprefix("Patient/"), False
    rule = f"must be a Patient/<code> reference or an identifier of system {PATIENT_CODE_SYSTEM}"
    issues.append(Issue("QuestionnaireResponse.subject", rule, "value"))
    return None, False


def _session(resource: dict[str, Any]) -> int | None:
    for extension in resource.get("extension") or []:
        if extension.get("url") == SESSION_EXTENSION and "valueInteger" in extension:
            return int(extension["valueInteger"])
    return None


def authored_date(response: FormResponse) -> date | None:
    """The calendar day a response was authored, if it says."""
    if not response.authored:
        return None
    text = response.authored
    return datetime.fromisoformat(text).date() if "T" in text else date.fromisoformat(text)
