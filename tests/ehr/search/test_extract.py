"""Write-time extraction of search values, on handmade resources and on the Synthea corpus."""

from __future__ import annotations

import copy
import json
from collections import Counter
from dataclasses import replace
from datetime import datetime
from decimal import Decimal
from typing import Any

import fhirpathpy
import pytest
from fhirpathpy.models import models

from ehr.search import (
    DateValue,
    IndexValue,
    NumberValue,
    QuantityValue,
    ReferenceValue,
    StringValue,
    TokenValue,
    UriValue,
    extract,
    normalize_string,
    params_for,
    parse_fhir_date,
    parse_reference,
)
from ehr.search.plan import plan_for

MIN, MAX = datetime(1, 1, 1), datetime(9999, 12, 31, 23, 59, 59, 999999)
UCUM = "http://unitsofmeasure.org"

PATIENT: dict[str, Any] = {
    "resourceType": "Patient",
    "id": "p1",
    "meta": {
        "lastUpdated": "2026-11-24T10:00:00Z",
        "tag": [{"system": "https://himhis.example/tags", "code": "imported"}],
        "profile": ["https://himhis.example/StructureDefinition/patient"],
        "security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}],
        "source": "https://himhis.example/source#igmc",
    },
    "identifier": [{"system": "https://himhis.example/mrn", "value": "IGMC-1", "type": {"text": "MRN"}}],
    "active": True,
    "name": [
        {"family": "Kāṅgṛā", "given": ["Asha", "Devi"], "prefix": ["Smt."]},
        {"text": "शिमला", "family": "Kāṅgṛā"},
    ],
    "telecom": [
        {"system": "phone", "value": "+91 94180 00000", "use": "mobile"},
        {"system": "email", "value": "asha@example.in"},
    ],
    "gender": "female",
    "birthDate": "1980-05",
    "address": [
        {
            "line": ["Ward 4", "Ridge Road"],
            "city": "Shimla",
            "district": "Shimla",
            "state": "HP",
            "postalCode": "171001",
        }
    ],
    "generalPractitioner": [
        {"reference": "https://fhir.example.org/fhir/Practitioner/9"},
        {"identifier": {"system": "https://nmc.org.in", "value": "NMC-77"}, "display": "Dr Negi"},
    ],
    "managingOrganization": {"reference": "Organization/igmc/_history/3"},
    "link": [
        {
            "other": {"reference": "urn:uuid:5f1e8a5c-0d7e-4c4b-9a5e-0c8d5f3b1a20", "type": "Patient"},
            "type": "seealso",
        }
    ],
}


def observation(value: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": "o1",
        "status": "final",
        "code": {
            "coding": [{"system": "http://loinc.org", "code": "2345-7", "display": "Glucose"}],
            "text": "Glucose",
        },
        "subject": {"reference": "Patient/p1"},
        "effectivePeriod": {"start": "2026-11-24T08:00:00+05:30"},
        "issued": "2026-11-24T09:15:30.250+05:30",
        "valueQuantity": value,
        **extra,
    }


def of(values: list[IndexValue], param: str) -> list[IndexValue]:
    return [v for v in values if v.param == param]


def test_patient_strings_are_case_and_accent_insensitive_and_keep_devanagari() -> None:
    values = extract(PATIENT)
    assert StringValue("family", "kangra", "Kāṅgṛā") in values
    assert of(values, "family") == [StringValue("family", "kangra", "Kāṅgṛā")]  # deduplicated
    assert normalize_string("KANGRA") == "kangra" and "kangra valley".startswith(normalize_string("Kāṅgṛā"))
    assert StringValue("given", "asha", "Asha") in values and StringValue("name", "smt.", "Smt.") in values
    shimla = StringValue("name", "शिमला", "शिमला")
    assert shimla in values
    assert "\u093f" in shimla.normalized and "\u093e" in shimla.normalized  # vowel signs ि and ा survive
    assert {v.exact for v in of(values, "address")} == {"Ward 4", "Ridge Road", "Shimla", "HP", "171001"}
    assert of(values, "address-city") == [StringValue("address-city", "shimla", "Shimla")]


