"""Tamper detection: an attacker with direct database access (triggers off) edits, deletes, reorders and
truncates; ``verify`` names each change by its seq, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, select, update

from audit.service import AP, A, chain_hash, record
from audit.testing import triggers_disabled
from audit.verify import verify
from himhis.db import Database

N = 10


def problems(db: Database, **kw) -> list[tuple[int | None, str, str]]:
    report = db.run(lambda s: verify(s, **kw), write=False)
    return [(p.seq, p.kind, p.message) for p in report.problems]


def kinds(db: Database, **kw) -> list[tuple[int | None, str]]:
    return [(seq, kind) for seq, kind, _ in problems(db, **kw)]


def delete_records(attack, *seqs: int) -> None:
    for seq in seqs:
        attack("DELETE FROM audit_patient WHERE audit_pk = (SELECT pk FROM audit_log WHERE seq = :seq)",
               "DELETE FROM audit_log WHERE seq = :seq", seq=seq)


def rewrite(attacker: Engine, seq: int, *, recompute: bool = False, **values) -> None:
    """Change a record's fields; with ``recompute`` also give it a hash that matches the new fields."""
    with attacker.begin() as conn, triggers_disabled(conn):
        row = conn.execute(select(A).where(A.c.seq == seq)).one()
        changed = {**row._mapping, **values}
        if recompute:
            values["hash"] = chain_hash(changed, changed["prev_hash"])
        conn.execute(update(A).where(A.c.pk == row.pk).values(**values))


def swap_contents(attacker: Engine, a: int, b: int, *, with_hashes: bool) -> None:
    """Exchange two records' contents (they keep their pk and seq), patients included."""
    keep = {"pk", "seq"} if with_hashes else {"pk", "seq", "prev_hash", "hash"}
    with attacker.begin() as conn, triggers_disabled(conn):
        ra, rb = (conn.execute(select(A).where(A.c.seq == s)).one() for s in (a, b))
        for target, source in ((ra, rb), (rb, ra)):
            conn.execute(update(A).where(A.c.pk == target.pk)
                         .values({k: v for k, v in source._mapping.items() if k not in keep}))
        conn.execute(update(AP).where(AP.c.audit_pk == ra.pk).values(audit_pk=-1))
        conn.execute(update(AP).where(AP.c.audit_pk == rb.pk).values(audit_pk=ra.pk))
        conn.execute(update(AP).where(AP.c.audit_pk == -1).values(audit_pk=rb.pk))


@pytest.fixture
def logged(db, chain) -> Database:
    chain(N)
    assert problems(db) == []
    return db


def test_an_edited_field_is_named(logged, attack):
    attack("UPDATE audit_log SET actor_username = 'someone.else' WHERE seq = 4")
    assert problems(logged) == [(4, "edited", "record 4 was edited: hash mismatch")]


def test_an_edit_with_a_recomputed_hash_breaks_the_next_link(logged, attacker):
    rewrite(attacker, 4, recompute=True, patient_ids="pt-99")
    assert kinds(logged) == [(4, "edited"), (4, "patient-index")]
    assert "record 4 was edited and its hash recomputed" in problems(logged)[0][2]


def test_a_deleted_record_is_missing(logged, attack):
    delete_records(attack, 5)
    assert problems(logged) == [(5, "missing", "record 5 is missing")]


def test_deleted_records_are_named_as_a_range(logged, attack):
    delete_records(attack, 5, 6, 7)
    assert problems(logged) == [(5, "missing", "records 5–7 are missing")]


def test_the_first_record_deleted(logged, attack):
    delete_records(attack, 1)
    assert kinds(logged) == [(1, "missing")]


def test_swapped_seq_numbers_are_out_of_order(logged, attack):
    attack("UPDATE audit_log SET seq = -1 WHERE seq = 3", "UPDATE audit_log SET seq = 3 WHERE seq = 4",
           "UPDATE audit_log SET seq = 4 WHERE seq = -1")
    assert problems(logged) == [(3, "moved", "record 3 is out of order: it holds record 4"),
                                (4, "moved", "record 4 is out of order: it holds record 3")]


