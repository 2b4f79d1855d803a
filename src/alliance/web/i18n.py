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
