"""The Keycloak realm export, the development realm and the demo users agree with each other."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from identity.devidp.realm import REALM_FILE, USERS_FILE, DevRealm
from identity.keycloak_admin import read_roster
from identity.principal import ROLES

KEYCLOAK = Path(__file__).resolve().parents[2] / "deploy" / "keycloak"
EXPORT: dict[str, Any] = json.loads((KEYCLOAK / "realm-himhis.json").read_text())
CLIENTS = {c["clientId"]: c for c in EXPORT["clients"]}


def test_realm_and_roles() -> None:
    assert EXPORT["realm"] == "himhis" and EXPORT["enabled"]
    assert EXPORT["accessTokenLifespan"] == 300
    assert set(ROLES) <= {r["name"] for r in EXPORT["roles"]["realm"]}


@pytest.mark.parametrize(("client_id", "flags"), [
    ("himhis-ward", {"publicClient": False, "standardFlowEnabled": True, "directAccessGrantsEnabled": False}),
    ("lab-gateway", {"publicClient": False, "serviceAccountsEnabled": True, "standardFlowEnabled": False}),
    ("himhis-portal", {"publicClient": True, "standardFlowEnabled": True}),
    ("himhis-nhm", {"publicClient": False, "standardFlowEnabled": True}),
    ("himhis-cli", {"publicClient": True, "directAccessGrantsEnabled": True, "standardFlowEnabled": False}),
])
def test_clients(client_id: str, flags: dict[str, bool]) -> None:
    client = CLIENTS[client_id]
    assert {k: client[k] for k in flags} == flags
    mappers = {m["protocolMapper"]: m["config"] for m in client["protocolMappers"]}
    assert mappers["oidc-audience-mapper"]["included.custom.audience"] == "himhis-api"
    assert mappers["oidc-audience-mapper"]["access.token.claim"] == "true"
    assert mappers["oidc-usermodel-realm-role-mapper"]["claim.name"] == "realm_access.roles"
    attributes = {m["config"]["claim.name"]: m["config"]["user.attribute"] for m in client["protocolMappers"]
                  if m["protocolMapper"] == "oidc-usermodel-attribute-mapper"}
    assert attributes == {"facility": "facility", "patient": "patient"}


def test_redirects_and_pkce() -> None:
    ward, portal = CLIENTS["himhis-ward"], CLIENTS["himhis-portal"]
    assert ward["rootUrl"] == "${HIMHIS_BASE_URL}" and ward["redirectUris"] == ["/auth/callback"]
    assert ward["secret"] == "${HIMHIS_OIDC_CLIENT_SECRET}"
    assert portal["attributes"]["pkce.code.challenge.method"] == "S256"
    assert CLIENTS["lab-gateway"]["secret"] == "${HIMHIS_LAB_CLIENT_SECRET}"


def test_lab_gateway_service_account_has_lab_system() -> None:
    [account] = [u for u in EXPORT["users"] if u.get("serviceAccountClientId") == "lab-gateway"]
    assert account["username"] == "service-account-lab-gateway" and "lab-system" in account["realmRoles"]


def test_demo_users_match_the_realm_roles() -> None:
    realm_roles = {r["name"] for r in EXPORT["roles"]["realm"]}
    users = json.loads(USERS_FILE.read_text())["users"]
    assert all(set(u["realmRoles"]) <= realm_roles for u in users)
    assert {r for u in users for r in u["realmRoles"]} >= set(ROLES)
    secrets = [json.loads(c["secretData"]) for u in users for c in u.get("credentials", [])]
    assert len(secrets) == 9 and all(s["value"] != "demo" and s["salt"] for s in secrets)  # salted hashes
    dev = DevRealm.load()
    assert dev.service_account("lab-gateway").roles == ("default-roles-himhis", "lab-system")
    assert all(u.check_password("demo") for u in dev.demo_logins()) and len(dev.demo_logins()) == 9


def test_development_clients_mirror_the_export() -> None:
    dev = json.loads(REALM_FILE.read_text())
    assert dev["realm"] == EXPORT["realm"] and dev["accessTokenLifespan"] == EXPORT["accessTokenLifespan"]
    assert {c["clientId"] for c in dev["clients"]} == set(CLIENTS)
    for client in dev["clients"]:
        exported = CLIENTS[client["clientId"]]
        for flag in ("publicClient", "standardFlowEnabled", "serviceAccountsEnabled"):
            assert client[flag] == exported[flag], (client["clientId"], flag)
        assert client.get("redirectUris", []) == exported.get("redirectUris", [])


def test_example_roster_uses_realm_roles() -> None:
    realm_roles = {r["name"] for r in EXPORT["roles"]["realm"]}
    assert all(e.roles <= realm_roles for e in read_roster(KEYCLOAK / "roster.example.csv"))
