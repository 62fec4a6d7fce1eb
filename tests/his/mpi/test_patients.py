"""Patient search and the patient banner, as JSON and pages, within the caller's facility, audited."""

from __future__ import annotations

from sqlalchemy import select

from audit.service import A
from tests.his.conftest import registration


def test_search_by_name_uhid_mobile_and_abha(client, register, staff):
    body = register(registration(abha="91-1234-5678-9012")).json()
    register(registration(given="Ram Singh", family="Thakur", name_devanagari="राम सिंह ठाकुर", gender="male",
                          mobile="9418000002"))
    nurse = staff["nurse.igmc"]

    def ids(q: str) -> list[str]:
        r = client.get("/api/patients", params={"q": q}, headers=nurse)
        assert r.status_code == 200, r.text
        return [p["id"] for p in r.json()["patients"]]

    assert ids("Kamla") == [body["id"]]
    assert ids("कमला") == [body["id"]]
    assert ids(body["uhid"].lower()) == [body["id"]]
    assert ids("98160 12345") == [body["id"]]
    assert ids("91123456789012") == [body["id"]]
    assert ids("Nobody") == []
    # Scope: RPGMC staff find nothing of IGMC's.
    r = client.get("/api/patients", params={"q": "Kamla"}, headers=staff["nurse.rpgmc"])
    assert r.json()["patients"] == []


def test_bad_searches(client, staff, facilities):
    nurse = staff["nurse.igmc"]
    assert client.get("/api/patients", params={"q": ""}, headers=nurse).status_code == 400
    assert client.get("/api/patients", params={"q": "12ab"}, headers=nurse).status_code == 400
    r = client.get("/api/patients", params={"q": "2345 6789 0124"}, headers=nurse)  # Verhoeff-valid: Aadhaar
    assert r.status_code == 400 and "Aadhaar" in r.json()["error_description"]
    assert client.get("/api/patients", params={"q": "Kamla"}).status_code == 401
    assert client.get("/api/patients", params={"q": "Kamla"}, headers=staff["admin"]).status_code == 403


def test_search_and_read_are_audited(client, register, staff, db):
    pid = register(registration()).json()["id"]
    client.get("/api/patients", params={"q": "Kamla"}, headers=staff["nurse.igmc"])
    client.get(f"/api/patients/{pid}", headers=staff["nurse.igmc"])
    assert client.get(f"/api/patients/{pid}", headers=staff["nurse.rpgmc"]).status_code == 404
    rows = db.run(lambda s: s.execute(select(A.c.interaction, A.c.actor_username, A.c.patient_ids, A.c.outcome)
                                      .where(A.c.resource_type == "Patient", A.c.interaction != "create")
                                      .order_by(A.c.seq)).all(), write=False)
    assert [tuple(r) for r in rows] == [("search-type", "nurse.igmc", pid, 0), ("read", "nurse.igmc", pid, 0),
                                        ("read", "nurse.rpgmc", None, 4)]


def test_pages(client, register, facilities):
    pid = register(registration()).json()["id"]
    client.post("/login", data={"username": "nurse.igmc", "password": "demo"})
    page = client.get("/patients", params={"q": "Kamla"})
    assert page.status_code == 200 and f'href="/patients/{pid}"' in page.text
    assert client.get("/patients", params={"q": "12ab"}).status_code == 400
    banner = client.get(f"/patients/{pid}")
    assert banner.status_code == 200 and "IGMC-" in banner.text and "Merge a duplicate" in banner.text
    assert client.get("/patients/unknown", headers={"accept": "text/html"}).status_code == 404
    home = client.get("/")
    assert 'href="/registration"' in home.text
