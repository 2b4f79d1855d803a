"""A form filled in LHC-Forms, exported by LHC-Forms itself, POSTed to the live clinic's
``/fhir/QuestionnaireResponse`` with a therapist's bearer token: accepted, stored, scored
as our scorer scores it, and readable back as Observations; a tampered export is refused
with an OperationOutcome and changes nothing."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from e2e_support import Server
from lforms_support import LFormsPage

from alliance import fhir, score
from alliance.instruments import get_instrument

pytestmark = [pytest.mark.browser]
PATIENT = {"resourceType": "Patient", "id": "E2E-001"}  # the seeded patient's code
FHIR_JSON = "application/fhir+json"


@pytest.fixture(scope="module")
def form(browser: object) -> Iterator[LFormsPage]:
    with LFormsPage(browser) as page:
        yield page


def _client(server: Server) -> httpx.Client:
    headers = {"Authorization": f"Bearer {server.token}", "Accept": FHIR_JSON}
    return httpx.Client(base_url=server.url, headers=headers, timeout=30)


def _scores(client: httpx.Client) -> list[dict[str, Any]]:
    found = client.get("/fhir/Observation", params={"patient": PATIENT["id"]})
    assert found.status_code == 200, found.text
    return [e["resource"] for e in found.json().get("entry", [])]


def test_lforms_export_is_accepted_stored_and_scored(server: Server, form: LFormsPage) -> None:
    inst = get_instrument("wai_sr")
    rng = np.random.default_rng(11)
    answers = {c: str(int(rng.integers(1, 6))) for c in inst.item_columns}
    form.render(fhir.questionnaire("wai_sr", "client"))
    form.fill(answers)
    exported = form.response(subject=PATIENT)
    assert exported["subject"] == {"reference": "Patient/E2E-001"}  # LHC-Forms' own reference

    with _client(server) as client:
        before = len(_scores(client))
        created = client.post(
            "/fhir/QuestionnaireResponse", json=exported, headers={"Content-Type": FHIR_JSON}
        )
        assert created.status_code == 201, created.text
        stored = created.json()
        assert created.headers["Location"].endswith(f"/QuestionnaireResponse/{stored['id']}")
        read = client.get(f"/fhir/QuestionnaireResponse/{stored['id']}")
        assert read.status_code == 200 and read.json()["item"] == stored["item"]
        observations = [
            o for o in _scores(client) if o["derivedFrom"][0]["reference"].endswith(stored["id"])
        ]
        assert len(_scores(client)) == before + len(observations)

    row = pd.DataFrame([{c: float(v) for c, v in answers.items()}])
    expected = score(row, "wai_sr")
    got = {o["code"]["coding"][0]["code"]: o["valueQuantity"]["value"] for o in observations}
    assert set(got) == {f"wai_sr_{s.id}" for s in inst.scorable_scores}
    for code, value in got.items():
        assert value == pytest.approx(expected[code].iloc[0], abs=1e-9), code
        # LHC-Forms' FHIRPath engine computed the same score in the page
        assert float(form.item_value(code)) == pytest.approx(value, abs=1e-9), code


def test_tampered_lforms_export_is_refused_and_changes_nothing(
    server: Server, form: LFormsPage
) -> None:
    form.render(fhir.questionnaire("srs", "client"))
    form.fill({"srs_1": "7.5", "srs_2": "8", "srs_3": "6", "srs_4": "9"})
    exported = form.response(subject=PATIENT)
    exported["item"][0]["linkId"] = "srs_9"  # no such item
    with _client(server) as client:
        before = _scores(client)
        refused = client.post(
            "/fhir/QuestionnaireResponse", json=exported, headers={"Content-Type": FHIR_JSON}
        )
        assert refused.status_code == 422, refused.text
        outcome = refused.json()
        assert outcome["resourceType"] == "OperationOutcome"
        assert any("srs_9" in i["diagnostics"] for i in outcome["issue"])
        assert _scores(client) == before
