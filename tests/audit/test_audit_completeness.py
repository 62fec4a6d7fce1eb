"""Audit completeness: each FHIR interaction, successful or refused, appends exactly the records expected.

Each test counts the audit log before and after one request and checks every field of what was
appended: the interaction code, the resource, its version, the patients whose data it touched, the
outcome (0 success; 4 refused, with a detail starting with the HTTP status) and who asked, with
which client and from where. The chain is verified at the end of the module.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import func, select

from audit.service import A
from audit.verify import verify
from tests.builders import TEST_IDS, Hospital, bearer, lab_token, open_hospital, resource
from tests.conftest import mint_token

AGENT = "completeness-test/1"
SOURCE = "testclient"  # the client address Starlette's test client reports


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def hospital(request, var_dir) -> Iterator[Hospital]:
    url = request.getfixturevalue("pg_url" if request.param == "postgres" else "sqlite_url")
    with open_hospital(request.param, url, var_dir) as h:
        yield h


def _subject(username: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, username))  # how tests.conftest.mint_token makes user ids


@pytest.fixture(scope="module")
def who(hospital) -> dict[str, dict[str, Any]]:
    """Callers, each with their request headers and the actor fields their audit records must carry."""
    s = hospital.settings

    def staff(role: str, username: str, facility: str | None = None, **kw: Any) -> dict[str, Any]:
        token = mint_token(s, roles=(role,), username=username, facility=facility, **kw)
        return {"headers": bearer(token, **{"User-Agent": AGENT}),
                "actor": {"actor_subject": _subject(username), "actor_username": username, "actor_roles": role,
                          "actor_facility": facility, "client_id": "himhis-cli", "source_ip": SOURCE,
                          "user_agent": AGENT}}

    lab = {"headers": bearer(lab_token(hospital.client), **{"User-Agent": AGENT}),
           "actor": {"actor_roles": "lab-system", "actor_facility": None, "client_id": "lab-gateway",
                     "source_ip": SOURCE, "user_agent": AGENT}}
    return {"doctor": staff("doctor", "dr.audit", "IGMC"), "nurse": staff("nurse", "nurse.audit", "IGMC"),
            "auditor": staff("auditor", "auditor.audit"), "patient": staff("patient", "patient.audit", patient="p1"),
            "lab": lab}


def _tail(h: Hospital) -> int:
    return h.db.run(lambda s: s.execute(select(func.coalesce(func.max(A.c.seq), 0))).scalar_one(), write=False)


def appended(h: Hospital, act: Callable[[], Any]) -> tuple[Any, list[dict]]:
    """Do ``act`` and return its result and the audit records it appended, in order."""
    before = _tail(h)
    result = act()
    rows = h.db.run(lambda s: s.execute(select(A).where(A.c.seq > before).order_by(A.c.seq)).all(), write=False)
    return result, [dict(r._mapping) for r in rows]


def expect(row: dict, actor: dict[str, Any] | None, *, interaction: str, resource_type: str | None = None,
           resource_id: str | None = None, version_id: str | None = None, patients: set[str] = frozenset(),
           status: int | None = None, query: str | None = None) -> None:
    """``row`` is the record of ``interaction`` by ``actor``; ``status`` is the HTTP status of a refusal."""
    got = {"interaction": row["interaction"], "resource_type": row["resource_type"], "resource_id": row["resource_id"],
           "version_id": row["version_id"], "patients": set(filter(None, (row["patient_ids"] or "").split(","))),
           "outcome": row["outcome"]}
    want = {"interaction": interaction, "resource_type": resource_type, "resource_id": resource_id,
            "version_id": version_id, "patients": set(patients), "outcome": 4 if status else 0}
    assert got == want, row
    if status:
        assert row["outcome_detail"].startswith(f"{status} "), row
    else:
        assert row["outcome_detail"] is None, row
    if query is not None:
        assert row["query"] == query, row
    for name, value in (actor or {}).items():
        assert row[name] == value, (name, row)
    assert row["recorded"] is not None and row["hash"] and row["prev_hash"]


def _obs(h: Hospital, patient: str = "p1") -> str:
    return h.make("Observation", patient=patient)


# -- reads ------------------------------------------------------------------------------------


def test_read(hospital, who):
    r, rows = appended(hospital, lambda: hospital.client.get("/fhir/Observation/obs-p1", **_h(who, "doctor")))
    assert r.status_code == 200
    assert len(rows) == 1
    expect(rows[0], who["doctor"]["actor"], interaction="read", resource_type="Observation", resource_id="obs-p1",
           version_id="1", patients={"p1"})


def test_vread(hospital, who):
    r, rows = appended(hospital, lambda: hospital.client.get("/fhir/Patient/p2/_history/1", **_h(who, "nurse")))
    assert r.status_code == 200
    assert len(rows) == 1
    expect(rows[0], who["nurse"]["actor"], interaction="vread", resource_type="Patient", resource_id="p2",
           version_id="1", patients={"p2"})


def test_search_names_every_patient_returned(hospital, who):
    r, rows = appended(hospital, lambda: hospital.client.get(
        "/fhir/Encounter", params={"_id": "enc-p1,enc-p2,enc-p9"}, **_h(who, "doctor")))
    assert {e["resource"]["id"] for e in r.json()["entry"]} == {"enc-p1", "enc-p2"}
    assert len(rows) == 1
    expect(rows[0], who["doctor"]["actor"], interaction="search-type", resource_type="Encounter",
           patients={"p1", "p2"}, query="_id=enc-p1%2Cenc-p2%2Cenc-p9")


def test_search_returning_nothing(hospital, who):
    r, rows = appended(hospital, lambda: hospital.client.get(
        "/fhir/Condition", params={"_id": "cond-p9"}, **_h(who, "doctor")))
    assert r.status_code == 200 and r.json().get("total") == 0
    assert len(rows) == 1
    expect(rows[0], who["doctor"]["actor"], interaction="search-type", resource_type="Condition", patients=set())


def test_history_instance(hospital, who):
    oid = _obs(hospital)
    hospital.put(resource("Observation", id=oid, identifier=oid, status="amended"))
    r, rows = appended(hospital, lambda: hospital.client.get(f"/fhir/Observation/{oid}/_history",
                                                             **_h(who, "patient")))
    assert r.json()["total"] == 2
    assert len(rows) == 1
    expect(rows[0], who["patient"]["actor"], interaction="history-instance", resource_type="Observation",
           resource_id=oid, patients={"p1"})


def test_history_type(hospital, who):
    r, rows = appended(hospital, lambda: hospital.client.get("/fhir/Immunization/_history", **_h(who, "doctor")))
    assert {e["resource"]["id"] for e in r.json()["entry"]} == {"imm-p1", "imm-p2"}
    assert len(rows) == 1
    expect(rows[0], who["doctor"]["actor"], interaction="history-type", resource_type="Immunization",
           patients={"p1", "p2"})


def test_everything(hospital, who):
    r, rows = appended(hospital, lambda: hospital.client.get("/fhir/Patient/p2/$everything", **_h(who, "nurse")))
    assert r.status_code == 200
    assert len(rows) == 1
    expect(rows[0], who["nurse"]["actor"], interaction="operation", resource_type="Patient", resource_id="p2",
           patients={"p2"}, query="$everything")


def test_validate_reads_no_patient_data(hospital, who):
    r, rows = appended(hospital, lambda: hospital.client.post("/fhir/Observation/$validate",
                                                              json=resource("Observation"), **_h(who, "doctor")))
    assert r.status_code == 200, r.text
    assert len(rows) == 1
    expect(rows[0], who["doctor"]["actor"], interaction="operation", resource_type="Observation",
           query="$validate")


def test_the_laboratory_is_recorded_as_its_client(hospital, who):
    r, rows = appended(hospital, lambda: hospital.client.get("/fhir/ServiceRequest/sr-p1", **_h(who, "lab")))
    assert r.status_code == 200
    assert len(rows) == 1
    expect(rows[0], who["lab"]["actor"], interaction="read", resource_type="ServiceRequest", resource_id="sr-p1",
           version_id="1", patients={"p1"})


def test_reading_under_break_glass_carries_the_reason(hospital):
    r, rows = appended(hospital, lambda: hospital.client.get("/fhir/Patient/p9", headers=hospital.steward))
    assert r.status_code == 200
    assert len(rows) == 1
    expect(rows[0], None, interaction="read", resource_type="Patient", resource_id="p9", version_id="1",
           patients={"p9"})
    assert rows[0]["break_glass_reason"] == "store tests work across every facility"
    assert rows[0]["purpose_of_use"] == "ETREAT"


# -- the audit log itself ---------------------------------------------------------------------


def test_auditor_searching_the_log(hospital, who):
    r, rows = appended(hospital, lambda: hospital.client.get("/fhir/AuditEvent", params={"patient": "p1"},
                                                             **_h(who, "auditor")))
    assert r.status_code == 200 and r.json()["total"] > 0
    assert len(rows) == 1
    expect(rows[0], who["auditor"]["actor"], interaction="search-type", resource_type="AuditEvent",
           query="patient=p1")


def test_auditor_reading_an_event(hospital, who):
    seq = hospital.events["p2"]
    r, rows = appended(hospital, lambda: hospital.client.get(f"/fhir/AuditEvent/{seq}", **_h(who, "auditor")))
    assert r.status_code == 200
    assert len(rows) == 1
    expect(rows[0], who["auditor"]["actor"], interaction="read", resource_type="AuditEvent", resource_id=seq)


# -- writes -----------------------------------------------------------------------------------


def test_create(hospital, who):
    r, rows = appended(hospital, lambda: hospital.client.post("/fhir/Observation", json=resource("Observation"),
                                                              **_h(who, "nurse")))
    assert r.status_code == 201, r.text
    assert len(rows) == 1
    expect(rows[0], who["nurse"]["actor"], interaction="create", resource_type="Observation",
           resource_id=r.json()["id"], version_id="1", patients={"p1"})


def test_create_by_the_laboratory(hospital, who):
    r, rows = appended(hospital, lambda: hospital.client.post("/fhir/DiagnosticReport",
                                                              json=resource("DiagnosticReport"), **_h(who, "lab")))
    assert r.status_code == 201, r.text
    assert len(rows) == 1
    expect(rows[0], who["lab"]["actor"], interaction="create", resource_type="DiagnosticReport",
           resource_id=r.json()["id"], version_id="1", patients={"p1"})


def test_conditional_create_that_creates(hospital, who):
    marker = f"t-{uuid.uuid4().hex[:12]}"
    body = resource("Condition", patient="p2", identifier=marker)
    r, rows = appended(hospital, lambda: hospital.client.post(
        "/fhir/Condition", json=body, headers={**who["doctor"]["headers"],
                                               "If-None-Exist": f"identifier={TEST_IDS}|{marker}"}))
    assert r.status_code == 201, r.text
    assert len(rows) == 1
    expect(rows[0], who["doctor"]["actor"], interaction="create", resource_type="Condition",
           resource_id=r.json()["id"], version_id="1", patients={"p2"}, query=f"identifier={TEST_IDS}|{marker}")


def test_conditional_create_that_finds_the_resource(hospital, who):
    cid = hospital.make("Condition")
    r, rows = appended(hospital, lambda: hospital.client.post(
        "/fhir/Condition", json=resource("Condition", identifier=cid),
        headers={**who["doctor"]["headers"], "If-None-Exist": f"identifier={TEST_IDS}|{cid}"}))
    assert r.status_code == 200, r.text
    assert len(rows) == 1
    expect(rows[0], who["doctor"]["actor"], interaction="create", resource_type="Condition", resource_id=cid,
           version_id="1", patients={"p1"})


def test_update(hospital, who):
    oid = _obs(hospital)
    r, rows = appended(hospital, lambda: hospital.client.put(
        f"/fhir/Observation/{oid}", json=resource("Observation", id=oid, status="amended"), **_h(who, "nurse")))
    assert r.status_code == 200, r.text
    assert len(rows) == 1
    expect(rows[0], who["nurse"]["actor"], interaction="update", resource_type="Observation", resource_id=oid,
           version_id="2", patients={"p1"})


def test_update_moving_a_resource_to_another_patient_names_both(hospital, who):
    """Both patients' records changed: the one the result left and the one it joined."""
    oid = _obs(hospital, patient="p1")
    r, rows = appended(hospital, lambda: hospital.client.put(
        f"/fhir/Observation/{oid}", json=resource("Observation", id=oid, patient="p2"), **_h(who, "doctor")))
    assert r.status_code == 200, r.text
    assert len(rows) == 1
    expect(rows[0], who["doctor"]["actor"], interaction="update", resource_type="Observation", resource_id=oid,
           version_id="2", patients={"p1", "p2"})


