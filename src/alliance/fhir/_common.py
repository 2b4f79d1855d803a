"""What every FHIR resource of ours shares: canonical URLs, code systems, validation.

FHIR R4 (4.0.1) is the version we speak. The models that check every resource are
``fhir.resources``' R4B package: the only R4-line models for pydantic 2 (its 6.x line, with
plain R4, needs pydantic 1), and R4B left the resources we use (Questionnaire,
QuestionnaireResponse, Observation, Bundle, CodeSystem, CapabilityStatement,
OperationOutcome) as R4 defined them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

FHIR_VERSION = "4.0.1"
# Canonical base of the resources we define (Questionnaires, code systems, extensions).
BASE = "https://w3id.org/alliance/fhir"
ANSWER_SYSTEM = f"{BASE}/CodeSystem/answer-value"  # code = the answer's value on the scale
SCORE_SYSTEM = f"{BASE}/CodeSystem/scores"  # code = the score column, e.g. wai_sr_total
KEY_STATUS_SYSTEM = f"{BASE}/CodeSystem/key-status"  # meta.tag on resources of unverified keys
SESSION_EXTENSION = f"{BASE}/StructureDefinition/session-number"
RESEARCH_ID_SYSTEM = f"{BASE}/NamingSystem/research-id"
PATIENT_CODE_SYSTEM = f"{BASE}/NamingSystem/patient-code"
SDC_QUESTIONNAIRE = "http://hl7.org/fhir/uv/sdc/StructureDefinition/sdc-questionnaire"
CALCULATED = "http://hl7.org/fhir/uv/sdc/StructureDefinition/sdc-questionnaire-calculatedExpression"
MIN_VALUE = "http://hl7.org/fhir/StructureDefinition/minValue"
MAX_VALUE = "http://hl7.org/fhir/StructureDefinition/maxValue"
ITEM_CONTROL = "http://hl7.org/fhir/StructureDefinition/questionnaire-itemControl"
MAX_RESOURCE_BYTES = 256 * 1024  # as the clinic's request limit
_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")


@dataclass(frozen=True)
class Issue:
    """One problem with a resource: where (a FHIRPath-like location), and the rule broken.

    ``code`` is the FHIR issue type (invalid, structure, value, required, too-long,
    not-supported) that an OperationOutcome reports.
    """

    location: str
    rule: str
    code: str = "invalid"

    def __str__(self) -> str:
        return f"{self.location}: {self.rule}"


class FhirInputError(ValueError):
    """A resource we cannot accept; ``issues`` names each problem. Messages never carry
    the submitted values (they may be patient data), only where and which rule."""

    def __init__(self, issues: list[Issue]) -> None:
        self.issues = issues
        super().__init__("; ".join(str(i) for i in issues))


def fhir_id(text: str) -> str:
    """A FHIR resource id from one of ours (ids allow letters, digits, '-' and '.').

    >>> fhir_id("wai_sr-client")
    'wai-sr-client'
    """
    candidate = text.replace("_", "-")
    if not _ID.match(candidate):
        raise ValueError(f"{text!r} cannot be a FHIR id")
    return candidate


def model_class(resource_type: str) -> Any:
    """The ``fhir.resources`` model of an R4 resource type."""
    try:
        from fhir.resources.R4B import get_fhir_model_class
    except ImportError:  # pragma: no cover - the extra is declared by `alliance[fhir]`
        raise ImportError("FHIR support needs the extra: pip install 'alliance[fhir]'") from None
    return get_fhir_model_class(resource_type)


def validated(resource: dict[str, Any]) -> dict[str, Any]:
    """Check a resource we emit against the FHIR models and return it unchanged.

    A failure here is our bug, not the user's: it raises ``AssertionError`` naming the
    element. The returned dict is the one given (its key order kept for readers).
    """
    problems = structure_issues(resource, str(resource.get("resourceType", "")))
    if problems:
        raise AssertionError(f"emitted an invalid {resource.get('resourceType')}: {problems}")
    return resource


def structure_issues(resource: Any, expected: str) -> list[Issue]:
    """The problems ``fhir.resources`` finds in a resource expected to be ``expected``
    (resource type, unknown elements, wrong value types, choice types given twice).

    >>> [str(i) for i in structure_issues({"resourceType": "Patient"}, "Observation")]
    ["resourceType: must be 'Observation', not 'Patient'"]
    """
    if not isinstance(resource, dict):
        return [Issue(expected, "must be a JSON object", "structure")]
    given = resource.get("resourceType")
    if given != expected:
        shown = repr(given) if isinstance(given, str) and len(given) <= 40 else "something else"
        return [Issue("resourceType", f"must be {expected!r}, not {shown}", "structure")]
    from pydantic import ValidationError

    try:
        model_class(expected).model_validate(resource)
    except RecursionError:  # items nested hundreds deep: no form of ours is
        return [Issue(expected, "is nested too deeply to be a form", "structure")]
    except ValidationError as exc:
        # loc and msg only: pydantic's input_value would echo the submitted answer
        return [
            Issue(_location(expected, err["loc"]), err["msg"], "structure")
            for err in exc.errors(include_url=False, include_input=False)
        ]
    return []


def _location(resource_type: str, loc: tuple[Any, ...]) -> str:
    path = resource_type
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def key_status_tag(status: str) -> list[dict[str, str]]:
    """``meta.tag`` flagging a key that is not verified (none for a verified key)."""
    if status == "verified":
        return []
    return [{"system": KEY_STATUS_SYSTEM, "code": status.replace(" ", "-"), "display": status}]


def number_code(value: float) -> str:
    """An answer value as its code: ``1.0`` -> ``'1'``, ``2.5`` -> ``'2.5'``."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))
