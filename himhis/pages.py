"""Server-rendered pages for ward terminals: light HTML, no JavaScript needed."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from sqlalchemy import func, select
from starlette.concurrency import run_in_threadpool

from himhis import i18n
from himhis.models import Resource
from identity.dependencies import get_principal
from identity.principal import Principal

templates = Jinja2Templates(directory=Path(__file__).parent / "templates")
i18n.install(templates.env)
router = APIRouter(include_in_schema=False)


def error_page(request: Request, status: int, message: str) -> HTMLResponse:
    return templates.TemplateResponse(request, "error.html", {"status": status, "message": message},
                                      status_code=status)


def _counts(session) -> dict[str, int]:
    rows = session.execute(select(Resource.res_type, func.count()).where(Resource.deleted.is_(False))
                           .group_by(Resource.res_type)).all()
    return dict(rows)


@router.get("/lang/{code}")
async def choose_language(code: str, request: Request) -> RedirectResponse:
    """Remember the page language in a cookie and go back to the page the link was on."""
    if code not in i18n.LOCALES:
        raise HTTPException(404, f"No language {code!r}; known: {', '.join(i18n.LOCALES)}")
    back = request.headers.get("referer") or "/"
    target = back if back.startswith(str(request.base_url)) else "/"
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(i18n.COOKIE, code, max_age=365 * 24 * 3600, samesite="lax", httponly=True)
    return response


@router.get("/", response_class=HTMLResponse)
async def home(request: Request, principal: Principal = Depends(get_principal)) -> HTMLResponse:
    """The signed-in landing page: who you are and what the record holds."""
    counts = await run_in_threadpool(request.app.state.db.run, _counts, write=False)
    return templates.TemplateResponse(request, "home.html", {"principal": principal, "counts": counts})
