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

import time
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache, lru_cache

from sqlalchemy import BindParameter, ColumnElement, Row, Select, String, bindparam, false, literal, or_, select
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


def _v(value: str) -> BindParameter:
    """A constant of the scope SQL, written into the statement's text rather than sent as a parameter:
    PostgreSQL plans a prepared statement once for all parameter values (a generic plan), and only with
    the constants in view does it keep the per-row index lookups that make a scope check cheap."""
    return literal(value, String, literal_execute=True)


def _vs(values: Iterable[str]) -> list[BindParameter]:
    return [_v(v) for v in values]


def facility_organizations(facility: str):
    """SELECT the ids of a facility's Organization (identified by ``himhis.systems.FACILITY``) and of its
    departments (``partOf`` it): a handful of rows, whatever the size of the record."""
    tok = TokenIndex.__table__
    org, dept, part = R.alias("fac_org"), R.alias("fac_dept"), REF.alias("fac_part")
    own = (select(org.c.res_id.label("id")).join(tok, tok.c.resource_pk == org.c.pk)
           .where(tok.c.res_type == _v("Organization"), tok.c.param == _v("identifier"), tok.c.system == _v(FACILITY),
                  tok.c.code == _v(facility)))
    departments = (select(dept.c.res_id.label("id")).join(part, part.c.resource_pk == dept.c.pk)
                   .where(part.c.res_type == _v("Organization"), part.c.param == _v("partof"),
                          part.c.target_type == _v("Organization"), part.c.target_id.in_(own)))
    return own.union(departments)


# The Organizations of each facility, per database: they change rarely (a new department), so they are
# looked up once and kept until an Organization is written in this process (``organizations_changed``)
# or, for writes made by other processes, for at most ORG_CACHE_SECONDS.
ORG_CACHE_SECONDS = 30.0
_org_cache: dict[tuple[str, str], tuple[int, float, tuple[str, ...]]] = {}
_org_generation = 0


def organizations_changed() -> None:
    """Forget the facilities' Organizations (called when an Organization is written)."""
    global _org_generation
    _org_generation += 1


def facility_organization_ids(session: Session, facility: str) -> tuple[str, ...]:
    """The ids of a facility's Organization and departments (``facility_organizations``), cached."""
    key = (session.get_bind().url.render_as_string(hide_password=True), facility)
    hit = _org_cache.get(key)
    now = time.monotonic()
    if hit is not None and hit[0] == _org_generation and hit[1] > now:
        return hit[2]
    generation = _org_generation
    ids = tuple(sorted(session.execute(facility_organizations(facility)).scalars()))
    _org_cache[key] = (generation, now + ORG_CACHE_SECONDS, ids)
    return ids


def at_facility(res_type: str, res: TableClause | Alias, orgs) -> ColumnElement[bool]:
    """Whether the resource ``res`` (of ``res_type``) is the data of a patient registered at one of
    ``orgs`` (Patient.managingOrganization) or seen there (an Encounter whose serviceProvider is one).

    Each test is one EXISTS correlated on the resource in hand and joined outwards through the
    reference index, so checking a resource costs a few index lookups however many patients the
    facility has, and PostgreSQL's generic plans (prepared statements) keep that shape.
    """
    in_orgs = _vs(orgs) if isinstance(orgs, tuple | list) else orgs  # the values, or a subquery

    def registration(ref: Alias) -> list[ColumnElement[bool]]:  # Patient.managingOrganization
        return [ref.c.param == _v("organization"), ref.c.target_type == _v("Organization"),
                ref.c.target_id.in_(in_orgs)]

    def visit(enc: Alias, sp: Alias, patient: ColumnElement) -> list[ColumnElement[bool]]:  # Encounter there
        return [enc.c.res_type == _v("Encounter"), enc.c.param == _v("patient"), enc.c.target_type == _v("Patient"),
                enc.c.target_id == patient, sp.c.resource_pk == enc.c.resource_pk,
                sp.c.param == _v("service-provider"), sp.c.target_type == _v("Organization"),
                sp.c.target_id.in_(in_orgs)]

    tests = []
    if res_type == "Patient":  # the patient itself
        own, enc0, sp0 = REF.alias("fac_own"), REF.alias("fac_enc0"), REF.alias("fac_sp0")
        tests.append(select(own.c.pk).where(own.c.resource_pk == res.c.pk, *registration(own)).exists())
        tests.append(select(enc0.c.pk).where(*visit(enc0, sp0, res.c.res_id)).exists())
    params = compartment_params(res_type)  # for a Patient: "link", the records merged with it
    if not params:
        return or_(*tests)

    def of_patient(comp: Alias) -> list[ColumnElement[bool]]:  # the resource's compartment references
        return [comp.c.resource_pk == res.c.pk, comp.c.param.in_(_vs(params)), comp.c.target_type == _v("Patient")]

    comp, pat, reg = REF.alias("fac_comp"), R.alias("fac_pat"), REF.alias("fac_reg")
    registered = select(comp.c.pk).where(*of_patient(comp), pat.c.res_type == _v("Patient"),
                                         pat.c.res_id == comp.c.target_id, reg.c.resource_pk == pat.c.pk,
                                         *registration(reg))
    comp2, enc, sp = REF.alias("fac_comp2"), REF.alias("fac_enc"), REF.alias("fac_sp")
    seen = select(comp2.c.pk).where(*of_patient(comp2), *visit(enc, sp, comp2.c.target_id))
    return or_(*tests, registered.exists(), seen.exists())


