"""The FHIR adapter: every resource validates, round trips are exact, calculated scores
agree with the scorer (an independent FHIRPath engine, fhirpathpy), bad input is refused
with the location and rule and never its value."""

# ruff: noqa: E501 (the table of refused resources reads best one case per line)

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from alliance import fhir, score
from alliance.fhir._common import FhirInputError, structure_issues
from alliance.fhir.exchange import export_bundles, import_bundle, operation_outcome, read_bundle
from alliance.fhir.observation import observations, score_code_system
from alliance.fhir.questionnaire import score_expression
from alliance.fhir.response import (
    FormResponse,
    read_questionnaire_response,
    to_questionnaire_response,
)
from alliance.instruments import get_instrument, list_instruments

pytestmark = pytest.mark.filterwarnings("ignore::alliance.scoring.UnverifiedKeyWarning")


def _answers(instrument_id: str, rng: np.random.Generator, gaps: float = 0.1) -> dict:
    """One random administration: values on each item's scale, some left out, skip logic
    obeyed (an item not asked is not answered)."""
    inst = get_instrument(instrument_id)
    row: dict[str, float | None] = {}
    for item in inst.items:
        scale = inst.item_scale(item.number)
        if scale.kind == "vas":
            value = round(float(rng.uniform(scale.min, scale.max)), 1)
        else:
            value = float(rng.choice(np.arange(scale.min, scale.max + 1e-9, scale.step)))
        row[f"{inst.id}_{item.number}"] = None if rng.random() < gaps else value
    for item in inst.items:
        if item.asked_if and row[f"{inst.id}_{item.asked_if.item}"] != item.asked_if.equals:
            row[f"{inst.id}_{item.number}"] = None
    return row


@pytest.mark.parametrize(
    ("inst", "form"), [(i.id, f.id) for i in list_instruments() for f in i.forms]
)
def test_every_questionnaire_validates_and_links_items_to_columns(inst: str, form: str) -> None:
    q = fhir.questionnaire(inst, form)
    assert structure_issues(q, "Questionnaire") == []
    links = [i["linkId"] for i in q["item"] if i["type"] != "group"]
    assert links == list(get_instrument(inst).item_columns)
    assert q["copyright"] == get_instrument(inst).licence


def test_skip_logic_becomes_enable_when_and_unverified_keys_are_tagged() -> None:
    q = fhir.questionnaire("psq", "patient")
    intensity = q["item"][1]
    assert intensity["enableWhen"] == [
        {
            "question": "psq_1",
            "operator": "=",
            "answerCoding": q["item"][0]["answerOption"][1]["valueCoding"],
        }
    ]
    assert q["meta"]["tag"][0]["code"] == "unverified"
    assert "tag" not in fhir.questionnaire("wai_sr")["meta"]  # verified key (hatcher2006)


@pytest.mark.parametrize("instrument_id", ["wai_sr", "haq2", "srs", "ceq", "wai_s", "psq"])
def test_calculated_expressions_equal_the_scorer(instrument_id: str) -> None:
    """fhirpathpy (an FHIRPath engine no one here wrote) evaluates each score's
    calculatedExpression on generated answers, gaps included; each equals alliance.score."""
    from fhirpathpy import evaluate
    from fhirpathpy.models import models

    inst = get_instrument(instrument_id)
    rng = np.random.default_rng(11)
    rows = [_answers(instrument_id, rng) for _ in range(12)]
    expected = score(pd.DataFrame(rows), instrument_id, errors="flag")
    compared = 0
    for r, row in enumerate(rows):
        qr = to_questionnaire_response(FormResponse(instrument_id, inst.forms[0].id, row))
        for s in inst.scorable_scores:
            expression = score_expression(inst, s)
            assert expression is not None
            got = evaluate(qr, expression, {"resource": qr}, models["r4"])
            want = expected[f"{instrument_id}_{s.id}"].iloc[r]
            if np.isnan(want):
                assert got == []
            else:
                assert float(got[0]) == pytest.approx(want, abs=1e-9)
            compared += 1
    assert compared == 12 * len(inst.scorable_scores)


def test_subscale_means_total_has_no_expression() -> None:
    calpas = get_instrument("calpas")
    totals = [s for s in calpas.scores if s.from_subscales]
    assert totals and all(score_expression(calpas, s) is None for s in totals)


@pytest.mark.parametrize("instrument_id", ["wai_sr", "srs", "psq", "haq2"])
def test_round_trip_is_exact(instrument_id: str) -> None:
    rng = np.random.default_rng(5)
    inst = get_instrument(instrument_id)
    for k in range(10):
        response = FormResponse(
            instrument_id,
            inst.forms[-1].id,
            _answers(instrument_id, rng, gaps=0.1 if inst.missing.max_missing_fraction else 0.0),
            subject=f"P-{k}",
            session=k + 1,
            authored=f"2026-11-0{k % 9 + 1}",
            language="de",
            id=f"r{k}",
        )
        text = json.dumps(to_questionnaire_response(response))
        assert read_questionnaire_response(text) == response


def _qr(**changes: object) -> dict:
    body = to_questionnaire_response(
        FormResponse("psq", "patient", {"psq_1": 1.0, "psq_2": 2.0, "psq_3": 3.0}, subject="P")
    )
    body.update(changes)
    return body


