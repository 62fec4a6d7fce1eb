"""Audit test fixtures: entries with keyword defaults, a recorded chain, and an attacker with database access."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import Engine, create_engine, select, text

from audit.service import A, AuditEntry, record_many
from audit.testing import triggers_disabled
from himhis.db import Database

MakeEntry = Callable[..., AuditEntry]


def _entry(interaction: str = "read", *, username: str = "doctor.igmc", patient: str | None = "pt-1",
           **kw) -> AuditEntry:
    """An entry by a doctor at IGMC reading a patient's Observation, unless told otherwise."""
    fields = {"actor_subject": f"sub-{username}", "actor_username": username, "actor_roles": ("doctor",),
              "actor_facility": "IGMC", "client_id": "himhis-web", "source_ip": "10.20.0.7",
              "user_agent": "Mozilla/5.0 (X11; Linux x86_64)", "resource_type": "Observation",
              "resource_id": f"obs-{patient}" if patient else "obs-x", "patient_ids": [patient] if patient else []}
    return AuditEntry(interaction=interaction, **{**fields, **kw})


@pytest.fixture
def make_entry() -> MakeEntry:
    return _entry


@pytest.fixture
def chain(db: Database) -> Callable[[int], list[int]]:
    """``chain(n)`` appends n records (patients pt-1 … pt-n, one transaction) and returns their seqs."""

    def make(n: int) -> list[int]:
        return db.run(lambda s: record_many(s, [_entry(patient=f"pt-{i}") for i in range(1, n + 1)]))

    return make


@pytest.fixture
def attacker(db: Database) -> Iterator[Engine]:
    """A connection as an attacker has it: PostgreSQL as superuser; SQLite by opening the file without
    HimHIS's connection settings (so without foreign-key enforcement)."""
    if db.dialect == "postgresql":
        yield db.engine
        return
    engine = create_engine(db.engine.url)
    yield engine
    engine.dispose()


@pytest.fixture
def attack(attacker: Engine) -> Callable[..., None]:
    """``attack(sql, ...)`` runs statements with the append-only triggers off."""

    def run(*statements: str, **params) -> None:
        with attacker.begin() as conn, triggers_disabled(conn):
            for sql in statements:
                conn.execute(text(sql), params)

    return run


@pytest.fixture
def rows(db: Database) -> Callable[[], list]:
    """The audit log as stored, in seq order."""
    return lambda: db.run(lambda s: s.execute(select(A).order_by(A.c.seq)).all(), write=False)
