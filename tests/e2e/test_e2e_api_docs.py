"""The API reference at /api/docs in a real browser: readable without JavaScript, no CSP
violation, and accessible (axe-core)."""

from __future__ import annotations

from typing import Any

from e2e_support import Server
from test_e2e_accessibility import AXE, violations


def test_api_docs_render_and_pass_axe(server: Server, browser: Any) -> None:
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.goto(server.url + "/api/docs")
    heading = page.get_by_role("heading", name="POST /api/v1/links/{token}/responses")
    assert heading.is_visible()
    assert not [p for p in problems if "Content Security Policy" in p], problems
    context.close()
    axe = browser.new_context(bypass_csp=True)  # axe-core is injected as an inline script
    page = axe.new_page()
    page.goto(server.url + "/api/docs")
    assert violations(page) == [], AXE
    axe.close()