def test_conditional_update(hospital, who):
    eid = hospital.make("Encounter", patient="p2")
    r, rows = appended(hospital, lambda: hospital.client.put(
        "/fhir/Encounter", params={"identifier": f"{TEST_IDS}|{eid}"},
        json=resource("Encounter", patient="p2", identifier=eid, status="cancelled"), **_h(who, "nurse")))
    assert r.status_code == 200, r.text
    assert len(rows) == 1
    expect(rows[0], who["nurse"]["actor"], interaction="update", resource_type="Encounter", resource_id=eid,
           version_id="2", patients={"p2"})


def test_delete(hospital, who):
    oid = _obs(hospital)
    r, rows = appended(hospital, lambda: hospital.client.delete(f"/fhir/Observation/{oid}", **_h(who, "doctor")))
    assert r.status_code == 200, r.text
    assert len(rows) == 1
    expect(rows[0], who["doctor"]["actor"], interaction="delete", resource_type="Observation", resource_id=oid,
           version_id="2", patients={"p1"})


def test_conditional_delete(hospital, who):
    mid = hospital.make("MedicationRequest", patient="p2")
    r, rows = appended(hospital, lambda: hospital.client.delete(
        "/fhir/MedicationRequest", params={"identifier": f"{TEST_IDS}|{mid}"}, **_h(who, "doctor")))
    assert r.status_code == 200, r.text
    assert len(rows) == 1
    expect(rows[0], who["doctor"]["actor"], interaction="delete", resource_type="MedicationRequest",
           resource_id=mid, version_id="2", patients={"p2"})


