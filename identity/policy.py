"""Authorisation in one place: which role may do which interaction on which resource type.

The rules are data (``identity/data/policy.json``); this module only reads them. Facility scope and
the patient compartment narrow what a permitted interaction may touch; they are applied by the
store's repositories, not here.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

import orjson

from himhis.errors import ForbiddenError
from identity.principal import Principal

POLICY_FILE = Path(__file__).parent / "data" / "policy.json"
INTERACTIONS = ("read", "search", "history", "create", "update", "delete")
AUDIT_TYPES = frozenset({"AuditEvent"})


@dataclass(frozen=True, slots=True)
class RoleRules:
    types: dict[str, frozenset[str]]  # interaction -> resource types ("*" = all but AuditEvent)
    transaction: bool
    batch: bool


@dataclass(frozen=True)
class Policy:
    roles: dict[str, RoleRules]

    def allows(self, principal: Principal, interaction: str, res_type: str | None) -> bool:
        """True if any of the principal's roles permits ``interaction`` on ``res_type`` (None = every type)."""
        for role in principal.roles:
            rules = self.roles.get(role)
            if rules is None:
                continue
            if interaction in ("transaction", "batch"):
                if getattr(rules, interaction):
                    return True
                continue
            allowed = rules.types.get(interaction, frozenset())
            if res_type is None:
                if "*" in allowed:
                    return True
            elif res_type in allowed or ("*" in allowed and res_type not in AUDIT_TYPES):
                return True
        return False

    def check(self, principal: Principal, interaction: str, res_type: str | None) -> None:
        if not self.allows(principal, interaction, res_type):
            what = f"{interaction} on {res_type}" if res_type else interaction
            roles = ", ".join(sorted(principal.roles)) or "no role"
            raise ForbiddenError(f"Your role ({roles}) does not permit {what}")

    def describe(self) -> str:
        """A readable summary for the CapabilityStatement's security section."""
        lines = []
        for role, rules in sorted(self.roles.items()):
            parts = [f"{i}: {', '.join(sorted(rules.types[i])) or 'none'}" for i in INTERACTIONS if i in rules.types]
            ops = [f"{k}: {', '.join(sorted(v))}" for k, v in rules.types.items() if k.startswith("operation:")]
            flags = [k for k in ("transaction", "batch") if getattr(rules, k)]
            lines.append(f"{role} — " + "; ".join(parts + ops + ([", ".join(flags)] if flags else [])))
        return "\n".join(lines)


def _expand(names: list[str], groups: dict[str, list[str]]) -> frozenset[str]:
    out: set[str] = set()
    for name in names:
        if name == "*":
            out.add("*")
        elif name in ("patient-data", "clinical"):
            out |= _patient_data() - (AUDIT_TYPES if name == "clinical" else frozenset())
        elif name in groups:
            out |= set(groups[name])
        else:
            out.add(name)
    return frozenset(out)


@cache
def _patient_data() -> frozenset[str]:
    """Patient and every type in the patient compartment (CompartmentDefinition/patient)."""
    from ehr.search import registry

    return frozenset({"Patient"} | {t for t in registry.resource_types() if registry.patient_compartment_params(t)})


@cache
def policy() -> Policy:
    data = orjson.loads(POLICY_FILE.read_bytes())
    groups = data["groups"]
    roles = {}
    for role, rules in data["roles"].items():
        types = {k: _expand(v, groups) for k, v in rules.items() if isinstance(v, list)}
        roles[role] = RoleRules(types, bool(rules.get("transaction")), bool(rules.get("batch")))
    return Policy(roles)
