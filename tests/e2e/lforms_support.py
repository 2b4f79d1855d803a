"""A FHIR R4 Questionnaire rendered by LHC-Forms (npm ``lforms``, the US NLM's FHIR form
renderer) in Debian's Chromium, filled in like a user, and the QuestionnaireResponse that
LHC-Forms itself exports.

LHC-Forms is a pinned npm package (package.json; ``make test`` installs it). Its ``dist``
folder and a small host page are served on 127.0.0.1; the browser context aborts every
other request (and records it in ``blocked_requests``), so nothing comes from a CDN.

    with LFormsPage(browser) as form:
        form.render(questionnaire)
        form.fill({"a1": "3", "yn": "Y"})
        form.visible_link_ids()   # items shown now (enableWhen)
        form.item_value("total")  # a calculatedExpression's shown value, e.g. "7"
        form.response()           # {"resourceType": "QuestionnaireResponse", ...}
"""

from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout

ROOT = Path(__file__).resolve().parents[2]
LFORMS_DIST = ROOT / "node_modules" / "lforms" / "dist" / "lforms"
LFORMS_MAIN = LFORMS_DIST / "webcomponent" / "main.js"  # the Makefile's $(LFORMS) stamp
HOST_PATH = "/__lforms_host.html"
CONTAINER = "lforms-host"
EXPRESSION_FAILURES = ("Run of expressions failed", "input collection contains multiple items")
CHOICE_TYPES = {"CODING", "CNE", "CWE"}  # LHC-Forms' data types of choice/open-choice/coding

