"""Authentication and request security: argon2 passwords, signed session cookies, CSRF,
login delays, security headers and bearer tokens.

The web tier keeps no server-side session state: the session cookie is signed with
itsdangerous and carries the user id and a random nonce; the CSRF token of every form is an
HMAC of that nonce, so any worker can check it.

Login delays (throttling, not lockout). NIST SP 800-63B (section 5.2.2, "Rate Limiting
(Throttling)") asks a verifier to limit the failed attempts an online guesser can make on an
account, and names the alternatives to a plain lockout: waiting periods that grow with each
further failure, and limits tied to where the attempts come from, so that legitimate users
are not denied service. The OWASP Authentication Cheat Sheet ("Protect Against Automated
Attacks", "Account Lockout") gives the same warning: a counter per account lets anyone lock
a colleague out by typing wrong passwords, and a counter per address locks out everyone
behind the same NAT. So the clinic keeps two counters, both updated atomically before the
password is checked (:func:`alliance.store.repo.claim_login_attempt`):

- per user at an address (:data:`USER_AT_ADDRESS`): the first failures are free; after
  them each further attempt for that user *from that address* waits a delay that doubles
  with every failure, up to :data:`MAX_DELAY`. A correct password ends the delay. The same
  user from another address has a counter of its own, so a guesser never delays the user's
  own logins elsewhere.
- per address (:data:`FROM_ADDRESS`): many more free failures, for one address guessing
  many usernames (password spraying); colleagues behind a clinic's NAT are affected only
  after that many failures from it within the hour, and then only by the delay.

A refused attempt checks no password and gets 429 with ``Retry-After``; the counters are
the same for unknown usernames, so the refusal does not tell whether a user exists. The
counters are keyed by an HMAC of the username and address (:func:`login_keys`): what was
typed into the username field (possibly a password) is never stored.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import tempfile
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from itsdangerous import BadSignature, URLSafeTimedSerializer

from alliance.home import alliance_home

SESSION_COOKIE = "alliance_session"
SESSION_MAX_AGE = 8 * 3600
FIRST_DELAY = timedelta(seconds=30)  # the wait after the last free failure
MAX_DELAY = timedelta(minutes=15)  # the delay doubles with each failure up to this


@dataclass(frozen=True)
class LoginRule:
    """How one login counter slows a guesser: free failures, then doubling delays; the
    failures are forgotten ``forget_after`` the last one; ``reset_on_success``: a correct
    password clears the counter (else it only takes back its own attempt)."""

    name: str
    free_failures: int
    forget_after: timedelta
    reset_on_success: bool

    def delay(self, failures: int) -> timedelta:
        """The wait before the next attempt after ``failures`` failures (0: none)."""
        if failures < self.free_failures:
            return timedelta(0)
        doublings = min(failures - self.free_failures, 16)
        return min(FIRST_DELAY * (1 << doublings), MAX_DELAY)


USER_AT_ADDRESS = LoginRule("user-address", 5, timedelta(hours=24), reset_on_success=True)
FROM_ADDRESS = LoginRule("address", 30, timedelta(hours=1), reset_on_success=False)


def login_keys(secret_key: str, username: str, address: str) -> dict[str, LoginRule]:
    """The counters a login attempt counts against, by their keyed hashes (HMAC-SHA-256:
    neither the typed username nor the address can be read back from the database)."""

    def key(*parts: str) -> str:
        message = "\x00".join(parts).encode("utf-8", "surrogatepass")
        return hmac.new(secret_key.encode(), b"login:" + message, hashlib.sha256).hexdigest()

    return {
        key(USER_AT_ADDRESS.name, username, address): USER_AT_ADDRESS,
        key(FROM_ADDRESS.name, address): FROM_ADDRESS,
    }


_hasher = PasswordHasher()


def hash_password(password: str) -> str:
    """Argon2id hash of a password (rules: at least 8 characters)."""
    if len(password) < 8:
        raise ValueError("password: must be at least 8 characters")
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """Whether the password matches the argon2 hash."""
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


_DUMMY_HASH = _hasher.hash(secrets.token_hex(8))


def burn_verify_time(password: str) -> None:
    """Spend the time of one verification (same timing for unknown users)."""
    verify_password(_DUMMY_HASH, password)


MIN_KEY_LENGTH = 32  # a generated key has 64 characters


class SecretKeyError(RuntimeError):
    """The secret key file is unusable (empty, truncated): the clinic refuses to start."""


def load_secret_key() -> str:
    """``ALLIANCE_SECRET_KEY``, else a key kept in ``$ALLIANCE_HOME/secret_key`` (0600).

    Safe when several workers start at once on a fresh home: the key is written to a temp
    file, synced, then hard-linked into place, so the file appears only complete and the
    first worker's key wins; the others read it. An empty or truncated file is refused
    (:class:`SecretKeyError`), never used to sign cookies.
    """
    env = os.environ.get("ALLIANCE_SECRET_KEY")
    if env:
        return env
    path: Path = alliance_home() / "secret_key"
    if not path.exists():
        _create_key_file(path)
    key = path.read_text().strip()
    if len(key) < MIN_KEY_LENGTH:
        raise SecretKeyError(
            f"{path}: the secret key file is empty or shorter than {MIN_KEY_LENGTH}"
            " characters; remove it to have a new key created (this signs everyone out),"
            " or set ALLIANCE_SECRET_KEY"
        )
    return key


def _create_key_file(path: Path) -> None:
    """Create ``path`` with a new key unless another process got there first."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=".secret_key.")  # mode 0600
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(48) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(temp, path)  # atomic, and never replaces a key already there
        except FileExistsError:
            return  # another worker's key won
        _fsync_dir(path.parent)
    finally:
        os.unlink(temp)


