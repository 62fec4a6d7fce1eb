"""Audit entries for HTTP requests: who asked, from where, and — for a refused request — what it was."""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from audit.service import AuditEntry, run_audited

# The restful-interaction a request to the FHIR API would have been, by method and path shape
# (https://hl7.org/fhir/R4/http.html): used for requests refused before their route ran (a 401).
_FHIR_SHAPES = {
    ("GET", 1): "search-type", ("POST", 1): "create", ("PUT", 1): "update", ("DELETE", 1): "delete",
    ("GET", 2): "read", ("PUT", 2): "update", ("DELETE", 2): "delete", ("GET", 4): "vread",
}


def entry(request: Request, principal: Any, interaction: str, **kw: Any) -> AuditEntry:
    """An entry for ``interaction`` by ``principal`` (None when the caller is unknown), from ``request``."""
    where = {"source_ip": request.client.host if request.client else None,
             "user_agent": request.headers.get("user-agent")}
    if principal is None:
        return AuditEntry(interaction=interaction, **where, **kw)
    return AuditEntry.by(principal, interaction, **where, **kw)


def refused(request: Request, status: int, message: str) -> AuditEntry:
    """An entry for a request refused before its route ran, described from its method and path."""
    path = request.url.path
    parts = [p for p in path.split("/") if p]
    query = request.url.query or None
    if parts[:1] != ["fhir"]:
        # Only the method and path: the query of a page or form (a patient search, a registration
        # check) may hold names, phone numbers or an identifier typed by mistake.
        interaction, res_type, res_id = "operation", None, None
        query = f"{request.method} {path}"
    else:
        rest = parts[1:]
        res_type = rest[0] if rest and rest[0][:1].isupper() else None
        res_id = rest[1] if len(rest) >= 2 and not rest[1].startswith(("_", "$")) else None
        if not rest:
            interaction = "batch"  # POST /fhir: a batch or a transaction
        elif rest[-1] == "_history":
            interaction = {1: "history-system", 2: "history-type"}.get(len(rest), "history-instance")
        elif rest[-1].startswith("$"):
            interaction, query = "operation", rest[-1] + (f"?{query}" if query else "")
        elif rest[-1] == "_search":
            interaction = "search-type"
        else:
            interaction = _FHIR_SHAPES.get((request.method, len(rest)), "operation")
    return entry(request, None, interaction, resource_type=res_type, resource_id=res_id,
                 query=query).failed(status, message)


async def audited(request: Request, fn, entry: AuditEntry, *, write: bool, details=None):
    """Run ``fn`` in one unit of work and record it in the audit log, successful or not, with any
    break-glass reason that widened what the caller could see."""

    def described(session, result) -> dict:
        out = dict(details(session, result)) if details else {}
        reason = getattr(request.state, "break_glass", None)
        return out | ({"break_glass_reason": reason} if reason else {})

    return await run_in_threadpool(run_audited, request.app.state.db, fn, entry, write=write, details=described)
