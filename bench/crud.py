"""Mixed CRUD through the real API: 50 % read, 20 % create, 20 % update, 10 % search by identifier.

Patients and Observations (vital signs referencing an existing Patient). Each client thread updates
only resources it owns, so updates measure the write path rather than lock waits on one row.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import httpx
import orjson

from bench.server import DISCOVERY
from himhis.systems import FACILITY

MRN = "https://himhis.hp.gov.in/fhir/sid/bench-mrn"
MIX = (("read", 50), ("create", 20), ("update", 20), ("search", 10))
FHIR_JSON = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}


def patient(mrn: str, *, res_id: str | None = None, family: str = "Thakur") -> dict:
    return {"resourceType": "Patient", **({"id": res_id} if res_id else {}),
            "identifier": [{"system": MRN, "value": mrn}], "active": True,
            "name": [{"use": "official", "family": family, "given": ["Asha", "Devi"]}],
            "gender": "female", "birthDate": "1984-03-12",
            "managingOrganization": {"reference": "Organization/igmc"},  # registered where the doctor works
            "telecom": [{"system": "phone", "value": "+91-94180-00000", "use": "mobile"}],
            "address": [{"line": ["Ward 4, Sanjauli"], "city": "Shimla", "district": "Shimla",
                         "state": "Himachal Pradesh", "postalCode": "171006", "country": "IN"}]}


def observation(subject: str, value: float, *, res_id: str | None = None) -> dict:
    """A heart-rate vital sign (LOINC 8867-4, https://hl7.org/fhir/R4/observation-vitalsigns.html)."""
    return {"resourceType": "Observation", **({"id": res_id} if res_id else {}), "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                      "code": "vital-signs", "display": "Vital Signs"}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}],
                     "text": "Heart rate"},
            "subject": {"reference": f"Patient/{subject}"}, "effectiveDateTime": "2026-11-24T09:30:00+05:30",
            "valueQuantity": {"value": value, "unit": "beats/minute", "system": "http://unitsofmeasure.org",
                              "code": "/min"}}


@dataclass(frozen=True, slots=True)
class Fixture:
    """What the load works on: the base URL, a token and the ids of resources made beforehand."""

    base: str
    token: str
    patients: tuple[str, ...]
    observations: tuple[str, ...]
    mrns: tuple[str, ...]
    clients: int


def make_fixture(base: str, token: str, *, admin_token: str, clients: int, patients: int = 24,
                 per_patient: int = 4) -> Fixture:
    """Create the facility (as admin), then the Patients registered there and their Observations."""
    patients = max(patients, 2 * clients)
    pids, oids, mrns = [], [], []
    igmc = {"resourceType": "Organization", "id": "igmc", "name": "IGMC Shimla",
            "identifier": [{"system": FACILITY, "value": "IGMC"}]}
    with _client(base, admin_token) as c:
        c.put("/fhir/Organization/igmc", content=orjson.dumps(igmc)).raise_for_status()
    with _client(base, token) as c:
        for n in range(patients):
            mrn = f"BENCH-{n:05d}"
            r = c.post("/fhir/Patient", content=orjson.dumps(patient(mrn)))
            r.raise_for_status()
            pids.append(r.json()["id"])
            mrns.append(mrn)
        for n in range(patients * per_patient):
            r = c.post("/fhir/Observation", content=orjson.dumps(observation(pids[n % patients], 60 + n % 40)))
            r.raise_for_status()
            oids.append(r.json()["id"])
    return Fixture(base, token, tuple(pids), tuple(oids), tuple(mrns), clients)


def _client(base: str, token: str) -> httpx.Client:
    return httpx.Client(base_url=base, headers={**FHIR_JSON, "Authorization": f"Bearer {token}"}, timeout=60,
                        limits=httpx.Limits(max_connections=1, max_keepalive_connections=1))


NAMES, WEIGHTS = zip(*MIX, strict=True)


class CrudWorker:
    """One client thread of the mix over one keep-alive connection."""

    def __init__(self, fx: Fixture, number: int) -> None:
        self.fx, self.number = fx, number
        self.rng = random.Random(number)
        self.own_patients = list(range(len(fx.patients)))[number::fx.clients] or [0]
        self.own_observations = fx.observations[number::fx.clients] or fx.observations[:1]
        self.http = _client(fx.base, fx.token)
        self.created = 0

    def step(self, i: int) -> str:
        rng, fx = self.rng, self.fx
        op = "read" if i < 0 else rng.choices(NAMES, WEIGHTS)[0]
        if op == "read":
            kind, ids = ("Patient", fx.patients) if rng.random() < 0.5 else ("Observation", fx.observations)
            _expect(self.http.get(f"/fhir/{kind}/{rng.choice(ids)}"), 200, op)
        elif op == "create":
            self.created += 1
            if rng.random() < 0.5:
                body = patient(f"BENCH-C{self.number:03d}-{self.created:06d}")
                _expect(self.http.post("/fhir/Patient", content=orjson.dumps(body)), 201, op)
            else:
                body = observation(rng.choice(fx.patients), rng.randint(50, 120))
                _expect(self.http.post("/fhir/Observation", content=orjson.dumps(body)), 201, op)
        elif op == "update":
            if rng.random() < 0.5:
                n = rng.choice(self.own_patients)
                rid = fx.patients[n]
                body = patient(fx.mrns[n], res_id=rid, family=f"Thakur{i}")
                _expect(self.http.put(f"/fhir/Patient/{rid}", content=orjson.dumps(body)), 200, op)
            else:
                rid = rng.choice(self.own_observations)
                body = observation(rng.choice(fx.patients), rng.randint(50, 120), res_id=rid)
                _expect(self.http.put(f"/fhir/Observation/{rid}", content=orjson.dumps(body)), 200, op)
        else:
            r = self.http.get("/fhir/Patient", params={"identifier": f"{MRN}|{rng.choice(fx.mrns)}"})
            _expect(r, 200, op)
            if b'"entry"' not in r.content:
                raise AssertionError(f"search: no match in {r.text[:200]}")
        return op

    def close(self) -> None:
        self.http.close()


class BareWorker:
    """Ceiling A: the cheapest public endpoint of the same app, over the same kind of connection."""

    def __init__(self, fx: Fixture, number: int) -> None:
        self.http = httpx.Client(base_url=fx.base, timeout=60,
                                 limits=httpx.Limits(max_connections=1, max_keepalive_connections=1))

    def step(self, i: int) -> str:
        _expect(self.http.get(DISCOVERY), 200, "bare")
        return "bare"

    def close(self) -> None:
        self.http.close()


def _expect(r: httpx.Response, status: int, op: str) -> None:
    if r.status_code != status:
        raise AssertionError(f"{op}: {r.request.method} {r.request.url.path} -> {r.status_code} {r.text[:200]}")


def crud_worker(fx: Fixture, number: int) -> CrudWorker:
    return CrudWorker(fx, number)


def bare_worker(fx: Fixture, number: int) -> BareWorker:
    return BareWorker(fx, number)