def test_patient_tokens_dates_and_meta() -> None:
    values = extract(PATIENT)
    assert of(values, "identifier") == [
        TokenValue("identifier", "https://himhis.example/mrn", "IGMC-1", "MRN")
    ]
    assert of(values, "phone") == [TokenValue("phone", "phone", "+91 94180 00000", None)]
    assert of(values, "email") == [TokenValue("email", "email", "asha@example.in", None)]
    assert len(of(values, "telecom")) == 2
    assert of(values, "gender") == [TokenValue("gender", None, "female", None)]
    assert of(values, "active") == [TokenValue("active", None, "true", None)]
    assert of(values, "deceased") == [TokenValue("deceased", None, "false", None)]
    assert of(values, "birthdate") == [
        DateValue("birthdate", datetime(1980, 5, 1), datetime(1980, 5, 31, 23, 59, 59, 999999))
    ]
    assert of(values, "_tag") == [TokenValue("_tag", "https://himhis.example/tags", "imported", None)]
    assert of(values, "_security")[0].code == "R"
    assert of(values, "_profile") == [
        UriValue("_profile", "https://himhis.example/StructureDefinition/patient")
    ]
    assert of(values, "_source") == [UriValue("_source", "https://himhis.example/source#igmc")]
    assert not of(values, "_id") and not of(values, "_lastUpdated")
    assert len(values) == len(set(values))


def test_patient_references() -> None:
    values = extract(PATIENT)
    assert of(values, "general-practitioner") == [
        ReferenceValue(
            "general-practitioner", "Practitioner", None, "https://fhir.example.org/fhir/Practitioner/9"
        )
    ]
    assert of(values, "general-practitioner:identifier") == [
        TokenValue("general-practitioner:identifier", "https://nmc.org.in", "NMC-77", None)
    ]
    assert of(values, "organization") == [
        ReferenceValue("organization", "Organization", "igmc", "Organization/igmc/_history/3")
    ]
    assert of(values, "link") == [
        ReferenceValue("link", "Patient", None, "urn:uuid:5f1e8a5c-0d7e-4c4b-9a5e-0c8d5f3b1a20")
    ]


def test_quantities_in_mass_concentration_share_a_canonical_value() -> None:
    mg_dl = extract(observation({"value": 180, "unit": "mg/dL", "system": UCUM, "code": "mg/dL"}))
    g_l = extract(observation({"value": 1.8, "unit": "g/L", "system": UCUM, "code": "g/L"}))
    (a,) = of(mg_dl, "value-quantity")
    (b,) = of(g_l, "value-quantity")
    assert a == QuantityValue("value-quantity", Decimal(180), UCUM, "mg/dL", "mg/dL", Decimal("1.80"), "g/L")
    assert (
        (a.canonical_value, a.canonical_code)
        == (b.canonical_value, b.canonical_code)
        == (Decimal("1.8"), "g/L")
    )
    assert of(g_l, "combo-value-quantity") == [replace(b, param="combo-value-quantity")]


def test_quantity_without_ucum_or_known_unit_has_no_canonical_form() -> None:
    (q,) = of(extract(observation({"value": 37, "unit": "C", "system": UCUM, "code": "C"})), "value-quantity")
    assert (q.canonical_value, q.canonical_code) == (None, None)
    (f,) = of(extract(observation({"value": 98.6, "system": UCUM, "code": "[degF]"})), "value-quantity")
    assert f.canonical_code == "Cel" and round(f.canonical_value, 6) == Decimal("37")


def test_observation_dates_references_and_components() -> None:
    blood_pressure = observation(
        {"value": 1},
        component=[
            {
                "code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
                "valueQuantity": {"value": 120, "system": UCUM, "code": "mm[Hg]"},
            },
            {"code": {"text": "diastolic"}, "valueQuantity": {"value": 80, "system": UCUM, "code": "mm[Hg]"}},
        ],
    )
    values = extract(blood_pressure)
    assert of(values, "date") == [DateValue("date", datetime(2026, 11, 24, 2, 30), MAX)]
    assert of(values, "patient") == [ReferenceValue("patient", "Patient", "p1", "Patient/p1")]
    assert of(values, "subject") == [ReferenceValue("subject", "Patient", "p1", "Patient/p1")]
    assert of(values, "code") == [TokenValue("code", "http://loinc.org", "2345-7", "Glucose")]
    assert TokenValue("component-code", None, None, "diastolic") in values
    pressures = of(values, "component-value-quantity")
    assert [q.canonical_value for q in pressures] == [Decimal("15998.640"), Decimal("10665.760")]
    assert {q.canonical_code for q in pressures} == {"Pa"}


