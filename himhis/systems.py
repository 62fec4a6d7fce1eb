"""Identifier and code-system URIs used across HimHIS (FHIR Identifier.system, Coding.system)."""

BASE = "https://himhis.hp.gov.in/fhir"

UHID = f"{BASE}/sid/uhid"  # hospital UHID, e.g. IGMC-2026-000123
USERNAME = f"{BASE}/sid/username"  # staff login name (Practitioner.identifier)
FACILITY = f"{BASE}/sid/facility"  # facility code: IGMC, RPGMC
OIDC_CLIENT = f"{BASE}/sid/oidc-client"  # the OIDC client id of a system (Organization.identifier), e.g. lab-gateway
ABHA = "https://healthid.ndhm.gov.in"  # ABHA number (XX-XXXX-XXXX-XXXX)
HIMPARIVAR = "https://himparivar.hp.gov.in/member-id"
HIMCARE = "https://himcare.hp.gov.in/card-number"

EXT_NAME_DEVANAGARI = f"{BASE}/StructureDefinition/name-devanagari"
EXT_RELATIVE_NAME = f"{BASE}/StructureDefinition/father-or-husband-name"
