"""Recording audited interactions: an append-only, hash-chained log in the caller's transaction.

What is recorded follows FHIR AuditEvent (https://hl7.org/fhir/R4/auditevent.html): who (user,
roles, facility, client), what (interaction, resource, patients), when, from where, the outcome and
any break-glass reason. Each record's ``hash`` is SHA-256 over a canonical serialisation of its
fields and the previous record's hash, so ``audit.verify`` finds any record edited, deleted,
reordered or cut off the end.

Usage: a write records its audit entry in its own unit of work, **as the last step before commit**
(``record(session, entry)``): appending takes the chain lock, which is then held only until commit,
and the audit record is saved or rolled back with the write. A read is audited right after it
(``audit_read(db, entry)``), by a writer thread that appends the reads arriving together in one
short transaction (group commit); the read returns only once its record is committed, and fails if
that fails, so a read is never returned unaudited. ``run_audited`` does both, including failed
attempts.
"""

from __future__ import annotations

import getpass
import hashlib
import logging
import queue
import socket
import threading
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

import orjson
from sqlalchemy import Connection, insert, select, text, update
from sqlalchemy.orm import Session

from himhis.db import Database
from himhis.errors import HimHISError
from himhis.models.audit import AuditHead, AuditPatient, AuditRecord

log = logging.getLogger(__name__)
T = TypeVar("T")

A = AuditRecord.__table__
AP = AuditPatient.__table__
H = AuditHead.__table__

GENESIS = "0" * 64  # prev_hash of record 1
# pg_advisory_xact_lock key serialising appends to the chain (blake2b-64 of "himhis.audit_log").
LOCK_KEY = int.from_bytes(hashlib.blake2b(b"himhis.audit_log", digest_size=8).digest(), "big", signed=True)

# AuditEvent.outcome (https://hl7.org/fhir/R4/valueset-audit-event-outcome.html)
SUCCESS, MINOR_FAILURE, SERIOUS_FAILURE, MAJOR_FAILURE = 0, 4, 8, 12
OUTCOMES = (SUCCESS, MINOR_FAILURE, SERIOUS_FAILURE, MAJOR_FAILURE)
# v3 PurposeOfUse (http://terminology.hl7.org/CodeSystem/v3-ActReason)
TREAT, ETREAT = "TREAT", "ETREAT"

# The fields the hash covers, in this order; changing it invalidates every existing chain.
HASHED = ("seq", "recorded", "actor_subject", "actor_username", "actor_roles", "actor_facility", "client_id",
          "source_ip", "user_agent", "interaction", "resource_type", "resource_id", "version_id", "patient_ids",
          "query", "outcome", "outcome_detail", "purpose_of_use", "break_glass_reason")
# Column lengths: values are cut to fit before hashing, so what is stored is what was hashed.
_LIMITS = {c.name: c.type.length for c in A.columns if getattr(c.type, "length", None)}


@cache
def interactions() -> dict[str, dict[str, str]]:
    """Interaction codes and their AuditEvent action and BALP roles (``audit/data/interactions.json``)."""
    return orjson.loads((Path(__file__).parent / "data" / "interactions.json").read_bytes())["interactions"]


