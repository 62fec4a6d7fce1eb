"""Whose data an interaction touched: the patients of resources, results and Bundles, for audit entries.

A resource is a patient's data when it is in that patient's compartment
(https://hl7.org/fhir/R4/compartmentdefinition-patient.html): the Patient itself, or a resource
whose compartment parameters (subject, patient, performer, …) reference the Patient. The
``of_*`` functions fit ``run_audited(details=...)``: they take the session and the result and return
the entry fields the result tells.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import orjson
from sqlalchemy import and_, select
from sqlalchemy.orm import Session

from audit.service import MINOR_FAILURE, SERIOUS_FAILURE
from ehr.references import iter_references
from ehr.search.extract import ReferenceValue, extract
from ehr.search.normalize import parse_reference
from ehr.search.registry import patient_compartment_params
from himhis.models import ReferenceIndex, Resource, ResourceVersion

R = Resource.__table__
V = ResourceVersion.__table__
REF = ReferenceIndex.__table__
_CHUNK = 500


def patients_of(resource: dict) -> list[str]:
    """Ids of the Patients whose compartment holds this resource (a JSON dict as stored)."""
    rtype = resource.get("resourceType")
    out: list[str] = []
    if rtype == "Patient" and isinstance(resource.get("id"), str):
        out.append(resource["id"])
    params = set(patient_compartment_params(rtype)) if isinstance(rtype, str) else set()
    if params:
        try:
            out += [v.target_id for v in extract(resource)
                    if isinstance(v, ReferenceValue) and v.param in params and v.target_type == "Patient"
                    and v.target_id]
        except ValueError:  # a value the index cannot read: fall back to every Patient reference
            for _path, raw in iter_references(resource):
                target, target_id = parse_reference(raw)
                if target == "Patient" and target_id:
                    out.append(target_id)
    return list(dict.fromkeys(out))


def patients_of_keys(session: Session, keys: Iterable[tuple[str, str]]) -> list[str]:
    """Ids of the Patients whose data the resources ``(type, id)`` are, from the search index.

    A deleted resource has no index rows left; its last stored content is read instead.
    """
    by_type: dict[str, set[str]] = defaultdict(set)
    out: list[str] = []
    for rtype, rid in keys:
        if rtype == "Patient":
            out.append(rid)
        elif patient_compartment_params(rtype):
            by_type[rtype].add(rid)
    for rtype, ids in by_type.items():
        params = set(patient_compartment_params(rtype))
        ordered = sorted(ids)
        for start in range(0, len(ordered), _CHUNK):
            chunk = ordered[start:start + _CHUNK]
            rows = session.execute(
                select(R.c.res_id, R.c.deleted, REF.c.param, REF.c.target_id).select_from(R)
                .outerjoin(REF, and_(REF.c.resource_pk == R.c.pk, REF.c.target_type == "Patient"))
                .where(R.c.res_type == rtype, R.c.res_id.in_(chunk))
            ).all()
            out += [r.target_id for r in rows if r.param in params and r.target_id]
            for rid in sorted({r.res_id for r in rows if r.deleted}):
                content = _last_content(session, rtype, rid)
                if content:
                    out += patients_of(orjson.loads(content))
    return list(dict.fromkeys(out))


def _last_content(session: Session, rtype: str, rid: str) -> str | None:
    return session.execute(select(V.c.content).where(V.c.res_type == rtype, V.c.res_id == rid,
                                                      V.c.content.is_not(None))
                           .order_by(V.c.version_id.desc()).limit(1)).scalar()


def bundle_keys(bundle: dict) -> list[tuple[str, str]]:
    """``(type, id)`` of every resource a Bundle carries or names (fullUrl, resource, response.location),
    nested Bundles included."""
    keys: list[tuple[str, str]] = []
    for entry in bundle.get("entry") or ():
        if not isinstance(entry, dict):
            continue
        resource = entry.get("resource")
        if isinstance(resource, dict) and resource.get("resourceType") == "Bundle":
            keys += bundle_keys(resource)  # a search answered inside a batch
        elif isinstance(resource, dict) and resource.get("resourceType") and resource.get("id"):
            keys.append((resource["resourceType"], resource["id"]))
        for url in (entry.get("fullUrl"), (entry.get("response") or {}).get("location")):
            if isinstance(url, str) and (key := _key(url)):
                keys.append(key)
    return list(dict.fromkeys(keys))


def _key(url: str) -> tuple[str, str] | None:
    """``Type/id`` at the end of a URL, ignoring ``/_history/v``; None for ``urn:uuid:`` and the like."""
    parts = [p for p in url.split("?", 1)[0].split("/") if p]
    if len(parts) >= 4 and parts[-2] == "_history":
        parts = parts[:-2]
    if len(parts) >= 2 and parts[-2][:1].isupper() and parts[-2].isalpha():
        return parts[-2], parts[-1]
    return None


# -- details for run_audited -------------------------------------------------------------------


def of_stored(session: Session, stored: Any) -> dict[str, Any]:
    """Fields of a read or vread result (``ehr.service.Stored``)."""
    patients = patients_of(stored.json()) if stored.text else patients_of_keys(session, [(stored.res_type,
                                                                                           stored.res_id)])
    return {"resource_type": stored.res_type, "resource_id": stored.res_id, "version_id": stored.version_id,
            "patient_ids": patients}


def of_write(session: Session, result: Any) -> dict[str, Any]:
    """Fields of a create, update or delete result (``ehr.service.WriteResult``); a delete names the
    patients of the version it removed. A conditional delete that matched nothing (None) adds nothing."""
    if result is None:
        return {}
    stored = result.stored
    if stored.text:
        patients = patients_of(stored.json())
        replaced = getattr(result, "replaced", None)
        if replaced:  # an update may move the resource from one patient's record to another's
            patients = list(dict.fromkeys(patients_of(orjson.loads(replaced)) + patients))
    else:
        content = _last_content(session, stored.res_type, stored.res_id)
        patients = patients_of(orjson.loads(content)) if content else []
    return {"resource_type": stored.res_type, "resource_id": stored.res_id, "version_id": stored.version_id,
            "patient_ids": patients}


def of_versions(session: Session, result: Any) -> dict[str, Any]:
    """Fields of a history result (``FhirStore.history``: the versions, or ``(versions, total)``): the
    patients of every version returned."""
    versions = result[0] if isinstance(result, tuple) else result
    patients: list[str] = []
    gone: list[tuple[str, str]] = []
    for v in versions:
        if v.text:
            patients += patients_of(v.json())
        else:
            gone.append((v.res_type, v.res_id))
    return {"patient_ids": list(dict.fromkeys(patients + patients_of_keys(session, gone)))}


def of_bundle(session: Session, bundle: dict, written: Iterable[Any] | None = None) -> dict[str, Any]:
    """Fields of a Bundle returned (searchset, history, $everything) or processed (transaction-response):
    every patient whose data it carries. ``written`` (the transaction's ``ehr.repository.Pending``
    versions) names them from the values just extracted, without asking the index again."""
    if written is None:
        return {"patient_ids": patients_of_keys(session, bundle_keys(bundle))}
    out: list[str] = []
    deleted: list[tuple[str, str]] = []
    for p in written:
        if p.text is None:
            deleted.append((p.res_type, p.res_id))
            continue
        if p.replaced:
            out += patients_of(orjson.loads(p.replaced))
        if p.res_type == "Patient":
            out.append(p.res_id)
        params = patient_compartment_params(p.res_type)
        if params:
            out += [v.target_id for v in p.values if isinstance(v, ReferenceValue) and v.param in params
                    and v.target_type == "Patient" and v.target_id]
    # What the transaction's GET entries returned is named by the response, as for a search.
    read = bundle_keys({"entry": [e for e in bundle.get("entry") or () if isinstance(e, dict) and "resource" in e]})
    return {"patient_ids": list(dict.fromkeys(out + patients_of_keys(session, deleted + read)))}


def of_batch_entry(bundle: dict) -> dict[str, Any]:
    """Fields of one batch entry's record (a one-entry Bundle whose entry carries its ``request``): the
    resource asked for, its version, and the outcome when the entry was refused or failed."""
    entries = bundle.get("entry") or []
    if len(entries) != 1 or "request" not in entries[0]:
        return {}
    entry = entries[0]
    out: dict[str, Any] = {}
    response = entry.get("response") or {}
    resource = entry.get("resource") if isinstance(entry.get("resource"), dict) else {}
    target = response.get("location") or entry["request"].get("url") or ""
    parts = [p for p in target.split("?", 1)[0].split("/") if p]
    if resource.get("resourceType") and resource.get("id") and resource["resourceType"] != "Bundle":
        out.update(resource_type=resource["resourceType"], resource_id=resource["id"],
                   version_id=(resource.get("meta") or {}).get("versionId"))
    elif parts and parts[0][:1].isupper():
        out["resource_type"] = parts[0]
        if len(parts) >= 2:
            out["resource_id"] = parts[1]
        if len(parts) >= 4 and parts[2] == "_history":
            out["version_id"] = parts[3]
    status = str(response.get("status") or "200").split()[0]
    if status.isdigit() and int(status) >= 400:
        issues = (response.get("outcome") or {}).get("issue") or [{}]
        detail = f"{status} {issues[0].get('diagnostics') or 'failed'}"
        out.update(outcome=MINOR_FAILURE if int(status) < 500 else SERIOUS_FAILURE, outcome_detail=detail)
    return out
