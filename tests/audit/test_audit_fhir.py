"""The audit log as FHIR AuditEvent: valid R4 (R4B models), shaped after IHE BALP, and searchable."""

from __future__ import annotations

import base64
from datetime import datetime, timedelta

import pytest
from fhir.resources.R4B.auditevent import AuditEvent
from sqlalchemy import select

from audit.fhir import (
    parse_search,
    patient_access_log,
    read_audit_event,
    search_audit,
    search_bundle,
    to_audit_event,
)
from audit.service import A, record, record_many, utcnow
from himhis.errors import InvalidError, NotFoundError

BASE = "http://127.0.0.1:8000/fhir"
BALP = "https://profiles.ihe.net/ITI/BALP/StructureDefinition/IHE.BasicAudit."


def rendered(db, entry, base_url=BASE) -> dict:
    seq = db.run(lambda s: record(s, entry))
    row = db.run(lambda s: s.execute(select(A).where(A.c.seq == seq)).one(), write=False)
    event = to_audit_event(row, base_url=base_url)
    AuditEvent.model_validate(event)  # raises if it is not a valid R4 AuditEvent
    return event


def agent(event: dict, code: str) -> dict:
    [found] = [a for a in event["agent"] if a["type"]["coding"][0]["code"] == code]
    return found


def entity(event: dict, role: str) -> list[dict]:
    return [e for e in event["entity"] if e["role"]["code"] == role]


def codes(concept: dict) -> list[tuple[str, str]]:
    return [(c["system"], c["code"]) for c in concept["coding"]]


def test_a_read_is_a_balp_patient_read(db, make_entry):
    event = rendered(db, make_entry("read", resource_type="Observation", resource_id="o1", version_id=3,
                                    patient_ids=["p1"]))
    assert event["meta"]["profile"] == [BALP + "PatientRead"]
    assert event["type"] == {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest",
                             "display": "Restful Operation"}
    assert event["subtype"] == [{"system": "http://hl7.org/fhir/restful-interaction", "code": "read"}]
    assert (event["action"], event["outcome"], event["id"]) == ("R", "0", "1")
    assert event["recorded"].endswith("Z") and len(event["recorded"]) == 24
    user = agent(event, "IRCP")
    assert user["requestor"] is True and user["altId"] == "sub-doctor.igmc"
    assert user["who"]["identifier"] == {"system": "https://himhis.hp.gov.in/fhir/sid/username",
                                         "value": "doctor.igmc"}
    assert [r["coding"][0]["code"] for r in user["role"]] == ["doctor"]
    client = agent(event, "110152")  # a read's client is the destination (BALP Read)
    assert client["requestor"] is False and client["network"] == {"address": "10.20.0.7", "type": "2"}
    assert client["who"]["identifier"]["value"] == "himhis-web"
    assert client["extension"][0]["valueString"].startswith("Mozilla/5.0")
    assert agent(event, "110153")["network"] == {"address": BASE, "type": "5"}
    assert event["source"]["site"] == "IGMC" and event["source"]["observer"]["display"] == "HimHIS (IGMC)"
    [data] = entity(event, "4")
    assert data["what"] == {"reference": "Observation/o1/_history/3"} and data["type"]["code"] == "2"
    [pat] = entity(event, "1")
    assert pat["what"] == {"reference": "Patient/p1"} and pat["type"]["code"] == "1"


def test_a_search_of_one_patient_is_a_balp_patient_query(db, make_entry):
    event = rendered(db, make_entry("search-type", resource_type="Observation", resource_id=None,
                                    query="subject=Patient/p1", patient_ids=["p1"]))
    assert event["meta"]["profile"] == [BALP + "PatientQuery"]
    assert [e["what"]["reference"] for e in entity(event, "1")] == ["Patient/p1"]


def test_a_search_returning_several_patients_is_a_balp_query_naming_each(db, make_entry):
    query = "subject=Patient/p1&code=http://loinc.org|718-7"
    event = rendered(db, make_entry("search-type", resource_type="Observation", resource_id=None, query=query,
                                    patient_ids=["p1", "p2"]))
    assert event["meta"]["profile"] == [BALP + "Query"]  # PatientQuery names exactly one patient
    assert event["action"] == "E"
    assert agent(event, "110153")["network"]["address"] == "10.20.0.7"  # the client is the query's source
    [q] = entity(event, "24")
    assert base64.b64decode(q["query"]).decode() == query
    assert q["description"] == f"Observation?{query}" and q["type"]["code"] == "2"
    assert [e["what"]["reference"] for e in entity(event, "1")] == ["Patient/p1", "Patient/p2"]
    assert entity(event, "4") == []


@pytest.mark.parametrize(("interaction", "action", "user"), [("create", "C", "AUT"), ("update", "U", "AUT"),
                                                            ("delete", "D", "CST")])
def test_writes_carry_their_action_and_author(db, make_entry, interaction, action, user):
    event = rendered(db, make_entry(interaction))
    assert event["action"] == action
    assert agent(event, user)["requestor"] is True
    assert agent(event, "110153")["who"]["identifier"]["value"] == "himhis-web"  # the client is the source


def test_break_glass_is_emergency_treatment_with_the_reason(db, make_entry):
    event = rendered(db, make_entry(break_glass_reason="Unconscious in casualty"))
    purpose = [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "ETREAT"}],
                "text": "Unconscious in casualty"}]
    assert event["purposeOfEvent"] == purpose
    assert agent(event, "IRCP")["purposeOfUse"] == purpose


