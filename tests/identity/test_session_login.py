"""Ward UI sign-in: the development form, the session cookie, logout, ``next``, and Keycloak's code flow."""

from __future__ import annotations

import html
import re
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from identity.web import safe_next

if TYPE_CHECKING:
    from collections.abc import Callable

    from conftest import Live


def set_cookies(response: httpx.Response) -> dict[str, str]:
    """Set-Cookie headers by cookie name."""
    return {h.split("=", 1)[0]: h for h in response.headers.get_list("set-cookie")}


def sign_in(client: httpx.Client, username: str = "nurse.igmc", password: str = "demo",
            next_: str = "/protected") -> httpx.Response:
    return client.post("/login", data={"username": username, "password": password, "next": next_})


def test_login_page_lists_demo_users_without_javascript(idp: Live) -> None:
    with idp.client() as client:
        page = client.get("/login", params={"next": "/protected"})
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<form method="post" action="/login">' in page.text and "<script" not in page.text
    assert 'name="next" value="/protected"' in page.text
    for username in ("doctor.igmc", "nurse.rpgmc", "patient.demo2", "nhm.manager", "auditor", "admin"):
        assert f"<code>{username}</code>" in page.text


def test_session_cookie_login_and_logout(idp: Live) -> None:
    with idp.client() as client:
        assert client.get("/protected").status_code == 401
        response = sign_in(client, next_="/protected?view=ward")
        assert response.status_code == 303 and response.headers["location"] == "/protected?view=ward"
        session = set_cookies(response)["himhis_session"].lower()
        assert "httponly" in session and "samesite=lax" in session and "path=/" in session
        assert "secure" not in session  # development over plain HTTP
        assert "himhis_refresh" in set_cookies(response)
        me = client.get("/protected")
        assert me.status_code == 200
        assert (me.json()["username"], me.json()["facility"]) == ("nurse.igmc", "IGMC")

        out = client.post("/logout")
        assert out.status_code == 303 and out.headers["location"] == "/login"
        assert all('=""' in c or "max-age=0" in c.lower() for c in set_cookies(out).values())
        assert client.get("/protected").status_code == 401


def test_wrong_password_shows_the_form_again(idp: Live) -> None:
    with idp.client() as client:
        response = sign_in(client, password="wrong")
        assert response.status_code == 401 and "Invalid username or password." in response.text
        assert "himhis_session" not in set_cookies(response)
        assert 'value="nurse.igmc"' in response.text


def test_login_renews_an_expired_session_from_the_refresh_cookie(idp: Live) -> None:
    with idp.client() as client:
        sign_in(client, username="doctor.rpgmc")
        client.cookies.delete("himhis_session")  # the access token's cookie lapses after expires_in
        assert client.get("/protected").status_code == 401
        renewed = client.get("/login", params={"next": "/protected"})
        assert renewed.status_code == 303 and renewed.headers["location"] == "/protected"
        assert client.get("/protected").json()["username"] == "doctor.rpgmc"


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/x", "/\\evil.example", "",
                                    "javascript:alert(1)", "http:/evil.example", "/ok\r\nSet-Cookie: x=1"])
def test_next_must_be_a_local_path(idp: Live, target: str) -> None:
    with idp.client() as client:
        response = sign_in(client, next_=target)
    assert response.status_code == 303 and response.headers["location"] == "/"


@pytest.mark.parametrize(("value", "expected"), [("/fhir/Patient?name=x", "/fhir/Patient?name=x"),
                                                 ("/", "/"), (None, "/"), ("ward", "/"), ("///x", "/")])
def test_safe_next(value: str | None, expected: str) -> None:
    assert safe_next(value) == expected


# -- production: GET /login sends the browser to Keycloak (here the development provider stands in) ---------


def hidden_fields(page: str) -> dict[str, str]:
    return {html.unescape(k): html.unescape(v)
            for k, v in re.findall(r'<input type="hidden" name="([^"]*)" value="([^"]*)">', page)}


def test_production_sign_in_with_authorization_code_and_pkce(live_app: Callable[..., Live]) -> None:
    idp = live_app()
    ward = live_app(environment="production", oidc_issuer=idp.issuer)
    with ward.client() as browser:
        start = browser.get("/login", params={"next": "/protected"})
        assert start.status_code == 302
        location = start.headers["location"]
        assert location.startswith(f"{idp.issuer}/protocol/openid-connect/auth?client_id=himhis-ward&")
        query = parse_qs(urlsplit(location).query)
        assert query["redirect_uri"] == [f"{ward.url}/auth/callback"]
        assert query["code_challenge_method"] == ["S256"] and query["state"][0]
        oauth_cookie = set_cookies(start)["himhis_oauth"]
        assert "secure" in oauth_cookie.lower() and "path=/auth/callback" in oauth_cookie.lower()
        cookie = oauth_cookie.split(";", 1)[0]  # Secure cookies aren't sent over plain HTTP: carry it by hand

        form = idp.http.get(location)
        signed = idp.http.post(f"{idp.issuer}/protocol/openid-connect/auth",
                            data={**hidden_fields(form.text), "username": "doctor.igmc", "password": "demo"})
        assert signed.status_code == 302
        callback = signed.headers["location"]
        assert callback.startswith(f"{ward.url}/auth/callback?")

        tampered = browser.get(callback.replace("state=", "state=x"), headers={"Cookie": cookie})
        assert tampered.status_code == 400
        done = browser.get(callback, headers={"Cookie": cookie})
        assert done.status_code == 303 and done.headers["location"] == "/protected"
        session = set_cookies(done)["himhis_session"]
        assert "secure" in session.lower() and "httponly" in session.lower()
        me = browser.get("/protected", headers={"Cookie": session.split(";", 1)[0]})
        assert me.status_code == 200 and me.json()["username"] == "doctor.igmc"
        assert me.json()["client_id"] == "himhis-ward"

        assert browser.post("/login", data={"username": "doctor.igmc", "password": "demo"}).status_code == 404
        denied = browser.get("/auth/callback", params={"error": "access_denied", "state": "s"},
                             headers={"Cookie": cookie})
        assert denied.status_code == 401 and "access_denied" in denied.text


def test_callback_is_not_served_in_development(idp: Live) -> None:
    with idp.client() as client:
        assert client.get("/auth/callback", params={"code": "c", "state": "s"}).status_code == 404
