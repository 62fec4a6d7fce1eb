"""Register extracts into the local register: every good line loaded once, every bad line refused with
its reason, an interrupted import resumed, the same file never loaded twice; SQLite and PostgreSQL."""

from __future__ import annotations

import csv
from datetime import date
from pathlib import Path

import orjson
import pytest
from sqlalchemy import func, select

from himhis.db import Database
from himhis.errors import InvalidError
from himhis.models import AuditRecord, RegisterImport, RegisterMember, RegisterRefusal
from his.registration.validators import verhoeff_digit
from integrations.himparivar.importer import import_extract
from integrations.himparivar.records import layout
from integrations.himparivar.synthetic import Register, write

TODAY = date(2026, 11, 24)
COLUMNS = layout()["columns"]


def members(db: Database) -> dict[str, RegisterMember]:
    return db.run(lambda s: {m.member_id: m for m in s.execute(select(RegisterMember)).scalars()}, write=False)


def refusals(db: Database) -> list[tuple[int, str | None, str]]:
    return db.run(lambda s: [tuple(r) for r in s.execute(select(
        RegisterRefusal.line, RegisterRefusal.member_id, RegisterRefusal.reason).order_by(RegisterRefusal.line))],
        write=False)


def write_csv(path: Path, rows: list[dict], columns: list[str] = COLUMNS) -> Path:
    with path.open("w", encoding="utf-8", newline="") as f:
        out = csv.writer(f, lineterminator="\n")
        out.writerow(columns)
        for row in rows:
            out.writerow([row.get(c, "") for c in columns])
    return path


def test_a_synthetic_register_loads_whole(db, tmp_path):
    path = tmp_path / "register.csv"
    assert write(path, 1200, seed=3) == 1200
    report = import_extract(db, path, batch=250, today=TODAY)
    assert (report.accepted, report.refused, report.lines) == (1200, 0, 1200)
    loaded = members(db)
    assert len(loaded) == 1200
    with path.open(encoding="utf-8") as f:
        first = next(csv.DictReader(f))
    m = loaded[first["member_id"]]
    assert (m.family_id, m.name, m.name_devanagari, m.district) == (
        first["family_id"], first["name"], first["name_devanagari"], first["district"])
    assert m.gender == {"M": "male", "F": "female"}[first["gender"]] and m.source_line == 2
    families = {x.family_id for x in loaded.values()}
    assert 200 < len(families) < 600, "about 3.75 members a family"
    assert sum(1 for x in loaded.values() if x.birth_estimated) > 50, "some give only their age"
    heads = [x for x in loaded.values() if x.relation == "self"]
    assert len(heads) == len(families)


def test_json_lines_load_the_same_as_csv(db, tmp_path):
    write(tmp_path / "a.csv", 300, seed=5)
    write(tmp_path / "a.jsonl", 300, seed=5)
    import_extract(db, tmp_path / "a.csv", today=TODAY)
    from_csv = {k: (m.name, m.birth_date, m.birth_year, m.abha, m.mobile) for k, m in members(db).items()}
    db.run(lambda s: s.execute(RegisterMember.__table__.delete()))
    report = import_extract(db, tmp_path / "a.jsonl", today=TODAY)
    assert report.accepted == 300
    assert {k: (m.name, m.birth_date, m.birth_year, m.abha, m.mobile) for k, m in members(db).items()} == from_csv


def aadhaar_like() -> str:
    body = "49876543210"[:11]
    return body + verhoeff_digit(body)


def test_bad_lines_are_refused_with_their_reason_and_the_rest_loads(db, tmp_path):
    good = list(Register(8, seed=11, today=TODAY))
    bad = [
        good[0] | {"birth_date": "2031-01-01"},  # line 2: future birth
        good[1] | {"birth_date": "31/02/2001"},  # 3: impossible date
        good[2] | {"birth_date": "1850-06-01"},  # 4: before 1900
        good[3] | {"mobile": aadhaar_like()},  # 5: an Aadhaar number in the mobile field
        good[4] | {"district": "Gotham"},  # 6
        good[5] | {"gender": "X"},  # 7
        good[6] | {"member_id": ""},  # 8: a required field missing
        good[7],  # 9: good
        good[7] | {"name": "Somebody Else"},  # 10: the same member again
    ]
    path = write_csv(tmp_path / "bad.csv", bad)
    with path.open("ab") as f:
        f.write(b'HP-SML-99999999,HPF-SML-9999999,self,"Unclosed\n')  # 11: broken quoting
        f.write(b"HP-SML-99999998,too,few\n")  # 12: wrong number of fields
        f.write("HP-SML-99999997,HPF-SML-9999997,self,Ramesh Th\u00e4kur,,M,1970-01-01,,,Theog,Theog,Theog,Shimla,"
                ",,,,,active,\n".encode("latin-1"))  # 13: not UTF-8
        f.write(b"\n")  # 14: blank, skipped
    report = import_extract(db, path, batch=3, today=TODAY)
    assert report.accepted == 1 and report.refused == 11 and report.lines == 13
    assert set(members(db)) == {good[7]["member_id"]}
    assert members(db)[good[7]["member_id"]].name == good[7]["name"], "the first of two lines for a member wins"
    got = {line: reason for line, _, reason in refusals(db)}
    expected = {2: "in the future", 3: "is not a date", 4: "before 1900", 5: "Aadhaar", 6: "not a district",
                7: "is not M, F or O", 8: "missing member_id", 10: "already given at line 9",
                11: "not valid CSV", 12: "has 3 fields", 13: "not UTF-8"}
    assert set(got) == set(expected), got
    for line, words in expected.items():
        assert words in got[line], (line, got[line])
    aadhaar_row = next(r for r in refusals(db) if r[0] == 5)
    assert aadhaar_row[1] is None and aadhaar_like() not in aadhaar_row[2], "nothing of that line is kept"
    assert [r[0] for r in report.refusals] == sorted(expected)


