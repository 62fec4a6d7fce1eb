"""Audit completeness at the service level: real store interactions through ``run_audited`` record who, what,
which patients and the outcome, for successes and failures, reads, searches and writes."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from audit.describe import bundle_keys, of_bundle, of_stored, of_versions, of_write, patients_of
from audit.service import MINOR_FAILURE, A, AuditEntry, run_audited
from audit.verify import verify
from ehr.search.engine import search
from ehr.service import FhirStore
from himhis.errors import InvalidError, NotFoundError
from identity.principal import Principal

BASE = "http://127.0.0.1:8000/fhir"
UHID = "https://himhis.hp.gov.in/fhir/sid/uhid"
HB = {"coding": [{"system": "http://loinc.org", "code": "718-7", "display": "Hemoglobin"}]}
DOCTOR = Principal(subject="sub-doc", username="doctor.igmc", roles=frozenset({"doctor"}), facility="IGMC",
                   client_id="himhis-web")


def patient(pid: str) -> dict:
    return {"resourceType": "Patient", "id": pid, "name": [{"family": "Thakur"}],
            "identifier": [{"system": UHID, "value": f"IGMC-2026-{pid}"}]}


def observation(pid: str, value: float = 12.5) -> dict:
    return {"resourceType": "Observation", "status": "final", "code": HB, "subject": {"reference": f"Patient/{pid}"},
            "valueQuantity": {"value": value, "unit": "g/dL", "system": "http://unitsofmeasure.org",
                              "code": "g/dL"}}


def entry(interaction: str, **kw) -> AuditEntry:
    return AuditEntry.by(DOCTOR, interaction, source_ip="10.20.0.7", **kw)


def log(db):
    return db.run(lambda s: s.execute(select(A).order_by(A.c.seq)).all(), write=False)


def test_patients_of_a_resource_follow_the_patient_compartment():
    assert patients_of(patient("p1")) == ["p1"]
    assert patients_of(observation("p1")) == ["p1"]
    encounter = {"resourceType": "Encounter", "status": "finished", "class": {"code": "AMB"},
                 "subject": {"reference": "Patient/p2"}, "participant": [{"individual": {"reference":
                                                                                       "Practitioner/d1"}}]}
    assert patients_of(encounter) == ["p2"]
    assert patients_of({"resourceType": "Organization", "name": "IGMC"}) == []


def test_bundle_keys_read_full_urls_resources_and_locations():
    bundle = {"entry": [{"fullUrl": f"{BASE}/Observation/o1"},
                        {"resource": {"resourceType": "Patient", "id": "p1"}},
                        {"fullUrl": "urn:uuid:0b7f", "response": {"location": "Encounter/e1/_history/2"}},
                        {"resource": {"resourceType": "Bundle", "type": "searchset",
                                      "entry": [{"fullUrl": f"{BASE}/Condition/c1"}]}}]}
    assert bundle_keys(bundle) == [("Observation", "o1"), ("Patient", "p1"), ("Encounter", "e1"), ("Condition", "c1")]


@pytest.fixture
def store_data(db):
    """Two patients with one haemoglobin result each, written through run_audited."""
    for pid in ("p1", "p2"):
        run_audited(db, lambda s, pid=pid: FhirStore(s).update("Patient", pid, patient(pid)),
                    entry("update", resource_type="Patient"), write=True, details=of_write)
    ids = [run_audited(db, lambda s, pid=pid: FhirStore(s).create(observation(pid)),
                       entry("create", resource_type="Observation"), write=True, details=of_write).stored.res_id
           for pid in ("p1", "p2")]
    return ids


def test_writes_are_recorded_with_their_resource_and_patients(db, store_data):
    rows = log(db)
    assert [(r.interaction, r.resource_type, r.version_id, r.patient_ids, r.outcome) for r in rows] == [
        ("update", "Patient", "1", "p1", 0), ("update", "Patient", "1", "p2", 0),
        ("create", "Observation", "1", "p1", 0), ("create", "Observation", "1", "p2", 0)]
    assert [r.resource_id for r in rows[2:]] == store_data
    assert {(r.actor_username, r.actor_roles, r.actor_facility, r.client_id, r.source_ip) for r in rows} == {
        ("doctor.igmc", "doctor", "IGMC", "himhis-web", "10.20.0.7")}


def test_reads_searches_and_deletes_are_recorded(db, store_data):
    obs1, obs2 = store_data
    run_audited(db, lambda s: FhirStore(s).read("Observation", obs1), entry("read", resource_type="Observation"),
                write=False, details=of_stored)
    pairs = [("code", "http://loinc.org|718-7")]
    bundle = run_audited(db, lambda s: search(s, "Observation", pairs, base=BASE),
                         entry("search-type", resource_type="Observation", query="code=http://loinc.org|718-7"),
                         write=False, details=of_bundle)
    assert len(bundle["entry"]) == 2
    run_audited(db, lambda s: FhirStore(s).delete("Observation", obs2), entry("delete", resource_type="Observation"),
                write=True, details=of_write)
    run_audited(db, lambda s: FhirStore(s).history("Observation", obs2),
                entry("history-instance", resource_type="Observation", resource_id=obs2), write=False,
                details=of_versions)
    read, searched, deleted, history = log(db)[4:]
    assert (history.interaction, history.patient_ids) == ("history-instance", "p2")
    assert (read.interaction, read.resource_id, read.version_id, read.patient_ids) == ("read", obs1, "1", "p1")
    assert (searched.interaction, searched.query, sorted(searched.patient_ids.split(","))) == (
        "search-type", "code=http://loinc.org|718-7", ["p1", "p2"])
    assert (deleted.interaction, deleted.resource_id, deleted.version_id, deleted.patient_ids) == (
        "delete", obs2, "2", "p2")
    assert db.run(verify, write=False).ok


def test_failed_attempts_are_recorded_and_the_error_raised(db, store_data):
    with pytest.raises(NotFoundError):
        run_audited(db, lambda s: FhirStore(s).read("Observation", "nope"),
                    entry("read", resource_type="Observation", resource_id="nope"), write=False, details=of_stored)
    with pytest.raises(InvalidError):
        run_audited(db, lambda s: FhirStore(s).create({"resourceType": "Observation", "code": HB}),
                    entry("create", resource_type="Observation"), write=True, details=of_write)
    missing, invalid = log(db)[4:]
    assert (missing.outcome, missing.resource_id) == (MINOR_FAILURE, "nope")
    assert missing.outcome_detail.startswith("404 Observation/nope")
    assert invalid.outcome == MINOR_FAILURE and invalid.outcome_detail.startswith("400 ")
    total = db.run(lambda s: search(s, "Observation", [("_summary", "count")], base=BASE)["total"], write=False)
    assert total == 2  # the invalid create wrote nothing


def test_a_write_and_its_audit_record_commit_together(db, store_data):
    def update_then_fail(session):
        FhirStore(session).update("Patient", "p1", {**patient("p1"), "gender": "female"})
        raise InvalidError("refused after the write")

    with pytest.raises(InvalidError):
        run_audited(db, update_then_fail, entry("update", resource_type="Patient", resource_id="p1"), write=True)
    assert db.run(lambda s: FhirStore(s).read("Patient", "p1").version_id, write=False) == 1
    failed = log(db)[-1]
    assert (failed.interaction, failed.outcome, failed.patient_ids) == ("update", MINOR_FAILURE, None)


def test_a_transaction_names_the_patients_it_wrote_deleted_and_read(client, db, settings):
    """Patients come from the values just written, the deleted version's content, and the GET entries."""
    from sqlalchemy import select

    from audit.service import A as LOG
    from tests.conftest import steward_headers

    steward = steward_headers(client, settings)
    for pid in ("p1", "p2", "p3"):
        client.put(f"/fhir/Patient/{pid}", json={"resourceType": "Patient", "id": pid}, headers=steward)
    client.put("/fhir/Observation/o2", json={**observation("p2"), "id": "o2"}, headers=steward)
    tx = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": observation("p1"), "request": {"method": "POST", "url": "Observation"}},
        {"request": {"method": "DELETE", "url": "Observation/o2"}},
        {"request": {"method": "GET", "url": "Patient/p3"}}]}
    r = client.post("/fhir", json=tx, headers=steward)
    assert r.status_code == 200, r.text
    last = db.run(lambda s: s.execute(select(LOG.c.interaction, LOG.c.patient_ids).order_by(LOG.c.seq.desc())
                                      .limit(1)).one(), write=False)
    assert last.interaction == "transaction"
    assert sorted(last.patient_ids.split(",")) == ["p1", "p2", "p3"]


def test_a_transaction_moving_a_result_names_both_patients(client, db, settings):
    from sqlalchemy import select

    from audit.service import A as LOG
    from tests.conftest import steward_headers

    steward = steward_headers(client, settings)
    for pid in ("p1", "p2"):
        client.put(f"/fhir/Patient/{pid}", json={"resourceType": "Patient", "id": pid}, headers=steward)
    client.put("/fhir/Observation/o1", json={**observation("p1"), "id": "o1"}, headers=steward)
    tx = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {**observation("p2"), "id": "o1"}, "request": {"method": "PUT", "url": "Observation/o1"}}]}
    assert client.post("/fhir", json=tx, headers=steward).status_code == 200
    last = db.run(lambda s: s.execute(select(LOG.c.patient_ids).order_by(LOG.c.seq.desc()).limit(1)).scalar_one(),
                  write=False)
    assert sorted(last.split(",")) == ["p1", "p2"]
