"""The ``alliance`` command: one Typer app, one module per subcommand group."""

from __future__ import annotations

import typer

from alliance.cli import dynamics as _dynamics
from alliance.cli import fhir as _fhir
from alliance.cli import instruments as _instruments
from alliance.cli import meta as _meta
from alliance.cli import model as _model
from alliance.cli import psychometrics as _psychometrics
from alliance.cli import score as _score
from alliance.cli import simulate as _simulate
from alliance.cli import web as _web

app = typer.Typer(
    name="alliance",
    help="Measure, monitor and study the therapeutic (working) alliance.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
)


def _print_version(asked: bool) -> None:
    if asked:
        from alliance import __version__

        typer.echo(f"alliance {__version__}")
        raise typer.Exit()


@app.callback()
def _before_every_command(
    version: bool = typer.Option(
        False,
        "--version",
        help="Print the version and exit.",
        is_eager=True,
        callback=_print_version,
    ),
) -> None:
    """Read the installed instrument files once, before any command: a broken one stops
    every command with exit 2 naming it (never a traceback, never silently skipped)."""
    from alliance.cli.common import user_errors
    from alliance.instruments import installed

    with user_errors():
        installed()


# Measure
app.command("score", no_args_is_help=True)(_score.score_command)
app.add_typer(_instruments.app, name="instruments")
# Monitor
app.command("simulate")(_simulate.simulate_command)
app.command("ruptures", no_args_is_help=True)(_dynamics.ruptures_command)
app.command("alerts", no_args_is_help=True)(_dynamics.alerts_command)
# Study
app.command("meta", no_args_is_help=True)(_meta.meta_command)
app.command("model", no_args_is_help=True)(_model.model_command)
app.command("therapists", no_args_is_help=True)(_model.therapists_command)
app.command("power")(_model.power_command)
app.command("psychometrics", no_args_is_help=True)(_psychometrics.psychometrics_command)
# Connect
app.add_typer(_fhir.app, name="fhir")
# The clinic
app.command("demo")(_web.demo_command)
app.command("serve")(_web.serve_command)
app.add_typer(_web.db_app, name="db")
app.add_typer(_web.users_app, name="users")
