"""Scores as FHIR Observations, their code system, and Bundles of both.

Each score of a stored form becomes one Observation: ``code`` from our own CodeSystem
(:func:`score_code_system`, one code per score column such as ``wai_sr_total``; no LOINC
code exists for these alliance scores that we could verify, so none is claimed), category
``survey``, the value as a Quantity, ``derivedFrom`` the QuestionnaireResponse, and
``meta.tag`` flagging a key that is not verified. A score the missing-item rule left empty
is an Observation with a ``dataAbsentReason`` and the scorer's reason as a note.

Example
-------
>>> from alliance.fhir.response import FormResponse
>>> r = FormResponse("srs", "client", {"srs_1": 8.5, "srs_2": 9.0, "srs_3": 7.5, "srs_4": 8.0},
...                  subject="P-1", session=2, authored="2026-05-04", id="r1")
>>> obs = observations(r, {"srs_total": 33.0, "srs_status": "ok"})
>>> obs[-1]["code"]["coding"][0]["code"], obs[-1]["valueQuantity"]["value"]
('srs_total', 33.0)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from alliance.fhir._common import (
    BASE,
    KEY_STATUS_SYSTEM,
    SCORE_SYSTEM,
    SESSION_EXTENSION,
    fhir_id,
    key_status_tag,
    validated,
)
from alliance.fhir.response import FormResponse, to_questionnaire_response
from alliance.instruments import get_instrument, list_instruments

SURVEY = {
    "coding": [
        {
            "system": "http://terminology.hl7.org/CodeSystem/observation-category",
            "code": "survey",
            "display": "Survey",
        }
    ]
}
ABSENT = "http://terminology.hl7.org/CodeSystem/data-absent-reason"


def observations(response: FormResponse, scores: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One Observation per score of the response's form (``scores``: score column ->
    value, plus ``<instrument>_status``, as the scorer and the clinic store them)."""
    inst = get_instrument(response.instrument_id)
    form = inst.get_form(response.form_id)
    status = str(scores.get(f"{inst.id}_status") or "")
    subject = to_questionnaire_response(response).get("subject")
    out = []
    for score in inst.scores:
        column = f"{inst.id}_{score.id}"
        if column not in scores:
            continue
        key_status = score.key_status if form.scorable else "unverified"
        resource: dict[str, Any] = {"resourceType": "Observation"}
        if response.id:
            resource["id"] = fhir_id(f"{response.id}-{score.id}")
        tags = key_status_tag(key_status)
        if tags:
            resource["meta"] = {"tag": tags}
        if response.session is not None:
            resource["extension"] = [{"url": SESSION_EXTENSION, "valueInteger": response.session}]
        resource["status"] = "final"
        resource["category"] = [SURVEY]
        display = f"{inst.short_name} {score.label}"
        resource["code"] = {
            "coding": [{"system": SCORE_SYSTEM, "code": column, "display": display}],
            "text": display,
        }
        if subject:
            resource["subject"] = subject
        if response.authored:
            resource["effectiveDateTime"] = response.authored
        value = scores[column]
        if value is None or (isinstance(value, float) and math.isnan(value)):
            resource["dataAbsentReason"] = {"coding": [{"system": ABSENT, "code": "not-performed"}]}
            if status and status != "ok":
                resource["note"] = [{"text": status}]
        else:
            resource["valueQuantity"] = {"value": float(value)}
        if response.id:
            resource["derivedFrom"] = [
                {"reference": f"QuestionnaireResponse/{fhir_id(response.id)}"}
            ]
        out.append(validated(resource))
    return out


def bundle(
    resources: Iterable[dict[str, Any]],
    kind: str = "collection",
    total: int | None = None,
    base: str = BASE,
) -> dict[str, Any]:
    """A Bundle of resources (``kind``: collection for exports, searchset for searches);
    ``base``: the server's FHIR base URL the entries' ``fullUrl`` start with."""
    entries = []
    for resource in resources:
        entry: dict[str, Any] = {"resource": resource}
        if resource.get("id"):
            entry["fullUrl"] = f"{base}/{resource['resourceType']}/{resource['id']}"
        if kind == "searchset":
            entry["search"] = {"mode": "match"}
        entries.append(entry)
    body: dict[str, Any] = {"resourceType": "Bundle", "type": kind}
    if kind == "searchset":
        body["total"] = len(entries) if total is None else total
    body["entry"] = entries
    return validated(body)


def response_resources(response: FormResponse, scores: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A stored form as its QuestionnaireResponse followed by its Observations."""
    return [to_questionnaire_response(response), *observations(response, scores)]


def score_code_system() -> dict[str, Any]:
    """Our CodeSystem of score codes (every score of every instrument), each concept with
    its key status as a property."""
    concepts = [
        {
            "code": f"{inst.id}_{score.id}",
            "display": f"{inst.short_name} {score.label}",
            "property": [{"code": "key-status", "valueString": score.key_status}],
        }
        for inst in list_instruments()
        for score in inst.scores
    ]
    return validated(
        {
            "resourceType": "CodeSystem",
            "id": "scores",
            "url": SCORE_SYSTEM,
            "name": "AllianceScores",
            "title": "Scores of the alliance instruments",
            "status": "active",
            "content": "complete",
            "caseSensitive": True,
            "property": [
                {
                    "code": "key-status",
                    "uri": KEY_STATUS_SYSTEM,
                    "description": "verified, likely, unverified or not published",
                    "type": "string",
                }
            ],
            "concept": concepts,
        }
    )
