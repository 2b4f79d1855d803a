"""``alliance fhir``: instruments as FHIR Questionnaires, response tables to and from Bundles.

Same rules as every command: bad input exits 2 with the file, location and rule (never the
submitted value), and nothing is written.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from alliance.cli.common import fail, read_input, user_errors, write_output
from alliance.io.home import atomic_write
from alliance.io.tables import OutputFormat

app = typer.Typer(
    help="FHIR R4: Questionnaires, QuestionnaireResponses and Observations.",
    no_args_is_help=True,
)


def _write_json(resource: dict[str, Any], output: Path | None) -> None:
    text = json.dumps(resource, ensure_ascii=False, indent=1)
    if output is None:
        typer.echo(text)
    else:
        atomic_write(output, text)


@app.command("questionnaire", no_args_is_help=True)
def questionnaire_command(
    instrument_id: Annotated[str, typer.Argument(help="Instrument id, e.g. wai_sr.")],
    form: Annotated[
        str | None, typer.Option("--form", help="Form id; the first if omitted.")
    ] = None,
    language: Annotated[
        str, typer.Option("--language", help="Wording of an installed text pack, e.g. de.")
    ] = "en",
    output: Annotated[Path | None, typer.Option("-o", "--output", help="JSON file.")] = None,
) -> None:
    """Print (or write) an instrument form as an SDC Questionnaire.

    Example: alliance fhir questionnaire wai_sr --form client -o wai_sr.json
    """
    from alliance.fhir import questionnaire

    with user_errors():
        resource = questionnaire(instrument_id, form, language)
    _write_json(resource, output)


@app.command("export", no_args_is_help=True)
def export_command(
    input: Annotated[
        Path | None,
        typer.Argument(help="Response table: patient_id, session, date, items (or --db)."),
    ] = None,
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Bundle JSON file.")] = None,
    per_patient: Annotated[
        Path | None,
        typer.Option("--per-patient", help="Folder for one Bundle per patient instead."),
    ] = None,
    db: Annotated[
        bool, typer.Option("--db", help="Export the clinic database's stored forms instead.")
    ] = False,
    identified: Annotated[
        bool,
        typer.Option(
            "--identified",
            help="With --db: patient codes and session dates (default: research ids, no dates).",
        ),
    ] = False,
    database_url: Annotated[
        str | None,
        typer.Option(envvar="ALLIANCE_DATABASE_URL", help="With --db: SQLAlchemy URL."),
    ] = None,
) -> None:
    """Write responses as a Bundle of QuestionnaireResponses and score Observations.

    Example: alliance fhir export answers.csv -o bundle.json
    Example: alliance fhir export --db -o clinic.json   (de-identified, audited)
    """
    if (input is None) == (not db):
        fail("give either a response table (FILE) or --db, not both and not neither")
    if identified and not db:
        fail("--identified: only with --db (a table is exported as it is)")
    if db:
        bundles = _database_bundles(database_url, per_patient is not None, identified)
    else:
        from alliance.fhir.exchange import export_bundles

        assert input is not None
        table = read_input(input)
        with user_errors():
            bundles = export_bundles(table, per_patient=per_patient is not None)
    if per_patient is None:
        _write_json(bundles[0], output)
        return
    per_patient.mkdir(parents=True, exist_ok=True)
    for k, body in enumerate(bundles, start=1):
        _write_json(body, per_patient / f"bundle-{k}.json")
    typer.echo(f"{len(bundles)} bundle(s) written to {per_patient}", err=True)


def _database_bundles(
    database_url: str | None, per_patient: bool, identified: bool
) -> list[dict[str, Any]]:
    """Every stored form of the clinic database as Bundles, in one audited read. The
    schema must be current: an export never migrates."""
    from alliance.cli.common import need_extra

    need_extra("clinic", "sqlalchemy")
    from sqlalchemy.engine import make_url

    from alliance.fhir.stored import stored_bundles
    from alliance.store import repo
    from alliance.store.db import Database, default_database_url
    from alliance.store.migrate import SchemaNotCurrent, require_current

    url = make_url(database_url or default_database_url())
    if url.get_backend_name() == "sqlite" and not Path(url.database or "").is_file():
        fail("--database-url: no clinic database at that SQLite path")
    database = Database(url.render_as_string(hide_password=False))
    try:
        require_current(database.engine)
        with database.audited() as s:
            found = repo.find_responses(s, None, repo.ResponseQuery())
            bundles = stored_bundles(found, per_patient, deidentified=not identified)
            kind = "identified" if identified else "deidentified"
            repo.audit(
                s, None, "export", "fhir-bundle", kind, actor="cli",
                detail=f"{len(found)} responses",
                patients=sorted({patient.id for _, _, patient in found}),
            )  # fmt: skip
    except SchemaNotCurrent as exc:
        fail(f"--database-url: {exc}")
    finally:
        database.dispose()
    return bundles


@app.command("import", no_args_is_help=True)
def import_command(
    bundle: Annotated[Path, typer.Argument(help="A Bundle (or one QuestionnaireResponse).")],
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Table file.")] = None,
    format: Annotated[
        OutputFormat | None, typer.Option("--format", help="csv, json or parquet.")
    ] = None,
) -> None:
    """Read the QuestionnaireResponses of a Bundle into a scored response table.

    Example: alliance fhir import bundle.json -o scores.csv
    """
    from alliance.fhir import FhirInputError
    from alliance.fhir.exchange import import_bundle

    try:
        text = bundle.read_bytes()
    except OSError as exc:
        fail(f"{bundle}: cannot read: {exc.strerror}")
    try:
        table = import_bundle(text)
    except FhirInputError as exc:
        fail(f"{bundle}: " + "; ".join(str(i) for i in exc.issues))
    write_output(table, output, format)
