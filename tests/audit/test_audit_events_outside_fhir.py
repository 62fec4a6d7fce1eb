"""What is audited besides FHIR interactions: requests without valid credentials, sign-in and sign-out,
break-glass grants and their review, and command-line imports and seeding."""

from __future__ import annotations

import getpass

import orjson
import pytest
from sqlalchemy import select

from audit.service import ETREAT, MINOR_FAILURE, SUCCESS, A, command_line_entry
from audit.verify import verify
from ehr.importer import import_files
from himhis.db import Database
from tests.conftest import get_token, mint_token


def log(db: Database) -> list:
    return db.run(lambda s: s.execute(select(A).order_by(A.c.seq)).all(), write=False)


@pytest.mark.parametrize(("method", "path", "interaction", "res_type", "res_id"), [
    ("GET", "/fhir/Patient/p1", "read", "Patient", "p1"),
    ("GET", "/fhir/Observation?code=8867-4", "search-type", "Observation", None),
    ("GET", "/fhir/Patient/p1/_history", "history-instance", "Patient", "p1"),
    ("GET", "/fhir/Patient/p1/_history/2", "vread", "Patient", "p1"),
    ("GET", "/fhir/Patient/p1/$everything", "operation", "Patient", "p1"),
    ("POST", "/fhir/Observation", "create", "Observation", None),
    ("DELETE", "/fhir/Observation/o1", "delete", "Observation", "o1"),
    ("POST", "/fhir", "batch", None, None),
])
def test_a_request_without_credentials_is_refused_and_recorded(client, db, method, path, interaction, res_type,
                                                                 res_id):
    r = client.request(method, path, json={"resourceType": "Observation"} if method == "POST" else None,
                       headers={"User-Agent": "probe/1"})
    assert r.status_code == 401
    [row] = log(db)
    assert (row.interaction, row.resource_type, row.resource_id) == (interaction, res_type, res_id)
    assert row.outcome == MINOR_FAILURE and row.outcome_detail.startswith("401 Authentication required")
    assert (row.actor_username, row.actor_subject, row.user_agent) == (None, None, "probe/1")
    assert row.source_ip


def test_a_bad_token_is_recorded_with_the_reason(client, db, settings):
    token = mint_token(settings, roles=("doctor",), username="dr.x", facility="IGMC")
    r = client.get("/fhir/Patient/p1", headers={"Authorization": f"Bearer {token[:-6]}AAAAAA"})
    assert r.status_code == 401
    [row] = log(db)
    assert row.outcome_detail == "401 bad signature" and row.interaction == "read"


def test_the_public_capability_statement_is_not_an_access_to_patient_data(client, db):
    assert client.get("/fhir/metadata").status_code == 200
    assert log(db) == []


def test_break_glass_is_recorded_with_its_reason_and_refusals_too(client, db, settings):
    doctor = {"Authorization": f"Bearer {mint_token(settings, roles=('doctor',), username='dr.bg', facility='IGMC')}"}
    r = client.post("/break-glass", json={"reason": "unconscious patient from Tanda, no records here",
                                          "patient": "p9", "minutes": 20}, headers=doctor)
    assert r.status_code == 201, r.text
    assert client.post("/break-glass", json={"reason": "because"}, headers=doctor).status_code == 400
    granted, refused = log(db)
    assert (granted.interaction, granted.actor_username, granted.patient_ids, granted.outcome) == (
        "break-glass", "dr.bg", "p9", SUCCESS)
    assert granted.break_glass_reason == "unconscious patient from Tanda, no records here"
    assert granted.purpose_of_use == ETREAT and granted.query == "minutes=20"
    assert refused.interaction == "break-glass" and refused.outcome == MINOR_FAILURE
    assert refused.outcome_detail.startswith("400 State the reason")
    auditor = {"Authorization": f"Bearer {get_token(client, 'auditor')}"}
    assert client.get("/break-glass", headers=auditor).status_code == 200
    review = log(db)[-1]
    assert (review.interaction, review.actor_username, review.patient_ids) == ("search-system", "auditor", "p9")


def test_signing_in_and_out_of_the_ward_pages_is_recorded(client, db):
    bad = client.post("/login", data={"username": "nurse.igmc", "password": "wrong"}, follow_redirects=False)
    assert bad.status_code == 401
    good = client.post("/login", data={"username": "nurse.igmc", "password": "demo"}, follow_redirects=False)
    assert good.status_code == 303
    assert client.post("/logout", follow_redirects=False).status_code == 303
    failed, signed_in, signed_out = log(db)
    assert (failed.interaction, failed.actor_username, failed.outcome) == ("login", "nurse.igmc", MINOR_FAILURE)
    assert failed.outcome_detail == "401 Invalid username or password" and failed.actor_subject is None
    assert (signed_in.interaction, signed_in.actor_username, signed_in.actor_facility, signed_in.outcome) == (
        "login", "nurse.igmc", "IGMC", SUCCESS)
    assert signed_in.actor_subject
    assert (signed_out.interaction, signed_out.actor_username) == ("logout", "nurse.igmc")
    assert db.run(verify, write=False).ok


def test_command_line_imports_are_recorded_as_the_operating_system_user(db, settings, tmp_path):
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Patient", "id": "imp-1"}, "request": {"method": "PUT", "url": "Patient/imp-1"}},
        {"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "Hb"},
                      "subject": {"reference": "Patient/imp-1"}},
         "request": {"method": "POST", "url": "Observation"}}]}
    path = tmp_path / "one.json"
    path.write_bytes(orjson.dumps(bundle))
    report = import_files(db, [path], audit_as=command_line_entry("transaction"))
    assert report.resources == 2 and not report.failed
    [row] = log(db)
    assert (row.interaction, row.actor_username, row.client_id, row.query) == (
        "transaction", getpass.getuser(), "himhis-cli", "import one.json")
    assert row.patient_ids == "imp-1" and row.actor_subject.startswith("os:")
