"""The FHIR store: the RESTful interactions over one repository, generic over resource type.

https://hl7.org/fhir/R4/http.html — every method takes the caller's open session and only
flushes; the caller's unit of work commits or rolls back.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import orjson
from sqlalchemy import Row, select
from sqlalchemy.orm import Session

from ehr import repository as repo
from ehr.references import classify, iter_references, rewrite_references
from ehr.scope import Scope
from ehr.search import query as q
from ehr.search.extract import extract
from ehr.validation import check_id, is_resource_type, validate_resource
from himhis.errors import (
    ConflictError,
    ForbiddenError,
    GoneError,
    InvalidError,
    NotFoundError,
    PreconditionFailedError,
)


def instant(dt: datetime) -> str:
    """A naive-UTC datetime as a FHIR instant (https://hl7.org/fhir/R4/datatypes.html#instant)."""
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


@dataclass(slots=True)
class Stored:
    """One version of a resource as stored: its JSON text, or None for a deletion."""

    res_type: str
    res_id: str
    version_id: int
    last_updated: datetime
    text: str | None
    method: str = "PUT"

    @property
    def deleted(self) -> bool:
        return self.text is None

    @property
    def etag(self) -> str:
        return f'W/"{self.version_id}"'

    @property
    def location(self) -> str:
        return f"{self.res_type}/{self.res_id}/_history/{self.version_id}"

    def json(self) -> dict:
        return orjson.loads(self.text) if self.text else {}


@dataclass(slots=True)
class WriteResult:
    stored: Stored
    status: int  # 201 created, 200 updated or matched, 204 nothing to delete
    created: bool = False
    content: dict | None = field(default=None, repr=False)
    replaced: str | None = field(default=None, repr=False)  # the JSON of the version this one replaced


def new_id() -> str:
    return str(uuid.uuid4())


def _stored(row: Row) -> Stored:
    return Stored(row.res_type, row.res_id, row.version_id, row.last_updated, None if row.deleted else row.content,
                  getattr(row, "method", "PUT"))


def criteria_key(res_type: str, criteria: str) -> int:
    """A signed 64-bit lock key for a conditional operation's criteria, order-insensitive."""
    canon = "&".join(sorted(criteria.split("&")))
    digest = hashlib.blake2b(f"{res_type}?{canon}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class FhirStore:
    """Create, read, vread, update, delete, history and conditional variants over one session."""

    def __init__(self, session: Session, *, base_url: str | None = None, scope: Scope | None = None) -> None:
        self.session = session
        self.base_url = base_url
        self.scope = scope or Scope()

    def _visible(self, row: Row | None, res_type: str, res_id: str) -> Row:
        """The row, or 404 as if it did not exist when it is missing or outside the caller's scope."""
        if row is None or (not self.scope.unrestricted and not self.scope.visible(self.session, res_type, [row.pk])):
            raise NotFoundError(f"{res_type}/{res_id} is not known")
        return row

    def _current_visible(self, res_type: str, res_id: str) -> Row:
        """The current row if the caller may see it (one statement), else 404 as if it did not exist."""
        row = self.scope.current(self.session, res_type, res_id)
        if row is None:
            raise NotFoundError(f"{res_type}/{res_id} is not known")
        return row

    # -- reads ---------------------------------------------------------------------------------

    def read(self, res_type: str, res_id: str) -> Stored:
        """https://hl7.org/fhir/R4/http.html#read — 404 if unknown, 410 if deleted."""
        self._check_type(res_type)
        row = self._current_visible(res_type, res_id)
        if row.deleted:
            raise GoneError(f"{res_type}/{res_id} was deleted", headers={"ETag": f'W/"{row.version_id}"'})
        return _stored(row)

    def vread(self, res_type: str, res_id: str, version_id: str) -> Stored:
        """https://hl7.org/fhir/R4/http.html#vread"""
        self._check_type(res_type)
        if not self.scope.unrestricted:
            self._current_visible(res_type, res_id)
        if not version_id.isdigit():
            raise NotFoundError(f"{res_type}/{res_id} has no version '{version_id}'")
        row = repo.version(self.session, res_type, res_id, int(version_id))
        if row is None:
            raise NotFoundError(f"{res_type}/{res_id} has no version {version_id}")
        if row.deleted:
            raise GoneError(f"Version {version_id} of {res_type}/{res_id} is a deletion")
        return _stored(row)

    def history(self, res_type: str | None = None, res_id: str | None = None, *, since: datetime | None = None,
                at: datetime | None = None, count: int = 50, offset: int = 0) -> tuple[list[Stored], int]:
        """https://hl7.org/fhir/R4/http.html#history — newest first."""
        if res_type:
            self._check_type(res_type)
        if res_id:
            self._current_visible(res_type, res_id)
        scope = None
        if not self.scope.unrestricted:
            if res_type is None:
                raise ForbiddenError("History across all types is open only to callers who see the whole record; "
                                     "ask for one type's history, e.g. /Observation/_history")
            clause = self.scope.clause(res_type)
            scope = None if clause is None else select(repo.R.c.pk).where(repo.R.c.res_type == res_type, clause)
        rows, total = repo.history(self.session, res_type=res_type, res_id=res_id, since=since, at=at,
                                   limit=count, offset=offset, within=scope)
        return [_stored(r) for r in rows], total

    def search_ids(self, res_type: str, criteria: str | list[tuple[str, str]]) -> list[str]:
        """Ids of live resources matching search criteria (used by conditional interactions)."""
        crits = q.criteria(res_type, q.parse_query(criteria))
        if not crits:
            raise InvalidError("Conditional criteria must name at least one search parameter",
                               code="required")
        rows = self.session.execute(q.select_pks(res_type, crits).limit(3)).all()
        if rows and not self.scope.unrestricted:
            hidden = {r.pk for r in rows} - self.scope.visible(self.session, res_type, [r.pk for r in rows])
            if hidden:
                raise ForbiddenError(f"'{criteria}' matches a {res_type} outside the records you can see; "
                                     "use break-glass access with a reason if you must work on it")
        return [row.res_id for row in rows]

    # -- writes --------------------------------------------------------------------------------

    def create(self, data: dict, *, if_none_exist: str | None = None, res_type: str | None = None,
               resolved: Iterable[tuple[str, str]] = ()) -> WriteResult:
        """https://hl7.org/fhir/R4/http.html#create (and #ccreate with ``If-None-Exist``)."""
        rtype = validate_resource(data, expected_type=res_type)
        if if_none_exist:
            repo.lock_key(self.session, criteria_key(rtype, if_none_exist))
            matches = self.search_ids(rtype, if_none_exist)
            if len(matches) > 1:
                raise PreconditionFailedError(f"If-None-Exist '{if_none_exist}' matches {len(matches)} "
                                              f"{rtype} resources")
            if matches:
                return WriteResult(self.read(rtype, matches[0]), 200)
        rid = new_id()
        return self._put(rtype, rid, data, existing=None, resolved=resolved, method="POST")

    def update(self, res_type: str, res_id: str, data: dict, *, if_match: str | None = None,
               resolved: Iterable[tuple[str, str]] = ()) -> WriteResult:
        """https://hl7.org/fhir/R4/http.html#update — creates when the id is new (update as create)."""
        rtype = validate_resource(data, expected_type=res_type)
        check_id(res_id)
        body_id = data.get("id")
        if body_id is None:
            raise InvalidError("The resource in an update must carry an 'id'", code="required",
                               expression=[f"{rtype}.id"])
        if body_id != res_id:
            raise InvalidError(f"The resource id '{body_id}' does not match the URL's id '{res_id}'",
                               expression=[f"{rtype}.id"])
        existing = repo.current(self.session, rtype, res_id, lock=True)
        if existing is not None and not existing.deleted and not self.scope.unrestricted:
            self._visible(existing, rtype, res_id)
        if if_match is not None:
            wanted = _etag_version(if_match)
            if existing is None or existing.deleted or existing.version_id != wanted:
                have = "does not exist" if existing is None else f"is at version {existing.version_id}"
                raise PreconditionFailedError(f"If-Match asked for version {wanted} of {rtype}/{res_id}, "
                                              f"which {have}")
        return self._put(rtype, res_id, data, existing=existing, resolved=resolved, method="PUT")

    def conditional_update(self, res_type: str, criteria: str, data: dict,
                           resolved: Iterable[tuple[str, str]] = ()) -> WriteResult:
        """https://hl7.org/fhir/R4/http.html#cond-update"""
        rtype = validate_resource(data, expected_type=res_type)
        repo.lock_key(self.session, criteria_key(rtype, criteria))
        matches = self.search_ids(rtype, criteria)
        if len(matches) > 1:
            raise PreconditionFailedError(f"Conditional update '{criteria}' matches {len(matches)} {rtype} "
                                          "resources")
        body_id = data.get("id")
        if matches:
            if body_id is not None and body_id != matches[0]:
                raise InvalidError(f"The resource id '{body_id}' differs from the id '{matches[0]}' that the "
                                   "criteria matched", expression=[f"{rtype}.id"])
            data = {**data, "id": matches[0]}
            return self.update(rtype, matches[0], data, resolved=resolved)
        rid = body_id or new_id()
        if body_id is not None:
            check_id(body_id)
            if repo.current(self.session, rtype, body_id) is not None:
                raise ConflictError(f"{rtype}/{body_id} exists but does not match '{criteria}'")
        return self._put(rtype, rid, {**data, "id": rid}, existing=None, resolved=resolved, method="PUT")

    def delete(self, res_type: str, res_id: str) -> WriteResult:
        """https://hl7.org/fhir/R4/http.html#delete — a new version that marks the deletion."""
        self._check_type(res_type)
        existing = self._visible(repo.current(self.session, res_type, res_id, lock=True), res_type, res_id)
        if existing.deleted:
            return WriteResult(_stored(existing), 200)
        now = repo.utcnow()
        pending = repo.Pending(res_type, res_id, existing.version_id + 1, now, "DELETE", None, (),
                               existing.pk, existing.version_id)
        repo.write(self.session, [pending])
        return WriteResult(Stored(res_type, res_id, pending.version_id, now, None, "DELETE"), 200)

    def conditional_delete(self, res_type: str, criteria: str) -> WriteResult | None:
        """https://hl7.org/fhir/R4/http.html#3.1.0.7.1 (single match only)."""
        self._check_type(res_type)
        matches = self.search_ids(res_type, criteria)
        if len(matches) > 1:
            raise PreconditionFailedError(f"Conditional delete '{criteria}' matches {len(matches)} "
                                          f"{res_type} resources")
        return self.delete(res_type, matches[0]) if matches else None

    # -- internals -----------------------------------------------------------------------------

    def _check_type(self, res_type: str) -> None:
        if not is_resource_type(res_type):
            raise NotFoundError(f"'{res_type}' is not a FHIR R4 resource type", code="not-supported")

    def _put(self, rtype: str, rid: str, data: dict, *, existing: Row | None, method: str,
             resolved: Iterable[tuple[str, str]]) -> WriteResult:
        self.check_references([(rtype, data)], allowed=set(resolved) | {(rtype, rid)})
        pending, content = self.prepare(rtype, rid, data, existing, method)
        repo.write(self.session, [pending])
        self.check_written([pending])
        created = existing is None or existing.deleted
        stored = Stored(rtype, rid, pending.version_id, pending.last_updated, pending.text, method)
        return WriteResult(stored, 201 if created else 200, created=created, content=content,
                           replaced=pending.replaced)

    def prepare(self, rtype: str, rid: str, data: dict, existing: Row | None, method: str,
                now: datetime | None = None) -> tuple[repo.Pending, dict]:
        """Stamp id and meta, serialise and extract search values for one new version."""
        now = now or repo.utcnow()
        vid = 1 if existing is None else existing.version_id + 1
        meta = dict(data.get("meta") or {})
        meta["versionId"] = str(vid)
        meta["lastUpdated"] = instant(now)
        content = {"resourceType": rtype, "id": rid, **{k: v for k, v in data.items()
                                                          if k not in ("resourceType", "id", "meta")}}
        content["meta"] = meta
        if self.base_url:  # references to this server are stored relative (https://hl7.org/fhir/R4/references.html)
            local = self.base_url.rstrip("/") + "/"
            rewrite_references(content, lambda raw: raw[len(local):] if raw.startswith(local) else None)
        text = orjson.dumps(content).decode()
        pending = repo.Pending(rtype, rid, vid, now, method, text, extract(content),
                               existing.pk if existing is not None else None,
                               existing.version_id if existing is not None else None,
                               existing.content if existing is not None and not existing.deleted else None)
        return pending, content

    def check_existing(self, rows: Iterable[Row]) -> None:
        """Resources about to be changed must be ones the caller can see (404 as for a read otherwise)."""
        if self.scope.unrestricted:
            return
        by_type: dict[str, dict[int, Row]] = {}
        for row in rows:
            if not row.deleted:
                by_type.setdefault(row.res_type, {})[row.pk] = row
        for res_type, found in by_type.items():
            hidden = set(found) - self.scope.visible(self.session, res_type, found)
            if hidden:
                row = found[min(hidden)]
                raise NotFoundError(f"{res_type}/{row.res_id} is not known")

    def check_written(self, pendings: Sequence[repo.Pending]) -> None:
        """For a scope that bounds writes (a laboratory), what was written must fall inside it."""
        if not self.scope.checks_writes:
            return
        by_type: dict[str, dict[int, str]] = {}
        for p in pendings:
            if p.text is not None:
                by_type.setdefault(p.res_type, {})[p.pk] = p.res_id
        for res_type, written in by_type.items():
            outside = set(written) - self.scope.visible(self.session, res_type, written)
            if outside:
                rid = written[min(outside)]
                raise ForbiddenError(f"{res_type}/{rid} would be outside the orders addressed to this laboratory: "
                                     "a result must be based on (basedOn) one of its orders or name it as performer")

    def check_references(self, items: Sequence[tuple[str, dict]], *, allowed: set[tuple[str, str]]) -> None:
        """Every relative reference must name a live resource, or one being written alongside it."""
        wanted: dict[tuple[str, str], str] = {}
        for rtype, data in items:
            for path, raw in iter_references(data, rtype):
                ref = classify(raw, base_url=self.base_url)
                if ref.kind == "urn":
                    raise InvalidError(f"{path}: the reference '{raw}' is a urn: reference, which can only be "
                                       "resolved inside a transaction Bundle", code="invalid", expression=[path])
                if ref.kind == "conditional":
                    raise InvalidError(f"{path}: the conditional reference '{raw}' can only be resolved inside "
                                       "a transaction Bundle", code="invalid", expression=[path])
                if ref.kind == "relative" and (ref.res_type, ref.res_id) not in allowed:
                    if not is_resource_type(ref.res_type):
                        raise InvalidError(f"{path}: '{ref.res_type}' in reference '{raw}' is not a resource type",
                                           expression=[path])
                    wanted.setdefault((ref.res_type, ref.res_id), path)
        if not wanted:
            return
        found = repo.current_many(self.session, wanted)
        for key, path in wanted.items():
            row = found.get(key)
            if row is None or row.deleted:
                raise InvalidError(f"{path}: the reference '{key[0]}/{key[1]}' points to a resource that "
                                   f"{'was deleted' if row is not None else 'does not exist'}",
                                   code="not-found", expression=[path])


def _etag_version(value: str) -> int:
    """Version number from an ETag such as ``W/"3"`` (https://hl7.org/fhir/R4/http.html#concurrency)."""
    v = value.strip()
    if v.startswith("W/"):
        v = v[2:]
    v = v.strip('"')
    if not v.isdigit():
        raise InvalidError(f"If-Match '{value}' is not a version ETag such as W/\"3\"", code="value")
    return int(v)
