"""The FHIR RESTful interactions over HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import orjson
import pytest

FHIR = "application/fhir+json"


def patient(family: str = "Thakur", given: str = "Ramesh", *, mrn: str | None = None, **extra) -> dict:
    p = {"resourceType": "Patient", "name": [{"family": family, "given": [given]}], "gender": "male",
         "birthDate": "1970-05-01", **extra}
    if mrn:
        p["identifier"] = [{"system": "https://himhis.hp.gov.in/fhir/sid/uhid", "value": mrn}]
    return p


def create(fhir, resource: dict, **headers):
    r = fhir.post(f"/fhir/{resource['resourceType']}", json=resource, headers={"Content-Type": FHIR, **headers})
    assert r.status_code in (200, 201), r.text
    return r.json()


def issue(r) -> dict:
    body = r.json()
    assert body["resourceType"] == "OperationOutcome", body
    return body["issue"][0]


def test_create_read_vread_update_delete(fhir):
    r = fhir.post("/fhir/Patient", json=patient(), headers={"Content-Type": FHIR})
    assert r.status_code == 201
    assert r.headers["content-type"].startswith(FHIR)
    body = r.json()
    pid = body["id"]
    assert body["meta"]["versionId"] == "1"
    assert r.headers["etag"] == 'W/"1"'
    assert r.headers["location"].endswith(f"/fhir/Patient/{pid}/_history/1")

    r = fhir.get(f"/fhir/Patient/{pid}")
    assert r.status_code == 200 and r.json()["name"][0]["family"] == "Thakur"

    body["name"][0]["family"] = "Negi"
    r = fhir.put(f"/fhir/Patient/{pid}", json=body)
    assert r.status_code == 200 and r.json()["meta"]["versionId"] == "2"

    assert fhir.get(f"/fhir/Patient/{pid}/_history/1").json()["name"][0]["family"] == "Thakur"
    assert fhir.get(f"/fhir/Patient/{pid}/_history/2").json()["name"][0]["family"] == "Negi"
    assert fhir.get(f"/fhir/Patient/{pid}/_history/3").status_code == 404

    r = fhir.delete(f"/fhir/Patient/{pid}")
    assert r.status_code == 200
    r = fhir.get(f"/fhir/Patient/{pid}")
    assert r.status_code == 410 and issue(r)["code"] == "deleted"
    # A delete is a version: history shows all three, newest first.
    hist = fhir.get(f"/fhir/Patient/{pid}/_history").json()
    assert hist["type"] == "history" and hist["total"] == 3
    assert [e["response"]["status"] for e in hist["entry"]] == ["410 Gone", "200 OK", "201 Created"]
    assert [e["request"]["method"] for e in hist["entry"]] == ["DELETE", "PUT", "POST"]
    # Updating a deleted resource brings it back as a new version.
    r = fhir.put(f"/fhir/Patient/{pid}", json=body)
    assert r.status_code == 201 and r.json()["meta"]["versionId"] == "4"


def test_update_as_create_with_client_id(fhir):
    r = fhir.put("/fhir/Patient/igmc-2026-000123", json={**patient(), "id": "igmc-2026-000123"})
    assert r.status_code == 201
    assert fhir.get("/fhir/Patient/igmc-2026-000123").json()["meta"]["versionId"] == "1"


def test_if_match(fhir):
    p = create(fhir, patient())
    url = f"/fhir/Patient/{p['id']}"
    r = fhir.put(url, json=p, headers={"If-Match": 'W/"1"'})
    assert r.status_code == 200
    r = fhir.put(url, json=p, headers={"If-Match": 'W/"1"'})
    assert r.status_code == 412 and "version 2" in issue(r)["diagnostics"]
    assert fhir.get(url).json()["meta"]["versionId"] == "2"


def test_conditional_create(fhir):
    first = fhir.post("/fhir/Patient", json=patient(mrn="IGMC-2026-000001"),
                      headers={"If-None-Exist": "identifier=https://himhis.hp.gov.in/fhir/sid/uhid|IGMC-2026-000001"})
    assert first.status_code == 201
    again = fhir.post("/fhir/Patient", json=patient(mrn="IGMC-2026-000001"),
                      headers={"If-None-Exist": "identifier=https://himhis.hp.gov.in/fhir/sid/uhid|IGMC-2026-000001"})
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    create(fhir, patient(mrn="IGMC-2026-000001"))  # a plain create is not conditional
    r = fhir.post("/fhir/Patient", json=patient(mrn="IGMC-2026-000001"),
                  headers={"If-None-Exist": "identifier=https://himhis.hp.gov.in/fhir/sid/uhid|IGMC-2026-000001"})
    assert r.status_code == 412


def test_conditional_update_and_delete(fhir):
    crit = "identifier=https://himhis.hp.gov.in/fhir/sid/uhid|RPGMC-2026-000007"
    r = fhir.put(f"/fhir/Patient?{crit}", json=patient(mrn="RPGMC-2026-000007"))
    assert r.status_code == 201
    pid = r.json()["id"]
    r = fhir.put(f"/fhir/Patient?{crit}", json=patient("Rana", mrn="RPGMC-2026-000007"))
    assert r.status_code == 200 and r.json()["id"] == pid and r.json()["meta"]["versionId"] == "2"
    r = fhir.delete(f"/fhir/Patient?{crit}")
    assert r.status_code == 200
    assert fhir.get(f"/fhir/Patient/{pid}").status_code == 410


def test_type_and_system_history(fhir):
    a = create(fhir, patient("Sharma"))
    create(fhir, {"resourceType": "Organization", "name": "IGMC Shimla"})
    fhir.put(f"/fhir/Patient/{a['id']}", json=a)
    h = fhir.get("/fhir/Patient/_history").json()
    assert h["total"] == 2
    h = fhir.get("/fhir/_history").json()
    assert h["total"] == 3
    page = fhir.get("/fhir/_history?_count=2").json()
    assert len(page["entry"]) == 2 and any(link["relation"] == "next" for link in page["link"])


def test_references_must_exist(fhir):
    obs = {"resourceType": "Observation", "status": "final", "code": {"text": "Hb"},
           "subject": {"reference": "Patient/does-not-exist"}}
    r = fhir.post("/fhir/Observation", json=obs)
    assert r.status_code == 400
    i = issue(r)
    assert i["code"] == "not-found" and i["expression"] == ["Observation.subject.reference"]
    assert fhir.get("/fhir/Observation").json().get("entry", []) == []
    p = create(fhir, patient())
    obs["subject"]["reference"] = f"Patient/{p['id']}"
    assert fhir.post("/fhir/Observation", json=obs).status_code == 201


@pytest.mark.parametrize(("body", "status", "code", "expr"), [
    (b"{not json", 400, "structure", None),
    (b"", 400, "required", None),
    (b"[1, 2]", 400, "structure", None),
    (orjson.dumps({"name": [{"family": "X"}]}), 400, "required", ["resourceType"]),
    (orjson.dumps({"resourceType": "Observation", "status": "final", "code": {"text": "x"}}), 400, "invalid",
     ["resourceType"]),
    (orjson.dumps({"resourceType": "Patient", "birthDate": "1970-13-45"}), 400, "value", ["Patient.birthDate"]),
    (orjson.dumps({"resourceType": "Patient", "colour": "blue"}), 400, "structure", ["Patient.colour"]),
    (orjson.dumps({"resourceType": "Patient", "id": "bad id!"}), 400, "value", ["id"]),
])
def test_bad_input_is_an_operation_outcome(fhir, body, status, code, expr):
    r = fhir.post("/fhir/Patient", content=body, headers={"Content-Type": FHIR})
    assert r.status_code == status, r.text
    i = issue(r)
    assert i["code"] == code and i["severity"] == "error" and i["diagnostics"]
    if expr:
        assert i["expression"] == expr
    assert fhir.get("/fhir/Patient").json().get("entry", []) == []


def test_missing_required_element(fhir):
    r = fhir.post("/fhir/Observation", json={"resourceType": "Observation", "code": {"text": "x"}})
    assert r.status_code == 400
    i = issue(r)
    assert i["code"] == "required" and i["expression"] == ["Observation.status"]


def test_body_too_large(app, fhir):
    app.state.settings.max_request_bytes = 1000
    big = patient(text={"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">"
                        + "x" * 5000 + "</div>"})
    r = fhir.post("/fhir/Patient", json=big)
    assert r.status_code == 413 and issue(r)["code"] == "too-costly"


def test_unknown_type_and_wrong_type(fhir):
    assert fhir.get("/fhir/Spaceship/1").status_code == 404
    r = fhir.put("/fhir/Patient/abc", json={**patient(), "id": "xyz"})
    assert r.status_code == 400 and "does not match" in issue(r)["diagnostics"]
    r = fhir.get("/fhir/Patient/nope")
    assert r.status_code == 404 and issue(r)["code"] == "not-found"


def test_xml_is_refused_clearly(fhir):
    r = fhir.get("/fhir/Patient", headers={"Accept": "application/fhir+xml"})
    assert r.status_code == 406
    r = fhir.post("/fhir/Patient", content=b"<Patient/>", headers={"Content-Type": "application/fhir+xml"})
    assert r.status_code == 415


def test_metadata_is_public_and_truthful(client):
    r = client.get("/fhir/metadata")
    assert r.status_code == 200
    cs = r.json()
    assert cs["resourceType"] == "CapabilityStatement" and cs["fhirVersion"] == "4.0.1"
    rest = cs["rest"][0]
    patient_res = next(x for x in rest["resource"] if x["type"] == "Patient")
    assert {i["code"] for i in patient_res["interaction"]} >= {"read", "vread", "update", "delete", "create",
                                                              "history-instance", "history-type", "search-type"}
    assert patient_res["conditionalCreate"] and patient_res["conditionalUpdate"]
    assert any(o["name"] == "everything" for o in patient_res["operation"])
    assert {i["code"] for i in rest["interaction"]} == {"transaction", "batch", "history-system"}
    assert "token" in str(rest["security"])


def test_everything(fhir):
    org = create(fhir, {"resourceType": "Organization", "name": "IGMC"})
    p = create(fhir, patient(managingOrganization={"reference": f"Organization/{org['id']}"}))
    other = create(fhir, patient("Other"))
    enc = create(fhir, {"resourceType": "Encounter", "status": "finished",
                        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
                        "subject": {"reference": f"Patient/{p['id']}"},
                        "serviceProvider": {"reference": f"Organization/{org['id']}"}})
    create(fhir, {"resourceType": "Observation", "status": "final", "code": {"text": "Hb"},
                  "subject": {"reference": f"Patient/{p['id']}"}, "encounter": {"reference": f"Encounter/{enc['id']}"}})
    create(fhir, {"resourceType": "Observation", "status": "final", "code": {"text": "Hb"},
                  "subject": {"reference": f"Patient/{other['id']}"}})
    b = fhir.get(f"/fhir/Patient/{p['id']}/$everything").json()
    types = sorted(e["resource"]["resourceType"] for e in b["entry"])
    assert types == ["Encounter", "Observation", "Organization", "Patient"]
    assert fhir.get("/fhir/Patient/nobody/$everything").status_code == 404


def test_validate_operation(fhir):
    ok = fhir.post("/fhir/Patient/$validate", json=patient()).json()
    assert ok["issue"][0]["severity"] == "information"
    bad = fhir.post("/fhir/Patient/$validate", json={"resourceType": "Patient", "gender": 5}).json()
    assert bad["issue"][0]["severity"] == "error" and bad["issue"][0]["expression"] == ["Patient.gender"]
    dangling = fhir.post("/fhir/Observation/$validate", json={
        "resourceType": "Parameters", "parameter": [{"name": "resource", "resource": {
            "resourceType": "Observation", "status": "final", "code": {"text": "x"},
            "subject": {"reference": "Patient/ghost"}}}]}).json()
    assert dangling["issue"][0]["code"] == "not-found"
    assert fhir.get("/fhir/Patient").json().get("entry", []) == []


def test_prefer_return_minimal(fhir):
    r = fhir.post("/fhir/Patient", json=patient(), headers={"Prefer": "return=minimal"})
    assert r.status_code == 201 and r.content == b"" and r.headers["location"]
