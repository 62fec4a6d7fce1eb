"""The development realm: demo users and clients read from ``identity/data`` (Keycloak representations)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parent.parent / "data"
USERS_FILE = DATA / "demo-users.json"
REALM_FILE = DATA / "dev-realm.json"

PBKDF2_ITERATIONS = 27500  # Keycloak's default for its pbkdf2-sha256 password hash provider


def hash_password(password: str, *, iterations: int = PBKDF2_ITERATIONS, salt: bytes | None = None) -> dict:
    """A password credential in Keycloak's CredentialRepresentation form (pbkdf2-sha256, 512-bit key)."""
    salt = salt or secrets.token_bytes(16)
    value = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations, dklen=64)
    secret = {"value": base64.b64encode(value).decode(), "salt": base64.b64encode(salt).decode(),
              "additionalParameters": {}}
    data = {"hashIterations": iterations, "algorithm": "pbkdf2-sha256", "additionalParameters": {}}
    return {"type": "password", "secretData": json.dumps(secret), "credentialData": json.dumps(data)}


def verify_password(credential: dict, password: str) -> bool:
    """Check ``password`` against a pbkdf2-sha256 credential in constant time."""
    secret, data = json.loads(credential["secretData"]), json.loads(credential["credentialData"])
    if data.get("algorithm") != "pbkdf2-sha256":
        return False
    expected = base64.b64decode(secret["value"])
    actual = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(secret["salt"]),
                                 int(data["hashIterations"]), dklen=len(expected))
    return hmac.compare_digest(actual, expected)


def _first(attributes: dict[str, list[str]], name: str) -> str | None:
    values = attributes.get(name) or []
    return values[0] if values else None


@dataclass(frozen=True, slots=True)
class User:
    """A realm user (Keycloak UserRepresentation); service-account users carry their client id."""

    id: str
    username: str
    roles: tuple[str, ...]
    first_name: str | None = None
    last_name: str | None = None
    email: str | None = None
    facility: str | None = None
    patient: str | None = None
    enabled: bool = True
    service_account_client: str | None = None
    credential: dict | None = None

    @property
    def name(self) -> str | None:
        return " ".join(p for p in (self.first_name, self.last_name) if p) or None

    @classmethod
    def from_representation(cls, rep: dict[str, Any]) -> User:
        attributes = rep.get("attributes", {})
        password = [c for c in rep.get("credentials", []) if c.get("type") == "password"]
        return cls(id=rep["id"], username=rep["username"], roles=tuple(rep.get("realmRoles", [])),
                   first_name=rep.get("firstName"), last_name=rep.get("lastName"), email=rep.get("email"),
                   facility=_first(attributes, "facility"), patient=_first(attributes, "patient"),
                   enabled=rep.get("enabled", True), service_account_client=rep.get("serviceAccountClientId"),
                   credential=password[0] if password else None)

    def check_password(self, password: str) -> bool:
        return self.enabled and self.credential is not None and verify_password(self.credential, password)


@dataclass(frozen=True, slots=True)
class Client:
    """An OAuth client (Keycloak ClientRepresentation); ``secret_setting`` names the Settings field."""

    client_id: str
    public: bool
    standard_flow: bool = False
    direct_access_grants: bool = False
    service_accounts: bool = False
    redirect_uris: tuple[str, ...] = ()
    pkce_method: str | None = None
    secret_setting: str | None = None

    @classmethod
    def from_representation(cls, rep: dict[str, Any]) -> Client:
        return cls(client_id=rep["clientId"], public=rep.get("publicClient", False),
                   standard_flow=rep.get("standardFlowEnabled", False),
                   direct_access_grants=rep.get("directAccessGrantsEnabled", False),
                   service_accounts=rep.get("serviceAccountsEnabled", False),
                   redirect_uris=tuple(rep.get("redirectUris", [])),
                   pkce_method=rep.get("attributes", {}).get("pkce.code.challenge.method"),
                   secret_setting=rep.get("secretSetting"))


@dataclass(frozen=True, slots=True)
class DevRealm:
    """Users, clients and token lifespans of the development realm."""

    name: str
    users: dict[str, User]
    clients: dict[str, Client]
    access_token_lifespan: int
    refresh_token_lifespan: int

    @classmethod
    def load(cls, users_file: Path = USERS_FILE, realm_file: Path = REALM_FILE) -> DevRealm:
        realm = json.loads(realm_file.read_text())
        users = [User.from_representation(u) for u in json.loads(users_file.read_text())["users"]]
        return cls(name=realm["realm"], users={u.username: u for u in users},
                   clients={c["clientId"]: Client.from_representation(c) for c in realm["clients"]},
                   access_token_lifespan=realm["accessTokenLifespan"],
                   refresh_token_lifespan=realm["ssoSessionIdleTimeout"])

    def user(self, username: str) -> User | None:
        """Usernames are case-insensitive, as in Keycloak."""
        return self.users.get(username.lower())

    def user_by_id(self, user_id: str) -> User | None:
        return next((u for u in self.users.values() if u.id == user_id), None)

    def service_account(self, client_id: str) -> User | None:
        return next((u for u in self.users.values() if u.service_account_client == client_id), None)

    def demo_logins(self) -> list[User]:
        """People who can sign in with a password (not service accounts)."""
        return [u for u in self.users.values() if u.credential is not None and u.enabled]
