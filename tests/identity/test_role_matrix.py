"""Every role × every FHIR interaction × representative resource types, over HTTP with real tokens.

The expected answers are written out here by hand (``TABLE``), independently of
``identity/data/policy.json``, so a wrong policy fails these tests. A permitted interaction succeeds
on what the caller's scope shows (staff: their facility; a patient: their compartment; the
laboratory: the orders addressed to it and their results) and answers 404 outside it; a refused
one answers 403 with an OperationOutcome and changes nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.builders import INFRASTRUCTURE, TEST_IDS, Hospital, bearer, clinical_id, lab_token, open_hospital, resource
from tests.conftest import mint_token

ROLES = ("doctor", "nurse", "lab-system", "patient", "nhm-manager", "admin", "auditor")

# What each role may do, by resource type. Letters: r read, v vread, s search, h history (instance and
# type), c create (plain and conditional), u update (plain and conditional), d delete (plain and
# conditional), x $validate.
#                      doctor      nurse      lab-system patient nhm-manager admin       auditor
TABLE = {
    "Patient":           ("rvshcudx", "rvshcux", "",       "rvsh", "rvs",      "x",        ""),
    "Observation":       ("rvshcudx", "rvshcux", "rvscux", "rvsh", "rvs",      "x",        ""),
    "Encounter":         ("rvshcudx", "rvshcux", "",       "rvsh", "rvs",      "x",        ""),
    "Condition":         ("rvshcudx", "rvshcux", "",       "rvsh", "rvs",      "x",        ""),
    "MedicationRequest": ("rvshcudx", "rvshx",   "",       "rvsh", "",         "x",        ""),
    "ServiceRequest":    ("rvshcudx", "rvshx",   "rvs",    "rvsh", "",         "x",        ""),
    "DiagnosticReport":  ("rvshcudx", "rvshx",   "rvscux", "rvsh", "",         "x",        ""),
    "Immunization":      ("rvshcudx", "rvshx",   "",       "rvsh", "rvs",      "x",        ""),
    "Organization":      ("rvshx",    "rvshx",   "",       "rvs",  "rvs",      "rvshcudx", ""),
    "Location":          ("rvshx",    "rvshx",   "",       "rvs",  "rvs",      "rvshcudx", ""),
    "Practitioner":      ("rvshx",    "rvshx",   "",       "rvs",  "rvs",      "rvshcudx", ""),
    "AuditEvent":        ("",         "",        "",       "rs",   "",         "",         "rs"),
}
# Interactions that are not per resource type.
EVERYTHING = {"doctor": True, "nurse": True, "lab-system": False, "patient": True, "nhm-manager": False,
              "admin": False, "auditor": False}
BATCH = {"doctor": True, "nurse": True, "lab-system": True, "patient": True, "nhm-manager": True,
         "admin": True, "auditor": False}
TRANSACTION = {"doctor": True, "nurse": True, "lab-system": True, "patient": False, "nhm-manager": False,
               "admin": True, "auditor": False}

# Whose resources each role's scope shows, and whose it hides (answering 404, absent from searches).
# Staff of IGMC see p1 and p2 (registered there) but not p9 (RPGMC); the patient p1 sees only
# themselves; the laboratory sees p1's order (addressed to it) and its results, not p2's.
SHOWN = {"doctor": "p1", "nurse": "p1", "lab-system": "p1", "patient": "p1", "nhm-manager": "p1"}
HIDDEN = {"doctor": "p9", "nurse": "p9", "lab-system": "p2", "patient": "p2"}

LETTER = {"read": "r", "vread": "v", "search": "s", "history-instance": "h", "history-type": "h", "create": "c",
          "conditional-create": "c", "update": "u", "conditional-update": "u", "delete": "d",
          "conditional-delete": "d", "validate": "x"}
NOT_FOR_AUDIT_EVENTS = {"vread", "history-instance", "history-type", "validate"}  # the log is no versioned store
READS = ("read", "vread", "history-instance")
WRITES = ("update", "delete")


def allowed(role: str, res_type: str, interaction: str) -> bool:
    return LETTER[interaction] in TABLE[res_type][ROLES.index(role)]


def _cells() -> list:
    out = []
    for res_type in TABLE:
        for interaction in LETTER:
            if res_type == "AuditEvent" and interaction in NOT_FOR_AUDIT_EVENTS:
                continue
            for role in ROLES:
                out.append(pytest.param(role, res_type, interaction, id=f"{role}-{interaction}-{res_type}"))
    return out


def _hidden_cells() -> list:
    out = []
    for role, whose in HIDDEN.items():
        for res_type in TABLE:
            for interaction in READS + WRITES:
                if res_type in INFRASTRUCTURE or not allowed(role, res_type, interaction):
                    continue
                if res_type == "AuditEvent" and interaction != "read":
                    continue
                out.append(pytest.param(role, res_type, interaction, whose,
                                        id=f"{role}-{interaction}-{res_type}-of-{whose}"))
    return out


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def hospital(request, var_dir) -> Iterator[Hospital]:
    url = request.getfixturevalue("pg_url" if request.param == "postgres" else "sqlite_url")
    with open_hospital(request.param, url, var_dir) as h:
        yield h


@pytest.fixture(scope="module")
def tokens(hospital) -> dict[str, dict[str, str]]:
    """Headers of one caller per role: staff at IGMC, the patient p1, the laboratory's client."""
    s = hospital.settings
    return {
        "doctor": bearer(mint_token(s, roles=("doctor",), username="dr.matrix", facility="IGMC")),
        "nurse": bearer(mint_token(s, roles=("nurse",), username="nurse.matrix", facility="IGMC")),
        "lab-system": bearer(lab_token(hospital.client)),
        "patient": bearer(mint_token(s, roles=("patient",), username="patient.matrix", patient="p1")),
        "nhm-manager": bearer(mint_token(s, roles=("nhm-manager",), username="nhm.matrix")),
        "admin": bearer(mint_token(s, roles=("admin",), username="admin.matrix")),
        "auditor": bearer(mint_token(s, roles=("auditor",), username="auditor.matrix")),
    }


