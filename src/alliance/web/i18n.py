"""Translations of the page chrome (gettext catalogues read with Babel).

The catalogues are the ``.po`` sources in ``web/locale/<lang>/LC_MESSAGES/messages.po``;
they are compiled in memory when first used, so a fresh clone with ``pip install -e .``
needs no build step and no compiled ``.mo`` can drift from its source.

The chrome language of a page is the template variable ``language`` when the page sets
one (the patient form uses the link's language), else the request's ``Accept-Language``
negotiated against the available catalogues, else English.

>>> display_name("de", "de")
'Deutsch'
>>> negotiate("de-CH,de;q=0.9,en;q=0.5")
'de'
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

from babel import Locale, UnknownLocaleError
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import NullTranslations, Translations
from jinja2 import Environment, pass_context
from jinja2.runtime import Context

LOCALE_DIR = Path(__file__).parent / "locale"
DEFAULT = "en"


def available() -> list[str]:
    """The chrome languages: English (the source strings) and every catalogue."""
    found = {p.parent.parent.name for p in LOCALE_DIR.glob("*/LC_MESSAGES/messages.po")}
    return sorted(found | {DEFAULT})


@cache
def translations(lang: str) -> NullTranslations:
    """The compiled catalogue of ``lang`` (English and unknown languages: the source text)."""
    po = LOCALE_DIR / lang / "LC_MESSAGES" / "messages.po"
    if lang == DEFAULT or not po.is_file():
        return NullTranslations()
    with po.open("rb") as fh:
        catalog = read_po(fh, locale=lang)
    buffer = io.BytesIO()
    write_mo(buffer, catalog)
    buffer.seek(0)
    return Translations(buffer)


def negotiate(accept_language: str | None) -> str:
    """The best available language for an ``Accept-Language`` header (English fallback)."""
    preferred: list[tuple[float, str]] = []
    for i, part in enumerate((accept_language or "").split(",")):
        tag, _, params = part.strip().partition(";")
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                continue
        if tag and tag != "*" and q > 0:
            preferred.append((-q + i * 1e-6, tag.replace("_", "-")))
    tags = [tag for _, tag in sorted(preferred)]
    found = Locale.negotiate(tags, available(), sep="-") if tags else None
    return str(found) if found else DEFAULT


def chrome_language(context: dict[str, Any] | Context) -> str:
    """The chrome language of a page being rendered with ``context``."""
    lang = context.get("language")
    if isinstance(lang, str) and lang in available():
        return lang
    request = context.get("request")
    header = request.headers.get("accept-language") if request is not None else None
    return negotiate(header)


def display_name(code: str, in_lang: str | None = None) -> str:
    """A language's name (in its own language unless ``in_lang`` is given), not its code."""
    try:
        name = Locale.parse(code.replace("-", "_")).get_display_name(
            Locale.parse((in_lang or code).replace("-", "_"))
        )
    except (ValueError, UnknownLocaleError):
        return code
    return name[:1].upper() + name[1:] if name else code


def N_(message: str) -> str:
    """Mark ``message`` for extraction; it is translated where it is shown."""
    return message


def gettext_for(lang: str, message: str) -> str:
    """``message`` translated into ``lang`` (for Python code outside templates)."""
    return translations(lang).gettext(message)


# The scoring core's rules (English, kept so in the API), as catalogue entries with their
# numbers as parameters; a rule not listed is shown as it is.
RULES: list[tuple[re.Pattern[str], str]] = [
    (
        re.compile(r"outside the scale (?P<low>\S+)\.\.(?P<high>\S+)"),
        N_("outside the scale %(low)s..%(high)s"),
    ),
    (re.compile(r"not a whole number"), N_("not a whole number")),
    (re.compile(r"not a multiple of (?P<step>\S+)"), N_("not a multiple of %(step)s")),
    (re.compile(r"not a number"), N_("not a number")),
    (re.compile(r"answered although not asked"), N_("answered although not asked")),
]


def translate_rule(lang: str, rule: str) -> str:
    """A validation rule of the scoring core in ``lang``.

    >>> translate_rule("de", "outside the scale 1..5")
    'außerhalb der Skala von 1 bis 5'
    """
    for pattern, message in RULES:
        found = pattern.fullmatch(rule)
        if found:
            return gettext_for(lang, message) % found.groupdict()
    return rule


def issue_message(lang: str, number: int | None, field: str, value: str, rule: str) -> str:
    """The patient's message for one broken rule, naming the question, in ``lang``."""
    where = gettext_for(lang, N_("Question %(number)s")) % {"number": number} if number else field
    text = translate_rule(lang, rule)
    if value in ("", "nan", "None"):
        return gettext_for(lang, N_("%(where)s: %(rule)s.")) % {"where": where, "rule": text}
    return gettext_for(lang, N_("%(where)s: %(rule)s (you gave %(value)s).")) % {
        "where": where,
        "rule": text,
        "value": repr(value),
    }


def field_issue_message(lang: str, issue: Any, questions: Mapping[str, Any]) -> str:
    """:func:`issue_message` for a :class:`~alliance.web.forms.FieldIssue` of a form whose
    questions (by field name) give the question number; chrome English if ``lang`` has
    no catalogue."""
    question = questions.get(issue.field)
    chrome = lang if lang in available() else DEFAULT
    number = question.number if question else None
    return issue_message(chrome, number, issue.field, issue.value, issue.rule)


@pass_context
def _gettext(context: Context, message: str) -> str:
    return translations(chrome_language(context)).gettext(message)


@pass_context
def _ngettext(context: Context, singular: str, plural: str, n: int) -> str:
    return translations(chrome_language(context)).ngettext(singular, plural, n)


@pass_context
def _chrome_language(context: Context) -> str:
    return chrome_language(context)


def install(env: Environment) -> None:
    """Enable ``{% trans %}`` and ``_()`` in ``env``, translated per page."""
    env.add_extension("jinja2.ext.i18n")
    env.install_gettext_callables(  # type: ignore[attr-defined]
        _gettext, _ngettext, newstyle=True
    )
    env.globals["chrome_language"] = _chrome_language
    env.globals["language_name"] = display_name
