"""The JSON API's documented contract: one error model for every 4xx body.

Every refusal of the API (our ``HTTPException`` handler, the request-validation handler and
the body-size limit in :mod:`alliance.web.app`) answers ``{"detail": ...}``: a sentence that
names the field and the rule, or one ``{"field", "rule"}`` entry per rejected field.
:class:`ErrorOut` documents that body; :func:`errors` attaches it to a route's refusals, and
:func:`install` replaces FastAPI's generated 422 schema (``HTTPValidationError``, a shape the
app never sends) with it and documents the 401 of every route that needs a bearer token.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, Field

REF = "#/components/schemas/"

# What each refusal means (the description shown in the schema and the docs page).
REFUSALS = {
    400: "The request body could not be read (not text in the declared encoding).",
    401: "No bearer token, or one that is invalid, expired or revoked.",
    403: "The caller's role, or caseload, does not allow this.",
    404: "No such patient, alert or link.",
    409: "The request conflicts with the current state.",
    410: "The link was already used or has expired.",
    413: "The request body is larger than the clinic accepts.",
    422: "A field broke a rule: each is named with the rule; nothing was changed.",
}


class Problem(BaseModel):
    """One rejected field and the rule it broke."""

    field: str = Field(description="the field, e.g. `patient_id`, `answers.wai_sr_3`, `body`")
    rule: str = Field(description="the rule the value broke, in words")
    value: str | None = Field(
        default=None, description="the rejected answer (patient submissions only)"
    )


class ErrorOut(BaseModel):
    """The body of every 4xx answer of the API."""

    detail: str | list[Problem] = Field(
        description="a sentence naming the field and rule, or one entry per rejected field"
    )


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses=`` entries documenting these refusals with :class:`ErrorOut`."""
    return {code: {"model": ErrorOut, "description": REFUSALS[code]} for code in codes}


def install(app: FastAPI) -> None:
    """Make ``app.openapi()`` document our 422 body and the 401 of every secured route."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _with_our_contract(generate())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _with_our_contract(schema: dict[str, Any]) -> dict[str, Any]:
    """Point every 422 at :class:`ErrorOut`, drop FastAPI's unused validation schemas and
    document the 401 (with its challenge header) of every operation needing a token."""
    definitions = schema.setdefault("components", {}).setdefault("schemas", {})
    for name, definition in _model_schemas(ErrorOut).items():
        definitions.setdefault(name, definition)
    for name in ("HTTPValidationError", "ValidationError"):
        definitions.pop(name, None)
    for operation in _operations(schema):
        responses = operation.setdefault("responses", {})
        if "422" in responses:
            responses["422"] = _refusal(422)
        if operation.get("security"):
            responses["401"] = _refusal(401)
            responses["401"]["headers"] = {
                "WWW-Authenticate": {
                    "description": "the authentication scheme (Bearer)",
                    "required": True,
                    "schema": {"type": "string"},
                }
            }
    return schema


def _refusal(code: int) -> dict[str, Any]:
    return {
        "description": REFUSALS[code],
        "content": {"application/json": {"schema": {"$ref": REF + ErrorOut.__name__}}},
    }


def _model_schemas(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON schema and those it refers to, keyed by component name."""
    schema = model.model_json_schema(ref_template=REF + "{model}")
    nested: dict[str, Any] = schema.pop("$defs", {})
    return {**nested, model.__name__: schema}


def _operations(schema: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for item in schema.get("paths", {}).values():
        for operation in item.values():
            if isinstance(operation, dict) and "responses" in operation:
                yield operation


def reference(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The operations of an OpenAPI document as plain rows for the ``/api/docs`` page:
    method, path, summary, description, whether a bearer token is needed, parameters,
    request body schema and responses.

    >>> doc = {"paths": {"/x/{id}": {"get": {"summary": "One x", "parameters": [
    ...     {"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}],
    ...     "responses": {"200": {"description": "The x"}}}}}}
    >>> op = reference(doc)[0]
    >>> op["method"], op["path"], op["parameters"][0]["type"], op["responses"][0]["code"]
    ('GET', '/x/{id}', 'integer', '200')
    """
    rows = []
    for path, item in doc.get("paths", {}).items():
        for method, op in item.items():
            body = op.get("requestBody", {}).get("content", {})
            rows.append({
                "method": method.upper(), "path": path, "id": op.get("operationId", path),
                "summary": op.get("summary", ""), "description": op.get("description", ""),
                "bearer": bool(op.get("security")),
                "parameters": [
                    {"name": p["name"], "in": p["in"], "required": p.get("required", False),
                     "type": _type_name(p.get("schema", {})),
                     "description": p.get("description", "")}
                    for p in op.get("parameters", [])
                ],
                "body": [(kind, _type_name(c.get("schema", {}))) for kind, c in body.items()],
                "responses": [_response(code, r) for code, r in op.get("responses", {}).items()],
            })  # fmt: skip
    return rows


def _response(code: str, response: dict[str, Any]) -> dict[str, Any]:
    bodies = response.get("content", {}).values()
    return {"code": code, "description": response.get("description", ""),
            "types": [_type_name(c.get("schema", {})) for c in bodies]}  # fmt: skip


def _type_name(schema: dict[str, Any]) -> str:
    """A short name for a schema: its component name, item type or JSON type."""
    if "$ref" in schema:
        return str(schema["$ref"]).removeprefix(REF)
    if schema.get("type") == "array":
        return f"array of {_type_name(schema.get('items', {}))}"
    if "anyOf" in schema:
        return " or ".join(_type_name(s) for s in schema["anyOf"])
    return str(schema.get("type", "any"))
