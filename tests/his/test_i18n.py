"""The translation layer: every label on the main screens has its Hindi, and the language is chosen per
request (cookie, then Accept-Language) without affecting other requests."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from jinja2 import Environment

from himhis import i18n
from his.mpi.service import IDENTIFIER_LABELS
from his.registration.routes import GENDER_CHOICES

ROOT = Path(__file__).resolve().parents[2]
MAIN_SCREENS = [ROOT / "identity/templates/login.html", *sorted((ROOT / "himhis/templates").glob("*.html")),
                *sorted((ROOT / "his/templates").glob("*.html"))]
_MACRO_LABEL = re.compile(r'field\("\w+", "([^"]+)"(?:, "([^"]+)")?')


def labels(path: Path) -> set[str]:
    """The constant strings a template passes to ``_`` and the labels and hints of its form fields."""
    source = path.read_text(encoding="utf-8")
    found = {message for _, _, message in Environment(extensions=["jinja2.ext.i18n"]).extract_translations(source)
             if isinstance(message, str)}
    for label, hint in _MACRO_LABEL.findall(source):
        found |= {label, hint} - {""}
    return found


@pytest.mark.parametrize("path", MAIN_SCREENS, ids=lambda p: f"{p.parent.parent.name}/{p.name}")
def test_every_label_of_the_main_screens_has_hindi(path):
    hindi = i18n.catalogue("hi")
    missing = sorted(m for m in labels(path) if m not in hindi)
    assert not missing, f"{path.name}: no Hindi for {missing}"


def test_labels_made_in_code_have_hindi():
    hindi = i18n.catalogue("hi")
    made = {text for _, text in GENDER_CHOICES} | set(IDENTIFIER_LABELS.values()) - {"UHID"}
    made |= {"Sign in to HimHIS", "Sign-in failed"}
    assert sorted(made - hindi.keys()) == []


def test_the_screens_mark_their_labels():
    """A template that shows words must pass them through the translation layer."""
    for path in MAIN_SCREENS:
        if path.name == "base.html":  # the frame: markup only
            continue
        assert labels(path), f"{path.name} has no translated label"


@pytest.mark.parametrize(("cookie", "accept", "expected"), [
    (None, None, "en"), (None, "hi-IN,hi;q=0.9,en;q=0.8", "hi"), (None, "fr-FR, en;q=0.5", "en"),
    ("en", "hi", "en"), ("hi", "en-GB", "hi"), ("xx", "hi", "hi"), (None, "de, fr", "en")])
def test_the_locale_of_a_request(cookie, accept, expected):
    assert i18n.choose(cookie, accept) == expected


def test_an_untranslated_label_shows_in_english(monkeypatch):
    token = i18n._locale.set("hi")
    try:
        assert i18n.gettext("Find a patient") == "मरीज़ खोजें"
        assert i18n.gettext("A label nobody translated") == "A label nobody translated"
    finally:
        i18n._locale.reset(token)
    assert i18n.gettext("Find a patient") == "Find a patient"


def test_pages_in_hindi_by_cookie_or_browser_language(client, facilities):
    r = client.post("/login", data={"username": "nurse.igmc", "password": "demo"})
    assert r.status_code in (200, 303)
    english = client.get("/patients")
    assert english.status_code == 200 and "Find a patient" in english.text and 'lang="en"' in english.text
    browser = client.get("/patients", headers={"Accept-Language": "hi-IN,hi;q=0.9"})
    assert "मरीज़ खोजें" in browser.text and 'lang="hi"' in browser.text

    switch = client.get("/lang/hi", headers={"Referer": "http://testserver/registration"}, follow_redirects=False)
    assert switch.status_code == 303 and switch.headers["location"] == "http://testserver/registration"
    assert "himhis_lang=hi" in switch.headers["set-cookie"]
    page = client.get("/registration")
    assert "मरीज़ का पंजीकरण" in page.text and "जन्म तिथि" in page.text and "Register a patient" not in page.text
    assert 'href="/lang/en"' in page.text, "the way back to English is offered"

    back = client.get("/lang/en", headers={"Referer": "https://elsewhere.example/phish"}, follow_redirects=False)
    assert back.headers["location"] == "/", "only a page of this server is a place to go back to"
    assert "Find a patient" in client.get("/patients").text


def test_an_unknown_language_is_refused(client):
    r = client.get("/lang/xx", follow_redirects=False)
    assert r.status_code == 404 and "hi" in r.text


def test_the_sign_in_page_follows_the_language(client):
    page = client.get("/login", headers={"Accept-Language": "hi"})
    assert page.status_code == 200 and "उपयोगकर्ता नाम" in page.text and "HimHIS में साइन इन करें" in page.text
