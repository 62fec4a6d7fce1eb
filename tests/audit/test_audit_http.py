"""Audit completeness through the FHIR API: every read and write of patient data, refused or not, is in the
log, and the log is served as AuditEvent to auditors and, for their own record, to patients."""

from __future__ import annotations

import pytest
from fhir.resources.R4B.auditevent import AuditEvent

from audit.verify import verify
from himhis.systems import FACILITY
from tests.conftest import mint_token, steward_headers

LOINC = "http://loinc.org"


def bearer(settings, *roles: str, **kw) -> dict:
    return {"Authorization": f"Bearer {mint_token(settings, roles=roles, **kw)}", "User-Agent": "audit-test/1"}


@pytest.fixture
def doctor(client, settings):
    """A doctor at IGMC, whose patients are registered there."""
    org = {"resourceType": "Organization", "id": "igmc", "name": "IGMC Shimla",
           "identifier": [{"system": FACILITY, "value": "IGMC"}]}
    assert client.put("/fhir/Organization/igmc", json=org, headers=steward_headers(client, settings)).status_code == 201
    return bearer(settings, "doctor", username="dr.audit", facility="IGMC")


@pytest.fixture
def auditor(settings):
    return bearer(settings, "auditor", username="aud.itor")


def events(client, auditor, query: str = "") -> list[dict]:
    r = client.get(f"/fhir/AuditEvent?_count=200{query}", headers=auditor)
    assert r.status_code == 200, r.text
    found = [e["resource"] for e in r.json().get("entry", [])]
    for e in found:
        AuditEvent.model_validate(e)
    return found


def summary(e: dict) -> tuple:
    what = [x["what"]["reference"] for x in e.get("entity", []) if x["role"]["code"] == "4"]
    patients = sorted(x["what"]["reference"] for x in e.get("entity", []) if x["role"]["code"] == "1")
    return e["subtype"][0]["code"], e["outcome"], what[0] if what else None, patients


def test_every_interaction_is_recorded(client, db, doctor, auditor, settings):
    r = client.put("/fhir/Patient/p1", json={"resourceType": "Patient", "id": "p1", "name": [{"family": "Thakur"}],
                                             "managingOrganization": {"reference": "Organization/igmc"}},
                   headers=doctor)
    assert r.status_code == 201, r.text
    obs = {"resourceType": "Observation", "status": "final", "code": {"coding": [{"system": LOINC, "code": "718-7"}]},
           "subject": {"reference": "Patient/p1"}}
    oid = client.post("/fhir/Observation", json=obs, headers=doctor).json()["id"]
    assert client.get(f"/fhir/Observation/{oid}", headers=doctor).status_code == 200
    assert client.get(f"/fhir/Observation/{oid}/_history/1", headers=doctor).status_code == 200
    assert client.get("/fhir/Observation?code=718-7", headers=doctor).json()["total"] == 1
    assert client.get(f"/fhir/Observation/{oid}/_history", headers=doctor).status_code == 200
    assert client.get("/fhir/Patient/p1/$everything", headers=doctor).status_code == 200
    assert client.get("/fhir/Observation/nope", headers=doctor).status_code == 404
    tx = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {**obs, "status": "amended"}, "request": {"method": "POST", "url": "Observation"}}]}
    assert client.post("/fhir", json=tx, headers=doctor).status_code == 200
    assert client.delete(f"/fhir/Observation/{oid}", headers=doctor).status_code == 200
    nurse = bearer(settings, "nurse", username="nu.rse")
    assert client.delete("/fhir/Patient/p1", headers=nurse).status_code == 403

    log = [summary(e) for e in reversed(events(client, auditor))
           if e["agent"][0].get("name") in ("dr.audit", "nu.rse")]
    assert log == [
        ("update", "0", "Patient/p1/_history/1", ["Patient/p1"]),
        ("create", "0", f"Observation/{oid}/_history/1", ["Patient/p1"]),
        ("read", "0", f"Observation/{oid}/_history/1", ["Patient/p1"]),
        ("vread", "0", f"Observation/{oid}/_history/1", ["Patient/p1"]),
        ("search-type", "0", None, ["Patient/p1"]),
        ("history-instance", "0", f"Observation/{oid}", ["Patient/p1"]),
        ("operation", "0", "Patient/p1", ["Patient/p1"]),
        ("read", "4", "Observation/nope", []),
        ("transaction", "0", None, ["Patient/p1"]),
        ("delete", "0", f"Observation/{oid}/_history/2", ["Patient/p1"]),
        ("delete", "4", "Patient/p1", []),
    ]
    first = events(client, auditor, "&subtype=update")[0]
    user = first["agent"][0]
    assert (user["name"], user["requestor"], first["source"]["site"]) == ("dr.audit", True, "IGMC")
    assert first["agent"][1]["network"]["address"] == "testclient"
    assert db.run(verify, write=False).ok


def test_a_patient_reads_who_saw_their_record(client, doctor, auditor, settings):
    for pid in ("p1", "p2"):
        client.put(f"/fhir/Patient/{pid}", json={"resourceType": "Patient", "id": pid}, headers=doctor)
    client.get("/fhir/Patient/p2", headers=doctor)
    me = bearer(settings, "patient", username="pat.one", patient="p1")
    r = client.get("/fhir/AuditEvent", headers=me)
    assert r.status_code == 200, r.text
    seen = [summary(e["resource"]) for e in r.json()["entry"]]
    assert seen == [("update", "0", "Patient/p1/_history/1", ["Patient/p1"])]
    other = client.get("/fhir/AuditEvent?patient=p2", headers=me).json()  # asking for another patient's log
    assert [summary(e["resource"])[3] for e in other["entry"]] == [["Patient/p1"]]
    assert client.get("/fhir/AuditEvent", headers=doctor).status_code == 403
    # The auditors' and the patient's reading of the log are themselves in the log.
    assert {summary(e)[0] for e in events(client, auditor, "&entity=AuditEvent")} == {"search-type"}
