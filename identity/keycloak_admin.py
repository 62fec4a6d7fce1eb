"""Provision HimHIS users and realm roles in Keycloak from a roster CSV (Keycloak Admin REST API, idempotent).

Roster columns (header row required; see deploy/keycloak/roster.example.csv):
``username, first_name, last_name, email, roles`` (HimHIS realm roles, separated by ``;``),
``facility`` (IGMC/RPGMC, required for doctor and nurse), ``patient`` (FHIR Patient id, required for patient),
``temporary_password`` (optional; set only when the user is created, to be changed at first sign-in).
"""

from __future__ import annotations

import argparse
import csv
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from keycloak import KeycloakAdmin
from keycloak.exceptions import KeycloakGetError

from identity.principal import ROLES

COLUMNS = ("username", "first_name", "last_name", "email", "roles", "facility", "patient",
           "temporary_password")
STAFF_ROLES = frozenset({"doctor", "nurse"})
PROFILE_ATTRIBUTES = [  # Keycloak ≥ 24 keeps only attributes declared in the realm's user profile
    {"name": name, "displayName": display, "multivalued": False,
     "permissions": {"view": ["admin", "user"], "edit": ["admin"]}}
    for name, display in (("facility", "Facility"), ("patient", "FHIR Patient id"))
]


@dataclass(frozen=True, slots=True)
class RosterEntry:
    """One person on the roster."""

    username: str
    first_name: str
    last_name: str
    email: str
    roles: frozenset[str]
    facility: str = ""
    patient: str = ""
    temporary_password: str = ""

    def representation(self, attributes: dict[str, list[str]] | None = None) -> dict[str, Any]:
        """The Keycloak UserRepresentation fields the roster owns; other attributes are kept."""
        merged = {k: v for k, v in (attributes or {}).items() if k not in ("facility", "patient")}
        merged |= {k: [v] for k, v in (("facility", self.facility), ("patient", self.patient)) if v}
        return {"firstName": self.first_name or None, "lastName": self.last_name or None,
                "email": self.email or None,
                "enabled": True, "attributes": merged}


@dataclass(slots=True)
class ProvisionReport:
    """What a provisioning run did, by username."""

    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    roles_created: list[str] = field(default_factory=list)