def test_a_failure_has_its_outcome_and_claims_no_profile(db, make_entry):
    event = rendered(db, make_entry().failed(403, "Your role (nurse) does not permit read on AuditEvent"))
    assert (event["outcome"], event["outcomeDesc"]) == ("4", "403 Your role (nurse) does not permit read on "
                                                             "AuditEvent")
    assert "meta" not in event


def test_a_login_and_a_system_client(db, make_entry):
    event = rendered(db, make_entry("login", username="", actor_subject=None, resource_type=None,
                                    resource_id=None, patient_ids=[], client_id="lab-gateway"))
    assert codes({"coding": [event["type"]]}) == [("http://dicom.nema.org/resources/ontology/DCM", "110114")]
    assert event["subtype"][0]["code"] == "110122"
    assert [a["type"]["coding"][0]["code"] for a in event["agent"]] == ["110153", "110152"]
    assert event["agent"][0]["requestor"] is True  # no user: the client asked
    assert "entity" not in event


def test_search_audit_filters_and_pages(db, make_entry):
    db.run(lambda s: record_many(s, [
        make_entry("read", patient="p1"),
        make_entry("read", patient="p2", username="nurse.igmc"),
        make_entry("search-type", resource_id=None, query="code=718-7", patient_ids=["p1", "p2"]),
        make_entry("update", patient="p1", username="nurse.igmc", resource_type="Patient", resource_id="p1"),
    ]))

    def find(**kw) -> tuple[list[str], int]:
        events, total = db.run(lambda s: search_audit(s, **kw), write=False)
        return [e["id"] for e in events], total

    assert find() == (["4", "3", "2", "1"], 4)
    assert find(patient="p1") == (["4", "3", "1"], 3)
    assert find(agent="nurse.igmc") == (["4", "2"], 2)
    assert find(agent="sub-nurse.igmc", patient="p2") == (["2"], 1)
    assert find(interaction="read,update") == (["4", "2", "1"], 3)
    assert find(entity="Patient/p1") == (["4"], 1)
    assert find(entity="Observation") == (["3", "2", "1"], 3)
    assert find(count=2, offset=1) == (["3", "2"], 4)
    now = utcnow()
    assert find(date_from=now - timedelta(minutes=5), date_to=now + timedelta(minutes=5))[1] == 4
    assert find(date_to=now - timedelta(minutes=5)) == ([], 0)
    events, total = db.run(lambda s: patient_access_log(s, patient_id="p2"), write=False)
    assert total == 2 and {e["agent"][0]["name"] for e in events} == {"doctor.igmc", "nurse.igmc"}
    for event in events:
        AuditEvent.model_validate(event)


def test_search_parameters_become_filters():
    kw = parse_search([("patient", "Patient/p1"), ("agent", "nurse.igmc"), ("subtype", "read"),
                       ("date", "ge2026-01-01"), ("date", "lt2026-02-01"), ("entity", "Observation/o1"),
                       ("_count", "10")])
    assert kw == {"patient": "p1", "agent": "nurse.igmc", "interaction": "read", "entity": "Observation/o1",
                  "date_from": datetime(2026, 1, 1), "date_to": datetime(2026, 2, 1)}
    day = parse_search([("date", "2026-03-05")])
    assert (day["date_from"], day["date_to"]) == (datetime(2026, 3, 5), datetime(2026, 3, 6))
    with pytest.raises(InvalidError, match="does not support 'action'"):
        parse_search([("action", "R")])
    with pytest.raises(InvalidError):
        parse_search([("date", "yesterday")])


def test_a_patient_sees_only_events_about_their_own_record(db, make_entry):
    db.run(lambda s: record_many(s, [make_entry(patient="p1"), make_entry(patient="p2")]))
    bundle = db.run(lambda s: search_bundle(s, [("patient", "p2")], base=BASE, patient_id="p1"), write=False)
    assert bundle["total"] == 1 and bundle["entry"][0]["fullUrl"] == f"{BASE}/AuditEvent/1"
    assert db.run(lambda s: read_audit_event(s, "2", base=BASE), write=False)["id"] == "2"
    with pytest.raises(NotFoundError):
        db.run(lambda s: read_audit_event(s, "2", patient_id="p1"), write=False)
    with pytest.raises(NotFoundError):
        db.run(lambda s: read_audit_event(s, "x"), write=False)


def test_a_patients_view_names_only_them_and_not_the_search_terms(db, make_entry):
    db.run(lambda s: record(s, make_entry("search-type", resource_type="Patient", resource_id=None,
                                          query="identifier=IGMC-2026-000999&name=Sharma",
                                          patient_ids=["p1", "p2"])))
    row = db.run(lambda s: s.execute(select(A)).one(), write=False)
    event = to_audit_event(row, base_url=BASE, for_patient="p2")
    AuditEvent.model_validate(event)
    assert [e["what"]["reference"] for e in entity(event, "1")] == ["Patient/p2"]
    assert entity(event, "24") == [] and "Sharma" not in str(event) and "IGMC-2026-000999" not in str(event)
    assert "network" not in agent(event, "110153") and "meta" not in event
    assert agent(event, "IRCP")["who"]["display"] == "doctor.igmc"  # who looked is what the patient needs