# -- Bundles ----------------------------------------------------------------------------------


def test_batch_with_two_entries_records_each(hospital, who):
    batch = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "GET", "url": "Observation/obs-p2"}},
        {"resource": resource("Observation"), "request": {"method": "POST", "url": "Observation"}}]}
    r, rows = appended(hospital, lambda: hospital.client.post("/fhir", json=batch, **_h(who, "nurse")))
    assert [e["response"]["status"][:3] for e in r.json()["entry"]] == ["200", "201"]
    assert len(rows) == 2
    created = r.json()["entry"][1]["response"]["location"].split("/")  # Observation/<id>/_history/1
    expect(rows[0], who["nurse"]["actor"], interaction="batch", resource_type="Observation", resource_id="obs-p2",
           version_id="1", patients={"p2"})
    expect(rows[1], who["nurse"]["actor"], interaction="batch", resource_type="Observation",
           resource_id=created[1], version_id=created[3], patients={"p1"})


def test_transaction_is_one_record_naming_every_patient(hospital, who):
    tx = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": resource("Observation", patient="p1"), "request": {"method": "POST", "url": "Observation"}},
        {"resource": resource("Condition", patient="p2"), "request": {"method": "POST", "url": "Condition"}}]}
    r, rows = appended(hospital, lambda: hospital.client.post("/fhir", json=tx, **_h(who, "doctor")))
    assert r.status_code == 200, r.text
    assert len(rows) == 1
    expect(rows[0], who["doctor"]["actor"], interaction="transaction", patients={"p1", "p2"})


