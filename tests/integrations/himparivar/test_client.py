"""The register client against a fake that follows the written contract, served over HTTP by uvicorn;
and the fake's answers checked against the contract itself, so client, fake and contract agree."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path

import httpx
import jsonschema
import orjson
import pytest

from integrations.himparivar.client import HimParivarClient, RegisterUnavailable
from integrations.himparivar.synthetic import Register
from tests.conftest import free_port
from tests.his.registration.test_abdm import serve
from tests.integrations.himparivar.fake_register import TOKEN, fake_register

TODAY = date(2026, 11, 24)
CONTRACT = orjson.loads((Path(__file__).resolve().parents[3] / "integrations/himparivar/data/openapi.json")
                        .read_bytes())
ROWS = list(Register(60, seed=21, today=TODAY))


@pytest.fixture(scope="module")
def register() -> Iterator[str]:
    yield from serve(fake_register(ROWS))


def schema(name: str) -> dict:
    """A schema of the contract with its references resolvable."""
    return {"$ref": f"#/components/schemas/{name}", "components": CONTRACT["components"]}


def test_the_fake_serves_what_the_contract_says(register):
    fake_paths = set(fake_register(ROWS).openapi()["paths"])
    assert fake_paths == set(CONTRACT["paths"])
    h = {"Authorization": f"Bearer {TOKEN}"}
    member = httpx.get(f"{register}/members/{ROWS[0]['member_id']}", headers=h).json()
    jsonschema.validate(member, schema("Member"))
    family = httpx.get(f"{register}/families/{ROWS[0]['family_id']}", headers=h).json()
    jsonschema.validate(family, schema("Family"))
    missing = httpx.get(f"{register}/members/HP-SML-00000000", headers=h)
    assert missing.status_code == 404
    jsonschema.validate(missing.json(), schema("Problem"))
    assert httpx.get(f"{register}/members/{ROWS[0]['member_id']}").status_code == 401


def test_the_client_reads_members_families_and_searches(register):
    client = HimParivarClient(register, TOKEN)
    first = ROWS[0]
    m = client.member(first["member_id"], today=TODAY)
    assert (m["member_id"], m["family_id"], m["name"], m["district"]) == (
        first["member_id"], first["family_id"], first["name"], first["district"])
    assert client.member("HP-SML-00000000", today=TODAY) is None
    family = client.family(first["family_id"], today=TODAY)
    assert {x["member_id"] for x in family} == {r["member_id"] for r in ROWS if r["family_id"] == first["family_id"]}
    assert client.family("HPF-SML-0000000", today=TODAY) is None
    surname = first["name"].split()[0]
    found = client.search(name=surname, district=first["district"], today=TODAY)
    assert first["member_id"] in {x["member_id"] for x in found}
    assert all(x["name"].startswith(surname) for x in found)


def test_the_client_says_when_the_register_fails(register):
    client = HimParivarClient(register, TOKEN)
    with pytest.raises(RegisterUnavailable, match="HTTP 500"):
        client.member("HP-SML-99000000")
    with pytest.raises(RegisterUnavailable, match="HTTP 401"):
        HimParivarClient(register, "wrong").member(ROWS[0]["member_id"])
    with pytest.raises(RegisterUnavailable, match="did not answer"):
        HimParivarClient(f"http://127.0.0.1:{free_port()}", TOKEN, timeout=2).member(ROWS[0]["member_id"])
    with pytest.raises(RegisterUnavailable, match="HTTP 400"):
        client.search(name="X", district="Shimla")  # shorter than the contract's two letters
