"""The application factory: one FastAPI app serving the FHIR API, the identity endpoints and the pages."""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from ehr.http import FhirResponse
from ehr.outcome import error_outcome, outcome
from ehr.validation import ResourceInvalid
from himhis.config import Settings, get_settings
from himhis.db import Database
from himhis.errors import HimHISError

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None, *, db: Database | None = None) -> FastAPI:
    """Build the app for these settings (the embedded default unless HIMHIS_* says otherwise)."""
    settings = settings or get_settings()
    database = db or Database(settings.database_url, **(
        {} if settings.database_url.startswith("sqlite")
        else {"pool_size": settings.db_pool_size, "max_overflow": settings.db_max_overflow}))

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        if db is None:
            database.dispose()

    app = FastAPI(title="HimHIS", version="0.1.0", lifespan=lifespan,
                  description="Hospital information system and FHIR R4 record store for Himachal Pradesh")
    app.state.settings = settings
    app.state.db = database

    from identity import web
    from identity.oidc import build_validator

    if not settings.is_production:
        from identity.devidp import build_router

        app.include_router(build_router(settings))
    app.state.token_validator = build_validator(settings)
    app.include_router(web.router)
    from identity.breakglass_routes import router as breakglass_router

    app.include_router(breakglass_router)

    from ehr.routes import public, router
    from himhis import pages

    app.include_router(public)
    app.include_router(router)
    app.include_router(pages.router)
    from his.mpi import routes as mpi_routes
    from his.registration import routes as registration_routes

    app.include_router(registration_routes.router)
    app.include_router(registration_routes.pages)
    app.include_router(mpi_routes.router)
    app.include_router(mpi_routes.pages)
    from integrations.hl7 import routes as hl7_routes

    app.include_router(hl7_routes.router)
    from integrations.hl7.pages import pages as hl7_pages

    app.include_router(hl7_pages)
    from integrations.himparivar import routes as himparivar_routes

    app.include_router(himparivar_routes.router)
    app.include_router(himparivar_routes.pages)
    from himhis.i18n import LocaleMiddleware

    app.add_middleware(LocaleMiddleware)
    _install_error_handlers(app)
    return app


async def _audit_unauthenticated(request: Request, exc: HimHISError) -> None:
    """A request without valid credentials is recorded too: who tried what, from where, and why it failed."""
    from starlette.concurrency import run_in_threadpool

    from audit import requests
    from audit.service import audit_read

    await run_in_threadpool(audit_read, request.app.state.db, requests.refused(request, exc.status, exc.message))


def _is_fhir(request: Request) -> bool:
    return request.url.path == "/fhir" or request.url.path.startswith("/fhir/")


def _wants_html(request: Request) -> bool:
    return "text/html" in request.headers.get("accept", "") and not _is_fhir(request)


def _install_error_handlers(app: FastAPI) -> None:
    """One error model: every failure becomes an OperationOutcome on /fhir, JSON or a page elsewhere."""

    @app.exception_handler(HimHISError)
    async def himhis_error(request: Request, exc: HimHISError) -> Response:
        if exc.status == 401:
            await _audit_unauthenticated(request, exc)
        if _is_fhir(request):
            body = outcome(*exc.issues) if isinstance(exc, ResourceInvalid) else error_outcome(
                exc.message, status=exc.status, code=exc.code, expression=exc.expression)
            return FhirResponse(body, status_code=exc.status, headers=exc.headers)
        if exc.status == 401 and _wants_html(request):
            return RedirectResponse(f"/login?next={request.url.path}", status_code=303)
        if _wants_html(request):
            from himhis.pages import error_page

            return error_page(request, exc.status, exc.message)
        return JSONResponse({"error": exc.code, "error_description": exc.message}, status_code=exc.status,
                            headers=exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 404 and _is_fhir(request):
            message = f"No FHIR interaction is defined for {request.method} {request.url.path}"
        if exc.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}"
        if _is_fhir(request):
            return FhirResponse(error_outcome(message, status=exc.status_code), status_code=exc.status_code)
        if _wants_html(request):
            from himhis.pages import error_page

            return error_page(request, exc.status_code, message)
        return JSONResponse({"detail": message}, status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        message = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        if _is_fhir(request):
            return FhirResponse(error_outcome(message, status=400), status_code=400)
        return JSONResponse({"detail": message}, status_code=400)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        message = "The server failed to process the request; nothing was changed"
        if _is_fhir(request):
            return FhirResponse(error_outcome(message, status=500, code="exception"), status_code=500)
        return HTMLResponse(message, status_code=500) if _wants_html(request) else JSONResponse(
            {"detail": message}, status_code=500)