@pytest.mark.parametrize(
    ("body", "location", "rule"),
    [
        ({"resourceType": "Patient"}, "resourceType", "must be 'QuestionnaireResponse'"),
        (_qr(questionnaire="https://example.org/Questionnaire/phq9"), "questionnaire", "no Questionnaire 'phq9'"),
        (_qr(status="in-progress"), "status", "only finished forms"),
        (_qr(item=[{"linkId": "psq_9", "answer": [{"valueInteger": 1}]}]), "item[0].linkId", "not an item of psq-patient"),
        (_qr(item=[{"linkId": "psq_1", "answer": [{"valueString": "yes"}]}]), "item[0].answer[0]", "must be a valueCoding"),
        (_qr(item=[{"linkId": "psq_1", "answer": [{"valueCoding": {"code": "7"}}]}]), "valueCoding", "answer options 0, 1"),
        (_qr(item=[{"linkId": "psq_1", "answer": [{"valueCoding": {"code": "0"}}]}, {"linkId": "psq_2", "answer": [{"valueInteger": 3}]}]), "item[1]", "not asked"),
        (_qr(item=[{"linkId": "psq_1", "answer": [{"valueCoding": {"code": "1"}}]}]), "item", "psq_2: required"),
        (_qr(item=[{"linkId": "psq_1", "answer": [{"valueInteger": 1, "valueString": "x"}]}]), "answer[0]", "multiple"),
        (_qr(subject={"reference": "Group/4"}), "subject", "Patient/<code>"),
        ("{not json", "(body)", "not valid JSON"),
        (json.dumps(_qr()) + " " * 300_000, "QuestionnaireResponse", "at most"),
    ],
)  # fmt: skip
def test_bad_responses_are_refused_naming_location_and_rule(
    body: object, location: str, rule: str
) -> None:
    with pytest.raises(FhirInputError) as caught:
        read_questionnaire_response(body)
    assert any(location in i.location and rule in i.rule for i in caught.value.issues), (
        caught.value.issues
    )
    outcome = operation_outcome(caught.value.issues)
    assert structure_issues(outcome, "OperationOutcome") == []


def test_refusals_never_echo_the_submitted_value() -> None:
    secret = "my therapist ignores me 0171-555"
    body = _qr(item=[{"linkId": "psq_1", "answer": [{"valueString": secret}]}])
    with pytest.raises(FhirInputError) as caught:
        read_questionnaire_response(body)
    assert secret not in str(caught.value) and secret not in repr(caught.value.issues)


def test_srs_decimal_out_of_range_is_refused() -> None:
    body = to_questionnaire_response(FormResponse("srs", "client", {"srs_1": 5.0}))
    body["item"][0]["answer"] = [{"valueDecimal": 10.5}]
    with pytest.raises(FhirInputError, match=r"srs_1: must lie in 0..10"):
        read_questionnaire_response(body)


def test_observations_carry_scores_flags_and_absence() -> None:
    response = FormResponse("psq", "patient", {"psq_1": 0.0}, subject="P-1", id="7")
    scores = {"psq_rupture": 0.0, "psq_intensity": None, "psq_resolution": None}
    scores["psq_status"] = "intensity, resolution: not asked"
    found = observations(response, scores)
    assert [o["code"]["coding"][0]["code"] for o in found] == list(scores)[:3]
    assert found[0]["valueQuantity"] == {"value": 0.0}
    assert found[0]["meta"]["tag"][0]["code"] == "unverified"
    assert found[1]["dataAbsentReason"]["coding"][0]["code"] == "not-performed"
    assert found[0]["derivedFrom"] == [{"reference": "QuestionnaireResponse/7"}]
    codes = {c["code"] for c in score_code_system()["concept"]}
    assert {"wai_sr_total", "psq_rupture", "srs_total"} <= codes


def test_table_export_and_import_round_trip_with_the_scorer(tmp_path) -> None:
    rng = np.random.default_rng(2)
    rows = [
        {"patient_id": f"P{k % 3}", "session": k + 1, "date": f"2026-01-{k + 1:02d}"}
        | _answers("wai_sr", rng)
        for k in range(9)
    ]
    table = pd.DataFrame(rows)
    bundles = export_bundles(table, per_patient=True)
    assert len(bundles) == 3
    for b in bundles:
        assert structure_issues(b, "Bundle") == []
    whole = export_bundles(table)[0]
    back = import_bundle(json.dumps(whole))
    expected = score(table, "wai_sr", errors="flag")
    items = list(get_instrument("wai_sr").item_columns)
    scores = ["wai_sr_goal", "wai_sr_task", "wai_sr_bond", "wai_sr_total"]
    pd.testing.assert_frame_equal(back[items].astype(float), table[items].astype(float))
    pd.testing.assert_frame_equal(back[scores].astype(float), expected[scores].astype(float))
    assert back["patient_id"].tolist() == table["patient_id"].tolist()
    obs = [e["resource"] for e in whole["entry"] if e["resource"]["resourceType"] == "Observation"]
    assert len(obs) == 9 * 4


def test_bundle_problems_are_located_by_entry() -> None:
    good = _qr()
    bad = _qr(status="entered-in-error")
    body = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": good}, {"resource": bad}],
    }
    with pytest.raises(FhirInputError) as caught:
        read_bundle(body)
    assert [i.location for i in caught.value.issues] == ["Bundle.entry[1].resource.status"]
    assert len(read_bundle({**body, "entry": [{"resource": good}]})) == 1


def test_export_refuses_invalid_answers_naming_the_cell() -> None:
    from alliance.scoring import ScoringInputError

    table = pd.DataFrame({"patient_id": ["P"], "srs_1": [11.0]})
    with pytest.raises(ScoringInputError, match="srs_1"):
        export_bundles(table)
