"""For tests only: switch off the audit tables' append-only triggers inside one transaction.

Emptying the database between tests, and the tamper tests that play an attacker with direct access
to the database, both need it. PostgreSQL: ``session_replication_role = replica`` (superuser only)
stops every ordinary trigger until the end of the transaction. SQLite: the triggers are dropped and
created again from their stored SQL before the transaction ends.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, text

AUDIT_TABLES = ("audit_log", "audit_patient", "audit_head")


@contextmanager
def triggers_disabled(conn: Connection) -> Iterator[None]:
    """Inside an open transaction on ``conn``: the audit triggers do not fire within the block.

    If the block raises, the caller's transaction must roll back (``engine.begin()`` does), which
    also restores the triggers.
    """
    if conn.dialect.name == "postgresql":
        conn.execute(text("SET LOCAL session_replication_role = replica"))
        yield
        conn.execute(text("SET LOCAL session_replication_role = origin"))
        return
    triggers = conn.execute(text("SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name IN "
                                 f"({', '.join(repr(t) for t in AUDIT_TABLES)})")).all()
    for name, _sql in triggers:
        conn.execute(text(f'DROP TRIGGER "{name}"'))
    yield
    for _name, sql in triggers:
        conn.execute(text(sql))
