"""Instrument forms as FHIR R4 Questionnaires, following the SDC implementation guide.

One Questionnaire per instrument form. Each item's ``linkId`` is our item column
(``wai_sr_4``), so answers map to tables without a lookup; Likert and binary items are
``choice`` items whose answer options are the scale's values (codes ``"1"`` .. ``"5"`` in
:data:`ANSWER_SYSTEM`, displayed with our anchor descriptors); visual-analogue items are
``decimal`` items with minValue and maxValue. Skip logic (``asked_if``) becomes
``enableWhen``; items are ``required`` only where the missing-item rule tolerates no gap.
A form with a published key carries its scores as read-only items with an SDC
``calculatedExpression`` (FHIRPath), the same arithmetic as :mod:`alliance.scoring`:
the mean of the answered items (reverse keys mirrored), prorated for sums, empty when
more items are missing than the rule allows.

Item texts are our own descriptors unless the clinic installed a text pack for the
language; the Questionnaire says which, and carries the instrument's licence statement.

Example
-------
>>> q = questionnaire("wai_sr")
>>> q["id"], q["item"][0]["linkId"], q["item"][0]["answerOption"][0]["valueCoding"]["code"]
('wai-sr-client', 'wai_sr_1', '1')
>>> q["item"][-1]["item"][-1]["linkId"]
'wai_sr_total'
"""

from __future__ import annotations

import hashlib
from typing import Any

from alliance.fhir._common import (
    ANSWER_SYSTEM,
    BASE,
    CALCULATED,
    ITEM_CONTROL,
    MAX_VALUE,
    MIN_VALUE,
    SDC_QUESTIONNAIRE,
    fhir_id,
    key_status_tag,
    number_code,
    validated,
)
from alliance.instruments import Instrument, get_instrument, list_instruments
from alliance.instruments.schema import Form, ResponseScale, Score

SCORES_GROUP = "scores"


def questionnaire_id(instrument_id: str, form_id: str) -> str:
    """The id of a form's Questionnaire.

    >>> questionnaire_id("wai_sr", "therapist")
    'wai-sr-therapist'
    """
    return fhir_id(f"{instrument_id}-{form_id}")


def questionnaire_url(instrument_id: str, form_id: str) -> str:
    """The canonical URL of a form's Questionnaire."""
    return f"{BASE}/Questionnaire/{questionnaire_id(instrument_id, form_id)}"


def definition_version(inst: Instrument) -> str:
    """A version that changes whenever the definition does (an installed key override
    gives its Questionnaire another version than the shipped file's)."""
    return hashlib.sha256(inst.model_dump_json().encode()).hexdigest()[:12]


def form_of(reference: str) -> tuple[Instrument, Form]:
    """The instrument and form a Questionnaire id or canonical URL (``url|version``
    allowed) names; ``KeyError`` naming the known ones when none matches.

    >>> inst, form = form_of("https://w3id.org/alliance/fhir/Questionnaire/psq-patient|abc")
    >>> inst.id, form.id
    ('psq', 'patient')
    """
    wanted = reference.split("|")[0].rstrip("/").rsplit("/", 1)[-1]
    for inst in list_instruments():
        for form in inst.forms:
            if questionnaire_id(inst.id, form.id) == wanted:
                return inst, form
    raise KeyError(f"no Questionnaire {wanted!r} (see GET /fhir/Questionnaire)")


def answer_type(inst: Instrument, number: int) -> str:
    """The FHIR item type of an item: ``choice`` for Likert and binary scales, ``decimal``
    for visual-analogue ones."""
    return "decimal" if inst.item_scale(number).kind == "vas" else "choice"


def questionnaire(
    instrument_id: str, form_id: str | None = None, language: str = "en"
) -> dict[str, Any]:
    """The Questionnaire of one instrument form (the first form when ``form_id`` is None),
    with the clinic's installed wording for ``language`` where there is one."""
    from alliance.io.textpacks import installed_text

    inst = get_instrument(instrument_id)
    form = inst.get_form(form_id)
    wording = installed_text(inst.id, language)
    official = bool(wording)
    items: list[dict[str, Any]] = [_item(inst, item.number, wording) for item in inst.items]
    scores = _score_items(inst) if form.scorable else []
    if scores:
        items.append({"linkId": SCORES_GROUP, "text": "Scores", "type": "group", "item": scores})
    resource: dict[str, Any] = {
        "resourceType": "Questionnaire",
        "id": questionnaire_id(inst.id, form.id),
        "meta": {"profile": [SDC_QUESTIONNAIRE]},
        "language": language if official else "en",
        "url": questionnaire_url(inst.id, form.id),
        "version": definition_version(inst),
        "name": _computable_name(inst.id, form.id),
        "title": f"{inst.short_name} – {form.name}",
        "status": "active",
        "subjectType": ["Patient"],
        "publisher": "alliance",
        "description": _description(inst, form, official),
        "copyright": inst.licence,
        "item": items,
    }
    tags = key_status_tag(inst.key_status if form.scorable else "unverified")
    if tags:
        resource["meta"]["tag"] = tags
    return validated(resource)