def test_a_file_without_a_required_column_or_not_utf8_is_refused_whole(db, tmp_path):
    rows = list(Register(5, seed=2, today=TODAY))
    path = write_csv(tmp_path / "nodistrict.csv", rows, [c for c in COLUMNS if c != "district"])
    with pytest.raises(InvalidError, match="no column district"):
        import_extract(db, path, today=TODAY)
    latin = tmp_path / "latin.csv"
    latin.write_bytes(("member_id,family_id,relation,name,gender,district,n\u00e4me\n").encode("latin-1"))
    with pytest.raises(InvalidError, match="not UTF-8"):
        import_extract(db, latin, today=TODAY)
    with pytest.raises(InvalidError, match=r"\.csv file or a \.jsonl"):
        import_extract(db, tmp_path / "register.xlsx", today=TODAY)
    assert members(db) == {} and db.run(lambda s: s.execute(select(func.count()).select_from(RegisterImport))
                                        .scalar_one(), write=False) == 0


class Stop(Exception):
    pass


def test_an_interrupted_import_resumes_after_the_last_committed_batch(db, tmp_path):
    path = tmp_path / "big.csv"
    write(path, 1000, seed=9)
    with path.open("ab") as f:
        f.write(b"HP-SML-12,broken\n")  # one refused line at the end
    seen = []

    def stop_after_three(n: int) -> None:
        seen.append(n)
        if len(seen) == 3:
            raise Stop

    with pytest.raises(Stop):
        import_extract(db, path, batch=100, today=TODAY, progress=stop_after_three)
    assert len(members(db)) == 300, "three batches were committed before the stop"
    report = import_extract(db, path, batch=100, today=TODAY)
    assert report.resumed_at_line == 300 and report.lines == 1001
    assert (report.accepted, report.refused) == (1000, 1)
    assert len(members(db)) == 1000 and [r[0] for r in refusals(db)] == [1002]

    again = import_extract(db, path, batch=100, today=TODAY)
    assert again.already_imported and (again.accepted, again.refused) == (1000, 1)
    audit = db.run(lambda s: s.execute(select(AuditRecord.query).where(
        AuditRecord.query.like("himparivar import%"))).scalars().all(), write=False)
    assert audit == [f"himparivar import big.csv (import {report.import_id}): 1000 members loaded, 1 lines refused"]


def test_a_newer_extract_refreshes_members(db, tmp_path):
    rows = list(Register(20, seed=4, today=TODAY))
    first = import_extract(db, write_csv(tmp_path / "june.csv", rows), today=TODAY)
    moved = rows[0] | {"village": "Kufri", "updated": "2026-11-01", "status": "migrated"}
    second = import_extract(db, write_csv(tmp_path / "november.csv", [moved, *rows[1:]]), today=TODAY)
    assert second.import_id != first.import_id and second.accepted == 20 and second.refused == 0
    m = members(db)[rows[0]["member_id"]]
    assert (m.village, m.status, m.import_id) == ("Kufri", "migrated", second.import_id)
    assert len(members(db)) == 20


def test_the_synthetic_register_is_deterministic_and_never_writes_an_aadhaar_number(tmp_path):
    a, b = list(Register(500, seed=1)), list(Register(500, seed=1))
    assert a == b and a != list(Register(500, seed=2))
    from his.registration.validators import contains_aadhaar

    assert not any(contains_aadhaar(str(v)) for row in a for v in row.values())
    write(tmp_path / "x.jsonl", 50, seed=1)
    lines = (tmp_path / "x.jsonl").read_bytes().splitlines()
    assert len(lines) == 50 and all(isinstance(orjson.loads(x), dict) for x in lines)
