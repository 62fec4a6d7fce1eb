"""The demo data set of ``himhis seed-demo`` (himhis.demo.generate).

The default output is generated once per module and checked the way a FHIR server and a doctor
would: R4B validation, resolvable references, stable ids, consistent beds, plausible values.
"""

from __future__ import annotations

import csv
import itertools
import json
import re
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import date, datetime
from importlib import resources
from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class

from himhis import systems
from himhis.demo import generate

DEVANAGARI = re.compile(r"[\u0900-\u097F]")
FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
DEPARTMENTS = (
    "medicine",
    "surgery",
    "obgyn",
    "paediatrics",
    "orthopaedics",
    "ent",
    "ophthalmology",
    "psychiatry",
    "dermatology",
    "emergency",
)
LOGINS = {
    "doctor.igmc": ("igmc", "doctor"),
    "nurse.igmc": ("igmc", "nurse"),
    "doctor.rpgmc": ("rpgmc", "doctor"),
    "nurse.rpgmc": ("rpgmc", "nurse"),
}
VITAL_PROFILES = {
    "8867-4": "heartrate",
    "9279-1": "resprate",
    "8310-5": "bodytemp",
    "2708-6": "oxygensat",
    "85354-9": "bp",
    "29463-7": "bodyweight",
    "8302-2": "bodyheight",
}
VITAL_UNITS = {
    "8867-4": "/min",
    "9279-1": "/min",
    "8310-5": "Cel",
    "2708-6": "%",
    "29463-7": "kg",
    "8302-2": "cm",
}