@dataclass(slots=True)
class AuditEntry:
    """What a caller knows about one interaction; ``record`` adds when, the chain position and hashes."""

    interaction: str  # http://hl7.org/fhir/restful-interaction code, or login / logout / break-glass
    actor_subject: str | None = None
    actor_username: str | None = None
    actor_roles: Sequence[str] = ()
    actor_facility: str | None = None
    client_id: str | None = None
    source_ip: str | None = None
    user_agent: str | None = None
    resource_type: str | None = None
    resource_id: str | None = None
    version_id: str | int | None = None
    patient_ids: Iterable[str] = ()  # every Patient id whose data was read or written (searches: returned)
    query: str | None = None  # the search or operation parameters, as received
    outcome: int = SUCCESS
    outcome_detail: str | None = None  # e.g. "404 Patient/x is not known"
    purpose_of_use: str | None = None  # TREAT, ETREAT (break-glass), …
    break_glass_reason: str | None = None

    @classmethod
    def by(cls, principal: Any, interaction: str, **kw: Any) -> AuditEntry:
        """An entry for ``interaction`` by an ``identity.principal.Principal`` (or anything shaped like one)."""
        return cls(interaction=interaction, actor_subject=getattr(principal, "subject", None),
                   actor_username=getattr(principal, "username", None),
                   actor_roles=tuple(sorted(getattr(principal, "roles", ()) or ())),
                   actor_facility=getattr(principal, "facility", None),
                   client_id=getattr(principal, "client_id", None), **kw)

    def failed(self, status: int, message: str) -> AuditEntry:
        """This entry with the outcome of a refused or failed interaction (HTTP ``status``)."""
        code = MINOR_FAILURE if status < 500 else SERIOUS_FAILURE
        return replace(self, outcome=code, outcome_detail=f"{status} {message}")

    def failed_with(self, exc: BaseException) -> AuditEntry:
        """This entry with the outcome of an exception (a HimHISError carries its HTTP status)."""
        if isinstance(exc, HimHISError):
            return self.failed(exc.status, exc.message)
        return self.failed(500, f"{type(exc).__name__}: {exc}")


def command_line_entry(interaction: str, *, client_id: str = "himhis-cli", **kw: Any) -> AuditEntry:
    """An entry for work done from the ``himhis`` command line, by the operating-system user running it."""
    user = getpass.getuser()
    host = socket.gethostname()
    return AuditEntry(interaction=interaction, actor_subject=f"os:{user}@{host}", actor_username=user,
                      client_id=client_id, source_ip=host, user_agent="himhis command line", **kw)


def audit_bundle_hook(entry: AuditEntry) -> Callable[[Session, dict], None]:
    """A ``ehr.bundle.process(audit=...)`` hook recording each processed transaction (or batch entry)
    as ``entry`` with the patients whose data it wrote, in that unit of work."""
    from audit.describe import of_bundle

    def hook(session: Session, response: dict, written: Sequence[Any] | None = None) -> None:
        record(session, replace(entry, **of_bundle(session, response, written)))

    return hook


def utcnow() -> datetime:
    """Now, naive UTC, to the millisecond (what AuditEvent.recorded carries and both databases keep)."""
    now = datetime.now(UTC).replace(tzinfo=None)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def canonical(row: Mapping[str, Any]) -> bytes:
    """The bytes a record's hash covers: its fields as sorted-key JSON (times as ISO 8601 with ms)."""
    values = {}
    for name in HASHED:
        value = row[name]
        if isinstance(value, datetime):
            value = value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}"
        values[name] = value
    return orjson.dumps(values, option=orjson.OPT_SORT_KEYS)


def chain_hash(row: Mapping[str, Any], prev_hash: str) -> str:
    """SHA-256 (hex) of the previous record's hash and this record's canonical fields."""
    return hashlib.sha256(prev_hash.encode("ascii") + b"\n" + canonical(row)).hexdigest()


def _clean(value: Any, name: str) -> Any:
    if value is None:
        return None
    value = str(value).strip()
    if not value:
        return None
    limit = _LIMITS.get(name)
    return value[:limit] if limit else value


def _row(entry: AuditEntry) -> dict[str, Any]:
    if entry.interaction not in interactions():
        raise ValueError(f"'{entry.interaction}' is not an audited interaction; use one of "
                         f"{', '.join(sorted(interactions()))}")
    if entry.outcome not in OUTCOMES:
        raise ValueError(f"outcome {entry.outcome} is not an AuditEvent outcome code (0, 4, 8, 12)")
    patients = list(dict.fromkeys(p.strip() for p in entry.patient_ids if p and p.strip()))
    bad = [p for p in patients if "," in p]
    if bad:
        raise ValueError(f"a Patient id cannot contain a comma: {bad[0]!r}")
    reason = _clean(entry.break_glass_reason, "break_glass_reason")
    purpose = _clean(entry.purpose_of_use, "purpose_of_use") or (ETREAT if reason else None)
    row = {
        "actor_subject": entry.actor_subject, "actor_username": entry.actor_username,
        "actor_roles": ",".join(entry.actor_roles) if entry.actor_roles else None,
        "actor_facility": entry.actor_facility, "client_id": entry.client_id, "source_ip": entry.source_ip,
        "user_agent": entry.user_agent, "interaction": entry.interaction, "resource_type": entry.resource_type,
        "resource_id": entry.resource_id, "version_id": entry.version_id,
        "patient_ids": ",".join(patients) if patients else None, "query": entry.query,
        "outcome_detail": entry.outcome_detail,
    }
    row = {k: _clean(v, k) for k, v in row.items()}
    row.update(outcome=int(entry.outcome), purpose_of_use=purpose, break_glass_reason=reason)
    return row


