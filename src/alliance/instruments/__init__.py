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
>>> alliance_measures()[:3]
('wai_sr', 'wai_s', 'wai')
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
    Role,
    Score,
    Signal,
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
    "Role",
    "Score",
    "Signal",
    "UnknownInstrumentError",
    "alliance_measures",
    "get_instrument",
    "is_shipped",
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


def is_shipped(instrument_id: str) -> bool:
    """Whether the package ships a definition with this id (an installed file of the same
    id is then a key override; any other id adds a new instrument).

    >>> is_shipped("psq"), is_shipped("identity_rupture")
    (True, False)
    """
    return instrument_id in _shipped()


def list_instruments() -> list[Instrument]:
    """Every available instrument, sorted by id."""
    ids = sorted({*_shipped(), *_overrides})
    return [get_instrument(i) for i in ids]


def alliance_measures() -> tuple[str, ...]:
    """Ids of the instruments whose ``role`` is ``"alliance"``, in monitoring order.

    Lower ``monitoring_order`` comes first (ties by id). Registered instruments count
    (a clinic's installed files, once a shell has called
    :func:`alliance.io.home.load_user_instruments`); post-session questions and outcome
    measures do not.

    >>> alliance_measures()
    ('wai_sr', 'wai_s', 'wai', 'haq2', 'calpas', 'srs')
    >>> extra = get_instrument("srs").model_copy(update={"id": "srs_child", "monitoring_order": 7})
    >>> register(extra)
    >>> alliance_measures()[-2:]
    ('srs', 'srs_child')
    >>> register(extra.model_copy(update={"role": "outcome"}))
    >>> "srs_child" in alliance_measures()
    False
    >>> unregister("srs_child")
    """
    chosen = [i for i in list_instruments() if i.role == "alliance"]
    chosen.sort(key=lambda i: (i.monitoring_order, i.id))
    return tuple(i.id for i in chosen)
