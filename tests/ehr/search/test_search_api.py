"""Search over HTTP on SQLite and PostgreSQL: parameter types, chaining, _has, includes, sort, paging."""

from __future__ import annotations

import pytest

UHID = "https://himhis.hp.gov.in/fhir/sid/uhid"
LOINC = "http://loinc.org"


def make(fhir, resource: dict) -> dict:
    r = fhir.post(f"/fhir/{resource['resourceType']}", json=resource)
    assert r.status_code == 201, r.text
    return r.json()


def ids(bundle: dict, mode: str = "match") -> list[str]:
    return [e["resource"]["id"] for e in bundle.get("entry", []) if e["search"]["mode"] == mode]


@pytest.fixture
def ward(fhir):
    """Two patients at two facilities, with glucose results in two units."""
    igmc = make(fhir, {"resourceType": "Organization", "name": "IGMC Shimla"})
    rpgmc = make(fhir, {"resourceType": "Organization", "name": "RPGMC Tanda"})
    a = make(fhir, {"resourceType": "Patient", "name": [{"family": "Thakur", "given": ["Kāṅgṛā"]},
                                                         {"family": "ठाकुर", "given": ["रमेश"]}],
                    "identifier": [{"system": UHID, "value": "IGMC-2026-000001"}], "birthDate": "1970-05-01",
                    "gender": "male", "managingOrganization": {"reference": f"Organization/{igmc['id']}"}})
    b = make(fhir, {"resourceType": "Patient", "name": [{"family": "Negi", "given": ["Sunita"]}],
                    "identifier": [{"system": UHID, "value": "RPGMC-2026-000002"}], "birthDate": "1985-11",
                    "gender": "female", "managingOrganization": {"reference": f"Organization/{rpgmc['id']}"}})

    def glucose(p, value, unit, when):
        return make(fhir, {"resourceType": "Observation", "status": "final",
                           "code": {"coding": [{"system": LOINC, "code": "1558-6"}]},
                           "subject": {"reference": f"Patient/{p['id']}"}, "effectiveDateTime": when,
                           "valueQuantity": {"value": value, "unit": unit, "system": "http://unitsofmeasure.org",
                                             "code": unit}})

    o1 = glucose(a, 180, "mg/dL", "2026-11-01T08:00:00+05:30")
    o2 = glucose(b, 5.0, "mmol/L", "2026-10-15")
    return {"a": a, "b": b, "o1": o1, "o2": o2, "igmc": igmc, "rpgmc": rpgmc}


def test_string_token_date_reference(fhir, ward):
    a, b = ward["a"]["id"], ward["b"]["id"]
    assert ids(fhir.get("/fhir/Patient?name=thak").json()) == [a]
    assert ids(fhir.get("/fhir/Patient?name=kangra").json()) == [a]  # accents fold
    assert ids(fhir.get("/fhir/Patient?name=ठाकुर").json()) == [a]  # Devanagari
    assert ids(fhir.get("/fhir/Patient?name:exact=Negi").json()) == [b]
    assert ids(fhir.get("/fhir/Patient?name:exact=negi").json()) == []
    assert ids(fhir.get(f"/fhir/Patient?identifier={UHID}|IGMC-2026-000001").json()) == [a]
    assert sorted(ids(fhir.get("/fhir/Patient?gender=male,female").json())) == sorted([a, b])
    assert ids(fhir.get("/fhir/Patient?gender:not=male").json()) == [b]
    assert ids(fhir.get("/fhir/Patient?birthdate=1970").json()) == [a]
    assert ids(fhir.get("/fhir/Patient?birthdate=ge1980-01-01").json()) == [b]
    assert ids(fhir.get("/fhir/Patient?birthdate=lt1980&gender=male").json()) == [a]
    assert ids(fhir.get(f"/fhir/Observation?subject=Patient/{a}").json()) == [ward["o1"]["id"]]
    assert ids(fhir.get(f"/fhir/Observation?patient={b}").json()) == [ward["o2"]["id"]]
    assert ids(fhir.get("/fhir/Observation?date=2026-11").json()) == [ward["o1"]["id"]]


def test_quantity_in_canonical_units(fhir, ward):
    # 180 mg/dL glucose is 1.8 g/L; 5.0 mmol/L is not a mass concentration.
    r = fhir.get("/fhir/Observation?value-quantity=1.8|http://unitsofmeasure.org|g/L").json()
    assert ids(r) == [ward["o1"]["id"]]
    r = fhir.get("/fhir/Observation?value-quantity=gt100|http://unitsofmeasure.org|mg/dL").json()
    assert ids(r) == [ward["o1"]["id"]]


