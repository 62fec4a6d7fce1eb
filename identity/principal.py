"""The authenticated caller, as every module sees it."""

from __future__ import annotations

from dataclasses import dataclass, field

ROLES = ("doctor", "nurse", "lab-system", "patient", "nhm-manager", "admin", "auditor")


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: from a validated OIDC access token (Keycloak or the development provider)."""

    subject: str
    username: str | None = None
    roles: frozenset[str] = field(default_factory=frozenset)
    facility: str | None = None  # IGMC or RPGMC for staff
    patient_id: str | None = None  # the Patient resource id for a patient login
    client_id: str | None = None  # the OIDC client (azp) the token was issued to
    name: str | None = None

    def has_role(self, *roles: str) -> bool:
        return any(r in self.roles for r in roles)