def test_reference_restriction_uses_the_target_type() -> None:
    """`patient` keeps Patient targets however written; `subject` keeps every target."""
    group = extract(observation({"value": 1}, subject={"reference": "Group/g1"}))
    assert of(group, "patient") == [] and of(group, "subject") == [
        ReferenceValue("subject", "Group", "g1", "Group/g1")
    ]
    absolute = extract(
        observation({"value": 1}, subject={"reference": "https://other.example/fhir/Patient/5"})
    )
    assert of(absolute, "patient") == [
        ReferenceValue("patient", "Patient", None, "https://other.example/fhir/Patient/5")
    ]
    typed = extract(observation({"value": 1}, subject={"reference": "urn:uuid:1b2c", "type": "Patient"}))
    assert of(typed, "patient") == [ReferenceValue("patient", "Patient", None, "urn:uuid:1b2c")]
    untyped = extract(observation({"value": 1}, subject={"reference": "urn:uuid:1b2c"}))
    assert of(untyped, "patient") == [] and of(untyped, "subject") == [
        ReferenceValue("subject", None, None, "urn:uuid:1b2c")
    ]
    contained = extract(observation({"value": 1}, subject={"reference": "#p"}))
    assert of(contained, "subject") == []


def test_encounter_period_coding_and_duration() -> None:
    encounter = {
        "resourceType": "Encounter",
        "status": "in-progress",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
        "type": [{"text": "Admission to ward"}],
        "subject": {"reference": "Patient/p1"},
        "participant": [
            {"individual": {"reference": "Practitioner/d1"}},
            {"individual": {"reference": "RelatedPerson/r1"}},
        ],
        "period": {"start": "2026-11-20T22:00:00+05:30"},
        "length": {"value": 90, "system": UCUM, "code": "min"},
        "location": [{"location": {"reference": "Location/ward-4"}, "period": {"end": "2026-11-22"}}],
    }
    values = extract(encounter)
    assert of(values, "date") == [DateValue("date", datetime(2026, 11, 20, 16, 30), MAX)]
    assert of(values, "location-period") == [
        DateValue("location-period", MIN, datetime(2026, 11, 22, 23, 59, 59, 999999))
    ]
    assert of(values, "class") == [
        TokenValue("class", "http://terminology.hl7.org/CodeSystem/v3-ActCode", "IMP", None)
    ]
    assert of(values, "type") == [TokenValue("type", None, None, "Admission to ward")]
    assert of(values, "practitioner") == [
        ReferenceValue("practitioner", "Practitioner", "d1", "Practitioner/d1")
    ]
    assert len(of(values, "participant")) == 2
    assert of(values, "length") == [
        QuantityValue("length", Decimal(90), UCUM, "min", None, Decimal(5400), "s")
    ]
    assert of(values, "location") == [ReferenceValue("location", "Location", "ward-4", "Location/ward-4")]


