"""Which resources a caller may see at all: a patient's compartment, or a facility's patients.

https://hl7.org/fhir/R4/compartmentdefinition-patient.html — a resource is in Patient/p's
compartment when one of its compartment parameters references Patient/p (or it is Patient/p).
Scoping is applied here, once, as SQL over the reference index, and every read path of the store
(read, vread, history, search, includes, $everything, bundle GETs) goes through it. Outside the
scope a resource answers exactly as a resource that does not exist.

Facility scope: staff of a facility see the patients registered there (Patient.managingOrganization
is the facility's Organization, identified by ``himhis.systems.FACILITY``, or one of its departments)
or with an Encounter there (Encounter.serviceProvider likewise), and those patients' compartments.

Laboratory scope: a laboratory system's client (``himhis.systems.OIDC_CLIENT`` identifies its
Organization) sees the orders addressed to it (ServiceRequest.performer, Task.owner), the results
based on those orders or performed by it, and the specimens of the patients it has orders for; it
does not browse patients. What it writes must land inside that scope.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache, lru_cache

from sqlalchemy import ColumnElement, Row, Select, bindparam, false, or_, select
from sqlalchemy.orm import Session
from sqlalchemy.sql import Alias, TableClause

from ehr.search import registry
from himhis.models import ReferenceIndex, Resource, TokenIndex
from himhis.systems import FACILITY, OIDC_CLIENT

R = Resource.__table__
REF = ReferenceIndex.__table__


@cache
def compartment_params(res_type: str) -> tuple[str, ...]:
    return tuple(registry.patient_compartment_params(res_type))


@cache
def patient_data_types() -> frozenset[str]:
    return frozenset({"Patient"} | {t for t in registry.resource_types() if compartment_params(t)})


def facility_patients(facility: str):
    """SELECT the ids of the patients registered at, or seen at, a facility.

    Built from common table expressions with joins, which keeps the statement shallow enough for
    SQLite's parser as well as PostgreSQL's planner.
    """
    tok = TokenIndex.__table__
    org, part = R.alias("fac_org"), REF.alias("fac_part")
    own = (select(org.c.res_id.label("id")).join(tok, tok.c.resource_pk == org.c.pk)
           .where(tok.c.res_type == "Organization", tok.c.param == "identifier", tok.c.system == FACILITY,
                  tok.c.code == facility))
    own_cte = own.cte(f"fac_own_{_tag(facility)}")
    departments = (select(org.c.res_id.label("id")).join(part, part.c.resource_pk == org.c.pk)
                   .join(own_cte, own_cte.c.id == part.c.target_id)
                   .where(part.c.res_type == "Organization", part.c.param == "partof"))
    orgs = own.union(departments).cte(f"fac_orgs_{_tag(facility)}")
    reg = REF.alias("fac_reg")
    registered = select(org.c.res_id.label("id")).where(org.c.res_type == "Patient", org.c.pk.in_(
        select(reg.c.resource_pk).where(reg.c.target_type == "Organization", reg.c.target_id.in_(select(orgs.c.id)),
                                        reg.c.param == "organization", reg.c.res_type == "Patient")))
    enc, sp = REF.alias("fac_enc"), REF.alias("fac_sp")
    # Driven from the facility's few Organizations towards its Encounters (semi-joins), so the plan is
    # right even before the planner has statistics.
    seen = select(enc.c.target_id.label("id")).where(
        enc.c.res_type == "Encounter", enc.c.param == "patient", enc.c.target_type == "Patient",
        enc.c.resource_pk.in_(select(sp.c.resource_pk).where(
            sp.c.target_type == "Organization", sp.c.target_id.in_(select(orgs.c.id)),
            sp.c.param == "service-provider", sp.c.res_type == "Encounter")))
    patients = registered.union(seen).cte(f"fac_patients_{_tag(facility)}")
    return select(patients.c.id)


def _organizations_identified(system: str, value: str):
    """SELECT the ids of the Organizations carrying identifier ``system|value``."""
    tok, org = TokenIndex.__table__, R.alias("id_org")
    return (select(org.c.res_id).join(tok, tok.c.resource_pk == org.c.pk)
            .where(tok.c.res_type == "Organization", tok.c.param == "identifier", tok.c.system == system,
                   tok.c.code == value))


def _referencing(res_type: str, params: tuple[str, ...], target_type: str, targets):
    """SELECT the pks of ``res_type`` resources whose ``params`` reference one of ``targets``."""
    ref = REF.alias(f"lab_{res_type.lower()}_{params[0].replace('-', '_')}")
    return select(ref.c.resource_pk).where(ref.c.res_type == res_type, ref.c.param.in_(params),
                                           ref.c.target_type == target_type, ref.c.target_id.in_(targets))


LAB_RESULT_TYPES = ("Observation", "DiagnosticReport")


def laboratory_clause(client_id: str, res_type: str, res: TableClause | Alias = R) -> ColumnElement[bool]:
    """What a laboratory client sees of ``res_type``: orders addressed to it and what hangs off them."""
    labs = _organizations_identified(OIDC_CLIENT, client_id)
    orders = _referencing("ServiceRequest", ("performer",), "Organization", labs)
    if res_type == "ServiceRequest":
        return res.c.pk.in_(orders)
    if res_type == "Task":
        return res.c.pk.in_(_referencing("Task", ("owner",), "Organization", labs))
    if res_type in LAB_RESULT_TYPES:
        order = R.alias("lab_order")
        order_ids = select(order.c.res_id).where(order.c.pk.in_(orders))
        return or_(res.c.pk.in_(_referencing(res_type, ("based-on",), "ServiceRequest", order_ids)),
                   res.c.pk.in_(_referencing(res_type, ("performer",), "Organization", labs)))
    if res_type == "Specimen":
        subject = REF.alias("lab_order_subject")
        patients = select(subject.c.target_id).where(subject.c.resource_pk.in_(orders),
                                                     subject.c.param == "subject", subject.c.target_type == "Patient")
        return res.c.pk.in_(_referencing("Specimen", ("subject", "patient"), "Patient", patients))
    return false()


def _tag(facility: str) -> str:
    return "".join(ch for ch in facility.lower() if ch.isalnum())[:20] or "x"


@dataclass(frozen=True, slots=True)
class Scope:
    """No restriction, one patient's compartment, the patients of one facility, or a laboratory's orders."""

    patient_id: str | None = None
    facility: str | None = None
    also: tuple[str, ...] = ()  # patients opened beyond the facility by break-glass
    reason: str | None = None  # the break-glass reason in force, for the audit record
    laboratory: str | None = None  # the OIDC client id of a laboratory system

    @property
    def unrestricted(self) -> bool:
        return self.patient_id is None and self.facility is None and self.laboratory is None

    @property
    def checks_writes(self) -> bool:
        """Whether what the caller writes must itself fall inside the scope (a laboratory's results)."""
        return self.laboratory is not None

    def clause(self, res_type: str, res: TableClause | Alias = R) -> ColumnElement[bool] | None:
        """An extra WHERE on ``res`` for resources of ``res_type``; None when nothing is hidden."""
        if self.unrestricted or res_type not in patient_data_types():
            return None
        return _clause(self.patient_id, self.facility, self.also, self.laboratory, res_type, res)

    def visible(self, session: Session, res_type: str, pks: Iterable[int]) -> set[int]:
        """Which of these resources of one type the scope lets through."""
        pks = list(pks)
        if self.unrestricted or res_type not in patient_data_types() or not pks:
            return set(pks)
        stmt = _visible(self.patient_id, self.facility, self.also, self.laboratory, res_type)
        return set(session.execute(stmt, {"scope_pks": pks}).scalars())


    def current(self, session: Session, res_type: str, res_id: str) -> Row | None:
        """The current row of a resource if the scope lets it through (one statement), else None."""
        from ehr.repository import current

        if self.unrestricted or res_type not in patient_data_types():
            return current(session, res_type, res_id)
        stmt = _current(self.patient_id, self.facility, self.also, self.laboratory, res_type)
        return session.execute(stmt, {"scope_id": res_id}).one_or_none()


# The statements are built once per scope and type and reused, so SQLAlchemy finds them in its
# compiled cache instead of building and compiling the facility's subqueries on every request.
@lru_cache(maxsize=1024)
def _clause(patient_id: str | None, facility: str | None, also: tuple[str, ...], laboratory: str | None,
            res_type: str, res: TableClause | Alias) -> ColumnElement[bool]:
    if laboratory is not None:
        return laboratory_clause(laboratory, res_type, res)
    if patient_id is not None:
        patients = REF.c.target_id == patient_id
        is_patient = res.c.res_id == patient_id
    else:
        ids = facility_patients(facility)
        patients = or_(REF.c.target_id.in_(ids), REF.c.target_id.in_(also))
        is_patient = or_(res.c.res_id.in_(ids), res.c.res_id.in_(also))
    refs = select(REF.c.resource_pk).where(REF.c.res_type == res_type,
                                           REF.c.param.in_(compartment_params(res_type)),
                                           REF.c.target_type == "Patient", patients)
    in_compartment = res.c.pk.in_(refs)
    return or_(is_patient, in_compartment) if res_type == "Patient" else in_compartment


@lru_cache(maxsize=1024)
def _current(patient_id: str | None, facility: str | None, also: tuple[str, ...], laboratory: str | None,
             res_type: str) -> Select:
    from ehr.repository import CURRENT

    clause = _clause(patient_id, facility, also, laboratory, res_type, R)
    return select(*CURRENT).where(R.c.res_type == res_type, R.c.res_id == bindparam("scope_id"), clause)


@lru_cache(maxsize=1024)
def _visible(patient_id: str | None, facility: str | None, also: tuple[str, ...], laboratory: str | None,
             res_type: str) -> Select:
    clause = _clause(patient_id, facility, also, laboratory, res_type, R)
    return select(R.c.pk).where(R.c.pk.in_(bindparam("scope_pks", expanding=True)), clause)


def patients_of(session: Session, rows: Iterable) -> list[str]:
    """Ids of the patients whose data these resource rows (pk, res_type, res_id) are."""
    rows = list(rows)
    out = {r.res_id for r in rows if r.res_type == "Patient"}
    by_type: dict[str, list[int]] = {}
    for r in rows:
        if r.res_type != "Patient" and compartment_params(r.res_type):
            by_type.setdefault(r.res_type, []).append(r.pk)
    for res_type, pks in by_type.items():
        out |= set(session.execute(select(REF.c.target_id).distinct().where(
            REF.c.resource_pk.in_(pks), REF.c.param.in_(compartment_params(res_type)),
            REF.c.target_type == "Patient")).scalars())
    return sorted(i for i in out if i)
