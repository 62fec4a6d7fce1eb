"""Checking the audit chain: every record edited, deleted, moved or cut off the end is named by its seq.

Walks ``audit_log`` in ``seq`` order in batches (keyset paging, so millions of rows stream):

- each record's hash is recomputed over its fields and its ``prev_hash`` (``audit.service.chain_hash``);
- a record that fails is tried at the other failing places near it: if its hash holds there, it was
  *moved* (seq numbers or contents swapped), otherwise it was *edited*;
- between two intact neighbours, ``prev_hash`` must be the previous record's hash (an edit whose hash
  was recomputed breaks this link);
- gaps in ``seq`` are deleted records; a log that ends before ``audit_head`` was truncated, and a
  tail hash that differs from the head's was rewritten;
- ``audit_patient`` (the "who saw my record" index) must list exactly each record's ``patient_ids``.

A moved record is always detected; it is named as moved when its partner is within the matching
window (``window`` failing records), otherwise as edited.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from sqlalchemy import Row, exists, select
from sqlalchemy.orm import Session

from audit.service import AP, GENESIS, A, H, chain_hash


@dataclass(frozen=True, slots=True)
class Problem:
    seq: int | None  # the record concerned (None: the log as a whole)
    kind: str  # edited, moved, missing, broken-link, truncated, head, patient-index
    message: str


@dataclass(slots=True)
class VerifyReport:
    checked: int = 0  # records read
    last_seq: int = 0
    head_seq: int | None = None
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, seq: int | None, kind: str, message: str) -> None:
        self.problems.append(Problem(seq, kind, message))


def _span(first: int, last: int) -> str:
    return f"record {first} is missing" if first == last else f"records {first}–{last} are missing"


class _Walker:
    def __init__(self, report: VerifyReport, window: int) -> None:
        self.report = report
        self.window = window
        self.expected = 1
        self.prev: Row | None = None
        self.prev_ok = False
        self.pending: dict[int, Row] = {}  # failing records not yet explained, by seq

    def batch(self, rows: list[Row]) -> None:
        failing: list[Row] = []
        for r in rows:
            self.report.checked += 1
            gap = r.seq > self.expected
            if gap:
                self.report.add(self.expected, "missing", _span(self.expected, r.seq - 1))
            intact = chain_hash(r._mapping, r.prev_hash) == r.hash
            if not intact:
                failing.append(r)
            elif self.prev is None and not gap and r.prev_hash != GENESIS:
                self.report.add(r.seq, "broken-link", f"record {r.seq} does not start the chain: its prev_hash "
                                                      "is not the genesis hash")
            elif self.prev is not None and not gap and self.prev_ok and r.prev_hash != self.prev.hash:
                self.report.add(self.prev.seq, "edited",
                                f"record {self.prev.seq} was edited and its hash recomputed: record {r.seq} "
                                "links to a different hash")
            self.prev, self.prev_ok, self.expected = r, intact, max(self.expected, r.seq + 1)
        self._match(failing)

    def _match(self, failing: list[Row]) -> None:
        """Explain failing records as moved (their hash holds at another failing record's place) or keep
        them pending; the oldest beyond the window are reported as edited."""
        if not failing:
            return
        new = {r.seq for r in failing}
        for r in failing:
            self.pending[r.seq] = r
        while len(self.pending) > self.window:
            self._edited(self.pending.pop(min(self.pending)))
        pool = list(self.pending.values())
        for r in pool:
            for c in pool:
                if c.seq != r.seq and (r.seq in new or c.seq in new) and _holds(r, c):
                    self.report.add(r.seq, "moved", f"record {r.seq} is out of order: it holds record {c.seq}")
                    del self.pending[r.seq]
                    break

    def _edited(self, r: Row) -> None:
        self.report.add(r.seq, "edited", f"record {r.seq} was edited: hash mismatch")

    def finish(self) -> None:
        for seq in sorted(self.pending):
            self._edited(self.pending[seq])
        self.pending.clear()


def _holds(r: Row, c: Row) -> bool:
    """True if ``r``'s content is the record written at ``c``'s place: with its own hash and link moved
    along (contents or seq numbers swapped), or with the hash and link left at ``c``'s row."""
    moved = {**r._mapping, "seq": c.seq}
    return chain_hash(moved, r.prev_hash) == r.hash or chain_hash(moved, c.prev_hash) == c.hash


def _batches(session: Session, size: int) -> Iterator[list[Row]]:
    last: int | None = None
    while True:
        stmt = select(A).order_by(A.c.seq).limit(size)
        if last is not None:
            stmt = stmt.where(A.c.seq > last)
        rows = session.execute(stmt).all()
        if not rows:
            return
        yield rows
        last = rows[-1].seq


def _check_patient_index(session: Session, rows: list[Row], report: VerifyReport) -> None:
    indexed: dict[int, set[str]] = {r.pk: set() for r in rows}
    for pk, patient in session.execute(select(AP.c.audit_pk, AP.c.patient_id)
                                       .where(AP.c.audit_pk.in_(list(indexed)))):
        indexed[pk].add(patient)
    for r in rows:
        listed = set((r.patient_ids or "").split(",")) - {""}
        if indexed[r.pk] != listed:
            report.add(r.seq, "patient-index", f"record {r.seq}'s patient index {sorted(indexed[r.pk])} differs "
                                               f"from its patients {sorted(listed)}")


def verify(session: Session, *, batch: int = 5000, window: int = 64) -> VerifyReport:
    """Check the whole chain and the head; the report lists every problem found, by seq.

    Reads one snapshot, so records appended while it runs are not mistaken for a mismatch with the
    head: SQLite's read transaction is one; on PostgreSQL the transaction is made REPEATABLE READ
    when verify is its first statement (as in ``db.run(verify, write=False)``).
    """
    if session.get_bind().dialect.name == "postgresql" and not session.in_transaction():
        session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
    report = VerifyReport()
    walker = _Walker(report, window)
    for rows in _batches(session, batch):
        walker.batch(rows)
        _check_patient_index(session, rows, report)
    walker.finish()
    last = walker.prev
    report.last_seq = last.seq if last is not None else 0
    head = session.execute(select(H.c.seq, H.c.hash).where(H.c.id == 1)).first()
    if head is None:
        if last is not None:
            report.add(None, "head", "the chain head (audit_head) is missing: truncation cannot be ruled out")
    else:
        report.head_seq = head.seq
        if report.last_seq < head.seq:
            report.add(report.last_seq, "truncated", f"log truncated after {report.last_seq}; head says {head.seq}")
        elif report.last_seq > head.seq:
            report.add(report.last_seq, "head", f"the log goes on to {report.last_seq} but the head says {head.seq}: "
                                                "records were appended outside the application")
        elif last is not None and last.hash != head.hash:
            report.add(last.seq, "edited", f"record {last.seq} does not match the head's hash: the tail was "
                                           "rewritten")
    orphans = session.execute(select(AP.c.audit_pk).distinct()
                              .where(~exists().where(A.c.pk == AP.c.audit_pk)).limit(10)).scalars().all()
    if orphans:
        report.add(None, "patient-index", f"the patient index points at deleted records (audit pk "
                                          f"{', '.join(map(str, orphans))})")
    report.problems.sort(key=lambda p: (p.seq if p.seq is not None else -1))
    return report
