"""Batch and transaction Bundles (https://hl7.org/fhir/R4/http.html#transaction).

A transaction is all or nothing: identities are resolved first (``urn:uuid:`` full URLs, conditional
creates and updates, conditional references), then every write is applied in one flush. Two entries
that would change the same resource fail the whole transaction instead of silently dropping one.
A batch runs each entry in its own savepoint, so one failure leaves the others standing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar
from urllib.parse import unquote

from sqlalchemy.orm import Session

from ehr import repository as repo
from ehr.outcome import error_outcome
from ehr.references import classify, rewrite_references
from ehr.scope import Scope
from ehr.service import FhirStore, Stored, WriteResult, _etag_version, criteria_key, instant, new_id
from ehr.validation import check_id, is_resource_type, validate_resource
from himhis.errors import (
    ConflictError,
    HimHISError,
    InvalidError,
    NotFoundError,
    PreconditionFailedError,
)

# Processing order within a transaction (https://hl7.org/fhir/R4/http.html#trules).
_ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "PATCH": 3, "GET": 4, "HEAD": 4}
_STATUS_TEXT = {200: "200 OK", 201: "201 Created", 204: "204 No Content"}

T = TypeVar("T")
Authorize = Callable[[str, str | None], None]
GetHandler = Callable[[Session, str], tuple[int, dict | None]]


@dataclass(slots=True)
class Entry:
    index: int
    method: str
    url: str
    res_type: str | None = None
    res_id: str | None = None
    criteria: str | None = None
    resource: dict | None = None
    full_url: str | None = None
    if_none_exist: str | None = None
    if_match: str | None = None
    target: str | None = None  # resolved id
    skip: bool = False  # conditional create that matched: nothing to write
    response: dict = field(default_factory=dict)

    @property
    def path(self) -> str:
        return f"Bundle.entry[{self.index}]"


Runner = Callable[[Callable[[FhirStore], T]], T]


def db_runner(db, *, base_url: str | None = None, also: Callable[[Session], None] | None = None,
              scope: Scope | Callable[[Session], Scope] | None = None) -> Runner:
    """A Runner over a Database: each call is one unit of work; ``also`` joins that unit (e.g. progress)."""

    def run(fn):
        def work(session: Session):
            out = fn(FhirStore(session, base_url=base_url, scope=scope(session) if callable(scope) else scope))
            if also is not None:
                also(session)
            return out

        return db.run(work)

    return run


# Records a processed transaction (or one batch entry) in the audit log, within its unit of work;
# for a transaction it also gets the versions written, which name the patients without a query.
AuditHook = Callable[[Session, dict, Sequence[repo.Pending] | None], None]


def process(run: Runner, bundle: dict, *, base_url: str | None = None, get: GetHandler | None = None,
            authorize: Authorize | None = None, audit: AuditHook | None = None) -> dict:
    """Run a batch or transaction Bundle and return the response Bundle.

    ``run(fn)`` calls ``fn(store)`` inside one unit of work (commit, or roll back on error). A
    transaction is one such unit; a batch runs each entry in a unit of its own, so entries stay
    independent and a long batch never holds one database transaction open.
    """
    if bundle.get("resourceType") != "Bundle":
        raise InvalidError("Only a Bundle can be posted to the base URL", expression=["resourceType"])
    kind = bundle.get("type")
    if kind not in ("batch", "transaction"):
        raise InvalidError(f"Bundle.type must be 'batch' or 'transaction', not '{kind}'", expression=["Bundle.type"])
    raw_entries = bundle.get("entry") or []
    if not isinstance(raw_entries, list):
        raise InvalidError("Bundle.entry must be a list", expression=["Bundle.entry"])
    if kind == "transaction":
        entries = [_parse_entry(base_url, i, e) for i, e in enumerate(raw_entries)]
        for e in entries:
            _authorize(authorize, e)

        def work(store: FhirStore) -> dict:
            written = _transaction(store, entries, get)
            response = _response(kind, entries)
            if audit is not None:
                audit(store.session, response, written)
            return response

        return run(work)
    entries = [_batch_entry(run, base_url, i, e, get, authorize, audit) for i, e in enumerate(raw_entries)]
    return _response(kind, entries)


def _response(kind: str, entries: list[Entry]) -> dict:
    return {"resourceType": "Bundle", "type": f"{kind}-response",
            "entry": [{"response": e.response} | ({"resource": e.response.pop("_resource")}
                                                  if "_resource" in e.response else {}) for e in entries]}


def _parse_entry(base_url: str | None, index: int, raw: object) -> Entry:
    path = f"Bundle.entry[{index}]"
    if not isinstance(raw, dict):
        raise InvalidError(f"{path} is not an object", expression=[path])
    request = raw.get("request")
    if not isinstance(request, dict) or not request.get("method") or not request.get("url"):
        raise InvalidError(f"{path}.request with method and url is required", code="required",
                           expression=[f"{path}.request"])
    method = str(request["method"]).upper()
    if method not in _ORDER:
        raise InvalidError(f"{path}.request.method '{method}' is not an HTTP verb FHIR uses",
                           expression=[f"{path}.request.method"])
    url = str(request["url"])
    if base_url and url.startswith(base_url.rstrip("/") + "/"):
        url = url[len(base_url.rstrip("/")) + 1:]
    entry = Entry(index, method, url, full_url=raw.get("fullUrl"), resource=raw.get("resource"),
                  if_none_exist=request.get("ifNoneExist"), if_match=request.get("ifMatch"))
    path_part, _, query = url.partition("?")
    parts = [unquote(p) for p in path_part.strip("/").split("/") if p]
    if method in ("GET", "HEAD"):
        return entry
    if method == "PATCH":
        raise InvalidError(f"{path}: PATCH is not supported", code="not-supported", expression=[path])
    if not parts or not is_resource_type(parts[0]) or len(parts) > 2:
        raise InvalidError(f"{path}.request.url '{url}' does not name a resource type or instance",
                           expression=[f"{path}.request.url"])
    entry.res_type = parts[0]
    if len(parts) == 2:
        check_id(parts[1])
        entry.res_id = parts[1]
    entry.criteria = query or None
    if method in ("POST", "PUT"):
        if not isinstance(entry.resource, dict):
            raise InvalidError(f"{path}.resource is required for {method}", code="required",
                               expression=[f"{path}.resource"])
        validate_resource(entry.resource, expected_type=entry.res_type, path=f"{path}.resource")
        if method == "PUT" and not entry.res_id and not entry.criteria:
            raise InvalidError(f"{path}: PUT needs an id or search criteria in its url",
                               expression=[f"{path}.request.url"])
    if method == "DELETE" and not entry.res_id and not entry.criteria:
        raise InvalidError(f"{path}: DELETE needs an id or search criteria in its url",
                           expression=[f"{path}.request.url"])
    return entry


def _transaction(store: FhirStore, entries: list[Entry], get: GetHandler | None) -> list[repo.Pending]:
    """Apply the entries as one unit; returns the versions written."""
    ordered = sorted(entries, key=lambda e: (_ORDER[e.method], e.index))
    mapping: dict[str, str] = {}  # fullUrl -> Type/id
    changed: dict[tuple[str, str], Entry] = {}
    for e in ordered:
        if e.method in ("GET", "HEAD"):
            continue
        _resolve_target(store, e)
        if e.full_url and e.target:
            mapping[e.full_url] = f"{e.res_type}/{e.target}"
        if e.skip:
            continue
        key = (e.res_type, e.target)
        if key in changed:
            other = changed[key]
            raise ConflictError(f"{e.path} and {other.path} both change {e.res_type}/{e.target}; a "
                                "transaction may change a resource only once", expression=[e.path])
        changed[key] = e
    writes = [e for e in ordered if e.method in ("POST", "PUT") and not e.skip]
    resolved: dict[str, str] = {}  # conditional reference -> Type/id, once per transaction
    for e in writes:
        _rewrite_refs(store, e, mapping, resolved)
    store.check_references([(e.res_type, e.resource) for e in writes],
                           allowed={(e.res_type, e.target) for e in writes})
    existing = _lock_existing(store, [k for k, e in changed.items() if e.method != "POST"])
    store.check_existing(existing.values())
    now = repo.utcnow()
    pendings = []
    for e in ordered:
        if e.method in ("GET", "HEAD") or e.skip:
            continue
        row = existing.get((e.res_type, e.target))
        if e.method == "DELETE":
            if row is None or row.deleted:
                e.response = {"status": "204 No Content"}
                continue
            pending = repo.Pending(e.res_type, e.target, row.version_id + 1, now, "DELETE", None, (),
                                   row.pk, row.version_id)
            e.response = {"status": "204 No Content", "etag": f'W/"{pending.version_id}"'}
        else:
            if e.if_match is not None:
                wanted = _etag_version(e.if_match)
                if row is None or row.deleted or row.version_id != wanted:
                    raise PreconditionFailedError(f"{e.path}: ifMatch asked for version {wanted} of "
                                                  f"{e.res_type}/{e.target}", expression=[e.path])
            live = row if row is not None and not row.deleted else None
            pending, _content = store.prepare(e.res_type, e.target, e.resource, row, e.method, now)
            created = live is None
            e.response = {"status": "201 Created" if created else "200 OK",
                          "location": f"{e.res_type}/{e.target}/_history/{pending.version_id}",
                          "etag": f'W/"{pending.version_id}"', "lastModified": instant(now)}
        pendings.append(pending)
    repo.write(store.session, pendings)
    store.check_written(pendings)
    for e in ordered:
        if e.method in ("GET", "HEAD"):
            status, resource = _get(store, e, get)
            e.response = {"status": _STATUS_TEXT.get(status, str(status))}
            if resource is not None:
                e.response["_resource"] = resource
            if status >= 400:
                raise _EntryFailed(e, status, resource)
    return pendings


class _EntryFailed(HimHISError):
    def __init__(self, e: Entry, status: int, resource: dict | None) -> None:
        detail = ""
        if resource and resource.get("resourceType") == "OperationOutcome":
            detail = ": " + "; ".join(i.get("diagnostics", "") for i in resource.get("issue", []))
        super().__init__(f"{e.path} ({e.method} {e.url}) failed with {status}{detail}", status=status,
                         expression=[e.path])


def _resolve_target(store: FhirStore, e: Entry) -> None:
    """Work out which resource an entry writes, creating ids and running conditional searches."""
    if e.method == "POST":
        if e.if_none_exist:
            repo.lock_key(store.session, criteria_key(e.res_type, e.if_none_exist))
            matches = store.search_ids(e.res_type, e.if_none_exist)
            if len(matches) > 1:
                raise PreconditionFailedError(f"{e.path}: ifNoneExist '{e.if_none_exist}' matches "
                                              f"{len(matches)} resources", expression=[e.path])
            if matches:
                e.target, e.skip = matches[0], True
                stored = store.read(e.res_type, matches[0])
                e.response = {"status": "200 OK", "location": stored.location, "etag": stored.etag,
                              "lastModified": instant(stored.last_updated)}
                return
        e.target = new_id()
        return
    if e.res_id:
        e.target = e.res_id
        if e.method == "PUT":
            body_id = e.resource.get("id")
            if body_id is not None and body_id != e.res_id:
                raise InvalidError(f"{e.path}: the resource id '{body_id}' does not match the url id "
                                   f"'{e.res_id}'", expression=[f"{e.path}.resource.id"])
        return
    repo.lock_key(store.session, criteria_key(e.res_type, e.criteria))
    matches = store.search_ids(e.res_type, e.criteria)
    if len(matches) > 1:
        raise PreconditionFailedError(f"{e.path}: conditional {e.method} '{e.url}' matches {len(matches)} "
                                      "resources", expression=[e.path])
    if matches:
        e.target = matches[0]
    elif e.method == "DELETE":
        e.skip = True
        e.response = {"status": "204 No Content"}
    else:
        e.target = (e.resource or {}).get("id") or new_id()


def _rewrite_refs(store: FhirStore, e: Entry, mapping: dict[str, str], cache: dict[str, str]) -> None:
    """Point ``urn:uuid:``/fullUrl and conditional references at the resolved resources."""
    e.resource = {**e.resource, "id": e.target}

    def swap(raw: str) -> str | None:
        if raw in mapping:
            return mapping[raw]
        if raw in cache:
            return cache[raw]
        ref = classify(raw, base_url=store.base_url)
        if ref.kind == "urn":
            raise InvalidError(f"{e.path}.resource: the reference '{raw}' matches no fullUrl in this "
                               "transaction", code="not-found", expression=[f"{e.path}.resource"])
        if ref.kind == "conditional":
            cache[raw] = resolve_conditional_reference(store, ref.res_type, ref.criteria, raw,
                                                       f"{e.path}.resource")
            return cache[raw]
        return None

    rewrite_references(e.resource, swap)


def resolve_conditional_reference(store: FhirStore, res_type: str, criteria: str, raw: str, path: str) -> str:
    """``Type?criteria`` must match exactly one resource (https://hl7.org/fhir/R4/http.html#trules)."""
    matches = store.search_ids(res_type, criteria)
    if len(matches) != 1:
        what = "no resource" if not matches else f"{len(matches)} resources"
        raise PreconditionFailedError(f"{path}: the conditional reference '{raw}' matches {what}; it must "
                                      "match exactly one", code="not-found" if not matches else "multiple-matches",
                                      expression=[path])
    return f"{res_type}/{matches[0]}"


def _lock_existing(store: FhirStore, keys: list[tuple[str, str]]) -> dict:
    """Current rows of the resources being changed, locked in a fixed order so transactions cannot deadlock."""
    found = {}
    for rtype, rid in sorted(keys):
        row = repo.current(store.session, rtype, rid, lock=True)
        if row is not None:
            found[(rtype, rid)] = row
    return found


def _get(store: FhirStore, e: Entry, get: GetHandler | None) -> tuple[int, dict | None]:
    if get is None:
        raise InvalidError(f"{e.path}: GET entries are not supported here", code="not-supported")
    try:
        return get(store.session, e.url)
    except HimHISError as exc:
        return exc.status, error_outcome(exc.message, status=exc.status, code=exc.code)


def _authorize(authorize: Authorize | None, e: Entry) -> None:
    """Each entry is checked as the interaction it stands for (https://hl7.org/fhir/R4/http.html#transaction)."""
    if authorize is None:
        return
    if e.method in ("GET", "HEAD"):
        path = e.url.partition("?")[0].strip("/").split("/")
        authorize("search" if len(path) == 1 else "read", path[0] if path and path[0] else None)
    else:
        authorize({"POST": "create", "PUT": "update", "DELETE": "delete"}[e.method], e.res_type)


def _batch_entry(run: Runner, base_url: str | None, index: int, raw: object, get: GetHandler | None,
                 authorize: Authorize | None = None, audit: AuditHook | None = None) -> Entry:
    """One batch entry on its own (https://hl7.org/fhir/R4/http.html#brules); its failure is its answer."""
    e = Entry(index, "", "")
    try:
        e = _parse_entry(base_url, index, raw)
        _authorize(authorize, e)
        if e.method in ("GET", "HEAD"):
            status, resource = run(lambda store: _audit_one(store, audit, e, _get(store, e, get)))
            e.response = {"status": _STATUS_TEXT.get(status, str(status))}
            if resource is not None:
                e.response["outcome" if status >= 400 else "_resource"] = resource
        else:
            e.response = _write_response(run(lambda store: _audit_one(store, audit, e, _batch_write(store, e))))
    except HimHISError as exc:
        message = exc.message if exc.message.startswith(e.path) else f"{e.path}: {exc.message}"
        e.response = {"status": f"{exc.status}",
                      "outcome": error_outcome(message, status=exc.status, code=exc.code, expression=exc.expression)}
        if audit is not None:  # a refused or failed entry is recorded too, in a unit of work of its own
            failed = {"request": {"method": e.method, "url": e.url}, "response": e.response} if e.method else {
                "response": e.response}
            run(lambda store: audit(store.session, _audit_bundle([failed]), None))
    return e


def _audit_bundle(entries: list[dict]) -> dict:
    return {"resourceType": "Bundle", "type": "batch-response", "entry": entries}


def _audit_one(store: FhirStore, audit: AuditHook | None, e: Entry, result: T) -> T:
    """Record one batch entry in its own unit of work, as a one-entry response Bundle whose entry also
    carries the entry's ``request`` (what was asked) for the audit record."""
    if audit is not None:
        entry: dict = {"request": {"method": e.method, "url": e.url}}
        if isinstance(result, tuple):
            status, resource = result
            if status < 400 and isinstance(resource, dict):
                entry["resource"] = resource
            else:
                entry["response"] = {"status": str(status), "outcome": resource}
        elif result is not None:
            entry["response"] = _write_response(result)
            if e.res_type and e.target:
                entry["response"]["location"] = f"{e.res_type}/{e.target}/_history/{result.stored.version_id}"
        audit(store.session, _audit_bundle([entry]), None)
    return result


def _batch_write(store: FhirStore, e: Entry) -> WriteResult | None:
    if e.resource is not None:
        resource = dict(e.resource)

        def swap(raw: str) -> str | None:
            ref = classify(raw, base_url=store.base_url)
            if ref.kind == "conditional":
                return resolve_conditional_reference(store, ref.res_type, ref.criteria, raw,
                                                     f"{e.path}.resource")
            return None

        rewrite_references(resource, swap)
        e.resource = resource
    if e.method == "POST":
        return store.create(e.resource, if_none_exist=e.if_none_exist, res_type=e.res_type)
    if e.method == "PUT":
        if e.res_id:
            return store.update(e.res_type, e.res_id, {**e.resource, "id": e.resource.get("id", e.res_id)},
                                if_match=e.if_match)
        return store.conditional_update(e.res_type, e.criteria, e.resource)
    if e.res_id:
        try:
            return store.delete(e.res_type, e.res_id)
        except NotFoundError:
            return None
    return store.conditional_delete(e.res_type, e.criteria)


def _write_response(result: WriteResult | None) -> dict:
    if result is None or result.stored.deleted:
        return {"status": "204 No Content"} | ({"etag": result.stored.etag} if result else {})
    s: Stored = result.stored
    return {"status": _STATUS_TEXT[result.status], "location": s.location, "etag": s.etag,
            "lastModified": instant(s.last_updated)}
