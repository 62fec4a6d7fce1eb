"""A laboratory system sees the orders addressed to it and what hangs off them, and nothing else.

The lab client is the confidential client ``lab-gateway`` (role lab-system); its Organization
carries the identifier ``himhis.systems.OIDC_CLIENT|lab-gateway``.
"""

from __future__ import annotations

import pytest

from himhis.systems import FACILITY, OIDC_CLIENT
from tests.conftest import steward_headers

LOINC_HB = {"coding": [{"system": "http://loinc.org", "code": "718-7", "display": "Hemoglobin"}]}


def _lab_headers(client) -> dict:
    r = client.post("/realms/himhis/protocol/openid-connect/token",
                    data={"grant_type": "client_credentials", "client_id": "lab-gateway",
                          "client_secret": "lab-secret"})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def _put(client, headers, resource: dict) -> dict:
    r = client.put(f"/fhir/{resource['resourceType']}/{resource['id']}", json=resource, headers=headers)
    assert r.status_code in (200, 201), r.text
    return r.json()


def _order(res_id: str, patient: str, lab: str) -> dict:
    return {"resourceType": "ServiceRequest", "id": res_id, "status": "active", "intent": "order",
            "code": LOINC_HB, "subject": {"reference": f"Patient/{patient}"},
            "performer": [{"reference": f"Organization/{lab}"}]}


def _result(res_id: str | None, patient: str, order: str | None, value: float = 13.2) -> dict:
    out = {"resourceType": "Observation", "status": "final", "code": LOINC_HB,
           "subject": {"reference": f"Patient/{patient}"},
           "valueQuantity": {"value": value, "unit": "g/dL", "system": "http://unitsofmeasure.org", "code": "g/dL"}}
    if res_id:
        out["id"] = res_id
    if order:
        out["basedOn"] = [{"reference": f"ServiceRequest/{order}"}]
    return out


@pytest.fixture
def world(client, settings):
    """Two labs, two patients, an order for each lab, a task, results and specimens."""
    steward = steward_headers(client, settings)
    _put(client, steward, {"resourceType": "Organization", "id": "igmc", "name": "IGMC Shimla",
                           "identifier": [{"system": FACILITY, "value": "IGMC"}]})
    _put(client, steward, {"resourceType": "Organization", "id": "lab-igmc", "name": "IGMC central laboratory",
                           "identifier": [{"system": OIDC_CLIENT, "value": "lab-gateway"}]})
    _put(client, steward, {"resourceType": "Organization", "id": "lab-other", "name": "Another laboratory",
                           "identifier": [{"system": OIDC_CLIENT, "value": "other-lab"}]})
    for pid in ("p1", "p2"):
        _put(client, steward, {"resourceType": "Patient", "id": pid, "name": [{"family": pid}],
                               "managingOrganization": {"reference": "Organization/igmc"}})
    _put(client, steward, _order("sr-mine", "p1", "lab-igmc"))
    _put(client, steward, _order("sr-theirs", "p2", "lab-other"))
    _put(client, steward, {"resourceType": "Task", "id": "task-mine", "status": "requested", "intent": "order",
                           "focus": {"reference": "ServiceRequest/sr-mine"},
                           "owner": {"reference": "Organization/lab-igmc"}})
    _put(client, steward, {"resourceType": "Task", "id": "task-theirs", "status": "requested", "intent": "order",
                           "owner": {"reference": "Organization/lab-other"}})
    _put(client, steward, _result("obs-mine", "p1", "sr-mine"))
    _put(client, steward, _result("obs-theirs", "p2", "sr-theirs"))
    _put(client, steward, {"resourceType": "Specimen", "id": "spec-p1", "subject": {"reference": "Patient/p1"}})
    _put(client, steward, {"resourceType": "Specimen", "id": "spec-p2", "subject": {"reference": "Patient/p2"}})
    return {"lab": _lab_headers(client), "steward": steward}


def _ids(client, headers, query: str) -> set[str]:
    r = client.get(f"/fhir/{query}", headers=headers)
    assert r.status_code == 200, r.text
    return {e["resource"]["id"] for e in r.json().get("entry", [])}


def test_the_lab_sees_only_the_orders_and_tasks_addressed_to_it(client, world):
    lab = world["lab"]
    assert _ids(client, lab, "ServiceRequest") == {"sr-mine"}
    assert _ids(client, lab, "Task") == {"task-mine"}
    assert client.get("/fhir/ServiceRequest/sr-mine", headers=lab).status_code == 200
    for path in ("ServiceRequest/sr-theirs", "Task/task-theirs", "ServiceRequest/sr-theirs/_history/1"):
        r = client.get(f"/fhir/{path}", headers=lab)
        assert r.status_code == 404, path
        assert "is not known" in r.json()["issue"][0]["diagnostics"]
    assert _ids(client, lab, "ServiceRequest?subject=Patient/p2") == set()


