"""Search over a realistic data set: three Synthea patients, with the organisations, locations and
practitioners they reference, loaded through the FHIR API.

The answers are checked against what the bundles contain (computed here in Python, without the store's
search code), and the same battery is run on SQLite and PostgreSQL loaded with the same data, whose
answers must be identical, order included (https://hl7.org/fhir/R4/search.html).

The two batch bundles hold ~2,400 entries each; only the entries that the chosen patients reference
(by conditional reference, ``Organization?identifier=...``) and the PractitionerRoles of those
practitioners are loaded, which keeps a load under a few seconds per backend.
"""

from __future__ import annotations

import copy
import json
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

import pytest
from fastapi.testclient import TestClient

from ehr.references import rewrite_references
from himhis.app import create_app
from himhis.config import Settings
from tests.conftest import _database, _empty, require_corpora, steward_headers

PATIENTS = ("Emery884_", "Glenn0_", "Bob965_")  # male 1987 with a condition, female 1997, male 1991 without
SYNTHEA = "https://github.com/synthetichealth/synthea"
NPI = "http://hl7.org/fhir/sid/us-npi"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
CVX = "http://hl7.org/fhir/sid/cvx"
US_CORE_ENCOUNTER = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-encounter"
SECOND = timedelta(microseconds=999_999)

Key = str  # "Type/source-id": a resource as the bundles name it


# --- the corpus, read once -------------------------------------------------------------------------

@dataclass
class Corpus:
    batch: dict  # the reduced batch bundle of shared resources
    transactions: list[dict]  # the patient bundles, as published
    resources: dict[Key, dict] = field(default_factory=dict)  # copies with references resolved to keys

    def of(self, rtype: str) -> list[dict]:
        return [r for r in self.resources.values() if r["resourceType"] == rtype]

    def patient(self, prefix: str) -> dict:
        tx = self.transactions[PATIENTS.index(prefix)]
        return self.resources[key(tx["entry"][0]["resource"])]


def key(resource: dict) -> Key:
    return f"{resource['resourceType']}/{resource['id']}"


def corpus() -> Corpus:
    require_corpora()
    return _read()


