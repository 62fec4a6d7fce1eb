"""The registration form in a real browser (Debian's Chromium driven by Playwright), JavaScript off.

Skips where Playwright or /usr/bin/chromium is not installed (``apt-get install chromium``,
``pip install playwright``; no browser is ever downloaded), except under CI=true, where it fails.
"""

from __future__ import annotations

import shutil

import pytest

from tests.conftest import IN_CI
from tests.his.conftest import registration

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture
def page(live_server, facilities):
    missing = None
    try:
        from playwright import sync_api
    except ImportError:
        missing = "Playwright for Python is not installed (make install brings it)"
    if missing is None and shutil.which(CHROMIUM) is None:
        missing = f"Chromium is not installed at {CHROMIUM} (apt-get install chromium; .ci/run does)"
    if missing:
        if IN_CI:
            pytest.fail(f"CI=true requires the browser tests to run: {missing}")
        pytest.skip(missing)
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        context = browser.new_context(java_script_enabled=False, base_url=live_server)
        page = context.new_page()
        page.goto("/login?next=/registration")
        page.fill("#username", "nurse.igmc")
        page.fill("#password", "demo")
        page.click("button[type=submit]")
        page.wait_for_url("**/registration")
        yield page
        browser.close()


def fill(page, form: dict) -> None:
    for name, value in form.items():
        if name == "gender":
            page.select_option("#gender", value)
        elif name == "birth_date":
            page.fill("#birth_date", value)
        else:
            page.fill(f"#{name}", value)


def test_register_see_the_duplicate_and_register_anyway(page):
    fill(page, registration())
    page.click("button.primary")
    page.wait_for_url("**/patients/*")
    uhid = page.inner_text(".uhid")
    assert uhid.startswith("IGMC-") and "कमला देवी" in page.content()

    page.goto("/registration")
    fill(page, registration(given="Kamala", name_devanagari=""))
    page.click("button.primary")
    assert "may already be registered" in page.content()
    assert uhid in page.inner_text("section.error table")
    page.click("text=register as a new patient anyway")
    page.wait_for_url("**/patients/*")
    assert page.inner_text(".uhid").endswith("-000002")


def test_mistakes_appear_beside_the_fields(page):
    fill(page, registration(mobile="12345"))
    page.click("button.primary")
    assert "10 digits" in page.inner_text("#mobile-error")
    assert page.input_value("#given") == "Kamla"
