"""The page chrome in German: the catalogue is complete, the patient form follows the link's
language, clinician pages follow Accept-Language, and patients see no admin command."""

from __future__ import annotations

import re
from pathlib import Path

from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po
from webclinic import Browser, Clinic, full_answers, login, new_link

from alliance.store import repo
from alliance.web import i18n

ROOT = Path(__file__).resolve().parents[2]
WEB = ROOT / "src" / "alliance" / "web"
METHODS = [("**/templates/**.html", "jinja2"), ("**.py", "python")]
OPTIONS = {"**/templates/**.html": {"extensions": "jinja2.ext.i18n"}}
KEYWORDS = {"_": None, "gettext": None, "ngettext": (1, 2), "N_": None}


def _source_msgids() -> set[str]:
    found = extract_from_dir(
        str(WEB), METHODS, keywords=KEYWORDS, options_map=OPTIONS, comment_tags=()
    )
    return {m[2] if isinstance(m[2], str) else m[2][0] for m in found}


def test_german_catalogue_covers_every_source_string() -> None:
    msgids = _source_msgids()
    assert len(msgids) > 30  # the extraction found the templates and the Python strings
    with (WEB / "locale" / "de" / "LC_MESSAGES" / "messages.po").open("rb") as fh:
        catalog = read_po(fh, locale="de")
    translated = {
        m.id if isinstance(m.id, str) else m.id[0]  # a plural entry: by its singular
        for m in catalog
        if m.id and all(m.string if isinstance(m.string, tuple) else [m.string]) and not m.fuzzy
    }
    assert sorted(msgids - translated) == []


def test_language_names_and_negotiation() -> None:
    assert i18n.display_name("de") == "Deutsch"
    assert i18n.display_name("en", "de") == "Englisch"
    assert i18n.negotiate("de-AT,de;q=0.8,en;q=0.5") == "de"
    assert i18n.negotiate("fr-FR,en;q=0.1") == "en"
    assert i18n.negotiate("fr") == "en"
    assert i18n.negotiate(None) == "en"


def test_patient_form_in_german(sqlite_clinic: Clinic) -> None:
    token = new_link(sqlite_clinic)
    browser = Browser(sqlite_clinic.app)
    page = browser.get(f"/f/{token}?lang=de")
    assert page.status_code == 200
    assert '<html lang="de">' in page.text
    assert "Meine Antworten senden" in page.text
    assert "Es gibt keine richtigen oder falschen Antworten" in page.text
    # no German wording installed: the item descriptions are English and say so
    assert re.search(r'<section class="instrument" lang="en"', page.text)
    assert "Offizieller Wortlaut nicht installiert." in page.text
    assert "alliance instruments" not in page.text and "text-pack" not in page.text
    done = browser.post(f"/f/{token}", {**full_answers(), "lang": "de"})
    assert done.status_code == 200, done.text
    assert '<html lang="de">' in done.text and "Vielen Dank" in done.text


def test_patient_errors_in_german(sqlite_clinic: Clinic) -> None:
    token = new_link(sqlite_clinic)
    browser = Browser(sqlite_clinic.app)
    browser.get(f"/f/{token}?lang=de")
    browser.csrf = "forged"
    page = browser.post(f"/f/{token}", {**full_answers(), "lang": "de"})
    assert page.status_code == 403
    assert "Das Formular ist abgelaufen" in page.text
    assert "es wurde noch nichts gespeichert" in page.text


def test_patient_form_english_by_default(sqlite_clinic: Clinic) -> None:
    token = new_link(sqlite_clinic)
    page = Browser(sqlite_clinic.app).get(f"/f/{token}")
    assert '<html lang="en">' in page.text and "Send my answers" in page.text


def test_link_problem_in_german(sqlite_clinic: Clinic) -> None:
    page = Browser(sqlite_clinic.app).get("/f/nope", headers={"Accept-Language": "de"})
    assert page.status_code == 404
    assert "Dieser Link ist nicht gültig." in page.text


def test_clinician_pages_follow_accept_language(sqlite_clinic: Clinic) -> None:
    browser = Browser(sqlite_clinic.app)
    german = browser.get("/login", headers={"Accept-Language": "de-DE,de;q=0.9"})
    assert '<html lang="de">' in german.text
    assert "Benutzername" in german.text and "Anmelden" in german.text
    english = browser.get("/login", headers={"Accept-Language": "fr"})
    assert '<html lang="en">' in english.text and "Username" in english.text


