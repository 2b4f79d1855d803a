"""The LHC-Forms harness (lforms_support.py) on a small hand-written FHIR R4 Questionnaire:
LHC-Forms renders it in Chromium from node_modules only, hides an enableWhen item until
its condition holds, computes calculatedExpression items, and exports the answers given
through its controls as a QuestionnaireResponse."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from lforms_support import LFormsPage

pytestmark = pytest.mark.browser
SYSTEM = "urn:example:alliance:lforms-harness"
CALCULATED = "http://hl7.org/fhir/uv/sdc/StructureDefinition/sdc-questionnaire-calculatedExpression"


def _options(*pairs: tuple[str, str]) -> list[dict[str, Any]]:
    return [{"valueCoding": {"system": SYSTEM, "code": c, "display": d}} for c, d in pairs]


def _calculated(link_id: str, expression: str) -> dict[str, Any]:
    return {
        "linkId": link_id,
        "text": link_id,
        "type": "decimal",
        "readOnly": True,
        "extension": [
            {
                "url": CALCULATED,
                "valueExpression": {"language": "text/fhirpath", "expression": expression},
            }
        ],
    }


def _code(link_id: str) -> str:
    return f"%resource.item.where(linkId='{link_id}').answer.value.code.toDecimal()"


LIKERT = _options(
    ("1", "Never"), ("2", "Rarely"), ("3", "Sometimes"), ("4", "Often"), ("5", "Always")
)
QUESTIONNAIRE: dict[str, Any] = {
    "resourceType": "Questionnaire",
    "status": "draft",
    "item": [
        {
            "linkId": "a1",
            "text": "We agree on the goals.",
            "type": "choice",
            "answerOption": LIKERT,
        },
        {"linkId": "a2", "text": "I feel understood.", "type": "choice", "answerOption": LIKERT},
        {
            "linkId": "rupture",
            "text": "Was there a difficult moment today?",
            "type": "choice",
            "answerOption": _options(("Y", "Yes"), ("N", "No")),
        },
        {
            "linkId": "rupture_minutes",
            "text": "For how many minutes?",
            "type": "integer",
            "enableWhen": [
                {
                    "question": "rupture",
                    "operator": "=",
                    "answerCoding": {"system": SYSTEM, "code": "Y"},
                }
            ],
        },
        {"linkId": "hours", "text": "Hours of sleep last night", "type": "decimal"},
        {"linkId": "first", "text": "First session?", "type": "boolean"},
        # `+` is empty until both are answered; the select(...).sum() form adds what is there
        _calculated("total", f"{_code('a1')} + {_code('a2')}"),
        _calculated(
            "total_sum",
            "%resource.item.where(linkId='a1' or linkId='a2')"
            ".answer.value.select(code.toDecimal()).sum()",
        ),
    ],
}


@pytest.fixture
def form(browser: Any) -> Iterator[LFormsPage]:
    with LFormsPage(browser) as page:
        yield page


def _answers(qr: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    return {i["linkId"]: i.get("answer", []) for i in qr["item"]}


def test_lforms_renders_skips_calculates_and_exports(form: LFormsPage) -> None:
    form.render(QUESTIONNAIRE)
    shown = form.visible_link_ids()
    assert shown == ["a1", "a2", "rupture", "hours", "first", "total", "total_sum"]
    assert form.item_value("total") == ""

    form.fill({"a1": "4"})
    assert form.item_value("total") == ""  # a2 still empty
    assert form.item_value("total_sum") == "4"
    form.fill({"a2": "Sometimes"})  # by display
    assert form.item_value("a2") == "Sometimes"
    assert form.item_value("total") == "7"
    assert form.item_value("total_sum") == "7"

    assert "rupture_minutes" not in form.visible_link_ids()
    form.fill({"rupture": "Y"})
    assert "rupture_minutes" in form.visible_link_ids()
    form.fill({"rupture_minutes": 12, "hours": 6.5, "first": True})

    qr = form.response()
    assert qr["resourceType"] == "QuestionnaireResponse"
    answers = _answers(qr)
    codes = {k: answers[k][0]["valueCoding"]["code"] for k in ("a1", "a2", "rupture")}
    assert codes == {"a1": "4", "a2": "3", "rupture": "Y"}
    assert answers["a2"] == [
        {"valueCoding": {"system": SYSTEM, "code": "3", "display": "Sometimes"}}
    ]
    assert answers["rupture_minutes"] == [{"valueInteger": 12}]
    assert answers["hours"] == [{"valueDecimal": 6.5}]
    assert answers["first"] == [{"valueBoolean": True}]
    assert answers["total"] == [{"valueDecimal": 7}]
    assert answers["total_sum"] == [{"valueDecimal": 7}]

    # "No" hides the follow-up again, and its answer leaves the response
    form.fill({"rupture": "N", "a1": "1"})
    assert "rupture_minutes" not in form.visible_link_ids()
    assert form.item_value("total") == "4"
    answers = _answers(form.response())
    assert "rupture_minutes" not in answers
    assert answers["rupture"][0]["valueCoding"]["code"] == "N"
    assert answers["a1"][0]["valueCoding"]["code"] == "1"
    assert form.expression_errors() == []
    assert form.blocked_requests == []  # everything came from node_modules
