"""FHIR search over HTTP, parameter by parameter, on small hand-made data (https://hl7.org/fhir/R4/search.html).

Every test runs on SQLite and PostgreSQL (the ``db`` fixture) and asserts exact sets of ids, so the
two databases are held to the same answers. Stored dates are compared as UTC ranges:
``2026-11-01T03:00:00+05:30`` is 2026-10-31T21:30:00Z. Where the store departs from the specification
the test states the specification's answer and is marked ``xfail(strict=True)`` with the cause, so
that a fix turns it into a failure to be unmarked.
"""

from __future__ import annotations

import threading
import time
from urllib.parse import urlencode

import httpx
import pytest

UHID = "https://himhis.hp.gov.in/fhir/sid/uhid"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
SNOMED = "http://snomed.info/sct"
TAGS = "https://himhis.hp.gov.in/fhir/CodeSystem/tag"
HP_PATIENT = "https://himhis.hp.gov.in/fhir/StructureDefinition/hp-patient"


# --- builders and helpers -------------------------------------------------------------------------

def make(fhir, resource: dict) -> str:
    r = fhir.post(f"/fhir/{resource['resourceType']}", json=resource)
    assert r.status_code == 201, r.text
    return r.json()["id"]


def patient(fhir, *, family: str | None = "Thakur", given: tuple[str, ...] = ("Ramesh",),
            birth_date: str | None = "1970-05-01", gender: str | None = "male", **extra) -> str:
    res: dict = {"resourceType": "Patient", **extra}
    if family is not None or given:
        res["name"] = [{k: v for k, v in (("family", family), ("given", list(given))) if v}]
    if birth_date is not None:
        res["birthDate"] = birth_date
    if gender is not None:
        res["gender"] = gender
    return make(fhir, res)


def observation(fhir, *, subject: str | None = None, code: tuple[str | None, str] | None = (LOINC, "1558-6"),
                text: str | None = None, **extra) -> str:
    concept: dict = {}
    if code is not None:
        system, value = code
        concept["coding"] = [{"system": system, "code": value} if system else {"code": value}]
    if text is not None:
        concept["text"] = text
    res: dict = {"resourceType": "Observation", "status": "final", "code": concept, **extra}
    if subject is not None:
        res["subject"] = {"reference": subject}
    return make(fhir, res)


def quantity(value: float, code: str | None, *, unit: str | None = None) -> dict:
    """A UCUM Quantity; without a code it has only a human unit, as in much legacy data."""
    q: dict = {"value": value, "unit": unit or code}
    if code:
        q.update(system=UCUM, code=code)
    return q


def bundle(fhir, path: str, params=(), headers=None) -> dict:
    r = fhir.get(path, params=list(params), headers=headers)
    assert r.status_code == 200, f"{path}?{urlencode(list(params))}: {r.text}"
    assert r.json()["resourceType"] == "Bundle"
    return r.json()


def ids(b: dict, mode: str = "match") -> list[str]:
    return [e["resource"]["id"] for e in b.get("entry", []) if e["search"]["mode"] == mode]


def found(fhir, path: str, *params: tuple[str, str]) -> set[str]:
    """The set of matching ids; a match listed twice is a failure."""
    got = ids(bundle(fhir, path, params))
    assert len(got) == len(set(got)), f"duplicates in {path}?{urlencode(params)}"
    return set(got)


def check(fhir, path: str, cases: list[tuple[object, set[str]]], name: str | None = None) -> None:
    """Run every case (a parameter value for ``name``, or a list of pairs) and report all mismatches."""
    wrong = []
    for query, expected in cases:
        params = [(name, query)] if name else query
        got = found(fhir, path, *params)
        if got != expected:
            wrong.append(f"{urlencode(params)}: expected {sorted(expected)}, got {sorted(got)}")
    assert not wrong, "\n".join(wrong)


def labelled(names: dict[str, str]):
    """Map ids to readable labels so failure messages name the resources."""
    def label(id_set: set[str]) -> set[str]:
        return {names.get(i, i) for i in id_set}
    return label


def outcome_of(r: httpx.Response) -> dict:
    assert r.json()["resourceType"] == "OperationOutcome", r.text
    return r.json()


# --- string ---------------------------------------------------------------------------------------

def test_string_is_case_and_accent_blind_starts_with_contains_exact_and_devanagari(fhir):
    latin = patient(fhir, family="Thakur", given=("Kāṅgṛā", "Ramesh"), address=[{"city": "Shimla"}])
    hindi = patient(fhir, family="ठाकुर", given=("रमेश",))
    negi = patient(fhir, family="Negi", given=("Sunita",), address=[{"city": "Mandi"}])
    odd = patient(fhir, family="Under_score", given=("Per%cent",))
    cases = [
        ([("family", "thak")], {latin}),  # starts-with, case-blind
        ([("family", "THAKUR")], {latin}),
        ([("family", "hakur")], set()),  # not a prefix
        ([("given", "kangra")], {latin}),  # accents fold
        ([("given", "KĀṄG")], {latin}),
        ([("name", "ramesh")], {latin}),  # any part of the name
        ([("family", "ठाकु")], {hindi}),  # Devanagari prefix
        ([("name", "रमेश")], {hindi}),
        ([("name:contains", "कुर")], {hindi}),
        ([("name:contains", "AKU")], {latin}),
        ([("name:contains", "ang")], {latin}),
        ([("family:exact", "Thakur")], {latin}),
        ([("family:exact", "thakur")], set()),  # exact is case-sensitive
        ([("family:exact", "Thak")], set()),
        ([("family:exact", "ठाकुर")], {hindi}),
        ([("given:exact", "Kāṅgṛā")], {latin}),
        ([("given:exact", "Kangra")], set()),
        ([("name", "negi,ठाकुर")], {negi, hindi}),  # OR
        ([("name", "thakur"), ("given", "kangra")], {latin}),  # AND
        ([("name", "thakur"), ("given", "sunita")], set()),
        ([("address-city", "shim")], {latin}),
        ([("address", "MANDI")], {negi}),
        ([("name:contains", "_")], {odd}),  # LIKE wildcards are literal
        ([("name:contains", "%")], {odd}),
        ([("family", "under_")], {odd}),
        ([("family", "under%")], set()),
    ]
    check(fhir, "/fhir/Patient", cases)


# --- token ----------------------------------------------------------------------------------------

