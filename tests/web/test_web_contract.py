"""The JSON API keeps its OpenAPI contract: a bounded schemathesis pass against the real app.

Schemathesis reads ``/api/openapi.json`` from the running application, generates valid and
invalid requests for every operation and sends them through the ASGI transport with a real
bearer token of the seeded clinic (the admin, who may call every route), on SQLite and on
PostgreSQL. Each response must be no server error and must match what the schema documents:
its status code, content type, body schema and headers.

Bounded: a fixed number of generated examples per operation and mode (the whole pass stays
well under a minute on both databases); derandomised under ``CI=1`` through the Hypothesis
profile of ``tests/conftest.py``, so a failure in CI replays the same cases.

The pass drives Hypothesis itself (``operation.as_strategy``) rather than schemathesis's
pytest fixture loader, which does not run under pytest 9.2 (it writes ``Function._nodeid``).
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from webclinic import Client, Clinic, full_answers

MAX_EXAMPLES = 15
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
MODES = [schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE]


class Tally:
    """What the pass did: cases per operation, status codes seen, failures."""

    def __init__(self) -> None:
        self.cases: Counter[str] = Counter()
        self.statuses: Counter[tuple[str, int]] = Counter()
        self.failures: list[str] = []

    def report(self, operations: int) -> str:
        """One line of figures for the test log."""
        cases = sum(self.cases.values())
        return (
            f"schemathesis: {len(self.cases)}/{operations} operations, {cases} cases, "
            f"{cases * len(CHECKS)} checks, {len(self.failures)} failing operation modes; "
            f"statuses {dict(Counter(status for _, status in self.statuses.elements()))}"
        )


def seeded_ids(clinic: Clinic) -> dict[str, Any]:
    """Ids that name real rows: the first patient with a scored session and an open
    alert, and a fresh patient link (through the API, as a clinic would)."""
    client = Client(clinic.app, headers={"Authorization": f"Bearer {clinic.tokens['t1']}"})
    patient_id = clinic.patients["p1"]
    link = client.post(f"/api/v1/patients/{patient_id}/sessions").json()["token"]
    answers = {"answers": full_answers(4, rupture=1)}
    assert client.post(f"/api/v1/links/{link}/responses", json=answers).status_code == 201
    (alert,) = client.get("/api/v1/alerts").json()
    fresh = client.post(f"/api/v1/patients/{patient_id}/sessions").json()["token"]
    return {"patient_id": patient_id, "alert_id": alert["id"], "token": fresh}


def exercise(
    operation: Any,
    mode: schemathesis.GenerationMode,
    token: str,
    tally: Tally,
    path: dict[str, Any] | None = None,
) -> None:
    """Send generated requests for one operation (with these path parameters, if given,
    else generated ones) and validate every response."""
    headers = {"Authorization": f"Bearer {token}"}

    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode, path_parameters=path))
    def run(case: schemathesis.Case) -> None:
        response = case.call(headers=headers)
        tally.cases[operation.label] += 1
        tally.statuses[(operation.label, response.status_code)] += 1
        case.validate_response(response, checks=CHECKS, headers=headers)

    try:
        run()
    except (Exception, BaseExceptionGroup) as exc:  # report every failing operation
        known = " with seeded ids" if path else ""
        tally.failures.append(f"{operation.label} ({mode.value}{known}): {exc}")


@pytest.mark.slow
def test_api_responses_match_the_openapi_schema(clinic: Clinic) -> None:
    """Every generated request gets a documented status, content type, body and headers."""
    schema = schemathesis.openapi.from_asgi("/api/openapi.json", clinic.app)
    operations = [result.ok() for result in schema.get_all_operations()]
    ids = seeded_ids(clinic)
    tally = Tally()
    for operation in operations:
        names = re.findall(r"{(\w+)}", operation.path)
        for mode in MODES:
            exercise(operation, mode, clinic.tokens["admin"], tally)
            if names:
                path = {name: ids[name] for name in names}
                exercise(operation, mode, clinic.tokens["admin"], tally, path)
    print("\n" + tally.report(len(operations)))
    assert not tally.failures, "\n\n".join(tally.failures)
    assert set(tally.cases) == {op.label for op in operations}, "every operation was exercised"
    succeeded = {label for (label, status), _ in tally.statuses.items() if status < 300}
    for label in ("GET /api/v1/me", "GET /api/v1/patients", "GET /api/v1/export"):
        assert label in succeeded, f"{label} never answered 2xx: the token was not used"


def test_every_refusal_is_documented_with_the_one_error_model(sqlite_clinic: Clinic) -> None:
    """Each 4xx of the schema is ErrorOut; FastAPI's unused 422 shape is gone; token routes
    declare the bearer scheme and their 401 challenge; the export is a file, not JSON."""
    schema = Client(sqlite_clinic.app).get("/api/openapi.json").json()
    components = schema["components"]
    assert "HTTPValidationError" not in components["schemas"]
    assert components["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "An API token.",
    }
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            where = f"{method.upper()} {path}"
            refusals = {code: r for code, r in operation["responses"].items() if code[0] == "4"}
            assert "413" in refusals, where
            for code, response in refusals.items():
                ref = response["content"]["application/json"]["schema"]["$ref"]
                assert ref == "#/components/schemas/ErrorOut", f"{where} {code}"
            secured = path != "/api/v1/links/{token}/responses"
            assert bool(operation.get("security")) is secured, where
            assert ("401" in refusals) is secured, where
            if secured:
                assert refusals["401"]["headers"]["WWW-Authenticate"]["required"] is True
    export = schema["paths"]["/api/v1/export"]["get"]["responses"]["200"]["content"]
    assert set(export) == {"text/csv", "application/vnd.apache.parquet"}


def test_an_oversized_body_is_refused_as_documented(sqlite_clinic: Clinic) -> None:
    """The body-size limit (outside the routes) answers the documented 413 and ErrorOut."""
    schema = schemathesis.openapi.from_asgi("/api/openapi.json", sqlite_clinic.app)
    operation = schema["/api/v1/links/{token}/responses"]["POST"]
    case = operation.Case(
        path_parameters={"token": "unknown"},
        body={"answers": {"wai_sr_1": "4" * 300_000}},
        media_type="application/json",
    )
    response = case.call()
    assert response.status_code == 413
    case.validate_response(response, checks=CHECKS)