def test_chaining_and_has(fhir, ward):
    r = fhir.get("/fhir/Observation?subject:Patient.identifier=" + f"{UHID}|RPGMC-2026-000002").json()
    assert ids(r) == [ward["o2"]["id"]]
    r = fhir.get("/fhir/Observation?patient.organization.name=IGMC").json()
    assert ids(r) == [ward["o1"]["id"]]
    r = fhir.get("/fhir/Patient?_has:Observation:patient:value-quantity=gt100|http://unitsofmeasure.org|mg/dL")
    assert ids(r.json()) == [ward["a"]["id"]]


def test_include_and_revinclude(fhir, ward):
    r = fhir.get(f"/fhir/Observation?_id={ward['o1']['id']}&_include=Observation:subject").json()
    assert ids(r) == [ward["o1"]["id"]] and ids(r, "include") == [ward["a"]["id"]]
    r = fhir.get(f"/fhir/Observation?_id={ward['o1']['id']}&_include=Observation:subject"
                 "&_include:iterate=Patient:organization").json()
    assert sorted(ids(r, "include")) == sorted([ward["a"]["id"], ward["igmc"]["id"]])
    r = fhir.get(f"/fhir/Patient?_id={ward['b']['id']}&_revinclude=Observation:subject").json()
    assert ids(r, "include") == [ward["o2"]["id"]]


def test_sort_and_summary(fhir, ward):
    assert ids(fhir.get("/fhir/Patient?_sort=birthdate").json()) == [ward["a"]["id"], ward["b"]["id"]]
    assert ids(fhir.get("/fhir/Patient?_sort=-birthdate").json()) == [ward["b"]["id"], ward["a"]["id"]]
    assert ids(fhir.get("/fhir/Patient?_sort=family").json()) == [ward["b"]["id"], ward["a"]["id"]]
    assert fhir.get("/fhir/Patient?_summary=count").json()["total"] == 2
    e = fhir.get("/fhir/Patient?_elements=gender&_sort=birthdate").json()["entry"][0]["resource"]
    assert set(e) == {"resourceType", "id", "meta", "gender"}
    assert any(t["code"] == "SUBSETTED" for t in e["meta"]["tag"])
    s = fhir.get("/fhir/Patient?_summary=true").json()["entry"][0]["resource"]
    assert "name" in s and "text" not in s


def test_paging_is_stable_while_others_write(fhir):
    for i in range(7):
        make(fhir, {"resourceType": "Patient", "name": [{"family": f"Rana{i}"}]})
    first = fhir.get("/fhir/Patient?_count=3").json()
    seen = ids(first)
    # Another client writes between pages: a new patient and an update that would reorder.
    make(fhir, {"resourceType": "Patient", "name": [{"family": "Newcomer"}]})
    upd = fhir.get(f"/fhir/Patient/{seen[0]}").json()
    fhir.put(f"/fhir/Patient/{seen[0]}", json=upd)
    link = next(lk["url"] for lk in first["link"] if lk["relation"] == "next")
    while link:
        page = fhir.get(link.replace("http://testserver", "")).json()
        seen += ids(page)
        link = next((lk["url"] for lk in page["link"] if lk["relation"] == "next"), None)
    assert len(seen) == 7 and len(set(seen)) == 7


@pytest.mark.parametrize(("query", "param"), [
    ("birthdate=1970-13-01", "birthdate"),
    ("birthdate=xx2020", "birthdate"),
    ("nonsense=1", "nonsense"),
    ("_sort=colour", "_sort"),
    ("_count=many", "_count"),
])
def test_bad_values_name_the_parameter(fhir, query, param):
    r = fhir.get(f"/fhir/Patient?{query}")
    assert r.status_code == 400
    assert r.json()["resourceType"] == "OperationOutcome"
    issue = r.json()["issue"][0]
    assert param in issue["diagnostics"] or param in issue.get("expression", [])


def test_unknown_parameter_is_ignored_when_lenient(fhir, ward):
    r = fhir.get("/fhir/Patient?nonsense=1&gender=female", headers={"Prefer": "handling=lenient"})
    assert r.status_code == 200 and ids(r.json()) == [ward["b"]["id"]]


def test_search_by_post(fhir, ward):
    r = fhir.post("/fhir/Patient/_search", data={"gender": "female"})
    assert r.status_code == 200 and ids(r.json()) == [ward["b"]["id"]]
