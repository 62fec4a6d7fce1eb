"""The audit log as FHIR R4 AuditEvent (https://hl7.org/fhir/R4/auditevent.html), shaped after IHE BALP.

IHE Basic Audit Log Patterns (https://profiles.ihe.net/ITI/BALP/): type ``rest`` with the RESTful
interaction as subtype; agents for the user (requestor), the client application and the server;
an entity for the resource, one per Patient whose data was touched and one for the query
(base64). BALP's PatientQuery asks for one AuditEvent per patient; we keep one record per
interaction and name every patient in it, which the patient search below serves just as well; a
record naming several patients claims the plain Query profile, and a patient reading their own
access log sees only themselves in it.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row, func, or_, select
from sqlalchemy.orm import Session

from audit.service import AP, A, interactions
from ehr.search.normalize import parse_fhir_date
from himhis import systems
from himhis.errors import InvalidError, NotFoundError

AUDIT_EVENT_TYPE = "http://terminology.hl7.org/CodeSystem/audit-event-type"
RESTFUL_INTERACTION = "http://hl7.org/fhir/restful-interaction"
DCM = "http://dicom.nema.org/resources/ontology/DCM"
PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
ACT_REASON = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
SOURCE_TYPE = "http://terminology.hl7.org/CodeSystem/security-source-type"
BALP = "https://profiles.ihe.net/ITI/BALP/StructureDefinition/IHE.BasicAudit."
ROLE = f"{systems.BASE}/CodeSystem/role"  # HimHIS roles (identity/principal.py ROLES)
CLIENT_ID = f"{systems.BASE}/sid/client-id"  # OIDC client (azp)
EXT_USER_AGENT = f"{systems.BASE}/StructureDefinition/user-agent"
SERVER = "HimHIS"

_SOURCE_ROLE = {"system": DCM, "code": "110153", "display": "Source Role ID"}
_DESTINATION_ROLE = {"system": DCM, "code": "110152", "display": "Destination Role ID"}
_USER_TYPE = {"IRCP": "information recipient", "AUT": "author", "CST": "custodian"}


def instant(dt: datetime) -> str:
    """A naive-UTC datetime as a FHIR instant (https://hl7.org/fhir/R4/datatypes.html#instant)."""
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def _coding(triple: list[str]) -> dict[str, str]:
    system, code, display = triple
    return {"system": system, "code": code, "display": display}


def _purpose(rec: Any) -> list[dict]:
    if not rec.purpose_of_use:
        return []
    concept: dict[str, Any] = {"coding": [{"system": ACT_REASON, "code": rec.purpose_of_use}]}
    if rec.break_glass_reason:
        concept["text"] = rec.break_glass_reason
    return [concept]


def to_audit_event(rec: Any, *, base_url: str | None = None, for_patient: str | None = None) -> dict:
    """One audit record (an ``AuditRecord`` or a row of ``audit_log``) as an AuditEvent.

    ``base_url`` (the FHIR base) is the server's network address; BALP's profile is claimed only for
    a successful REST interaction whose client and server addresses are both known, and PatientQuery
    and the like only when the record names exactly one patient.

    ``for_patient``: the view a patient gets of their own access log — who, when, what and why, with
    only that patient named, and without what could tell them about others (the search terms, the
    other patients a search returned, the client's network address).
    """
    spec = interactions()[rec.interaction]
    patients = [p for p in (rec.patient_ids or "").split(",") if p]
    if for_patient is not None:
        patients = [p for p in patients if p == for_patient]
    rest = "type" not in spec
    event: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "id": str(rec.seq),
        "type": ({"system": AUDIT_EVENT_TYPE, "code": "rest", "display": "Restful Operation"} if rest
                 else _coding(spec["type"])),
        "subtype": [{"system": RESTFUL_INTERACTION, "code": rec.interaction} if rest else _coding(spec["subtype"])],
        "action": spec["action"],
        "recorded": instant(rec.recorded),
        "outcome": str(rec.outcome),
    }
    if rec.outcome_detail:
        event["outcomeDesc"] = rec.outcome_detail
    purpose = _purpose(rec)
    if purpose:
        event["purposeOfEvent"] = purpose

    pull = spec["direction"] == "pull"  # BALP: the client is the destination of a read, the source otherwise
    agents: list[dict] = []
    has_user = bool(rec.actor_username or rec.actor_subject)
    if has_user:
        user: dict[str, Any] = {
            "type": {"coding": [{"system": PARTICIPATION, "code": spec["user"], "display": _USER_TYPE[spec["user"]]}]},
            "who": {"identifier": {"system": systems.USERNAME, "value": rec.actor_username or rec.actor_subject},
                    "display": rec.actor_username or rec.actor_subject},
            "requestor": True,
        }
        if rec.actor_subject:
            user["altId"] = rec.actor_subject
        if rec.actor_username:
            user["name"] = rec.actor_username
        roles = [r for r in (rec.actor_roles or "").split(",") if r]
        if roles:
            user["role"] = [{"coding": [{"system": ROLE, "code": r}]} for r in roles]
        if purpose:
            user["purposeOfUse"] = purpose
        agents.append(user)
    client: dict[str, Any] = {
        "type": {"coding": [_DESTINATION_ROLE if pull else _SOURCE_ROLE]},
        "who": ({"identifier": {"system": CLIENT_ID, "value": rec.client_id}, "display": rec.client_id}
                if rec.client_id else {"display": "unidentified client"}),
        "requestor": not has_user,
    }
    if rec.source_ip and for_patient is None:
        client["network"] = {"address": rec.source_ip, "type": "2"}  # 2 = IP address
    if rec.user_agent and for_patient is None:
        client["extension"] = [{"url": EXT_USER_AGENT, "valueString": rec.user_agent}]
    server: dict[str, Any] = {
        "type": {"coding": [_SOURCE_ROLE if pull else _DESTINATION_ROLE]},
        "who": {"identifier": {"value": SERVER}, "display": SERVER},
        "requestor": False,
    }
    if base_url:
        server["network"] = {"address": base_url, "type": "5"}  # 5 = URI
    event["agent"] = [*agents, client, server]

    event["source"] = {
        "observer": {"identifier": {"value": SERVER},
                     "display": f"{SERVER} ({rec.actor_facility})" if rec.actor_facility else SERVER},
        "type": [{"system": SOURCE_TYPE, "code": "4", "display": "Application Server"}],
    }
    if rec.actor_facility:
        event["source"]["site"] = rec.actor_facility

    entities: list[dict] = []
    if rec.resource_type and rec.resource_id:
        ref = f"{rec.resource_type}/{rec.resource_id}"
        if rec.version_id:
            ref += f"/_history/{rec.version_id}"
        entities.append({"what": {"reference": ref},
                         "type": {"system": ENTITY_TYPE, "code": "2", "display": "System Object"},
                         "role": {"system": OBJECT_ROLE, "code": "4", "display": "Domain Resource"}})
    entities += [{"what": {"reference": f"Patient/{p}"},
                  "type": {"system": ENTITY_TYPE, "code": "1", "display": "Person"},
                  "role": {"system": OBJECT_ROLE, "code": "1", "display": "Patient"}} for p in patients]
    if rec.query is not None and for_patient is None:
        target = rec.resource_type or ""
        entities.append({"type": {"system": ENTITY_TYPE, "code": "2", "display": "System Object"},
                         "role": {"system": OBJECT_ROLE, "code": "24", "display": "Query"},
                         "description": f"{target}?{rec.query}" if target else rec.query,
                         "query": base64.b64encode(rec.query.encode()).decode("ascii")})
    if entities:
        event["entity"] = entities

    profile = spec.get("profile")
    described = rec.query is not None if profile == "Query" else bool(rec.resource_type and rec.resource_id)
    if profile and described and rec.outcome == 0 and rec.source_ip and base_url and for_patient is None:
        event["meta"] = {"profile": [BALP + ("Patient" + profile if len(patients) == 1 else profile)]}
    return event


