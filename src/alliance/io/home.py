"""Installing into the alliance folder (:mod:`alliance.home`): instrument files, written
atomically."""

from __future__ import annotations

import os
from pathlib import Path

from alliance.home import instruments_dir
from alliance.instruments import InstrumentDefinitionError, parse_instrument, reload_installed


def install_instrument(source: Path) -> str:
    """Validate an instrument file and install it; returns its id.

    A file with a shipped id becomes a key override; any other id adds a new instrument.
    Nothing is written unless the whole file is valid.
    """
    try:
        text = source.read_text(encoding="utf-8")
    except OSError as exc:
        raise InstrumentDefinitionError(f"{source}: cannot be read: {exc.strerror}") from None
    instrument = parse_instrument(text, str(source))
    target = instruments_dir() / f"{instrument.id}.toml"
    atomic_write(target, text)
    reload_installed()
    return instrument.id


def atomic_write(target: Path, text: str) -> None:
    """Write via a temporary file and rename, so a crash never leaves half a file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_suffix(target.suffix + ".tmp")
    with temporary.open("w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, target)