def target(h: Hospital, role: str, res_type: str, whose: str | None = None) -> str:
    """The id of a seeded resource of ``res_type`` the role's scope shows (or, with ``whose``, another's)."""
    if res_type == "AuditEvent":
        return h.events[whose or "p1"]
    if res_type in INFRASTRUCTURE:
        return INFRASTRUCTURE[res_type]
    return clinical_id(res_type, whose or SHOWN.get(role, "p1"))


def victim(h: Hospital, res_type: str) -> str:
    """A fresh resource to be updated or deleted, inside every scope that shows p1 (the lab's included)."""
    return h.make(res_type)


def refused(r, status: int = 403) -> None:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["resourceType"] == "OperationOutcome", body
    assert body["issue"][0]["severity"] == "error"
    assert body["issue"][0]["code"] == ("forbidden" if status == 403 else "not-found"), body


def found(r) -> set[str]:
    assert r.status_code == 200, r.text
    bundle = r.json()
    assert bundle["resourceType"] == "Bundle"
    return {e["resource"]["id"] for e in bundle.get("entry", []) if "resource" in e}


def current_version(h: Hospital, res_type: str, res_id: str) -> str:
    r = h.client.get(f"/fhir/{res_type}/{res_id}", headers=h.steward)
    assert r.status_code == 200, r.text
    return r.json()["meta"]["versionId"]


