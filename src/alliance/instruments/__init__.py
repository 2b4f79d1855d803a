"""The instrument library: one declarative TOML file per instrument, validated on load.

Shipped definitions live in ``instruments/data``. A clinic or researcher holding a licensed
manual can add or correct a key with an override of the same schema, registered with
:func:`register` (the CLI's ``alliance instruments add FILE`` installs one for good).

Example
-------
>>> from alliance.instruments import get_instrument, list_instruments
>>> [i.id for i in list_instruments()][:3]
['calpas', 'haq2', 'psq']
>>> get_instrument("wai_sr").item_columns[:2]
('wai_sr_1', 'wai_sr_2')
"""

from __future__ import annotations

import tomllib
from functools import cache
from importlib import resources

from pydantic import ValidationError

from alliance.instruments.schema import (
    Citation,
    Cutoff,
    Form,
    Instrument,
    Item,
    MissingRule,
    Norm,
    ResponseScale,
    Score,
)

__all__ = [
    "Citation",
    "Cutoff",
    "Form",
    "Instrument",
    "InstrumentDefinitionError",
    "Item",
    "MissingRule",
    "Norm",
    "ResponseScale",
    "Score",
    "UnknownInstrumentError",
    "get_instrument",
    "list_instruments",
    "parse_instrument",
    "register",
    "unregister",
]

_overrides: dict[str, Instrument] = {}


class InstrumentDefinitionError(ValueError):
    """An instrument file that is not valid TOML or breaks the schema."""


class UnknownInstrumentError(KeyError):
    """No instrument with the requested id."""

    def __str__(self) -> str:
        return str(self.args[0])


def parse_instrument(text: str, origin: str = "<text>") -> Instrument:
    """Parse and validate one instrument definition from TOML text.

    Errors name the file (``origin``), the field path and the rule broken.

    >>> parse_instrument("id = 'x'", "x.toml")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    alliance.instruments.InstrumentDefinitionError: x.toml: name: Field required...
    """
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InstrumentDefinitionError(f"{origin}: not valid TOML: {exc}") from None
    try:
        return Instrument.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(file)'}: {err['msg']}"
            for err in exc.errors()
        )
        raise InstrumentDefinitionError(f"{origin}: {problems}") from None


@cache
def _shipped() -> dict[str, Instrument]:
    folder = resources.files("alliance.instruments") / "data"
    found: dict[str, Instrument] = {}
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".toml"):
            instrument = parse_instrument(entry.read_text(encoding="utf-8"), entry.name)
            found[instrument.id] = instrument
    return found


def register(instrument: Instrument) -> None:
    """Use ``instrument`` in place of (or beside) the shipped definition with its id."""
    _overrides[instrument.id] = instrument


def unregister(instrument_id: str) -> None:
    """Drop an override so the shipped definition applies again."""
    _overrides.pop(instrument_id, None)


def get_instrument(instrument_id: str) -> Instrument:
    """The definition of one instrument (an installed override wins over the shipped file)."""
    if instrument_id in _overrides:
        return _overrides[instrument_id]
    shipped = _shipped()
    if instrument_id not in shipped:
        known = ", ".join(sorted({*shipped, *_overrides}))
        raise UnknownInstrumentError(f"unknown instrument {instrument_id!r} (known: {known})")
    return shipped[instrument_id]


def list_instruments() -> list[Instrument]:
    """Every available instrument, sorted by id."""
    ids = sorted({*_shipped(), *_overrides})
    return [get_instrument(i) for i in ids]
