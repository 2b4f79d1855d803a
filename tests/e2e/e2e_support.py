"""Shared constants of the end-to-end tests."""

from __future__ import annotations

from dataclasses import dataclass

CHROMIUM = "/usr/bin/chromium"
SECRET = "e2e-secret-key-0123456789-0123456789"
PASSWORD = "e2e password"


@dataclass
class Server:
    """A running clinic server."""

    url: str
    patient_id: int
    token: str  # the therapist's API bearer token