def all_questionnaires(language: str = "en") -> list[dict[str, Any]]:
    """Every form of every instrument as a Questionnaire."""
    return [
        questionnaire(inst.id, form.id, language)
        for inst in list_instruments()
        for form in inst.forms
    ]


def _computable_name(instrument_id: str, form_id: str) -> str:
    parts = f"{instrument_id}_{form_id}".replace("-", "_").split("_")
    return "".join(p[:1].upper() + p[1:] for p in parts if p)


def _description(inst: Instrument, form: Form, official: bool) -> str:
    texts = (
        "Item texts are the official wording from the clinic's text pack."
        if official
        else "Item texts are our own descriptors of each item's construct, not the official "
        "wording (a clinic holding the wording installs it as a text pack)."
    )
    key = f"Scoring key: {inst.key_status}." if form.scorable else "No published key."
    note = f" {inst.key_note}" if inst.key_note else ""
    sources = "; ".join(c.text for c in inst.citations)
    return f"{inst.measures} {texts} {key}{note} Sources: {sources}"


def _item(inst: Instrument, number: int, wording: dict[int, str] | None) -> dict[str, Any]:
    item = inst.items[number - 1]
    scale = inst.item_scale(number)
    out: dict[str, Any] = {
        "linkId": f"{inst.id}_{number}",
        "prefix": f"{number}.",
        "text": (wording or {}).get(number) or item.descriptor,
        "type": answer_type(inst, number),
        "required": inst.missing.max_missing_fraction == 0,
    }
    if out["type"] == "choice":
        out["answerOption"] = [{"valueCoding": c} for c in answer_codings(scale)]
    else:
        out["extension"] = [
            {"url": MIN_VALUE, "valueDecimal": scale.min},
            {"url": MAX_VALUE, "valueDecimal": scale.max},
            {"url": ITEM_CONTROL, "valueCodeableConcept": _control("slider")},
        ]
    if item.asked_if:
        condition = item.asked_if
        trigger = f"{inst.id}_{condition.item}"
        if answer_type(inst, condition.item) == "choice":
            answer: dict[str, Any] = {"answerCoding": _coding(condition.equals, inst, condition)}
        else:
            answer = {"answerDecimal": condition.equals}
        out["enableWhen"] = [{"question": trigger, "operator": "=", **answer}]
    return out


def _coding(value: float, inst: Instrument, condition: Any) -> dict[str, str]:
    scale = inst.item_scale(condition.item)
    return next(c for c in answer_codings(scale) if c["code"] == number_code(value))


def _control(code: str) -> dict[str, Any]:
    system = "http://hl7.org/fhir/questionnaire-item-control"
    return {"coding": [{"system": system, "code": code}]}


def answer_codings(scale: ResponseScale) -> list[dict[str, str]]:
    """The answer options of a Likert or binary scale, as Codings (code = value)."""
    labels = {a.value: a.descriptor for a in scale.anchors}
    step = scale.step or 1.0
    count = round((scale.max - scale.min) / step) + 1
    codings = []
    for k in range(count):
        value = scale.min + k * step
        code = number_code(value)
        display = f"{code} – {labels[value]}" if value in labels else code
        codings.append({"system": ANSWER_SYSTEM, "code": code, "display": display})
    return codings


# -- scores as calculated expressions ----------------------------------------------------
def _score_items(inst: Instrument) -> list[dict[str, Any]]:
    """Read-only decimal items, one per score the key lets FHIRPath compute."""
    out = []
    for score in inst.scorable_scores:
        expression = score_expression(inst, score)
        if expression is None:
            continue
        out.append(
            {
                "linkId": f"{inst.id}_{score.id}",
                "text": score.label,
                "type": "decimal",
                "readOnly": True,
                "extension": [
                    {
                        "url": CALCULATED,
                        "valueExpression": {"language": "text/fhirpath", "expression": expression},
                    }
                ],
            }
        )
    return out