# Built once: appending runs on every request, and these are then found in SQLAlchemy's compiled cache.
_ADVISORY_LOCK = text("SELECT pg_advisory_xact_lock(:k)")
_HEAD = select(H.c.seq, H.c.hash).where(H.c.id == 1)
_HEAD_FOR_UPDATE = _HEAD.with_for_update()
_TAIL = select(A.c.seq, A.c.hash).order_by(A.c.seq.desc()).limit(1)
_INSERT_ONE = insert(A).returning(A.c.pk)
_INSERT_MANY = insert(A).returning(A.c.pk, sort_by_parameter_order=True)
_INSERT_LINKS = insert(AP)
_MOVE_HEAD = update(H).where(H.c.id == 1)
_NEW_HEAD = insert(H)
_COLUMNS = [c.name for c in A.columns if c.name != "pk"]
# PostgreSQL: the record, its patient links and the head in one statement (data-modifying CTEs).
_APPEND_ONE_PG = text(
    f"WITH ins AS (INSERT INTO {A.name} ({', '.join(_COLUMNS)}) VALUES ({', '.join(':' + c for c in _COLUMNS)}) "
    f"RETURNING pk), links AS (INSERT INTO {AP.name} (audit_pk, patient_id) "
    f"SELECT ins.pk, p FROM ins, unnest(CAST(:link_patients AS varchar[])) AS p) "
    f"UPDATE {H.name} SET seq = :seq, hash = :hash, updated = :recorded WHERE id = 1")


def _lock_and_head(conn: Connection) -> tuple[int, str, bool]:
    """Take the chain lock and read the head: (last seq, last hash, whether the head row exists).

    The lock is the head row itself (SELECT … FOR UPDATE on PostgreSQL; SQLite writers are already
    serial under BEGIN IMMEDIATE). Until the head row exists, an advisory lock stands in for it.
    """
    postgres = conn.dialect.name == "postgresql"
    head = conn.execute(_HEAD_FOR_UPDATE if postgres else _HEAD).first()
    if head is not None:
        return head.seq, head.hash, True
    if postgres:
        conn.execute(_ADVISORY_LOCK, {"k": LOCK_KEY})
        head = conn.execute(_HEAD_FOR_UPDATE).first()  # made by whoever held the lock before us
        if head is not None:
            return head.seq, head.hash, True
    # No head row (a fresh or emptied database): continue from the log's own tail, if any.
    tail = conn.execute(_TAIL).first()
    return (tail.seq, tail.hash, False) if tail else (0, GENESIS, False)


def record_many(session: Session | Connection, entries: Sequence[AuditEntry]) -> list[int]:
    """Append entries to the chain in the caller's transaction (flush only); returns their seq numbers.

    Call it as the last step of a write transaction: it takes the chain lock (the head row, or an
    advisory lock on PostgreSQL; SQLite writers are already serial under BEGIN IMMEDIATE), held
    until commit.
    """
    if not entries:
        return []
    rows = [_row(e) for e in entries]  # validate before taking the lock
    conn = session.connection() if isinstance(session, Session) else session
    seq, prev, has_head = _lock_and_head(conn)
    now = utcnow()
    for row in rows:
        seq += 1
        row.update(seq=seq, recorded=now, prev_hash=prev)
        row["hash"] = prev = chain_hash(row, row["prev_hash"])
    if len(rows) == 1 and has_head and conn.dialect.name == "postgresql":
        row = rows[0]
        conn.execute(_APPEND_ONE_PG, {**row, "link_patients": [p for p in (row["patient_ids"] or "").split(",") if p]})
        return [seq]
    if len(rows) == 1:
        pks = [conn.execute(_INSERT_ONE, rows[0]).scalar_one()]
    else:
        pks = conn.execute(_INSERT_MANY, rows).scalars().all()
    links = [{"audit_pk": pk, "patient_id": p} for pk, row in zip(pks, rows, strict=True)
             for p in (row["patient_ids"] or "").split(",") if p]
    if links:
        conn.execute(_INSERT_LINKS, links)
    conn.execute(_MOVE_HEAD if has_head else _NEW_HEAD, {"id": 1, "seq": seq, "hash": prev, "updated": now})
    return [r["seq"] for r in rows]


