"""The development identity provider over HTTP: discovery, JWKS, every grant, userinfo, authorization code."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import stat
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import pytest

from himhis.config import Settings
from identity.devidp import DevIdentityProvider, OAuthError, build_router
from identity.devidp.keys import jwk_thumbprint, key_path, load_or_create_signing_key
from identity.devidp.realm import DevRealm

if TYPE_CHECKING:
    from conftest import Live

OIDC = "/realms/himhis/protocol/openid-connect"

DEMO_USERS = [
    # username, roles, facility, patient, name
    ("doctor.igmc", {"doctor"}, "IGMC", None, "Anil Thakur"),
    ("nurse.igmc", {"nurse"}, "IGMC", None, "Sunita Negi"),
    ("doctor.rpgmc", {"doctor"}, "RPGMC", None, "Meenakshi Katoch"),
    ("nurse.rpgmc", {"nurse"}, "RPGMC", None, "Pooja Rana"),
    ("patient.demo", {"patient"}, None, "demo-patient-1", "Ramesh Kumar"),
    ("patient.demo2", {"patient"}, None, "demo-patient-2", "Kamla Devi"),
    ("nhm.manager", {"nhm-manager"}, None, None, "Vikram Chauhan"),
    ("auditor", {"auditor"}, None, None, "Neha Sharma"),
    ("admin", {"admin"}, None, None, "HimHIS Administrator"),
]


def post_token(idp: Live, **form: str) -> httpx.Response:
    return idp.http.post(f"{idp.url}{OIDC}/token", data=form, timeout=10)


def test_discovery_document(idp: Live) -> None:
    doc = idp.http.get(f"{idp.issuer}/.well-known/openid-configuration").json()
    assert doc["issuer"] == idp.settings.oidc_issuer
    for name, path in [("authorization_endpoint", "auth"), ("token_endpoint", "token"),
                       ("userinfo_endpoint", "userinfo"), ("jwks_uri", "certs")]:
        assert doc[name] == f"{idp.issuer}/protocol/openid-connect/{path}"
    assert doc["id_token_signing_alg_values_supported"] == ["RS256"]
    assert {"password", "client_credentials", "refresh_token", "authorization_code"} <= set(
        doc["grant_types_supported"])
    assert doc["code_challenge_methods_supported"] == ["S256"]
    assert doc["subject_types_supported"] == ["public"]


def test_jwks_serves_the_stable_signing_key(idp: Live) -> None:
    jwks = idp.http.get(f"{idp.url}{OIDC}/certs").json()
    [key] = jwks["keys"]
    assert key["kty"] == "RSA" and key["alg"] == "RS256" and key["use"] == "sig"
    assert key["kid"] == jwk_thumbprint(key)
    path = key_path(idp.settings.var_dir)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_signing_key(idp.settings.var_dir).kid == key["kid"]  # kept across restarts


def test_thumbprint_matches_rfc_7638_example() -> None:
    """The worked example of RFC 7638 §3.1."""
    jwk = {"kty": "RSA", "e": "AQAB", "n": (
        "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV"
        "4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7"
        "d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44"
        "-csFCur-kEgU8awapJzKnqDKgw")}
    assert jwk_thumbprint(jwk) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


@pytest.mark.parametrize(("username", "roles", "facility", "patient", "name"), DEMO_USERS)
def test_password_grant_for_each_demo_user(idp: Live, username: str, roles: set[str], facility: str | None,
                                           patient: str | None, name: str) -> None:
    tokens = idp.token(username)
    assert tokens["token_type"] == "Bearer" and tokens["expires_in"] == 300
    claims = jwt.decode(tokens["access_token"], options={"verify_signature": False})
    assert "himhis-api" in claims["aud"] and claims["typ"] == "Bearer" and claims["azp"] == "himhis-cli"
    assert claims["exp"] - claims["iat"] == 300 and claims["jti"]
    assert claims["scope"] == "openid profile email"
    validate = idp.app.state.token_validator.validate
    principal = validate(tokens["access_token"])
    assert principal.username == username and principal.roles == roles and principal.name == name
    assert (principal.facility, principal.patient_id) == (facility, patient)
    assert principal.client_id == "himhis-cli" and principal.subject == claims["sub"]
    assert validate(idp.token(username)["access_token"]).subject == claims["sub"]  # stable per user


@pytest.mark.parametrize("client_id", ["himhis-ward", "himhis-portal"])
def test_password_grant_for_ward_and_portal(idp: Live, client_id: str) -> None:
    tokens = idp.token("nurse.igmc", client_id=client_id)
    assert idp.app.state.token_validator.validate(tokens["access_token"]).client_id == client_id
    assert jwt.decode(tokens["id_token"], options={"verify_signature": False})["aud"] == client_id


def test_client_credentials_for_lab_gateway(idp: Live) -> None:
    response = post_token(idp, grant_type="client_credentials", client_id="lab-gateway",
                          client_secret="lab-secret")
    assert response.status_code == 200
    assert "refresh_token" not in response.json()  # as Keycloak, no refresh token for client credentials
    principal = idp.app.state.token_validator.validate(response.json()["access_token"])
    assert principal.roles == {"lab-system"} and principal.client_id == "lab-gateway"
    assert principal.username == "service-account-lab-gateway"


def test_client_credentials_with_http_basic(idp: Live) -> None:
    response = idp.http.post(f"{idp.url}{OIDC}/token", data={"grant_type": "client_credentials"},
                          auth=("lab-gateway", "lab-secret"))
    assert response.status_code == 200


@pytest.mark.parametrize("secret", ["wrong", ""])
def test_client_credentials_wrong_secret(idp: Live, secret: str) -> None:
    response = post_token(idp, grant_type="client_credentials", client_id="lab-gateway", client_secret=secret)
    assert response.status_code == 401
    assert response.json() == {"error": "invalid_client",
                               "error_description": "Invalid client or Invalid client credentials"}


@pytest.mark.parametrize(("username", "password"), [("doctor.igmc", "wrong"), ("nobody", "demo"),
                                                    ("service-account-lab-gateway", "")])
def test_wrong_user_credentials(idp: Live, username: str, password: str) -> None:
    response = post_token(idp, grant_type="password", client_id="himhis-cli", username=username,
                          password=password)
    assert response.status_code == 401
    assert response.json() == {"error": "invalid_grant", "error_description": "Invalid user credentials"}
    assert response.headers["cache-control"] == "no-store"


@pytest.mark.parametrize(("form", "status", "error"), [
    ({"grant_type": "password", "client_id": "nope", "username": "admin", "password": "demo"}, 401,
     "invalid_client"),
    ({"grant_type": "client_credentials", "client_id": "himhis-cli"}, 400, "unauthorized_client"),
    ({"grant_type": "password", "client_id": "lab-gateway", "client_secret": "lab-secret",
      "username": "admin", "password": "demo"}, 400, "unauthorized_client"),
    ({"grant_type": "implicit", "client_id": "himhis-cli"}, 400, "unsupported_grant_type"),
    ({"client_id": "himhis-cli"}, 400, "invalid_request"),
    ({"grant_type": "refresh_token", "client_id": "himhis-cli", "refresh_token": "junk"}, 400,
     "invalid_grant"),
])
def test_token_endpoint_errors(idp: Live, form: dict[str, str], status: int, error: str) -> None:
    response = post_token(idp, **form)
    assert (response.status_code, response.json()["error"]) == (status, error)


def test_refresh_token_grant(idp: Live) -> None:
    first = idp.token("patient.demo")
    response = post_token(idp, grant_type="refresh_token", client_id="himhis-cli",
                          refresh_token=first["refresh_token"])
    assert response.status_code == 200
    refreshed = response.json()
    assert refreshed["session_state"] == first["session_state"]
    principal = idp.app.state.token_validator.validate(refreshed["access_token"])
    assert principal.patient_id == "demo-patient-1"
    other_client = post_token(idp, grant_type="refresh_token", client_id="himhis-portal",
                              refresh_token=first["refresh_token"])
    assert other_client.status_code == 400 and other_client.json()["error"] == "invalid_grant"


def test_refresh_and_id_tokens_are_not_access_tokens(idp: Live) -> None:
    tokens = idp.token("doctor.igmc")
    with idp.client() as client:
        for name in ("refresh_token", "id_token"):
            response = client.get("/protected", headers={"Authorization": f"Bearer {tokens[name]}"})
            assert response.status_code == 401
            assert response.json()["message"] == "wrong audience"


def test_userinfo(idp: Live) -> None:
    token = idp.token("patient.demo2")["access_token"]
    info = idp.http.get(f"{idp.url}{OIDC}/userinfo", headers={"Authorization": f"Bearer {token}"}).json()
    assert info["preferred_username"] == "patient.demo2" and info["patient"] == "demo-patient-2"
    assert info["name"] == "Kamla Devi" and info["sub"]
    bad = idp.http.get(f"{idp.url}{OIDC}/userinfo", headers={"Authorization": "Bearer not-a-token"})
    assert bad.status_code == 401 and bad.json()["error"] == "invalid_token"
    assert bad.headers["www-authenticate"].startswith('Bearer realm="himhis", error="invalid_token"')
    assert idp.http.get(f"{idp.url}{OIDC}/userinfo").status_code == 401


def test_access_token_lifespan_is_configurable(tmp_path) -> None:
    provider = DevIdentityProvider(Settings(_env_file=None, var_dir=tmp_path), access_token_lifespan=60)
    tokens = provider.password_grant(provider.realm.clients["himhis-cli"], "auditor", "demo")
    claims = provider.validator.claims(tokens["access_token"])
    assert tokens["expires_in"] == 60 and claims["exp"] - claims["iat"] == 60


def test_production_refuses_the_development_provider(tmp_path) -> None:
    settings = Settings(_env_file=None, var_dir=tmp_path, environment="production")
    with pytest.raises(RuntimeError, match="production"):
        DevIdentityProvider(settings)
    with pytest.raises(RuntimeError, match="production"):
        build_router(settings)
    assert not key_path(tmp_path).exists()


def test_disabled_user_cannot_sign_in(tmp_path) -> None:
    realm = DevRealm.load()
    realm.users["auditor"] = dataclasses.replace(realm.users["auditor"], enabled=False)
    provider = DevIdentityProvider(Settings(_env_file=None, var_dir=tmp_path), realm=realm)
    with pytest.raises(OAuthError, match="Invalid user credentials"):
        provider.password_grant(realm.clients["himhis-cli"], "auditor", "demo")


# -- authorization code flow with PKCE (what Keycloak does for himhis-ward and himhis-portal) -------------

VERIFIER = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"  # RFC 7636 Appendix B
CHALLENGE = base64.urlsafe_b64encode(hashlib.sha256(VERIFIER.encode()).digest()).rstrip(b"=").decode()


def authorize(idp: Live, redirect_uri: str, **extra: str) -> httpx.Response:
    params = {"client_id": "himhis-portal", "redirect_uri": redirect_uri, "response_type": "code",
              "scope": "openid", "state": "xyz", "nonce": "n-0S6", "code_challenge": CHALLENGE,
              "code_challenge_method": "S256", **extra}
    with idp.client() as client:
        page = client.get(f"{OIDC}/auth", params=params)
        assert page.status_code == 200 and 'name="code_challenge"' in page.text
        assert "patient.demo" in page.text  # the demo sign-ins are listed
        return client.post(f"{OIDC}/auth", data={**params, "username": "patient.demo", "password": "demo"})


def test_authorization_code_flow_with_pkce(idp: Live) -> None:
    redirect_uri = f"{idp.url}/portal/callback"
    response = authorize(idp, redirect_uri)
    assert response.status_code == 302
    location = urlsplit(response.headers["location"])
    query = {k: v[0] for k, v in parse_qs(location.query).items()}
    assert f"{location.scheme}://{location.netloc}{location.path}" == redirect_uri
    assert query["state"] == "xyz" and query["iss"] == idp.issuer
    form = {"grant_type": "authorization_code", "client_id": "himhis-portal", "code": query["code"],
            "redirect_uri": redirect_uri}
    assert post_token(idp, **form, code_verifier="wrong" * 10).json()["error"] == "invalid_grant"
    response = authorize(idp, redirect_uri)
    code = parse_qs(urlsplit(response.headers["location"]).query)["code"][0]
    tokens = post_token(idp, **{**form, "code": code}, code_verifier=VERIFIER).json()
    assert jwt.decode(tokens["id_token"], options={"verify_signature": False})["nonce"] == "n-0S6"
    assert idp.app.state.token_validator.validate(tokens["access_token"]).patient_id == "demo-patient-1"
    reused = post_token(idp, **{**form, "code": code}, code_verifier=VERIFIER)
    assert reused.status_code == 400 and reused.json()["error_description"] == "Code not valid"


def test_authorization_request_errors(idp: Live) -> None:
    with idp.client() as client:
        bad_redirect = client.get(f"{OIDC}/auth", params={
            "client_id": "himhis-portal", "response_type": "code", "redirect_uri": "https://evil.example/portal/cb"})
        assert bad_redirect.status_code == 400 and "redirect_uri" in bad_redirect.text
        no_pkce = client.get(f"{OIDC}/auth", params={"client_id": "himhis-portal", "response_type": "code",
                                                     "redirect_uri": f"{idp.url}/portal/cb", "state": "s"})
        assert no_pkce.status_code == 302 and "error=invalid_request" in no_pkce.headers["location"]
        wrong_password = client.post(f"{OIDC}/auth", data={
            "client_id": "himhis-portal", "response_type": "code", "redirect_uri": f"{idp.url}/portal/cb",
            "code_challenge": CHALLENGE, "code_challenge_method": "S256", "username": "patient.demo",
            "password": "nope"})
        assert wrong_password.status_code == 401 and "Invalid username or password" in wrong_password.text