def test_the_lab_sees_results_of_its_orders_and_specimens_of_their_patients(client, world):
    lab = world["lab"]
    assert _ids(client, lab, "Observation") == {"obs-mine"}
    assert _ids(client, lab, "Specimen") == {"spec-p1"}
    assert client.get("/fhir/Observation/obs-theirs", headers=lab).status_code == 404
    assert _ids(client, lab, "ServiceRequest?_revinclude=Observation:based-on") == {"sr-mine", "obs-mine"}


def test_the_lab_cannot_browse_patients_even_through_includes(client, world):
    lab = world["lab"]
    for path in ("Patient", "Patient/p1", "Encounter", "Condition"):
        assert client.get(f"/fhir/{path}", headers=lab).status_code == 403, path
    assert _ids(client, lab, "ServiceRequest?_include=ServiceRequest:subject") == {"sr-mine"}


def test_the_lab_writes_results_for_its_orders_only(client, world):
    lab, steward = world["lab"], world["steward"]
    made = client.post("/fhir/Observation", json=_result(None, "p1", "sr-mine", 12.1), headers=lab)
    assert made.status_code == 201, made.text
    # Results for another lab's order, or for no order at all, are refused and nothing is stored.
    for body in (_result(None, "p2", "sr-theirs"), _result(None, "p1", None)):
        r = client.post("/fhir/Observation", json=body, headers=lab)
        assert r.status_code == 403, r.text
        assert "orders addressed to this laboratory" in r.json()["issue"][0]["diagnostics"]
    assert client.get("/fhir/Observation?_summary=count", headers=steward).json()["total"] == 3
    # An unsolicited result the lab performed itself is its own.
    own = {**_result(None, "p1", None), "performer": [{"reference": "Organization/lab-igmc"}]}
    assert client.post("/fhir/Observation", json=own, headers=lab).status_code == 201


def test_the_lab_updates_its_results_but_not_others_nor_moves_them_away(client, world):
    lab = world["lab"]
    r = client.put("/fhir/Observation/obs-mine", json=_result("obs-mine", "p1", "sr-mine", 14.0),
                   headers={**lab, "If-Match": 'W/"1"'})
    assert r.status_code == 200, r.text
    r = client.put("/fhir/Observation/obs-theirs", json=_result("obs-theirs", "p2", "sr-theirs", 1.0), headers=lab)
    assert r.status_code == 404
    # Re-pointing its own result at another lab's order would take it out of its scope: refused.
    r = client.put("/fhir/Observation/obs-mine", json=_result("obs-mine", "p2", "sr-theirs"), headers=lab)
    assert r.status_code == 403
    assert client.delete("/fhir/Observation/obs-mine", headers=lab).status_code == 403


def test_transaction_entries_are_held_to_the_same_scope(client, world):
    lab, steward = world["lab"], world["steward"]
    tx = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": _result(None, "p1", "sr-mine"), "request": {"method": "POST", "url": "Observation"}},
        {"resource": _result("obs-theirs", "p2", "sr-theirs", 0.5),
         "request": {"method": "PUT", "url": "Observation/obs-theirs"}}]}
    r = client.post("/fhir", json=tx, headers=lab)
    assert r.status_code == 404, r.text
    tx["entry"][1] = {"resource": _result(None, "p2", "sr-theirs"), "request": {"method": "POST", "url": "Observation"}}
    assert client.post("/fhir", json=tx, headers=lab).status_code == 403
    assert client.get("/fhir/Observation?_summary=count", headers=steward).json()["total"] == 2
    assert client.get("/fhir/Observation/obs-theirs", headers=steward).json()["meta"]["versionId"] == "1"
    tx["entry"] = tx["entry"][:1]
    assert client.post("/fhir", json=tx, headers=lab).status_code == 200


def test_a_facility_doctor_cannot_overwrite_another_facilitys_record_in_a_transaction(client, settings):
    from tests.conftest import mint_token

    steward = steward_headers(client, settings)
    _put(client, steward, {"resourceType": "Organization", "id": "rpgmc", "name": "RPGMC Tanda",
                           "identifier": [{"system": FACILITY, "value": "RPGMC"}]})
    _put(client, steward, {"resourceType": "Patient", "id": "tanda-1", "name": [{"family": "Kumar"}],
                           "managingOrganization": {"reference": "Organization/rpgmc"}})
    doctor = {"Authorization": f"Bearer {mint_token(settings, roles=('doctor',), username='dr.x', facility='IGMC')}"}
    tx = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Patient", "id": "tanda-1", "name": [{"family": "Changed"}]},
         "request": {"method": "PUT", "url": "Patient/tanda-1"}}]}
    assert client.post("/fhir", json=tx, headers=doctor).status_code == 404
    tx["entry"][0] = {"request": {"method": "DELETE", "url": "Patient/tanda-1"}}
    assert client.post("/fhir", json=tx, headers=doctor).status_code == 404
    kept = client.get("/fhir/Patient/tanda-1", headers=steward).json()
    assert kept["name"][0]["family"] == "Kumar" and kept["meta"]["versionId"] == "1"
