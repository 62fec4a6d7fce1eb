"""FHIR R4 REST API at /fhir, generic over resource type (https://hl7.org/fhir/R4/http.html).

Thin: each route parses, calls the store inside one unit of work, and shapes the HTTP answer.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from urllib.parse import parse_qsl, urlencode

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool

from audit import fhir as audit_fhir
from audit.describe import of_batch_entry, of_bundle, of_stored, of_versions, of_write
from audit.requests import audited as _audited
from audit.service import AuditEntry, audit_read, record
from ehr import bundle as bundles
from ehr.capability import capability_statement
from ehr.http import (
    FhirResponse,
    base_url,
    bundle_entry,
    check_accept,
    int_param,
    int_value,
    json_body,
    paged_links,
    prefer_lenient,
    prefer_return,
    resource_response,
)
from ehr.operations.everything import everything
from ehr.operations.validate import validate_operation
from ehr.outcome import information
from ehr.search import query as q
from ehr.search.engine import keep_pages, search
from ehr.service import FhirStore, WriteResult
from ehr.validation import is_resource_type
from himhis.errors import ForbiddenError, InvalidError, NotFoundError
from identity.access import scope_for
from identity.dependencies import get_principal
from identity.policy import policy
from identity.principal import Principal

router = APIRouter(prefix="/fhir", tags=["FHIR"], dependencies=[Depends(check_accept)])
public = APIRouter(prefix="/fhir", tags=["FHIR"])


def allow(interaction: str, res_type: str | None = None):
    """A dependency: the caller, if the policy lets their role do ``interaction`` on the URL's type."""

    async def dependency(request: Request) -> Principal:
        # Called inline rather than as a sync dependency: checking a token is CPU-only and short, and
        # each sync dependency would cost a thread-pool hop per request.
        principal = get_principal(request)
        target = res_type or request.path_params.get("res_type")
        try:
            policy().check(principal, interaction, _type(target) if target else None)
        except ForbiddenError as exc:
            entry = _audit_entry(request, principal, _audit_code(request, interaction), target,
                                 request.path_params.get("res_id"))
            await run_in_threadpool(audit_read, _db(request), entry.failed_with(exc))
            raise
        return principal

    return dependency


def _db(request: Request):
    return request.app.state.db


def _audit_code(request: Request, policy_interaction: str) -> str:
    """The restful-interaction code of this request (http://hl7.org/fhir/restful-interaction)."""
    params = request.path_params
    if policy_interaction == "read":
        return "vread" if "version_id" in params else "read"
    if policy_interaction == "search":
        return "search-type"
    if policy_interaction == "history":
        return ("history-instance" if "res_id" in params else "history-type" if "res_type" in params
                else "history-system")
    return "operation" if policy_interaction.startswith("operation:") else policy_interaction


def _audit_entry(request: Request, principal: Principal, interaction: str, res_type: str | None = None,
                 res_id: str | None = None, *, query: str | None = None) -> AuditEntry:
    """Who, from where and what, for the audit log; the result adds the version and the patients."""
    return AuditEntry.by(principal, interaction, resource_type=res_type, resource_id=res_id,
                         source_ip=request.client.host if request.client else None,
                         user_agent=request.headers.get("user-agent"), query=query)


def _store(request: Request, session, principal: Principal) -> FhirStore:
    return FhirStore(session, base_url=base_url(request), scope=scope_for(session, principal, request))


def _type(res_type: str) -> str:
    if not is_resource_type(res_type):
        raise NotFoundError(f"'{res_type}' is not a FHIR R4 resource type", code="not-supported")
    return res_type


def _since(request: Request, name: str) -> datetime | None:
    raw = request.query_params.get(name)
    if raw is None:
        return None
    from ehr.search.normalize import parse_fhir_date

    try:
        return parse_fhir_date(raw)[0]
    except ValueError as exc:
        raise InvalidError(f"'{name}' is not a valid instant: {exc}", expression=[name]) from exc


def _write_response(request: Request, result: WriteResult) -> FhirResponse:
    mode = prefer_return(request)
    resp = resource_response(result.stored, status=result.status, base=base_url(request),
                             body=mode == "representation")
    if mode == "OperationOutcome":
        resp.body = resp.render(information(f"{result.stored.res_type}/{result.stored.res_id} stored as "
                                            f"version {result.stored.version_id}"))
        resp.headers["content-length"] = str(len(resp.body))
    return resp


@public.get("/metadata")
async def metadata(request: Request) -> FhirResponse:
    """https://hl7.org/fhir/R4/http.html#capabilities — public, as the spec requires."""
    return FhirResponse(capability_statement(request.app.state.settings, base_url(request)))


