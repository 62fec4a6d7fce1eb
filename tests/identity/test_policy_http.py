"""The role × interaction policy, enforced on the FHIR API for every demo role."""

from __future__ import annotations

import pytest

from tests.conftest import get_token, steward_headers

OBS = {"resourceType": "Observation", "status": "final", "code": {"text": "Hb"}}
ORG = {"resourceType": "Organization", "name": "PHC Theog"}

# (login, method, path, body, allowed?)
MATRIX = [
    ("doctor.igmc", "POST", "/fhir/Patient", {"resourceType": "Patient"}, True),
    ("doctor.igmc", "GET", "/fhir/Observation", None, True),
    ("doctor.igmc", "POST", "/fhir/Organization", ORG, False),
    ("doctor.igmc", "GET", "/fhir/AuditEvent", None, False),
    ("nurse.igmc", "POST", "/fhir/Observation", OBS, True),
    ("nurse.igmc", "POST", "/fhir/MedicationRequest", {"resourceType": "MedicationRequest"}, False),
    ("nurse.igmc", "DELETE", "/fhir/Observation/x", None, False),
    ("admin", "POST", "/fhir/Organization", ORG, True),
    ("admin", "GET", "/fhir/Patient", None, False),
    ("admin", "POST", "/fhir/Observation", OBS, False),
    ("auditor", "GET", "/fhir/Patient", None, False),
    ("auditor", "GET", "/fhir/AuditEvent", None, True),
    ("nhm.manager", "GET", "/fhir/Immunization", None, True),
    ("nhm.manager", "POST", "/fhir/Observation", OBS, False),
    ("patient.demo", "POST", "/fhir/Observation", OBS, False),
    ("patient.demo", "GET", "/fhir/_history", None, False),
]


@pytest.mark.parametrize(("login", "method", "path", "body", "allowed"), MATRIX,
                         ids=[f"{m[0]}-{m[1]}-{m[2]}" for m in MATRIX])
def test_role_matrix(client, login, method, path, body, allowed):
    token = get_token(client, login)
    r = client.request(method, path, json=body, headers={"Authorization": f"Bearer {token}"})
    if allowed:
        assert r.status_code != 403, r.text
    else:
        assert r.status_code == 403, r.text
        issue = r.json()["issue"][0]
        assert issue["code"] == "forbidden" and "does not permit" in issue["diagnostics"]


def test_lab_system_writes_results_but_cannot_browse_patients(client):
    r = client.post("/realms/himhis/protocol/openid-connect/token",
                    data={"grant_type": "client_credentials", "client_id": "lab-gateway",
                          "client_secret": "lab-secret"})
    headers = {"Authorization": f"Bearer {r.json()['access_token']}"}
    assert client.get("/fhir/Patient", headers=headers).status_code == 403
    assert client.get("/fhir/Patient/demo-patient-1", headers=headers).status_code == 403
    assert client.get("/fhir/ServiceRequest", headers=headers).status_code == 200
    # A result must hang off one of its orders (tests/identity/test_lab_scope.py); this one does not.
    assert client.post("/fhir/Observation", json=OBS, headers=headers).status_code == 403


def test_bundle_entries_are_checked_one_by_one(client, settings):
    nurse = {"Authorization": f"Bearer {get_token(client, 'nurse.igmc')}"}
    tx = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": OBS, "request": {"method": "POST", "url": "Observation"}},
        {"resource": ORG, "request": {"method": "POST", "url": "Organization"}}]}
    r = client.post("/fhir", json=tx, headers=nurse)
    assert r.status_code == 403
    steward = steward_headers(client, settings)
    assert client.get("/fhir/Observation?_summary=count", headers=steward).json()["total"] == 0
    batch = {**tx, "type": "batch"}
    entries = client.post("/fhir", json=batch, headers=nurse).json()["entry"]
    assert entries[0]["response"]["status"] == "201 Created" and entries[1]["response"]["status"] == "403"
    auditor = {"Authorization": f"Bearer {get_token(client, 'auditor')}"}
    assert client.post("/fhir", json=batch, headers=auditor).status_code == 403


def test_includes_leave_out_what_the_reader_may_not_read(client, settings, db):
    from ehr.search.engine import search

    steward = steward_headers(client, settings)
    org = client.post("/fhir/Organization", json=ORG, headers=steward).json()
    client.post("/fhir/Patient", json={"resourceType": "Patient", "managingOrganization": {
        "reference": f"Organization/{org['id']}"}}, headers=steward)
    pairs = [("_include", "Patient:organization")]

    def types(readable):
        b = db.run(lambda s: search(s, "Patient", pairs, base="", readable=readable), write=False)
        return sorted(e["resource"]["resourceType"] if isinstance(e["resource"], dict) else "x"
                      for e in b["entry"])

    assert len(types(None)) == 2
    assert len(types(lambda t: t != "Organization")) == 1


def test_capability_statement_publishes_the_policy(client):
    text = client.get("/fhir/metadata").json()["rest"][0]["security"]["description"]
    for role in ("doctor", "nurse", "lab-system", "patient", "nhm-manager", "admin", "auditor"):
        assert f"{role} —" in text
