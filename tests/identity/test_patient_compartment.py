"""A patient's token sees only that patient's compartment, by every path, and learns nothing else."""

from __future__ import annotations

import pytest

from tests.conftest import get_token, mint_token, steward_headers

LOINC = "http://loinc.org"


@pytest.fixture
def two_patients(client, settings):
    steward = steward_headers(client, settings)

    def put(resource):
        r = client.put(f"/fhir/{resource['resourceType']}/{resource['id']}", json=resource, headers=steward)
        assert r.status_code in (200, 201), r.text

    put({"resourceType": "Organization", "id": "igmc", "name": "IGMC Shimla"})
    for n, family, code in ((1, "Thakur", "718-7"), (2, "Negi", "2345-7")):
        pid = f"demo-patient-{n}"
        put({"resourceType": "Patient", "id": pid, "name": [{"family": family}],
             "managingOrganization": {"reference": "Organization/igmc"}})
        put({"resourceType": "Observation", "id": f"obs-{n}", "status": "final",
             "code": {"coding": [{"system": LOINC, "code": code}]}, "subject": {"reference": f"Patient/{pid}"}})
        put({"resourceType": "Encounter", "id": f"enc-{n}", "status": "finished",
             "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
             "subject": {"reference": f"Patient/{pid}"}})
    put({"resourceType": "Observation", "id": "obs-1", "status": "amended",
         "code": {"coding": [{"system": LOINC, "code": "718-7"}]}, "subject": {"reference": "Patient/demo-patient-1"}})
    return {"Authorization": f"Bearer {get_token(client, 'patient.demo')}"}


def ids(bundle):
    return sorted(f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in bundle.get("entry", []))


def test_read_vread_history(client, two_patients):
    me = two_patients
    assert client.get("/fhir/Patient/demo-patient-1", headers=me).status_code == 200
    assert client.get("/fhir/Observation/obs-1/_history/1", headers=me).status_code == 200
    assert client.get("/fhir/Observation/obs-1/_history", headers=me).json()["total"] == 2
    for path in ("/fhir/Patient/demo-patient-2", "/fhir/Observation/obs-2", "/fhir/Observation/obs-2/_history/1",
                 "/fhir/Observation/obs-2/_history", "/fhir/Patient/demo-patient-2/$everything"):
        r = client.get(path, headers=me)
        assert r.status_code == 404, (path, r.text)
        assert "is not known" in r.json()["issue"][0]["diagnostics"]
    # Another patient's resource answers exactly like one that does not exist.
    other = client.get("/fhir/Observation/obs-2", headers=me).json()["issue"][0]["diagnostics"]
    ghost = client.get("/fhir/Observation/obs-9", headers=me).json()["issue"][0]["diagnostics"]
    assert other.replace("obs-2", "X") == ghost.replace("obs-9", "X")
    h = client.get("/fhir/Observation/_history", headers=me).json()
    assert {e["fullUrl"].rsplit("/", 1)[-1] for e in h["entry"]} == {"obs-1"}
    assert client.get("/fhir/_history", headers=me).status_code == 403


def test_search_includes_chains_and_has(client, two_patients):
    me = two_patients
    assert ids(client.get("/fhir/Observation", headers=me).json()) == ["Observation/obs-1"]
    assert ids(client.get("/fhir/Patient", headers=me).json()) == ["Patient/demo-patient-1"]
    assert client.get("/fhir/Encounter?_summary=count", headers=me).json()["total"] == 1
    assert ids(client.get("/fhir/Observation?subject=Patient/demo-patient-2", headers=me).json()) == []
    assert ids(client.get("/fhir/Observation?subject.name=Negi", headers=me).json()) == []
    assert ids(client.get(f"/fhir/Patient?_has:Observation:patient:code={LOINC}|2345-7", headers=me).json()) == []
    r = client.get("/fhir/Encounter?_revinclude=Observation:encounter&_include=Encounter:subject", headers=me).json()
    assert ids(r) == ["Encounter/enc-1", "Patient/demo-patient-1"]
    r = client.get("/fhir/Patient?_revinclude=Observation:subject&_revinclude=Encounter:subject", headers=me).json()
    assert ids(r) == ["Encounter/enc-1", "Observation/obs-1", "Patient/demo-patient-1"]
    # Infrastructure that is not patient data stays readable.
    assert ids(client.get("/fhir/Organization", headers=me).json()) == ["Organization/igmc"]


def test_everything_and_bundles(client, two_patients):
    me = two_patients
    own = client.get("/fhir/Patient/demo-patient-1/$everything", headers=me).json()
    assert ids(own) == ["Encounter/enc-1", "Observation/obs-1", "Organization/igmc", "Patient/demo-patient-1"]
    batch = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "GET", "url": "Observation/obs-2"}},
        {"request": {"method": "GET", "url": "Observation?code=2345-7"}},
        {"request": {"method": "GET", "url": "Observation/obs-1"}}]}
    r = client.post("/fhir", json=batch, headers=me).json()["entry"]
    assert r[0]["response"]["status"] == "404"
    assert r[1]["resource"].get("entry", []) == []
    assert r[2]["resource"]["id"] == "obs-1"
    tx = {**batch, "type": "transaction"}
    assert client.post("/fhir", json=tx, headers=me).status_code == 403


def test_paging_links_do_not_cross_patients(client, settings, two_patients):
    doctor = steward_headers(client, settings, roles=("doctor",))
    first = client.get("/fhir/Observation?_count=1", headers=doctor).json()
    nxt = next(lk["url"] for lk in first["link"] if lk["relation"] == "next").replace("http://testserver", "")
    assert len(client.get(nxt, headers=doctor).json()["entry"]) == 1
    # The patient replays the doctor's stored page: nothing of the other patient comes back.
    page = client.get(nxt, headers=two_patients).json()
    assert all(e["resource"]["id"] in ("obs-1", "enc-1", "demo-patient-1") for e in page.get("entry", []))


def test_patient_login_without_a_record_sees_nothing(client, settings):
    token = mint_token(settings, roles=("patient",), username="unlinked")
    r = client.get("/fhir/Observation", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 403