# -- refusals ---------------------------------------------------------------------------------


def test_a_403_refusal(hospital, who):
    r, rows = appended(hospital, lambda: hospital.client.delete("/fhir/Observation/obs-p1", **_h(who, "nurse")))
    assert r.status_code == 403
    assert len(rows) == 1
    expect(rows[0], who["nurse"]["actor"], interaction="delete", resource_type="Observation", resource_id="obs-p1",
           status=403)


def test_a_403_refusal_of_a_search(hospital, who):
    r, rows = appended(hospital, lambda: hospital.client.get("/fhir/Patient", params={"name": "Thakur"},
                                                             **_h(who, "auditor")))
    assert r.status_code == 403
    assert len(rows) == 1
    expect(rows[0], who["auditor"]["actor"], interaction="search-type", resource_type="Patient", status=403)


def test_a_404_read_of_a_missing_resource(hospital, who):
    r, rows = appended(hospital, lambda: hospital.client.get("/fhir/Observation/no-such-thing", **_h(who, "doctor")))
    assert r.status_code == 404
    assert len(rows) == 1
    expect(rows[0], who["doctor"]["actor"], interaction="read", resource_type="Observation",
           resource_id="no-such-thing", status=404)


def test_a_404_read_outside_the_callers_scope(hospital, who):
    r, rows = appended(hospital, lambda: hospital.client.get("/fhir/Observation/obs-p2", **_h(who, "patient")))
    assert r.status_code == 404
    assert len(rows) == 1
    expect(rows[0], who["patient"]["actor"], interaction="read", resource_type="Observation", resource_id="obs-p2",
           status=404)


