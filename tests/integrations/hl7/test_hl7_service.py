"""Processing stored ORU^R01 messages into FHIR, on SQLite and PostgreSQL."""

from __future__ import annotations

from urllib.parse import parse_qsl

import orjson
from sqlalchemy import func, select

from ehr.search import engine as search_engine
from ehr.service import FhirStore
from himhis.models import AuditRecord, Hl7Message, ResourceVersion
from himhis.systems import LAB_RESULT, UHID
from integrations.hl7 import inbox, service, tasks
from integrations.hl7.parse import check_msh, split_batch
from tests.integrations.hl7.conftest import CBC, FIXTURES, UHID_2, lab_world, oru


def receive(db, text: str, *, peer: str = "127.0.0.1:40000") -> int:
    message = check_msh(split_batch(text)[0])
    return db.run_core(lambda c: inbox.store(c, inbox.Incoming(message.header, message.text, peer))).id


def search(db, query: str) -> list[dict]:
    """A FHIR search through the search engine: the matching resources."""
    res_type, _, criteria = query.partition("?")
    bundle = db.run(lambda s: search_engine.search(s, res_type, [*parse_qsl(criteria), ("_count", "500")],
                                                   base="http://test/fhir"), write=False)
    bundle = orjson.loads(orjson.dumps(bundle))  # entries hold the stored JSON as orjson fragments
    return [e["resource"] for e in bundle.get("entry", []) if e.get("search", {}).get("mode", "match") == "match"]


def read(db, ref: str) -> dict:
    res_type, res_id = ref.split("/")
    return db.run(lambda s: FhirStore(s).read(res_type, res_id).json(), write=False)


def versions(db, ref: str) -> int:
    res_type, res_id = ref.split("/")
    return db.run(lambda s: s.scalar(select(func.count()).select_from(ResourceVersion).where(
        ResourceVersion.res_type == res_type, ResourceVersion.res_id == res_id)), write=False)


def count(db, res_type: str) -> int:
    """How many versions of ``res_type`` were written."""
    return db.run(lambda s: s.scalar(select(func.count()).select_from(ResourceVersion)
                                     .where(ResourceVersion.res_type == res_type)), write=False)


def row(db, message_id: int) -> Hl7Message:
    return db.run(lambda s: s.get(Hl7Message, message_id), write=False)


def test_oru_is_placed_by_uhid_and_placer_number(db):
    world = lab_world(db)
    mid = receive(db, oru())
    outcome = tasks.run(db, mid)
    assert outcome.state == "processed", outcome.reason
    reports = search(db, "DiagnosticReport?subject=Patient/p1")
    assert len(reports) == 1
    report = reports[0]
    assert report["status"] == "final"
    assert report["basedOn"] == [{"reference": f"ServiceRequest/{world['order']}"}]
    assert report["performer"] == [{"reference": "Organization/lab-igmc"}]
    assert report["code"]["coding"][0] == {"system": "http://loinc.org", "code": "58410-2",
                                           "display": "CBC panel - Blood by Automated count"}
    assert len(report["result"]) == 3 and len(report["specimen"]) == 1
    hb = next(o for o in (read(db, r["reference"]) for r in report["result"])
              if o["code"]["coding"][0]["code"] == "718-7")
    assert hb["valueQuantity"] == {"value": 13.4, "unit": "g/dL", "system": "http://unitsofmeasure.org",
                                   "code": "g/dL"}
    assert hb["referenceRange"][0]["low"]["value"] == 12 and hb["referenceRange"][0]["high"]["value"] == 16
    assert hb["interpretation"][0]["coding"][0]["code"] == "N"
    assert hb["basedOn"] == report["basedOn"] and hb["subject"] == {"reference": "Patient/p1"}
    assert hb["specimen"] == report["specimen"][0]
    specimen = read(db, report["specimen"][0]["reference"])
    assert specimen["type"]["coding"][0]["code"] == "BLD"
    assert specimen["collection"]["collectedDateTime"] == "2026-11-25T09:00:00+05:30"
    provenance = search(db, "Provenance?target=" + report["result"][0]["reference"])
    assert len(provenance) == 1
    assert provenance[0]["entity"][0]["what"]["identifier"]["value"] == str(mid)
    assert provenance[0]["agent"][0]["who"] == {"reference": "Organization/lab-igmc"}
    stored = row(db, mid)
    assert stored.state == "processed" and stored.attempts == 1
    assert f"DiagnosticReport/{report['id']}" in stored.resource_ids.split(",")
    audit = db.run(lambda s: s.execute(select(AuditRecord).where(AuditRecord.client_id == "mllp-listener"))
                   .scalars().all(), write=False)
    assert len(audit) == 1
    assert audit[0].actor_username == "mllp:LIS^IGMC" and audit[0].query == "ORU^R01 MSG-1"
    assert audit[0].patient_ids == "p1" and audit[0].source_ip == "127.0.0.1"