@router.post("")
@router.post("/")
async def batch_or_transaction(request: Request, principal: Principal = Depends(get_principal)) -> FhirResponse:
    """https://hl7.org/fhir/R4/http.html#transaction"""
    body = await json_body(request)
    lenient = prefer_lenient(request)

    def get(session, url: str):
        return _get_entry(request, session, url, lenient, principal)

    rules = policy()
    kind = "transaction" if body.get("type") == "transaction" else "batch"
    entry = _audit_entry(request, principal, kind)

    def authorize(interaction: str, res_type: str | None) -> None:
        rules.check(principal, interaction, res_type)

    def audit(session, response: dict, written=None) -> None:
        reason = getattr(request.state, "break_glass", None)
        record(session, replace(entry, **of_bundle(session, response, written), **of_batch_entry(response),
                                **({"break_glass_reason": reason} if reason else {})))

    runner = bundles.db_runner(_db(request), base_url=base_url(request),
                               scope=lambda session: scope_for(session, principal, request))
    try:
        rules.check(principal, kind, None)
        result = await run_in_threadpool(bundles.process, runner, body, base_url=base_url(request), get=get,
                                         authorize=authorize, audit=audit)
    except Exception as exc:
        await run_in_threadpool(audit_read, _db(request), entry.failed_with(exc))
        raise
    return FhirResponse(result)


def _get_entry(request: Request, session, url: str, lenient: bool, principal: Principal) -> tuple[int, dict]:
    """GET inside a Bundle: read, vread or search."""
    path, _, query = url.partition("?")
    parts = [p for p in path.strip("/").split("/") if p]
    if parts and parts[0] == "AuditEvent":  # the audit log, not the resource store
        owner = _log_owner(session, principal)
        if len(parts) == 1:
            return 200, audit_fhir.search_bundle(session, parse_qsl(query, keep_blank_values=True),
                                                 base=base_url(request), patient_id=owner)
        if len(parts) == 2:
            return 200, audit_fhir.read_audit_event(session, parts[1], base=base_url(request), patient_id=owner)
        raise NotFoundError(f"{url}: the audit log keeps no versions of an AuditEvent")
    store = _store(request, session, principal)
    if len(parts) == 1:
        return 200, search(session, _type(parts[0]), q.parse_query(query), base=base_url(request),
                           lenient=lenient, scope=store.scope,
                           readable=lambda t: policy().allows(principal, "read", t))
    if len(parts) == 2:
        return 200, store.read(parts[0], parts[1]).json()
    if len(parts) == 4 and parts[2] == "_history":
        return 200, store.vread(parts[0], parts[1], parts[3]).json()
    raise InvalidError(f"'{url}' is not a read or search URL", code="not-supported")


@router.get("/_history")
async def system_history(request: Request, principal: Principal = Depends(allow("history"))) -> FhirResponse:
    return await _history(request, None, None, principal)


async def _history(request: Request, res_type: str | None, res_id: str | None,
                   principal: Principal) -> FhirResponse:
    """https://hl7.org/fhir/R4/http.html#history"""
    count = int_param(request, "_count", request.app.state.settings.default_page_size)
    offset = int_param(request, "_offset", 0, maximum=10**9)
    since, at = _since(request, "_since"), _since(request, "_at")
    code = "history-instance" if res_id else "history-type" if res_type else "history-system"
    versions, total = await _audited(request, lambda s: _store(request, s, principal).history(
        res_type, res_id, since=since, at=at, count=count, offset=offset),
        _audit_entry(request, principal, code, res_type, res_id, query=request.url.query or None),
        write=False, details=of_versions)
    base = base_url(request)
    return FhirResponse({"resourceType": "Bundle", "type": "history", "total": total,
                         "link": paged_links(request, offset=offset, count=count, total=total),
                         "entry": [bundle_entry(v, base, history=True) for v in versions]})


@router.get("/{res_type}/_history")
async def type_history(res_type: str, request: Request,
                       principal: Principal = Depends(allow("history"))) -> FhirResponse:
    return await _history(request, _type(res_type), None, principal)


def _log_owner(session, principal: Principal) -> str | None:
    """None for an auditor (the whole log); a patient's own id (their record's access log)."""
    if principal.has_role("auditor"):
        return None
    scope = scope_for(session, principal)
    if scope.patient_id is None:
        raise ForbiddenError("Only auditors and patients may read the audit log")
    return scope.patient_id


@router.get("/AuditEvent")
async def audit_events(request: Request,
                       principal: Principal = Depends(allow("search", "AuditEvent"))) -> FhirResponse:
    """The audit log as AuditEvent search (IHE BALP): auditors see all; a patient, who saw their record."""
    return await _audit_search(request, principal, list(request.query_params.multi_items()))


