"""Linking registered patients to the loaded register, and the staff review of unsure pairs: decisions
audited, a rejected pair never proposed again, other facilities' patients out of sight."""

from __future__ import annotations

from datetime import date

from sqlalchemy import select

from ehr.service import FhirStore
from himhis import systems
from himhis.models import AuditRecord, RegisterLink
from integrations.himparivar.importer import import_extract
from integrations.himparivar.linkage import Link
from integrations.himparivar.links import _save, link_patients
from integrations.himparivar.synthetic import Register, write
from tests.his.conftest import registration

TODAY = date(2026, 11, 24)
ROWS = list(Register(300, seed=51, today=TODAY))


def form_of(row: dict) -> dict:
    given, _, family = row["name"].rpartition(" ")
    return registration(given=given, family=family, name_devanagari=row["name_devanagari"],
                        birth_date=row["birth_date"], gender={"M": "male", "F": "female"}[row["gender"]],
                        relative_name=row["relative_name"] or None, village=row["village"], tehsil=row["tehsil"],
                        district=row["district"], pin=row["pin"], mobile=None)


def member_ids(db, patient_id: str) -> list[str]:
    resource = db.run(lambda s: FhirStore(s).read("Patient", patient_id).json(), write=False)
    return [i["value"] for i in resource.get("identifier", ()) if i["system"] == systems.HIMPARIVAR]


def people(count: int) -> list[dict]:
    return [r for r in ROWS if r["birth_date"] and r["status"] == "active" and r["relative_name"]][:count]


def test_patients_are_linked_to_the_register(db, register, tmp_path):
    write(tmp_path / "register.csv", 300, seed=51, today=TODAY)
    import_extract(db, tmp_path / "register.csv", today=TODAY)
    chosen = people(5)
    ids = {}
    for row in chosen:
        r = register(form_of(row))
        assert r.status_code == 201, r.text
        ids[r.json()["patient"]["id"]] = row["member_id"]
    stranger = register(registration(given="Zorawar", family="Xalxo", birth_date="1911-01-01", village="Pooh",
                                     district="Kinnaur", pin="172111", mobile=None)).json()["patient"]["id"]
    run = db.run(lambda s: link_patients(s, today=TODAY))
    assert run.patients == 6 and run.linked >= 4 and run.unlinked >= 1
    linked = [pid for pid, member in ids.items() if member_ids(db, pid) == [member]]
    assert len(linked) == run.linked, "each automatic link put the right member ID on the patient"
    assert member_ids(db, stranger) == []
    again = db.run(lambda s: link_patients(s, today=TODAY))
    assert again.patients == 6 - run.linked and again.linked == 0


def proposal(db, patient_id: str, member_id: str) -> int:
    result = Link(patient_id, member_id, "review", 0.7, 3.1, "probabilistic (Splink)")
    assert db.run(lambda s: _save(s, result, "proposed"))
    return db.run(lambda s: s.execute(select(RegisterLink.id).where(
        RegisterLink.subject == f"Patient/{patient_id}")).scalar_one(), write=False)


def test_staff_accept_or_reject_a_proposed_pair(client, db, register, staff, tmp_path):
    write(tmp_path / "register.csv", 300, seed=51, today=TODAY)
    import_extract(db, tmp_path / "register.csv", today=TODAY)
    a, b = people(2)
    pa = register(form_of(a)).json()["patient"]["id"]
    pb = register(form_of(b)).json()["patient"]["id"]
    la, lb = proposal(db, pa, a["member_id"]), proposal(db, pb, b["member_id"])
    nurse = staff["nurse.igmc"]

    queue = client.get("/api/himparivar/review", headers=nurse).json()["proposed"]
    assert [(p["id"], p["patient"]["id"], p["member"]["member_id"]) for p in queue] == [
        (la, pa, a["member_id"]), (lb, pb, b["member_id"])]
    assert client.get("/api/himparivar/review", headers=staff["nurse.rpgmc"]).json()["proposed"] == []
    assert client.post(f"/api/himparivar/links/{la}/decision", json={"accept": True},
                       headers=staff["nurse.rpgmc"]).status_code == 404
    assert client.get("/api/himparivar/review", headers=staff["auditor"]).status_code == 403
    assert client.post(f"/api/himparivar/links/{la}/decision", json={"accept": "yes"}, headers=nurse).status_code == 400

    r = client.post(f"/api/himparivar/links/{la}/decision", json={"accept": True}, headers=nurse)
    assert r.status_code == 200 and r.json()["state"] == "accepted"
    assert member_ids(db, pa) == [a["member_id"]]
    assert client.post(f"/api/himparivar/links/{la}/decision", json={"accept": False},
                       headers=nurse).status_code == 409
    r = client.post(f"/api/himparivar/links/{lb}/decision", json={"accept": False}, headers=nurse)
    assert r.status_code == 200 and r.json()["state"] == "rejected" and member_ids(db, pb) == []
    assert client.get("/api/himparivar/review", headers=nurse).json()["proposed"] == []

    again = Link(pb, b["member_id"], "review", 0.8, 3.5, "probabilistic (Splink)")
    assert db.run(lambda s: _save(s, again, "proposed")) is False, "a rejected pair is never proposed again"
    audit = db.run(lambda s: s.execute(select(AuditRecord.query, AuditRecord.outcome).where(
        AuditRecord.query.like("himparivar link %"))).all(), write=False)
    assert sorted(q for q, outcome in audit if outcome == 0) == [f"himparivar link {la} accept",
                                                                 f"himparivar link {lb} reject"]
    assert sorted(q for q, outcome in audit if outcome != 0) == [f"himparivar link {la} accept",
                                                                 f"himparivar link {la} reject"], "refusals too"


def test_the_review_page(client, db, register, staff, tmp_path):
    write(tmp_path / "register.csv", 300, seed=51, today=TODAY)
    import_extract(db, tmp_path / "register.csv", today=TODAY)
    [a] = people(1)
    pa = register(form_of(a)).json()["patient"]["id"]
    la = proposal(db, pa, a["member_id"])
    client.post("/login", data={"username": "nurse.igmc", "password": "demo"})
    page = client.get("/himparivar/review")
    assert page.status_code == 200 and a["member_id"] in page.text and 'href="/himparivar/review"' in page.text
    assert "70.0 %" in page.text
    hindi = client.get("/himparivar/review", headers={"Accept-Language": "hi"})
    assert "वही व्यक्ति: स्वीकार करें" in hindi.text
    r = client.post(f"/himparivar/review/{la}", data={"decision": "reject"}, follow_redirects=True)
    assert r.status_code == 200 and "Rejected: this pair will not be proposed again" in r.text
    assert "Nothing to review" in r.text
    assert client.post(f"/himparivar/review/{la}", data={"decision": "accept"}).status_code == 409
