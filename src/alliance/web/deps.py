"""Request context: database, signed session, current user, CSRF, rendering, role checks."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from fastapi import HTTPException, Request, Security
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.templating import Jinja2Templates

from alliance.store import repo
from alliance.store.db import Database
from alliance.store.models import User
from alliance.web.security import (
    SESSION_COOKIE,
    SESSION_MAX_AGE,
    SessionData,
    Signer,
    new_nonce,
)


class LoginRequired(Exception):
    """Raised by page dependencies when no clinician is logged in."""


class Forbidden(HTTPException):
    """The user's role may not do this (403).

    Every ``Forbidden`` is audited (action ``refused``, with the route pattern) by the app's
    handler in its own transaction, after the request's transaction has rolled back.
    """

    def __init__(self, user: User | None, detail: str = "Your role does not allow this.") -> None:
        super().__init__(status_code=403, detail=detail)
        self.user = user
        self.patient_id: int | None = None


class RefusedPatient(Forbidden):
    """Access to a patient outside the user's caseload (403); audited as a refusal of that
    patient."""

    def __init__(self, user: User, patient_id: int, detail: str) -> None:
        super().__init__(user, detail)
        self.patient_id = patient_id


@dataclass
class Ctx:
    """Everything a page handler needs about the request."""

    request: Request
    db: Database
    signer: Signer
    templates: Jinja2Templates
    session: SessionData
    new_cookie: bool
    user: User | None

    @property
    def csrf(self) -> str:
        """The CSRF token to embed in this session's forms."""
        return self.signer.csrf_token(self.session.nonce)

    def check_csrf(self, token: str) -> None:
        """Refuse the request (403) unless the form carried this session's CSRF token."""
        if not self.signer.check_csrf(self.session.nonce, token):
            raise HTTPException(status_code=403, detail="Invalid or missing CSRF token.")

    def require(self, *roles: str) -> User:
        """The logged-in user, if their role is one of ``roles`` (else 403 / login)."""
        if self.user is None:
            raise LoginRequired()
        if roles and self.user.role not in roles:
            raise Forbidden(self.user)
        return self.user

    def render(self, name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
        """Render a template with the user, CSRF token and flash message."""
        response = self.templates.TemplateResponse(
            self.request,
            name,
            {"user": self.user, "csrf": self.csrf, **context},
            status_code=status_code,
        )
        self.keep_cookie(response)
        return response

    def redirect(self, url: str) -> RedirectResponse:
        """A 303 redirect (after a POST)."""
        response = RedirectResponse(url, status_code=303)
        self.keep_cookie(response)
        return response

    def keep_cookie(self, response: Response) -> None:
        """Set the session cookie when it was created during this request."""
        if self.new_cookie:
            set_session_cookie(self.request, response, self.signer, self.session)


def set_session_cookie(
    request: Request, response: Response, signer: Signer, data: SessionData
) -> None:
    """Write the signed, HttpOnly, SameSite=Lax session cookie."""
    response.set_cookie(
        SESSION_COOKIE,
        signer.dump_session(data),
        max_age=SESSION_MAX_AGE,
        httponly=True,
        samesite="lax",
        secure=request.app.state.settings.cookie_secure(request),
        path="/",
    )


def get_ctx(request: Request) -> Ctx:
    """FastAPI dependency: the request context (session from the signed cookie)."""
    state = request.app.state
    signer: Signer = state.signer
    session = signer.load_session(request.cookies.get(SESSION_COOKIE))
    new_cookie = session is None
    if session is None:
        session = SessionData(None, new_nonce())
    user = None
    if session.user_id is not None:
        with state.db.read() as s:
            user = repo.get_user(s, session.user_id)
            if user is not None and user.session_epoch != session.epoch:
                user = None  # logged out everywhere since this cookie was issued
            elif user is not None and repo.session_ended(s, session.nonce):
                user = None  # this device was handed to a patient (kiosk)
    return Ctx(request, state.db, signer, state.templates, session, new_cookie, user)


def client_address(request: Request) -> str:
    """The peer address (used for login rate limiting only)."""
    return request.client.host if request.client else "unknown"


# Declares the API's bearer scheme in the OpenAPI schema; the refusals stay ours (401).
BEARER = HTTPBearer(auto_error=False, scheme_name="bearer", description="An API token.")


def bearer_user(
    request: Request, credentials: HTTPAuthorizationCredentials | None = Security(BEARER)
) -> User:
    """FastAPI dependency for the JSON API: the user owning the bearer token (else 401)."""
    token = credentials.credentials if credentials else ""
    if not token.strip():
        raise HTTPException(
            status_code=401,
            detail="Authorization: a bearer token is required",
            headers={"WWW-Authenticate": "Bearer"},
        )
    with request.app.state.db.read() as s:
        user = repo.user_for_api_token(s, token.strip())
    if user is None:
        raise HTTPException(
            status_code=401,
            detail="Authorization: the bearer token is invalid, expired or revoked",
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        )
    return user


def require_role(user: User, roles: Iterable[str]) -> None:
    """Refuse (403) a user whose role is not among ``roles``."""
    if user.role not in set(roles):
        raise Forbidden(user, f"role {user.role!r} may not do this")
