"""HTTP for break-glass: staff open a grant with a reason; auditors list every grant for review."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

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
    """Open emergency access beyond the caller's facility (to one patient, or to all) for a while."""
    form = await _form(request)
    minutes = form.get("minutes", breakglass.DEFAULT_MINUTES)
    try:
        minutes = int(minutes)
    except (TypeError, ValueError) as exc:
        raise InvalidError("'minutes' must be a whole number", expression=["minutes"]) from exc
    grant = await run_in_threadpool(request.app.state.db.run, lambda s: breakglass.request(
        s, principal, reason=str(form.get("reason") or ""), patient_id=form.get("patient") or None,
        minutes=minutes))
    return JSONResponse({"reason": grant.reason, "patient": grant.patient_id,
                         "expires": grant.expires.isoformat() + "Z"}, status_code=201)


@router.get("")
async def review(request: Request, principal: Principal = Depends(get_principal)) -> JSONResponse:
    """Every grant, newest first: the auditor's review list."""
    if not principal.has_role("auditor"):
        raise ForbiddenError("Only auditors can review break-glass grants")
    rows = await run_in_threadpool(request.app.state.db.run, breakglass.for_review, write=False)
    return JSONResponse([{k: (v.isoformat() + "Z" if hasattr(v, "isoformat") else v) for k, v in r.items()
                          if k != "pk"} for r in rows])
