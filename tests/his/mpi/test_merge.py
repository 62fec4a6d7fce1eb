"""Merging two records of one person: links, moved references, both histories kept, audited, in scope."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from audit.service import A
from tests.his.conftest import registration

AMB = {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"}


@pytest.fixture
def pair(client, register, staff):
    """Two registrations of one woman at IGMC, the duplicate with an Encounter and an Observation."""
    keep = register(registration()).json()["id"]
    dup = register(registration(given="Kamala", mobile="")).json()["id"]
    nurse = staff["nurse.igmc"]
    r = client.post("/fhir/Encounter", headers=nurse, json={
        "resourceType": "Encounter", "status": "finished", "class": AMB, "subject": {"reference": f"Patient/{dup}"}})
    assert r.status_code == 201, r.text
    enc = r.json()["id"]
    r = client.post("/fhir/Observation", headers=nurse, json={
        "resourceType": "Observation", "status": "final", "code": {"text": "Hb"},
        "subject": {"reference": f"Patient/{dup}"}, "encounter": {"reference": f"Encounter/{enc}"}})
    assert r.status_code == 201, r.text
    return {"keep": keep, "dup": dup, "enc": enc, "obs": r.json()["id"]}


def test_merge_links_moves_references_and_keeps_histories(client, staff, pair, db):
    nurse = staff["nurse.igmc"]
    r = client.post(f"/api/patients/{pair['dup']}/merge", json={"target": pair["keep"]}, headers=nurse)
    assert r.status_code == 200, r.text
    assert r.json()["source"] == pair["dup"] and len(r.json()["moved"]) == 2
    dup = client.get(f"/fhir/Patient/{pair['dup']}", headers=nurse).json()
    keep = client.get(f"/fhir/Patient/{pair['keep']}", headers=nurse).json()
    assert dup["active"] is False
    assert dup["link"] == [{"other": {"reference": f"Patient/{pair['keep']}"}, "type": "replaced-by"}]
    assert keep["link"] == [{"other": {"reference": f"Patient/{pair['dup']}"}, "type": "replaces"}]
    assert keep.get("active") is True
    obs = client.get(f"/fhir/Observation/{pair['obs']}", headers=nurse).json()
    assert obs["subject"]["reference"] == f"Patient/{pair['keep']}" and obs["meta"]["versionId"] == "2"
    assert obs["encounter"]["reference"] == f"Encounter/{pair['enc']}"
    # The earlier version still names the duplicate: history is kept.
    old = client.get(f"/fhir/Observation/{pair['obs']}/_history/1", headers=nurse).json()
    assert old["subject"]["reference"] == f"Patient/{pair['dup']}"
    # Searches by the kept patient now find what was recorded against the duplicate.
    found = client.get("/fhir/Observation", params={"subject": f"Patient/{pair['keep']}"}, headers=nurse).json()
    assert [e["resource"]["id"] for e in found["entry"]] == [pair["obs"]]
    assert client.get("/fhir/Encounter", params={"subject": f"Patient/{pair['dup']}"},
                      headers=nurse).json().get("entry", []) == []
    # Audited: one $merge operation naming both patients, and an update per resource stored again.
    rows = db.run(lambda s: s.execute(select(A.c.interaction, A.c.resource_type, A.c.resource_id, A.c.patient_ids,
                                             A.c.query).where(A.c.query.like("$merge%"))
                                      .order_by(A.c.seq)).all(), write=False)
    assert sorted((r.interaction, r.resource_type) for r in rows) == [
        ("operation", "Patient"), ("update", "Encounter"), ("update", "Observation"), ("update", "Patient"),
        ("update", "Patient")]
    # Each entry names both patients, so the duplicate's access log shows what left its record.
    assert all(set(r.patient_ids.split(",")) == {pair["dup"], pair["keep"]} for r in rows)


def test_merge_by_uhid_through_the_page(client, staff, pair):
    client.post("/login", data={"username": "nurse.igmc", "password": "demo"})
    uhid = client.get(f"/api/patients/{pair['keep']}", headers=staff["nurse.igmc"]).json()["uhid"]
    r = client.post(f"/patients/{pair['dup']}/merge", data={"target": uhid}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith(f"/patients/{pair['keep']}")
    page = client.get(f"/patients/{pair['dup']}")
    assert "merged into" in page.text


def test_refused_merges(client, staff, pair):
    nurse = staff["nurse.igmc"]
    url = f"/api/patients/{pair['dup']}/merge"
    assert client.post(url, json={"target": pair["dup"]}, headers=nurse).status_code == 400
    assert client.post(url, json={"target": "no-such-patient"}, headers=nurse).status_code == 404
    assert client.post(url, json={}, headers=nurse).status_code == 400
    assert client.post(url, content=b"{", headers=nurse).status_code == 400
    assert client.post(url, json={"target": "IGMC-2026-999999"}, headers=nurse).status_code == 404
    assert client.post(url, json={"target": pair["keep"]}).status_code == 401
    assert client.post(url, json={"target": pair["keep"]}, headers=staff["auditor"]).status_code == 403
    # Another facility's nurse cannot see either record, so cannot merge them.
    r = client.post(url, json={"target": pair["keep"]}, headers=staff["nurse.rpgmc"])
    assert r.status_code == 404
    assert client.get(f"/fhir/Patient/{pair['dup']}", headers=nurse).json().get("link") is None
    # Once merged, the duplicate cannot be merged again, nor be the record kept.
    assert client.post(url, json={"target": pair["keep"]}, headers=nurse).status_code == 200
    assert client.post(url, json={"target": pair["keep"]}, headers=nurse).status_code == 409
    r = client.post(f"/api/patients/{pair['keep']}/merge", json={"target": pair["dup"]}, headers=nurse)
    assert r.status_code == 409


def test_a_failed_merge_changes_nothing(client, staff, pair):
    """A nurse may update Patients, Encounters and Observations but not a MedicationRequest: the merge is
    refused part-way and nothing of it is kept."""
    r = client.post("/fhir/MedicationRequest", headers=staff["doctor.igmc"], json={
        "resourceType": "MedicationRequest", "status": "active", "intent": "order",
        "medicationCodeableConcept": {"text": "Paracetamol"}, "subject": {"reference": f"Patient/{pair['dup']}"}})
    assert r.status_code == 201, r.text
    nurse = staff["nurse.igmc"]
    r = client.post(f"/api/patients/{pair['dup']}/merge", json={"target": pair["keep"]}, headers=nurse)
    assert r.status_code == 403 and "MedicationRequest" in r.json()["error_description"]
    for path in (f"Observation/{pair['obs']}", f"Encounter/{pair['enc']}"):
        res = client.get(f"/fhir/{path}", headers=nurse).json()
        assert res["meta"]["versionId"] == "1" and res["subject"]["reference"] == f"Patient/{pair['dup']}"
    assert client.get(f"/fhir/Patient/{pair['dup']}", headers=nurse).json()["active"] is True
    # A doctor may update all of them.
    r = client.post(f"/api/patients/{pair['dup']}/merge", json={"target": pair["keep"]}, headers=staff["doctor.igmc"])
    assert r.status_code == 200 and len(r.json()["moved"]) == 3
