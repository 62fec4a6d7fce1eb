"""UHIDs: a per-facility, per-year sequence; concurrent registrations never share a number; never reused."""

from __future__ import annotations

import threading

import pytest

from ehr.service import FhirStore
from himhis.systems import UHID
from his.registration.service import allocate_uhid


def test_sequence_per_facility_and_year(db):
    got = [db.run(lambda s, f=f, y=y: allocate_uhid(s, f, y))
           for f, y in (("IGMC", 2026), ("IGMC", 2026), ("RPGMC", 2026), ("IGMC", 2027), ("IGMC", 2026))]
    assert got == ["IGMC-2026-000001", "IGMC-2026-000002", "RPGMC-2026-000001", "IGMC-2027-000001",
                   "IGMC-2026-000003"]


def test_a_rolled_back_registration_issues_no_number(db):
    class Boom(Exception):
        pass

    def fail(session):
        assert allocate_uhid(session, "IGMC", 2026) == "IGMC-2026-000001"
        raise Boom

    with pytest.raises(Boom):
        db.run(fail)
    # The number was never given to anyone, so it is still the next one; none is issued twice.
    assert db.run(lambda s: allocate_uhid(s, "IGMC", 2026)) == "IGMC-2026-000001"


def test_numbers_of_deleted_patients_and_stored_records_are_not_issued_again(db):
    def make(session, uhid: str) -> str:
        stored = FhirStore(session).create({"resourceType": "Patient", "identifier": [{"system": UHID,
                                                                                       "value": uhid}]})
        return stored.stored.res_id

    first = db.run(lambda s: allocate_uhid(s, "IGMC", 2026))
    pid = db.run(lambda s: make(s, first))
    db.run(lambda s: FhirStore(s).delete("Patient", pid))
    # An imported record already carries the next number: it is skipped.
    db.run(lambda s: make(s, "IGMC-2026-000002"))
    assert db.run(lambda s: allocate_uhid(s, "IGMC", 2026)) == "IGMC-2026-000003"


def test_concurrent_allocations_never_share_a_number(db):
    threads, per_thread = 8, 10
    got: list[str] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    start = threading.Barrier(threads)

    def work() -> None:
        start.wait()
        for _ in range(per_thread):
            try:
                uhid = db.run(lambda s: allocate_uhid(s, "IGMC", 2026))
            except BaseException as exc:  # reported below
                errors.append(exc)
                return
            with lock:
                got.append(uhid)

    pool = [threading.Thread(target=work) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    assert not errors
    assert sorted(got) == [f"IGMC-2026-{n:06d}" for n in range(1, threads * per_thread + 1)]
