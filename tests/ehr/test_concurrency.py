"""Races between real HTTP clients: conditional creates, versioned updates, crossing transactions."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from himhis.systems import FACILITY
from tests.conftest import get_token, steward_headers

UHID = "https://himhis.hp.gov.in/fhir/sid/uhid"
N = 12


def _client(live_server: str, token: str) -> httpx.Client:
    return httpx.Client(base_url=live_server, headers={"Authorization": f"Bearer {token}"}, timeout=60)


def _patient(uhid: str, family: str = "Kashyap") -> dict:
    return {"resourceType": "Patient", "name": [{"family": family}], "identifier": [{"system": UHID, "value": uhid}],
            "managingOrganization": {"reference": "Organization/igmc"}}


@pytest.fixture(autouse=True)
def igmc(client, settings):
    """The facility the doctor works at, so the patients registered there are theirs to see."""
    org = {"resourceType": "Organization", "id": "igmc", "name": "IGMC Shimla",
           "identifier": [{"system": FACILITY, "value": "IGMC"}]}
    assert client.put("/fhir/Organization/igmc", json=org, headers=steward_headers(client, settings)).status_code == 201


def test_parallel_conditional_creates_make_one_resource(client, live_server):
    token = get_token(client, "doctor.igmc")
    crit = f"identifier={UHID}|IGMC-2026-000777"

    def go(_):
        with _client(live_server, token) as c:
            return c.post("/fhir/Patient", json=_patient("IGMC-2026-000777"), headers={"If-None-Exist": crit})

    with ThreadPoolExecutor(N) as pool:
        results = list(pool.map(go, range(N)))
    assert sorted(r.status_code for r in results) == [200] * (N - 1) + [201]
    assert len({r.json()["id"] for r in results}) == 1
    with _client(live_server, token) as c:
        assert c.get(f"/fhir/Patient?{crit}&_summary=count").json()["total"] == 1


def test_concurrent_updates_with_if_match_exactly_one_wins(client, live_server):
    token = get_token(client, "doctor.igmc")
    with _client(live_server, token) as c:
        p = c.post("/fhir/Patient", json=_patient("IGMC-2026-000778")).json()

    def go(i):
        with _client(live_server, token) as c:
            body = {**p, "name": [{"family": f"Writer{i}"}]}
            return c.put(f"/fhir/Patient/{p['id']}", json=body, headers={"If-Match": 'W/"1"'})

    with ThreadPoolExecutor(N) as pool:
        results = list(pool.map(go, range(N)))
    codes = sorted(r.status_code for r in results)
    assert codes == [200] + [412] * (N - 1)
    with _client(live_server, token) as c:
        final = c.get(f"/fhir/Patient/{p['id']}").json()
        assert final["meta"]["versionId"] == "2"
        assert c.get(f"/fhir/Patient/{p['id']}/_history").json()["total"] == 2


def test_crossing_transactions_never_deadlock_or_half_apply(client, live_server):
    """Transactions updating the same two resources in opposite orders all complete, whole."""
    token = get_token(client, "doctor.igmc")
    with _client(live_server, token) as c:
        a = c.post("/fhir/Patient", json=_patient("IGMC-2026-000801", "A")).json()
        b = c.post("/fhir/Patient", json=_patient("IGMC-2026-000802", "B")).json()

    def go(i):
        first, second = (a, b) if i % 2 else (b, a)
        bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": {**first, "gender": "male", "meta": {}}, "request": {"method": "PUT",
                                                                              "url": f"Patient/{first['id']}"}},
            {"resource": {**second, "gender": "female", "meta": {}}, "request": {"method": "PUT",
                                                                                 "url": f"Patient/{second['id']}"}},
        ]}
        with _client(live_server, token) as c:
            return c.post("/fhir", json=bundle)

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(go, range(16)))
    assert all(r.status_code == 200 for r in results), [r.text for r in results if r.status_code != 200]
    with _client(live_server, token) as c:
        va = int(c.get(f"/fhir/Patient/{a['id']}").json()["meta"]["versionId"])
        vb = int(c.get(f"/fhir/Patient/{b['id']}").json()["meta"]["versionId"])
    assert va == vb == 17  # every transaction applied both of its writes


def test_parallel_transactions_creating_the_same_resources_by_id_neither_fail_nor_duplicate(client, live_server):
    """Update-as-create of the same ten ids at once: one transaction creates them, the others then
    update them (a clash on a new row is retried, whether the rows went in by INSERT or by COPY)."""
    token = get_token(client, "doctor.igmc")
    ids = [f"same-{n}" for n in range(10)]

    def go(i):
        tx = {"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": {**_patient(f"IGMC-2026-{900 + n:06d}", family=f"Writer{i}"), "id": rid},
             "request": {"method": "PUT", "url": f"Patient/{rid}"}} for n, rid in enumerate(ids)]}
        with _client(live_server, token) as c:
            return c.post("/fhir", json=tx)

    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(go, range(6)))
    assert [r.status_code for r in results] == [200] * 6, [r.text[:300] for r in results if r.status_code != 200]
    statuses = sorted(e["response"]["status"] for r in results for e in r.json()["entry"])
    assert statuses.count("201 Created") == 10 and statuses.count("200 OK") == 50
    with _client(live_server, token) as c:
        versions = [c.get(f"/fhir/Patient/{rid}").json()["meta"]["versionId"] for rid in ids]
    assert versions == ["6"] * 10