def test_token_system_code_forms_not_text_and_or(fhir):
    a = patient(fhir, gender="male", active=True, telecom=[{"system": "phone", "value": "98160-00001"}],
                identifier=[{"system": UHID, "value": "IGMC-1"}, {"value": "LOCAL-7"}])
    b = patient(fhir, family="Negi", gender="female", active=False, identifier=[{"system": UHID, "value": "RPGMC-2"}])
    c = patient(fhir, family="Rana", gender=None)
    check(fhir, "/fhir/Patient", [
        ("male", {a}), ("female", {b}), ("male,female", {a, b}), ("other", set()),
    ], "gender")
    check(fhir, "/fhir/Patient", [
        ([("gender:not", "male")], {b, c}),  # :not includes resources without a value
        ([("gender:not", "male"), ("gender:not", "female")], {c}),
        ([("identifier", f"{UHID}|IGMC-1")], {a}),
        ([("identifier", "IGMC-1")], {a}),  # code only, any system
        ([("identifier", f"{UHID}|")], {a, b}),  # system only
        ([("identifier", "|LOCAL-7")], {a}),  # no system
        ([("identifier", "|IGMC-1")], set()),  # it has a system
        ([("identifier", f"{UHID}|LOCAL-7")], set()),
        ([("identifier", f"{UHID}|IGMC-1,{UHID}|RPGMC-2")], {a, b}),
        ([("active", "true")], {a}),
        ([("active", "false")], {b}),
        ([("telecom", "phone|98160-00001")], {a}),
        ([("phone", "98160-00001")], {a}),
        ([("email", "98160-00001")], set()),
    ])
    fasting = observation(fhir, code=(LOINC, "1558-6"), text="Fasting glucose")
    local = make(fhir, {"resourceType": "Observation", "status": "final",
                        "code": {"coding": [{"code": "GLU", "display": "Glucose random"}]}})
    only_text = observation(fhir, code=None, text="Haemoglobin")
    check(fhir, "/fhir/Observation", [
        (f"{LOINC}|1558-6", {fasting}), ("1558-6", {fasting}), (f"{LOINC}|", {fasting}), ("|GLU", {local}),
        (f"{LOINC}|GLU", set()), ("1558-6,GLU", {fasting, local}), ("Haemoglobin", set()),
    ], "code")
    check(fhir, "/fhir/Observation", [
        ("fasting", {fasting}),  # CodeableConcept.text
        ("FASTING GLU", {fasting}),
        ("glucose random", {local}),  # Coding.display when there is no text
        ("haemo", {only_text}),
    ], "code:text")
    check(fhir, "/fhir/Observation", [
        (f"{LOINC}|1558-6", {local, only_text}), ("GLU", {fasting, only_text}),
    ], "code:not")


def test_token_text_is_a_string_search_blind_to_case_and_accents_beyond_ascii(fhir):
    """:text searches the text as a string (case- and accent-blind) on both databases; SQLite's LIKE
    alone folds only ASCII case."""
    glycemie = observation(fhir, text="Glycémie à jeun")
    upper = observation(fhir, code=None, text="HÉMOGLOBINE")
    check(fhir, "/fhir/Observation", [
        ("glycemie", {glycemie}), ("GLYCÉMIE", {glycemie}), ("hémoglobine", {upper}), ("hemoglobine", {upper}),
    ], "code:text")




# --- date -----------------------------------------------------------------------------------------

@pytest.fixture
def dated(fhir):
    """Observations whose `date` (Observation.effective) is a day, a Period, an instant with a +05:30
    offset, a month, and a Period open at its end."""
    p = patient(fhir)
    subject = f"Patient/{p}"
    return {
        observation(fhir, subject=subject, effectiveDateTime="2026-11-01"): "day",
        observation(fhir, subject=subject,
                    effectivePeriod={"start": "2026-10-30T10:00:00Z", "end": "2026-11-02T10:00:00Z"}): "period",
        observation(fhir, subject=subject, effectiveInstant="2026-11-01T03:00:00+05:30"): "instant",
        observation(fhir, subject=subject, effectiveDateTime="2026-12"): "month",
        observation(fhir, subject=subject, effectivePeriod={"start": "2026-11-05"}): "open",
    }


# (query, expected labels): only cases where the R4 prefix definitions leave no room for reading.
DATE_CASES = [
    # year precision
    ("2026", {"day", "period", "instant", "month"}),
    ("eq2026", {"day", "period", "instant", "month"}),
    ("ne2026", {"open"}),
    ("gt2026", {"open"}),
    ("lt2026", set()),
    ("ge2026", {"day", "period", "instant", "month", "open"}),
    ("sa2025", {"day", "period", "instant", "month", "open"}),
    ("sa2026", set()),
    ("eb2027", {"day", "period", "instant", "month"}),
    ("eb2026", set()),
    # month precision
    ("2026-11", {"day"}),
    ("2026-10", {"instant"}),  # 2026-10-31T21:30Z
    ("2026-12", {"month"}),
    ("gt2026-11", {"month", "open"}),
    ("lt2026-11", {"period", "instant"}),
    ("sa2026-10", {"day", "month", "open"}),
    ("eb2026-12", {"day", "period", "instant"}),
    ("ne2026-11", {"period", "instant", "month", "open"}),
    # day precision
    ("2026-11-01", {"day"}),
    ("2026-10-31", {"instant"}),
    ("eq2026-11-02", set()),
    ("gt2026-11-01", {"period", "month", "open"}),
    ("lt2026-11-01", {"period", "instant"}),
    ("ge2026-11-01", {"day", "period", "month", "open"}),
    ("le2026-11-01", {"day", "period", "instant"}),
    ("sa2026-11-01", {"month", "open"}),
    ("eb2026-11-01", {"instant"}),
    ("ne2026-11-01", {"period", "instant", "month", "open"}),
    # minute, second and instant precision, with and without offsets
    ("2026-11-01T03:00:00+05:30", {"instant"}),
    ("2026-10-31T21:30:00Z", {"instant"}),
    ("2026-10-31T21:30:00+00:00", {"instant"}),
    ("2026-10-31T21:30Z", {"instant"}),
    ("2026-11-01T08:00:00+05:30", set()),
    ("gt2026-11-01T10:00:00Z", {"day", "period", "month", "open"}),
    ("lt2026-11-01T10:00:00Z", {"day", "period", "instant"}),
    ("ge2026-11-01T05:30:00+05:30", {"day", "period", "month", "open"}),  # midnight UTC
    ("lt2026-11-01T05:30:00+05:30", {"period", "instant"}),
    ("sa2026-10-31T21:30:00Z", {"day", "month", "open"}),
    ("eb2026-10-31T21:31:00Z", {"instant"}),
    ("eb2026-10-30T10:00:00Z", set()),
    ("lt2026-10-30T10:00:00Z", set()),
    ("gt2026-11-02T10:00:00Z", {"month", "open"}),
    # OR
    ("2026-11-01,2026-12", {"day", "month"}),
]


