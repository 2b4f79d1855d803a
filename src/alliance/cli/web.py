"""``alliance demo``, ``serve``, ``db upgrade``, ``db grant`` and ``users ...`` (accounts)."""

from __future__ import annotations

import logging
import os
import secrets
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from sqlalchemy import Engine

db_app = typer.Typer(help="Database maintenance.", no_args_is_help=True)
users_app = typer.Typer(help="Clinic user accounts.", no_args_is_help=True)


def _need_clinic() -> None:
    from alliance.cli.common import need_extra

    need_extra("clinic", "fastapi")


db_app.callback()(_need_clinic)
users_app.callback()(_need_clinic)

DEMO_PASSWORD = "demo-password"
CLI = "cli"  # the audit log's actor for account changes made from the shell
DATABASE_URL = typer.Option(
    None, envvar="ALLIANCE_DATABASE_URL", help="SQLAlchemy URL (default: SQLite file)."
)


def _configure_logging() -> None:
    """Our route-template log only: uvicorn's access log (concrete paths) stays off."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")


def _run(app: object, host: str, port: int, **options: object) -> None:
    import uvicorn

    uvicorn.run(
        app,  # type: ignore[arg-type]
        host=host,
        port=port,
        access_log=False,
        log_level="warning",
        server_header=False,
        proxy_headers=True,  # trust X-Forwarded-* from a local TLS proxy only
        **options,  # type: ignore[arg-type]
    )


def serve_command(
    host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
    port: int = typer.Option(8000, help="TCP port."),
    database_url: str = typer.Option(
        None, envvar="ALLIANCE_DATABASE_URL", help="SQLAlchemy URL (default: SQLite file)."
    ),
    migrate: bool = typer.Option(
        True,
        "--migrate/--no-migrate",
        envvar="ALLIANCE_MIGRATE",
        help="Migrate the database first; --no-migrate (ALLIANCE_MIGRATE=0) only checks "
        "that the schema is the newest (for a role that may not change it).",
    ),
    workers: int = typer.Option(
        1,
        min=1,
        envvar="ALLIANCE_WORKERS",
        help="Worker processes; with more than one, this process migrates (or checks) the "
        "database and creates the secret key once, then starts the workers without migrating.",
    ),
) -> None:
    """Run the clinic web application (migrates the database first)."""
    _need_clinic()
    from alliance.store.migrate import SchemaNotCurrent
    from alliance.web.security import SecretKeyError
    from alliance.web.settings import Settings, SettingsError

    _configure_logging()
    try:
        Settings.from_env()  # a wrong setting stops here, before any worker starts
        if workers == 1:
            from alliance.web.app import create_app

            app = create_app(database_url, migrate_db=migrate)
            where = app.state.db.engine.url.render_as_string()
        else:
            where = _prepare_workers(database_url, migrate)
    except (SchemaNotCurrent, SecretKeyError, SettingsError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"alliance clinic on http://{host}:{port}/  (database: {where})")
    if workers == 1:
        _run(app, host, port)
    else:
        typer.echo(f"{workers} worker processes")
        _run("alliance.web.app:create_app_from_env", host, port, factory=True, workers=workers)


def _prepare_workers(database_url: str | None, migrate: bool) -> str:
    """Once, before the workers start: migrate (or check) the schema and make sure the
    secret key exists; the workers then start with ``ALLIANCE_MIGRATE=0``."""
    from alliance.store.db import make_engine
    from alliance.store.migrate import require_current, upgrade
    from alliance.web.security import load_secret_key

    engine = make_engine(database_url)
    try:
        if migrate:
            upgrade(engine)
        else:
            require_current(engine)
        where = engine.url.render_as_string()
        os.environ["ALLIANCE_DATABASE_URL"] = engine.url.render_as_string(hide_password=False)
    finally:
        engine.dispose()
    load_secret_key()
    os.environ["ALLIANCE_MIGRATE"] = "0"
    return where


def demo_command(
    host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
    port: int = typer.Option(8000, help="TCP port."),
    db: Path = typer.Option(None, help="SQLite file to create (default: a fresh temp file)."),
    therapists: int = typer.Option(4, help="Number of simulated therapists."),
    patients: int = typer.Option(40, help="Number of simulated patients."),
    seed: int = typer.Option(7, help="Random seed of the simulator."),
) -> None:
    """Start the clinic on a fresh SQLite file filled from the simulator."""
    _need_clinic()
    from alliance.store.db import sqlite_url
    from alliance.web.app import create_app
    from alliance.web.demo import fill_demo

    _configure_logging()
    if db is None:
        db = Path(tempfile.mkdtemp(prefix="alliance-demo-")) / "demo.db"
    if db.exists():
        typer.echo(f"error: --db {db} already exists; the demo needs a fresh file", err=True)
        raise typer.Exit(2)
    os.environ.setdefault("ALLIANCE_SECRET_KEY", secrets.token_urlsafe(32))
    # Synthetic data: show every alert kind, including those on unverified keys (each
    # such alert says so). A real clinic opts in with the same setting.
    os.environ.setdefault("ALLIANCE_ALERTS_ALLOW_UNVERIFIED", "1")
    app = create_app(sqlite_url(db))
    logins = fill_demo(app.state.db, therapists=therapists, patients=patients, seed=seed)
    typer.echo(f"alliance demo clinic: http://{host}:{port}/")
    typer.echo(f"database: {db}")
    typer.echo(f"logins (password for all: {DEMO_PASSWORD}):")
    for role, names in logins.items():
        typer.echo(f"  {role:<11} {', '.join(names)}")
    _run(app, host, port)


@db_app.command("upgrade")
def upgrade_command(
    database_url: str = typer.Option(
        None, envvar="ALLIANCE_DATABASE_URL", help="SQLAlchemy URL (default: SQLite file)."
    ),
    grant: str = typer.Option(
        "", metavar="ROLE", help="Then grant ROLE the clinic's privileges (see `db grant`)."
    ),
) -> None:
    """Apply the database migrations (Alembic) up to the newest schema."""
    from alliance.store.db import make_engine
    from alliance.store.migrate import upgrade

    engine = make_engine(database_url)
    upgrade(engine)
    typer.echo(f"database at the newest schema: {engine.url.render_as_string()}")
    if grant:
        _grant(engine, grant)


@db_app.command("grant")
def grant_command(
    role: str = typer.Argument(..., help="The PostgreSQL role the clinic will serve as."),
    database_url: str = typer.Option(
        None, envvar="ALLIANCE_DATABASE_URL", help="SQLAlchemy URL of the tables' owner."
    ),
) -> None:
    """PostgreSQL: give ROLE only what the clinic needs (rows of its tables, read and append
    on the audit log); run as the owner after each upgrade, then serve as ROLE."""
    from alliance.store.db import make_engine

    _grant(make_engine(database_url), role)


def _grant(engine: Engine, role: str) -> None:
    from alliance.store.roles import GrantRefused, grant_app_role

    try:
        granted = grant_app_role(engine, role)
    except GrantRefused as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"granted {role}:")
    for line in granted:
        typer.echo(f"  {line}")


@users_app.command("create")
def create_user_command(
    username: str = typer.Argument(..., help="Login name."),
    role: str = typer.Option(..., help="admin, supervisor, therapist or researcher."),
    display_name: str = typer.Option("", help="Name shown in the app."),
    supervisor: str = typer.Option("", help="Username of the supervisor (therapists)."),
    password: str = typer.Option(
        ..., prompt=True, hide_input=True, confirmation_prompt=True, help="At least 8 characters."
    ),
    token: bool = typer.Option(False, help="Also issue an API bearer token (printed once)."),
    database_url: str = DATABASE_URL,
) -> None:
    """Create a clinic user (and optionally an API token)."""
    from alliance.store import repo
    from alliance.store.db import Database
    from alliance.store.migrate import upgrade
    from alliance.web.security import hash_password

    database = Database(database_url)
    upgrade(database.engine)
    try:
        with database.write() as s:
            sup_id = None
            if supervisor:
                sup = repo.user_by_name(s, supervisor)
                if sup is None or sup.role != "supervisor":
                    raise ValueError(f"supervisor: no supervisor named {supervisor!r}")
                sup_id = sup.id
            user = repo.create_user(
                s, username, hash_password(password), role, display_name, sup_id
            )
            repo.audit(s, None, "create", "user", user.id, actor=CLI, detail=f"role={role}")
            issued = repo.issue_token(s, user, "cli", actor=CLI) if token else None
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"created {role} {username!r}")
    if issued:
        typer.echo(f"API token (shown once): {issued}")


def _account_change(database_url: str | None, username: str, change: Any) -> Any:
    """Run ``change(session, account)`` on the named account in one audited transaction;
    a refused change (unknown user, bad field, last admin...) exits 2 and changes nothing."""
    from alliance.store import repo
    from alliance.store.db import Database
    from alliance.store.migrate import upgrade

    database = Database(database_url)
    upgrade(database.engine)
    try:
        with database.write() as s:
            return change(s, repo.account(s, username))
    except (ValueError, LookupError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    finally:
        database.dispose()


@users_app.command("list")
def list_users_command(database_url: str = DATABASE_URL) -> None:
    """Every account: username, role, status and active API tokens."""
    from alliance.store import repo
    from alliance.store.db import Database
    from alliance.store.migrate import upgrade

    database = Database(database_url)
    upgrade(database.engine)
    with database.read() as s:
        tokens = repo.active_token_counts(s)
        for user in repo.list_users(s):
            status = "active" if user.active else "deactivated"
            typer.echo(f"{user.username}\t{user.role}\t{status}\t{tokens.get(user.id, 0)} token(s)")
    database.dispose()


@users_app.command("deactivate")
def deactivate_command(
    username: str = typer.Argument(..., help="Login name."), database_url: str = DATABASE_URL
) -> None:
    """Deactivate an account: its sessions end and its API tokens are revoked."""
    from alliance.store import repo

    _account_change(database_url, username, lambda s, u: repo.set_active(s, u, False, actor=CLI))
    typer.echo(f"deactivated {username!r}")


@users_app.command("reactivate")
def reactivate_command(
    username: str = typer.Argument(..., help="Login name."), database_url: str = DATABASE_URL
) -> None:
    """Let a deactivated account log in again (its old tokens stay revoked)."""
    from alliance.store import repo

    _account_change(database_url, username, lambda s, u: repo.set_active(s, u, True, actor=CLI))
    typer.echo(f"reactivated {username!r}")


@users_app.command("set-role")
def set_role_command(
    username: str = typer.Argument(..., help="Login name."),
    role: str = typer.Argument(..., help="admin, supervisor, therapist or researcher."),
    supervisor: str = typer.Option("", help="Username of the supervisor (therapists)."),
    database_url: str = DATABASE_URL,
) -> None:
    """Change an account's role (and a therapist's supervisor)."""
    from alliance.store import repo

    def change(s: Any, user: Any) -> None:
        chief = repo.account(s, supervisor).id if supervisor else None
        repo.set_role(s, user, role, chief, actor=CLI)

    _account_change(database_url, username, change)
    typer.echo(f"{username!r} is now {role}")


@users_app.command("reset-password")
def reset_password_command(
    username: str = typer.Argument(..., help="Login name."),
    password: str = typer.Option(
        ..., prompt=True, hide_input=True, confirmation_prompt=True, help="At least 8 characters."
    ),
    database_url: str = DATABASE_URL,
) -> None:
    """Set a new password; the account's sessions end and its API tokens are revoked."""
    from alliance.store import repo
    from alliance.web.security import hash_password

    def change(s: Any, user: Any) -> None:
        repo.set_password(s, user, hash_password(password), actor=CLI)

    _account_change(database_url, username, change)
    typer.echo(f"new password set for {username!r}; their sessions and tokens ended")


@users_app.command("token")
def token_command(
    username: str = typer.Argument(..., help="Login name."),
    name: str = typer.Option("cli", help="A label for the token (e.g. the script using it)."),
    database_url: str = DATABASE_URL,
) -> None:
    """Issue an API bearer token to an existing account (printed once)."""
    from alliance.store import repo

    issued = _account_change(
        database_url, username, lambda s, u: repo.issue_token(s, u, name[:64], actor=CLI)
    )
    typer.echo(f"API token (shown once): {issued}")


@users_app.command("revoke-tokens")
def revoke_tokens_command(
    username: str = typer.Argument(..., help="Login name."), database_url: str = DATABASE_URL
) -> None:
    """Revoke every API token of an account."""
    from alliance.store import repo

    revoked = _account_change(
        database_url, username, lambda s, u: repo.revoke_tokens(s, u, actor=CLI)
    )
    typer.echo(f"revoked {revoked} token(s) of {username!r}")
