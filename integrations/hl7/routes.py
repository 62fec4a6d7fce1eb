"""The HL7 interfaces hold queue over HTTP: what is held and why, and replaying a message once its cause
is fixed. Allowed by the policy entry ``operation:hl7-interfaces`` on MessageHeader (admin)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from his import web
from identity.principal import Principal
from integrations.hl7 import service

router = APIRouter(prefix="/interfaces/hl7", tags=["interfaces"])
PERMISSION = ("operation:hl7-interfaces", "MessageHeader")


@router.get("/held")
async def held(request: Request, principal: Principal = Depends(web.allow(*PERMISSION))) -> dict:
    """Messages in the hold queue (held, or failed), oldest first, with the reason each is held."""
    items = await web.audited(request, lambda s: service.held_messages(s),
                              web.entry(request, principal, "operation", query="GET /interfaces/hl7/held"),
                              write=False)
    return {"held": items}


@router.post("/{message_id}/replay")
async def replay(message_id: int, request: Request, principal: Principal = Depends(web.allow(*PERMISSION))) -> dict:
    """Process a held message again; answers its new state (processed, or held with the new reason)."""
    outcome = await web.audited(
        request, lambda s: service.replay_held(s, message_id=message_id, base_url=web.base(request)),
        web.entry(request, principal, "operation", query=f"POST /interfaces/hl7/{message_id}/replay"), write=True)
    return {"id": outcome.message_id, "state": outcome.state, "reason": outcome.reason,
            "resources": outcome.resource_ids}
