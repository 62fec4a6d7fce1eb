"""Patients linked to HimParivar register members: the linking run, the review queue and decisions.

A link the rules decide (``linked``: a trusted member ID, or a match probability above the accept
threshold) puts the member ID on the Patient at once; a pair in the review band is ``proposed`` and
waits for staff, who accept it (the member ID goes on the Patient) or reject it (the pair is kept as
rejected and never proposed again). Decisions are audited by the caller's unit of work.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import orjson
from sqlalchemy import select
from sqlalchemy.orm import Session

from ehr.scope import Scope
from ehr.search.engine import search
from ehr.service import FhirStore
from himhis import systems
from himhis.errors import ConflictError, NotFoundError
from himhis.models import RegisterLink, RegisterMember
from his.mpi.service import card
from integrations.himparivar.linkage import LINKED, REVIEW, Link, link
from integrations.himparivar.records import districts

M = RegisterMember.__table__
PAGE = 200


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


@dataclass(slots=True)
class LinkRun:
    patients: int = 0
    linked: int = 0
    proposed: int = 0
    unlinked: int = 0
    patient_ids: list[str] | None = None


def _member_id(resource: dict) -> str | None:
    return next((i.get("value") for i in resource.get("identifier", ()) if i.get("system") == systems.HIMPARIVAR),
                None)


def unlinked_patients(session: Session, *, base: str = "") -> list[dict[str, Any]]:
    """Active Patients without a HimParivar member ID, as linkage records."""
    out, offset = [], 0
    while True:
        bundle = search(session, "Patient", [("active:not", "false"), ("_count", str(PAGE)),
                                             ("_offset", str(offset)), ("_sort", "_id")], base=base)
        entries = [e["resource"] for e in orjson.loads(orjson.dumps(bundle.get("entry", [])))]  # raw fragments
        for resource in entries:
            if _member_id(resource):
                continue
            c = card(resource)
            out.append({"record_id": c.id, "name": c.name or c.name_devanagari, "gender": c.gender,
                        "birth_date": "" if c.birth_estimated else c.birth_date,
                        "birth_year": int(c.birth_date[:4]) if c.birth_date else None,
                        "relative_name": c.relative_name, "village": c.village,
                        "district": districts().get(c.district.lower(), c.district), "member_id": ""})
        if len(entries) < PAGE:
            return out
        offset += PAGE


def _register_rows(session: Session, wanted: set[str]) -> list[dict[str, Any]]:
    """Living register members of the districts the patients come from."""
    rows = session.execute(select(M).where(M.c.district.in_(sorted(wanted)), M.c.status == "active")).mappings()
    return [dict(r) for r in rows]


def link_patients(session: Session, *, today: date, base: str = "") -> LinkRun:
    """Link every Patient without a member ID (one unit of work; flush only)."""
    records = unlinked_patients(session, base=base)
    run = LinkRun(patients=len(records), patient_ids=[])
    if not records:
        return run
    register = _register_rows(session, {r["district"] for r in records if r["district"]})
    for result in link(register, records, today=today):
        if result.state == LINKED:
            if _save(session, result, "linked"):
                run.linked += 1
                run.patient_ids.append(result.record_id)
        elif result.state == REVIEW:
            if _save(session, result, "proposed"):
                run.proposed += 1
        else:
            run.unlinked += 1
    return run


def _save(session: Session, result: Link, state: str) -> bool:
    """Record a link (False if staff already decided on this pair); a ``linked`` one marks the Patient."""
    subject = f"Patient/{result.record_id}"
    row = session.execute(select(RegisterLink).where(RegisterLink.subject == subject,
                                                     RegisterLink.member_id == result.member_id)).scalar_one_or_none()
    if row is not None and row.state in ("accepted", "rejected", "linked"):
        return False
    if row is None:
        row = RegisterLink(subject=subject, member_id=result.member_id, created=_now())
        session.add(row)
    row.state, row.probability, row.match_weight, row.reason = state, result.probability, result.match_weight, \
        result.reason
    session.flush()
    if state == "linked":
        _mark(FhirStore(session), result.record_id, result.member_id)
    return True


def _mark(store: FhirStore, patient_id: str, member_id: str) -> None:
    """Put the member ID on the Patient (refused if it already carries another)."""
    resource = store.read("Patient", patient_id).json()
    current = _member_id(resource)
    if current == member_id:
        return
    if current:
        raise ConflictError(f"Patient/{patient_id} already carries HimParivar member {current}")
    resource.setdefault("identifier", []).append({"system": systems.HIMPARIVAR, "value": member_id,
                                                  "assigner": {"display": "Government of Himachal Pradesh"}})
    store.update("Patient", patient_id, resource)


def review_queue(session: Session, *, scope: Scope, limit: int = 50) -> list[dict[str, Any]]:
    """Proposed pairs whose patient the caller may see, oldest first, each side by side."""
    store = FhirStore(session, scope=scope)
    out = []
    for row in session.execute(select(RegisterLink).where(RegisterLink.state == "proposed")
                               .order_by(RegisterLink.created, RegisterLink.id)).scalars():
        patient_id = row.subject.removeprefix("Patient/")
        try:
            patient = card(store.read("Patient", patient_id).json())
        except NotFoundError:
            continue  # outside the caller's facility, or gone
        member = session.execute(select(M).where(M.c.member_id == row.member_id)).mappings().first()
        if member is None:
            continue
        out.append({"id": row.id, "probability": round(row.probability, 3), "match_weight": row.match_weight,
                    "reason": row.reason, "patient": {
                        "id": patient.id, "uhid": patient.uhid, "name": patient.name,
                        "name_devanagari": patient.name_devanagari, "gender": patient.gender,
                        "birth_date": patient.birth_date, "relative_name": patient.relative_name,
                        "village": patient.village, "district": patient.district},
                    "member": {k: (v.isoformat() if isinstance(v, date) else v) for k, v in member.items()
                               if k in ("member_id", "family_id", "name", "name_devanagari", "gender", "birth_date",
                                        "birth_year", "relative_name", "village", "district", "relation")}})
        if len(out) >= limit:
            break
    return out


def decide(session: Session, *, scope: Scope, link_id: int, accept: bool, by: str) -> RegisterLink:
    """Accept or reject a proposed pair; 404 if unknown or its patient is out of sight, 409 if decided."""
    row = session.get(RegisterLink, link_id)
    if row is None:
        raise NotFoundError(f"No proposed link {link_id}")
    patient_id = row.subject.removeprefix("Patient/")
    store = FhirStore(session, scope=scope)
    store.read("Patient", patient_id)  # 404 as if unknown when outside the caller's scope
    if row.state != "proposed":
        raise ConflictError(f"Link {link_id} was already decided: {row.state}")
    row.state = "accepted" if accept else "rejected"
    row.decided_by, row.decided_at = by, _now()
    session.flush()
    if accept:
        _mark(store, patient_id, row.member_id)
    return row