def read_roster(path: Path | str) -> list[RosterEntry]:
    """Parse and check the roster; ValueError names the line of the first problem."""
    with Path(path).open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        missing = [c for c in COLUMNS[:5] if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: missing column(s) {', '.join(missing)}")
        entries: list[RosterEntry] = []
        for row in reader:
            line = f"{path}:{reader.line_num}"
            values = {c: (row.get(c) or "").strip() for c in COLUMNS}
            roles = frozenset(r.strip() for r in values["roles"].split(";") if r.strip())
            if not values["username"] or not roles:
                raise ValueError(f"{line}: username and roles are required")
            if unknown := roles - set(ROLES):
                raise ValueError(f"{line}: unknown role(s) {', '.join(sorted(unknown))}")
            if roles & STAFF_ROLES and not values["facility"]:
                raise ValueError(f"{line}: doctors and nurses need a facility")
            if "patient" in roles and not values["patient"]:
                raise ValueError(f"{line}: a patient login needs the FHIR Patient id in 'patient'")
            entries.append(RosterEntry(**{**values, "username": values["username"].lower(),
                                          "facility": values["facility"].upper(), "roles": roles}))
    if len({e.username for e in entries}) != len(entries):
        raise ValueError(f"{path}: a username appears twice")
    return entries


def ensure_user_profile(admin: KeycloakAdmin) -> None:
    """Declare ``facility`` and ``patient`` in the realm's user profile (Keycloak ≥ 24)."""
    try:
        config = admin.get_realm_users_profile()
    except KeycloakGetError as exc:
        if exc.response_code == 404:  # Keycloak before 24: attributes are free-form
            return
        raise
    declared = {a["name"] for a in config.get("attributes", [])}
    missing = [a for a in PROFILE_ATTRIBUTES if a["name"] not in declared]
    if missing:
        admin.update_realm_users_profile({**config, "attributes": [*config.get("attributes", []), *missing]})


def provision(admin: KeycloakAdmin, entries: list[RosterEntry]) -> ProvisionReport:
    """Create or update each roster user, their attributes and realm roles; a second run changes nothing."""
    report = ProvisionReport()
    ensure_user_profile(admin)
    existing_roles = {r["name"] for r in admin.get_realm_roles()}
    for role in ROLES:
        if role not in existing_roles:
            admin.create_realm_role({"name": role})
            report.roles_created.append(role)
    role_reps = {r["name"]: r for r in admin.get_realm_roles() if r["name"] in ROLES}
    for entry in entries:
        found = admin.get_users({"username": entry.username, "exact": True})
        if not found:
            payload = {"username": entry.username, **entry.representation()}
            if entry.temporary_password:
                payload["credentials"] = [{"type": "password", "value": entry.temporary_password,
                                           "temporary": True}]
            else:
                payload["requiredActions"] = ["UPDATE_PASSWORD"]
            user_id = admin.create_user(payload)
            admin.assign_realm_roles(user_id, [role_reps[r] for r in sorted(entry.roles)])
            report.created.append(entry.username)
            continue
        user_id = found[0]["id"]
        current = admin.get_user(user_id)
        wanted = entry.representation(current.get("attributes"))
        changed = any((current.get(k) or None) != (v or None) for k, v in wanted.items())  # "" ≡ {} ≡ absent
        if changed:
            admin.update_user(user_id, wanted)
        current_roles = {r["name"] for r in admin.get_realm_roles_of_user(user_id)} & set(ROLES)
        if add := entry.roles - current_roles:
            admin.assign_realm_roles(user_id, [role_reps[r] for r in sorted(add)])
        if remove := current_roles - entry.roles:
            admin.delete_realm_roles_of_user(user_id, [role_reps[r] for r in sorted(remove)])
        (report.updated if changed or add or remove else report.unchanged).append(entry.username)
    return report


def provision_from_roster(csv_path: Path | str, *, server_url: str, realm: str, admin_username: str,
                          admin_password: str, verify: bool | str = True) -> ProvisionReport:
    """Sign in as a master-realm administrator and provision ``realm`` from the roster at ``csv_path``."""
    entries = read_roster(csv_path)
    admin = KeycloakAdmin(server_url=server_url, username=admin_username, password=admin_password,
                          realm_name=realm, user_realm_name="master", verify=verify)
    return provision(admin, entries)


def main(argv: list[str] | None = None) -> None:
    """``python -m identity.keycloak_admin ROSTER.csv --server-url URL``; KEYCLOAK_ADMIN_PASSWORD in env."""
    parser = argparse.ArgumentParser(description="Provision HimHIS users in Keycloak from a roster CSV")
    parser.add_argument("roster", type=Path)
    parser.add_argument("--server-url", required=True, help="Keycloak base URL, e.g. https://sso.example.in/")
    parser.add_argument("--realm", default="himhis")
    parser.add_argument("--admin-user", default=os.environ.get("KEYCLOAK_ADMIN", "admin"))
    args = parser.parse_args(argv)
    password = os.environ.get("KEYCLOAK_ADMIN_PASSWORD")
    if not password:
        parser.error("set KEYCLOAK_ADMIN_PASSWORD")
    report = provision_from_roster(args.roster, server_url=args.server_url, realm=args.realm,
                                   admin_username=args.admin_user, admin_password=password)
    for label in ("roles_created", "created", "updated", "unchanged"):
        names = getattr(report, label)
        print(f"{label.replace('_', ' ')}: {len(names)}" + (f" ({', '.join(names)})" if names else ""))


if __name__ == "__main__":
    main()