def test_date_prefixes_precisions_and_sort_on_day_period_instant_month_open(fhir, dated):
    label = labelled(dated)
    wrong = []
    for query, expected in DATE_CASES:
        got = label(found(fhir, "/fhir/Observation", ("date", query)))
        if got != expected:
            wrong.append(f"date={query}: expected {sorted(expected)}, got {sorted(got)}")
    # AND of repeated parameters makes a range.
    got = label(found(fhir, "/fhir/Observation", ("date", "ge2026-10-31"), ("date", "lt2026-11-03")))
    if got != {"day", "period", "instant"}:
        wrong.append(f"date=ge2026-10-31&date=lt2026-11-03: expected day, period, instant; got {sorted(got)}")
    # A raw URL with the offset percent-encoded.
    raw = label(set(ids(fhir.get("/fhir/Observation?date=2026-11-01T03:00:00%2B05:30").json())))
    if raw != {"instant"}:
        wrong.append(f"raw %2B offset: got {sorted(raw)}")
    assert not wrong, "\n".join(wrong)
    # _sort=date orders by the start of each range ascending and by its end descending.
    asc = [dated[i] for i in ids(bundle(fhir, "/fhir/Observation", [("_sort", "date")]))]
    assert asc == ["period", "instant", "day", "open", "month"]
    desc = [dated[i] for i in ids(bundle(fhir, "/fhir/Observation", [("_sort", "-date")]))]
    assert desc == ["open", "month", "period", "day", "instant"]  # the open end is the latest


def test_date_on_birthdate_and_lastupdated(fhir):
    old = patient(fhir, birth_date="1970-05-01")
    time.sleep(0.002)  # meta.lastUpdated has millisecond precision
    month = patient(fhir, family="Negi", birth_date="1985-11")
    check(fhir, "/fhir/Patient", [
        ("1970", {old}), ("1985-11", {month}), ("1985-11-15", set()), ("1985", {month}),
        ("lt1980", {old}), ("ge1985-11-01", {month}), ("gt1985-11-30", set()), ("sa1985-10", {month}),
    ], "birthdate")
    first = fhir.get(f"/fhir/Patient/{old}").json()["meta"]["lastUpdated"]
    second = fhir.get(f"/fhir/Patient/{month}").json()["meta"]["lastUpdated"]
    assert first < second
    check(fhir, "/fhir/Patient", [
        (first, {old}), (second, {month}), (f"gt{first}", {month}), (f"le{first}", {old}),
        (f"lt{second}", {old}), (f"ge{first}", {old, month}), (f"ne{first}", {month}),
        (first[:4], {old, month}), (f"lt{first[:4]}", set()),
    ], "_lastUpdated")


# --- number ---------------------------------------------------------------------------------------

def test_number_prefixes_and_implicit_precision(fhir):
    p = f"Patient/{patient(fhir)}"

    def risk(*probabilities: float) -> str:
        return make(fhir, {"resourceType": "RiskAssessment", "status": "final", "subject": {"reference": p},
                           "prediction": [{"probabilityDecimal": x} for x in probabilities]})

    a, b, c = risk(0.85, 0.2), risk(0.5), risk(0.125)
    check(fhir, "/fhir/RiskAssessment", [
        ("0.5", {b}), ("0.50", {b}), ("0.85", {a}),
        ("0.8", set()),  # [0.75, 0.85)
        ("0.9", {a}),  # [0.85, 0.95)
        ("0.13", {c}),  # [0.125, 0.135)
        ("0.125", {c}), ("0.12", set()),
        ("gt0.5", {a}), ("ge0.5", {a, b}), ("lt0.5", {a, c}), ("le0.5", {a, b, c}),
        ("sa0.5", {a}), ("eb0.5", {a, c}), ("ne0.5", {a, c}), ("ap0.5", {b}),
        ("0.5,0.125", {b, c}), ("gt0.9", set()),
    ], "probability")
    # Repeated parameters are ANDed per parameter, each over all of a resource's values.
    assert found(fhir, "/fhir/RiskAssessment", ("probability", "gt0.3"), ("probability", "lt0.6")) == {a, b}


# --- quantity -------------------------------------------------------------------------------------

def test_quantity_prefixes_and_ucum_conversion(fhir):
    p = f"Patient/{patient(fhir)}"

    def value(q: dict, code: tuple[str, str] = (LOINC, "2345-7")) -> str:
        return observation(fhir, subject=p, code=code, valueQuantity=q)

    names = {
        value(quantity(180, "mg/dL")): "glc180mg/dL",
        value(quantity(1.5, "g/L")): "glc1.5g/L",
        value(quantity(5.0, "mmol/L")): "glc5mmol/L",
        value(quantity(70, "kg"), (LOINC, "29463-7")): "w70kg",
        value(quantity(70500, "g"), (LOINC, "29463-7")): "w70500g",
        value(quantity(150, "[lb_av]", unit="lb"), (LOINC, "29463-7")): "w150lb",
        value(quantity(72, None, unit="kg"), (LOINC, "29463-7")): "w72unit-only",
    }
    label = labelled(names)
    cases = [
        (f"1.8|{UCUM}|g/L", {"glc180mg/dL"}),
        (f"180|{UCUM}|mg/dL", {"glc180mg/dL"}),
        (f"150|{UCUM}|mg/dL", {"glc1.5g/L"}),
        (f"0.15|{UCUM}|g/dL", {"glc1.5g/L"}),
        (f"gt160|{UCUM}|mg/dL", {"glc180mg/dL"}),
        (f"lt1.6|{UCUM}|g/L", {"glc1.5g/L"}),
        (f"ge150|{UCUM}|mg/dL", {"glc180mg/dL", "glc1.5g/L"}),
        (f"le1.5|{UCUM}|g/L", {"glc1.5g/L"}),
        (f"ne1.8|{UCUM}|g/L", {"glc1.5g/L"}),  # mmol/L and kg are not comparable
        (f"gt1|{UCUM}|mg/dL", {"glc180mg/dL", "glc1.5g/L"}),
        (f"5|{UCUM}|mmol/L", {"glc5mmol/L"}),
        (f"5000|{UCUM}|umol/L", {"glc5mmol/L"}),
        (f"70|{UCUM}|kg", {"w70kg"}),
        (f"70000|{UCUM}|g", {"w70kg"}),
        (f"70.5|{UCUM}|kg", {"w70500g"}),
        (f"gt70|{UCUM}|kg", {"w70500g"}),
        (f"lt70|{UCUM}|kg", {"w150lb"}),  # 68.04 kg
        (f"ge68|{UCUM}|kg", {"w70kg", "w70500g", "w150lb"}),
        (f"sa69|{UCUM}|kg", {"w70kg", "w70500g"}),
        (f"eb69000|{UCUM}|g", {"w150lb"}),
        (f"150|{UCUM}|[lb_av]", {"w150lb"}),
        ("72||kg", {"w72unit-only"}),  # no system: the code or unit as given
        ("72", {"w72unit-only"}),  # no unit: the number alone
        ("70", {"w70kg"}),
        (f"70|{UCUM}|kg,5|{UCUM}|mmol/L", {"w70kg", "glc5mmol/L"}),
    ]
    wrong = []
    for query, expected in cases:
        got = label(found(fhir, "/fhir/Observation", ("value-quantity", query)))
        if got != expected:
            wrong.append(f"value-quantity={query}: expected {sorted(expected)}, got {sorted(got)}")
    got = label(found(fhir, "/fhir/Observation", ("value-quantity", f"ge100|{UCUM}|mg/dL"),
                      ("value-quantity", f"lt1.7|{UCUM}|g/L")))
    if got != {"glc1.5g/L"}:
        wrong.append(f"AND ge100 mg/dL & lt1.7 g/L: got {sorted(got)}")
    assert not wrong, "\n".join(wrong)


