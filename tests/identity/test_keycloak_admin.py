"""Roster provisioning through python-keycloak's KeycloakAdmin, against a contract fake served over HTTP.

The fake implements the Keycloak Admin REST API resources the provisioner uses, as documented at
https://www.keycloak.org/docs-api/latest/rest-api/ (users, users/profile, roles, role-mappings/realm),
and the master realm's token endpoint for ``admin-cli``.
"""

from __future__ import annotations

import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from fastapi import Depends, FastAPI, HTTPException, Request, Response
from fastapi.responses import JSONResponse
from keycloak.exceptions import KeycloakAuthenticationError

from identity.keycloak_admin import provision_from_roster, read_roster

if TYPE_CHECKING:
    from collections.abc import Callable

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "keycloak" / "roster.example.csv"
UP_DEFAULT = {"attributes": [{"name": n} for n in ("username", "email", "firstName", "lastName")],
              "groups": [], "unmanagedAttributePolicy": None}


@dataclass
class FakeRealm:
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    roles: dict[str, dict[str, Any]] = field(default_factory=dict)
    mappings: dict[str, set[str]] = field(default_factory=dict)
    profile: dict[str, Any] = field(default_factory=lambda: {**UP_DEFAULT})
    writes: int = 0

    def add_role(self, name: str) -> None:
        self.roles[name] = {"id": str(uuid.uuid4()), "name": name, "composite": False, "clientRole": False}


def fake_keycloak(realm: FakeRealm) -> FastAPI:
    app = FastAPI()

    @app.middleware("http")
    async def count_writes(request: Request, call_next: Any) -> Response:
        if request.url.path.startswith("/admin/") and request.method in {"POST", "PUT", "DELETE"}:
            realm.writes += 1
        return await call_next(request)

    def admin(request: Request) -> None:
        if request.headers.get("authorization") != "Bearer admin-token":
            raise HTTPException(401)

    @app.post("/realms/master/protocol/openid-connect/token")
    async def token(request: Request) -> JSONResponse:
        form = await request.form()
        if [form.get(k) for k in ("client_id", "username", "password")] != ["admin-cli", "admin", "pw"]:
            return JSONResponse({"error": "invalid_grant", "error_description": "Invalid user credentials"},
                                status_code=401)
        return JSONResponse({"access_token": "admin-token", "expires_in": 60, "refresh_token": "r",
                             "refresh_expires_in": 1800, "token_type": "Bearer"})

    base = "/admin/realms/himhis"
    guard = [Depends(admin)]

    @app.get(f"{base}/users/profile", dependencies=guard)
    def get_profile() -> dict[str, Any]:
        return realm.profile

    @app.put(f"{base}/users/profile", dependencies=guard)
    async def put_profile(request: Request) -> dict[str, Any]:
        realm.profile = await request.json()
        return realm.profile

    @app.get(f"{base}/users", dependencies=guard)
    def list_users(username: str = "", exact: str = "false", first: int = 0, max: int = 100) -> list[dict]:
        exact_match = exact.lower() == "true"
        found = [u for u in realm.users.values()
                 if (u["username"] == username.lower() if exact_match else username in u["username"])]
        return found[first:first + max]

    @app.post(f"{base}/users", dependencies=guard)
    async def create_user(request: Request) -> Response:
        rep = await request.json()
        if any(u["username"] == rep["username"] for u in realm.users.values()):
            return JSONResponse({"errorMessage": "User exists with same username"}, 409)
        user_id = str(uuid.uuid4())
        realm.users[user_id] = {**{k: v for k, v in rep.items() if v is not None}, "id": user_id}
        realm.mappings[user_id] = {"default-roles-himhis"}
        return Response(status_code=201, headers={"Location": f"http://kc{base}/users/{user_id}"})

    @app.get(f"{base}/users/{{user_id}}", dependencies=guard)
    def get_user(user_id: str) -> dict[str, Any]:
        return {k: v for k, v in realm.users[user_id].items() if k != "credentials"}

    @app.put(f"{base}/users/{{user_id}}", dependencies=guard)
    async def update_user(user_id: str, request: Request) -> Response:
        realm.users[user_id].update({k: v for k, v in (await request.json()).items() if v is not None})
        return Response(status_code=204)

    @app.get(f"{base}/users/{{user_id}}/role-mappings/realm", dependencies=guard)
    def user_roles(user_id: str) -> list[dict[str, Any]]:
        return [realm.roles[name] for name in sorted(realm.mappings[user_id])]

    @app.api_route(f"{base}/users/{{user_id}}/role-mappings/realm", methods=["POST", "DELETE"],
                   dependencies=guard)
    async def change_user_roles(user_id: str, request: Request) -> Response:
        names = {r["name"] for r in await request.json()}
        assert names <= realm.roles.keys()
        if request.method == "POST":
            realm.mappings[user_id] |= names
        else:
            realm.mappings[user_id] -= names
        return Response(status_code=204)

    @app.get(f"{base}/roles", dependencies=guard)
    def list_roles(first: int = 0, max: int = 100) -> list[dict[str, Any]]:
        return list(realm.roles.values())[first:first + max]

    @app.post(f"{base}/roles", dependencies=guard)
    async def create_role(request: Request) -> Response:
        name = (await request.json())["name"]
        realm.add_role(name)
        return Response(status_code=201, headers={"Location": f"http://kc{base}/roles/{name}"})

    return app


