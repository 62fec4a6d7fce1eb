"""python-keycloak, HimHIS's client for Keycloak, works unchanged against the development provider."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from keycloak import KeycloakOpenID
from keycloak.exceptions import KeycloakAuthenticationError, KeycloakPostError

if TYPE_CHECKING:
    from conftest import Live


def openid(idp: Live, client_id: str = "himhis-cli", secret: str | None = None) -> KeycloakOpenID:
    return KeycloakOpenID(server_url=idp.url + "/", realm_name="himhis", client_id=client_id,
                          client_secret_key=secret)


def test_discovery_certs_and_password_grant(idp: Live) -> None:
    client = openid(idp)
    assert client.well_known()["issuer"] == idp.issuer
    assert client.certs()["keys"][0]["alg"] == "RS256"
    tokens = client.token("doctor.igmc", "demo")
    principal = idp.app.state.token_validator.validate(tokens["access_token"])
    assert principal.username == "doctor.igmc" and principal.facility == "IGMC"
    assert client.userinfo(tokens["access_token"])["preferred_username"] == "doctor.igmc"
    refreshed = client.refresh_token(tokens["refresh_token"])
    assert idp.app.state.token_validator.validate(refreshed["access_token"]).roles == {"doctor"}
    # python-keycloak's own verification (jwcrypto, key from the certs endpoint) accepts our tokens too
    decoded = client.decode_token(tokens["access_token"], validate=True)
    assert decoded["realm_access"]["roles"] == ["default-roles-himhis", "doctor"]


def test_client_credentials_and_errors(idp: Live) -> None:
    lab = openid(idp, "lab-gateway", "lab-secret").token(grant_type="client_credentials")
    assert idp.app.state.token_validator.validate(lab["access_token"]).roles == {"lab-system"}
    with pytest.raises(KeycloakAuthenticationError) as wrong_secret:
        openid(idp, "lab-gateway", "nope").token(grant_type="client_credentials")
    assert wrong_secret.value.response_code == 401 and b"invalid_client" in wrong_secret.value.response_body
    with pytest.raises(KeycloakAuthenticationError) as wrong_password:
        openid(idp).token("nurse.igmc", "wrong")
    assert b'"Invalid user credentials"' in wrong_password.value.response_body
    with pytest.raises(KeycloakPostError) as not_allowed:
        openid(idp).token(grant_type="client_credentials")
    assert not_allowed.value.response_code == 400


def test_auth_url_points_at_the_authorization_endpoint(idp: Live) -> None:
    url = openid(idp, "himhis-ward").auth_url(redirect_uri=f"{idp.url}/auth/callback", state="s")
    assert url.startswith(f"{idp.issuer}/protocol/openid-connect/auth?client_id=himhis-ward&")