# --- uri ------------------------------------------------------------------------------------------

def value_set(fhir, url: str) -> str:
    return make(fhir, {"resourceType": "ValueSet", "status": "active", "url": url})


def test_uri_exact_below_above(fhir):
    v123 = value_set(fhir, "http://acme.org/fhir/ValueSet/123")
    v124 = value_set(fhir, "http://acme.org/fhir/ValueSet/124")
    other = value_set(fhir, "http://other.org/fhir/ValueSet/123")
    oid = value_set(fhir, "urn:oid:1.2.3.4")
    check(fhir, "/fhir/ValueSet", [
        ([("url", "http://acme.org/fhir/ValueSet/123")], {v123}),
        ([("url", "http://acme.org/fhir/ValueSet")], set()),
        ([("url", "urn:oid:1.2.3.4")], {oid}),
        ([("url", "http://acme.org/fhir/ValueSet/123,urn:oid:1.2.3.4")], {v123, oid}),
        ([("url:below", "http://acme.org/fhir/")], {v123, v124}),
        ([("url:below", "http://acme.org/fhir/ValueSet/123")], {v123}),
        ([("url:below", "http://other.org")], {other}),
        ([("url:above", "http://acme.org/fhir/ValueSet/123/_history/5")], {v123}),
        ([("url:above", "http://other.org/fhir/ValueSet/123/x/y")], {other}),
        ([("url:above", "http://acme.org/fhir")], set()),
        ([("url:below", "http://ACME.org/fhir")], set()),  # URIs are case-sensitive, on every database
        ([("url", "HTTP://acme.org/fhir/ValueSet/123")], set()),
    ])
    r = fhir.get("/fhir/ValueSet", params={"url:contains": "acme"})
    assert r.status_code == 400 and outcome_of(r)["issue"][0]["code"] == "not-supported"


# --- reference ------------------------------------------------------------------------------------

def test_reference_forms_type_modifier_identifier_and_absolute_url(fhir):
    p1, p2 = patient(fhir), patient(fhir, family="Negi")
    group = make(fhir, {"resourceType": "Group", "type": "person", "actual": True})
    o1 = observation(fhir, subject=f"Patient/{p1}")
    o2 = observation(fhir, subject=f"Patient/{p2}")
    og = observation(fhir, subject=f"Group/{group}")
    ext = observation(fhir, subject="http://other.example.org/fhir/Patient/ext-1")
    logical = make(fhir, {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                          "subject": {"identifier": {"system": UHID, "value": "X-9"}}})
    check(fhir, "/fhir/Observation", [
        ([("subject", f"Patient/{p1}")], {o1}),
        ([("subject", p1)], {o1}),
        ([("subject:Patient", p1)], {o1}),
        ([("subject:Group", p1)], set()),
        ([("subject:Group", group)], {og}),
        ([("subject", f"Group/{group}")], {og}),
        ([("subject", f"Patient/{p1},Patient/{p2}")], {o1, o2}),
        ([("patient", p1)], {o1}),
        ([("patient", group)], set()),  # `patient` is restricted to Patient targets
        ([("subject", "http://other.example.org/fhir/Patient/ext-1")], {ext}),
        ([("subject", "Patient/ext-1")], set()),  # this server's Patient/ext-1 is another resource
        ([("subject:Patient", "ext-1")], set()),
        ([("subject:identifier", f"{UHID}|X-9")], {logical}),
        ([("subject:identifier", "X-9")], {logical}),
        ([("subject:identifier", f"{UHID}|X-0")], set()),
        ([("subject", f"Patient/{p1}"), ("subject", f"Patient/{p2}")], set()),  # AND
    ])
    included = ids(bundle(fhir, "/fhir/Observation", [("_id", ext), ("_include", "Observation:subject")]), "include")
    assert included == []


def test_absolute_reference_to_this_server_is_a_local_reference(fhir):
    p = patient(fhir)
    base = f"{str(fhir.base_url).rstrip('/')}/fhir"
    o = observation(fhir, subject=f"{base}/Patient/{p}")
    assert found(fhir, "/fhir/Observation", ("subject", f"Patient/{p}")) == {o}
    assert found(fhir, "/fhir/Observation", ("patient", p)) == {o}
    revinclude = bundle(fhir, "/fhir/Patient", [("_id", p), ("_revinclude", "Observation:subject")])
    assert ids(revinclude, "include") == [o]


# --- :missing, _tag, _profile, _id ----------------------------------------------------------------

