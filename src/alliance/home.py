"""The alliance folder: what a clinic or researcher installs (instrument keys, text packs)
and the clinic's default SQLite file and secret key.

``$ALLIANCE_HOME``, or ``~/.local/share/alliance`` when unset. A leaf module (no imports
from the package), so that every layer, the instrument library included, can find it.

>>> instruments_dir() == alliance_home() / "instruments"
True
"""

from __future__ import annotations

import os
from pathlib import Path


def alliance_home() -> Path:
    """The folder that holds what a clinic installs (created on first write)."""
    configured = os.environ.get("ALLIANCE_HOME")
    return Path(configured) if configured else Path.home() / ".local" / "share" / "alliance"


def instruments_dir() -> Path:
    """Where ``alliance instruments add`` installs instrument files."""
    return alliance_home() / "instruments"
