"""The interfaces screen: an admin sees why a message is held, replays it, and sees the outcome;
other roles are not offered it and are refused."""

from __future__ import annotations

from sqlalchemy import select

from himhis.models import AuditRecord
from tests.integrations.hl7.test_hl7_routes import held_id, match_the_held_patient  # noqa: F401  (fixture)


def sign_in(client, username: str) -> None:
    r = client.post("/login", data={"username": username, "password": "demo"}, follow_redirects=False)
    assert r.status_code in (200, 302, 303), r.text


def test_an_admin_replays_a_held_message_from_the_screen(client, db, held_id):  # noqa: F811
    sign_in(client, "admin")
    page = client.get("/interfaces/hl7")
    assert page.status_code == 200
    assert 'href="/interfaces/hl7"' in page.text, "the screen is in the admin's menu"
    assert 'href="/patients"' not in page.text, "an admin does not search patients, so is not offered it"
    assert "IGMC-2026-777777" in page.text and "Unknown patient" in page.text and "ORD-1001" in page.text
    assert f'action="/interfaces/hl7/held/{held_id}/replay"' in page.text

    r = client.post(f"/interfaces/hl7/held/{held_id}/replay", follow_redirects=True)
    assert r.status_code == 200 and f"Message {held_id} is still held" in r.text

    match_the_held_patient(db)
    r = client.post(f"/interfaces/hl7/held/{held_id}/replay", follow_redirects=True)
    assert r.status_code == 200 and f"Message {held_id} was placed in the record" in r.text
    assert "No message is held" in r.text

    again = client.post(f"/interfaces/hl7/held/{held_id}/replay")
    assert again.status_code == 409 and "not held" in again.text
    assert client.post("/interfaces/hl7/held/999999/replay").status_code == 404

    hindi = client.get("/interfaces/hl7", headers={"Accept-Language": "hi"})
    assert "कोई संदेश रुका नहीं है" in hindi.text
    queries = db.run(lambda s: set(s.execute(select(AuditRecord.query).where(
        AuditRecord.actor_username == "admin")).scalars()), write=False)
    assert {"GET /interfaces/hl7", f"POST /interfaces/hl7/{held_id}/replay"} <= queries


def test_the_screen_is_neither_offered_nor_open_to_others(client, held_id):  # noqa: F811
    assert client.get("/interfaces/hl7", follow_redirects=False).status_code in (302, 303, 401)
    for username in ("doctor.igmc", "nurse.igmc", "auditor"):
        client.cookies.clear()
        sign_in(client, username)
        if username != "auditor":
            menu = client.get("/patients").text
            assert 'href="/patients"' in menu and 'href="/interfaces/hl7"' not in menu
        assert client.get("/interfaces/hl7").status_code == 403
        assert client.post(f"/interfaces/hl7/held/{held_id}/replay").status_code == 403
