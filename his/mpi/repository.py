"""The SQL of the master patient index: what refers to a patient, from the store's reference index."""

from __future__ import annotations

from sqlalchemy import Row, select
from sqlalchemy.orm import Session

from ehr.repository import CURRENT
from himhis.models import ReferenceIndex, Resource

R = Resource.__table__
REF = ReferenceIndex.__table__


def referring(session: Session, patient_id: str) -> list[Row]:
    """The current, live resources (other than Patients) whose references name ``Patient/<id>``, locked
    for update, in a stable order."""
    pks = select(REF.c.resource_pk).where(REF.c.target_type == "Patient", REF.c.target_id == patient_id)
    stmt = (select(*CURRENT).where(R.c.pk.in_(pks), R.c.res_type != "Patient", R.c.deleted.is_(False))
            .order_by(R.c.pk))
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update(of=R)
    return list(session.execute(stmt).all())
