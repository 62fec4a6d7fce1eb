"""Loading HimParivar register extracts (CSV or JSON lines) into the local register, at state scale.

The file is read line by line and never held whole. Each batch of lines is one unit of work: its
members are inserted or refreshed (keyed by member ID), its refused lines recorded with the reason,
and the import's position in the file moved on, all in one commit; an import stopped at any point
resumes after the last committed batch when it is run again on the same file (recognised by its
SHA-256), and a file already imported is not imported twice. A member ID given twice in one file is
loaded once, from its first line; the second is refused naming the first.
"""

from __future__ import annotations

import csv
import getpass
import hashlib
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from audit.service import AuditEntry, record
from himhis.db import Database
from himhis.errors import InvalidError
from himhis.models import RegisterImport, RegisterMember, RegisterRefusal
from integrations.himparivar.records import RowError, layout, member_row

M = RegisterMember.__table__
SHOWN_REFUSALS = 20


@dataclass(slots=True)
class ImportReport:
    import_id: int
    file: str
    lines: int = 0  # lines of members read (a CSV's header not counted)
    accepted: int = 0
    refused: int = 0
    resumed_at_line: int = 0  # 0 for a fresh run
    already_imported: bool = False
    refusals: list[tuple[int, str]] = field(default_factory=list)  # the first few (line, reason)


def sha256(path: Path) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def file_format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    raise InvalidError(f"{path.name}: a register extract is a .csv file or a .jsonl (JSON lines) file")


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _header(path: Path) -> tuple[list[str], int]:
    """The CSV header's column names and its length in bytes, or InvalidError naming what is wrong."""
    with path.open("rb") as f:
        first = f.readline()
    try:
        text = first.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidError(f"{path.name}: the header is not UTF-8 text (byte 0x{first[exc.start]:02x} at "
                           f"position {exc.start + 1}); save the extract as UTF-8") from exc
    columns = [c.strip().lower() for c in next(csv.reader([text]), [])]
    missing = [c for c in layout()["required"] if c not in columns]
    if missing:
        raise InvalidError(f"{path.name}: the header has no column {', '.join(missing)} "
                           f"(expected columns: {', '.join(layout()['columns'])})")
    dup = sorted({c for c in columns if columns.count(c) > 1})
    if dup:
        raise InvalidError(f"{path.name}: the header names {', '.join(dup)} more than once")
    return columns, len(first)


def _lines(path: Path, start: int) -> Iterator[tuple[bytes, int]]:
    """Each line from byte ``start`` with the byte position after it."""
    with path.open("rb") as f:
        f.seek(start)
        while line := f.readline():
            yield line, f.tell()


