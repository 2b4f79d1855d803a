"""The instrument library: one declarative TOML file per instrument, validated on load.

Shipped definitions live in ``instruments/data``. A clinic or researcher holding a licensed
manual can add or correct a key with a file of the same schema: ``alliance instruments add
FILE`` installs it in ``$ALLIANCE_HOME/instruments``, and every lookup here (the CLI's
commands, the clinic, the Python API) sees it, read once per folder. :func:`register` adds
one for this process only. Precedence: registered, then installed, then shipped.

Example
-------
>>> from alliance.instruments import get_instrument, list_instruments
>>> [i.id for i in list_instruments()][:3]
['calpas', 'ceq', 'haq2']
>>> get_instrument("wai_sr").item_columns[:2]
('wai_sr_1', 'wai_sr_2')
>>> alliance_measures()[:3]
('wai_sr', 'wai_s', 'wai')
"""

from __future__ import annotations

import tomllib
from functools import cache
from importlib import resources
from pathlib import Path

from pydantic import ValidationError

from alliance.home import instruments_dir
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
    UnknownFormError,
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
    "UnknownFormError",
    "UnknownInstrumentError",
    "alliance_measures",
    "get_instrument",
    "installed",
    "is_shipped",
    "list_instruments",
    "parse_instrument",
    "register",
    "reload_installed",
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


@cache
def _installed_in(folder: str) -> dict[str, Instrument]:
    """The instrument files installed in ``folder`` (read once). A broken file raises
    :class:`InstrumentDefinitionError` naming it: a clinic must know when its key is not
    in force, so it is never skipped."""
    found: dict[str, Instrument] = {}
    for path in sorted(Path(folder).glob("*.toml")):
        instrument = parse_instrument(path.read_text(encoding="utf-8"), str(path))
        found[instrument.id] = instrument
    return found


def installed() -> dict[str, Instrument]:
    """The instruments installed in the alliance home (``alliance instruments add``)."""
    return _installed_in(str(instruments_dir()))


def reload_installed() -> list[str]:
    """Read the installed files again (after one was added); returns their ids."""
    _installed_in.cache_clear()
    return sorted(installed())


def register(instrument: Instrument) -> None:
    """Use ``instrument`` in place of (or beside) the shipped definition with its id."""
    _overrides[instrument.id] = instrument


def unregister(instrument_id: str) -> None:
    """Drop an override so the shipped definition applies again."""
    _overrides.pop(instrument_id, None)


def get_instrument(instrument_id: str) -> Instrument:
    """The definition of one instrument (registered, else installed, else shipped)."""
    if instrument_id in _overrides:
        return _overrides[instrument_id]
    for source in (installed(), _shipped()):
        if instrument_id in source:
            return source[instrument_id]
    known = ", ".join(sorted({*_shipped(), *installed(), *_overrides}))
    raise UnknownInstrumentError(f"unknown instrument {instrument_id!r} (known: {known})")


def is_shipped(instrument_id: str) -> bool:
    """Whether the package ships a definition with this id (an installed file of the same
    id is then a key override; any other id adds a new instrument).

    >>> is_shipped("psq"), is_shipped("identity_rupture")
    (True, False)
    """
    return instrument_id in _shipped()


def list_instruments() -> list[Instrument]:
    """Every available instrument, sorted by id."""
    ids = sorted({*_shipped(), *installed(), *_overrides})
    return [get_instrument(i) for i in ids]


def alliance_measures() -> tuple[str, ...]:
    """Ids of the instruments whose ``role`` is ``"alliance"``, in monitoring order.

    Lower ``monitoring_order`` comes first (ties by id). Installed and registered
    instruments count; post-session questions and outcome measures do not.

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
