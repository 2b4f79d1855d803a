"""Instrument files for tests: a key a clinic might install."""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def keyed_calpas(folder: Path) -> Path:
    """A CALPAS file with a made-up key (not the licensed one): items 1-6, 7-12, 13-18,
    19-24 per scale."""
    shipped = (resources.files("alliance.instruments") / "data" / "calpas.toml").read_text()
    scales = [
        "patient_commitment",
        "patient_working_capacity",
        "therapist_understanding",
        "working_strategy_consensus",
    ]
    lines = []
    item = 0
    for line in shipped.splitlines():
        if line.startswith("number = "):
            item = int(line.split("=")[1])
        if line.startswith("scores = []"):
            line = f'scores = ["{scales[(item - 1) // 6]}"]'
        lines.append(line)
    key = folder / "calpas-key.toml"
    key.write_text("\n".join(lines))
    return key
