"""Bulk import of FHIR Bundles and NDJSON files, restartable where it stopped.

A Bundle file is one unit: a transaction (or batch) that either landed or did not. An NDJSON file
is loaded in chunks, each chunk and its progress mark committed together, so a restart resumes
after the last chunk that landed and never loads a line twice.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import orjson
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from audit.service import AuditEntry, audit_bundle_hook
from ehr import bundle as bundles
from ehr import repository as repo
from himhis.db import Database
from himhis.errors import HimHISError
from himhis.models import ImportProgress

CHUNK = 500
Progress = Callable[[int], None]


@dataclass
class FileResult:
    path: Path
    resources: int = 0
    skipped: bool = False
    error: str | None = None


@dataclass
class ImportReport:
    files: list[FileResult] = field(default_factory=list)

    @property
    def resources(self) -> int:
        return sum(f.resources for f in self.files)

    @property
    def failed(self) -> list[FileResult]:
        return [f for f in self.files if f.error]


def fingerprint(path: Path) -> str:
    """Size, modification time and a hash of the head: enough to notice a changed file."""
    st = path.stat()
    with path.open("rb") as fh:
        head = hashlib.sha256(fh.read(1 << 16)).hexdigest()[:32]
    return f"{st.st_size}:{int(st.st_mtime)}:{head}"


def count_entries(path: Path) -> int:
    """How many resources a file holds (for the progress bar)."""
    if path.suffix == ".ndjson":
        with path.open("rb") as fh:
            return sum(1 for line in fh if line.strip())
    try:
        data = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError:
        return 0  # the import itself reports the file
    return len(data.get("entry") or []) if isinstance(data, dict) and data.get("resourceType") == "Bundle" else 1


def import_files(db: Database, paths: list[Path], *, base_url: str | None = None,
                 progress: Progress | None = None, audit_as: AuditEntry | None = None) -> ImportReport:
    """Import files in order; a transaction that fails on a reference is retried after the others.

    With ``audit_as`` (who is importing), each unit of work that writes is recorded in the audit log
    as that entry, with the file and the patients whose data it wrote.

    Bundles often depend on each other (Synthea's patient transactions refer, by conditional
    reference, to the organisations and practitioners in its batch files).
    """
    report = ImportReport()
    deferred: list[Path] = []
    for path in paths:
        result = _import_one(db, path, base_url, progress, audit_as)
        if result.error and "reference" in result.error:
            deferred.append(path)
        else:
            report.files.append(result)
    for path in deferred:
        report.files.append(_import_one(db, path, base_url, progress, audit_as))
    if db.dialect == "postgresql" and report.resources:
        with db.engine.connect() as conn:  # fresh planner statistics after a bulk load
            conn.execute(text("ANALYZE")).close()
            conn.commit()
    return report


def _import_one(db: Database, path: Path, base_url: str | None, progress: Progress | None,
                audit_as: AuditEntry | None) -> FileResult:
    source = str(path.resolve())
    audit = audit_bundle_hook(replace(audit_as, query=f"import {path.name}")) if audit_as else None
    state = db.run(lambda s: _progress(s, source), write=False)
    try:
        if path.suffix == ".ndjson":
            # Resume after the lines already loaded if they are still the same lines (the rest may
            # have been fixed or appended since); otherwise start again from the top.
            start = state.done if state and state.fingerprint == prefix_hash(path, state.done) else 0
            n = _import_ndjson(db, path, source, start, base_url, progress, audit)
            return FileResult(path, resources=n, skipped=state is not None and n == 0 and start > 0)
        fp = fingerprint(path)
        if state and state.fingerprint == fp and state.completed:
            if progress:
                progress(count_entries(path))
            return FileResult(path, skipped=True)
        return FileResult(path, resources=_import_bundle(db, path, source, fp, base_url, progress, audit))
    except HimHISError as exc:
        return FileResult(path, error=exc.message)


def prefix_hash(path: Path, lines: int) -> str:
    """SHA-256 of the first ``lines`` non-blank lines of an NDJSON file."""
    digest = hashlib.sha256()
    n = 0
    with path.open("rb") as fh:
        for line in fh:
            if n >= lines:
                break
            if line.strip():
                digest.update(line.rstrip(b"\r\n") + b"\n")
                n += 1
    return f"{n}:{digest.hexdigest()}"


def _progress(session: Session, source: str) -> ImportProgress | None:
    return session.execute(select(ImportProgress).where(ImportProgress.source == source)).scalar_one_or_none()


def _mark(session: Session, source: str, fp: str, done: int, completed: bool) -> None:
    row = session.get(ImportProgress, source)
    if row is None:
        row = ImportProgress(source=source, fingerprint=fp, done=0, completed=False, updated=repo.utcnow())
        session.add(row)
    row.fingerprint, row.done, row.completed, row.updated = fp, done, completed, repo.utcnow()
    session.flush()


def as_bundle(data: dict) -> dict:
    """A file's content as a batch or transaction: collections and single resources become PUT/POSTs."""
    if data.get("resourceType") == "Bundle" and data.get("type") in ("batch", "transaction"):
        return data
    resources = ([e.get("resource") for e in data.get("entry") or [] if e.get("resource")]
                 if data.get("resourceType") == "Bundle" else [data])
    return {"resourceType": "Bundle", "type": "batch", "entry": [_entry(r) for r in resources]}


