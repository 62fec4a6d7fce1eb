"""Registration over HTTP as ward staff: the JSON API and the form pages, with their refusals."""

from __future__ import annotations

import re
import threading

import httpx
from sqlalchemy import select

from audit.service import A
from himhis.systems import ABHA, EXT_RELATIVE_NAME, UHID
from his.registration.service import EXT_BIRTH_DATE_ESTIMATED
from his.registration.validators import AADHAAR_MESSAGE, verhoeff_digit
from tests.his.conftest import registration

UHID_FORMAT = re.compile(r"^IGMC-\d{4}-\d{6}$")


def test_nurse_registers_a_patient_at_her_facility(client, register, staff):
    r = register(registration(abha="91 1234 5678 9012", himparivar="HP-SML-12345678"), anyway=False)
    assert r.status_code == 201, r.text
    body = r.json()
    assert UHID_FORMAT.match(body["uhid"]) and body["uhid"].endswith("-000001")
    patient = client.get(f"/fhir/Patient/{body['id']}", headers=staff["nurse.igmc"]).json()
    assert patient["managingOrganization"]["reference"] == "Organization/igmc"
    assert {(i["system"], i["value"]) for i in patient["identifier"]} >= {
        (UHID, body["uhid"]), (ABHA, "91-1234-5678-9012")}
    assert [n["text"] for n in patient["name"]] == ["Kamla Devi", "कमला देवी"]
    assert patient["extension"] == [{"url": EXT_RELATIVE_NAME, "valueString": "Bhagat Ram"}]
    assert patient["telecom"][0]["value"] == "+91 9816012345"
    assert patient["address"][0]["city"] == "Mashobra" and patient["address"][0]["district"] == "Shimla"
    assert patient["birthDate"] == "1961-04-23" and "_birthDate" not in patient
    # The FHIR search indexes were written: the patient is found by UHID and by mobile.
    found = client.get("/fhir/Patient", params={"identifier": f"{UHID}|{body['uhid']}"}, headers=staff["nurse.igmc"])
    assert [e["resource"]["id"] for e in found.json()["entry"]] == [body["id"]]
    # Another facility's staff do not see it.
    assert client.get(f"/fhir/Patient/{body['id']}", headers=staff["nurse.rpgmc"]).status_code == 404


def test_registration_is_audited(client, register, db):
    r = register(registration())
    pid = r.json()["id"]
    rows = db.run(lambda s: s.execute(select(A.c.interaction, A.c.actor_username, A.c.resource_id, A.c.patient_ids)
                                      .where(A.c.interaction == "create")).all(), write=False)
    assert [tuple(row) for row in rows] == [("create", "nurse.igmc", pid, pid)]


def test_stated_age_gives_an_estimated_birth_year(client, register, staff):
    r = register(registration(birth_date="", age="45"))
    patient = r.json()["patient"]
    assert re.fullmatch(r"\d{4}", patient["birthDate"])
    assert patient["_birthDate"]["extension"] == [{"url": EXT_BIRTH_DATE_ESTIMATED, "valueBoolean": True}]


def test_likely_duplicates_are_shown_until_registered_anyway(client, register):
    first = register(registration())
    assert first.status_code == 201
    # The same woman, her name typed in Devanagari only and spelt differently in Latin, a year off.
    again = registration(given="Kamala", name_devanagari="कमला देवी", birth_date="1962-01-10", mobile="")
    r = register(again, anyway=False)
    assert r.status_code == 409, r.text
    dup = r.json()["duplicates"]
    assert [d["patient"]["id"] for d in dup] == [first.json()["id"]]
    assert "born within a year" in dup[0]["reasons"] and "same village" in dup[0]["reasons"]
    r = register(again, anyway=True)
    assert r.status_code == 201 and r.json()["uhid"].endswith("-000002")


def test_duplicates_found_across_scripts(client, register, staff):
    # Registered with the Devanagari name only in Latin letters' place: "Ram Singh Thakur", राम सिंह ठाकुर.
    first = register(registration(given="Ram Singh", family="Thakur", name_devanagari="राम सिंह ठाकुर",
                                  gender="male", birth_date="1950-01-01", village="Theog", mobile=""))
    assert first.status_code == 201
    query = registration(given="Raam Sinh", family="Thakur", name_devanagari="", gender="male", age="76",
                         birth_date="", village="Theog", mobile="")
    r = client.get("/api/registration/duplicates", params=query, headers=staff["nurse.igmc"])
    assert r.status_code == 200, r.text
    assert [d["patient"]["id"] for d in r.json()["duplicates"]] == [first.json()["id"]]
    # Someone else entirely is not proposed.
    other = registration(given="Sunil", family="Chauhan", name_devanagari="", gender="male", village="Theog",
                         birth_date="1990-06-01", mobile="")
    assert client.get("/api/registration/duplicates", params=other,
                      headers=staff["nurse.igmc"]).json()["duplicates"] == []