def test_processing_twice_writes_nothing_twice(db):
    lab_world(db)
    mid = receive(db, oru())
    assert tasks.run(db, mid).state == "processed"
    before = {t: count(db, t) for t in ("DiagnosticReport", "Observation", "Specimen", "Provenance")}
    again = tasks.run(db, mid)
    assert again.already and again.state == "processed"
    assert {t: count(db, t) for t in before} == before
    assert row(db, mid).attempts == 1


def test_a_correction_is_a_new_version_of_the_same_observation(db):
    lab_world(db)
    first = tasks.run(db, receive(db, oru(control="M1")))
    corrected = [("HB", "Haemoglobin", "NM", "6.1", "g/dL", "12-16", "LL")]
    second = tasks.run(db, receive(db, oru(control="M2", status="C", results=corrected)))
    assert second.state == "processed", second.reason
    observations = search(db, "Observation?code=http://loinc.org|718-7")
    assert len(observations) == 1, "a correction must not make a second copy"
    hb = observations[0]
    assert hb["status"] == "corrected" and hb["valueQuantity"]["value"] == 6.1
    assert versions(db, f"Observation/{hb['id']}") == 2
    report = search(db, "DiagnosticReport?subject=Patient/p1")
    assert len(report) == 1 and report[0]["status"] == "corrected"
    assert len(report[0]["result"]) == 3, "the results not resent stay on the report"
    assert set(first.resource_ids) & set(second.resource_ids)
    alerts = search(db, "Communication?subject=Patient/p1")
    assert len(alerts) == 1, "a critical value raises one alert for the ward"
    assert alerts[0]["about"] == [{"reference": f"Observation/{hb['id']}"}]
    assert alerts[0]["priority"] == "stat" and "Critical result" in alerts[0]["payload"][0]["contentString"]


def test_catalogue_critical_limits_raise_an_alert_without_a_flag(db):
    lab_world(db)
    low_platelets = [("PLT", "Platelets", "NM", "12", "10*3/uL", "150-450", "L")]
    assert tasks.run(db, receive(db, oru(results=low_platelets))).state == "processed"
    alerts = search(db, "Communication?subject=Patient/p1")
    assert len(alerts) == 1 and "below the critical limit 20" in alerts[0]["payload"][0]["contentString"]


def test_cancellation_and_deletion_are_new_versions(db):
    lab_world(db)
    tasks.run(db, receive(db, oru(control="M1")))
    cancelled = [("PLT", "Platelets", "NM", "", "", "", "")]
    assert tasks.run(db, receive(db, oru(control="M2", status="C", results=cancelled,
                                         obx_status="X"))).state == "processed"
    wrong = [("TLC", "Total leucocyte count", "NM", "", "", "", "")]
    assert tasks.run(db, receive(db, oru(control="M3", status="C", results=wrong,
                                         obx_status="D"))).state == "processed"
    by_code = {o["code"]["coding"][0]["code"]: o for o in search(db, "Observation?subject=Patient/p1")}
    assert len(by_code) == 3
    assert by_code["777-3"]["status"] == "cancelled" and "valueQuantity" not in by_code["777-3"]
    assert by_code["6690-2"]["status"] == "entered-in-error"
    assert by_code["718-7"]["status"] == "final"
    assert versions(db, f"Observation/{by_code['777-3']['id']}") == 2


def test_value_types(db):
    lab_world(db)
    results = [("FBS", "Fasting glucose", "SN", ">^450", "mg/dL", "70-100", "HH"),
               ("UCOL", "Urine colour", "ST", "Pale yellow \\T\\ clear", "", "", ""),
               ("UPROT", "Urine protein", "CWE", "260385009^Negative^SCT", "", "", "N"),
               ("HBA1C", "HbA1c", "NM", "6.8", "%", "<5.7", "H")]
    assert tasks.run(db, receive(db, oru(panel="FBS^Fasting sugar^L", results=results))).state == "processed"
    by_code = {o["code"]["coding"][0]["code"]: o for o in search(db, "Observation?subject=Patient/p1")}
    assert by_code["1558-6"]["valueQuantity"] == {"value": 450, "comparator": ">", "unit": "mg/dL",
                                                 "system": "http://unitsofmeasure.org", "code": "mg/dL"}
    assert by_code["5778-6"]["valueString"] == "Pale yellow & clear"
    assert by_code["20454-5"]["valueCodeableConcept"]["coding"][0] == {
        "system": "http://snomed.info/sct", "code": "260385009", "display": "Negative"}
    assert by_code["4548-4"]["referenceRange"][0]["high"]["value"] == 5.7
    assert by_code["4548-4"]["interpretation"][0]["coding"][0]["code"] == "H"


