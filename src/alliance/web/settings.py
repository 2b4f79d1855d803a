"""Deployment settings of the clinic, read once from the environment.

Behind a reverse proxy the request's own URL says little: the proxy may speak plain HTTP to
the clinic, and the ``Host`` header is whatever the client sent. So absolute URLs (patient
links) come from the configured public URL, never from ``Host``; other hosts are refused;
cookies are ``Secure`` and HSTS is sent whenever the public URL is https.

- ``ALLIANCE_PUBLIC_URL``: e.g. ``https://clinic.example.org`` (scheme and host, optional
  port, no path). Unset: links use the request's URL, as the local demo needs.
- ``ALLIANCE_ALLOWED_HOSTS``: comma-separated host names; default the public URL's host
  (with ``localhost`` and ``127.0.0.1`` for health checks), or any host when neither is set.
- ``ALLIANCE_EXPECTED_REFIT_HOURS``: how often the analytics worker refits the clinic's
  expected-trajectory model (default 24; a positive number of hours).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from urllib.parse import urlsplit

from starlette.requests import Request


class SettingsError(ValueError):
    """A deployment setting that cannot be used; the message names the variable."""


@dataclass(frozen=True)
class Settings:
    """The clinic's deployment settings (see the module docstring).

    >>> s = Settings.parse("https://clinic.example.org", "")
    >>> s.secure, s.allowed_hosts, s.link("abc")
    (True, ('clinic.example.org', 'localhost', '127.0.0.1'), 'https://clinic.example.org/f/abc')
    """

    public_url: str | None = None
    allowed_hosts: tuple[str, ...] = ("*",)
    refit_hours: float = 24.0

    @classmethod
    def from_env(cls) -> Settings:
        """The settings in the environment variables of the module docstring."""
        return cls.parse(
            os.environ.get("ALLIANCE_PUBLIC_URL", ""),
            os.environ.get("ALLIANCE_ALLOWED_HOSTS", ""),
            os.environ.get("ALLIANCE_EXPECTED_REFIT_HOURS", ""),
        )

    @classmethod
    def parse(cls, public_url: str, allowed_hosts: str, refit_hours: str = "") -> Settings:
        """Validate the settings as given (empty: unset)."""
        url = public_url.strip().rstrip("/") or None
        if url is not None:
            parts = urlsplit(url)
            if (
                parts.scheme not in ("http", "https")
                or not parts.hostname
                or parts.path
                or (parts.query or parts.fragment or parts.username)
            ):
                raise SettingsError(
                    f"ALLIANCE_PUBLIC_URL: {public_url!r} must be http(s)://host[:port] "
                    "with no path, query or user"
                )
        hosts = tuple(h.strip().lower() for h in allowed_hosts.split(",") if h.strip())
        if not hosts:
            hosts = (
                ("*",) if url is None else (str(urlsplit(url).hostname), "localhost", "127.0.0.1")
            )
        return cls(url, hosts, _positive_hours(refit_hours))

    @property
    def secure(self) -> bool:
        """True when the clinic is public over https (Secure cookies, HSTS)."""
        return bool(self.public_url and self.public_url.startswith("https://"))

    def link(self, token: str, request: Request | None = None) -> str:
        """The absolute patient link of ``token``: on the public URL when set, else on the
        request's own URL (the local demo)."""
        base = self.public_url or (str(request.base_url).rstrip("/") if request else "")
        return f"{base}/f/{token}"

    @property
    def refit_every(self) -> float:
        """Seconds between refits of the expected-trajectory model."""
        return self.refit_hours * 3600.0

    def cookie_secure(self, request: Request) -> bool:
        """Whether cookies get ``Secure``: always behind an https public URL."""
        return self.secure or request.url.scheme == "https"


def _positive_hours(text: str) -> float:
    if not text.strip():
        return 24.0
    try:
        hours = float(text)
    except ValueError:
        hours = float("nan")
    if not (hours > 0 and hours < float("inf")):
        raise SettingsError(
            f"ALLIANCE_EXPECTED_REFIT_HOURS: {text!r} must be a positive number of hours"
        )
    return hours