async def _audit_search(request: Request, principal: Principal, pairs: list[tuple[str, str]]) -> FhirResponse:
    values = dict(pairs)
    count = int_value(values.get("_count"), "_count", request.app.state.settings.default_page_size)
    offset = int_value(values.get("_offset"), "_offset", 0, maximum=10**9)
    bundle = await _audited(request, lambda s: audit_fhir.search_bundle(
        s, pairs, base=base_url(request), count=count, offset=offset, patient_id=_log_owner(s, principal)),
        _audit_entry(request, principal, "search-type", "AuditEvent", query=urlencode(pairs) or None),
        write=False)
    bundle["link"] = paged_links(request, offset=offset, count=count, total=bundle["total"])
    return FhirResponse(bundle)


@router.post("/AuditEvent/_search")
async def audit_events_post(request: Request,
                            principal: Principal = Depends(allow("search", "AuditEvent"))) -> FhirResponse:
    """AuditEvent search by POST, as by GET (https://hl7.org/fhir/R4/search.html#Introduction)."""
    form = await request.form()
    pairs = list(request.query_params.multi_items()) + [(k, str(v)) for k, v in form.multi_items()]
    return await _audit_search(request, principal, pairs)


@router.get("/AuditEvent/{res_id}")
async def audit_event(res_id: str, request: Request,
                      principal: Principal = Depends(allow("read", "AuditEvent"))) -> FhirResponse:
    event = await _audited(request, lambda s: audit_fhir.read_audit_event(
        s, res_id, base=base_url(request), patient_id=_log_owner(s, principal)),
        _audit_entry(request, principal, "read", "AuditEvent", res_id), write=False)
    return FhirResponse(event)


@router.get("/{res_type}")
async def search_type(res_type: str, request: Request,
                      principal: Principal = Depends(allow("search"))) -> FhirResponse:
    """https://hl7.org/fhir/R4/http.html#search"""
    pairs = list(request.query_params.multi_items())
    return await _search(request, _type(res_type), pairs, principal)


@router.post("/{res_type}/_search")
async def search_post(res_type: str, request: Request,
                      principal: Principal = Depends(allow("search"))) -> FhirResponse:
    """Search by POST with form-encoded parameters (https://hl7.org/fhir/R4/search.html#Introduction)."""
    form = await request.form()
    pairs = list(request.query_params.multi_items()) + [(k, str(v)) for k, v in form.multi_items()]
    return await _search(request, _type(res_type), pairs, principal)


async def _search(request: Request, res_type: str, pairs: list[tuple[str, str]],
                  principal: Principal) -> FhirResponse:
    lenient = prefer_lenient(request)
    page = request.app.state.settings.default_page_size
    db = _db(request)

    def keep(pks: list[int]) -> str:
        return db.run(lambda s: keep_pages(s, pks))

    result = await _audited(request, lambda s: search(
        s, res_type, pairs, base=base_url(request), lenient=lenient, default_count=page, keep=keep,
        readable=lambda t: policy().allows(principal, "read", t), scope=scope_for(s, principal, request)),
        _audit_entry(request, principal, "search-type", res_type, query=urlencode(pairs) or None),
        write=False, details=of_bundle)
    return FhirResponse(result)


@router.post("/{res_type}")
async def create(res_type: str, request: Request, principal: Principal = Depends(allow("create"))) -> FhirResponse:
    """https://hl7.org/fhir/R4/http.html#create; ``If-None-Exist`` makes it conditional."""
    body = await json_body(request)
    res_type = _type(res_type)
    cond = request.headers.get("if-none-exist")
    if cond and "?" in cond:
        cond = cond.split("?", 1)[1]
    result = await _audited(request, lambda s: _store(request, s, principal).create(
        body, if_none_exist=cond, res_type=res_type), _audit_entry(request, principal, "create", res_type, query=cond),
        write=True, details=of_write)
    return _write_response(request, result)


@router.put("/{res_type}")
async def conditional_update(res_type: str, request: Request,
                             principal: Principal = Depends(allow("update"))) -> FhirResponse:
    """https://hl7.org/fhir/R4/http.html#cond-update"""
    body = await json_body(request)
    criteria = request.url.query
    if not criteria:
        raise InvalidError("A PUT to a type needs search criteria (conditional update) or an id in the URL",
                           code="required")
    res_type = _type(res_type)
    result = await _audited(request, lambda s: _store(request, s, principal).conditional_update(
        res_type, criteria, body), _audit_entry(request, principal, "update", res_type, query=criteria),
        write=True, details=of_write)
    return _write_response(request, result)