def test_missing_tag_profile_and_id(fhir):
    org = make(fhir, {"resourceType": "Organization", "name": "IGMC Shimla"})
    a = patient(fhir, meta={"tag": [{"system": TAGS, "code": "vip"}], "profile": [HP_PATIENT]},
                managingOrganization={"reference": f"Organization/{org}"})
    b = patient(fhir, family="Negi", birth_date=None, meta={"tag": [{"system": TAGS, "code": "test"}]})
    c = patient(fhir, family=None, given=(), gender=None, birth_date=None)
    check(fhir, "/fhir/Patient", [
        ([("birthdate:missing", "true")], {b, c}),
        ([("birthdate:missing", "false")], {a}),
        ([("family:missing", "true")], {c}),
        ([("gender:missing", "true")], {c}),
        ([("gender:missing", "false")], {a, b}),
        ([("organization:missing", "true")], {b, c}),
        ([("organization:missing", "false")], {a}),
        ([("_tag", f"{TAGS}|vip")], {a}),
        ([("_tag", "test")], {b}),
        ([("_tag", f"{TAGS}|")], {a, b}),
        ([("_tag", f"{TAGS}|vip,{TAGS}|test")], {a, b}),
        ([("_tag:not", f"{TAGS}|vip")], {b, c}),
        ([("_tag:missing", "true")], {c}),
        ([("_profile", HP_PATIENT)], {a}),
        ([("_profile:below", "https://himhis.hp.gov.in/fhir/StructureDefinition/")], {a}),
        ([("_profile:missing", "true")], {b, c}),
        ([("_id", a)], {a}),
        ([("_id", f"{a},{c}")], {a, c}),
        ([("_id:not", a)], {b, c}),
        ([("_id", "no-such-id")], set()),
    ])


# --- composite ------------------------------------------------------------------------------------

SYSTOLIC, DIASTOLIC, BP_PANEL = (LOINC, "8480-6"), (LOINC, "8462-4"), (LOINC, "85354-9")


def blood_pressure(fhir, subject: str, systolic: float, diastolic: float) -> str:
    def component(code, v):
        return {"code": {"coding": [{"system": code[0], "code": code[1]}]}, "valueQuantity": quantity(v, "mm[Hg]")}

    return observation(fhir, subject=subject, code=BP_PANEL,
                       component=[component(SYSTOLIC, systolic), component(DIASTOLIC, diastolic)])


def test_composite_code_value_quantity_and_component_code_value_quantity(fhir):
    """What the store does: ``code-value-quantity`` pairs Observation.code with Observation.value, so a
    blood-pressure panel (code 85354-9, values only in components) never matches 8480-6 there; the
    component values are searched with ``component-code-value-quantity``."""
    s = f"Patient/{patient(fhir)}"
    high = blood_pressure(fhir, s, 150, 95)
    normal = blood_pressure(fhir, s, 118, 76)
    alone = observation(fhir, subject=s, code=SYSTOLIC, valueQuantity=quantity(145, "mm[Hg]"))
    mmhg = f"{UCUM}|mm[Hg]"
    check(fhir, "/fhir/Observation", [
        ([("code-value-quantity", f"{LOINC}|8480-6$gt140|{mmhg}")], {alone}),
        ([("code-value-quantity", f"{LOINC}|8480-6$145|{mmhg}")], {alone}),
        ([("code-value-quantity", f"{LOINC}|8480-6$lt140|{mmhg}")], set()),
        ([("component-code-value-quantity", f"{LOINC}|8480-6$gt140|{mmhg}")], {high}),
        ([("component-code-value-quantity", f"{LOINC}|8462-4$lt80|{mmhg}")], {normal}),
        ([("component-code-value-quantity", f"8480-6$118|{mmhg}")], {normal}),
        ([("component-code-value-quantity", f"{LOINC}|8462-4$gt90|{mmhg},{LOINC}|8462-4$lt80|{mmhg}")],
         {high, normal}),
        ([("component-code-value-quantity", f"{LOINC}|8480-6$gt140|{mmhg}"), ("code", "85354-9")], {high}),
        ([("combo-code-value-quantity", f"{LOINC}|8480-6$gt140|{mmhg}")], {high, alone}),
    ])


def test_composite_halves_come_from_the_same_component(fhir):
    s = f"Patient/{patient(fhir)}"
    blood_pressure(fhir, s, 120, 150)
    assert found(fhir, "/fhir/Observation",
                 ("component-code-value-quantity", f"{LOINC}|8480-6$gt140|{UCUM}|mm[Hg]")) == set()


def test_combo_halves_come_from_the_observation_or_one_component(fhir):
    """``combo-code-value-quantity`` spans Observation and Observation.component, each on its own."""
    s = f"Patient/{patient(fhir)}"
    obs = observation(fhir, subject=s, code=(LOINC, "2339-0"), valueQuantity=quantity(150, "mg/dL"),
                      component=[{"code": {"coding": [{"system": LOINC, "code": "2345-7"}]},
                                  "valueQuantity": quantity(90, "mg/dL")}])
    mg = f"{UCUM}|mg/dL"
    check(fhir, "/fhir/Observation", [
        ([("combo-code-value-quantity", f"{LOINC}|2339-0$gt140|{mg}")], {obs}),
        ([("combo-code-value-quantity", f"{LOINC}|2345-7$lt100|{mg}")], {obs}),
        ([("combo-code-value-quantity", f"{LOINC}|2345-7$gt140|{mg}")], set()),
        ([("combo-code-value-quantity", f"{LOINC}|2339-0$lt100|{mg}")], set()),
        ([("combo-code-value-quantity", f"{LOINC}|2345-7$gt140|{mg},{LOINC}|2339-0$150|{mg}")], {obs}),
        ([("combo-code-value-quantity:missing", "false")], {obs}),
    ])


def test_component_code_value_concept_within_one_component(fhir):
    s = f"Patient/{patient(fhir)}"

    def component(code: str, value: str) -> dict:
        return {"code": {"coding": [{"system": LOINC, "code": code}]},
                "valueCodeableConcept": {"coding": [{"system": SNOMED, "code": value}]}}

    obs = observation(fhir, subject=s, code=(LOINC, "24356-8"),
                      component=[component("5802-4", "260385009"), component("5799-2", "10828004")])
    check(fhir, "/fhir/Observation", [
        ([("component-code-value-concept", f"{LOINC}|5802-4${SNOMED}|260385009")], {obs}),
        ([("component-code-value-concept", f"{LOINC}|5799-2${SNOMED}|10828004")], {obs}),
        ([("component-code-value-concept", f"{LOINC}|5802-4${SNOMED}|10828004")], set()),
        ([("component-code-value-concept", "5799-2$260385009")], set()),
    ])