def request_cell(h: Hospital, headers: dict, role: str, res_type: str, interaction: str, ok: bool):
    """Make the request of one cell; writes that should succeed work on a fresh resource."""
    c = h.client
    rid = target(h, role, res_type)
    body = resource(res_type, id=None) if res_type != "AuditEvent" else {"resourceType": "AuditEvent"}
    fresh = f"t-{uuid.uuid4().hex[:12]}"
    if interaction == "read":
        return c.get(f"/fhir/{res_type}/{rid}", headers=headers)
    if interaction == "vread":
        return c.get(f"/fhir/{res_type}/{rid}/_history/1", headers=headers)
    if interaction == "search":
        return c.get(f"/fhir/{res_type}", params=_search_params(res_type, rid), headers=headers)
    if interaction == "history-instance":
        return c.get(f"/fhir/{res_type}/{rid}/_history", headers=headers)
    if interaction == "history-type":
        return c.get(f"/fhir/{res_type}/_history", params={"_count": "500"}, headers=headers)
    if interaction == "create":
        return c.post(f"/fhir/{res_type}", json=body, headers=headers)
    if interaction == "conditional-create":
        return c.post(f"/fhir/{res_type}", json={**body, "identifier": [{"system": TEST_IDS, "value": fresh}]},
                      headers={**headers, "If-None-Exist": f"identifier={TEST_IDS}|{fresh}"})
    if interaction == "validate":
        return c.post(f"/fhir/{res_type}/$validate", json=body, headers=headers)
    # Updates and deletes: a fresh victim when they should succeed; the seeded resource (which a
    # refusal must leave as it is) when they should not.
    rid = victim(h, res_type) if ok else rid
    if interaction == "update":
        return c.put(f"/fhir/{res_type}/{rid}", json={**body, "id": rid}, headers=headers)
    if interaction == "conditional-update":
        return c.put(f"/fhir/{res_type}", params={"identifier": f"{TEST_IDS}|{rid}"},
                     json={**body, "identifier": [{"system": TEST_IDS, "value": rid}]}, headers=headers)
    if interaction == "delete":
        return c.delete(f"/fhir/{res_type}/{rid}", headers=headers)
    if interaction == "conditional-delete":
        return c.delete(f"/fhir/{res_type}", params={"identifier": f"{TEST_IDS}|{rid}"}, headers=headers)
    raise AssertionError(interaction)


def _search_params(res_type: str, rid: str) -> dict[str, str]:
    if res_type == "AuditEvent":
        return {"entity": "Patient", "agent": "test.steward", "_count": "100"}
    return {"_id": rid, "_count": "100"}


SUCCESS = {"create": 201, "conditional-create": 201, "update": 200, "conditional-update": 200, "delete": 200,
           "conditional-delete": 200}


@pytest.mark.parametrize(("role", "res_type", "interaction"), _cells())
def test_role_interaction_type(hospital, tokens, role, res_type, interaction):
    ok = allowed(role, res_type, interaction)
    r = request_cell(hospital, tokens[role], role, res_type, interaction, ok)
    if not ok:
        refused(r)
        return
    assert r.status_code == SUCCESS.get(interaction, 200), r.text
    rid = target(hospital, role, res_type)
    if interaction == "search":
        assert rid in found(r)
    elif interaction in ("read", "vread"):
        assert r.json()["id"] == rid and r.json()["resourceType"] == res_type
    elif interaction == "history-instance":
        assert found(r) == {rid}
    elif interaction == "history-type":
        assert rid in found(r)
    elif interaction == "validate":
        assert r.json()["resourceType"] == "OperationOutcome"
        assert not [i for i in r.json()["issue"] if i["severity"] in ("error", "fatal")], r.text