def _filtered(*, patient: str | None, agent: str | None, date_from: datetime | None, date_to: datetime | None,
              interaction: str | None, entity: str | None):
    stmt = select(A)
    if patient:
        stmt = stmt.where(A.c.pk.in_(select(AP.c.audit_pk).where(AP.c.patient_id == patient)))
    if agent:
        stmt = stmt.where(or_(A.c.actor_username == agent, A.c.actor_subject == agent, A.c.client_id == agent))
    if date_from:
        stmt = stmt.where(A.c.recorded >= date_from)
    if date_to:
        stmt = stmt.where(A.c.recorded < date_to)
    if interaction:
        stmt = stmt.where(A.c.interaction.in_(interaction.split(",")))
    if entity:
        rtype, _, rid = entity.partition("/")
        stmt = stmt.where(A.c.resource_type == rtype)
        if rid:
            stmt = stmt.where(A.c.resource_id == rid)
    return stmt


def search_audit(session: Session, *, patient: str | None = None, agent: str | None = None,
                 date_from: datetime | None = None, date_to: datetime | None = None,
                 interaction: str | None = None, entity: str | None = None, count: int = 50, offset: int = 0,
                 base_url: str | None = None, for_patient: str | None = None) -> tuple[list[dict], int]:
    """AuditEvents newest first, and how many match (https://hl7.org/fhir/R4/auditevent.html#search).

    ``patient`` a Patient id (every event that touched their data); ``agent`` a username, subject or
    client id; ``date_from`` inclusive and ``date_to`` exclusive, naive UTC; ``interaction`` one or
    more codes, comma-separated; ``entity`` ``Type`` or ``Type/id``.
    """
    stmt = _filtered(patient=patient, agent=agent, date_from=date_from, date_to=date_to, interaction=interaction,
                     entity=entity)
    total = session.execute(select(func.count()).select_from(stmt.subquery())).scalar_one()
    rows: list[Row] = session.execute(stmt.order_by(A.c.seq.desc()).limit(count).offset(offset)).all()
    return [to_audit_event(r, base_url=base_url, for_patient=for_patient) for r in rows], total