def record(session: Session, entry: AuditEntry) -> int:
    """Append one entry in the caller's transaction (see ``record_many``); returns its seq."""
    return record_many(session, [entry])[0]


def audit_read(db: Database, entry: AuditEntry, *, timeout: float = 30.0) -> int:
    """Record a read (or a failed attempt) and return its seq once committed; raises if it cannot be saved.

    Reads that arrive together are appended together by the database's ``AuditWriter`` (one
    transaction, one hold of the chain lock, one commit): the caller still returns only after its
    own record is committed.
    """
    _row(entry)  # a malformed entry is the caller's error, raised here rather than in the writer
    return _writer(db).append(entry, timeout=timeout)


class AuditWriter:
    """Group commit for read audit records: one thread appends whatever entries are waiting as one batch."""

    MAX_BATCH = 256

    def __init__(self, db: Database) -> None:
        self._db = db
        self._queue: queue.SimpleQueue[tuple[AuditEntry, Future[int]]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def append(self, entry: AuditEntry, *, timeout: float) -> int:
        done: Future[int] = Future()
        self._queue.put((entry, done))
        self._start()
        return done.result(timeout=timeout)

    def _start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            while len(batch) < self.MAX_BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            waiting = [(e, f) for e, f in batch if f.set_running_or_notify_cancel()]
            try:
                seqs = self._append([e for e, _ in waiting])
            except BaseException as exc:  # every waiting read fails: none is returned unaudited
                log.exception("could not append %d audit records", len(waiting))
                for _, f in waiting:
                    f.set_exception(exc)
                continue
            for (_, f), seq in zip(waiting, seqs, strict=True):
                f.set_result(seq)

    def _append(self, entries: list[AuditEntry]) -> list[int]:
        return self._db.run_core(lambda conn: record_many(conn, entries))


_writers: weakref.WeakKeyDictionary[Database, AuditWriter] = weakref.WeakKeyDictionary()
_writers_lock = threading.Lock()


def _writer(db: Database) -> AuditWriter:
    with _writers_lock:
        writer = _writers.get(db)
        if writer is None:
            writer = _writers[db] = AuditWriter(db)
        return writer


Details = Callable[[Session, Any], Mapping[str, Any]]


def run_audited(db: Database, fn: Callable[[Session], T], entry: AuditEntry, *, write: bool,
                details: Details | None = None) -> T:
    """Run ``fn`` in one unit of work and audit it, successful or not.

    ``details(session, result)`` returns the fields known only from the result (resource id,
    version, patient ids; see ``audit.describe``); it runs in ``fn``'s transaction. A write is
    recorded in its own transaction, last; a read right after it, by ``audit_read``; a failure (the
    write rolled back) by ``audit_read`` too, and the error is re-raised.
    """

    def completed(session: Session, result: T) -> AuditEntry:
        return replace(entry, **details(session, result)) if details else entry

    try:
        if write:
            def work(session: Session) -> T:
                result = fn(session)
                record(session, completed(session, result))
                return result

            return db.run(work)

        def read(session: Session) -> tuple[T, AuditEntry]:
            result = fn(session)
            return result, completed(session, result)

        result, done = db.run(read, write=False)
    except Exception as exc:
        try:
            audit_read(db, entry.failed_with(exc))
        except Exception:
            log.exception("could not record the failed %s in the audit log", entry.interaction)
        raise
    audit_read(db, done)
    return result