@cache
def _read() -> Corpus:
    folder = require_corpora() / "synthea-r4"
    transactions = [json.loads(next(folder.glob(f"{p}*.json")).read_text()) for p in PATIENTS]
    wanted: set[str] = set()

    def conditional(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(ref := node.get("reference"), str) and "?identifier=" in ref:
                wanted.add(ref)
            for v in node.values():
                conditional(v)
        elif isinstance(node, list):
            for v in node:
                conditional(v)

    conditional(transactions)
    shared = [e for name in ("hospitalInformation", "practitionerInformation")
              for e in json.loads(next(folder.glob(f"{name}*.json")).read_text())["entry"]]
    chosen = [e for e in shared if _conditional_keys(e["resource"]) & wanted]
    npis = {i["value"] for e in chosen if e["resource"]["resourceType"] == "Practitioner"
            for i in e["resource"]["identifier"]}
    chosen += [e for e in shared if e["resource"]["resourceType"] == "PractitionerRole"
               and e["resource"]["practitioner"].get("identifier", {}).get("value") in npis]
    batch = {"resourceType": "Bundle", "type": "batch", "entry": chosen}
    data = Corpus(batch, transactions)
    _resolve(data)
    return data


def _conditional_keys(resource: dict) -> set[str]:
    return {f"{resource['resourceType']}?identifier={i.get('system')}|{i.get('value')}"
            for i in resource.get("identifier", ())}


def _resolve(data: Corpus) -> None:
    """Copies of every resource with urn:uuid and conditional references rewritten to keys, as the
    store's transaction processing does (https://hl7.org/fhir/R4/http.html#trules)."""
    bundles = [data.batch, *data.transactions]
    targets: dict[str, Key] = {}
    for b in bundles:
        for e in b["entry"]:
            targets[e["fullUrl"]] = key(e["resource"])
            targets.update(dict.fromkeys(_conditional_keys(e["resource"]), key(e["resource"])))

    def walk(node: Any) -> None:  # the store's own reference rewriting
        rewrite_references(node, targets.get)

    for b in bundles:
        for e in b["entry"]:
            r = copy.deepcopy(e["resource"])
            walk(r)
            data.resources[key(r)] = r


# --- what the bundles say, computed without the store ----------------------------------------------

def moment(value: str) -> datetime:
    """A dateTime as naive UTC."""
    t = datetime.fromisoformat(value)
    return t.astimezone(UTC).replace(tzinfo=None) if t.tzinfo else t


def span(value: str | dict) -> tuple[datetime, datetime]:
    """The range a Synthea dateTime (to the second) or Period covers."""
    if isinstance(value, dict):
        return moment(value["start"]), moment(value["end"]) + SECOND
    return moment(value), moment(value) + SECOND


def query_range(value: str) -> tuple[datetime, datetime]:
    """The range of a search date of year or day precision."""
    if len(value) == 4:
        return datetime(int(value), 1, 1), datetime(int(value), 12, 31, 23, 59, 59, 999_999)
    day = datetime.fromisoformat(value)
    return day, day + timedelta(days=1) - timedelta(microseconds=1)


def date_matches(prefix: str, stored: tuple[datetime, datetime], value: str) -> bool:
    """The R4 prefix definitions (https://hl7.org/fhir/R4/search.html#prefix), read strictly."""
    (low, high), (qlow, qhigh) = stored, query_range(value)
    inside = qlow <= low and high <= qhigh
    return {"eq": inside, "gt": high > qhigh, "lt": low < qlow, "ge": high > qhigh or inside,
            "le": low < qlow or inside}[prefix]


def fold(s: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKD", s.casefold()) if not unicodedata.combining(c))


def codes(concept: dict | None) -> set[tuple[str | None, str | None]]:
    return {(c.get("system"), c.get("code")) for c in (concept or {}).get("coding", ())}


def ref(resource: dict, *path: str) -> Key | None:
    node: Any = resource
    for step in path:
        node = node.get(step) if isinstance(node, dict) else None
    return node.get("reference") if isinstance(node, dict) else None


# --- the battery ----------------------------------------------------------------------------------

@dataclass
class Query:
    name: str
    path: str
    params: Callable[[Callable[[Key], str]], list[tuple[str, str]]]  # given key -> server id
    matches: set[Key] | None = None  # expected matches (every page)
    count: int | None = None  # expected total (for _summary=count, or with matches)
    included: set[Key] | None = None
    order: Callable[[Key], Any] | None = None  # the sort value; the returned order must not decrease
    descending: bool = False


def battery(c: Corpus) -> list[Query]:
    emery, glenn, bob = (c.patient(p) for p in PATIENTS)
    patients = c.of("Patient")
    obs = c.of("Observation")
    encounters = c.of("Encounter")

    def of_patient(rows: list[dict], p: dict, field_: str = "subject") -> list[dict]:
        return [r for r in rows if ref(r, field_) == key(p)]

    def keys(rows) -> set[Key]:
        return {key(r) for r in rows}

    commonest = Counter(next(iter(codes(o["code"]))) for o in obs).most_common(1)[0][0]
    by_code = {next(iter(codes(o["code"])))[1]: o for o in obs}
    weight = next(cd for cd, o in by_code.items() if o["code"]["coding"][0].get("display") == "Weight")
    plan = next(cd for cd, o in by_code.items() if o["code"]["coding"][0].get("display") == "ANTIRETROVIRAL PLAN")
    tb = next(iter(codes(c.of("Condition")[0]["code"])))
    effective = {key(o): span(o["effectiveDateTime"]) for o in obs}
    periods = {key(e): span(e["period"]) for e in encounters}
    reports = {key(r): moment(r["issued"]) for r in c.of("DiagnosticReport")}
    birth = {key(p): p["birthDate"] for p in patients}
    practitioner = c.resources[of_patient(encounters, emery)[0]["participant"][0]["individual"]["reference"]]
    npi = practitioner["identifier"][0]["value"]
    provider = c.resources[ref(of_patient(encounters, emery)[0], "serviceProvider")]
    provider_id = next(i["value"] for i in provider["identifier"] if i["system"] == SYNTHEA)
    glenn_weights = [o for o in of_patient(obs, glenn) if (LOINC, weight) in codes(o["code"])]

    def in_grams(o: dict) -> float | None:
        q = o.get("valueQuantity", {})
        return q["value"] * 1000 if q.get("system") == UCUM and q.get("code") == "kg" else None

    def in_metres(o: dict) -> float | None:
        q = o.get("valueQuantity", {})
        return q["value"] / 100 if q.get("system") == UCUM and q.get("code") == "cm" else None

    return [
        Query("patients by birth date", "/fhir/Patient", lambda s: [("_sort", "birthdate")],
              keys(patients), order=birth.get),
        Query("men, youngest first", "/fhir/Patient", lambda s: [("gender", "male"), ("_sort", "-birthdate")],
              keys(p for p in patients if p["gender"] == "male"), order=birth.get, descending=True),
        Query("family name prefix", "/fhir/Patient", lambda s: [("family", "JOHNS")],
              keys(p for p in patients if any(fold(n.get("family", "")).startswith("johns") for n in p["name"]))),
        Query("born in or after 1990", "/fhir/Patient", lambda s: [("birthdate", "ge1990-01-01")],
              keys(p for p in patients if p["birthDate"] >= "1990-01-01")),
        Query("patient by Synthea identifier", "/fhir/Patient", lambda s: [("identifier", f"{SYNTHEA}|{bob['id']}")],
              {key(bob)}),
        Query("city", "/fhir/Patient", lambda s: [("address-city", "cambridge")],
              keys(p for p in patients if any(fold(a.get("city", "")) == "cambridge" for a in p["address"]))),
        Query("a patient's observations, paged by date", "/fhir/Observation",
              lambda s: [("patient", s(key(emery))), ("_sort", "date"), ("_count", "40")],
              keys(of_patient(obs, emery)), count=len(of_patient(obs, emery)), order=lambda k: effective[k][0]),
        Query("the commonest code, newest first", "/fhir/Observation",
              lambda s: [("code", "|".join(commonest)), ("_sort", "-date")],
              keys(o for o in obs if commonest in codes(o["code"])), order=lambda k: effective[k][1],
              descending=True),
        Query("code AND subject", "/fhir/Observation",
              lambda s: [("subject", f"Patient/{s(key(glenn))}"), ("code", commonest[1])],
              keys(o for o in of_patient(obs, glenn) if commonest in codes(o["code"]))),
        Query("two codes OR, counted", "/fhir/Observation", lambda s: [("code", f"{weight},{plan}"),
                                                                       ("_summary", "count")],
              count=sum(1 for o in obs if {(LOINC, weight), (LOINC, plan)} & codes(o["code"]))),
        Query("weights over 60 kg asked in grams", "/fhir/Observation",
              lambda s: [("value-quantity", f"gt60000|{UCUM}|g")],
              keys(o for o in obs if (in_grams(o) or 0) > 60000)),
        Query("heights under 1.7 m asked in metres", "/fhir/Observation",
              lambda s: [("value-quantity", f"lt1.7|{UCUM}|m")],
              keys(o for o in obs if in_metres(o) is not None and in_metres(o) < 1.7)),
        Query("encounters 2015 to 2017 (AND of dates)", "/fhir/Encounter",
              lambda s: [("date", "ge2015-01-01"), ("date", "lt2018-01-01"), ("_sort", "date")],
              {k for k, p in periods.items() if date_matches("ge", p, "2015-01-01")
               and date_matches("lt", p, "2018-01-01")}, order=lambda k: periods[k][0]),
        Query("encounters in 2016", "/fhir/Encounter", lambda s: [("date", "2016")],
              {k for k, p in periods.items() if date_matches("eq", p, "2016")}),
        Query("a patient's encounters, newest first", "/fhir/Encounter",
              lambda s: [("patient", s(key(glenn))), ("_sort", "-date")],
              keys(of_patient(encounters, glenn)), order=lambda k: periods[k][1], descending=True),
        Query("inpatient encounters", "/fhir/Encounter", lambda s: [("class", "IMP"), ("_sort", "date")],
              keys(e for e in encounters if e["class"]["code"] == "IMP"), order=lambda k: periods[k][0]),
        Query("active conditions", "/fhir/Condition", lambda s: [("clinical-status", "active")],
              keys(r for r in c.of("Condition") if ("http://terminology.hl7.org/CodeSystem/condition-clinical",
                                                       "active") in codes(r["clinicalStatus"]))),
        Query("conditions by SNOMED code", "/fhir/Condition", lambda s: [("code", "|".join(tb))],
              keys(r for r in c.of("Condition") if tb in codes(r["code"]))),
        Query("chained patient.name, counted", "/fhir/Observation",
              lambda s: [("patient.name", "parker"), ("_summary", "count")], count=len(of_patient(obs, glenn))),
        Query("chained subject:Patient.identifier", "/fhir/Observation",
              lambda s: [("subject:Patient.identifier", f"{SYNTHEA}|{bob['id']}")], keys(of_patient(obs, bob))),
        Query("_has an observation code", "/fhir/Patient",
              lambda s: [("_has:Observation:patient:code", plan), ("_sort", "birthdate")],
              {o["subject"]["reference"] for o in obs if (LOINC, plan) in codes(o["code"])}, order=birth.get),
        Query("_has an active condition", "/fhir/Patient",
              lambda s: [("_has:Condition:subject:clinical-status", "active")],
              {r["subject"]["reference"] for r in c.of("Condition")}),
        Query("_include the service providers", "/fhir/Encounter",
              lambda s: [("patient", s(key(emery))), ("_include", "Encounter:service-provider"), ("_count", "100")],
              keys(of_patient(encounters, emery)),
              included={ref(e, "serviceProvider") for e in of_patient(encounters, emery)}),
        Query("_revinclude a patient's encounters", "/fhir/Patient",
              lambda s: [("_id", s(key(bob))), ("_revinclude", "Encounter:patient")], {key(bob)},
              included=keys(of_patient(encounters, bob))),
        Query("_include:iterate encounter then participants", "/fhir/Observation",
              lambda s: [("patient", s(key(glenn))), ("code", weight), ("_include", "Observation:encounter"),
                         ("_include:iterate", "Encounter:participant")], keys(glenn_weights),
              included={ref(o, "encounter") for o in glenn_weights}
              | {p["individual"]["reference"] for o in glenn_weights
                 for p in c.resources[ref(o, "encounter")]["participant"]}),
        Query("roles by practitioner:identifier", "/fhir/PractitionerRole",
              lambda s: [("practitioner:identifier", f"{NPI}|{npi}")],
              keys(r for r in c.of("PractitionerRole") if r["practitioner"]["identifier"]["value"] == npi)),
        Query("locations by organization:identifier", "/fhir/Location",
              lambda s: [("organization:identifier", f"{SYNTHEA}|{provider_id}")],
              keys(r for r in c.of("Location")
                   if r.get("managingOrganization", {}).get("identifier", {}).get("value") == provider_id)),
        Query("CVX 140 before 2010", "/fhir/Immunization",
              lambda s: [("vaccine-code", f"{CVX}|140"), ("date", "lt2010-01-01")],
              keys(r for r in c.of("Immunization") if (CVX, "140") in codes(r["vaccineCode"])
                   and date_matches("lt", span(r["occurrenceDateTime"]), "2010-01-01"))),
        Query("encounters by profile, counted", "/fhir/Encounter",
              lambda s: [("_profile", US_CORE_ENCOUNTER), ("_summary", "count")],
              count=sum(1 for e in encounters if US_CORE_ENCOUNTER in e.get("meta", {}).get("profile", ()))),
        Query("claims with _total=accurate, paged", "/fhir/Claim",
              lambda s: [("patient", s(key(emery))), ("_count", "5"), ("_total", "accurate")],
              keys(of_patient(c.of("Claim"), emery, "patient")),
              count=len(of_patient(c.of("Claim"), emery, "patient"))),
        Query("reports by issued, newest first", "/fhir/DiagnosticReport",
              lambda s: [("patient", s(key(bob))), ("_sort", "-issued")],
              keys(of_patient(c.of("DiagnosticReport"), bob)), order=reports.get, descending=True),
        *[Query(f"all {t}, counted", f"/fhir/{t}", lambda s: [("_summary", "count")], count=n)
          for t, n in sorted(Counter(r["resourceType"] for r in c.resources.values()).items())],
    ]


# --- loading and running --------------------------------------------------------------------------

def load(client, data: Corpus) -> dict[str, Key]:
    """POST the batch, then each patient transaction; the server's "Type/id" → the bundles' key."""
    to_source: dict[str, Key] = {}
    for b in (data.batch, *data.transactions):
        r = client.post("/fhir", json=b)
        assert r.status_code == 200, r.text[:500]
        for sent, got in zip(b["entry"], r.json()["entry"], strict=True):
            assert got["response"]["status"] in ("201 Created", "200 OK"), got
            rtype, rid = got["response"]["location"].split("/")[:2]
            to_source[f"{rtype}/{rid}"] = key(sent["resource"])
    return to_source


@dataclass
class Answer:
    matches: list[Key]  # in the order returned, across every page
    included: list[Key]  # sorted
    total: int | None


def run(client, to_source: dict[str, Key], queries: list[Query]) -> dict[str, Answer]:
    to_server = {v: k.split("/", 1)[1] for k, v in to_source.items()}
    answers = {}
    for q in queries:
        r = client.get(q.path, params=q.params(to_server.__getitem__))
        assert r.status_code == 200, f"{q.name}: {r.text[:300]}"
        first = page = r.json()
        matches, included = [], []
        while True:
            for e in page.get("entry", []):
                rtype, rid = e["fullUrl"].rsplit("/", 2)[-2:]
                (matches if e["search"]["mode"] == "match" else included).append(to_source[f"{rtype}/{rid}"])
            link = next((lk["url"] for lk in page["link"] if lk["relation"] == "next"), None)
            if link is None:
                break
            page = client.get(link.replace("http://testserver", "")).json()
        answers[q.name] = Answer(matches, sorted(included), first.get("total"))
    return answers


def mismatches(queries: list[Query], answers: dict[str, Answer]) -> Iterator[str]:
    for q in queries:
        a = answers[q.name]
        if len(a.matches) != len(set(a.matches)):
            yield f"{q.name}: a match repeats across pages"
        if q.matches is not None and set(a.matches) != q.matches:
            yield (f"{q.name}: {len(a.matches)} matches, expected {len(q.matches)}; "
                   f"missing {sorted(q.matches - set(a.matches))[:3]}, extra {sorted(set(a.matches) - q.matches)[:3]}")
        if q.count is not None and a.total != q.count:
            yield f"{q.name}: total {a.total}, expected {q.count}"
        if q.included is not None and set(a.included) != q.included:
            yield f"{q.name}: included {a.included}, expected {sorted(q.included)}"
        if q.included is not None and len(a.included) != len(set(a.included)):
            yield f"{q.name}: an included resource repeats"
        if q.order is not None:
            values = [q.order(k) for k in a.matches]
            if values != sorted(values, reverse=q.descending):
                yield f"{q.name}: not in {'descending' if q.descending else 'ascending'} order"


# --- tests ----------------------------------------------------------------------------------------

def test_synthea_answers_match_the_bundles(fhir):
    data = corpus()
    queries = battery(data)
    assert all(q.matches or q.count for q in queries), "a query whose expected answer is empty proves little"
    answers = run(fhir, load(fhir, data), queries)
    wrong = list(mismatches(queries, answers))
    assert not wrong, "\n".join(wrong)


@pytest.mark.postgres
def test_sqlite_and_postgresql_give_identical_answers(sqlite_url, pg_url, var_dir):
    data = corpus()
    queries = battery(data)
    answers = {}
    for name, url in (("sqlite", sqlite_url), ("postgres", pg_url)):
        database = _database(url)
        _empty(database)
        settings = Settings(database_url=url, var_dir=var_dir, environment="development")
        try:
            with TestClient(create_app(settings, db=database)) as client:
                client.headers.update(steward_headers(client, settings))
                answers[name] = run(client, load(client, data), queries)
        finally:
            database.dispose()
    differ = [f"{q.name}:\n  sqlite   {answers['sqlite'][q.name]}\n  postgres {answers['postgres'][q.name]}"
              for q in queries if answers["sqlite"][q.name] != answers["postgres"][q.name]]
    assert not differ, "\n".join(differ)
