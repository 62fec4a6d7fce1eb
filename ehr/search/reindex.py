"""Rebuilding search indexes after a parameter definition changes, in short batches while serving.

Each batch is its own unit of work: it locks its resources' current rows (on PostgreSQL), replaces
their index rows from the stored JSON, and commits, so readers and writers are never held for long.
"""

from __future__ import annotations

from collections.abc import Callable

import orjson
from sqlalchemy import delete, func, insert, select
from sqlalchemy.orm import Session

from ehr import repository as repo
from ehr.search.extract import extract
from himhis.db import Database

R = repo.R


def count(db: Database, res_type: str) -> int:
    return db.run(lambda s: s.execute(select(func.count()).select_from(R).where(
        R.c.res_type == res_type, R.c.deleted.is_(False))).scalar_one(), write=False)


def reindex(db: Database, res_type: str, *, batch: int = 500,
            progress: Callable[[int], None] | None = None) -> int:
    """Re-extract the search values of every live resource of a type; return how many."""
    after, done = 0, 0
    while True:
        last, n = db.run(lambda s, a=after: _batch(s, res_type, a, batch))
        if not n:
            return done
        after, done = last, done + n
        if progress:
            progress(n)


def _batch(session: Session, res_type: str, after: int, size: int) -> tuple[int, int]:
    stmt = (select(R.c.pk, R.c.res_type, R.c.content).where(R.c.res_type == res_type, R.c.pk > after,
                                                            R.c.deleted.is_(False))
            .order_by(R.c.pk).limit(size))
    if session.bind.dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    rows = session.execute(stmt).all()
    if not rows:
        return after, 0
    pks = [r.pk for r in rows]
    for table in repo.INDEX_TABLES:
        session.execute(delete(table).where(table.c.resource_pk.in_(pks)))
    by_table: dict[str, list[dict]] = {}
    for r in rows:
        for value in extract(orjson.loads(r.content)):
            name, row = repo.index_row(value)
            by_table.setdefault(name, []).append(row | {"resource_pk": r.pk, "res_type": r.res_type})
    tables = {t.name: t for t in repo.INDEX_TABLES}
    for name, values in by_table.items():
        session.execute(insert(tables[name]), values)
    return pks[-1], len(rows)
