"""Identifier and code-system URIs used across HimHIS (FHIR Identifier.system, Coding.system)."""

BASE = "https://himhis.hp.gov.in/fhir"

UHID = f"{BASE}/sid/uhid"  # hospital UHID, e.g. IGMC-2026-000123
USERNAME = f"{BASE}/sid/username"  # staff login name (Practitioner.identifier)
FACILITY = f"{BASE}/sid/facility"  # facility code: IGMC, RPGMC
OIDC_CLIENT = f"{BASE}/sid/oidc-client"  # the OIDC client id of a system (Organization.identifier), e.g. lab-gateway
PLACER_ORDER = f"{BASE}/sid/placer-order"  # placer order number HimHIS gives an order (ORC-2/OBR-2)
FILLER_ORDER = f"{BASE}/sid/filler-order"  # a laboratory's filler order number: "<MSH-4>/<OBR-3>"
LAB_RESULT = f"{BASE}/sid/lab-result"  # one result of a lab order: "<MSH-4>/<OBR-3>/<OBX-3>/<OBX-4>"
LAB_SPECIMEN = f"{BASE}/sid/lab-specimen"  # a laboratory's specimen id: "<MSH-4>/<SPM-2 or OBR-3>"
HL7_INBOX = f"{BASE}/sid/hl7-inbox"  # the id of a received HL7 v2 message in the interfaces inbox
ABHA = "https://healthid.ndhm.gov.in"  # ABHA number (XX-XXXX-XXXX-XXXX)
HIMPARIVAR = "https://himparivar.hp.gov.in/member-id"
HIMCARE = "https://himcare.hp.gov.in/card-number"

EXT_NAME_DEVANAGARI = f"{BASE}/StructureDefinition/name-devanagari"
EXT_RELATIVE_NAME = f"{BASE}/StructureDefinition/father-or-husband-name"