def test_composite_of_two_tokens_keeps_its_halves_apart(fhir):
    """Group.characteristic code and value are both tokens, in one index table: a value never stands
    in for a code, nor one characteristic's code for another's."""
    group = make(fhir, {"resourceType": "Group", "type": "person", "actual": True, "characteristic": [
        {"code": {"coding": [{"system": "urn:x", "code": "smoker"}]}, "valueBoolean": True, "exclude": False},
        {"code": {"coding": [{"system": "urn:x", "code": "district"}]},
         "valueCodeableConcept": {"coding": [{"system": "urn:x", "code": "shimla"}]}, "exclude": False}]})
    check(fhir, "/fhir/Group", [
        ([("characteristic-value", "urn:x|smoker$true")], {group}),
        ([("characteristic-value", "urn:x|district$urn:x|shimla")], {group}),
        ([("characteristic-value", "urn:x|smoker$urn:x|shimla")], set()),
        ([("characteristic-value", "urn:x|shimla$urn:x|district")], set()),
        ([("characteristic-value", "true$urn:x|smoker")], set()),
    ])


def test_a_composite_value_with_the_wrong_number_of_parts_is_refused(fhir):
    r = fhir.get("/fhir/Observation", params={"component-code-value-quantity": f"{LOINC}|8480-6"})
    assert r.status_code == 400 and "component-code-value-quantity" in r.text


# --- chaining, _has, _include, _revinclude --------------------------------------------------------

@pytest.fixture
def clinic(fhir):
    igmc = make(fhir, {"resourceType": "Organization", "name": "IGMC Shimla"})
    rpgmc = make(fhir, {"resourceType": "Organization", "name": "RPGMC Tanda"})
    pa = patient(fhir, family="Thakur", gender="male", identifier=[{"system": UHID, "value": "A-1"}],
                 managingOrganization={"reference": f"Organization/{igmc}"})
    pb = patient(fhir, family="Negi", gender="female", identifier=[{"system": UHID, "value": "B-2"}],
                 managingOrganization={"reference": f"Organization/{rpgmc}"})
    oa1 = observation(fhir, subject=f"Patient/{pa}", code=(LOINC, "1558-6"))
    oa2 = observation(fhir, subject=f"Patient/{pa}", code=(LOINC, "718-7"))
    ob1 = observation(fhir, subject=f"Patient/{pb}", code=(LOINC, "718-7"))
    return {"igmc": igmc, "rpgmc": rpgmc, "pa": pa, "pb": pb, "oa1": oa1, "oa2": oa2, "ob1": ob1}


def test_chaining_one_level_and_has(fhir, clinic):
    c = clinic
    check(fhir, "/fhir/Observation", [
        ([("subject:Patient.identifier", f"{UHID}|B-2")], {c["ob1"]}),
        ([("patient.identifier", f"{UHID}|A-1")], {c["oa1"], c["oa2"]}),
        ([("subject.name", "thak")], {c["oa1"], c["oa2"]}),
        ([("subject:Patient.gender", "female")], {c["ob1"]}),
        ([("patient.name", "thakur,negi")], {c["oa1"], c["oa2"], c["ob1"]}),
        ([("patient.identifier", f"{UHID}|A-1"), ("code", "718-7")], {c["oa2"]}),
        ([("patient.organization", c["rpgmc"])], {c["ob1"]}),
        ([("subject:Patient.identifier", f"{UHID}|Z-0")], set()),
    ])
    check(fhir, "/fhir/Patient", [
        ([("_has:Observation:patient:code", "718-7")], {c["pa"], c["pb"]}),
        ([("_has:Observation:patient:code", f"{LOINC}|1558-6")], {c["pa"]}),
        ([("_has:Observation:subject:code", "1558-6,0000-0")], {c["pa"]}),
        ([("_has:Observation:patient:code", "718-7"), ("gender", "female")], {c["pb"]}),
        ([("_has:Observation:patient:code", "0000-0")], set()),
    ])
    nested = found(fhir, "/fhir/Organization", ("_has:Patient:organization:_has:Observation:patient:code", "1558-6"))
    assert nested == {c["igmc"]}


def test_include_revinclude_and_iterate(fhir, clinic):
    c = clinic

    def inc(path: str, *params: tuple[str, str]) -> tuple[set[str], list[str]]:
        b = bundle(fhir, path, params)
        included = ids(b, "include")
        assert len(included) == len(set(included)), "an included resource is listed twice"
        return set(ids(b)), included

    assert inc("/fhir/Observation", ("_id", c["oa1"]), ("_include", "Observation:subject")) == ({c["oa1"]}, [c["pa"]])
    matches, included = inc("/fhir/Observation", ("code", "718-7"), ("_include", "Observation:patient"))
    assert matches == {c["oa2"], c["ob1"]} and set(included) == {c["pa"], c["pb"]}
    assert inc("/fhir/Observation", ("_id", c["oa1"]), ("_include", "Observation:subject:Group"))[1] == []
    assert inc("/fhir/Observation", ("_id", c["oa1"]), ("_include", "Observation:*"))[1] == [c["pa"]]
    # An _include whose source type is not the searched type does nothing without :iterate.
    assert inc("/fhir/Observation", ("_id", c["oa1"]), ("_include", "Patient:organization"))[1] == []
    _, included = inc("/fhir/Observation", ("_id", c["oa1"]), ("_include", "Observation:subject"),
                      ("_include:iterate", "Patient:organization"))
    assert set(included) == {c["pa"], c["igmc"]}
    _, included = inc("/fhir/Patient", ("_id", c["pa"]), ("_revinclude", "Observation:subject"))
    assert set(included) == {c["oa1"], c["oa2"]}
    _, included = inc("/fhir/Organization", ("_id", c["igmc"]), ("_revinclude", "Patient:organization"),
                      ("_revinclude:iterate", "Observation:patient"))
    assert set(included) == {c["pa"], c["oa1"], c["oa2"]}
    # total counts matches only, never included resources
    b = bundle(fhir, "/fhir/Patient", [("_revinclude", "Observation:subject"), ("_total", "accurate")])
    assert b["total"] == 2 and len(ids(b, "include")) == 3
    # :iterate keeps its direction: _include:iterate follows hasMember forward, never back to a parent.
    s = f"Patient/{c['pa']}"
    member = observation(fhir, subject=s, text="member")
    panel = observation(fhir, subject=s, text="panel", hasMember=[{"reference": f"Observation/{member}"}])
    parent = observation(fhir, subject=s, text="parent", hasMember=[{"reference": f"Observation/{panel}"}])
    report = make(fhir, {"resourceType": "DiagnosticReport", "status": "final", "code": {"text": "r"},
                         "result": [{"reference": f"Observation/{panel}"}]})
    _, included = inc("/fhir/DiagnosticReport", ("_id", report), ("_include", "DiagnosticReport:result"),
                      ("_include:iterate", "Observation:has-member"))
    assert set(included) == {panel, member}
    _, included = inc("/fhir/Observation", ("_id", member), ("_revinclude", "Observation:has-member"),
                      ("_revinclude:iterate", "Observation:has-member"))
    assert set(included) == {panel, parent}




