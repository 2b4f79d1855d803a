"""The ``alliance`` command: one Typer app, one module per subcommand group."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="alliance",
    help="Measure, monitor and study the therapeutic (working) alliance.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
)

# Subcommands register themselves here, one line each (keep them in this order).
from alliance.cli import instruments as _instruments  # noqa: E402
from alliance.cli import score as _score  # noqa: E402

app.add_typer(_instruments.app, name="instruments")
app.command("score", no_args_is_help=True)(_score.score_command)