def test_timing_money_range_number_uri_and_canonical() -> None:
    care_plan = {
        "resourceType": "CarePlan",
        "activity": [
            {
                "detail": {
                    "scheduledTiming": {
                        "event": ["2026-01-02"],
                        "repeat": {"boundsPeriod": {"start": "2026-01-01"}},
                    }
                }
            }
        ],
    }
    assert of(extract(care_plan), "activity-date") == [
        DateValue("activity-date", datetime(2026, 1, 2), datetime(2026, 1, 2, 23, 59, 59, 999999)),
        DateValue("activity-date", datetime(2026, 1, 1), MAX),
    ]
    charge = {"resourceType": "ChargeItem", "priceOverride": {"value": 250.5, "currency": "INR"}}
    assert of(extract(charge), "price-override") == [
        QuantityValue(
            "price-override", Decimal("250.5"), "urn:iso:std:iso:4217", "INR", None, Decimal("250.5"), "INR"
        )
    ]
    condition = {
        "resourceType": "Condition",
        "onsetRange": {"low": {"value": 2, "system": UCUM, "code": "a"}},
    }
    assert of(extract(condition), "onset-age") == [
        QuantityValue("onset-age", Decimal(2), UCUM, "a", None, Decimal(63115200), "s")
    ]
    risk = {"resourceType": "RiskAssessment", "prediction": [{"probabilityDecimal": 0.1}]}
    assert of(extract(risk), "probability") == [NumberValue("probability", Decimal("0.1"))]
    value_set = {
        "resourceType": "ValueSet",
        "url": "https://himhis.example/ValueSet/wards",
        "status": "active",
    }
    assert of(extract(value_set), "url") == [UriValue("url", "https://himhis.example/ValueSet/wards")]
    response = {
        "resourceType": "QuestionnaireResponse",
        "status": "completed",
        "questionnaire": "https://himhis.example/Questionnaire/triage|2",
    }
    assert of(extract(response), "questionnaire") == [
        ReferenceValue("questionnaire", None, None, "https://himhis.example/Questionnaire/triage|2")
    ]


@pytest.mark.parametrize(
    "deceased",
    [{}, {"deceasedBoolean": False}, {"deceasedBoolean": True}, {"deceasedDateTime": "2026-02-01"}],
)
def test_deceased_compiled_form_agrees_with_fhirpathpy(deceased: dict[str, Any]) -> None:
    patient = {"resourceType": "Patient", **deceased}
    param = params_for("Patient")["deceased"]
    expected = fhirpathpy.evaluate(patient, param.expression, model=models["r4"])
    assert [value for value, _ in plan_for("Patient", "deceased")(patient)] == expected
    assert of(extract(patient), "deceased") == [
        TokenValue("deceased", None, "true" if expected[0] else "false", None)
    ]


def test_expression_outside_the_fast_path_runs_in_fhirpathpy_and_is_typed_by_shape() -> None:
    """R4's DeviceDefinition-classification names an element the R4 model lacks; fhirpathpy still finds it."""
    assert not plan_for("DeviceDefinition", "classification").fast
    device = {
        "resourceType": "DeviceDefinition",
        "classification": [{"type": {"coding": [{"system": "http://snomed.info/sct", "code": "14106009"}]}}],
    }
    before = copy.deepcopy(device)
    assert of(extract(device), "classification") == [
        TokenValue("classification", "http://snomed.info/sct", "14106009", None)
    ]
    assert device == before  # neither path writes into the stored resource


@pytest.mark.parametrize(
    ("value", "low", "high"),
    [
        ("2026", datetime(2026, 1, 1), datetime(2026, 12, 31, 23, 59, 59, 999999)),
        ("2026-11", datetime(2026, 11, 1), datetime(2026, 11, 30, 23, 59, 59, 999999)),
        ("2024-02", datetime(2024, 2, 1), datetime(2024, 2, 29, 23, 59, 59, 999999)),
        ("2026-11-24", datetime(2026, 11, 24), datetime(2026, 11, 24, 23, 59, 59, 999999)),
        (
            "2026-11-24T10:15:30Z",
            datetime(2026, 11, 24, 10, 15, 30),
            datetime(2026, 11, 24, 10, 15, 30, 999999),
        ),
        (
            "2026-11-24T10:15:30",
            datetime(2026, 11, 24, 10, 15, 30),
            datetime(2026, 11, 24, 10, 15, 30, 999999),
        ),
        (
            "2026-11-24T10:15:30+05:30",
            datetime(2026, 11, 24, 4, 45, 30),
            datetime(2026, 11, 24, 4, 45, 30, 999999),
        ),
        (
            "2026-01-01T02:00:00+05:30",
            datetime(2025, 12, 31, 20, 30),
            datetime(2025, 12, 31, 20, 30, 0, 999999),
        ),
        (
            "2026-11-24T10:15:30.25-03:00",
            datetime(2026, 11, 24, 13, 15, 30, 250000),
            datetime(2026, 11, 24, 13, 15, 30, 259999),
        ),
        ("2026-11-24T10:15", datetime(2026, 11, 24, 10, 15), datetime(2026, 11, 24, 10, 15, 59, 999999)),
    ],
)
def test_date_precision_ranges(value: str, low: datetime, high: datetime) -> None:
    assert parse_fhir_date(value) == (low, high)