def _fsync_dir(directory: Path) -> None:
    """Make a new directory entry durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass(frozen=True)
class SessionData:
    """What the signed session cookie carries."""

    user_id: int | None
    nonce: str
    epoch: int = 0


#: Seconds a new patient link can be shown after it was issued (once: see pages.new_session).
NEW_LINK_MAX_AGE = 300


class Signer:
    """Signs session cookies and derives CSRF tokens from one secret key."""

    def __init__(self, secret_key: str) -> None:
        self.secret_key = secret_key
        self._key = secret_key.encode("utf-8")
        self._cookies = URLSafeTimedSerializer(secret_key, salt="alliance-session")
        self._links = URLSafeTimedSerializer(secret_key, salt="alliance-new-link")

    def dump_new_link(self, session_id: int, token: str) -> str:
        """Sign a just-issued patient link for the one page that shows it (a cookie)."""
        return self._links.dumps({"s": session_id, "t": token})

    def load_new_link(self, cookie: str | None, session_id: int) -> str | None:
        """The link token in a cookie of :meth:`dump_new_link` for this session, if it is
        genuine and at most :data:`NEW_LINK_MAX_AGE` seconds old; else None."""
        if not cookie:
            return None
        try:
            raw = self._links.loads(cookie, max_age=NEW_LINK_MAX_AGE)
        except BadSignature:
            return None
        ok = isinstance(raw, dict) and raw.get("s") == session_id and isinstance(raw.get("t"), str)
        return str(raw["t"]) if ok else None

    def dump_session(self, data: SessionData) -> str:
        """Serialise and sign a session."""
        return self._cookies.dumps({"u": data.user_id, "n": data.nonce, "e": data.epoch})

    def load_session(self, cookie: str | None) -> SessionData | None:
        """The session in a cookie, or None when missing, forged or older than 8 hours."""
        if not cookie:
            return None
        try:
            raw = self._cookies.loads(cookie, max_age=SESSION_MAX_AGE)
        except BadSignature:
            return None
        if not isinstance(raw, dict) or not isinstance(raw.get("n"), str):
            return None
        user_id = raw.get("u")
        epoch = raw.get("e")
        return SessionData(
            user_id if isinstance(user_id, int) else None,
            raw["n"],
            epoch if isinstance(epoch, int) else 0,
        )

    def csrf_token(self, nonce: str) -> str:
        """The CSRF token for forms of the session (or patient link) with this nonce."""
        return hmac.new(self._key, b"csrf:" + nonce.encode(), hashlib.sha256).hexdigest()

    def check_csrf(self, nonce: str | None, token: str | None) -> bool:
        """Constant-time check of a submitted CSRF token."""
        if not nonce or not token:
            return False
        return hmac.compare_digest(self.csrf_token(nonce), token)


def new_nonce() -> str:
    """A fresh random session nonce."""
    return secrets.token_urlsafe(16)


SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def pseudonym(secret_key: str, kind: str, value: object, length: int = 12) -> str:
    """A stable keyed pseudonym (HMAC-SHA-256) for de-identified exports."""
    digest = hmac.new(secret_key.encode(), f"{kind}:{value}".encode(), hashlib.sha256)
    return digest.hexdigest()[:length]
