"""The SQL of registration: the UHID counters and look-ups in the store's token index."""

from __future__ import annotations

import orjson
from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from himhis.models import Resource, TokenIndex, UhidSequence
from himhis.systems import FACILITY, UHID

R = Resource.__table__
TOK = TokenIndex.__table__
SEQ = UhidSequence.__table__


def next_number(session: Session, facility: str, year: int) -> int:
    """Increment the facility's counter for the year (creating it at 1) and return the new value.

    One statement, ``INSERT … ON CONFLICT DO UPDATE … RETURNING``: on PostgreSQL it takes the row
    lock, so a concurrent registration waits for this transaction to end and then counts on from the
    committed value; SQLite writers are already serial (BEGIN IMMEDIATE).
    """
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert(SEQ).values(facility=facility, year=year, last=1)
    stmt = stmt.on_conflict_do_update(index_elements=[SEQ.c.facility, SEQ.c.year],
                                      set_={"last": SEQ.c.last + 1}).returning(SEQ.c.last)
    return session.execute(stmt).scalar_one()


def uhid_in_use(session: Session, uhid: str) -> bool:
    """Whether a stored Patient already carries this UHID (an imported record, say)."""
    stmt = select(TOK.c.pk).where(TOK.c.param == "identifier", TOK.c.system == UHID, TOK.c.code == uhid,
                                  TOK.c.res_type == "Patient").limit(1)
    return session.execute(stmt).first() is not None


def facility_organization(session: Session, facility: str) -> tuple[str, str | None] | None:
    """The id and name of the Organization identified as this facility (``himhis.systems.FACILITY``)."""
    stmt = (select(R.c.res_id, R.c.content).join(TOK, TOK.c.resource_pk == R.c.pk)
            .where(TOK.c.res_type == "Organization", TOK.c.param == "identifier", TOK.c.system == FACILITY,
                   TOK.c.code == facility, R.c.deleted.is_(False))
            .order_by(R.c.pk).limit(1))
    row = session.execute(stmt).first()
    if row is None:
        return None
    return row.res_id, orjson.loads(row.content).get("name") if row.content else None
