"""HTTP for break-glass: staff open a grant with a reason; auditors list every grant for review."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from audit import requests
from audit.service import ETREAT, run_audited
from himhis.errors import ForbiddenError, InvalidError
from identity import breakglass
from identity.dependencies import get_principal
from identity.principal import Principal

router = APIRouter(prefix="/break-glass", tags=["break-glass"])


async def _form(request: Request) -> dict:
    if request.headers.get("content-type", "").startswith("application/json"):
        body = await request.json()
        if not isinstance(body, dict):
            raise InvalidError("Send a JSON object with 'reason', and optionally 'patient' and 'minutes'")
        return body
    return dict(await request.form())


@router.post("")
async def open_grant(request: Request, principal: Principal = Depends(get_principal)) -> JSONResponse:
    """Open emergency access beyond the caller's facility (to one patient, or to all) for a while; audited."""
    form = await _form(request)
    minutes = form.get("minutes", breakglass.DEFAULT_MINUTES)
    try:
        minutes = int(minutes)
    except (TypeError, ValueError) as exc:
        raise InvalidError("'minutes' must be a whole number", expression=["minutes"]) from exc
    reason, patient = str(form.get("reason") or ""), form.get("patient") or None
    entry = requests.entry(request, principal, "break-glass", patient_ids=[patient] if patient else (),
                           query=f"minutes={minutes}", break_glass_reason=" ".join(reason.split()) or None,
                           purpose_of_use=ETREAT)
    # The grant and its audit record are one unit of work; a refused request is recorded as such.
    grant = await run_in_threadpool(run_audited, request.app.state.db, lambda s: breakglass.request(
        s, principal, reason=reason, patient_id=patient, minutes=minutes), entry, write=True)
    return JSONResponse({"reason": grant.reason, "patient": grant.patient_id,
                         "expires": grant.expires.isoformat() + "Z"}, status_code=201)


@router.get("")
async def review(request: Request, principal: Principal = Depends(get_principal)) -> JSONResponse:
    """Every grant, newest first: the auditor's review list."""
    if not principal.has_role("auditor"):
        raise ForbiddenError("Only auditors can review break-glass grants")
    rows = await run_in_threadpool(run_audited, request.app.state.db, breakglass.for_review,
                                   requests.entry(request, principal, "search-system",
                                                  query="GET /break-glass (review of grants)"), write=False,
                                   details=lambda s, rows: {"patient_ids": [r["patient_id"] for r in rows
                                                                            if r["patient_id"]]})
    return JSONResponse([{k: (v.isoformat() + "Z" if hasattr(v, "isoformat") else v) for k, v in r.items()
                          if k != "pk"} for r in rows])
