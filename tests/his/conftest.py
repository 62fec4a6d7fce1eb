"""Hospital-flow fixtures: the two facilities' Organizations and the ward staff's bearer tokens."""

from __future__ import annotations

import pytest

from himhis.systems import FACILITY
from tests.conftest import get_token, steward_headers

FACILITIES = {"IGMC": "Indira Gandhi Medical College & Hospital, Shimla",
              "RPGMC": "Dr. Rajendra Prasad Government Medical College, Tanda, Kangra"}


def registration(**kw) -> dict:
    """A complete registration form (a woman from Mashobra), changed by keywords."""
    form = {"given": "Kamla", "family": "Devi", "name_devanagari": "कमला देवी", "birth_date": "1961-04-23",
            "gender": "female", "relative_name": "Bhagat Ram", "village": "Mashobra", "tehsil": "Shimla Rural",
            "district": "Shimla", "pin": "171007", "mobile": "9816012345"}
    return {k: v for k, v in {**form, **kw}.items() if v is not None}


@pytest.fixture
def steward(client, settings) -> dict:
    return steward_headers(client, settings)


@pytest.fixture
def facilities(client, steward) -> None:
    for code, name in FACILITIES.items():
        r = client.put(f"/fhir/Organization/{code.lower()}", headers=steward, json={
            "resourceType": "Organization", "id": code.lower(), "name": name,
            "identifier": [{"system": FACILITY, "value": code}]})
        assert r.status_code in (200, 201), r.text


@pytest.fixture
def staff(client, facilities) -> dict[str, dict]:
    """Bearer headers of the demo ward staff, by username."""
    return {name: {"Authorization": f"Bearer {get_token(client, name)}"}
            for name in ("nurse.igmc", "doctor.igmc", "nurse.rpgmc", "admin", "auditor")}


@pytest.fixture
def register(client, staff):
    """``register(form, as_="nurse.igmc", anyway=True)``: POST /api/registration; returns the response."""

    def post(form: dict, *, as_: str = "nurse.igmc", anyway: bool = True):
        return client.post("/api/registration", json={**form, "register_anyway": anyway}, headers=staff[as_])

    return post
