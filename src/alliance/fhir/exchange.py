"""Tables to FHIR and back: export Bundles from a response table, import Bundles of
QuestionnaireResponses into one, and the OperationOutcome that reports refused input.

A response table has one administration per row: ``patient_id``, ``session``, ``date``
(each optional), the item columns of one or more instruments, and optionally ``form_id``
(else the instrument's first form) and ``language``. Scores are always our scorer's
(:func:`alliance.score`), so exported Observations and imported scores agree with
``alliance score`` on the same table.

Example
-------
>>> import pandas as pd
>>> table = pd.DataFrame({"patient_id": ["P-1"], "session": [3], "date": ["2026-02-01"],
...                       **{f"srs_{i}": [7.5] for i in range(1, 5)}})
>>> [b["entry"][0]["resource"]["resourceType"] for b in export_bundles(table)]
['QuestionnaireResponse']
>>> back = import_bundle(export_bundles(table)[0])
>>> back[["patient_id", "session", "srs_1", "srs_total"]].to_dict("records")
[{'patient_id': 'P-1', 'session': 3, 'srs_1': 7.5, 'srs_total': 30.0}]
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Iterable
from typing import Any

import pandas as pd

from alliance.fhir._common import FhirInputError, Issue, structure_issues
from alliance.fhir.observation import bundle, response_resources
from alliance.fhir.response import FormResponse, read_questionnaire_response
from alliance.instruments import list_instruments
from alliance.scoring import ScoringInputError, UnverifiedKeyWarning, answer_issues, score

MAX_BUNDLE_BYTES = 64 * 1024 * 1024  # a file, not a request: a whole export


def operation_outcome(issues: Iterable[Issue]) -> dict[str, Any]:
    """The OperationOutcome of refused input: one issue per problem, with its location.

    >>> issue = Issue("QuestionnaireResponse.status", "must be completed", "value")
    >>> operation_outcome([issue])["issue"][0]["expression"]
    ['QuestionnaireResponse.status']
    """
    return {
        "resourceType": "OperationOutcome",
        "issue": [
            {
                "severity": "error",
                "code": issue.code,
                "diagnostics": issue.rule,
                "expression": [issue.location],
            }
            for issue in issues
        ],
    }


# -- export ------------------------------------------------------------------------------
def table_responses(table: pd.DataFrame) -> list[tuple[FormResponse, dict[str, Any]]]:
    """Each (row, instrument) of a response table as a FormResponse with its scores;
    :class:`~alliance.scoring.ScoringInputError` names every invalid answer first."""
    out: list[tuple[int, FormResponse, dict[str, Any]]] = []
    position_of = {label: k for k, label in enumerate(table.index)}
    for inst in list_instruments():
        columns = [c for c in inst.item_columns if c in table.columns]
        if not columns:
            continue
        rows = table[table[columns].notna().any(axis=1)]
        forms = rows["form_id"] if "form_id" in rows else pd.Series(inst.forms[0].id, rows.index)
        for form_id, group in rows.groupby(forms, sort=False):
            inst.get_form(str(form_id))  # an unknown form is named before anything is written
            issues = answer_issues(group, inst)
            if len(issues):
                raise ScoringInputError(inst.id, issues)
            scored = _scores(group, inst.id, str(form_id))
            for position, (label, row) in enumerate(group.iterrows()):
                response = FormResponse(
                    inst.id,
                    str(form_id),
                    {c: _value(row.get(c)) for c in inst.item_columns},
                    subject=_text(row.get("patient_id")),
                    session=_integer(row.get("session")),
                    authored=_day(row.get("date")),
                    language=_text(row.get("language")) or "en",
                    id=f"{label}-{inst.id}-{form_id}",
                )
                out.append((position_of[label], response, scored[position]))
    out.sort(key=lambda entry: entry[0])
    return [(response, scores) for _, response, scores in out]


def _scores(group: pd.DataFrame, instrument_id: str, form_id: str) -> list[dict[str, Any]]:
    from alliance.instruments import get_instrument

    inst = get_instrument(instrument_id)
    if not inst.get_form(form_id).scorable or inst.missing_key:
        return [{} for _ in range(len(group))]
    items = group[[c for c in inst.item_columns if c in group.columns]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnverifiedKeyWarning)  # flagged on each resource
        result = score(items, inst.id, form=form_id, errors="flag")
    columns = [c for c in result.columns if c.startswith(f"{inst.id}_")]
    return [
        {c: (None if _missing(v) else v) for c, v in zip(columns, values, strict=True)}
        for values in result[columns].itertuples(index=False)
    ]


def export_bundles(table: pd.DataFrame, per_patient: bool = False) -> list[dict[str, Any]]:
    """The table as one collection Bundle (or one per ``patient_id``): each administration's
    QuestionnaireResponse followed by one Observation per score."""
    pairs = table_responses(table)
    if not per_patient:
        return [bundle(r for pair in pairs for r in response_resources(*pair))]
    by_patient: dict[str | None, list[dict[str, Any]]] = {}
    for response, scores in pairs:
        by_patient.setdefault(response.subject, []).extend(response_resources(response, scores))
    return [bundle(resources) for resources in by_patient.values()]


# -- import ------------------------------------------------------------------------------
def read_bundle(body: Any) -> list[FormResponse]:
    """The QuestionnaireResponses of a Bundle (any type) or a single one, checked; other
    entries (our Observations, say) are skipped, since scores are recomputed. Every
    problem of every entry is reported at once, located by entry."""
    if isinstance(body, bytes | str):
        if len(body) > MAX_BUNDLE_BYTES:
            raise FhirInputError([Issue("Bundle", f"must be at most {MAX_BUNDLE_BYTES} bytes")])
        try:
            body = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise FhirInputError([Issue("(file)", "not valid JSON", "structure")]) from None
    if isinstance(body, dict) and body.get("resourceType") == "QuestionnaireResponse":
        return [read_questionnaire_response(body)]
    problems = structure_issues(body, "Bundle")
    if problems:
        raise FhirInputError(problems)
    found: list[FormResponse] = []
    issues: list[Issue] = []
    for k, entry in enumerate(body.get("entry") or []):
        resource = entry.get("resource") or {}
        if resource.get("resourceType") != "QuestionnaireResponse":
            continue
        try:
            found.append(read_questionnaire_response(resource))
        except FhirInputError as exc:
            issues.extend(
                Issue(f"Bundle.entry[{k}].resource{_tail(i.location)}", i.rule, i.code)
                for i in exc.issues
            )
    if issues:
        raise FhirInputError(issues)
    if not found:
        raise FhirInputError([Issue("Bundle.entry", "holds no QuestionnaireResponse", "required")])
    return found


def _tail(location: str) -> str:
    return location.removeprefix("QuestionnaireResponse")


def import_bundle(body: Any) -> pd.DataFrame:
    """A Bundle's QuestionnaireResponses as a scored response table, one row per response:
    ``patient_id, session, date, instrument_id, form_id, language``, the item columns and
    our scores (as ``alliance score`` gives them)."""
    responses = read_bundle(body)
    frames = []
    for (instrument_id, form_id), group in _grouped(responses).items():
        rows = pd.DataFrame.from_records(
            [
                {
                    "patient_id": r.subject,
                    "session": r.session,
                    "date": r.authored,
                    "instrument_id": instrument_id,
                    "form_id": form_id,
                    "language": r.language,
                    **{c: r.answered.get(c) for c in _columns(instrument_id)},
                }
                for r in group
            ]
        )
        scored = _scores(rows, instrument_id, form_id)
        frames.append(pd.concat([rows, pd.DataFrame.from_records(scored)], axis=1))
    table = pd.concat(frames, ignore_index=True)
    table["session"] = table["session"].astype("Int64")
    return table


def _grouped(responses: list[FormResponse]) -> dict[tuple[str, str], list[FormResponse]]:
    groups: dict[tuple[str, str], list[FormResponse]] = {}
    for r in responses:
        groups.setdefault((r.instrument_id, r.form_id), []).append(r)
    return groups


def _columns(instrument_id: str) -> tuple[str, ...]:
    from alliance.instruments import get_instrument

    return get_instrument(instrument_id).item_columns


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _value(value: Any) -> float | None:
    return None if _missing(value) or pd.isna(value) else float(value)


def _text(value: Any) -> str | None:
    return None if value is None or pd.isna(value) else str(value)


def _integer(value: Any) -> int | None:
    return None if value is None or pd.isna(value) else int(value)


def _day(value: Any) -> str | None:
    if value is None or pd.isna(value):
        return None
    return pd.Timestamp(value).date().isoformat()