def _fields(raw: bytes, fmt: str, columns: list[str]) -> dict[str, Any] | None:
    """The fields of one line (None for a blank line), or RowError."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RowError(f"the line is not UTF-8 text (byte 0x{raw[exc.start]:02x} at position {exc.start + 1}); "
                       "save the extract as UTF-8") from exc
    text = text.rstrip("\r\n")
    if not text.strip():
        return None
    if fmt == "jsonl":
        try:
            data = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise RowError(f"the line is not JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise RowError("the line is not a JSON object")
        return {str(k).lower(): v for k, v in data.items()}
    try:
        values = next(csv.reader([text], strict=True))
    except csv.Error as exc:
        raise RowError(f"the line is not valid CSV: {exc}") from exc
    if len(values) != len(columns):
        raise RowError(f"the line has {len(values)} fields, the header {len(columns)}")
    return dict(zip(columns, values, strict=True))


def import_extract(db: Database, path: Path, *, batch: int = 5000, today: date | None = None,
                   progress: Callable[[int], None] | None = None, by: str | None = None) -> ImportReport:
    """Import one extract file (or resume its stopped import); ``progress(bytes)`` is told of each batch."""
    path = Path(path)
    fmt = file_format(path)
    digest, size = sha256(path)
    columns, header_bytes = _header(path) if fmt == "csv" else ([], 0)
    today = today or date.today()
    who = by or f"{getpass.getuser()}@{socket.gethostname()}"

    def begin(session: Session) -> tuple[int, int, int, str, int, int]:
        run = session.execute(select(RegisterImport).where(RegisterImport.sha256 == digest)).scalar_one_or_none()
        if run is None:
            run = RegisterImport(file_name=path.name, sha256=digest, size=size, format=fmt,
                                 header=",".join(columns) or None, bytes_done=header_bytes,
                                 lines_done=1 if fmt == "csv" else 0,
                                 accepted=0, refused=0, state="running", started=_now(), by=who)
            session.add(run)
            session.flush()
        return run.id, run.bytes_done, run.lines_done, run.state, run.accepted, run.refused

    import_id, start, line_no, state, accepted, refused = db.run(begin)
    header_lines = 1 if fmt == "csv" else 0  # line numbers are the file's, the header being line 1
    report = ImportReport(import_id=import_id, file=str(path), lines=line_no - header_lines, accepted=accepted,
                          refused=refused, resumed_at_line=line_no - header_lines)
    if state == "done":
        report.already_imported = True
        report.refusals = _first_refusals(db, import_id)
        return report
    pending: list[tuple[int, bytes]] = []
    position, reported = start, 0  # the first report includes the header and, when resuming, the bytes skipped
    for raw, after in _lines(path, start):
        line_no += 1
        pending.append((line_no, raw))
        position = after
        if len(pending) >= batch:
            _commit(db, import_id, pending, fmt, columns, today, position, line_no, report)
            if progress:
                progress(position - reported)
            reported, pending = position, []
    _commit(db, import_id, pending, fmt, columns, today, position, line_no, report, last=True, who=who)
    if progress and position > reported:
        progress(position - reported)
    report.lines = line_no - header_lines
    report.refusals = _first_refusals(db, import_id)
    return report


def _commit(db: Database, import_id: int, pending: list[tuple[int, bytes]], fmt: str, columns: list[str],
            today: date, position: int, line_no: int, report: ImportReport, *, last: bool = False,
            who: str = "") -> None:
    rows: dict[str, dict[str, Any]] = {}
    refusals: list[dict[str, Any]] = []
    for n, raw in pending:
        member_id = None
        try:
            fields = _fields(raw, fmt, columns)
            if fields is None:
                continue
            member_id = str(fields.get("member_id") or "").strip() or None
            row = member_row(fields, today=today)
            member_id = row["member_id"]
            if member_id in rows:
                raise RowError(f"member {member_id} is already given at line {rows[member_id]['source_line']}")
            rows[member_id] = row | {"import_id": import_id, "source_line": n}
        except RowError as exc:
            reason = str(exc)
            if "Aadhaar" in reason:
                member_id = None  # keep nothing of such a line
            refusals.append({"import_id": import_id, "line": n, "member_id": (member_id or "")[:40] or None,
                             "reason": reason})

    def work(session: Session) -> tuple[int, int]:
        rows_, refusals_ = dict(rows), list(refusals)  # this attempt's own (db.run may retry it)
        if rows_:
            earlier = dict(session.execute(select(M.c.member_id, M.c.source_line).where(
                M.c.import_id == import_id, M.c.member_id.in_(list(rows_)))).all())
            for member_id, first_line in earlier.items():
                row = rows_.pop(member_id)
                refusals_.append({"import_id": import_id, "line": row["source_line"], "member_id": member_id,
                                 "reason": f"member {member_id} is already given at line {first_line}"})
            if rows_:
                _upsert(session, list(rows_.values()))
        if refusals_:
            session.execute(insert(RegisterRefusal.__table__), refusals_)
        values: dict[str, Any] = {"bytes_done": position, "lines_done": line_no,
                                  "accepted": RegisterImport.accepted + len(rows_),
                                  "refused": RegisterImport.refused + len(refusals_)}
        if last:
            values |= {"state": "done", "finished": _now()}
        session.execute(update(RegisterImport).where(RegisterImport.id == import_id).values(**values))
        if last:
            done = session.execute(select(RegisterImport.accepted, RegisterImport.refused).where(
                RegisterImport.id == import_id)).one()
            record(session, _audit(who, import_id, report.file, done.accepted, done.refused))
        return len(rows_), len(refusals_)

    added, refused = db.run(work)
    report.accepted += added
    report.refused += refused


def _upsert(session: Session, rows: list[dict[str, Any]]) -> None:
    """Insert members, refreshing those an earlier extract loaded (the register is the source)."""
    if session.bind.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as upsert
    else:
        from sqlalchemy.dialects.sqlite import insert as upsert
    stmt = upsert(M)
    keep = {c.name: stmt.excluded[c.name] for c in M.columns if c.name != "member_id"}
    session.execute(stmt.on_conflict_do_update(index_elements=[M.c.member_id], set_=keep), rows)


def _audit(who: str, import_id: int, file: str, accepted: int, refused: int) -> AuditEntry:
    user, _, host = who.partition("@")
    return AuditEntry(interaction="create", actor_subject=f"os:{who}", actor_username=user, client_id="himhis-cli",
                      source_ip=host or None, user_agent="himhis command line",
                      query=f"himparivar import {Path(file).name} (import {import_id}): "
                            f"{accepted} members loaded, {refused} lines refused")


def _first_refusals(db: Database, import_id: int) -> list[tuple[int, str]]:
    return db.run(lambda s: [(r.line, r.reason) for r in s.execute(
        select(RegisterRefusal.line, RegisterRefusal.reason).where(RegisterRefusal.import_id == import_id)
        .order_by(RegisterRefusal.line).limit(SHOWN_REFUSALS))], write=False)