@pytest.fixture
def keycloak(serve_app: Callable[[FastAPI], str]) -> tuple[str, FakeRealm]:
    """The fake Keycloak over HTTP with a fresh realm that already has some roles."""
    realm = FakeRealm()
    for name in ("default-roles-himhis", "offline_access", "uma_authorization", "doctor"):
        realm.add_role(name)
    return serve_app(fake_keycloak(realm)) + "/", realm


def provision(url: str, roster: Path) -> Any:
    return provision_from_roster(roster, server_url=url, realm="himhis", admin_username="admin",
                                 admin_password="pw")


def test_example_roster_parses() -> None:
    entries = {e.username: e for e in read_roster(EXAMPLE)}
    assert len(entries) == 8
    assert entries["hod.medicine.igmc"].roles == {"doctor", "admin"}
    assert entries["patient.demo"].patient == "demo-patient-1" and entries["nurse.rpgmc"].facility == "RPGMC"


@pytest.mark.parametrize(("row", "message"), [
    ("x,A,B,,surgeon,IGMC,,", "unknown role"),
    ("x,A,B,,nurse,,,", "need a facility"),
    ("x,A,B,,patient,,,", "Patient id"),
    (",A,B,,doctor,IGMC,,", "required"),
    ("doctor.igmc,A,B,,doctor,IGMC,,", "appears twice"),
])
def test_roster_problems_are_reported_with_their_line(tmp_path: Path, row: str, message: str) -> None:
    roster = tmp_path / "roster.csv"
    roster.write_text(EXAMPLE.read_text() + row + "\n")
    with pytest.raises(ValueError, match=message):
        read_roster(roster)


def test_missing_columns(tmp_path: Path) -> None:
    (tmp_path / "r.csv").write_text("username,first_name\nx,y\n")
    with pytest.raises(ValueError, match="missing column"):
        read_roster(tmp_path / "r.csv")


def test_provisioning_is_idempotent(keycloak: tuple[str, FakeRealm], tmp_path: Path) -> None:
    url, realm = keycloak
    first = provision(url, EXAMPLE)
    assert len(first.created) == 8 and not first.updated and not first.unchanged
    assert set(first.roles_created) == {"nurse", "lab-system", "patient", "nhm-manager", "admin", "auditor"}
    assert {"facility", "patient"} <= {a["name"] for a in realm.profile["attributes"]}

    users = {u["username"]: u for u in realm.users.values()}
    doctor = users["doctor.igmc"]
    assert doctor["attributes"] == {"facility": ["IGMC"]} and doctor["firstName"] == "Anil"
    assert doctor["credentials"] == [{"type": "password", "value": "Change-Me-1", "temporary": True}]
    assert realm.mappings[doctor["id"]] == {"default-roles-himhis", "doctor"}
    assert users["patient.demo"]["attributes"] == {"patient": ["demo-patient-1"]}
    assert users["hod.medicine.igmc"]["requiredActions"] == ["UPDATE_PASSWORD"]
    assert realm.mappings[users["hod.medicine.igmc"]["id"]] == {"default-roles-himhis", "doctor", "admin"}

    writes = realm.writes
    second = provision(url, EXAMPLE)
    assert len(second.unchanged) == 8 and not (second.created or second.updated or second.roles_created)
    assert realm.writes == writes  # nothing written

    doctor["attributes"]["phone"] = ["+91-177-0000000"]  # set in Keycloak by someone else: kept
    changed = tmp_path / "roster.csv"
    shutil.copy(EXAMPLE, changed)
    text = changed.read_text().replace("nurse.igmc,Sunita,Negi,sunita.negi@igmc.example.in,nurse,IGMC",
                                       "nurse.igmc,Sunita,Negi,sunita.negi@igmc.example.in,nurse,RPGMC")
    text = text.replace("doctor;admin,IGMC", "doctor,IGMC")
    changed.write_text(text + "nurse.new,Asha,Bhardwaj,,nurse,IGMC,,Change-Me-9\n")
    third = provision(url, changed)
    assert third.created == ["nurse.new"] and sorted(third.updated) == ["hod.medicine.igmc", "nurse.igmc"]
    assert len(third.unchanged) == 6
    assert users["nurse.igmc"]["attributes"] == {"facility": ["RPGMC"]}
    assert realm.mappings[users["hod.medicine.igmc"]["id"]] == {"default-roles-himhis", "doctor"}
    assert doctor["attributes"] == {"facility": ["IGMC"], "phone": ["+91-177-0000000"]}


def test_wrong_admin_password(keycloak: tuple[str, FakeRealm]) -> None:
    url, realm = keycloak
    with pytest.raises(KeycloakAuthenticationError):
        provision_from_roster(EXAMPLE, server_url=url, realm="himhis", admin_username="admin",
                              admin_password="wrong")
    assert not realm.users