@pytest.mark.parametrize(("role", "res_type", "interaction", "whose"), _hidden_cells())
def test_scope_hides_others_resources(hospital, tokens, role, res_type, interaction, whose):
    """A permitted interaction on a resource outside the caller's scope answers as if it did not exist."""
    c, headers = hospital.client, tokens[role]
    rid = target(hospital, role, res_type, whose)
    before = None if res_type == "AuditEvent" else current_version(hospital, res_type, rid)
    if interaction == "read":
        r = c.get(f"/fhir/{res_type}/{rid}", headers=headers)
    elif interaction == "vread":
        r = c.get(f"/fhir/{res_type}/{rid}/_history/1", headers=headers)
    elif interaction == "history-instance":
        r = c.get(f"/fhir/{res_type}/{rid}/_history", headers=headers)
    elif interaction == "update":
        r = c.put(f"/fhir/{res_type}/{rid}", json=resource(res_type, id=rid, patient=whose), headers=headers)
    else:
        r = c.delete(f"/fhir/{res_type}/{rid}", headers=headers)
    refused(r, 404)
    assert "is not known" in r.json()["issue"][0]["diagnostics"]
    if before is not None:
        assert current_version(hospital, res_type, rid) == before


SEARCHED = [pytest.param(role, res_type, id=f"{role}-{res_type}") for role in HIDDEN for res_type in TABLE
            if res_type not in INFRASTRUCTURE and allowed(role, res_type, "search")]


@pytest.mark.parametrize(("role", "res_type"), SEARCHED)
def test_searches_leave_out_others_resources(hospital, tokens, role, res_type):
    shown, hidden = target(hospital, role, res_type), target(hospital, role, res_type, HIDDEN[role])
    params = _search_params(res_type, f"{shown},{hidden}")
    ids = found(hospital.client.get(f"/fhir/{res_type}", params=params, headers=tokens[role]))
    assert shown in ids and hidden not in ids
    if allowed(role, res_type, "history-type"):
        ids = found(hospital.client.get(f"/fhir/{res_type}/_history", params={"_count": "500"},
                                        headers=tokens[role]))
        assert shown in ids and hidden not in ids


@pytest.mark.parametrize("role", ROLES)
def test_everything(hospital, tokens, role):
    c, headers = hospital.client, tokens[role]
    shown = SHOWN.get(role, "p1")
    r = c.get(f"/fhir/Patient/{shown}/$everything", headers=headers)
    if not EVERYTHING[role]:
        refused(r)
        return
    ids = found(r)
    assert {shown, f"obs-{shown}", f"enc-{shown}"} <= ids
    assert not {i for i in ids if i.endswith(("-p2", "-p9"))}
    if role in HIDDEN:
        refused(c.get(f"/fhir/Patient/{HIDDEN[role]}/$everything", headers=headers), 404)


@pytest.mark.parametrize("res_type", [t for t in TABLE if t != "AuditEvent"])
@pytest.mark.parametrize("role", ROLES)
def test_batch_reads_are_checked_entry_by_entry(hospital, tokens, role, res_type):
    rid = target(hospital, role, res_type)
    batch = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "GET", "url": f"{res_type}/{rid}"}},
        {"request": {"method": "GET", "url": f"{res_type}?_id={rid}"}}]}
    r = hospital.client.post("/fhir", json=batch, headers=tokens[role])
    if not BATCH[role]:
        refused(r)
        return
    assert r.status_code == 200, r.text
    read, search = r.json()["entry"]
    if allowed(role, res_type, "read"):
        assert read["response"]["status"].startswith("200"), read
        assert read["resource"]["id"] == rid
    else:
        assert read["response"]["status"].startswith("403"), read
        assert read["response"]["outcome"]["issue"][0]["code"] == "forbidden"
    if allowed(role, res_type, "search"):
        assert search["response"]["status"].startswith("200"), search
        assert {e["resource"]["id"] for e in search["resource"].get("entry", [])} == {rid}
    else:
        assert search["response"]["status"].startswith("403"), search