def test_same_mobile_is_a_duplicate_reason(client, register, staff):
    first = register(registration(mobile="9418000001"))
    r = client.get("/api/registration/duplicates", headers=staff["nurse.igmc"],
                   params=registration(given="Kamlesh", family="Kumari", name_devanagari="", mobile="+91 94180 00001",
                                       village="Kotkhai", birth_date="1961-05-01"))
    dup = r.json()["duplicates"]
    assert [d["patient"]["id"] for d in dup] == [first.json()["id"]] and "same mobile number" in dup[0]["reasons"]


def test_duplicates_limited_to_the_callers_facility(client, register, staff):
    assert register(registration(), as_="nurse.rpgmc").status_code == 201
    r = client.get("/api/registration/duplicates", params=registration(), headers=staff["nurse.igmc"])
    assert r.json()["duplicates"] == []
    r = client.post("/api/registration/duplicates", json=registration(), headers=staff["nurse.rpgmc"])
    assert len(r.json()["duplicates"]) == 1
    r = client.post("/api/registration/duplicates", json=registration(mobile="123"), headers=staff["nurse.rpgmc"])
    assert r.status_code == 400 and "mobile" in r.json()["fields"]
    assert client.post("/api/registration/duplicates", json=[], headers=staff["nurse.rpgmc"]).status_code == 400
    r = client.get("/api/registration/duplicates", params={**registration(), "x": "1"}, headers=staff["nurse.rpgmc"])
    assert r.status_code == 400 and "x" in r.json()["fields"]


def test_bad_inputs_get_field_messages(client, register, db):
    r = register({"given": "", "mobile": "12345", "abha": "12-3456", "gender": "female", "age": "200"})
    assert r.status_code == 400
    fields = r.json()["fields"]
    assert set(fields) == {"given", "mobile", "abha", "age", "village", "district"}
    assert "14 digits" in fields["abha"] and "10 digits" in fields["mobile"]
    count = db.run(lambda s: s.execute(select(A.c.pk).where(A.c.interaction == "create")).all(), write=False)
    assert count == []  # nothing was attempted


def test_malformed_bodies(client, staff):
    headers = staff["nurse.igmc"]
    assert client.post("/api/registration", content=b"not json", headers=headers).status_code == 400
    assert client.post("/api/registration", json=[1, 2], headers=headers).status_code == 400
    r = client.post("/api/registration", json={**registration(), "aadhaar": "x"}, headers=headers)
    assert r.status_code == 400 and "aadhaar" in r.json()["fields"]
    r = client.post("/api/registration", json={**registration(), "given": {"a": 1}}, headers=headers)
    assert r.status_code == 400 and "given" in r.json()["fields"]


def test_aadhaar_is_refused_and_stored_nowhere(client, register, db):
    first11 = "87654321098"
    number = first11 + verhoeff_digit(first11)
    r = register(registration(himcare=f"{number[:4]} {number[4:8]} {number[8:]}"))
    assert r.status_code == 400
    assert r.json()["fields"] == {"himcare": AADHAAR_MESSAGE}
    assert number[:4] + " " + number[4:8] not in r.text
    from himhis.models import Resource

    stored = db.run(lambda s: s.execute(select(Resource.content)).scalars().all(), write=False)
    assert not any(number in (c or "") or number[:4] + " " + number[4:8] in (c or "") for c in stored)


def test_who_may_register(client, staff, settings):
    form = {**registration(), "register_anyway": True}
    assert client.post("/api/registration", json=form).status_code == 401
    assert client.post("/api/registration", json=form, headers=staff["admin"]).status_code == 403
    assert client.post("/api/registration", json=form, headers=staff["auditor"]).status_code == 403
    assert client.get("/api/registration/duplicates", params=form).status_code == 401
    assert client.post("/api/registration", json=form, headers=staff["doctor.igmc"]).status_code == 201
    from tests.conftest import mint_token

    nowhere = {"Authorization": f"Bearer {mint_token(settings, roles=('nurse',), username='nurse.nowhere')}"}
    r = client.post("/api/registration", json=form, headers=nowhere)
    assert r.status_code == 403 and "facility" in r.json()["error_description"]


def test_concurrent_registrations_over_http_get_distinct_uhids(live_server, staff, facilities):
    headers = staff["nurse.igmc"]
    uhids: list[str] = []
    failures: list[str] = []

    def one(i: int) -> None:
        form = {**registration(given=f"Patient {chr(65 + i)}", name_devanagari="", mobile=""),
                "register_anyway": True}
        r = httpx.post(f"{live_server}/api/registration", json=form, headers=headers, timeout=60)
        (uhids if r.status_code == 201 else failures).append(r.json().get("uhid") or r.text)

    pool = [threading.Thread(target=one, args=(i,)) for i in range(12)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    assert not failures
    assert len(uhids) == len(set(uhids)) == 12 and all(UHID_FORMAT.match(u) for u in uhids)