# The files and load order of the package's README ("Using the LHC-Forms Web Component");
# the FHIR support library is added once window.LForms.Util exists.
HOST_PAGE = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>LHC-Forms harness</title>
<link rel="stylesheet" href="/webcomponent/styles.css">
<script src="/webcomponent/assets/lib/zone.min.js"></script>
<script src="/webcomponent/runtime.js" type="module"></script>
<script src="/webcomponent/polyfills.js" type="module"></script>
<script src="/webcomponent/main.js" type="module"></script>
</head><body><div id="{CONTAINER}"></div></body></html>
""".encode()

# Resolves once LHC-Forms is idle: no FHIRPath run (calculatedExpression, enableWhen
# expressions, variables) in progress or pending, and a few quiet timer turns and frames
# for Angular to render the result.
SETTLE_JS = """async (container) => {
  const sleep = ms => new Promise(r => setTimeout(r, ms));
  const el = document.getElementById(container);
  let quiet = 0;
  for (let i = 0; i < 500 && quiet < 3; i++) {
    await sleep(15);
    const form = LForms.Util._getFormObjectInScope(el);
    const ep = form && form._expressionProcessor;
    if (ep && (ep._currentRunPromise || ep._pendingRun)) {
      quiet = 0;
      try { await ep._currentRunPromise; } catch (e) { /* reported on the console */ }
    } else {
      quiet += 1;
    }
  }
  await new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)));
}"""

RENDER_JS = """async ([q, container, options]) => {
  const el = document.getElementById(container);
  const timeout = new Promise((_, reject) =>
    setTimeout(() => reject(['no onFormReady within 30 s']), 30000));
  try {
    await Promise.race([LForms.Util.addFormToPage(q, el, options), timeout]);
  } catch (e) {
    return Array.isArray(e) ? e.map(String) : [String((e && e.message) || e)];
  }
  return null;
}"""

# LHC-Forms' own model of the rendered form: one row per item (and per repetition).
ITEMS_JS = """(container) => {
  const form = LForms.Util._getFormObjectInScope(document.getElementById(container));
  if (!form) return null;
  return form.itemList.map(item => {
    const box = document.getElementById('item-' + item._elementId);
    return {
      linkId: item.linkId,
      elementId: item._elementId,
      dataType: item.dataType,
      layout: (item.displayControl && item.displayControl.answerLayout &&
               item.displayControl.answerLayout.type) || null,
      repeats: !!(item.answerCardinality && item.answerCardinality.max === '*'),
      answers: Array.isArray(item.answers) ? item.answers.map(a => ({
        code: a.code === undefined ? null : String(a.code),
        text: a.text === undefined ? null : String(a.text),
        system: a.system || null})) : null,
      shown: !!(box && box.checkVisibility()),
    };
  });
}"""


class LFormsError(AssertionError):
    """LHC-Forms did not render the Questionnaire (its own messages and console lines)."""


class _Handler(http.server.SimpleHTTPRequestHandler):
    """The lforms dist folder, plus the host page at HOST_PATH."""

    def do_GET(self) -> None:
        if self.path.split("?")[0] == HOST_PATH:
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(HOST_PAGE)))
            self.end_headers()
            self.wfile.write(HOST_PAGE)
            return
        super().do_GET()

    def log_message(self, format: str, *args: Any) -> None:  # quiet test output
        pass


class LFormsPage:
    """A Chromium page with LHC-Forms loaded from node_modules; a context manager.

    ``browser`` is a Playwright Browser (the ``browser`` fixture of conftest.py). Skips the
    test when lforms is not installed. ``fhir_version`` picks the FHIR support library
    (fhir/<version>/lformsFHIR.min.js) and is passed to addFormToPage, since LHC-Forms
    otherwise guesses the version from the content (an item of type "coding" makes it
    guess R5, and with only the R4 library loaded it then renders an empty form).
    """

    def __init__(self, browser: Any, fhir_version: str = "R4") -> None:
        self.browser = browser
        self.fhir_version = fhir_version
        self.blocked_requests: list[str] = []  # anything not from the local server
        self.console: list[str] = []  # the page's console lines and uncaught errors
        self.page: Any = None
        self._context: Any = None
        self._server: http.server.ThreadingHTTPServer | None = None
        self._items: list[dict[str, Any]] = []

    # --- lifecycle -------------------------------------------------------------------

    def __enter__(self) -> LFormsPage:
        fhir_lib = LFORMS_DIST / "fhir" / self.fhir_version / "lformsFHIR.min.js"
        if not (LFORMS_MAIN.exists() and fhir_lib.exists()):
            pytest.skip(f"LHC-Forms not installed ({LFORMS_MAIN}): run `make test` (npm ci)")
        handler = functools.partial(_Handler, directory=str(LFORMS_DIST))
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        base = f"http://127.0.0.1:{self._server.server_address[1]}"
        try:
            self._context = self.browser.new_context()
            self._context.route("**/*", functools.partial(self._route, base))
            self.page = self._context.new_page()
            self.page.on("console", lambda m: self.console.append(f"{m.type}: {m.text}"))
            self.page.on("pageerror", lambda e: self.console.append(f"pageerror: {e}"))
            self.page.goto(base + HOST_PATH)
            self.page.wait_for_function("() => window.LForms && window.LForms.Util")
            self.page.add_script_tag(url=f"{base}/fhir/{self.fhir_version}/lformsFHIR.min.js")
            self.page.wait_for_function(
                "v => window.LForms.FHIR && window.LForms.FHIR[v]", arg=self.fhir_version
            )
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._context is not None:
            self._context.close()
            self._context = None
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def _route(self, base: str, route: Any) -> None:
        url = route.request.url
        if url == base or url.startswith(base + "/"):
            route.continue_()
        else:
            self.blocked_requests.append(url)
            route.abort()

    # --- the form --------------------------------------------------------------------

    def render(self, questionnaire: Mapping[str, Any]) -> None:
        """Render ``questionnaire`` (FHIR JSON) with LForms.Util.addFormToPage and wait
        until its expressions have run; raise LFormsError with LHC-Forms' messages if it
        reports an error or renders no item."""
        self.console.clear()
        errors = self.page.evaluate(
            RENDER_JS, [dict(questionnaire), CONTAINER, {"fhirVersion": self.fhir_version}]
        )
        if errors:
            raise LFormsError(f"LHC-Forms could not render the form: {errors}; {self.console}")
        self._settle()
        rendered = self.page.locator(f"#{CONTAINER} lhc-item").count()
        if not self._items or not rendered:
            raise LFormsError(f"LHC-Forms rendered no item; console: {self.console}")

    def fill(self, answers: Mapping[str, object]) -> None:
        """Answer the items given by linkId, in order, through the rendered controls.

        - choice/open-choice/coding (answerOption valueCoding): the option whose code or
          display equals ``str(value)`` (or a dict with "code", optionally "system"); a
          list or tuple for a repeating item (added to what is selected; nothing is
          unselected). Drop-down lists (LHC-Forms' default) are
          opened by clicking the field and the option clicked in the list; radio buttons
          and check boxes (itemControl) are clicked.
        - integer, decimal (and string, text, date ...): typed into the field.
        - boolean: True/False/None click the Yes/No/Not Answered radio button.

        Only items currently shown can be answered (ValueError otherwise); the first shown
        repetition of a linkId is used.
        """
        for link_id, value in answers.items():
            item = self._item(link_id)
            if item["dataType"] in CHOICE_TYPES:
                values = list(value) if isinstance(value, list | tuple) else [value]
                for v in values:
                    self._choose(item, self._answer_index(item, v))
            elif item["dataType"] == "BL":
                key = "null" if value is None else str(bool(value)).lower()
                self.page.locator(f'[id="{item["elementId"]}|{key}"]').click()
            elif item["dataType"] == "SECTION":
                raise ValueError(f"{link_id} is a group: answer its items")
            else:
                field = self.page.locator(f'input[id="{item["elementId"]}"]')
                field.fill("" if value is None else str(value))
                field.blur()  # LHC-Forms validates and reruns expressions on change
            self._settle()

    def response(self, subject: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """LForms.Util.getFormFHIRData('QuestionnaireResponse', <version>, the form), with
        ``subject`` (a resource, e.g. a Patient) as LHC-Forms' subject option."""
        self._settle()
        qr: dict[str, Any] = self.page.evaluate(
            """([version, container, subject]) => LForms.Util.getFormFHIRData(
                 'QuestionnaireResponse', version, document.getElementById(container),
                 subject ? {subject: subject} : {})""",
            [self.fhir_version, CONTAINER, None if subject is None else dict(subject)],
        )
        return qr

    def visible_link_ids(self) -> list[str]:
        """The linkIds of the items (groups included) shown now, in form order; items that
        enableWhen disables are not in the page at all."""
        self._settle()
        shown = [i["linkId"] for i in self._items if i["shown"]]
        return list(dict.fromkeys(shown))

    def item_value(self, link_id: str) -> str:
        """The value an item shows now, as text ("" when empty): the field's text (for a
        calculatedExpression item, the computed number; for a drop-down, the display), or
        the labels of the checked radio buttons/check boxes."""
        self._settle()
        item = self._item(link_id)
        eid = item["elementId"]
        tokens = self._tokens(eid)
        if tokens:  # a repeating drop-down: its selections are shown beside the field
            return ", ".join(tokens)
        field = self.page.locator(f'input[id="{eid}"]')
        if field.count():
            return str(field.input_value())
        checked = self.page.locator(f'label[id^="{eid}|"]:has(input:checked)')
        return ", ".join(t.strip() for t in checked.all_inner_texts())

    def expression_errors(self) -> list[str]:
        """FHIRPath failures since render() (first line each). LHC-Forms only logs them to
        the console and leaves the item's value as it was (often empty): a syntax error,
        or a function given a collection where it takes one item (e.g. toDecimal() on the
        answers of two items; use select(code.toDecimal()) instead)."""
        found = []
        for line in self.console:
            text = line.split(": ", 1)[-1]
            if text.startswith("Error") or any(m in text for m in EXPRESSION_FAILURES):
                found.append(text.splitlines()[0])
        return found

    # --- internals -------------------------------------------------------------------

    def _settle(self) -> None:
        self.page.evaluate(SETTLE_JS, CONTAINER)
        self._items = self.page.evaluate(ITEMS_JS, CONTAINER) or []

    def _tokens(self, eid: str) -> list[str]:
        """The selections of a repeating drop-down (each an <li> with a remove button)."""
        tokens: list[str] = self.page.evaluate(
            """eid => {
              const box = document.getElementById('item-' + eid);
              const lis = box ? box.querySelectorAll('.autocomp_selected li') : [];
              return [...lis].map(li => [...li.childNodes]
                .filter(n => n.nodeType === Node.TEXT_NODE)
                .map(n => n.textContent).join('').trim());
            }""",
            eid,
        )
        return tokens

    def _item(self, link_id: str) -> dict[str, Any]:
        rows = [i for i in self._items if i["linkId"] == link_id]
        if not rows:
            raise KeyError(f"no item {link_id!r} in the rendered form")
        shown = [i for i in rows if i["shown"]]
        if not shown:
            raise ValueError(f"item {link_id!r} is not shown (enableWhen?)")
        return shown[0]

    @staticmethod
    def _answer_index(item: dict[str, Any], value: object) -> int:
        options = item["answers"] or []
        if isinstance(value, Mapping):
            for n, a in enumerate(options):
                if a["code"] == str(value["code"]) and value.get("system") in (None, a["system"]):
                    return n
        else:
            for key in ("code", "text"):
                for n, a in enumerate(options):
                    if a[key] == str(value):
                        return n
        known = [(a["code"], a["text"]) for a in options]
        raise ValueError(f"{item['linkId']}: no answer option {value!r} among {known}")

    def _choose(self, item: dict[str, Any], index: int) -> None:
        eid = item["elementId"]
        if item["layout"] == "RADIO_CHECKBOX":
            # one label per answer option, in answerOption order: id "<eid>|<system>|<code>"
            option = self.page.locator(f'label[id^="{eid}|"]').nth(index)
            if not (item["repeats"] and option.locator("input").is_checked()):
                option.click()  # (a check box click would otherwise uncheck it)
            return
        # LHC-Forms' default: an autocomplete drop-down ("Select one"); focusing the field
        # lists the options, each <li> carrying its index in the full answer list.
        text = str(item["answers"][index]["text"] or "")
        if item["repeats"] and text in self._tokens(eid):
            return  # already selected (and so no longer in the list)
        field = self.page.locator(f'input[id="{eid}"]')
        field.click()
        option = self.page.locator(f"#lhc-tools-searchResults li[autocomprawlistindex='{index}']")
        try:
            option.wait_for(state="visible", timeout=3000)
        except PlaywrightTimeout:  # a long list shows only its first options: type to find
            field.fill("")
            field.press_sequentially(text)
        option.click()
        field.blur()