# --- sort -----------------------------------------------------------------------------------------

def test_sort_on_two_keys_with_ties_is_stable(fhir):
    created = []
    for family, birth_date in [("Sharma", "1980-01-01"), ("Sharma", "1990-01-01"), ("Chauhan", "1990-01-01"),
                               ("Verma", "1985-06-15"), ("Sharma", "1990-01-01"), (None, "1970-01-01")]:
        created.append(patient(fhir, family=family, given=("Anon",), birth_date=birth_date))
        time.sleep(0.002)  # distinct meta.lastUpdated (milliseconds) for the _lastUpdated sort
    p1, p2, p3, p4, p5, p6 = created  # p5 ties p2 on both keys; p6 has no family

    def order(sort: str) -> list[str]:
        return ids(bundle(fhir, "/fhir/Patient", [("_sort", sort)]))

    asc = order("family,-birthdate")
    named = [x for x in asc if x != p6]  # where a missing key sorts is the server's choice
    assert len(asc) == 6 and named[0] == p3 and set(named[1:3]) == {p2, p5} and named[3:] == [p1, p4]
    for _ in range(3):
        assert order("family,-birthdate") == asc  # ties keep one order
    desc = [x for x in order("-family,birthdate") if x != p6]
    assert desc[:2] == [p4, p1] and set(desc[2:4]) == {p2, p5} and desc[4] == p3
    assert [x for x in order("birthdate") if x != p6][:2] == [p1, p4]
    assert order("-birthdate")[-1] == p6
    # paging through a sorted search gives the unpaged order
    paged, link = [], f"/fhir/Patient?{urlencode([('_sort', 'family,-birthdate'), ('_count', '2')])}"
    while link:
        page = fhir.get(link.replace("http://testserver", "")).json()
        paged += ids(page)
        link = next((lk["url"] for lk in page["link"] if lk["relation"] == "next"), None)
    assert paged == asc
    assert order("_lastUpdated") == created
    assert order("-_lastUpdated") == created[::-1]
    assert order("_id") == sorted(created)
    assert order("-_id") == sorted(created, reverse=True)


# --- _count, _total, _summary, _elements ----------------------------------------------------------

def test_count_total_summary_and_elements(fhir):
    for i in range(5):
        narrative = {"status": "generated", "div": f'<div xmlns="http://www.w3.org/1999/xhtml">Rana{i}</div>'}
        patient(fhir, family=f"Rana{i}", gender="male" if i % 2 else "female", maritalStatus={"text": "M"},
                communication=[{"language": {"text": "Hindi"}}], text=narrative)
    b = bundle(fhir, "/fhir/Patient", [("_count", "2"), ("_total", "accurate")])
    assert b["total"] == 5 and len(ids(b)) == 2
    assert any(lk["relation"] == "next" for lk in b["link"])
    assert "total" not in bundle(fhir, "/fhir/Patient", [("_count", "2"), ("_total", "none")])
    count = bundle(fhir, "/fhir/Patient", [("_summary", "count"), ("gender", "male")])
    assert count["total"] == 2 and not count.get("entry")
    assert bundle(fhir, "/fhir/Patient", [("_summary", "count")])["total"] == 5
    zero = bundle(fhir, "/fhir/Patient", [("_count", "0")])  # R4: the same as _summary=count
    assert zero["total"] == 5 and not zero.get("entry") and [lk["relation"] for lk in zero["link"]] == ["self"]

    def first(**params) -> dict:
        return bundle(fhir, "/fhir/Patient", [("_sort", "family"), *params.items()])["entry"][0]["resource"]

    def subsetted(res: dict) -> bool:
        return any(t.get("code") == "SUBSETTED" for t in res.get("meta", {}).get("tag", []))

    e = first(_elements="gender,birthDate")
    assert set(e) == {"resourceType", "id", "meta", "gender", "birthDate"} and subsetted(e)
    s = first(_summary="true")
    assert {"name", "gender", "birthDate"} <= set(s) and subsetted(s)
    assert not {"text", "maritalStatus", "communication"} & set(s)
    t = first(_summary="text")
    assert "text" in t and "name" not in t and subsetted(t)
    d = first(_summary="data")
    assert "text" not in d and {"name", "maritalStatus", "communication"} <= set(d)
    f = first(_summary="false")
    assert {"text", "name", "maritalStatus"} <= set(f) and not subsetted(f)


# --- paging while another client writes -----------------------------------------------------------

def test_paging_has_no_duplicates_or_gaps_while_another_client_writes(fhir, live_server):
    """Pages follow the matches as they were at the first page, in that order, however others write."""
    created = [patient(fhir, family=f"Page{i:02d}", birth_date=f"19{50 + i}-01-01") for i in range(24)]
    headers = {"Authorization": fhir.headers["Authorization"]}
    started, errors = threading.Event(), []

    def writer():
        try:
            with httpx.Client(base_url=live_server, headers=headers, timeout=60) as w:
                for i in range(12):
                    r = w.post("/fhir/Patient", json={"resourceType": "Patient", "name": [{"family": f"Page{i:02d}a"}]})
                    assert r.status_code == 201, r.text
                    victim = w.get(f"/fhir/Patient/{created[23 - i]}").json()  # moves to the front of the sort
                    victim["name"] = [{"family": f"Page00{i:02d}"}]
                    assert w.put(f"/fhir/Patient/{victim['id']}", json=victim).status_code == 200
                    if i == 2:
                        started.set()
        except Exception as exc:  # reported below, in the test's thread
            errors.append(exc)
            started.set()

    with httpx.Client(base_url=live_server, headers=headers, timeout=60) as reader:
        first = reader.get("/fhir/Patient", params={"family": "Page", "_sort": "family", "_count": "5"}).json()
        assert first["total"] == 24
        thread = threading.Thread(target=writer)
        thread.start()
        assert started.wait(30)
        seen, pages = ids(first), [ids(first)]
        link = next(lk["url"] for lk in first["link"] if lk["relation"] == "next")
        second = None
        while link:
            page = reader.get(link).json()
            assert page["total"] == 24
            second = second or page
            seen += ids(page)
            pages.append(ids(page))
            link = next((lk["url"] for lk in page["link"] if lk["relation"] == "next"), None)
        thread.join(60)
        assert not errors, errors
        assert seen == created  # the first page's order, no repeats, nothing skipped
        assert [len(p) for p in pages] == [5, 5, 5, 5, 4]
        previous = next(lk["url"] for lk in second["link"] if lk["relation"] == "previous")
        assert ids(reader.get(previous).json()) == pages[0]
        # a new search sees the writes
        fresh = reader.get("/fhir/Patient", params={"family": "Page", "_summary": "count"}).json()
        assert fresh["total"] == 36


