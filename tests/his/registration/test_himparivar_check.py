"""Registration checks a HimParivar member ID against the register: the local copy once an extract is
loaded, or the register's API when configured; without either, only the ID's form is checked."""

from __future__ import annotations

from datetime import date

import pytest
from fastapi.testclient import TestClient

from integrations.himparivar.importer import import_extract
from integrations.himparivar.synthetic import Register, write
from tests.his.conftest import registration
from tests.his.registration.test_abdm import serve
from tests.integrations.himparivar.fake_register import TOKEN, fake_register

TODAY = date(2026, 11, 24)
ROWS = list(Register(40, seed=8, today=TODAY))


def person(row: dict, **kw) -> dict:
    """A registration form for the register member ``row``."""
    given, _, family = row["name"].partition(" ")
    born = row["birth_date"] or f"{TODAY.year - int(row['age'])}-06-01"
    form = {"given": given, "family": family, "name_devanagari": None, "birth_date": born,
            "gender": {"M": "male", "F": "female"}[row["gender"]], "himparivar": row["member_id"], "mobile": None}
    return registration(**(form | kw))


def adult(rows: list[dict]) -> dict:
    return next(r for r in rows if r["birth_date"] and r["status"] == "active" and r["relation"] == "self")


def test_without_the_register_only_the_form_of_the_id_is_checked(register):
    r = register(registration(himparivar="HP-SML-12345678"))
    assert r.status_code == 201, r.text
    r = register(registration(himparivar="HP-XYZ-1234"))
    assert r.status_code == 400 and "HP-<district code>-<8 digits>" in r.json()["fields"]["himparivar"]


def test_the_loaded_register_must_know_the_member_and_agree_who_it_is(register, db, tmp_path):
    write(tmp_path / "register.csv", 40, seed=8, today=TODAY)
    assert import_extract(db, tmp_path / "register.csv", today=TODAY).accepted == 40
    member = adult(ROWS)

    r = register(registration(himparivar="HP-SML-12345678"))
    assert r.status_code == 400
    assert "HimParivar has no member HP-SML-12345678" in r.json()["fields"]["himparivar"]

    other_sex = "female" if member["gender"] == "M" else "male"
    r = register(person(member, gender=other_sex))
    assert r.status_code == 400 and "not this person" in r.json()["fields"]["himparivar"]
    assert member["name"] in r.json()["fields"]["himparivar"]
    r = register(person(member, birth_date=f"{int(member['birth_date'][:4]) - 10}-01-01"))
    assert r.status_code == 400 and "not this person" in r.json()["fields"]["himparivar"]

    r = register(person(member))
    assert r.status_code == 201, r.text
    ids = {i["system"]: i["value"] for i in r.json()["patient"]["identifier"]}
    assert member["member_id"] in ids.values()


@pytest.fixture(scope="module")
def register_api():
    yield from serve(fake_register([*ROWS, ROWS[0] | {"member_id": "HP-SML-99000001"}]))


def test_the_register_api_is_asked_when_configured(settings, db, register_api, facilities):
    from himhis.app import create_app
    from tests.conftest import get_token

    app = create_app(settings.model_copy(update={"himparivar_url": register_api, "himparivar_token": TOKEN}), db=db)
    with TestClient(app) as client:
        nurse = {"Authorization": f"Bearer {get_token(client, 'nurse.igmc')}"}

        def post(form: dict):
            return client.post("/api/registration", json={**form, "register_anyway": True}, headers=nurse)

        member = adult(ROWS)
        assert post(person(member)).status_code == 201
        r = post(registration(himparivar="HP-KGR-00000001"))
        assert r.status_code == 400 and "has no member" in r.json()["fields"]["himparivar"]
        r = post(registration(himparivar="HP-SML-99000001"))
        assert r.status_code == 400 and "could not be checked" in r.json()["fields"]["himparivar"]
