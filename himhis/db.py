"""Engines, sessions and the unit of work (commit or roll back at the edge, retry what is transient)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger(__name__)
T = TypeVar("T")

# PostgreSQL SQLSTATEs worth one more try: serialization_failure, deadlock_detected, unique_violation
# (a unique violation here means a concurrent writer won a race the retry will now see).
_RETRY_SQLSTATES = {"40001", "40P01", "23505"}


def normalise_url(url: str) -> str:
    """Accept ``postgresql://`` and ``postgres://`` and use the psycopg 3 driver for them."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def make_engine(url: str, **kw) -> Engine:
    """An engine for SQLite (embedded default) or PostgreSQL (production)."""
    url = normalise_url(url)
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 60}, **kw)
        _configure_sqlite(engine)
    else:
        kw.setdefault("pool_size", 10)
        kw.setdefault("max_overflow", 20)
        kw.setdefault("pool_pre_ping", True)
        # No JIT compilation: the record's searches are short index lookups for which compiling costs more
        # than it saves; at 1 M Observations a broad search spent 2.2 s of its 22 s compiling (bench.search).
        engine = create_engine(url, connect_args={"options": "-c jit=off"}, **kw)
    return engine


def _configure_sqlite(engine: Engine) -> None:
    """WAL, foreign keys, and BEGIN IMMEDIATE for writers (SQLAlchemy's pysqlite transaction recipe).

    Writers take the database write lock when their transaction begins, so a read-check-write
    sequence (conditional create, version check) can never interleave with another writer.
    """

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record) -> None:
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=60000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn) -> None:
        mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")


def is_sqlite(bind) -> bool:
    return bind.dialect.name == "sqlite"


class Database:
    """One per process: the engine and the two kinds of session (reading and writing)."""

    def __init__(self, url: str, **engine_kw) -> None:
        self.engine = make_engine(url, **engine_kw)
        writer = self.engine.execution_options(sqlite_begin="IMMEDIATE") if is_sqlite(self.engine) else self.engine
        self.write_engine = writer
        self.read_sessions = sessionmaker(self.engine, expire_on_commit=False)
        self.write_sessions = sessionmaker(writer, expire_on_commit=False)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def run(self, fn: Callable[[Session], T], *, write: bool = True, retries: int = 5) -> T:
        """Run ``fn`` in one transaction: commit on success, roll back on any error.

        Deadlocks, serialization failures and lost races are retried from the start, so callers
        see either a whole result or an error, never a half-applied change.
        """
        factory = self.write_sessions if write else self.read_sessions
        attempt = 0
        while True:
            attempt += 1
            with factory() as session:
                try:
                    result = fn(session)
                    session.commit()
                    return result
                except (OperationalError, IntegrityError, DBAPIError) as exc:
                    session.rollback()
                    if attempt > retries or not _transient(exc):
                        raise
                    log.info("retrying transaction after %s (attempt %d)", type(exc.orig).__name__, attempt)
                    time.sleep(0.005 * attempt)
                except BaseException:
                    session.rollback()
                    raise

    def run_core(self, fn: Callable[[Connection], T], *, retries: int = 5) -> T:
        """``run`` for Core work on a bare connection (no ORM session): one writing transaction, retried
        like ``run``. For hot paths that need no ORM, such as appending to the audit log."""
        attempt = 0
        while True:
            attempt += 1
            try:
                with self.write_engine.begin() as conn:
                    return fn(conn)
            except (OperationalError, IntegrityError, DBAPIError) as exc:
                if attempt > retries or not _transient(exc):
                    raise
                log.info("retrying transaction after %s (attempt %d)", type(exc.orig).__name__, attempt)
                time.sleep(0.005 * attempt)

    def dispose(self) -> None:
        self.engine.dispose()


def _transient(exc: DBAPIError) -> bool:
    orig = exc.orig
    state = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    if state in _RETRY_SQLSTATES:
        return True
    msg = str(orig).lower()
    return "database is locked" in msg or "deadlock" in msg