def _data_csv(name: str) -> list[dict[str, str]]:
    with resources.files("himhis.demo.data").joinpath(name).open(encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _reference_time() -> datetime:
    with resources.files("himhis.demo.data").joinpath("parameters.json").open(encoding="utf-8") as handle:
        return datetime.fromisoformat(json.load(handle)["reference_datetime"])


def _references(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "reference" and isinstance(value, str):
                yield value
            else:
                yield from _references(value)
    elif isinstance(node, list):
        for item in node:
            yield from _references(item)


def _code(concept: dict[str, Any]) -> str:
    return concept["coding"][0]["code"]


@pytest.fixture(scope="module")
def bundles() -> list[dict[str, Any]]:
    return list(generate())


@pytest.fixture(scope="module")
def everything(bundles: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [entry["resource"] for bundle in bundles for entry in bundle["entry"]]


@pytest.fixture(scope="module")
def by_type(everything: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for resource in everything:
        grouped[resource["resourceType"]].append(resource)
    return grouped


@pytest.fixture(scope="module")
def index(everything: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {f"{r['resourceType']}/{r['id']}": r for r in everything}


# ------------------------------------------------------------------------------------ determinism


def test_same_seed_gives_the_same_bundles(bundles: list[dict[str, Any]]) -> None:
    assert json.dumps(list(generate())) == json.dumps(bundles)
    assert list(generate(seed=7, patients=40)) == list(generate(seed=7, patients=40))


def test_another_seed_gives_other_patients() -> None:
    def names(seed: int) -> list[str]:
        resources_ = [e["resource"] for b in generate(seed=seed, patients=30) for e in b["entry"]]
        return [r["name"][0]["text"] for r in resources_ if r["resourceType"] == "Patient"]

    assert names(1) != names(2)


def test_generation_is_fast() -> None:
    started = time.perf_counter()
    for _ in generate():
        pass
    assert time.perf_counter() - started < 5


# ------------------------------------------------------------------------------------- bundles


def test_bundles_are_transactions_of_puts_by_id(bundles: list[dict[str, Any]]) -> None:
    assert len(bundles) >= 2
    for bundle in bundles:
        assert bundle["resourceType"] == "Bundle"
        assert bundle["type"] == "transaction"
        assert 0 < len(bundle["entry"]) < 2000
        for entry in bundle["entry"]:
            resource = entry["resource"]
            url = f"{resource['resourceType']}/{resource['id']}"
            assert entry["request"] == {"method": "PUT", "url": url}
            assert entry["fullUrl"] == url


def test_first_bundle_is_infrastructure_then_about_25_patients_each(bundles: list[dict[str, Any]]) -> None:
    first = Counter(e["resource"]["resourceType"] for e in bundles[0]["entry"])
    assert set(first) == {"Organization", "Location", "Practitioner", "PractitionerRole"}
    for bundle in bundles[1:]:
        patients = [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient"]
        assert 1 <= len(patients) <= 25
        ids = {p["id"] for p in patients}
        for entry in bundle["entry"]:
            resource = entry["resource"]
            if resource["resourceType"] != "Patient":
                assert resource["subject"]["reference"].removeprefix("Patient/") in ids


def test_default_size(by_type: dict[str, list[dict[str, Any]]], everything: list[dict[str, Any]]) -> None:
    assert len(by_type["Patient"]) == 300
    assert 2000 <= len(by_type["Observation"]) <= 12000
    assert len(everything) <= 15000
    per_patient = Counter(e["subject"]["reference"] for e in by_type["Encounter"])
    assert len(per_patient) == 300
    assert set(per_patient.values()) <= {1, 2, 3, 4}


@pytest.mark.parametrize("count", [0, 1, 2, 60])
def test_patient_count_is_honoured_and_demo_patients_always_exist(count: int) -> None:
    patients = [
        e["resource"]
        for b in generate(patients=count)
        for e in b["entry"]
        if e["resource"]["resourceType"] == "Patient"
    ]
    assert len(patients) == max(count, 2)
    assert {"demo-patient-1", "demo-patient-2"} <= {p["id"] for p in patients}


# -------------------------------------------------------------------------------- validity


def test_every_resource_validates_with_r4b(everything: list[dict[str, Any]]) -> None:
    failures = []
    for resource in everything:
        try:
            get_fhir_model_class(resource["resourceType"]).model_validate(resource)
        except Exception as exc:  # collect them all for one readable failure
            failures.append(f"{resource['resourceType']}/{resource['id']}: {exc}")
    assert not failures, "\n".join(failures[:10])


def test_a_bundle_validates_as_a_whole(bundles: list[dict[str, Any]]) -> None:
    for bundle in (bundles[0], bundles[1]):
        get_fhir_model_class("Bundle").model_validate(bundle)


def test_ids_are_unique_and_valid(everything: list[dict[str, Any]]) -> None:
    keys = Counter(f"{r['resourceType']}/{r['id']}" for r in everything)
    assert [k for k, n in keys.items() if n > 1] == []
    assert all(FHIR_ID.fullmatch(r["id"]) for r in everything)


def test_every_reference_resolves(everything: list[dict[str, Any]], index: dict[str, Any]) -> None:
    references = [ref for resource in everything for ref in _references(resource)]
    assert references
    assert sorted({ref for ref in references if ref not in index}) == []


def test_everything_is_tagged_as_test_data(everything: list[dict[str, Any]]) -> None:
    for resource in everything:
        assert {"HTEST"} <= {tag["code"] for tag in resource["meta"]["tag"]}


# -------------------------------------------------------------------------- infrastructure


def test_facilities_departments_and_state(index: dict[str, Any], by_type: dict[str, Any]) -> None:
    expected = {
        "igmc": ("IGMC", "Indira Gandhi Medical College & Hospital, Shimla"),
        "rpgmc": ("RPGMC", "Dr. Rajendra Prasad Government Medical College, Tanda, Kangra"),
    }
    for fid, (code, name) in expected.items():
        org = index[f"Organization/{fid}"]
        assert org["identifier"] == [{"system": systems.FACILITY, "value": code}]
        assert org["name"] == name
        assert _code(org["type"][0]) == "prov"
        assert org["partOf"]["reference"] == "Organization/hp-health"
        assert org["address"][0]["state"] == "Himachal Pradesh" and org["telecom"]
        for department in DEPARTMENTS:
            dept = index[f"Organization/{fid}-{department}"]
            assert dept["partOf"]["reference"] == f"Organization/{fid}"


def test_locations_form_site_ward_bed_tree(by_type: dict[str, Any], index: dict[str, Any]) -> None:
    kinds: dict[str, Counter[str]] = defaultdict(Counter)
    for location in by_type["Location"]:
        kind = _code(location["physicalType"])
        facility = location["managingOrganization"]["reference"].removeprefix("Organization/")
        kinds[facility][kind] += 1
        parent = location.get("partOf", {}).get("reference")
        if kind == "si":
            assert parent is None
        elif kind == "wa":
            assert _code(index[parent]["physicalType"]) == "si"
        else:
            assert kind == "bd"
            assert _code(index[parent]["physicalType"]) == "wa"
            assert location["id"].startswith(parent.removeprefix("Location/") + "-bed-")
    for facility in ("igmc", "rpgmc"):
        assert kinds[facility]["si"] == 1
        assert 4 <= kinds[facility]["wa"] <= 6
        assert 10 * kinds[facility]["wa"] <= kinds[facility]["bd"] <= 20 * kinds[facility]["wa"]
    assert "Location/igmc-ward-med1-bed-01" in index


def test_bed_occupancy_matches_the_inpatients(by_type: dict[str, Any]) -> None:
    current: Counter[str] = Counter()
    stays: dict[str, list[tuple[datetime, datetime | None]]] = defaultdict(list)
    for encounter in by_type["Encounter"]:
        beds = [loc["location"]["reference"] for loc in encounter.get("location", [])]
        if encounter["class"]["code"] == "IMP":
            assert len(beds) == 1, encounter["id"]
            start = datetime.fromisoformat(encounter["period"]["start"])
            end = encounter["period"].get("end")
            stays[beds[0]].append((start, datetime.fromisoformat(end) if end else None))
        else:
            assert beds == []
        if encounter["status"] == "in-progress":
            assert encounter["class"]["code"] == "IMP"
            assert "end" not in encounter["period"]
            assert encounter["location"][0]["status"] == "active"
            current[beds[0]] += 1
    assert current, "some patients should be in bed now"
    assert max(current.values()) == 1
    for location in by_type["Location"]:
        if _code(location["physicalType"]) == "bd":
            expected = "O" if current[f"Location/{location['id']}"] else "U"
            assert location["operationalStatus"]["code"] == expected, location["id"]
            assert location["operationalStatus"]["system"] == "http://terminology.hl7.org/CodeSystem/v2-0116"
    for bed, periods in stays.items():
        periods.sort(key=lambda p: p[0])
        for (_, end), (next_start, _) in itertools.pairwise(periods):
            assert end is not None and end <= next_start, bed


def test_staff_logins_exist(by_type: dict[str, Any], index: dict[str, Any]) -> None:
    practitioners = {
        ident["value"]: p
        for p in by_type["Practitioner"]
        for ident in p.get("identifier", [])
        if ident["system"] == systems.USERNAME
    }
    assert set(practitioners) == set(LOGINS)
    roles = {r["practitioner"]["reference"]: r for r in by_type["PractitionerRole"]}
    for login, (facility, role) in LOGINS.items():
        practitioner = practitioners[login]
        assert practitioner["id"] == f"pr-{login.replace('.', '-')}"
        assert DEVANAGARI.search(practitioner["name"][1]["text"])
        practitioner_role = roles[f"Practitioner/{practitioner['id']}"]
        assert practitioner_role["organization"]["reference"] == f"Organization/{facility}"
        coding = practitioner_role["code"][0]["coding"][0]
        assert coding == {
            "system": "http://terminology.hl7.org/CodeSystem/practitioner-role",
            "code": role,
            "display": role.title(),
        }
    assert 10 <= len(by_type["Practitioner"]) - len(LOGINS) <= 20
    assert len(by_type["PractitionerRole"]) == len(by_type["Practitioner"])


# ---------------------------------------------------------------------------------- patients


def test_demo_patients_are_at_their_facilities(index: dict[str, Any]) -> None:
    for pid, facility, prefix in (("demo-patient-1", "igmc", "IGMC-"), ("demo-patient-2", "rpgmc", "RPGMC-")):
        patient = index[f"Patient/{pid}"]
        assert patient["managingOrganization"]["reference"] == f"Organization/{facility}"
        uhid = next(i for i in patient["identifier"] if i["system"] == systems.UHID)
        assert uhid["value"].startswith(prefix)
        assert uhid["assigner"]["reference"] == f"Organization/{facility}"
    # The names of the demo logins (identity/data/demo-users.json).
    assert index["Patient/demo-patient-1"]["name"][0]["text"] == "Ramesh Kumar"
    assert index["Patient/demo-patient-2"]["name"][0]["text"] == "Kamla Devi"


def test_no_aadhaar_like_number_anywhere(bundles: list[dict[str, Any]]) -> None:
    text = json.dumps(bundles, ensure_ascii=False)
    assert re.findall(r"(?<!\d)\d{12}(?!\d)", text) == []
    assert re.findall(r"(?<![\d-])\d{4}[ -]\d{4}[ -]\d{4}(?![\d-])", text) == []
    assert "aadhaar" not in text.lower()


def test_names_in_latin_and_devanagari(by_type: dict[str, Any]) -> None:
    pairs = {row["latin"]: row["devanagari"] for row in _data_csv("surnames.csv")}
    given = {row["latin"]: row["devanagari"] for row in _data_csv("given_names.csv")}
    for patient in by_type["Patient"]:
        latin, hindi = patient["name"]
        assert latin["use"] == hindi["use"] == "official"
        assert not DEVANAGARI.search(latin["text"])
        assert latin["text"] == " ".join([*latin["given"], latin["family"]])
        assert hindi["extension"] == [
            {"url": "http://hl7.org/fhir/StructureDefinition/language", "valueCode": "hi"}
        ]
        assert hindi["family"] == pairs[latin["family"]]
        assert " ".join(hindi["given"]) == given[" ".join(latin["given"])]
        assert hindi["text"] == f"{' '.join(hindi['given'])} {hindi['family']}"
    families = Counter(p["name"][0]["family"] for p in by_type["Patient"])
    assert {"Thakur", "Sharma", "Negi"} <= set(families)
    assert pairs["Thakur"] == "ठाकुर" and pairs["Chauhan"] == "चौहान" and pairs["Rana"] == "राणा"


def test_patient_demographics(by_type: dict[str, Any]) -> None:
    now = _reference_time()
    ages = []
    for patient in by_type["Patient"]:
        assert patient["gender"] in ("male", "female")
        birth = date.fromisoformat(patient["birthDate"])
        ages.append((now.date() - birth).days / 365.25)
        relative = [e for e in patient["extension"] if e["url"] == systems.EXT_RELATIVE_NAME]
        assert len(relative) == 1 and relative[0]["valueString"].strip()
        (phone,) = patient["telecom"]
        assert phone["use"] == "mobile" and re.fullmatch(r"\+91 [6-9]\d{9}", phone["value"])
        assert patient["managingOrganization"]["reference"] in ("Organization/igmc", "Organization/rpgmc")
    assert min(ages) < 5 and max(ages) > 75 and max(ages) <= 91


def test_addresses_are_real_places_of_their_district(by_type: dict[str, Any]) -> None:
    places = {(row["place"], row["district"]): row for row in _data_csv("places.csv")}
    districts = {row["district"] for row in _data_csv("districts.csv")}
    assert len(districts) == 12
    for patient in by_type["Patient"]:
        (address,) = patient["address"]
        assert address["state"] == "Himachal Pradesh" and address["country"] == "IN"
        place = places[(address["city"], address["district"])]
        assert address["line"][1] == f"Tehsil {place['tehsil']}"
        assert place["place"] in address["line"][0]
        assert address["postalCode"] == place["pin"]
        assert re.fullmatch(r"17[1-7]\d{3}", address["postalCode"])


def test_patients_come_from_their_hospitals_catchment(by_type: dict[str, Any]) -> None:
    at = Counter(
        (p["address"][0]["district"], p["managingOrganization"]["reference"].removeprefix("Organization/"))
        for p in by_type["Patient"]
    )
    assert at[("Shimla", "igmc")] > 0 and at[("Shimla", "rpgmc")] == 0
    lower = ("Kangra", "Hamirpur", "Chamba", "Una")
    to_rpgmc = sum(at[(d, "rpgmc")] for d in lower)
    assert to_rpgmc / sum(at[(d, f)] for d in lower for f in ("igmc", "rpgmc")) >= 0.9


def test_identifiers(by_type: dict[str, Any]) -> None:
    patterns = {
        systems.UHID: r"(IGMC|RPGMC)-20(2[4-6])-\d{6}",
        systems.ABHA: r"\d{2}-\d{4}-\d{4}-\d{4}",
        systems.HIMPARIVAR: r"HP-[A-Z]{3}-\d{8}",
        systems.HIMCARE: r"HC-20\d{2}-\d{7}",
    }
    seen: Counter[str] = Counter()
    uhids = set()
    for patient in by_type["Patient"]:
        for identifier in patient["identifier"]:
            assert re.fullmatch(patterns[identifier["system"]], identifier["value"]), identifier
            seen[identifier["system"]] += 1
            if identifier["system"] == systems.UHID:
                assert identifier["type"]["text"] == "UHID"
                assert identifier["assigner"]["display"]
                uhids.add(identifier["value"])
    total = len(by_type["Patient"])
    assert seen[systems.UHID] == total == len(uhids)
    assert 0.3 <= seen[systems.ABHA] / total <= 0.5
    assert 0.6 <= seen[systems.HIMPARIVAR] / total <= 0.8
    assert 0.2 <= seen[systems.HIMCARE] / total <= 0.4


# -------------------------------------------------------------------------------- encounters


def test_encounters_are_in_the_two_years_before_the_reference_date(
    by_type: dict[str, Any], index: dict[str, Any]
) -> None:
    now = _reference_time()
    for encounter in by_type["Encounter"]:
        start = datetime.fromisoformat(encounter["period"]["start"])
        assert (now - start).days <= 731
        assert start < now
        birth = date.fromisoformat(index[encounter["subject"]["reference"]]["birthDate"])
        assert start.date() >= birth
        if encounter["status"] == "finished":
            assert start < datetime.fromisoformat(encounter["period"]["end"]) <= now
        assert (
            encounter["serviceProvider"]["reference"]
            == index[encounter["subject"]["reference"]]["managingOrganization"]["reference"]
        )
        assert encounter["reasonCode"][0]["coding"][0]["system"] == "http://hl7.org/fhir/sid/icd-10"
        assert encounter["diagnosis"]
    classes = Counter(e["class"]["code"] for e in by_type["Encounter"])
    assert classes["AMB"] > classes["IMP"] > 0 and classes["EMER"] > 0


def test_inpatient_stays_have_hospitalization(by_type: dict[str, Any]) -> None:
    for encounter in by_type["Encounter"]:
        if encounter["class"]["code"] == "IMP":
            hospitalization = encounter["hospitalization"]
            assert hospitalization["admitSource"]
            assert ("dischargeDisposition" in hospitalization) == (encounter["status"] == "finished")


# ------------------------------------------------------------------------------ observations


def test_vital_signs_follow_the_fhir_profiles(by_type: dict[str, Any]) -> None:
    vitals = [o for o in by_type["Observation"] if _code(o["category"][0]) == "vital-signs"]
    assert vitals
    for observation in vitals:
        code = _code(observation["code"])
        assert observation["meta"]["profile"] == [
            f"http://hl7.org/fhir/StructureDefinition/{VITAL_PROFILES[code]}"
        ]
        assert observation["status"] == "final" and observation["effectiveDateTime"]
        if code == "85354-9":
            assert "valueQuantity" not in observation
            parts = {_code(c["code"]): c["valueQuantity"] for c in observation["component"]}
            assert set(parts) == {"8480-6", "8462-4"}
            assert all(
                q["code"] == "mm[Hg]" and q["system"] == "http://unitsofmeasure.org" for q in parts.values()
            )
            assert parts["8480-6"]["value"] > parts["8462-4"]["value"]
        else:
            quantity = observation["valueQuantity"]
            assert quantity["system"] == "http://unitsofmeasure.org"
            assert quantity["code"] == VITAL_UNITS[code]
    spo2 = next(o for o in vitals if _code(o["code"]) == "2708-6")
    assert [c["code"] for c in spo2["code"]["coding"]] == ["2708-6", "59408-5"]


def test_lab_interpretation_matches_reference_range(by_type: dict[str, Any]) -> None:
    labs = [o for o in by_type["Observation"] if _code(o["category"][0]) == "laboratory"]
    assert len(labs) > 300
    flags: Counter[str] = Counter()
    for observation in labs:
        value = observation["valueQuantity"]["value"]
        (reference,) = observation["referenceRange"]
        low, high = reference["low"]["value"], reference["high"]["value"]
        coding = observation["interpretation"][0]["coding"][0]
        assert coding["system"] == "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
        expected = "L" if value < low else "H" if value > high else "N"
        assert coding["code"] == expected, observation["id"]
        assert observation["valueQuantity"]["system"] == "http://unitsofmeasure.org"
        assert datetime.fromisoformat(observation["issued"]) > datetime.fromisoformat(
            observation["effectiveDateTime"]
        )
        flags[expected] += 1
    assert flags["N"] > flags["H"] > 0 and flags["L"] > 0


def test_values_fit_the_diagnosis(by_type: dict[str, Any]) -> None:
    diabetics = {c["subject"]["reference"] for c in by_type["Condition"] if _code(c["code"]) == "E11.9"}
    glucose: dict[bool, list[float]] = defaultdict(list)
    for observation in by_type["Observation"]:
        if _code(observation["code"]) == "1558-6":
            glucose[observation["subject"]["reference"] in diabetics].append(
                observation["valueQuantity"]["value"]
            )
    assert glucose[True] and sum(glucose[True]) / len(glucose[True]) > 126
    if glucose[False]:
        assert sum(glucose[False]) / len(glucose[False]) < sum(glucose[True]) / len(glucose[True])


def test_observations_before_the_reference_date(by_type: dict[str, Any], index: dict[str, Any]) -> None:
    now = _reference_time()
    for observation in by_type["Observation"]:
        taken = datetime.fromisoformat(observation["effectiveDateTime"])
        encounter = index[observation["encounter"]["reference"]]
        assert datetime.fromisoformat(encounter["period"]["start"]) <= taken < now
        assert observation["subject"] == encounter["subject"]