def patient_access_log(session: Session, *, patient_id: str, count: int = 50, offset: int = 0,
                       base_url: str | None = None) -> tuple[list[dict], int]:
    """Who read or changed this patient's data, newest first ("who saw my record").

    The caller passes the signed-in patient's own id (``Principal.patient_id``), never one from the request.
    """
    return search_audit(session, patient=patient_id, count=count, offset=offset, base_url=base_url,
                        for_patient=patient_id)


# -- the FHIR API's view (https://hl7.org/fhir/R4/auditevent.html#search) -----------------------

SEARCH_PARAMS = ("patient", "agent", "date", "subtype", "entity", "_count", "_offset", "_format")
_TICK = timedelta(microseconds=1)


def parse_search(pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """``search_audit`` keywords from AuditEvent search parameters: patient, agent, date (with eq, ge,
    gt, le, lt), subtype (the interaction), entity (``Type/id``). Anything else is refused."""
    kw: dict[str, Any] = {}
    lows: list[datetime] = []
    highs: list[datetime] = []  # exclusive
    for name, value in pairs:
        if name not in SEARCH_PARAMS:
            raise InvalidError(f"AuditEvent search does not support '{name}'; use one of "
                               f"{', '.join(SEARCH_PARAMS[:5])}", code="not-supported", expression=[name])
        if name in ("_count", "_offset", "_format"):
            continue
        if name == "date":
            prefix, raw = (value[:2], value[2:]) if value[:2] in ("eq", "ge", "gt", "le", "lt") else ("eq", value)
            try:
                low, high = parse_fhir_date(raw)
            except ValueError as exc:
                raise InvalidError(f"date: {exc}", expression=["date"]) from exc
            if prefix in ("eq", "ge"):
                lows.append(low)
            if prefix in ("eq", "le"):
                highs.append(high + _TICK)
            if prefix == "gt":
                lows.append(high + _TICK)
            if prefix == "lt":
                highs.append(low)
        elif name == "patient":
            kw["patient"] = value.removeprefix("Patient/")
        elif name == "subtype":
            kw["interaction"] = value.rpartition("|")[2]
        else:
            kw[name] = value
    if lows:
        kw["date_from"] = max(lows)
    if highs:
        kw["date_to"] = min(highs)
    return kw


def search_bundle(session: Session, pairs: Iterable[tuple[str, str]], *, base: str, count: int = 50,
                  offset: int = 0, patient_id: str | None = None) -> dict:
    """A searchset Bundle of AuditEvents (the caller adds the paging links).

    ``patient_id`` narrows to one patient's access log whatever the parameters say: pass the
    signed-in patient's own id for a patient, None for an auditor.
    """
    kw = parse_search(pairs)
    if patient_id is not None:
        kw["patient"] = patient_id
    events, total = search_audit(session, **kw, count=count, offset=offset, base_url=base, for_patient=patient_id)
    return {"resourceType": "Bundle", "type": "searchset", "total": total,
            "entry": [{"fullUrl": f"{base}/AuditEvent/{e['id']}", "resource": e, "search": {"mode": "match"}}
                      for e in events]}


def read_audit_event(session: Session, event_id: str, *, base: str | None = None,
                     patient_id: str | None = None) -> dict:
    """One AuditEvent by id (its seq); with ``patient_id``, only one that touched that patient's data."""
    stmt = select(A).where(A.c.seq == int(event_id)) if event_id.isdigit() else None
    if stmt is not None and patient_id is not None:
        stmt = stmt.where(A.c.pk.in_(select(AP.c.audit_pk).where(AP.c.patient_id == patient_id)))
    row = session.execute(stmt).first() if stmt is not None else None
    if row is None:
        raise NotFoundError(f"AuditEvent/{event_id} is not known")
    return to_audit_event(row, base_url=base, for_patient=patient_id)
