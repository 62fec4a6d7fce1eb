"""Token validation: the protected route's 401s, claim mapping, and Keycloak's JWKS over real HTTP."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from keycloak import KeycloakOpenID

from himhis.errors import AuthenticationError
from identity.oidc import (
    KeycloakJwks,
    LocalJwks,
    TokenValidator,
    build_validator,
    principal_from_claims,
    split_issuer,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from conftest import Live


def call(idp: Live, token: str | None = None, **headers: str) -> tuple[int, Any]:
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    with idp.client() as client:
        response = client.get("/protected", headers=headers)
    return response.status_code, response.json()


def test_valid_token_reaches_the_route(idp: Live) -> None:
    status, body = call(idp, idp.token("doctor.rpgmc")["access_token"])
    assert status == 200
    assert body["username"] == "doctor.rpgmc" and body["roles"] == ["doctor"] and body["facility"] == "RPGMC"


def test_no_token(idp: Live) -> None:
    with idp.client() as client:
        response = client.get("/protected")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="himhis"'


@pytest.mark.parametrize(("claims", "message"), [
    ({"exp": -120, "iat": -420}, "token expired"),
    ({"iss": "http://127.0.0.1:1/realms/other"}, "wrong issuer"),
    ({"aud": ["account"]}, "wrong audience"),
    ({"aud": "himhis-portal"}, "wrong audience"),
    ({"nbf": 600}, "token not yet valid"),
    ({"iat": 600}, "token not yet valid"),
    ({"typ": "Refresh"}, "not a Bearer token"),
])
def test_claims_are_checked(idp: Live, claims: dict[str, Any], message: str) -> None:
    # Times are written as seconds from now and made absolute when the test runs, not when it is collected.
    now = int(time.time())
    claims = {k: now + v if k in ("exp", "iat", "nbf") else v for k, v in claims.items()}
    assert call(idp, idp.sign(claims)) == (401, {"message": message})


@pytest.mark.parametrize("missing", ["exp", "iss", "aud", "sub", "iat"])
def test_required_claims(idp: Live, missing: str) -> None:
    assert call(idp, idp.sign(drop=(missing,))) == (401, {"message": f"malformed token: no {missing} claim"})


def test_bad_signature_same_kid(idp: Live) -> None:
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert call(idp, idp.sign(key=other_key)) == (401, {"message": "bad signature"})


def test_unknown_signing_key(idp: Live) -> None:
    assert call(idp, idp.sign(kid="rotated-away")) == (401, {"message": "unknown signing key"})


@pytest.mark.parametrize("token", ["not-a-jwt", "a.b.c", "eyJhbGciOiJSUzI1NiJ9.e30", "ey.ey.ey.ey"])
def test_malformed_token(idp: Live, token: str) -> None:
    assert call(idp, token) == (401, {"message": "malformed token"})


def test_algorithm_confusion_is_refused(idp: Live) -> None:
    unsigned = jwt.encode({"sub": "x"}, None, algorithm="none")
    hs256 = jwt.encode({"sub": "x"}, "secret-secret-secret-secret-32by", algorithm="HS256")
    assert call(idp, unsigned) == (401, {"message": "unsupported signing algorithm"})
    assert call(idp, hs256) == (401, {"message": "unsupported signing algorithm"})


def test_other_authorization_schemes_are_refused(idp: Live) -> None:
    status, body = call(idp, Authorization="Basic ZG9jdG9yOmRlbW8=")
    assert status == 401 and "Bearer" in body["message"]


def test_optional_principal(idp: Live) -> None:
    with idp.client() as client:
        assert client.get("/maybe").json() == {"username": None}
        bad = client.get("/maybe", headers={"Authorization": "Bearer junk"})
        assert bad.json() == {"username": None}
        token = idp.token("auditor")["access_token"]
        signed_in = client.get("/maybe", headers={"Authorization": f"Bearer {token}"})
        assert signed_in.json() == {"username": "auditor"}


def test_principal_mapping() -> None:
    principal = principal_from_claims({
        "sub": "u-1", "preferred_username": "x", "facility": ["IGMC"], "patient": "", "azp": "himhis-ward",
        "name": "X Y", "realm_access": {"roles": ["nurse", "offline_access", "doctor"]}})
    assert principal.roles == {"nurse", "doctor"} and principal.facility == "IGMC"
    assert principal.patient_id is None and principal.client_id == "himhis-ward" and principal.name == "X Y"
    assert principal_from_claims({"sub": "s"}).roles == frozenset()


@pytest.mark.parametrize(("issuer", "expected"), [
    ("https://sso.hp.gov.in/realms/himhis", ("https://sso.hp.gov.in/", "himhis")),
    ("https://sso.hp.gov.in/auth/realms/himhis/", ("https://sso.hp.gov.in/auth/", "himhis")),
])
def test_split_issuer(issuer: str, expected: tuple[str, str]) -> None:
    assert split_issuer(issuer) == expected


@pytest.mark.parametrize("issuer", ["https://sso.hp.gov.in/himhis", "/realms/himhis", "https://h/realms/"])
def test_split_issuer_refuses_other_forms(issuer: str) -> None:
    with pytest.raises(ValueError, match="not of the form"):
        split_issuer(issuer)


def test_local_jwks_skips_encryption_keys(idp: Live) -> None:
    public = idp.app.state.token_validator.jwks.signing_key
    kid = jwt.get_unverified_header(idp.token("admin")["access_token"])["kid"]
    assert public(kid) is not None
    jwk = {**public(kid)._jwk_data, "use": "enc"}
    assert LocalJwks({"keys": [jwk]}).signing_key(kid) is None


# -- KeycloakJwks against the development provider, which speaks Keycloak's protocol over HTTP ------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def keycloak_jwks(idp: Live, clock: Clock) -> KeycloakJwks:
    openid = KeycloakOpenID(server_url=idp.url + "/", realm_name="himhis", client_id="himhis-cli")
    return KeycloakJwks(openid, max_age=3600, min_refresh_interval=30, clock=clock)


def test_keycloak_jwks_caches_and_refreshes_once_on_unknown_kid(idp: Live) -> None:
    clock = Clock()
    jwks = keycloak_jwks(idp, clock)
    validator = TokenValidator(issuer=idp.issuer, audience="himhis-api", jwks=jwks)
    token = idp.token("nurse.rpgmc")["access_token"]
    assert validator.validate(token).facility == "RPGMC"
    assert validator.validate(token).username == "nurse.rpgmc"
    assert jwks.fetches == 1  # cached

    with pytest.raises(AuthenticationError, match="unknown signing key"):
        validator.validate(idp.sign(kid="new-kid"))
    assert jwks.fetches == 1  # too soon after the last fetch: rate-limited
    clock.now += 31
    with pytest.raises(AuthenticationError, match="unknown signing key"):
        validator.validate(idp.sign(kid="new-kid"))
    assert jwks.fetches == 2  # one refresh for the unknown kid
    with pytest.raises(AuthenticationError, match="unknown signing key"):
        validator.validate(idp.sign(kid="another-kid"))
    assert jwks.fetches == 2

    clock.now += 3600
    validator.claims(token)  # claims() checks the signature every time; validate() remembers
    assert jwks.fetches == 3  # the cache expired


def test_keycloak_jwks_keeps_cached_keys_when_keycloak_is_down(live_app: Callable[..., Live]) -> None:
    idp = live_app()
    clock = Clock()
    jwks = keycloak_jwks(idp, clock)
    token = idp.token("admin")["access_token"]
    kid = jwt.get_unverified_header(token)["kid"]
    assert jwks.signing_key(kid) is not None
    jwks._openid.connection.base_url = "http://127.0.0.1:9/"  # nothing listens on the discard port
    clock.now += 3600
    assert jwks.signing_key(kid) is not None
    assert jwks.fetches == 2


def test_build_validator_production_uses_keycloak_discovery(idp: Live) -> None:
    """Production validation pointed at a Keycloak-compatible issuer (here the development provider)."""
    settings = idp.settings.model_copy(update={"environment": "production"})
    validator = build_validator(settings)
    assert isinstance(validator.jwks, KeycloakJwks)
    assert validator.validate(idp.token("nhm.manager")["access_token"]).roles == {"nhm-manager"}
    wrong = idp.settings.model_copy(update={"environment": "production",
                                            "oidc_issuer": idp.issuer.replace("127.0.0.1", "localhost")})
    with pytest.raises(RuntimeError, match="reports issuer"):
        build_validator(wrong)


def test_a_verified_token_is_remembered_only_until_it_expires(idp: Live) -> None:
    """Repeat requests skip the signature check, but an expired token is refused all the same."""
    validator = build_validator(idp.settings)
    remembering = TokenValidator(issuer=validator.issuer, audience=validator.audience, jwks=validator.jwks, leeway=0)
    token = idp.sign({"exp": int(time.time()) + 2})
    first = remembering.validate(token)
    assert remembering.validate(token) is first  # the same Principal: not verified again
    time.sleep(3.1)
    with pytest.raises(AuthenticationError, match="token expired"):
        remembering.validate(token)
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    with pytest.raises(AuthenticationError, match=r"bad signature|malformed"):
        remembering.validate(forged)