def test_patient_validation_messages_in_german(sqlite_clinic: Clinic) -> None:
    token = new_link(sqlite_clinic)
    browser = Browser(sqlite_clinic.app)
    browser.get(f"/f/{token}?lang=de")
    page = browser.post(f"/f/{token}", {**full_answers(), "wai_sr_1": "9", "lang": "de"})
    assert page.status_code == 422
    assert "Frage 1: außerhalb der Skala von 1 bis 5 (Ihre Angabe: " in page.text
    english = browser.post(f"/f/{token}", {**full_answers(), "wai_sr_1": "9", "lang": "en"})
    assert "Question 1: outside the scale 1..5 (you gave " in english.text


# The API reference renders the OpenAPI contract, which is English; the whole page says so
# with lang="en" (a developer page, not clinician chrome).
ENGLISH_BY_DESIGN = {"api_docs.html"}
NOT_WORDS = {"alliance", "UTC"}  # the product name and the time zone stay as they are


def _literal_text(template: str) -> tuple[list[str], list[str]]:
    """Words a template shows that do not pass through the catalogue, and attributes
    (aria-label, alt, title, placeholder) with literal words."""
    text = re.sub(r"\{#.*?#\}", "", template, flags=re.S)
    attributes = re.findall(r'\b(?:aria-label|alt|title|placeholder)="([^"{]*[A-Za-z][^"]*)"', text)
    text = re.sub(r"\{%.*?%\}|\{\{.*?\}\}", " ", text, flags=re.S)
    text = re.sub(r"<[^>]*>", " ", text)
    words = [w for w in re.findall(r"[A-Za-zÄÖÜäöüß]{2,}", text) if w not in NOT_WORDS]
    return words, attributes


def test_every_visible_template_text_goes_through_the_catalogue() -> None:
    templates = sorted((WEB / "templates").glob("*.html"))
    assert len(templates) > 10
    untranslated = {
        t.name: found
        for t in templates
        if t.name not in ENGLISH_BY_DESIGN and any(found := _literal_text(t.read_text()))
    }
    assert untranslated == {}
    words, attributes = _literal_text(
        '<p>{{ _("Fine") }} Forgotten <b>x y</b></p><img alt="a chart">'
    )
    assert words == ["Forgotten"] and attributes == ["a chart"]  # the check itself can fail


GERMAN = {"Accept-Language": "de-DE,de;q=0.9"}


def test_clinician_pages_in_german(sqlite_clinic: Clinic) -> None:
    pages = {
        "t1": {
            "/caseload": ["Fallübersicht", "1 Patient:in:", "Neue Sitzung"],
            f"/patients/{sqlite_clinic.patients['p1']}": [
                "Patient:in CODE-P1",
                "Offene Hinweise",
                "Sprache: Englisch.",
                "Brüche und Reparaturen",
            ],
        },
        "admin": {
            "/admin": ["Verwaltung der Klinik", "Rolle wählen", "res deaktivieren", "Deutsch"],
            "/admin/audit": ["Prüfprotokoll"],
        },
        "sup1": {"/supervision": ["Teamübersicht", "Reparaturrate"]},
        "res": {"/export": ["De-identifizierter Forschungsexport"]},
    }
    for username, shown in pages.items():
        browser = login(sqlite_clinic.app, username)
        for url, phrases in shown.items():
            page = browser.get(url, headers=GERMAN)
            assert page.status_code == 200, url
            assert '<html lang="de">' in page.text, url
            for phrase in phrases:
                assert phrase in page.text, (url, phrase)
            english = browser.get(url).text
            assert '<html lang="en">' in english and phrases[0] not in english, url


def test_therapist_form_errors_in_german(sqlite_clinic: Clinic) -> None:
    with sqlite_clinic.db.write() as s:
        patient = repo.get_patient(s, sqlite_clinic.patients["p1"])
        session_id = repo.create_session(s, patient, None).id
    therapist = login(sqlite_clinic.app, "t1")
    url = f"/sessions/{session_id}/therapist-form"
    therapist.get(url, headers=GERMAN)
    page = therapist.post(url, {"psq_1": "2"}, headers=GERMAN)
    assert page.status_code == 422
    assert "Bitte prüfen Sie diese Antworten" in page.text
    assert "Frage 1: außerhalb der Skala von 0 bis 1" in page.text
