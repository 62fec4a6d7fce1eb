"""Staff see the patients of their own facility; break-glass widens that, with a reason, for a while."""

from __future__ import annotations

import pytest
from sqlalchemy import update

from himhis.models import BreakGlass
from himhis.systems import FACILITY
from tests.conftest import get_token, mint_token, steward_headers


@pytest.fixture
def hospitals(client, settings):
    """A at IGMC by registration, B at RPGMC by an encounter in a department, C at neither."""
    steward = steward_headers(client, settings)

    def put(resource):
        r = client.put(f"/fhir/{resource['resourceType']}/{resource['id']}", json=resource, headers=steward)
        assert r.status_code in (200, 201), r.text

    for code in ("IGMC", "RPGMC"):
        put({"resourceType": "Organization", "id": code.lower(), "name": code,
             "identifier": [{"system": FACILITY, "value": code}]})
    put({"resourceType": "Organization", "id": "rpgmc-medicine", "name": "Medicine",
         "partOf": {"reference": "Organization/rpgmc"}})
    put({"resourceType": "Patient", "id": "a", "managingOrganization": {"reference": "Organization/igmc"}})
    put({"resourceType": "Patient", "id": "b"})
    put({"resourceType": "Patient", "id": "c"})
    put({"resourceType": "Encounter", "id": "enc-b", "status": "finished", "subject": {"reference": "Patient/b"},
         "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
         "serviceProvider": {"reference": "Organization/rpgmc-medicine"}})
    for p in "abc":
        put({"resourceType": "Observation", "id": f"obs-{p}", "status": "final", "code": {"text": "Hb"},
             "subject": {"reference": f"Patient/{p}"}})
    return {name: {"Authorization": f"Bearer {get_token(client, name)}"}
            for name in ("doctor.igmc", "nurse.rpgmc", "doctor.rpgmc", "auditor", "admin")}


def seen(client, headers, query: str) -> list[str]:
    r = client.get(f"/fhir/{query}", headers=headers)
    assert r.status_code == 200, r.text
    return sorted(e["resource"]["id"] for e in r.json().get("entry", []))


def test_each_facility_sees_its_own_patients(client, hospitals):
    igmc, rpgmc = hospitals["doctor.igmc"], hospitals["nurse.rpgmc"]
    assert seen(client, igmc, "Patient") == ["a"]
    assert seen(client, igmc, "Observation") == ["obs-a"]
    assert seen(client, rpgmc, "Patient") == ["b"]
    assert seen(client, rpgmc, "Observation") == ["obs-b"]
    assert client.get("/fhir/Patient/b", headers=igmc).status_code == 404
    assert client.get("/fhir/Observation/obs-a", headers=rpgmc).status_code == 404
    assert client.get("/fhir/Patient/c/$everything", headers=igmc).status_code == 404
    # Infrastructure is not patient data.
    assert seen(client, igmc, "Organization") == ["igmc", "rpgmc", "rpgmc-medicine"]
    # Writing to another facility's patient is refused as if it did not exist.
    obs_b = {"resourceType": "Observation", "id": "obs-b", "status": "cancelled", "code": {"text": "Hb"},
             "subject": {"reference": "Patient/b"}}
    assert client.put("/fhir/Observation/obs-b", json=obs_b, headers=igmc).status_code == 404
    assert client.delete("/fhir/Observation/obs-b", headers=igmc).status_code == 404


def test_break_glass_for_one_patient_then_all(client, db, hospitals):
    igmc = hospitals["doctor.igmc"]
    short = client.post("/break-glass", json={"reason": "help", "patient": "b"}, headers=igmc)
    assert short.status_code == 400 and "reason" in short.json()["error_description"]
    r = client.post("/break-glass", json={"reason": "Unconscious patient in casualty, no facility record",
                                          "patient": "b", "minutes": 30}, headers=igmc)
    assert r.status_code == 201 and r.json()["patient"] == "b"
    assert seen(client, igmc, "Patient") == ["a", "b"]
    assert seen(client, igmc, "Observation") == ["obs-a", "obs-b"]
    assert client.get("/fhir/Patient/c", headers=igmc).status_code == 404
    r = client.post("/break-glass", data={"reason": "Mass casualty: records of every patient needed"},
                    headers=igmc)
    assert r.status_code == 201
    assert seen(client, igmc, "Patient") == ["a", "b", "c"]
    # Grants end by themselves.
    db.run(lambda s: s.execute(update(BreakGlass).values(expires=BreakGlass.started)))
    assert seen(client, igmc, "Patient") == ["a"]


def test_who_may_break_glass_and_who_reviews(client, hospitals):
    body = {"reason": "Testing who may ask for emergency access"}
    assert client.post("/break-glass", json=body, headers=hospitals["admin"]).status_code == 403
    assert client.post("/break-glass", json={**body, "minutes": 999},
                       headers=hospitals["doctor.rpgmc"]).status_code == 400
    assert client.post("/break-glass", json=body, headers=hospitals["doctor.rpgmc"]).status_code == 201
    assert client.get("/break-glass", headers=hospitals["doctor.rpgmc"]).status_code == 403
    grants = client.get("/break-glass", headers=hospitals["auditor"]).json()
    mine = [g for g in grants if g["username"] == "doctor.rpgmc"]
    assert len(mine) == 1 and mine[0]["reason"] == body["reason"] and mine[0]["facility"] == "RPGMC"


def test_access_under_break_glass_is_audited_with_the_reason(client, hospitals):
    igmc = hospitals["doctor.igmc"]
    reason = "Referred from PHC Theog at night, previous records needed"
    assert client.post("/break-glass", json={"reason": reason, "patient": "b"}, headers=igmc).status_code == 201
    assert client.get("/fhir/Patient/b", headers=igmc).status_code == 200
    log = client.get("/fhir/AuditEvent?agent=doctor.igmc&patient=Patient/b", headers=hospitals["auditor"]).json()
    reads = [e["resource"] for e in log["entry"] if e["resource"]["subtype"][0]["code"] == "read"]
    assert reads, log
    purpose = reads[0]["agent"][0]["purposeOfUse"][0]
    assert purpose["coding"][0]["code"] == "ETREAT" and purpose["text"] == reason
    # The patient can see who opened their record, and why.
    token = mint_token(client.app.state.settings, roles=("patient",), username="patient.b", patient="b")
    patient_b = {"Authorization": f"Bearer {token}"}
    own = client.get("/fhir/AuditEvent", headers=patient_b).json()
    assert any(e["resource"]["agent"][0].get("name") == "doctor.igmc" for e in own["entry"])

