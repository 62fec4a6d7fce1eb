"""The inbox of received HL7 v2 messages: the SQL, and the group-commit writer the listener stores through.

A message is acknowledged only after its row is committed. The insert is ``ON CONFLICT DO NOTHING`` on
(sending application, sending facility, control ID) on both databases, so a resent message, even one
arriving on two connections at once, is stored once and answered with the id stored first.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from himhis.db import Database
from himhis.models.interfaces import Hl7Message
from integrations.hl7.parse import Header

log = logging.getLogger(__name__)
T = Hl7Message.__table__
RECEIVED, PROCESSED, HELD, FAILED = "received", "processed", "held", "failed"
_KEY = ["sending_application", "sending_facility", "control_id"]
_INSERT = {"postgresql": pg_insert(T).on_conflict_do_nothing(index_elements=_KEY).returning(T.c.id),
           "sqlite": sqlite_insert(T).on_conflict_do_nothing(index_elements=_KEY).returning(T.c.id)}
_FIND = select(T.c.id)


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


@dataclass(slots=True)
class Incoming:
    header: Header
    text: str
    peer: str | None = None


@dataclass(slots=True)
class Stored:
    id: int
    duplicate: bool


def store(conn: Connection, item: Incoming) -> Stored:
    """Insert one message in the caller's transaction; a duplicate returns the id stored before."""
    h = item.header
    key = {"sending_application": h.sending_application, "sending_facility": h.sending_facility,
           "control_id": h.control_id}
    new_id = conn.execute(_INSERT[conn.dialect.name], {
        **key, "message_type": h.message_type, "version": h.version, "received": utcnow(),
        "peer": (item.peer or "")[:64] or None, "raw": item.text, "state": RECEIVED, "attempts": 0,
    }).scalar()
    if new_id is not None:
        return Stored(new_id, False)
    found = conn.execute(_FIND.where(T.c.sending_application == key["sending_application"],
                                     T.c.sending_facility == key["sending_facility"],
                                     T.c.control_id == key["control_id"])).scalar_one()
    return Stored(found, True)


def lock(session: Session, message_id: int) -> Hl7Message | None:
    """The inbox row, locked until commit (processing of one message is serial on both databases)."""
    stmt = select(Hl7Message).where(Hl7Message.id == message_id)
    if session.bind.dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    return session.execute(stmt).scalar_one_or_none()


def get(session: Session, message_id: int) -> Hl7Message | None:
    return session.get(Hl7Message, message_id)


def held(session: Session, *, limit: int = 200) -> Sequence[Hl7Message]:
    """The hold queue, oldest first."""
    return session.execute(select(Hl7Message).where(Hl7Message.state.in_((HELD, FAILED)))
                           .order_by(Hl7Message.received, Hl7Message.id).limit(limit)).scalars().all()


def waiting(conn: Connection | Session, *, older_than: float | None) -> list[int]:
    """Ids of stored messages not yet processed (received before ``older_than`` seconds ago, if given)."""
    stmt = select(T.c.id).where(T.c.state == RECEIVED).order_by(T.c.id).limit(10000)
    if older_than is not None:
        stmt = stmt.where(T.c.received < utcnow() - timedelta(seconds=older_than))
    return list(conn.execute(stmt).scalars())


def mark_failed(session: Session, message_id: int, reason: str) -> None:
    session.execute(update(T).where(T.c.id == message_id, T.c.state == RECEIVED)
                    .values(state=FAILED, hold_reason=reason[:2000]))


class InboxWriter:
    """Group commit: one thread stores whatever messages are waiting in one transaction, then answers them.

    Each caller gets a Future that completes only after the commit; ``after_commit(ids)`` is then
    called with the ids of newly stored messages (to queue their processing).
    """

    MAX_BATCH = 256

    def __init__(self, db: Database, *, after_commit: Callable[[list[int]], None] | None = None) -> None:
        self._db = db
        self._after = after_commit
        self._queue: queue.SimpleQueue[tuple[Incoming, Future[Stored]] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="hl7-inbox-writer", daemon=True)
        self._thread.start()

    def submit(self, item: Incoming) -> Future[Stored]:
        done: Future[Stored] = Future()
        self._queue.put((item, done))
        return done

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            stop = False
            while len(batch) < self.MAX_BATCH:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                batch.append(nxt)
            self._write(batch)
            if stop:
                return

    def _write(self, batch: list[tuple[Incoming, Future[Stored]]]) -> None:
        waiting_ = [(i, f) for i, f in batch if f.set_running_or_notify_cancel()]
        try:
            results = self._db.run_core(lambda conn: [store(conn, i) for i, _ in waiting_])
        except BaseException as exc:  # none of them is acknowledged
            log.exception("could not store %d HL7 messages", len(waiting_))
            for _, f in waiting_:
                f.set_exception(exc)
            return
        for (_, f), result in zip(waiting_, results, strict=True):
            f.set_result(result)
        fresh = list(dict.fromkeys(r.id for r in results if not r.duplicate))
        if fresh and self._after is not None:
            try:
                self._after(fresh)
            except Exception:  # stored and acknowledged: the requeue sweep will queue them
                log.exception("could not queue HL7 messages %s for processing", fresh)
