"""The hold queue over HTTP: listing held messages and replaying one, allowed by policy and audited."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from ehr.service import FhirStore
from himhis.models import AuditRecord
from himhis.systems import UHID
from integrations.hl7 import tasks
from tests.conftest import mint_token
from tests.integrations.hl7.conftest import lab_world, oru
from tests.integrations.hl7.test_hl7_service import receive

ALLOWED = ("admin",)


def headers(settings, *roles: str) -> dict:
    return {"Authorization": f"Bearer {mint_token(settings, roles=roles, username=f'test.{roles[0]}')}"}


def match_the_held_patient(db) -> None:
    """The fix staff make: the held message's UHID added to the patient it belongs to."""

    def match(session):
        store = FhirStore(session)
        patient = store.read("Patient", "p1").json()
        patient["identifier"].append({"system": UHID, "value": "IGMC-2026-777777"})
        store.update("Patient", "p1", patient)

    db.run(match)


@pytest.fixture
def held_id(db) -> int:
    lab_world(db)
    mid = receive(db, oru(control="H-1", uhid="IGMC-2026-777777"))
    assert tasks.run(db, mid).state == "held"
    return mid


def test_the_hold_queue_needs_a_token_and_a_permitted_role(client, settings, held_id):
    assert client.get("/interfaces/hl7/held").status_code == 401
    for role in ("nurse", "doctor", "auditor", "lab-system", "patient"):
        r = client.get("/interfaces/hl7/held", headers=headers(settings, role))
        assert r.status_code == 403, (role, r.text)
        r = client.post(f"/interfaces/hl7/{held_id}/replay", headers=headers(settings, role))
        assert r.status_code == 403, (role, r.text)


@pytest.mark.parametrize("role", ALLOWED)
def test_staff_see_why_a_message_is_held_and_replay_it(client, settings, db, held_id, role):
    h = headers(settings, role)
    r = client.get("/interfaces/hl7/held", headers=h)
    assert r.status_code == 200, r.text
    [item] = r.json()["held"]
    assert item["id"] == held_id and item["control_id"] == "H-1" and item["sender"] == "LIS^IGMC"
    assert "Unknown patient" in item["reason"] and "IGMC-2026-777777" in item["patient_identifiers"]
    assert item["placer_order_numbers"] == ["ORD-1001"]

    r = client.post(f"/interfaces/hl7/{held_id}/replay", headers=h)
    assert r.status_code == 200 and r.json()["state"] == "held", "the cause is not fixed yet"

    match_the_held_patient(db)
    r = client.post(f"/interfaces/hl7/{held_id}/replay", headers=h)
    assert r.status_code == 200 and r.json()["state"] == "processed", r.text
    assert any(x.startswith("DiagnosticReport/") for x in r.json()["resources"])
    assert client.get("/interfaces/hl7/held", headers=h).json()["held"] == []
    assert client.post(f"/interfaces/hl7/{held_id}/replay", headers=h).status_code == 409
    assert client.post("/interfaces/hl7/999999/replay", headers=h).status_code == 404
    queries = db.run(lambda s: [a.query for a in s.execute(select(AuditRecord).where(
        AuditRecord.actor_username == f"test.{role}")).scalars()], write=False)
    assert "GET /interfaces/hl7/held" in queries and f"POST /interfaces/hl7/{held_id}/replay" in queries
