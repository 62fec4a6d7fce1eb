"""The review of proposed HimParivar links, as JSON and as a page: staff who may update patients see
the pairs of their facility's patients side by side and accept or reject each."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from himhis.errors import HimHISError, InvalidError
from his import web
from identity.principal import Principal
from integrations.himparivar import links

router = APIRouter(tags=["himparivar"])
pages = APIRouter(include_in_schema=False)
PERMISSION = ("update", "Patient")


async def _queue(request: Request, principal: Principal) -> list[dict]:
    return await web.audited(
        request, lambda s: links.review_queue(s, scope=web.scope(s, principal, request)),
        web.entry(request, principal, "search-type", resource_type="Patient", query="himparivar review queue"),
        write=False, details=lambda s, found: {"patient_ids": [p["patient"]["id"] for p in found]})


async def _decide(request: Request, principal: Principal, link_id: int, accept: bool) -> dict:
    def work(session):
        row = links.decide(session, scope=web.scope(session, principal, request), link_id=link_id, accept=accept,
                           by=principal.username or principal.subject)
        return {"id": row.id, "state": row.state, "member_id": row.member_id,
                "patient": row.subject.removeprefix("Patient/")}

    entry = web.entry(request, principal, "update", resource_type="Patient",
                      query=f"himparivar link {link_id} {'accept' if accept else 'reject'}")
    return await web.audited(request, work, entry, write=True,
                             details=lambda s, out: {"patient_ids": [out["patient"]], "resource_id": out["patient"]})


@router.get("/api/himparivar/review")
async def review_json(request: Request, principal: Principal = Depends(web.allow(*PERMISSION))) -> dict:
    """Proposed links waiting for a decision, oldest first."""
    return {"proposed": await _queue(request, principal)}


@router.post("/api/himparivar/links/{link_id}/decision")
async def decision_json(link_id: int, request: Request,
                        principal: Principal = Depends(web.allow(*PERMISSION))) -> dict:
    """``{"accept": true}`` puts the member ID on the patient; ``false`` rejects the pair for good."""
    try:
        body = await request.json()
    except ValueError as exc:
        raise InvalidError('Send {"accept": true} or {"accept": false}') from exc
    if not isinstance(body, dict) or not isinstance(body.get("accept"), bool):
        raise InvalidError('Send {"accept": true} or {"accept": false}')
    return await _decide(request, principal, link_id, body["accept"])


@pages.get("/himparivar/review", response_class=HTMLResponse)
async def review_page(request: Request, done: str = "",
                      principal: Principal = Depends(web.allow(*PERMISSION))) -> HTMLResponse:
    """The clerical review screen."""
    return web.templates.TemplateResponse(request, "himparivar_review.html", {
        "principal": principal, "pairs": await _queue(request, principal), "done": done, "error": None})


@pages.post("/himparivar/review/{link_id}", response_class=HTMLResponse)
async def decide_page(link_id: int, request: Request,
                      principal: Principal = Depends(web.allow(*PERMISSION))) -> Response:
    form = await request.form()
    accept = form.get("decision") == "accept"
    try:
        out = await _decide(request, principal, link_id, accept)
    except HimHISError as exc:
        if exc.status not in (404, 409):
            raise
        return web.templates.TemplateResponse(request, "himparivar_review.html", {
            "principal": principal, "pairs": await _queue(request, principal), "done": "", "error": exc.message},
            status_code=exc.status)
    return RedirectResponse(f"/himparivar/review?done={out['state']}", status_code=303)
