"""``alliance instruments``: list, show and install instrument definitions and text packs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from alliance.cli.common import user_errors
from alliance.instruments import Instrument, get_instrument, is_shipped, list_instruments
from alliance.io.home import install_instrument
from alliance.io.textpacks import install_text_pack, installed_languages

app = typer.Typer(
    help="The instrument library: keys, norms, sources, and installed wordings.",
    no_args_is_help=True,
)
text_pack_app = typer.Typer(
    help="Official item wordings supplied by the clinic (never shipped).", no_args_is_help=True
)
app.add_typer(text_pack_app, name="text-pack")
console = Console(highlight=False, soft_wrap=True)


@app.command("list")
def list_command() -> None:
    """List the instruments with their items, forms and key status.

    Example: alliance instruments list
    """
    table = Table("id", "name", "role", "items", "forms", "key", "wording installed")
    for inst in list_instruments():
        table.add_row(
            inst.id,
            inst.name,
            inst.role.replace("_", "-"),
            str(len(inst.items)),
            ", ".join(f.id for f in inst.forms),
            inst.key_status,
            ", ".join(installed_languages(inst.id)) or "-",
        )
    console.print(table)


@app.command("show", no_args_is_help=True)
def show_command(
    instrument_id: Annotated[str, typer.Argument(help="Instrument id, e.g. wai_sr.")],
) -> None:
    """Show one instrument: items and keys, scores, norms, cutoffs and sources.

    Example: alliance instruments show wai_sr
    """
    with user_errors():
        inst = get_instrument(instrument_id)
    _show_header(inst)
    _show_items(inst)
    _show_scores(inst)
    _show_signals(inst)
    for cutoff in inst.cutoffs:
        console.print(
            f"[bold]Cutoff[/] {inst.id}_{cutoff.score} ({cutoff.metric}) flagged "
            f"{cutoff.flag_when.replace('_', ' ')} {cutoff.value:g}: {cutoff.meaning} "
            f"[dim]({cutoff.level}; {cutoff.source})[/]"
        )
    for norm in inst.norms:
        console.print(
            f"[bold]Norm[/] {norm.score} in {norm.sample}: {norm.model_dump(exclude_none=True)}"
        )
    console.print("[bold]Sources[/]")
    for citation in inst.citations:
        doi = f" https://doi.org/{citation.doi}" if citation.doi else ""
        console.print(f"  {escape(f'[{citation.key}]')} {citation.text}{doi}")


def _show_header(inst: Instrument) -> None:
    console.print(f"[bold]{inst.name}[/] ({inst.short_name}, id {inst.id})")
    console.print(inst.measures)
    scale = inst.scale
    step = "continuous" if scale.step is None else f"step {scale.step:g}"
    anchors = ", ".join(f"{a.value:g} = {a.descriptor}" for a in scale.anchors)
    console.print(f"Scale: {scale.kind} {scale.min:g}..{scale.max:g} ({step}); {anchors}")
    role = inst.role.replace("_", "-")
    if inst.role == "alliance":
        role += f" (monitoring order {inst.monitoring_order})"
    console.print(f"Role: {role}")
    console.print(f"Default metric: {inst.default_metric}. Key status: [bold]{inst.key_status}[/]")
    if inst.key_note:
        console.print(f"Key note: {inst.key_note}")
    console.print(f"Missing items: {inst.missing.source}")
    for form in inst.forms:
        scorable = "" if form.scorable else " [red](not scorable)[/]"
        console.print(f"Form {form.id}: {form.name} ({form.respondent}){scorable} {form.note}")
    console.print(f"Wording: {inst.licence}")
    languages = installed_languages(inst.id)
    console.print(f"Installed wording: {', '.join(languages) if languages else 'none'}")


def _show_items(inst: Instrument) -> None:
    table = Table("item", "column", "scores", "reverse", "descriptor (ours)")
    for item in inst.items:
        table.add_row(
            str(item.number),
            f"{inst.id}_{item.number}",
            ", ".join(item.scores) or "-",
            "yes" if item.reverse else "",
            item.descriptor,
        )
    console.print(table)


def _show_scores(inst: Instrument) -> None:
    table = Table("score column", "label", "items", "key status", "sources")
    for sc in inst.scores:
        items = inst.score_items(sc.id)
        table.add_row(
            f"{inst.id}_{sc.id}",
            sc.label,
            " ".join(map(str, items)) or "(no key)",
            sc.key_status,
            ", ".join(sc.sources),
        )
    console.print(table)


def _show_signals(inst: Instrument) -> None:
    for signal in inst.signals:
        answers = ", ".join(f"{v:g}" for v in signal.values)
        console.print(
            f"[bold]Signal[/] {signal.id} ({signal.severity}): {escape(signal.title)} "
            f"- raised by item {signal.item} = {answers} "
            f"[dim]({signal.key_status}; {', '.join(signal.sources)})[/]"
        )
        console.print(f"  {escape(signal.guidance)}")
        if signal.note:
            console.print(f"  Note: {escape(signal.note)}")


@app.command("add", no_args_is_help=True)
def add_command(
    file: Annotated[Path, typer.Argument(help="Instrument definition (.toml).")],
) -> None:
    """Install an instrument file (same schema as the shipped files; see docs/instruments.md).

    A file whose id is shipped (e.g. calpas) overrides that definition, e.g. with the key
    from a licensed manual; a file with a new id adds an instrument, e.g. a clinic's own
    post-session question. A file that breaks the schema is refused and nothing changes.

    Examples: alliance instruments add calpas-key.toml
              alliance instruments add docs/examples/identity_rupture.toml
    """
    with user_errors():
        instrument_id = install_instrument(file)
    if is_shipped(instrument_id):
        console.print(
            f"installed instrument {instrument_id!r}; it now overrides the shipped definition"
        )
    else:
        console.print(
            f"installed new instrument {instrument_id!r} ({get_instrument(instrument_id).name})"
        )


@text_pack_app.command("add", no_args_is_help=True)
def text_pack_add(
    file: Annotated[Path, typer.Argument(help="CSV or JSON: instrument, language, item, text.")],
) -> None:
    """Validate and install official item wordings (item count and numbers must match).

    Example: alliance instruments text-pack add wai_sr_en.csv
    """
    with user_errors():
        packs = install_text_pack(file)
    for pack in packs:
        console.print(f"installed {pack.instrument} ({pack.language}): {len(pack.items)} items")
