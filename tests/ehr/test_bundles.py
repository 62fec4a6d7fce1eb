"""Batch and transaction Bundles, and loading the Synthea corpus without losing anything."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from tests.conftest import require_corpora

UHID = "https://himhis.hp.gov.in/fhir/sid/uhid"


def tx(*entries, kind="transaction") -> dict:
    return {"resourceType": "Bundle", "type": kind, "entry": list(entries)}


def post(resource, full_url=None, **request) -> dict:
    e = {"resource": resource, "request": {"method": "POST", "url": resource["resourceType"], **request}}
    if full_url:
        e["fullUrl"] = full_url
    return e


def obs(subject: str, text: str = "Haemoglobin") -> dict:
    return {"resourceType": "Observation", "status": "final", "code": {"text": text},
            "subject": {"reference": subject}}


def pat(uhid: str, family="Thakur") -> dict:
    return {"resourceType": "Patient", "name": [{"family": family}], "identifier": [{"system": UHID, "value": uhid}]}


def count(fhir, rtype: str) -> int:
    return fhir.get(f"/fhir/{rtype}?_summary=count").json()["total"]


def test_transaction_resolves_urn_uuid(fhir):
    b = tx(post(obs("urn:uuid:11111111-1111-1111-1111-111111111111")),
           post(pat("IGMC-2026-000001"), "urn:uuid:11111111-1111-1111-1111-111111111111"))
    r = fhir.post("/fhir", json=b)
    assert r.status_code == 200, r.text
    resp = r.json()
    assert resp["type"] == "transaction-response"
    statuses = [e["response"]["status"] for e in resp["entry"]]
    assert statuses == ["201 Created", "201 Created"]
    pid = resp["entry"][1]["response"]["location"].split("/")[1]
    oid = resp["entry"][0]["response"]["location"].split("/")[1]
    assert fhir.get(f"/fhir/Observation/{oid}").json()["subject"]["reference"] == f"Patient/{pid}"


def test_transaction_is_all_or_nothing(fhir):
    b = tx(post(pat("IGMC-2026-000002")), post(obs("Patient/ghost")))
    r = fhir.post("/fhir", json=b)
    assert r.status_code == 400
    assert r.json()["issue"][0]["code"] == "not-found"
    assert count(fhir, "Patient") == 0
    bad = tx(post(pat("IGMC-2026-000003")), post({"resourceType": "Observation", "code": {"text": "x"}}))
    r = fhir.post("/fhir", json=bad)
    assert r.status_code == 400
    assert r.json()["issue"][0]["expression"] == ["Bundle.entry[1].resource.status"]
    assert count(fhir, "Patient") == 0


def test_transaction_conditional_references_and_creates(fhir):
    org = {"resourceType": "Organization", "name": "IGMC Shimla",
           "identifier": [{"system": "https://himhis.hp.gov.in/fhir/sid/facility", "value": "IGMC"}]}
    crit = "identifier=https://himhis.hp.gov.in/fhir/sid/facility|IGMC"
    first = fhir.post("/fhir", json=tx(post(org, ifNoneExist=crit)))
    assert first.json()["entry"][0]["response"]["status"] == "201 Created"
    again = fhir.post("/fhir", json=tx(post(org, ifNoneExist=crit)))
    assert again.json()["entry"][0]["response"]["status"] == "200 OK"
    assert count(fhir, "Organization") == 1
    p = pat("IGMC-2026-000004") | {"managingOrganization": {"reference": f"Organization?{crit}"}}
    r = fhir.post("/fhir", json=tx(post(p)))
    assert r.status_code == 200, r.text
    pid = r.json()["entry"][0]["response"]["location"].split("/")[1]
    org_id = first.json()["entry"][0]["response"]["location"].split("/")[1]
    assert fhir.get(f"/fhir/Patient/{pid}").json()["managingOrganization"]["reference"] == f"Organization/{org_id}"
    missing = pat("IGMC-2026-000005") | {"managingOrganization": {
        "reference": "Organization?identifier=https://himhis.hp.gov.in/fhir/sid/facility|NOPE"}}
    r = fhir.post("/fhir", json=tx(post(missing)))
    assert r.status_code == 412 and "matches no resource" in r.json()["issue"][0]["diagnostics"]


def test_two_conditional_updates_of_one_resource_fail_clearly(fhir):
    """Both entries resolve to the same Patient: the transaction fails instead of dropping one."""
    fhir.post("/fhir/Patient", json=pat("IGMC-2026-000006"))
    crit = f"Patient?identifier={UHID}|IGMC-2026-000006"
    b = tx({"resource": pat("IGMC-2026-000006", "A"), "request": {"method": "PUT", "url": crit}},
           {"resource": pat("IGMC-2026-000006", "B"), "request": {"method": "PUT", "url": crit}})
    r = fhir.post("/fhir", json=b)
    assert r.status_code == 409
    assert "both change" in r.json()["issue"][0]["diagnostics"]
    entry = fhir.get("/fhir/Patient").json()["entry"][0]["resource"]
    assert entry["name"][0]["family"] == "Thakur" and entry["meta"]["versionId"] == "1"


def test_transaction_delete_put_get_and_if_match(fhir):
    a = fhir.post("/fhir/Patient", json=pat("IGMC-2026-000007")).json()
    b = fhir.post("/fhir/Patient", json=pat("IGMC-2026-000008")).json()
    bundle = tx({"request": {"method": "DELETE", "url": f"Patient/{a['id']}"}},
                {"resource": {**b, "name": [{"family": "Verma"}]},
                 "request": {"method": "PUT", "url": f"Patient/{b['id']}", "ifMatch": 'W/"1"'}},
                {"request": {"method": "GET", "url": f"Patient/{b['id']}"}})
    r = fhir.post("/fhir", json=bundle)
    assert r.status_code == 200, r.text
    entries = r.json()["entry"]
    assert [e["response"]["status"] for e in entries] == ["204 No Content", "200 OK", "200 OK"]
    assert entries[2]["resource"]["name"][0]["family"] == "Verma"
    assert fhir.get(f"/fhir/Patient/{a['id']}").status_code == 410
    stale = tx({"resource": b, "request": {"method": "PUT", "url": f"Patient/{b['id']}", "ifMatch": 'W/"1"'}})
    assert fhir.post("/fhir", json=stale).status_code == 412


def test_batch_entries_are_independent(fhir):
    b = tx(post(pat("IGMC-2026-000009")), post(obs("Patient/ghost")),
           {"request": {"method": "GET", "url": "Patient/nobody"}}, kind="batch")
    r = fhir.post("/fhir", json=b)
    assert r.status_code == 200
    entries = r.json()["entry"]
    assert entries[0]["response"]["status"] == "201 Created"
    assert entries[1]["response"]["status"] == "400"
    assert entries[1]["response"]["outcome"]["issue"][0]["code"] == "not-found"
    assert entries[2]["response"]["status"] == "404"
    assert count(fhir, "Patient") == 1 and count(fhir, "Observation") == 0


def test_bundle_shape_errors(fhir):
    assert fhir.post("/fhir", json={"resourceType": "Patient"}).status_code == 400
    assert fhir.post("/fhir", json={"resourceType": "Bundle", "type": "collection"}).status_code == 400
    r = fhir.post("/fhir", json=tx({"resource": pat("X")}))
    assert r.status_code == 400 and r.json()["issue"][0]["expression"] == ["Bundle.entry[0].request"]


@pytest.mark.slow
def test_synthea_corpus_loads_without_loss(fhir):
    """Load the two batch bundles, then every patient transaction; every resource must be stored."""
    corpora = require_corpora() / "synthea-r4"
    files = sorted(corpora.glob("*.json"))
    shared = [f for f in files if f.name.startswith(("hospitalInformation", "practitionerInformation"))]
    patients = [f for f in files if f not in shared][:4]
    expected: Counter = Counter()
    for f in shared:
        data = json.loads(f.read_text())
        r = fhir.post("/fhir", json=data)
        assert r.status_code == 200, r.text[:500]
        statuses = Counter(e["response"]["status"] for e in r.json()["entry"])
        assert set(statuses) <= {"201 Created", "200 OK"}, statuses
        # Conditional creates deduplicate: count distinct identifiers per type.
        seen = {(e["resource"]["resourceType"], e["request"].get("ifNoneExist") or e["fullUrl"])
                for e in data["entry"]}
        expected.update(t for t, _ in seen)
    for f in patients:
        data = json.loads(f.read_text())
        r = fhir.post("/fhir", json=data)
        assert r.status_code == 200, r.text[:500]
        assert all(e["response"]["status"] == "201 Created" for e in r.json()["entry"])
        expected.update(e["resource"]["resourceType"] for e in data["entry"])
        # The patient's references now point at stored resources.
        pid = next(e["response"]["location"] for e in r.json()["entry"]
                   if e["response"]["location"].startswith("Patient/")).split("/")[1]
        everything = fhir.get(f"/fhir/Patient/{pid}/$everything?_type=Encounter").json()
        assert len(everything["entry"]) == sum(1 for e in data["entry"]
                                               if e["resource"]["resourceType"] == "Encounter")
    for rtype, n in expected.items():
        assert count(fhir, rtype) == n, rtype