def _organizations_identified(system: str, value: str):
    """SELECT the ids of the Organizations carrying identifier ``system|value``."""
    tok, org = TokenIndex.__table__, R.alias("id_org")
    return (select(org.c.res_id).join(tok, tok.c.resource_pk == org.c.pk)
            .where(tok.c.res_type == _v("Organization"), tok.c.param == _v("identifier"), tok.c.system == _v(system),
                   tok.c.code == _v(value)))


def _referencing(res_type: str, params: tuple[str, ...], target_type: str, targets):
    """SELECT the pks of ``res_type`` resources whose ``params`` reference one of ``targets``."""
    ref = REF.alias(f"lab_{res_type.lower()}_{params[0].replace('-', '_')}")
    return select(ref.c.resource_pk).where(ref.c.res_type == _v(res_type), ref.c.param.in_(_vs(params)),
                                           ref.c.target_type == _v(target_type), ref.c.target_id.in_(targets))


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
                                                     subject.c.param == _v("subject"),
                                                     subject.c.target_type == _v("Patient"))
        return res.c.pk.in_(_referencing("Specimen", ("subject", "patient"), "Patient", patients))
    return false()


@dataclass(frozen=True, slots=True)
class Scope:
    """No restriction, one patient's compartment, the patients of one facility, or a laboratory's orders."""

    patient_id: str | None = None
    facility: str | None = None
    also: tuple[str, ...] = ()  # patients opened beyond the facility by break-glass
    reason: str | None = None  # the break-glass reason in force, for the audit record
    laboratory: str | None = None  # the OIDC client id of a laboratory system
    # The ids of the facility's Organizations (``facility_organization_ids``); None: found by a subquery
    facility_orgs: tuple[str, ...] | None = None

    @classmethod
    def of_facility(cls, session: Session, facility: str, **kw) -> Scope:
        """The scope of a facility's staff, with its Organizations looked up once for the request."""
        return cls(facility=facility, facility_orgs=facility_organization_ids(session, facility), **kw)

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
        return _clause(self.patient_id, self.facility, self.facility_orgs, self.also, self.laboratory, res_type, res)

    def visible(self, session: Session, res_type: str, pks: Iterable[int]) -> set[int]:
        """Which of these resources of one type the scope lets through."""
        pks = list(pks)
        if self.unrestricted or res_type not in patient_data_types() or not pks:
            return set(pks)
        stmt = _visible(self.patient_id, self.facility, self.facility_orgs, self.also, self.laboratory, res_type)
        return set(session.execute(stmt, {"scope_pks": pks}).scalars())


    def current(self, session: Session, res_type: str, res_id: str) -> Row | None:
        """The current row of a resource if the scope lets it through (one statement), else None."""
        from ehr.repository import current

        if self.unrestricted or res_type not in patient_data_types():
            return current(session, res_type, res_id)
        stmt = _current(self.patient_id, self.facility, self.facility_orgs, self.also, self.laboratory, res_type)
        return session.execute(stmt, {"scope_id": res_id}).one_or_none()


# The statements are built once per scope and type and reused, so SQLAlchemy finds them in its
# compiled cache instead of building and compiling the facility's subqueries on every request.
@lru_cache(maxsize=1024)
def _clause(patient_id: str | None, facility: str | None, orgs: tuple[str, ...] | None, also: tuple[str, ...],
            laboratory: str | None,
            res_type: str, res: TableClause | Alias) -> ColumnElement[bool]:
    if laboratory is not None:
        return laboratory_clause(laboratory, res_type, res)
    params = compartment_params(res_type)
    if patient_id is not None:  # driven from the patient's references: a semi-join
        refs = select(REF.c.resource_pk).where(REF.c.res_type == _v(res_type), REF.c.param.in_(_vs(params)),
                                               REF.c.target_type == _v("Patient"), REF.c.target_id == _v(patient_id))
        in_compartment = res.c.pk.in_(refs)
        return or_(res.c.res_id == _v(patient_id), in_compartment) if res_type == "Patient" else in_compartment
    comp = REF.alias("scope_comp")
    # The facility's Organizations as values when known (then each check is a few index lookups);
    # as a subquery otherwise.
    orgs = facility_organizations(facility) if orgs is None else orgs
    opened = (res.c.res_id.in_(_vs(also)) if res_type == "Patient" else
              select(comp.c.pk).where(comp.c.resource_pk == res.c.pk, comp.c.param.in_(_vs(params)),
                                      comp.c.target_type == _v("Patient"), comp.c.target_id.in_(_vs(also))).exists())
    return or_(at_facility(res_type, res, orgs), opened) if also else at_facility(res_type, res, orgs)


@lru_cache(maxsize=1024)
def _current(patient_id: str | None, facility: str | None, orgs: tuple[str, ...] | None, also: tuple[str, ...],
             laboratory: str | None,
             res_type: str) -> Select:
    from ehr.repository import CURRENT

    clause = _clause(patient_id, facility, orgs, also, laboratory, res_type, R)
    return select(*CURRENT).where(R.c.res_type == _v(res_type), R.c.res_id == bindparam("scope_id"), clause)


@lru_cache(maxsize=1024)
def _visible(patient_id: str | None, facility: str | None, orgs: tuple[str, ...] | None, also: tuple[str, ...],
             laboratory: str | None,
             res_type: str) -> Select:
    clause = _clause(patient_id, facility, orgs, also, laboratory, res_type, R)
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
