"""The worked-example pages (docs/multilevel.md, psychometrics.md, fhir.md, scale.md):
every Python block runs, from the repository root, and prints what the text block after it
shows (doctest's matching: ``...`` stands for any text, runs of whitespace are one)."""

from __future__ import annotations

import contextlib
import doctest
import io
import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
BLOCK = re.compile(r"```(python|text)\n(.*?)```", re.S)


@pytest.mark.parametrize(
    ("page", "least"),
    [("multilevel.md", 5), ("psychometrics.md", 3), ("fhir.md", 3), ("scale.md", 2)],
)
def test_page_runs_and_prints_what_it_shows(page: str, least: int) -> None:
    blocks = BLOCK.findall((ROOT / "docs" / page).read_text(encoding="utf-8"))
    checker, flags = doctest.OutputChecker(), doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    namespace: dict[str, object] = {}
    here = Path.cwd()
    os.chdir(ROOT)
    try:
        ran = 0
        for i, (kind, body) in enumerate(blocks):
            if kind != "python":
                continue
            printed = io.StringIO()
            with contextlib.redirect_stdout(printed):
                exec(compile(body, f"docs/{page} block {i}", "exec"), namespace)
            ran += 1
            following = blocks[i + 1] if i + 1 < len(blocks) else None
            if following and following[0] == "text" and not following[1].startswith("alliance "):
                want, got = following[1], printed.getvalue()
                assert checker.check_output(want, got, flags), f"block {i} printed:\n{got}"
    finally:
        os.chdir(here)
    assert ran >= least
