"""Patient/$everything (https://hl7.org/fhir/R4/patient-operation-everything.html)."""

from __future__ import annotations

from datetime import datetime

import orjson
from sqlalchemy import select

from ehr import repository as repo
from ehr.scope import compartment_params
from ehr.service import FhirStore
from himhis.models import ReferenceIndex

REF = ReferenceIndex.__table__
R = repo.R
# Resources outside the patient compartment that the compartment's resources point to and that a
# reader needs to make sense of them (who, where, what).
SUPPORTING = ("Practitioner", "PractitionerRole", "Organization", "Location", "Medication", "Device")


def compartment_pks(session, patient_id: str) -> list[int]:
    """Primary keys of the live resources in a patient's compartment (CompartmentDefinition/patient)."""
    rows = session.execute(select(REF.c.resource_pk, REF.c.res_type, REF.c.param)
                           .where(REF.c.target_type == "Patient", REF.c.target_id == patient_id)).all()
    return sorted({pk for pk, rtype, param in rows if param in compartment_params(rtype)})


def everything(store: FhirStore, patient_id: str, *, base: str, since: datetime | None = None,
               types: list[str] | None = None) -> dict:
    patient = store.read("Patient", patient_id)
    session = store.session
    pks = compartment_pks(session, patient_id)
    stmt = select(R.c.pk, R.c.res_type, R.c.res_id, R.c.content).where(R.c.pk.in_(pks), R.c.deleted.is_(False))
    if since:
        stmt = stmt.where(R.c.last_updated >= since)
    rows = session.execute(stmt.order_by(R.c.res_type, R.c.last_updated)).all() if pks else []
    if types:
        rows = [r for r in rows if r.res_type in types]
    support = []
    sources = [r.pk for r in rows] + [repo.current(session, "Patient", patient_id).pk]
    if sources:
        targets = session.execute(select(REF.c.target_type, REF.c.target_id).distinct()
                                  .where(REF.c.resource_pk.in_(sources),
                                         REF.c.target_type.in_(SUPPORTING))).all()
        found = repo.current_many(session, [(t, i) for t, i in targets if i])
        support = [r for r in found.values() if not r.deleted and (not types or r.res_type in types)]
    entries = []
    if not types or "Patient" in types:
        entries.append({"fullUrl": f"{base}/Patient/{patient_id}", "resource": orjson.Fragment(patient.text),
                        "search": {"mode": "match"}})
    entries += [{"fullUrl": f"{base}/{r.res_type}/{r.res_id}", "resource": orjson.Fragment(r.content),
                 "search": {"mode": "match"}} for r in rows if not (r.res_type == "Patient" and
                                                                    r.res_id == patient_id)]
    entries += [{"fullUrl": f"{base}/{r.res_type}/{r.res_id}", "resource": orjson.Fragment(r.content),
                 "search": {"mode": "include"}} for r in support]
    return {"resourceType": "Bundle", "type": "searchset", "total": len(entries),
            "link": [{"relation": "self", "url": f"{base}/Patient/{patient_id}/$everything"}], "entry": entries}