# --- POST _search, errors, lenient handling -------------------------------------------------------

def test_post_search_equals_get(fhir, clinic):
    c = clinic
    queries = [
        ("/fhir/Patient", [("gender", "female")]),
        ("/fhir/Observation", [("code", "718-7"), ("_include", "Observation:patient"), ("_sort", "-_lastUpdated")]),
        ("/fhir/Observation", [("patient.identifier", f"{UHID}|A-1"), ("code", "1558-6,718-7")]),
        ("/fhir/Patient", [("_has:Observation:patient:code", "718-7"), ("_sort", "family")]),
        ("/fhir/Patient", [("family", "thak"), ("family", "thakur")]),
        ("/fhir/Patient", [("_id", f"{c['pa']},{c['pb']}"), ("_count", "1"), ("_total", "accurate")]),
    ]
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    for path, params in queries:
        get = bundle(fhir, path, params)
        r = fhir.post(f"{path}/_search", content=urlencode(params), headers=form)
        assert r.status_code == 200, r.text
        post = r.json()
        assert [(e["fullUrl"], e["search"]["mode"]) for e in post["entry"]] == \
            [(e["fullUrl"], e["search"]["mode"]) for e in get["entry"]], params
        assert post.get("total") == get.get("total")
        assert get["entry"], params


BAD = [
    ("/fhir/Patient", "birthdate=1970-13-01", "birthdate"),
    ("/fhir/Patient", "birthdate=2026-02-30", "birthdate"),
    ("/fhir/Patient", "birthdate=01-05-1970", "birthdate"),
    ("/fhir/Patient", "birthdate=xx1970", "birthdate"),
    ("/fhir/Patient", "birthdate=2026-11-01T10:00:00%2B15:00", "birthdate"),
    ("/fhir/Patient", "_lastUpdated=yesterday", "_lastUpdated"),
    ("/fhir/RiskAssessment", "probability=zz0.5", "probability"),
    ("/fhir/RiskAssessment", "probability=half", "probability"),
    ("/fhir/Observation", "value-quantity=xy5|http://unitsofmeasure.org|mg", "value-quantity"),
    ("/fhir/Observation", "value-quantity=five", "value-quantity"),
    ("/fhir/Observation", "code-value-quantity=http://loinc.org|8480-6", "code-value-quantity"),
    ("/fhir/Patient", "colour=blue", "colour"),
    ("/fhir/Observation", "subject:Patient.colour=blue", "subject:Patient.colour"),
    ("/fhir/Observation", "code.name=x", "code"),
    ("/fhir/Patient", "gender:missing=maybe", "gender:missing"),
    ("/fhir/Patient", "gender:below=male", "gender:below"),
    ("/fhir/Patient", "family:text=x", "family:text"),
    ("/fhir/Observation", "subject:contains=x", "subject:contains"),
    ("/fhir/Patient", "_sort=colour", "_sort"),
    ("/fhir/Patient", "_count=many", "_count"),
    ("/fhir/Patient", "_count=-1", "_count"),
    ("/fhir/Patient", "_summary=some", "_summary"),
    ("/fhir/Observation", "_include=Observation", "_include"),
    ("/fhir/Observation", "_include=Observation:code", "_include"),
    ("/fhir/Patient", "_has:Observation:code:status=final", "_has:Observation:code:status"),
    ("/fhir/Patient", "_has:Observation:patient:colour=x", "colour"),
    # modifiers that do not apply to the parameter's type
    ("/fhir/Patient", "birthdate:exact=1970", "birthdate:exact"),
    ("/fhir/Patient", "birthdate:below=1970", "birthdate:below"),
    ("/fhir/RiskAssessment", "probability:contains=0.5", "probability:contains"),
    ("/fhir/Observation", "value-quantity:text=5", "value-quantity:text"),
    ("/fhir/Observation", "code-value-quantity:exact=8480-6$5", "code-value-quantity:exact"),
    # a malformed _include is refused even when nothing matches
    ("/fhir/Observation", "_id=nothing&_include=Observation:code", "_include"),
    ("/fhir/Observation", "_id=nothing&_include=Observation", "_include"),
]


def test_bad_values_get_400_naming_the_parameter_and_lenient_ignores_unknown_ones(fhir):
    female = patient(fhir, family="Negi", gender="female")
    observation(fhir, subject=f"Patient/{female}")  # _include specs are checked against matches
    wrong = []
    for path, query, param in BAD:
        r = fhir.get(f"{path}?{query}")
        body = r.json()
        issue = (body.get("issue") or [{}])[0]
        named = param in issue.get("diagnostics", "") or param in " ".join(issue.get("expression", []))
        if r.status_code != 400 or body.get("resourceType") != "OperationOutcome" or not named:
            wrong.append(f"{path}?{query}: {r.status_code} {r.text[:200]}")
    gone = fhir.get("/fhir/Patient?_page=00000000-0000-0000-0000-000000000000&_offset=5")
    if gone.status_code != 410 or gone.json().get("resourceType") != "OperationOutcome":
        wrong.append(f"expired page: {gone.status_code} {gone.text[:200]}")
    assert not wrong, "\n".join(wrong)

    lenient = {"Prefer": "handling=lenient"}
    r = fhir.get("/fhir/Patient", params=[("colour", "blue"), ("gender", "female")], headers=lenient)
    assert r.status_code == 200 and ids(r.json()) == [female]
    # the self link carries the parameters actually used, which is how a client learns one was ignored
    self_link = next(lk["url"] for lk in r.json()["link"] if lk["relation"] == "self")
    assert "gender=female" in self_link and "colour" not in self_link
    r = fhir.get("/fhir/Patient", params=[("colour", "blue"), ("gender", "female")],
                 headers={"Prefer": "handling=strict"})
    assert r.status_code == 400 and "colour" in outcome_of(r)["issue"][0]["diagnostics"]
    # A malformed value of a known parameter is an error even when lenient.
    assert fhir.get("/fhir/Patient", params={"birthdate": "1970-13"}, headers=lenient).status_code == 400


def test_malformed_revinclude_names_revinclude(fhir):
    r = fhir.get("/fhir/Observation?_revinclude=Observation:code")
    assert r.status_code == 400
    issue = outcome_of(r)["issue"][0]
    assert "_revinclude" in issue.get("expression", []) or "_revinclude" in issue["diagnostics"]