@pytest.mark.parametrize(
    "value",
    ["", "26", "2026-13", "2026-02-30", "2026-11-24T24:00:00Z", "2026/11/24", "2026-11-24T10:00:00+15:00"],
)
def test_malformed_date_raises(value: str) -> None:
    with pytest.raises(ValueError, match="invalid FHIR date"):
        parse_fhir_date(value)


def test_malformed_value_in_a_resource_names_the_parameter() -> None:
    with pytest.raises(ValueError, match=r"Patient\.birthdate: invalid FHIR date '1980-02-31'"):
        extract({"resourceType": "Patient", "birthDate": "1980-02-31"})
    with pytest.raises(ValueError, match="not a FHIR R4 resource type"):
        extract({"resourceType": "Patientt"})


def test_normalize_string() -> None:
    assert normalize_string("  Kāṅgṛā   Valley ") == "kangra valley"
    assert normalize_string("MÜLLER Straße") == "muller strasse"
    assert normalize_string("Ἀθῆναι") == "αθηναι"
    assert normalize_string("Йошкар-Ола") == "иошкар-ола"
    assert normalize_string("हिमाचल प्रदेश") == "हिमाचल प्रदेश"  # matras, virama, anusvara kept
    assert normalize_string("क़") == "\u0915\u093c"  # nukta kept (NFKD splits the precomposed letter)


def test_parse_reference() -> None:
    assert parse_reference("Patient/1") == ("Patient", "1")
    assert parse_reference("Patient/1/_history/2") == ("Patient", "1")
    assert parse_reference("https://h.example/fhir/Patient/1") == ("Patient", "1")
    for url in ("urn:uuid:1b2c", "#p", "Patient?identifier=a|b", "Foo/1", "https://h.example/x"):
        assert parse_reference(url) == (None, None)


def test_synthea_corpus_extracts(synthea_resources: list[dict[str, Any]]) -> None:
    per_type: Counter[str] = Counter()
    for resource in synthea_resources:
        values = extract(resource)
        assert values, resource["resourceType"]
        per_type[resource["resourceType"]] += len(values)
    assert {"Patient", "Encounter", "Observation", "Condition", "Immunization"} <= per_type.keys()
    patient = next(r for r in synthea_resources if r["resourceType"] == "Patient")
    encounters = [r for r in synthea_resources if r["resourceType"] == "Encounter"]
    assert ReferenceValue("patient", "Patient", patient["id"], f"Patient/{patient['id']}") in {
        v for e in encounters for v in extract(e)
    }


def _canonical(value: Any) -> str:
    """A raw value as comparable JSON (fhirpathpy returns numbers as Decimal, the dict holds floats)."""

    def plain(x: Any) -> Any:
        if isinstance(x, int | float | Decimal) and not isinstance(x, bool):
            return str(Decimal(str(x)).normalize())
        if isinstance(x, dict):
            return {k: plain(v) for k, v in x.items()}
        if isinstance(x, list):
            return [plain(v) for v in x]
        return x

    return json.dumps(plain(value), sort_keys=True, ensure_ascii=False)


@pytest.mark.slow
def test_fast_path_agrees_with_fhirpathpy_on_synthea(synthea_resources: list[dict[str, Any]]) -> None:
    """For every parameter of every resource type present, the raw values (before typing) are equal."""
    compiled: dict[tuple[str, str], Any] = {}
    checked, disagreements = Counter[str](), []
    for resource in synthea_resources:
        resource_type = resource["resourceType"]
        for code, param in params_for(resource_type).items():
            plan = plan_for(resource_type, code)
            if plan is None or param.type == "composite":
                continue
            key = (resource_type, code)
            if key not in compiled:
                compiled[key] = fhirpathpy.compile(param.expression, models["r4"])
            fast = {_canonical(value) for value, _ in plan(resource)}
            reference = {_canonical(value) for value in compiled[key](resource)}
            checked[resource_type] += 1
            if fast != reference:
                disagreements.append(
                    (resource_type, code, resource.get("id"), sorted(fast), sorted(reference))
                )
    assert not disagreements, disagreements[:5]
    assert sum(checked.values()) > 100_000