def score_expression(inst: Instrument, score: Score) -> str | None:
    """The FHIRPath that computes a score from a QuestionnaireResponse (``%resource``),
    or None where the key does not allow one: totals over subscale scores (CALPAS) and
    multi-item scores with skip logic (not-asked items do not count as missing).

    >>> score_expression(get_instrument("psq"), get_instrument("psq").get_score("rupture"))
    "%resource.repeat(item).where(linkId = 'psq_1').answer.value.select(code.toDecimal())"
    """
    if score.from_subscales:
        return None
    numbers = inst.score_items(score.id)
    if len(numbers) > 1 and any(inst.items[n - 1].asked_if for n in numbers):
        return None
    values = _answered_values(inst, numbers)
    if len(numbers) == 1:
        return values
    n = len(numbers)
    needed = n - int(n * inst.missing.max_missing_fraction + 1e-9)  # scoring.keys' floor
    mean = f"{values}.aggregate($this + $total, 0) / {values}.count()"
    if inst.default_metric == "sum":
        mean = f"({mean}) * {n}"
    return f"iif({values}.count() >= {needed}, {mean}, {{}})"


def _answered_values(inst: Instrument, numbers: tuple[int, ...]) -> str:
    """The answered values of the items, reverse-keyed ones mirrored, as one collection
    (``combine`` keeps repeated values, which a union would drop)."""
    parts = []
    groups: dict[tuple[str, bool, float], list[int]] = {}
    for n in numbers:
        scale = inst.item_scale(n)
        mirror = scale.min + scale.max if inst.items[n - 1].reverse else 0.0
        groups.setdefault((answer_type(inst, n), inst.items[n - 1].reverse, mirror), []).append(n)
    for (kind, reverse, mirror), members in groups.items():
        ids = [f"'{inst.id}_{n}'" for n in members]
        where = f"linkId = {ids[0]}" if len(ids) == 1 else f"linkId in ({' | '.join(ids)})"
        value = ".select(code.toDecimal())" if kind == "choice" else ""
        part = f"%resource.repeat(item).where({where}).answer.value{value}"
        if reverse:
            part += f".select({number_code(mirror)} - $this)"
        parts.append(part)
    combined = parts[0]
    for part in parts[1:]:
        combined = f"{combined}.combine({part})"
    return combined if len(parts) == 1 else f"({combined})"


# -- a clinic's Questionnaire as a text pack ---------------------------------------------
def text_pack_rows(resource: dict[str, Any]) -> list[dict[str, Any]]:
    """The item wordings of a Questionnaire a clinic holds, as text-pack rows
    (``instrument, language, item, text``) for :func:`alliance.instruments.textpack.
    validate_text_pack`, which applies the usual matching rules (every item once, no
    unknown item). The instrument is the one our Questionnaire URL or id names, else the
    prefix of the linkIds (``wai_sr_4``); the language is the Questionnaire's.

    >>> q = questionnaire("srs")
    >>> [(r["instrument"], r["item"]) for r in text_pack_rows(q)][:2]
    [('srs', '1'), ('srs', '2')]
    """
    from alliance.instruments.textpack import TextPackError

    if resource.get("resourceType") != "Questionnaire":
        raise TextPackError("a FHIR text pack must be a Questionnaire")
    language = resource.get("language")
    if not language:
        raise TextPackError("Questionnaire.language: required (the language of the wording)")
    items = [i for i in _flat(resource.get("item") or []) if i.get("type") != "group"]
    instrument_id = _instrument_named(resource, items)
    rows = []
    for item in items:
        link = str(item.get("linkId", ""))
        prefix, _, number = link.rpartition("_")
        if item.get("readOnly") or prefix != instrument_id:
            if not item.get("readOnly"):
                raise TextPackError(f"item linkId {link[:64]!r}: not an item of {instrument_id}")
            continue
        rows.append(
            {
                "instrument": instrument_id,
                "language": language,
                "item": number,
                "text": item.get("text"),
            }
        )
    return rows


def _flat(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for item in items:
        out.append(item)
        out.extend(_flat(item.get("item") or []))
    return out


def _instrument_named(resource: dict[str, Any], items: list[dict[str, Any]]) -> str:
    from alliance.instruments.textpack import TextPackError

    for reference in (resource.get("url"), resource.get("id")):
        if reference:
            try:
                return form_of(str(reference))[0].id
            except KeyError:
                pass
    prefixes = {str(i.get("linkId", "")).rpartition("_")[0] for i in items if not i.get("readOnly")}
    if len(prefixes) == 1:
        return prefixes.pop()
    raise TextPackError(
        "Questionnaire: names none of our forms (url or id) and its linkIds do not share "
        "one instrument prefix such as wai_sr_"
    )
