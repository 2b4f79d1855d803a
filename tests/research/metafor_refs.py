"""The metafor reference values the meta-analysis tests compare against, loaded once.

Files in ``tests/data/meta`` (provenance in their README and in the R script beside
``metafor_extra.json``): ``COMPUTED`` and ``TIGHT`` (metafor at its default and at a tight
convergence threshold), ``EXTRA`` (further metafor outputs) and ``UPSTREAM`` (expectations
from metafor's own test suite, by case id).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

DATA = Path(__file__).parents[1] / "data" / "meta"


def _json(name: str) -> Any:
    return json.loads((DATA / name).read_text())


COMPUTED = _json("metafor_computed.json")
TIGHT = _json("metafor_computed_tight.json")
EXTRA = _json("metafor_extra.json")
UPSTREAM = {c["id"]: c for c in _json("metafor_upstream_test_expectations.json")["cases"]}
