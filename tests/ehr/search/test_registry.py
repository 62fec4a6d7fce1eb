"""The search parameter registry built from the official FHIR 4.0.1 definitions."""

from __future__ import annotations

import pytest

from ehr.search.plan import plan_for
from ehr.search.registry import (
    get_param,
    params_for,
    patient_compartment_params,
    resource_types,
    rewrite,
    split_union,
)


def test_split_union_only_at_top_level() -> None:
    expression = (
        "A.code | (B.medication as CodeableConcept) | C.x.where(system='a|b') "
        "| D.y.where(resolve() is Patient) | (E.value as CodeableConcept).text"
    )
    assert split_union(expression) == [
        "A.code",
        "(B.medication as CodeableConcept)",
        "C.x.where(system='a|b')",
        "D.y.where(resolve() is Patient)",
        "(E.value as CodeableConcept).text",
    ]


def test_rewrite_makes_parts_evaluable() -> None:
    assert rewrite("Observation.subject.where(resolve() is Patient)") == (
        "Observation.subject.where(reference.startsWith('Patient/'))",
        ("Patient",),
    )
    assert rewrite("(Observation.value as CodeableConcept).text") == (
        "Observation.value.ofType(CodeableConcept).text",
        (),
    )
    assert rewrite("Condition.onset.as(Age)") == ("Condition.onset.ofType(Age)", ())


@pytest.mark.parametrize(
    ("resource_type", "expression"),
    [
        ("Condition", "Condition.code"),
        ("AllergyIntolerance", "AllergyIntolerance.code | AllergyIntolerance.reaction.substance"),
        ("MedicationRequest", "MedicationRequest.medication.ofType(CodeableConcept)"),
        ("Observation", "Observation.code"),
    ],
)
def test_shared_code_is_split_per_type(resource_type: str, expression: str) -> None:
    param = get_param(resource_type, "code")
    assert param is not None
    assert (param.type, param.expression) == ("token", expression)
    assert param.url == "http://hl7.org/fhir/SearchParameter/clinical-code"


def test_shared_patient_keeps_its_target_restriction() -> None:
    observation = get_param("Observation", "patient")
    assert observation is not None
    assert observation.expression == "Observation.subject.where(reference.startsWith('Patient/'))"
    assert observation.restricted_to == ("Patient",)
    assert observation.targets == ("Patient",)
    allergy = get_param("AllergyIntolerance", "patient")
    assert allergy is not None
    assert (allergy.expression, allergy.restricted_to) == ("AllergyIntolerance.patient", ())
    audit = get_param("AuditEvent", "patient")
    assert audit is not None
    assert audit.expression == (
        "AuditEvent.agent.who.where(reference.startsWith('Patient/'))"
        " | AuditEvent.entity.what.where(reference.startsWith('Patient/'))"
    )
    subject = get_param("Observation", "subject")
    assert subject is not None
    assert "Group" in subject.targets and subject.restricted_to == ()


def test_shared_date_and_identifier() -> None:
    date = get_param("Observation", "date")
    assert date is not None
    assert (date.type, date.expression) == ("date", "Observation.effective")
    assert date.comparators == ("eq", "ne", "gt", "ge", "lt", "le", "sa", "eb", "ap")
    risk = get_param("RiskAssessment", "date")
    assert risk is not None and risk.expression == "RiskAssessment.occurrence.ofType(dateTime)"
    documents = get_param("DocumentReference", "identifier")
    assert documents is not None
    assert documents.expression == "DocumentReference.masterIdentifier | DocumentReference.identifier"
    assert "of-type" in documents.modifiers


def test_resource_level_parameters_apply_to_every_type() -> None:
    for resource_type in ("Patient", "Observation", "Bundle", "Binary"):
        params = params_for(resource_type)
        assert {"_id", "_lastUpdated", "_tag", "_profile", "_security", "_source"} <= params.keys()
        assert params["_tag"].expression == f"{resource_type}.meta.tag"
    assert "_text" in params_for("Patient") and "_text" not in params_for("Bundle")


def test_unprefixed_parts_and_composites() -> None:
    name = get_param("InsurancePlan", "name")
    assert name is not None and name.expression == "InsurancePlan.name | InsurancePlan.alias"
    composite = get_param("Observation", "code-value-quantity")
    assert composite is not None
    assert composite.type == "composite"
    assert composite.components == (("code", "code"), ("value-quantity", "value.ofType(Quantity)"))


def test_unknown_names() -> None:
    assert params_for("NotAType") == {}
    assert get_param("Patient", "no-such-param") is None


def test_patient_compartment() -> None:
    assert patient_compartment_params("Observation") == ["subject", "performer"]
    assert patient_compartment_params("Patient") == ["link"]
    assert patient_compartment_params("Organization") == []


def test_every_expression_compiles_and_almost_all_take_the_fast_path() -> None:
    slow = set()
    for resource_type in resource_types():
        for code, param in params_for(resource_type).items():
            plan = plan_for(resource_type, code)
            assert (plan is None) == (param.expression == ""), (resource_type, code)
            if plan is not None and param.type != "composite" and not plan.fast:
                slow.add((resource_type, code))
    # Bundle.entry[0].resource, and an element R4 DeviceDefinition does not have.
    assert slow == {
        ("Bundle", "composition"),
        ("Bundle", "message"),
        ("DeviceDefinition", "classification"),
    }