def _entry(resource: dict) -> dict:
    rtype, rid = resource.get("resourceType"), resource.get("id")
    if rid:
        return {"resource": resource, "request": {"method": "PUT", "url": f"{rtype}/{rid}"}}
    return {"resource": resource, "request": {"method": "POST", "url": str(rtype)}}


def _import_bundle(db: Database, path: Path, source: str, fp: str, base_url: str | None,
                   progress: Progress | None, audit: bundles.AuditHook | None) -> int:
    try:
        raw = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError as exc:
        raise HimHISError(f"{path.name} is not valid JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise HimHISError(f"{path.name} holds no FHIR resource or Bundle")
    data = as_bundle(raw)
    n = len(data.get("entry") or [])
    is_tx = data["type"] == "transaction"

    def mark(session: Session) -> None:
        _mark(session, source, fp, n, True)

    response = bundles.process(bundles.db_runner(db, base_url=base_url, also=mark if is_tx else None), data,
                               base_url=base_url, audit=audit)
    failures = [e["response"] for e in response.get("entry", []) if not e["response"]["status"].startswith("2")]
    if failures:
        first = failures[0].get("outcome", {}).get("issue", [{}])[0].get("diagnostics", failures[0]["status"])
        raise HimHISError(f"{len(failures)} of {n} batch entries failed; first: {first}")
    if not is_tx:  # a batch counts as imported only when every entry landed
        db.run(mark)
    if progress:
        progress(n)
    return n


def _lines(path: Path, start: int) -> Iterator[tuple[int, bytes, dict | None]]:
    """(line number, raw line, resource or None for lines already loaded) for each non-blank line."""
    with path.open("rb") as fh:
        n = 0
        for line in fh:
            if not line.strip():
                continue
            n += 1
            if n <= start:
                yield n, line, None
                continue
            try:
                yield n, line, orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise HimHISError(f"{path.name} line {n}: not valid JSON ({exc})") from exc


def _import_ndjson(db: Database, path: Path, source: str, start: int, base_url: str | None,
                   progress: Progress | None, audit: bundles.AuditHook | None) -> int:
    """Load in chunks; each chunk commits with the line count and the hash of the lines loaded so far."""
    if progress and start:
        progress(start)
    digest = hashlib.sha256()
    chunk: list[dict] = []
    loaded = 0

    def flush(last: int, *, completed: bool) -> None:
        fp = f"{last}:{digest.hexdigest()}"

        def mark(session: Session) -> None:
            _mark(session, source, fp, last, completed)

        if chunk:
            batch = {"resourceType": "Bundle", "type": "transaction", "entry": [_entry(r) for r in chunk]}
            bundles.process(bundles.db_runner(db, base_url=base_url, also=mark), batch, base_url=base_url,
                            audit=audit)
        else:
            db.run(mark)
        if progress:
            progress(len(chunk))

    last = start
    for n, line, resource in _lines(path, start):
        digest.update(line.rstrip(b"\r\n") + b"\n")
        last = n
        if resource is None:
            continue
        chunk.append(resource)
        if len(chunk) >= CHUNK:
            flush(last, completed=False)
            loaded += len(chunk)
            chunk = []
    flush(last, completed=True)
    return loaded + len(chunk)


def expand(paths: list[Path]) -> list[Path]:
    """Files named directly, and the .json/.ndjson files in named directories, in name order."""
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out += sorted(q for q in p.iterdir() if q.suffix in (".json", ".ndjson") and q.is_file())
        elif p.exists():
            out.append(p)
        else:
            raise FileNotFoundError(os.fspath(p))
    return out
