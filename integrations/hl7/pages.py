"""The HL7 interfaces screen: messages held because they could not be placed, why, and replay."""

from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from himhis.errors import HimHISError
from his import web
from identity.principal import Principal
from integrations.hl7 import service
from integrations.hl7.routes import PERMISSION

pages = APIRouter(include_in_schema=False)


async def _held(request: Request, principal: Principal) -> list[dict]:
    return await web.audited(request, lambda s: service.held_messages(s),
                             web.entry(request, principal, "operation", query="GET /interfaces/hl7"), write=False)


def _page(request: Request, principal: Principal, held: list[dict], *, done: dict | None = None,
          error: str | None = None, status: int = 200) -> HTMLResponse:
    return web.templates.TemplateResponse(request, "interfaces_hl7.html", {
        "principal": principal, "held": held, "done": done, "error": error}, status_code=status)


@pages.get("/interfaces/hl7", response_class=HTMLResponse)
async def interfaces(request: Request, replayed: int | None = None, state: str = "", reason: str = "",
                     principal: Principal = Depends(web.allow(*PERMISSION))) -> HTMLResponse:
    """The hold queue, oldest first, and the outcome of the last replay."""
    done = {"id": replayed, "state": state, "reason": reason} if replayed is not None else None
    return _page(request, principal, await _held(request, principal), done=done)


@pages.post("/interfaces/hl7/held/{message_id}/replay", response_class=HTMLResponse)
async def replay(message_id: int, request: Request,
                 principal: Principal = Depends(web.allow(*PERMISSION))) -> Response:
    """Replay one held message once its cause is fixed; back to the queue with what happened."""
    try:
        outcome = await web.audited(
            request, lambda s: service.replay_held(s, message_id=message_id, base_url=web.base(request)),
            web.entry(request, principal, "operation", query=f"POST /interfaces/hl7/{message_id}/replay"),
            write=True)
    except HimHISError as exc:
        if exc.status not in (404, 409):
            raise
        return _page(request, principal, await _held(request, principal), error=exc.message, status=exc.status)
    query = f"replayed={outcome.message_id}&state={outcome.state}"
    if outcome.reason:
        query += f"&reason={quote(outcome.reason)}"
    return RedirectResponse(f"/interfaces/hl7?{query}", status_code=303)