def test_a_401_without_a_token(hospital):
    r, rows = appended(hospital, lambda: hospital.client.get("/fhir/Observation/obs-p1",
                                                             headers={"User-Agent": AGENT}))
    assert r.status_code == 401
    assert len(rows) == 1
    anonymous = {"actor_subject": None, "actor_username": None, "actor_roles": None, "client_id": None,
                 "source_ip": SOURCE, "user_agent": AGENT}
    expect(rows[0], anonymous, interaction="read", resource_type="Observation", resource_id="obs-p1", status=401)


def test_a_401_with_a_forged_token(hospital):
    forged = mint_token(hospital.settings, roles=("doctor",), username="dr.forged", facility="IGMC")[:-8] + "AAAAAAAA"
    r, rows = appended(hospital, lambda: hospital.client.delete("/fhir/Patient/p1",
                                                                headers=bearer(forged, **{"User-Agent": AGENT})))
    assert r.status_code == 401
    assert len(rows) == 1
    expect(rows[0], {"actor_username": None, "source_ip": SOURCE}, interaction="delete", resource_type="Patient",
           resource_id="p1", status=401)


def test_a_refused_transaction_entry(hospital, who):
    tx = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": resource("Observation"), "request": {"method": "POST", "url": "Observation"}},
        {"resource": resource("Organization"), "request": {"method": "POST", "url": "Organization"}}]}
    r, rows = appended(hospital, lambda: hospital.client.post("/fhir", json=tx, **_h(who, "nurse")))
    assert r.status_code == 403
    assert len(rows) == 1
    expect(rows[0], who["nurse"]["actor"], interaction="transaction", status=403)


@pytest.mark.parametrize(("caller", "kind"), [("patient", "transaction"), ("auditor", "batch")])
def test_a_refused_bundle(hospital, who, caller, kind):
    bundle = {"resourceType": "Bundle", "type": kind, "entry": [{"request": {"method": "GET", "url": "Patient/p1"}}]}
    r, rows = appended(hospital, lambda: hospital.client.post("/fhir", json=bundle, **_h(who, caller)))
    assert r.status_code == 403
    assert len(rows) == 1
    expect(rows[0], who[caller]["actor"], interaction=kind, status=403)


def test_a_refused_batch_entry(hospital, who):
    batch = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"resource": resource("Observation"), "request": {"method": "POST", "url": "Observation"}},
        {"resource": resource("Organization"), "request": {"method": "POST", "url": "Organization"}}]}
    r, rows = appended(hospital, lambda: hospital.client.post("/fhir", json=batch, **_h(who, "nurse")))
    assert [e["response"]["status"][:3] for e in r.json()["entry"]] == ["201", "403"]
    assert len(rows) == 2
    created = r.json()["entry"][0]["response"]["location"].split("/")
    expect(rows[0], who["nurse"]["actor"], interaction="batch", resource_type="Observation", resource_id=created[1],
           version_id=created[3], patients={"p1"})
    expect(rows[1], who["nurse"]["actor"], interaction="batch", resource_type="Organization", status=403)


# -- the chain --------------------------------------------------------------------------------


def test_the_chain_is_intact_after_everything(hospital, monkeypatch):
    """Run last in the module: ``himhis audit verify`` over all that the tests above appended."""
    from typer.testing import CliRunner

    from audit.cli import app
    from himhis.config import get_settings

    report = hospital.db.run(verify, write=False)
    assert report.ok, report.problems
    assert report.checked == _tail(hospital) == report.head_seq
    monkeypatch.setenv("HIMHIS_DATABASE_URL", hospital.settings.database_url)
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["verify"], env={"COLUMNS": "1000"})
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    assert f"chain intact up to record {report.last_seq}." in result.output


def _h(who: dict, name: str) -> dict[str, dict]:
    return {"headers": who[name]["headers"]}
