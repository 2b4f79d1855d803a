"""FastAPI application factory: ``create_app(database_url=None)``.

Server-rendered pages (Jinja2, no JavaScript needed), the patient form at ``/f/{token}``,
the JSON API under ``/api/v1`` (OpenAPI at ``/api/openapi.json``), the FHIR R4 endpoints
under ``/fhir`` (:mod:`alliance.web.fhir_api`), static assets served locally and
``/healthz``.
"""

from __future__ import annotations

import logging
import os
import secrets
import time
import traceback
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from sqlalchemy import text
from starlette.concurrency import run_in_threadpool
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from alliance.store import migrate, repo
from alliance.store.db import Database, DatabaseBusy
from alliance.web import admin, api, fhir_api, i18n, openapi, pages, patient, reports
from alliance.web.deps import Forbidden, LoginRequired
from alliance.web.monitoring import AnalyticsWorker
from alliance.web.security import SECURITY_HEADERS, Signer, load_secret_key
from alliance.web.settings import Settings
from alliance.web.submissions import SubmissionWriter

HERE = Path(__file__).parent
log = logging.getLogger("alliance.web")
MAX_BODY = 256 * 1024


class SecurityMiddleware:
    """Adds security headers, refuses oversized bodies and logs route templates only.

    The log line names the route pattern (``/f/{token}``), never the concrete path, so no
    link token or patient id reaches the logs.
    """

    def __init__(self, app: ASGIApp, hsts: bool = False) -> None:
        self.app = app
        headers = dict(SECURITY_HEADERS)
        if hsts:  # served over https (ALLIANCE_PUBLIC_URL): browsers keep to https for a year
            headers["Strict-Transport-Security"] = "max-age=31536000; includeSubDomains"
        self.headers = [(k.lower().encode(), v.encode()) for k, v in headers.items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers", [])).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > MAX_BODY:
            await _too_large(scope)(scope, receive, send)
            return
        started = time.perf_counter()
        status = {"code": 0}
        received = {"bytes": 0}

        async def counting_receive() -> Message:
            # Content-Length may be absent (chunked) or lie: count what actually arrives.
            message = await receive()
            if message["type"] == "http.request":
                received["bytes"] += len(message.get("body", b""))
                if received["bytes"] > MAX_BODY and not status["code"]:
                    # Answer 413 now and tell the app the client left: FastAPI turns errors
                    # while parsing into 400, so raising would not reach us.
                    await _too_large(scope)(scope, receive, send_with_headers)
                    status["refused"] = 1
                    return {"type": "http.disconnect"}
            return message

        async def send_with_headers(message: Message) -> None:
            if status.get("refused"):
                return  # the 413 has been sent; drop whatever the app answers after it
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                existing = {k.lower() for k, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in self.headers if k not in existing]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        try:
            await self.app(scope, counting_receive, send_with_headers)
        except Exception as exc:
            if not status.get("refused"):
                await _internal_error(scope, exc, send_with_headers, started=bool(status["code"]))
                status["code"] = status["code"] or 500
        route = scope.get("route")
        pattern = getattr(route, "path", "(unmatched)")
        log.info(
            "%s %s %s %.1fms",
            scope.get("method"),
            pattern,
            status["code"],
            (time.perf_counter() - started) * 1000,
        )


def _too_large(scope: Scope) -> Response:
    """The 413 of an oversized body (an OperationOutcome on the FHIR endpoints)."""
    if fhir_api.is_fhir_path(str(scope.get("path", ""))):
        return fhir_api.too_large(MAX_BODY)
    return JSONResponse({"detail": f"request body: must be at most {MAX_BODY} bytes"}, 413)


async def _internal_error(scope: Scope, exc: Exception, send: Send, started: bool) -> None:
    """Log an unexpected error as its type, where it happened and a reference, and answer
    500 with that reference; the exception itself is not re-raised, so neither Starlette nor
    uvicorn logs its message, which can carry patient data (SQL parameters, the DETAIL of a
    database error)."""
    reference = secrets.token_hex(4)
    frames = traceback.extract_tb(exc.__traceback__)[-3:]
    where = " < ".join(f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in reversed(frames))
    route = getattr(scope.get("route"), "path", "(unmatched)")
    log.error(
        "internal error %s.%s on %s %s at %s; reference %s",
        type(exc).__module__, type(exc).__name__, scope.get("method"), route, where, reference,
    )  # fmt: skip
    if started:
        return  # the response has begun: the client sees a broken response, not a second one
    detail = f"internal error; reference {reference}"
    if fhir_api.is_fhir_path(str(scope.get("path", ""))):
        response: Response = fhir_api.internal_error(detail)
    elif str(scope.get("path", "")).startswith("/api/"):
        response = JSONResponse({"detail": detail}, status_code=500)
    else:
        page = scope["app"].state.templates.get_template("error.html")
        response = HTMLResponse(page.render(status=500, detail=detail, user=None), 500)
    await response(scope, _no_body, send)


async def _no_body() -> Message:
    return {"type": "http.disconnect"}


def create_app(
    database_url: str | None = None,
    secret_key: str | None = None,
    migrate_db: bool = True,
) -> FastAPI:
    """Build the clinic application on a database (migrated to the newest schema; with
    ``migrate_db=False`` the schema must already be the newest, see ``alliance db grant``)."""
    db = Database(database_url)
    if migrate_db:
        migrate.upgrade(db.engine)
    else:
        migrate.require_current(db.engine)
    app = FastAPI(
        title="alliance clinic",
        version="1",
        openapi_url="/api/openapi.json",
        docs_url=None,  # our own page: _api_docs
        redoc_url=None,
        summary="Session-by-session monitoring of the therapeutic alliance.",
    )
    app.state.db = db
    app.state.settings = settings = Settings.from_env()
    app.state.signer = Signer(secret_key or load_secret_key())
    app.state.templates = Jinja2Templates(directory=str(HERE / "templates"))
    i18n.install(app.state.templates.env)
    app.state.chart_cache = {}
    # Analytics run in their own thread after commits, never while a page is read; the
    # sweep picks up patients whose refresh was lost (e.g. a crash before it ran).
    app.state.analytics = AnalyticsWorker(db, refit_every=settings.refit_every)
    app.state.writer = SubmissionWriter(db, on_commit=app.state.analytics.submit)
    app.add_middleware(SecurityMiddleware, hsts=settings.secure)
    if settings.allowed_hosts != ("*",):  # outermost: a forged Host is refused first
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(settings.allowed_hosts))
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    _api_docs(app)
    _add_handlers(app)
    _warm_up()
    app.include_router(patient.router)  # first: the busiest route is matched soonest
    app.include_router(pages.router)
    app.include_router(admin.router)
    app.include_router(reports.router)
    app.include_router(api.router)
    app.include_router(fhir_api.router)
    fhir_api.install(app)  # after _add_handlers: OperationOutcomes on /fhir paths
    openapi.install(app)
    app.state.analytics.sweep()

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> JSONResponse:
        """200 when the app and its database answer."""
        try:
            with db.read() as s:
                s.execute(text("SELECT 1 FROM users LIMIT 1"))
        except Exception:  # any database failure means not ready
            return JSONResponse({"status": "unavailable"}, status_code=503)
        return JSONResponse({"status": "ok", "database": db.engine.dialect.name})

    return app