@router.delete("/{res_type}")
async def conditional_delete(res_type: str, request: Request,
                             principal: Principal = Depends(allow("delete"))) -> FhirResponse:
    criteria = request.url.query
    if not criteria:
        raise InvalidError("A DELETE on a type needs search criteria", code="required")
    res_type = _type(res_type)
    await _audited(request, lambda s: _store(request, s, principal).conditional_delete(res_type, criteria),
                   _audit_entry(request, principal, "delete", res_type, query=criteria), write=True,
                   details=of_write)
    return FhirResponse(information("Deleted"), status_code=200)


@router.post("/{res_type}/$validate")
async def validate_type(res_type: str, request: Request,
                        principal: Principal = Depends(allow("operation:validate"))) -> FhirResponse:
    """https://hl7.org/fhir/R4/resource-operation-validate.html"""
    body = await json_body(request)
    result = await _audited(request, lambda s: validate_operation(
        _store(request, s, principal), _type(res_type), body, None),
        _audit_entry(request, principal, "operation", res_type, query="$validate"), write=False)
    return FhirResponse(result)


@router.post("/{res_type}/{res_id}/$validate")
async def validate_instance(res_type: str, res_id: str, request: Request,
                            principal: Principal = Depends(allow("operation:validate"))) -> FhirResponse:
    body = await json_body(request)
    result = await _audited(request, lambda s: validate_operation(
        _store(request, s, principal), _type(res_type), body, res_id),
        _audit_entry(request, principal, "operation", res_type, res_id, query="$validate"), write=False)
    return FhirResponse(result)


@router.get("/Patient/{res_id}/$everything")
async def patient_everything(res_id: str, request: Request,
                             principal: Principal = Depends(allow("operation:everything", "Patient"))) -> FhirResponse:
    """https://hl7.org/fhir/R4/patient-operation-everything.html"""
    since = _since(request, "_since")
    types = request.query_params.get("_type")
    result = await _audited(request, lambda s: everything(
        _store(request, s, principal), res_id, base=base_url(request), since=since,
        types=types.split(",") if types else None),
        _audit_entry(request, principal, "operation", "Patient", res_id,
                     query="$everything" + (f"?{request.url.query}" if request.url.query else "")),
        write=False, details=of_bundle)
    return FhirResponse(result)


@router.get("/{res_type}/{res_id}")
async def read(res_type: str, res_id: str, request: Request,
               principal: Principal = Depends(allow("read"))) -> FhirResponse:
    """https://hl7.org/fhir/R4/http.html#read"""
    stored = await _audited(request, lambda s: _store(request, s, principal).read(_type(res_type), res_id),
                            _audit_entry(request, principal, "read", res_type, res_id), write=False,
                            details=of_stored)
    return resource_response(stored, base=base_url(request))


@router.put("/{res_type}/{res_id}")
async def update(res_type: str, res_id: str, request: Request,
                 principal: Principal = Depends(allow("update"))) -> FhirResponse:
    """https://hl7.org/fhir/R4/http.html#update; ``If-Match`` guards against lost updates."""
    body = await json_body(request)
    if_match = request.headers.get("if-match")
    res_type = _type(res_type)
    result = await _audited(request, lambda s: _store(request, s, principal).update(
        res_type, res_id, body, if_match=if_match), _audit_entry(request, principal, "update", res_type, res_id),
        write=True, details=of_write)
    return _write_response(request, result)


@router.delete("/{res_type}/{res_id}")
async def delete(res_type: str, res_id: str, request: Request,
                 principal: Principal = Depends(allow("delete"))) -> FhirResponse:
    """https://hl7.org/fhir/R4/http.html#delete"""
    result = await _audited(request, lambda s: _store(request, s, principal).delete(_type(res_type), res_id),
                            _audit_entry(request, principal, "delete", res_type, res_id), write=True,
                            details=of_write)
    return FhirResponse(information(f"{res_type}/{res_id} deleted"), status_code=200,
                        headers={"ETag": result.stored.etag})


@router.get("/{res_type}/{res_id}/_history")
async def instance_history(res_type: str, res_id: str, request: Request,
                           principal: Principal = Depends(allow("history"))) -> FhirResponse:
    return await _history(request, _type(res_type), res_id, principal)


@router.get("/{res_type}/{res_id}/_history/{version_id}")
async def vread(res_type: str, res_id: str, version_id: str, request: Request,
                principal: Principal = Depends(allow("read"))) -> FhirResponse:
    """https://hl7.org/fhir/R4/http.html#vread"""
    stored = await _audited(request, lambda s: _store(request, s, principal).vread(
        _type(res_type), res_id, version_id), _audit_entry(request, principal, "vread", res_type, res_id),
        write=False, details=of_stored)
    return resource_response(stored, base=base_url(request))
