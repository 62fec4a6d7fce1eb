"""Recording: the chain, its head, one transaction with the write, concurrency and the append-only triggers."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

from audit.service import (
    AP,
    ETREAT,
    GENESIS,
    MINOR_FAILURE,
    SERIOUS_FAILURE,
    AuditEntry,
    H,
    audit_read,
    chain_hash,
    record,
    record_many,
)
from audit.verify import verify
from himhis.db import Database
from himhis.errors import NotFoundError


def head(db: Database):
    return db.run(lambda s: s.execute(select(H.c.seq, H.c.hash)).first(), write=False)


def test_record_links_each_entry_to_the_last_and_moves_the_head(db, make_entry, rows):
    seqs = [db.run(lambda s, i=i: record(s, make_entry(patient=f"pt-{i}"))) for i in (1, 2, 3)]
    assert seqs == [1, 2, 3]
    log = rows()
    assert [r.seq for r in log] == [1, 2, 3]
    assert log[0].prev_hash == GENESIS
    assert [r.prev_hash for r in log[1:]] == [r.hash for r in log[:-1]]
    assert all(chain_hash(r._mapping, r.prev_hash) == r.hash for r in log)
    first = log[0]
    assert (first.actor_username, first.actor_roles, first.actor_facility, first.client_id, first.source_ip) == (
        "doctor.igmc", "doctor", "IGMC", "himhis-web", "10.20.0.7")
    assert (first.interaction, first.resource_type, first.resource_id, first.patient_ids, first.outcome) == (
        "read", "Observation", "obs-pt-1", "pt-1", 0)
    assert first.recorded.microsecond % 1000 == 0
    assert tuple(head(db)) == (3, log[-1].hash)
    report = db.run(verify, write=False)
    assert report.ok, report.problems
    assert (report.checked, report.last_seq, report.head_seq) == (3, 3, 3)


def test_an_empty_log_verifies(db):
    report = db.run(verify, write=False)
    assert report.ok and report.checked == 0


def test_patients_are_indexed_for_who_saw_my_record(db, make_entry):
    entry = make_entry("search-type", patient=None, resource_id=None, query="code=8867-4",
                       patient_ids=["pt-1", "pt-2", "pt-1", " "])
    db.run(lambda s: record(s, entry))
    stored = db.run(lambda s: s.execute(select(AP.c.patient_id).order_by(AP.c.patient_id)).scalars().all(),
                    write=False)
    assert stored == ["pt-1", "pt-2"]


def test_a_long_chain_verifies_in_batches(db, chain):
    for _ in range(3):
        chain(400)
    report = db.run(lambda s: verify(s, batch=97), write=False)
    assert report.ok, report.problems[:3]
    assert report.checked == report.last_seq == report.head_seq == 1200


def test_the_audit_record_is_saved_or_rolled_back_with_the_write(db, make_entry, rows):
    def write_then_fail(session):
        record(session, make_entry("update"))
        raise NotFoundError("the write failed after auditing")

    with pytest.raises(NotFoundError):
        db.run(write_then_fail)
    assert rows() == []
    assert db.run(verify, write=False).ok
    db.run(lambda s: record(s, make_entry("update")))
    assert [r.seq for r in rows()] == [1]


def test_concurrent_appends_form_one_linear_chain(db, make_entry, rows):
    threads, each = 8, 12
    start = threading.Barrier(threads)

    def writer(t: int) -> None:
        start.wait()
        for i in range(each):
            db.run(lambda s, i=i: record(s, make_entry("create", username=f"writer{t}", patient=f"pt-{t}-{i}")))

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(writer, range(threads)))
    log = rows()
    assert [r.seq for r in log] == list(range(1, threads * each + 1))
    assert len({r.prev_hash for r in log}) == len(log)  # no two records claim the same predecessor: no fork
    assert [r.prev_hash for r in log] == [GENESIS] + [r.hash for r in log[:-1]]
    assert db.run(verify, write=False).ok


def test_record_many_appends_a_batch_in_order(db, make_entry, rows):
    seqs = db.run(lambda s: record_many(s, [make_entry("create", patient=f"pt-{i}") for i in range(5)]))
    assert seqs == [1, 2, 3, 4, 5]
    assert [r.patient_ids for r in rows()] == [f"pt-{i}" for i in range(5)]
    assert db.run(lambda s: record_many(s, []), write=True) == []
    assert db.run(verify, write=False).ok


def test_break_glass_is_recorded_as_emergency_treatment(db, make_entry, rows):
    db.run(lambda s: record(s, make_entry(break_glass_reason="Unconscious patient in casualty, no consent")))
    r = rows()[0]
    assert (r.purpose_of_use, r.break_glass_reason) == (ETREAT, "Unconscious patient in casualty, no consent")


def test_long_values_are_cut_to_fit_and_still_verify(db, make_entry, rows):
    db.run(lambda s: record(s, make_entry("search-type", query="name=" + "x" * 5000, user_agent="A" * 900)))
    r = rows()[0]
    assert len(r.query) == 2048 and len(r.user_agent) == 512
    assert db.run(verify, write=False).ok


@pytest.mark.parametrize(("change", "value"), [("interaction", "peek"), ("outcome", 5),
                                               ("patient_ids", ["a,b"])])
def test_record_refuses_malformed_entries(db, make_entry, rows, change, value):
    entry = make_entry()
    setattr(entry, change, value)
    with pytest.raises(ValueError):
        db.run(lambda s: record(s, entry))
    assert rows() == []


def test_audit_read_records_in_its_own_unit_of_work(db, make_entry, rows):
    assert audit_read(db, make_entry()) == 1
    assert len(rows()) == 1


def test_reads_audited_together_are_each_committed_before_audit_read_returns(db, make_entry, rows):
    """Group commit: many threads at once; each sees its own record committed when its call returns."""
    start = threading.Barrier(16)

    def one(i: int) -> tuple[int, bool]:
        start.wait()
        seq = audit_read(db, make_entry(patient=f"pt-{i}"))
        seen = db.run(lambda s: s.execute(text("SELECT count(*) FROM audit_log WHERE seq = :q"), {"q": seq})
                      .scalar(), write=False)
        return seq, seen == 1

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(one, range(64)))
    assert sorted(seq for seq, _ in results) == list(range(1, 65))
    assert all(committed for _, committed in results)
    assert sorted(r.patient_ids for r in rows()) == sorted(f"pt-{i}" for i in range(64))
    report = db.run(verify, write=False)
    assert report.ok and report.checked == 64, report.problems


def test_a_malformed_read_entry_fails_its_caller_and_nobody_else(db, make_entry, rows):
    bad = make_entry()
    bad.interaction = "peek"
    with pytest.raises(ValueError, match="not an audited interaction"):
        audit_read(db, bad)
    assert audit_read(db, make_entry()) == 1
    assert len(rows()) == 1


def test_failed_outcomes_carry_the_http_status(make_entry):
    assert make_entry().failed_with(NotFoundError("Patient/x is not known")).outcome == MINOR_FAILURE
    entry = make_entry().failed_with(RuntimeError("disk full"))
    assert (entry.outcome, entry.outcome_detail) == (SERIOUS_FAILURE, "500 RuntimeError: disk full")


def test_entry_from_a_principal():
    from identity.principal import Principal

    who = Principal(subject="u-1", username="nurse.igmc", roles=frozenset({"nurse", "doctor"}), facility="IGMC",
                    client_id="himhis-web")
    entry = AuditEntry.by(who, "read", resource_type="Patient", resource_id="p1", patient_ids=["p1"])
    assert (entry.actor_subject, entry.actor_username, tuple(entry.actor_roles), entry.actor_facility,
            entry.client_id) == ("u-1", "nurse.igmc", ("doctor", "nurse"), "IGMC", "himhis-web")


# -- append-only ---------------------------------------------------------------------------------

REFUSED = [
    "UPDATE audit_log SET actor_username = 'someone.else' WHERE seq = 2",
    "DELETE FROM audit_log WHERE seq = 3",
    "DELETE FROM audit_log",
    "UPDATE audit_patient SET patient_id = 'pt-99'",
    "DELETE FROM audit_patient",
    "UPDATE audit_head SET seq = 1",
    "DELETE FROM audit_head",
]


def test_the_database_refuses_changes_to_the_audit_tables(db, chain, rows):
    chain(3)
    before = rows()
    for sql in REFUSED:
        with pytest.raises(DBAPIError, match=r"append-only|only move forward"), db.engine.begin() as conn:
            conn.execute(text(sql))
    if db.dialect == "postgresql":
        for table in ("audit_log", "audit_patient", "audit_head"):
            with pytest.raises(DBAPIError, match="append-only"), db.engine.begin() as conn:
                conn.execute(text(f"TRUNCATE {table} CASCADE"))
    assert rows() == before
    assert db.run(verify, write=False).ok


def test_the_head_only_moves_forward_with_appends(db, chain):
    chain(2)
    chain(1)
    assert head(db).seq == 3
