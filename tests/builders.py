"""Test data builders: minimal valid R4 resources with keyword defaults, and a small hospital served once.

``resource("Observation", id="obs-1", patient="p1")`` gives an Observation of Patient/p1 based on
the laboratory order ``sr-p1``; every builder takes an ``identifier`` so conditional interactions
can find what it made. ``open_hospital`` serves the app on one backend with that data set, for test
modules that make many cheap requests against one fixture (a module-scoped fixture, per backend).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select

from himhis.config import Settings
from himhis.db import Database
from himhis.systems import FACILITY, OIDC_CLIENT

TEST_IDS = "urn:himhis:test"  # Identifier.system of what the tests make
LOINC_HB = {"coding": [{"system": "http://loinc.org", "code": "718-7", "display": "Hemoglobin"}]}
AMB = {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"}

# Patients of the hospital: p1 and p2 registered at IGMC, p9 at RPGMC. The laboratory (client
# lab-gateway) receives p1's order; p2's and p9's go to another laboratory.
PATIENTS = {"p1": "igmc", "p2": "igmc", "p9": "rpgmc"}
CLINICAL = ("Observation", "Encounter", "Condition", "MedicationRequest", "ServiceRequest", "DiagnosticReport",
            "Immunization")
PREFIX = {"Patient": "", "Observation": "obs", "Encounter": "enc", "Condition": "cond", "MedicationRequest": "mr",
          "ServiceRequest": "sr", "DiagnosticReport": "dr", "Immunization": "imm"}
INFRASTRUCTURE = {"Organization": "igmc", "Location": "loc-1", "Practitioner": "prac-1"}


def clinical_id(res_type: str, patient: str) -> str:
    """The seeded resource of ``res_type`` for ``patient``: ``obs-p1``; the Patient itself is ``p1``."""
    return patient if res_type == "Patient" else f"{PREFIX[res_type]}-{patient}"


def resource(res_type: str, *, id: str | None = None, patient: str = "p1", order: str | None = None,
             lab: str = "lab", identifier: str | None = None, **extra: Any) -> dict:
    """A minimal valid resource of ``res_type`` for ``patient`` (results are based on ``order``,
    by default the patient's own order ``sr-<patient>``; orders go to ``lab``)."""
    subject = {"reference": f"Patient/{patient}"}
    order = order or f"sr-{patient}"
    bodies: dict[str, dict] = {
        "Patient": {"name": [{"family": "Thakur", "given": ["Asha"]}], "gender": "female",
                    "managingOrganization": {"reference": f"Organization/{PATIENTS.get(patient, 'igmc')}"}},
        "Observation": {"status": "final", "code": LOINC_HB, "subject": subject,
                        "basedOn": [{"reference": f"ServiceRequest/{order}"}],
                        "valueQuantity": {"value": 12.5, "unit": "g/dL", "system": "http://unitsofmeasure.org",
                                          "code": "g/dL"}},
        "Encounter": {"status": "finished", "class": AMB, "subject": subject},
        "Condition": {"code": {"text": "Type 2 diabetes mellitus"}, "subject": subject},
        "MedicationRequest": {"status": "active", "intent": "order", "subject": subject,
                              "medicationCodeableConcept": {"text": "Metformin 500 mg tablet"}},
        "ServiceRequest": {"status": "active", "intent": "order", "code": LOINC_HB, "subject": subject,
                           "performer": [{"reference": f"Organization/{lab}"}]},
        "DiagnosticReport": {"status": "final", "code": LOINC_HB, "subject": subject,
                             "basedOn": [{"reference": f"ServiceRequest/{order}"}]},
        "Immunization": {"status": "completed", "vaccineCode": {"text": "BCG"}, "patient": subject,
                         "occurrenceDateTime": "2026-01-15"},
        "Specimen": {"subject": subject, "request": [{"reference": f"ServiceRequest/{order}"}]},
        "Organization": {"name": "PHC Theog"},
        "Location": {"name": "Ward 3, Medicine"},
        "Practitioner": {"name": [{"family": "Sharma", "given": ["Ravi"]}]},
        "Task": {"status": "requested", "intent": "order", "focus": {"reference": f"ServiceRequest/{order}"},
                 "for": subject, "owner": {"reference": f"Organization/{lab}"}},
    }
    out: dict[str, Any] = {"resourceType": res_type, **bodies[res_type]}
    if id is not None:
        out["id"] = id
    if identifier is not None:
        out["identifier"] = [{"system": TEST_IDS, "value": identifier}]
    return {**out, **extra}


def bearer(token: str, **headers: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", **headers}


def lab_token(client) -> str:
    """A token of the laboratory system: the confidential client ``lab-gateway`` (client credentials)."""
    r = client.post("/realms/himhis/protocol/openid-connect/token",
                    data={"grant_type": "client_credentials", "client_id": "lab-gateway",
                          "client_secret": "lab-secret"})
    assert r.status_code == 200, r.text
    return r.json()["access_token"]


@dataclass
class Hospital:
    """The app on one backend with the seeded data, a steward to arrange more, and who is who."""

    backend: str
    db: Database
    settings: Settings
    client: Any  # fastapi.testclient.TestClient
    steward: dict[str, str]
    events: dict[str, str] = field(default_factory=dict)  # "p1" -> id of an AuditEvent about that patient only

    def put(self, body: dict, headers: dict | None = None) -> dict:
        r = self.client.put(f"/fhir/{body['resourceType']}/{body['id']}", json=body, headers=headers or self.steward)
        assert r.status_code in (200, 201), r.text
        return r.json()

    def make(self, res_type: str, **kw: Any) -> str:
        """Store a new resource (by the steward) with a fresh id, also its identifier; returns the id."""
        res_id = kw.pop("id", None) or f"t-{uuid.uuid4().hex[:12]}"
        self.put(resource(res_type, id=res_id, identifier=res_id, **kw))
        return res_id


def seed(h: Hospital) -> None:
    """Facilities, two laboratories, infrastructure, and for each patient one resource of each clinical type."""
    for code in ("IGMC", "RPGMC"):
        h.put({"resourceType": "Organization", "id": code.lower(), "name": code,
               "identifier": [{"system": FACILITY, "value": code}]})
    h.put({"resourceType": "Organization", "id": "lab", "name": "IGMC central laboratory",
           "identifier": [{"system": OIDC_CLIENT, "value": "lab-gateway"}]})
    h.put({"resourceType": "Organization", "id": "lab-other", "name": "Another laboratory",
           "identifier": [{"system": OIDC_CLIENT, "value": "other-lab"}]})
    h.put(resource("Location", id="loc-1", managingOrganization={"reference": "Organization/igmc"}))
    h.put(resource("Practitioner", id="prac-1"))
    for patient in PATIENTS:
        h.put(resource("Patient", id=patient, patient=patient))
        lab = "lab" if patient == "p1" else "lab-other"
        h.put(resource("ServiceRequest", id=clinical_id("ServiceRequest", patient), patient=patient, lab=lab))
        for res_type in CLINICAL:
            if res_type != "ServiceRequest":
                h.put(resource(res_type, id=clinical_id(res_type, patient), patient=patient))
        h.put(resource("Task", id=f"task-{patient}", patient=patient, lab=lab))
    from audit.service import A

    # The steward's writes of each Patient are AuditEvents about that patient alone.
    rows = h.db.run(lambda s: s.execute(select(A.c.seq, A.c.patient_ids).where(
        A.c.resource_type == "Patient", A.c.interaction == "update")).all(), write=False)
    h.events = {r.patient_ids: str(r.seq) for r in rows}


@contextmanager
def open_hospital(backend: str, url: str, var_dir: Path) -> Iterator[Hospital]:
    """Serve the app on an emptied, migrated database at ``url`` and seed it."""
    from fastapi.testclient import TestClient

    from himhis.app import create_app
    from tests.conftest import _database, _empty, steward_headers

    db = _database(url)
    _empty(db)
    settings = Settings(database_url=db.engine.url.render_as_string(hide_password=False), var_dir=var_dir,
                        environment="development")
    try:
        with TestClient(create_app(settings, db=db)) as client:
            hospital = Hospital(backend, db, settings, client, steward_headers(client, settings))
            seed(hospital)
            yield hospital
    finally:
        db.dispose()
