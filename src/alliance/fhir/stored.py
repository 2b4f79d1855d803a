"""The clinic's stored forms as FHIR resources: the one conversion behind the /fhir
endpoints and ``alliance fhir export --db``.

A stored form is identified by the patient's code and the session date, or de-identified
the way the researcher export is: the patient's research id and no calendar date.

Example
-------
>>> from alliance.fhir.stored import stored_bundles
>>> stored_bundles  # doctest: +ELLIPSIS
<function stored_bundles at ...>
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from typing import Any

from alliance.fhir.observation import bundle, response_resources
from alliance.fhir.response import FormResponse
from alliance.store.models import Patient, TherapySession
from alliance.store.models import Response as StoredForm


def form_response(
    row: StoredForm, number: int, on: date, patient: Patient, deidentified: bool = False
) -> FormResponse:
    """A stored form (its row, session number and date, patient) as a FormResponse."""
    return FormResponse(
        row.instrument_id,
        row.form_id,
        row.items,
        subject=patient.research_id if deidentified else patient.code,
        session=number,
        authored=None if deidentified else on.isoformat(),
        language=row.language,
        id=str(row.id),
        deidentified=deidentified,
    )


def stored_resources(
    found: tuple[StoredForm, TherapySession, Patient], deidentified: bool
) -> list[dict[str, Any]]:
    """One stored form's QuestionnaireResponse followed by its score Observations."""
    row, session, patient = found
    response = form_response(row, session.number, session.date, patient, deidentified)
    return response_resources(response, row.scores)


def stored_bundles(
    found: Iterable[tuple[StoredForm, TherapySession, Patient]],
    per_patient: bool = False,
    deidentified: bool = True,
) -> list[dict[str, Any]]:
    """Stored forms (ordered by patient, as :func:`repo.find_responses` returns them) as
    one collection Bundle, or one per patient; de-identified unless told otherwise."""
    groups: dict[int, list[dict[str, Any]]] = {}
    for entry in found:
        key = entry[2].id if per_patient else 0
        groups.setdefault(key, []).extend(stored_resources(entry, deidentified))
    if not groups and not per_patient:
        return [bundle([])]
    return [bundle(resources) for resources in groups.values()]
