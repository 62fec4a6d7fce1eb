"""Which resources a caller may see at all: the patient compartment of a patient's token.

https://hl7.org/fhir/R4/compartmentdefinition-patient.html — a resource is in Patient/p's
compartment when one of its compartment parameters references Patient/p (or it is Patient/p).
Scoping is applied here, once, as SQL over the reference index, and every read path of the store
(read, vread, history, search, includes, $everything, bundle GETs) goes through it. Outside the
scope a resource answers exactly as a resource that does not exist.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache

from sqlalchemy import ColumnElement, or_, select
from sqlalchemy.orm import Session
from sqlalchemy.sql import Alias, TableClause

from ehr.search import registry
from himhis.models import ReferenceIndex, Resource

R = Resource.__table__
REF = ReferenceIndex.__table__


@cache
def compartment_params(res_type: str) -> tuple[str, ...]:
    return tuple(registry.patient_compartment_params(res_type))


@cache
def patient_data_types() -> frozenset[str]:
    return frozenset({"Patient"} | {t for t in registry.resource_types() if compartment_params(t)})


@dataclass(frozen=True, slots=True)
class Scope:
    """No restriction, or one patient's compartment."""

    patient_id: str | None = None

    @property
    def unrestricted(self) -> bool:
        return self.patient_id is None

    def clause(self, res_type: str, res: TableClause | Alias = R) -> ColumnElement[bool] | None:
        """An extra WHERE on ``res`` for resources of ``res_type``; None when nothing is hidden."""
        if self.patient_id is None or res_type not in patient_data_types():
            return None
        refs = select(REF.c.resource_pk).where(REF.c.res_type == res_type,
                                               REF.c.param.in_(compartment_params(res_type)),
                                               REF.c.target_type == "Patient", REF.c.target_id == self.patient_id)
        in_compartment = res.c.pk.in_(refs)
        return or_(res.c.res_id == self.patient_id, in_compartment) if res_type == "Patient" else in_compartment

    def visible(self, session: Session, res_type: str, pks: Iterable[int]) -> set[int]:
        """Which of these resources of one type the scope lets through."""
        pks = list(pks)
        clause = self.clause(res_type)
        if clause is None or not pks:
            return set(pks)
        return set(session.execute(select(R.c.pk).where(R.c.pk.in_(pks), clause)).scalars())


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