def create_app_from_env() -> FastAPI:
    """The app as configured by the environment, for ``uvicorn --factory`` and for each
    worker of ``alliance serve --workers N``: ``ALLIANCE_DATABASE_URL``,
    ``ALLIANCE_SECRET_KEY`` (else the key file) and ``ALLIANCE_MIGRATE`` (``0``: only
    check that the schema is the newest; the parent process has migrated)."""
    flag = os.environ.get("ALLIANCE_MIGRATE", "1").strip().lower()
    return create_app(migrate_db=flag not in ("0", "false", "no", "off"))


def _warm_up() -> None:
    """Import and compile what the first submission needs, then move everything loaded
    so far out of the garbage collector's way (shorter pauses under load)."""
    import gc

    from alliance.web.forms import score_batch

    score_batch("wai_sr", "client", [{}])
    gc.collect()
    gc.freeze()


def _audit_refusal(app: FastAPI, request: Request, exc: Forbidden) -> None:
    """Record a refusal (its own transaction: the request's rolled back): of a patient
    outside the caseload, else of the route. The route pattern, never the concrete path."""
    pattern = getattr(request.scope.get("route"), "path", "(unmatched)")
    where = f"{request.method} {pattern}"
    with app.state.db.write() as s:
        if exc.patient_id is None:
            repo.audit(s, exc.user, "refused", "route", pattern, detail=where)
        else:
            patient = exc.patient_id
            repo.audit(s, exc.user, "refused", "patient", patient, patient_id=patient, detail=where)


def _api_docs(app: FastAPI) -> None:
    """``/api/docs``: the API reference rendered on the server from the OpenAPI document
    (:func:`alliance.web.openapi.reference`). It needs no script, so it works under the
    clinic's CSP and without JavaScript; the bundled Swagger UI releases on PyPI read only
    OpenAPI 3.0, and FastAPI writes 3.1."""

    @app.get("/api/docs", include_in_schema=False, response_class=HTMLResponse)
    def api_docs(request: Request) -> Response:
        templates: Jinja2Templates = app.state.templates
        context = {"user": None, "api": openapi.reference(app.openapi())}
        return templates.TemplateResponse(request, "api_docs.html", context)


def _wants_html(request: Request) -> bool:
    return not request.url.path.startswith("/api/")


def _add_handlers(app: FastAPI) -> None:
    templates: Jinja2Templates = app.state.templates

    @app.exception_handler(DatabaseBusy)
    async def _busy(request: Request, exc: Exception) -> Response:
        # SQLite stayed locked for the whole busy timeout: a retry soon will succeed.
        busy = HTTPException(503, str(exc), headers={"Retry-After": "2"})
        return await _http(request, busy)

    @app.exception_handler(LoginRequired)
    async def _login(request: Request, _exc: Exception) -> Response:
        return RedirectResponse("/login", status_code=303)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if isinstance(exc, Forbidden):
            await run_in_threadpool(_audit_refusal, app, request, exc)
        if not _wants_html(request):
            return JSONResponse(
                {"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers
            )
        context: dict[str, Any] = {"status": exc.status_code, "detail": exc.detail, "user": None}
        return templates.TemplateResponse(
            request, "error.html", context, status_code=exc.status_code, headers=exc.headers
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        problems = [
            {"field": ".".join(str(p) for p in e["loc"][1:]) or "body", "rule": e["msg"]}
            for e in exc.errors()
        ]
        if not _wants_html(request):
            return JSONResponse({"detail": problems}, status_code=422)
        text_ = "; ".join(f"{p['field']}: {p['rule']}" for p in problems)
        return HTMLResponse(
            templates.get_template("error.html").render(
                status=422, detail=text_, user=None, request=request
            ),
            status_code=422,
        )
