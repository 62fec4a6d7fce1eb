"""The SQL of the FHIR store: current rows, versions and search-index rows (HAPI FHIR JPA layout)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from functools import cache

import psycopg
from sqlalchemy import Row, bindparam, delete, func, insert, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ehr import scope
from ehr.search.extract import (
    DateValue,
    NumberValue,
    QuantityValue,
    ReferenceValue,
    StringValue,
    TokenValue,
    UriValue,
)
from ehr.search.normalize import normalize_string
from himhis.errors import ConflictError
from himhis.models import (
    DateIndex,
    NumberIndex,
    QuantityIndex,
    ReferenceIndex,
    Resource,
    ResourceVersion,
    StringIndex,
    TokenIndex,
    UriIndex,
)

R = Resource.__table__
V = ResourceVersion.__table__
INDEX_TABLES = [m.__table__ for m in (StringIndex, TokenIndex, DateIndex, NumberIndex, QuantityIndex,
                                      UriIndex, ReferenceIndex)]
CURRENT = (R.c.pk, R.c.res_type, R.c.res_id, R.c.version_id, R.c.last_updated, R.c.deleted, R.c.content)


def utcnow() -> datetime:
    """Now, naive UTC, at the millisecond precision that ``meta.lastUpdated`` carries."""
    now = datetime.now(UTC).replace(tzinfo=None)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


@dataclass(slots=True)
class Pending:
    """One write to apply: a new version of a resource (``text`` is None for a deletion)."""

    res_type: str
    res_id: str
    version_id: int
    last_updated: datetime
    method: str
    text: str | None
    values: Sequence[object] = ()
    pk: int | None = None
    prev_version: int | None = None
    replaced: str | None = None  # the JSON of the live version this one replaces (whose patients it also touches)


_TABLE_OF_TYPE = {"string": "idx_string", "token": "idx_token", "date": "idx_date", "number": "idx_number",
                  "quantity": "idx_quantity", "uri": "idx_uri", "reference": "idx_reference"}


@cache
def index_tables_for(res_type: str) -> tuple:
    """The index tables a resource type can have rows in (from its search parameters' types).

    Reference parameters also index ``:identifier`` tokens, and every type has ``_tag`` tokens.
    """
    from ehr.search.registry import params_for

    names = {_TABLE_OF_TYPE[p.type] for p in params_for(res_type).values() if p.type in _TABLE_OF_TYPE}
    names |= {"idx_token", "idx_uri", "idx_string"}  # _tag/_security, _profile/_source, :identifier
    return tuple(t for t in INDEX_TABLES if t.name in names)


_CURRENT = select(*CURRENT).where(R.c.res_type == bindparam("res_type"), R.c.res_id == bindparam("res_id"))
_CURRENT_FOR_UPDATE = _CURRENT.with_for_update()


def current(session: Session, res_type: str, res_id: str, *, lock: bool = False) -> Row | None:
    """The current row of a resource; ``lock`` holds it for this transaction (SELECT … FOR UPDATE)."""
    stmt = _CURRENT_FOR_UPDATE if lock and session.bind.dialect.name != "sqlite" else _CURRENT
    return session.execute(stmt, {"res_type": res_type, "res_id": res_id}).one_or_none()


def current_many(session: Session, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], Row]:
    """Current rows for many (type, id) pairs in few queries."""
    by_type: dict[str, set[str]] = defaultdict(set)
    for t, i in keys:
        by_type[t].add(i)
    found: dict[tuple[str, str], Row] = {}
    for t, ids in by_type.items():
        ids_l = sorted(ids)
        for start in range(0, len(ids_l), 500):
            stmt = select(*CURRENT).where(R.c.res_type == t, R.c.res_id.in_(ids_l[start:start + 500]))
            for row in session.execute(stmt):
                found[(row.res_type, row.res_id)] = row
    return found


def version(session: Session, res_type: str, res_id: str, version_id: int) -> Row | None:
    stmt = select(V.c.res_type, V.c.res_id, V.c.version_id, V.c.last_updated, V.c.deleted, V.c.content,
                  V.c.method).where(V.c.res_type == res_type, V.c.res_id == res_id,
                                    V.c.version_id == version_id)
    return session.execute(stmt).one_or_none()


def lock_key(session: Session, key: int) -> None:
    """Serialise writers on one key until commit (PostgreSQL advisory lock; SQLite writers are serial)."""
    if session.bind.dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})


def write(session: Session, pendings: Sequence[Pending]) -> None:
    """Apply new versions: insert or update current rows, append versions, replace index rows."""
    if not pendings:
        return
    if any(p.res_type == "Organization" for p in pendings):
        scope.organizations_changed()  # a facility may have gained or lost a department
    conn = session.connection()
    new = [p for p in pendings if p.pk is None]
    if new:
        rows = [{"res_type": p.res_type, "res_id": p.res_id, "version_id": p.version_id,
                 "last_updated": p.last_updated, "deleted": p.text is None, "content": p.text} for p in new]
        if conn.dialect.name == "postgresql" and len(rows) >= COPY_AT:
            pks = _copy_new_resources(conn, rows)
        else:
            pks = conn.execute(insert(R).returning(R.c.pk, sort_by_parameter_order=True), rows).scalars().all()
        for p, pk in zip(new, pks, strict=True):
            p.pk = pk
    old = [p for p in pendings if p.prev_version is not None]
    if old:
        stmt = (update(R).where(R.c.pk == bindparam("b_pk"), R.c.version_id == bindparam("b_prev"))
                .values(version_id=bindparam("b_vid"), last_updated=bindparam("b_lu"),
                        deleted=bindparam("b_del"), content=bindparam("b_text")))
        res = conn.execute(stmt, [{"b_pk": p.pk, "b_prev": p.prev_version, "b_vid": p.version_id,
                                   "b_lu": p.last_updated, "b_del": p.text is None, "b_text": p.text}
                                  for p in old])
        if res.rowcount is not None and res.rowcount >= 0 and res.rowcount != len(old):
            raise ConflictError("A resource was changed by another request while this one was writing it; "
                                "read it again and retry")
        by_table: dict = defaultdict(list)
        for p in old:
            for table in index_tables_for(p.res_type):
                by_table[table].append(p.pk)
        for table, pks in by_table.items():
            conn.execute(delete(table).where(table.c.resource_pk.in_(pks)))
    bulk_insert(conn, V, [{"resource_pk": p.pk, "res_type": p.res_type, "res_id": p.res_id,
                           "version_id": p.version_id, "last_updated": p.last_updated,
                           "method": p.method, "deleted": p.text is None, "content": p.text}
                          for p in pendings])
    index_rows: dict[str, list[dict]] = defaultdict(list)
    for p in pendings:
        if p.text is not None:
            for value in p.values:
                table, row = index_row(value)
                row["resource_pk"] = p.pk
                row["res_type"] = p.res_type
                index_rows[table].append(row)
    by_name = {t.name: t for t in INDEX_TABLES}
    for name, rows in index_rows.items():
        bulk_insert(conn, by_name[name], rows)


COPY_AT = 8  # rows from which COPY beats a multi-row INSERT on PostgreSQL


def _copy_new_resources(conn, rows: list[dict]) -> list[int]:
    """New current rows by COPY, their keys drawn from the table's sequence first (COPY returns nothing).

    A clash with an existing (type, id) raises IntegrityError, as the INSERT would, so the unit of work
    is retried (``himhis.db.Database.run``).
    """
    pks = conn.exec_driver_sql(
        f"SELECT nextval(pg_get_serial_sequence('{R.name}', 'pk')) FROM generate_series(1, {len(rows)})"
    ).scalars().all()
    for row, pk in zip(rows, pks, strict=True):
        row["pk"] = pk
    try:
        bulk_insert(conn, R, rows)
    except psycopg.errors.IntegrityError as exc:
        raise IntegrityError(f"COPY {R.name}", None, exc) from exc
    return pks


def bulk_insert(conn, table, rows: list[dict]) -> None:
    """Insert many rows: COPY on PostgreSQL (one round trip, no per-row statement work), else executemany.

    Every row must have the same keys. https://www.postgresql.org/docs/current/sql-copy.html
    """
    if not rows:
        return
    if conn.dialect.name != "postgresql" or len(rows) < COPY_AT:
        conn.execute(insert(table), rows)
        return
    columns = list(rows[0])
    with conn.connection.driver_connection.cursor() as cur, cur.copy(
            f"COPY {table.name} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row([row[c] for c in columns])


def _clip(value: str | None, n: int) -> str | None:
    return value if value is None or len(value) <= n else value[:n]


def _num(value: Decimal | float | None) -> float | None:
    return None if value is None else float(value)


def index_row(v: object) -> tuple[str, dict]:
    """Map an extracted search value to its index table and row."""
    match v:
        case TokenValue():
            return "idx_token", {"param": v.param, "grp": v.group, "system": _clip(v.system, 512),
                                 "code": _clip(v.code, 512), "text": normalize_string(v.text) if v.text else None}
        case StringValue():
            return "idx_string", {"param": v.param, "grp": v.group, "normalized": _clip(v.normalized, 512),
                                  "exact": v.exact}
        case ReferenceValue():
            return "idx_reference", {"param": v.param, "grp": v.group, "target_type": v.target_type,
                                     "target_id": v.target_id, "url": _clip(v.url, 1024)}
        case DateValue():
            return "idx_date", {"param": v.param, "grp": v.group, "low": v.low, "high": v.high}
        case QuantityValue():
            return "idx_quantity", {"param": v.param, "grp": v.group, "value": _num(v.value),
                                    "system": _clip(v.system, 512), "code": _clip(v.code, 128),
                                    "unit": _clip(v.unit, 128), "canonical_value": _num(v.canonical_value),
                                    "canonical_code": _clip(v.canonical_code, 128)}
        case NumberValue():
            return "idx_number", {"param": v.param, "grp": v.group, "value": _num(v.value)}
        case UriValue():
            return "idx_uri", {"param": v.param, "grp": v.group, "uri": _clip(v.uri, 1024)}
    raise TypeError(f"unknown index value {v!r}")


def history(session: Session, *, res_type: str | None = None, res_id: str | None = None,
            since: datetime | None = None, at: datetime | None = None, limit: int = 50,
            offset: int = 0, within=None) -> tuple[list[Row], int]:
    """Versions newest first (https://hl7.org/fhir/R4/http.html#history), and how many there are."""
    cond = []
    if res_type:
        cond.append(V.c.res_type == res_type)
    if res_id:
        cond.append(V.c.res_id == res_id)
    if since:
        cond.append(V.c.last_updated >= since)
    if at:
        cond.append(V.c.last_updated <= at)
    if within is not None:  # a SELECT of the resource pks the caller may see
        cond.append(V.c.resource_pk.in_(within))
    total = session.execute(select(func.count()).select_from(V).where(*cond)).scalar_one()
    stmt = (select(V.c.res_type, V.c.res_id, V.c.version_id, V.c.last_updated, V.c.deleted, V.c.content,
                   V.c.method).where(*cond).order_by(V.c.last_updated.desc(), V.c.pk.desc())
            .limit(limit).offset(offset))
    return list(session.execute(stmt)), total


def contents(session: Session, pks: Sequence[int]) -> list[str]:
    """Current JSON text of live resources by primary key, in the order given."""
    found: dict[int, str] = {}
    for start in range(0, len(pks), 500):
        chunk = pks[start:start + 500]
        for pk, content in session.execute(select(R.c.pk, R.c.content).where(R.c.pk.in_(chunk),
                                                                             R.c.deleted.is_(False))):
            found[pk] = content
    return [found[pk] for pk in pks if pk in found]