def test_unknown_patient_is_held_then_replayed_after_registration(db):
    lab_world(db)
    mid = receive(db, oru(uhid="IGMC-2026-999999"))
    outcome = tasks.run(db, mid)
    assert outcome.state == "held" and "Unknown patient" in outcome.reason and "IGMC-2026-999999" in outcome.reason
    assert count(db, "DiagnosticReport") == 0 and count(db, "Observation") == 0
    assert tasks.run(db, mid).state == "held", "a held message stays held until it is replayed"

    def register(session):  # the desk matches the patient: p1 gets the UHID the laboratory used
        store = FhirStore(session)
        patient = store.read("Patient", "p1").json()
        patient["identifier"].append({"system": UHID, "value": "IGMC-2026-999999"})
        store.update("Patient", "p1", patient)

    db.run(register)
    replayed = db.run(lambda s: service.replay(s, message_id=mid))
    assert replayed.state == "processed", replayed.reason
    assert count(db, "DiagnosticReport") == 1
    assert row(db, mid).attempts == 3


def test_unknown_order_and_unknown_test_code_are_held(db):
    lab_world(db)
    no_order = tasks.run(db, receive(db, oru(control="A", placer="ORD-404")))
    assert no_order.state == "held" and "Unknown order" in no_order.reason and "ORD-404" in no_order.reason
    no_code = tasks.run(db, receive(db, oru(control="B", results=[*CBC, ("XYZ", "Mystery", "NM", "1", "", "", "")])))
    assert no_code.state == "held" and "Unknown test code" in no_code.reason and "XYZ" in no_code.reason
    bad_panel = tasks.run(db, receive(db, oru(control="C", panel="NOPE^Unknown panel^L")))
    assert bad_panel.state == "held" and "OBR-4 'NOPE" in bad_panel.reason
    assert count(db, "Observation") == 0 and count(db, "DiagnosticReport") == 0, "nothing half-written"
    held = db.run(lambda s: [m.control_id for m in inbox.held(s)], write=False)
    assert held == ["A", "B", "C"]


def test_results_are_never_attached_to_another_patients_order(db):
    lab_world(db)
    outcome = tasks.run(db, receive(db, oru(uhid=UHID_2)))
    assert outcome.state == "held" and "belongs to Patient/p1" in outcome.reason
    assert count(db, "Observation") == 0


def test_local_codes_of_the_other_laboratory(db):
    lab_world(db)
    results = [("HGB", "Hb", "NM", "11.0", "g/dL", "12-15", "L")]
    outcome = tasks.run(db, receive(db, oru(facility="RPGMC", panel="HAEMOGRAM^CBC^L", results=results)))
    assert outcome.state == "processed", outcome.reason
    obs = search(db, f"Observation?identifier={LAB_RESULT}|RPGMC/LAB-5001/HGB/1")
    assert len(obs) == 1 and obs[0]["code"]["coding"][0]["code"] == "718-7"


def test_real_feed_with_loinc_codes_is_placed(db):
    """LAB-ORU-2 (FHIR-Converter samples): two OBR groups with LOINC codes, placed once their order exists."""
    text = (FIXTURES / "LAB-ORU-2.hl7").read_text(encoding="utf-8-sig")

    def world(session):
        store = FhirStore(session)
        store.update("Patient", "duck", {"resourceType": "Patient", "id": "duck",
                                         "identifier": [{"system": UHID, "value": "10006579"}]})
        for sr, placer in (("sr-a", "855238581"), ("sr-b", "88502218")):
            store.update("ServiceRequest", sr, {
                "resourceType": "ServiceRequest", "id": sr, "status": "active", "intent": "order",
                "identifier": [{"system": "https://himhis.hp.gov.in/fhir/sid/placer-order", "value": placer}],
                "subject": {"reference": "Patient/duck"}})

    db.run(world)
    held = tasks.run(db, receive(db, text))  # the sample sends its result status in OBR-26, not OBR-25
    assert held.state == "held" and "OBR-25" in held.reason
    assert count(db, "DiagnosticReport") == 0

    def fixed(line: str) -> str:
        fields = line.split("|")
        if fields[0] == "OBR":
            fields[25], fields[26] = fields[26], ""
        if fields[0] == "MSH":
            fields[9] = "ControlID-2"
        return "|".join(fields)

    resent = "\r".join(fixed(line) for line in split_batch(text)[0].split("\r"))
    outcome = tasks.run(db, receive(db, resent))
    assert outcome.state == "processed", outcome.reason
    assert count(db, "DiagnosticReport") == 2 and count(db, "Observation") == 10
    leukocytes = search(db, "Observation?code=http://loinc.org|11156-7")
    assert leukocytes[0]["valueQuantity"] == {"value": 8.2, "unit": "giga.l-1"}