@pytest.mark.parametrize("with_hashes", [True, False], ids=["with-hashes", "hashes-left"])
def test_swapped_contents_are_out_of_order(logged, attacker, with_hashes):
    swap_contents(attacker, 3, 8, with_hashes=with_hashes)
    assert kinds(logged) == [(3, "moved"), (8, "moved")]


def test_a_reorder_across_batches_is_found(logged, attack):
    attack("UPDATE audit_log SET seq = -1 WHERE seq = 3", "UPDATE audit_log SET seq = 3 WHERE seq = 6",
           "UPDATE audit_log SET seq = 6 WHERE seq = -1")
    assert kinds(logged, batch=4) == [(3, "moved"), (6, "moved")]


def test_a_truncated_tail_is_found_by_the_head(logged, attack):
    delete_records(attack, 10, 9)
    assert problems(logged) == [(8, "truncated", "log truncated after 8; head says 10")]


def test_an_emptied_log_is_truncated(logged, attack):
    attack("DELETE FROM audit_patient", "DELETE FROM audit_log")
    assert problems(logged) == [(0, "truncated", "log truncated after 0; head says 10")]


def test_a_rewritten_last_record_differs_from_the_head(logged, attacker):
    rewrite(attacker, N, recompute=True, outcome_detail="nothing to see")
    assert problems(logged) == [(N, "edited", "record 10 does not match the head's hash: the tail was rewritten")]


def test_a_removed_head_is_reported(logged, attack):
    attack("DELETE FROM audit_head")
    assert kinds(logged) == [(None, "head")]


def test_a_forged_append_outside_the_application_is_reported(logged):
    with logged.engine.begin() as conn:
        last = conn.execute(select(A).where(A.c.seq == N)).one()
        forged = {**last._mapping, "seq": N + 1, "prev_hash": last.hash, "actor_username": "ghost"}
        forged.pop("pk")
        forged["hash"] = chain_hash(forged, last.hash)
        pk = conn.execute(A.insert().values(**forged).returning(A.c.pk)).scalar_one()
        conn.execute(AP.insert().values(audit_pk=pk, patient_id=forged["patient_ids"]))
    assert kinds(logged) == [(N + 1, "head")]


def test_a_changed_patient_index_is_reported(logged, attack):
    attack("DELETE FROM audit_patient WHERE patient_id = 'pt-6'")
    assert problems(logged) == [(6, "patient-index", "record 6's patient index [] differs from its patients "
                                                     "['pt-6']")]


def test_orphaned_patient_index_rows_are_reported(logged, attack):
    attack("DELETE FROM audit_log WHERE seq = 7")
    assert kinds(logged) == [(None, "patient-index"), (7, "missing")]


def test_many_edits_are_all_named(db, chain, attack):
    chain(60)
    attack("UPDATE audit_log SET outcome = 8 WHERE seq % 3 = 0")
    found = problems(db, batch=7, window=4)
    assert [(s, k) for s, k, _ in found] == [(s, "edited") for s in range(3, 61, 3)]


def test_records_appended_while_verifying_are_not_a_mismatch(logged, make_entry, monkeypatch):
    from audit import verify as verify_module

    walk = verify_module._batches

    def batches_with_a_writer(session, size):
        for i, rows in enumerate(walk(session, size)):
            yield rows
            if i == 0:  # other requests append while the walk is under way, and after its last batch
                logged.run(lambda s: record(s, make_entry()))
        logged.run(lambda s: record(s, make_entry()))

    monkeypatch.setattr(verify_module, "_batches", batches_with_a_writer)
    assert problems(logged, batch=3) == []
    monkeypatch.undo()
    assert logged.run(verify, write=False).checked == N + 2