@pytest.mark.parametrize("role", ["auditor", "patient"])
def test_the_audit_log_reads_the_same_by_every_path(hospital, tokens, role):
    c, headers, event = hospital.client, tokens[role], hospital.events["p1"]
    params = _search_params("AuditEvent", event)
    by_get = found(c.get("/fhir/AuditEvent", params=params, headers=headers))
    assert event in by_get
    assert found(c.post("/fhir/AuditEvent/_search", data=params, headers=headers)) == by_get
    if BATCH[role]:
        batch = {"resourceType": "Bundle", "type": "batch", "entry": [
            {"request": {"method": "GET", "url": f"AuditEvent/{event}"}}]}
        r = c.post("/fhir", json=batch, headers=headers)
        assert r.json()["entry"][0]["response"]["status"].startswith("200"), r.text


# What each role writes in a transaction: something of its own trade, for p1.
TRANSACTION_WRITES = {"doctor": "MedicationRequest", "nurse": "Observation", "lab-system": "DiagnosticReport",
                      "admin": "Location", "patient": "Observation", "nhm-manager": "Observation",
                      "auditor": "Observation"}


@pytest.mark.parametrize("role", ROLES)
def test_transaction(hospital, tokens, role):
    res_type = TRANSACTION_WRITES[role]
    marker = f"t-{uuid.uuid4().hex[:12]}"
    tx = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": resource(res_type, identifier=marker), "request": {"method": "POST", "url": res_type}}]}
    r = hospital.client.post("/fhir", json=tx, headers=tokens[role])
    stored = hospital.client.get(f"/fhir/{res_type}", params={"identifier": f"{TEST_IDS}|{marker}"},
                                 headers=hospital.steward)
    if not TRANSACTION[role]:
        refused(r)
        assert found(stored) == set()
        return
    assert r.status_code == 200, r.text
    assert r.json()["entry"][0]["response"]["status"].startswith("201")
    assert len(found(stored)) == 1


def test_a_transaction_with_one_refused_entry_writes_nothing(hospital, tokens):
    marker = f"t-{uuid.uuid4().hex[:12]}"
    tx = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": resource("Observation", identifier=marker), "request": {"method": "POST", "url": "Observation"}},
        {"resource": resource("MedicationRequest", identifier=marker),
         "request": {"method": "POST", "url": "MedicationRequest"}}]}
    refused(hospital.client.post("/fhir", json=tx, headers=tokens["nurse"]))
    assert found(hospital.client.get("/fhir/Observation", params={"identifier": f"{TEST_IDS}|{marker}"},
                                     headers=hospital.steward)) == set()


def test_the_laboratory_sees_its_tasks_and_writes_specimens_for_its_orders(hospital, tokens):
    c, lab = hospital.client, tokens["lab-system"]
    assert c.get("/fhir/Task/task-p1", headers=lab).status_code == 200
    refused(c.get("/fhir/Task/task-p2", headers=lab), 404)
    assert found(c.get("/fhir/Task", params={"_id": "task-p1,task-p2"}, headers=lab)) == {"task-p1"}
    assert found(c.get("/fhir/ServiceRequest", params={"_id": "sr-p1,sr-p2,sr-p9"}, headers=lab)) == {"sr-p1"}
    task = resource("Task", id="task-p1", status="accepted")
    assert c.put("/fhir/Task/task-p1", json=task, headers=lab).status_code == 200
    assert c.post("/fhir/Specimen", json=resource("Specimen"), headers=lab).status_code == 201
    # Results for an order addressed to another laboratory are refused.
    refused(c.post("/fhir/Observation", json=resource("Observation", patient="p2"), headers=lab))
    refused(c.delete("/fhir/Task/task-p1", headers=lab))


def test_refusals_changed_nothing(hospital):
    """Run last in the module: refused writes aimed at the seeded resources, which are all still at version 1
    (permitted writes worked on fresh ones)."""
    for res_type in TABLE:
        if res_type == "AuditEvent":
            continue
        for whose in ("p1", "p2", "p9"):
            rid = INFRASTRUCTURE.get(res_type) or clinical_id(res_type, whose)
            assert current_version(hospital, res_type, rid) == "1", f"{res_type}/{rid}"
