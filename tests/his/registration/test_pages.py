"""The registration form as a ward terminal uses it: session cookie, plain form posts, no JavaScript."""

from __future__ import annotations

import pytest

from his.registration.validators import AADHAAR_MESSAGE, verhoeff_digit
from tests.his.conftest import registration


@pytest.fixture
def ward(client, facilities):
    """The client signed in through the login form as nurse.igmc (the session cookie)."""
    r = client.post("/login", data={"username": "nurse.igmc", "password": "demo", "next": "/registration"},
                    follow_redirects=False)
    assert r.status_code == 303 and "himhis_session" in r.cookies
    return client


def test_signed_out_users_are_sent_to_login(client, facilities):
    for path in ("/registration", "/patients", "/patients/x"):
        r = client.get(path, headers={"accept": "text/html"}, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/login"), path
    r = client.post("/registration", data=registration(), headers={"accept": "text/html"}, follow_redirects=False)
    assert r.status_code == 303


def test_register_through_the_form(ward):
    page = ward.get("/registration")
    assert page.status_code == 200 and "<script" not in page.text
    r = ward.post("/registration", data=registration(), follow_redirects=False)
    assert r.status_code == 303
    banner = ward.get(r.headers["location"])
    assert banner.status_code == 200
    assert "IGMC-" in banner.text and "कमला देवी" in banner.text and "Kamla Devi" in banner.text


def test_mistakes_are_shown_beside_their_fields(ward):
    r = ward.post("/registration", data=registration(mobile="12345", abha="99"))
    assert r.status_code == 400
    assert 'id="mobile-error"' in r.text and 'id="abha-error"' in r.text and 'id="given-error"' not in r.text
    assert 'value="Kamla"' in r.text  # what was typed is kept


def test_an_aadhaar_number_is_refused_and_not_sent_back(ward):
    number = "5678901234" + "5"
    number += verhoeff_digit(number)
    r = ward.post("/registration", data=registration(abha=number))
    assert r.status_code == 400 and AADHAAR_MESSAGE.split(":")[0] in r.text and number not in r.text


def test_duplicates_then_register_anyway(ward):
    assert ward.post("/registration", data=registration(), follow_redirects=False).status_code == 303
    r = ward.post("/registration", data=registration(given="Kamala"), follow_redirects=False)
    assert r.status_code == 200 and "may already be registered" in r.text
    assert 'name="register_anyway" value="1"' in r.text and "same mobile number" in r.text
    r = ward.post("/registration", data={**registration(given="Kamala"), "register_anyway": "1"},
                  follow_redirects=False)
    assert r.status_code == 303


def test_a_role_that_cannot_register_is_refused(client, facilities):
    r = client.post("/login", data={"username": "auditor", "password": "demo"}, follow_redirects=False)
    assert r.status_code == 303
    r = client.get("/registration", headers={"accept": "text/html"})
    assert r.status_code == 403
