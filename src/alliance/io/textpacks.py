"""Install and look up text packs (official wordings) in the user's alliance folder.

A pack file is CSV (columns ``instrument, language, item, text``) or JSON (a list of such
records, ``{"instrument": ..., "language": ..., "items": {"1": "...", ...}}``, or a FHIR
Questionnaire holding the licensed wording, read by
:func:`alliance.fhir.questionnaire.text_pack_rows`).
Installed packs are stored as ``textpacks/<instrument>/<language>.json``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from alliance.home import alliance_home
from alliance.instruments.textpack import TextPack, TextPackError, validate_text_pack
from alliance.io.home import atomic_write
from alliance.io.tables import InputFileError, read_table


def textpacks_dir() -> Path:
    return alliance_home() / "textpacks"


def read_text_pack(path: str | Path) -> list[TextPack]:
    """Read and validate a pack file (nothing is installed)."""
    path = Path(path)
    if path.suffix.lower() == ".json":
        rows = _json_rows(path)
        rows.index = pd.RangeIndex(1, len(rows) + 1)  # data rows from 1, as read_table
    else:
        rows = read_table(path)
    return validate_text_pack(rows)


def install_text_pack(path: str | Path) -> list[TextPack]:
    """Validate a pack file and install every instrument/language in it.

    Nothing is written unless the whole file is valid.
    """
    packs = read_text_pack(path)
    for pack in packs:
        target = textpacks_dir() / pack.instrument / f"{pack.language}.json"
        body = {
            "instrument": pack.instrument,
            "language": pack.language,
            "items": {str(k): v for k, v in sorted(pack.items.items())},
        }
        atomic_write(target, json.dumps(body, ensure_ascii=False, indent=1))
    return packs


def installed_languages(instrument_id: str) -> list[str]:
    """Languages with an installed pack for the instrument, sorted."""
    folder = textpacks_dir() / instrument_id
    return sorted(p.stem for p in folder.glob("*.json")) if folder.is_dir() else []


def installed_text(instrument_id: str, language: str) -> dict[int, str] | None:
    """The installed wording of each item, or None when no pack is installed."""
    path = textpacks_dir() / instrument_id / f"{language}.json"
    if not path.is_file():
        return None
    body = json.loads(path.read_text(encoding="utf-8"))
    return {int(k): str(v) for k, v in body["items"].items()}


def _json_rows(path: Path) -> pd.DataFrame:
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputFileError(f"{path}: not readable JSON: {exc}") from None
    if isinstance(body, dict) and body.get("resourceType") == "Questionnaire":
        from alliance.fhir.questionnaire import text_pack_rows

        return pd.DataFrame.from_records(text_pack_rows(body))
    if isinstance(body, dict) and isinstance(body.get("items"), dict):
        return pd.DataFrame(
            {
                "instrument": body.get("instrument"),
                "language": body.get("language"),
                "item": list(body["items"]),
                "text": list(body["items"].values()),
            }
        )
    if isinstance(body, list):
        return pd.DataFrame.from_records(body)
    raise TextPackError(
        f"{path}: expected a list of records or an object with instrument, language, items"
    )
