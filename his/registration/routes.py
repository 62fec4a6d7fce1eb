"""Registration over HTTP: the ward form (/registration) and the JSON API (/api/registration).

Before a patient is created the likely duplicates are shown; the desk must then choose one of them
or explicitly register a new patient anyway (``register_anyway``).
"""

from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from audit.describe import of_write
from himhis.errors import InvalidError
from his import web
from his.mpi import service as mpi
from his.registration import service
from his.registration.abdm import client_from
from his.registration.schemas import FIELDS, RegistrationIn
from his.registration.validators import AADHAAR_MESSAGE
from identity.principal import Principal
from integrations.himparivar.lookup import lookup_from

router = APIRouter(tags=["registration"])
pages = APIRouter(include_in_schema=False)

GENDER_CHOICES = (("female", "Female"), ("male", "Male"), ("other", "Other"), ("unknown", "Unknown"))


def _form_in(data: dict, *, strict: bool = False) -> RegistrationIn:
    """The input model; ``strict`` refuses unknown fields (JSON), else they are ignored (a page's buttons)."""
    known = data if strict else {k: data[k] for k in (*FIELDS, "register_anyway") if k in data}
    try:
        return RegistrationIn(**known)
    except ValidationError as exc:
        fields = {".".join(str(p) for p in e["loc"]): e["msg"] for e in exc.errors()}
        raise service.FieldErrors(fields) from exc


async def _check(request: Request, form: RegistrationIn, *, verify: bool) -> service.Registration:
    abdm = client_from(request.app.state.settings) if verify else None
    register = lookup_from(request.app.state.settings, request.app.state.db) if verify else None
    return await run_in_threadpool(service.check, form, today=service.today_in_india(), abdm=abdm,
                                   register=register)


async def _duplicates(request: Request, principal: Principal, reg: service.Registration) -> list[mpi.Candidate]:
    return await web.audited(
        request, lambda s: mpi.find_duplicates(s, scope=web.scope(s, principal, request), reg=reg,
                                               base=web.base(request)),
        web.entry(request, principal, "search-type", resource_type="Patient", query="$duplicates"),
        write=False, details=lambda s, found: {"patient_ids": [c.patient.id for c in found]})


async def _register(request: Request, principal: Principal, reg: service.Registration):
    return await web.audited(
        request, lambda s: service.register(s, scope=web.scope(s, principal, request), facility=principal.facility,
                                            reg=reg, today=service.today_in_india(), base_url=web.base(request)),
        web.entry(request, principal, "create", resource_type="Patient"), write=True, details=of_write)


def _candidate_json(c: mpi.Candidate) -> dict:
    return {"score": c.score, "reasons": c.reasons, "patient": asdict(c.patient)}


# -- JSON API ----------------------------------------------------------------------------------


@router.post("/api/registration", status_code=201)
async def register_json(request: Request,
                        principal: Principal = Depends(web.allow("create", "Patient"))) -> Response:
    """Register a patient: 400 with ``fields`` for mistakes, 409 with ``duplicates`` until
    ``register_anyway`` is true, 201 with the Patient and its UHID."""
    try:
        body = await request.json()
    except ValueError as exc:
        raise InvalidError("Send the registration as a JSON object") from exc
    if not isinstance(body, dict):
        raise InvalidError("Send the registration as a JSON object")
    try:
        form = _form_in(body, strict=True)
        reg = await _check(request, form, verify=True)
    except service.FieldErrors as exc:
        return JSONResponse({"error": "invalid", "error_description": exc.message, "fields": exc.errors},
                            status_code=400)
    if not form.register_anyway:
        found = await _duplicates(request, principal, reg)
        if found:
            return JSONResponse({"error": "duplicates",
                                 "error_description": "This person may already be registered; choose one of "
                                                      "these records, or send register_anyway: true",
                                 "duplicates": [_candidate_json(c) for c in found]}, status_code=409)
    result = await _register(request, principal, reg)
    content = result.content or result.stored.json()
    return JSONResponse({"id": result.stored.res_id, "uhid": mpi.card(content).uhid, "patient": content},
                        status_code=201, headers={"Location": f"/patients/{result.stored.res_id}"})


@router.get("/api/registration/duplicates")
@router.post("/api/registration/duplicates")
async def duplicates_json(request: Request,
                          principal: Principal = Depends(web.allow("search", "Patient"))) -> Response:
    """The likely duplicates of a registration: the form's fields as query parameters, or (to keep them
    out of URLs and access logs) as a JSON object in a POST."""
    if request.method == "POST":
        try:
            data = await request.json()
        except ValueError as exc:
            raise InvalidError("Send the registration as a JSON object") from exc
        if not isinstance(data, dict):
            raise InvalidError("Send the registration as a JSON object")
    else:
        data = dict(request.query_params)
    try:
        reg = await _check(request, _form_in(data, strict=True), verify=False)
    except service.FieldErrors as exc:
        return JSONResponse({"error": "invalid", "error_description": exc.message, "fields": exc.errors},
                            status_code=400)
    found = await _duplicates(request, principal, reg)
    return JSONResponse({"duplicates": [_candidate_json(c) for c in found]})


# -- pages -------------------------------------------------------------------------------------


def _page(request: Request, principal: Principal, values: dict, *, errors: dict | None = None,
          candidates: list | None = None, status: int = 200) -> HTMLResponse:
    return web.templates.TemplateResponse(request, "registration.html", {
        "principal": principal, "v": values, "errors": errors or {}, "candidates": candidates or [],
        "genders": GENDER_CHOICES}, status_code=status)


@pages.get("/registration", response_class=HTMLResponse)
async def registration_page(request: Request,
                            principal: Principal = Depends(web.allow("create", "Patient"))) -> HTMLResponse:
    """The registration form."""
    return _page(request, principal, {})


@pages.post("/registration", response_class=HTMLResponse)
async def registration_submit(request: Request,
                              principal: Principal = Depends(web.allow("create", "Patient"))) -> Response:
    """Check the form; show mistakes beside their fields, then likely duplicates; then register."""
    data = {k: str(val) for k, val in (await request.form()).items()}
    values = {k: data.get(k, "") for k in FIELDS}
    try:
        form = _form_in(data)
        reg = await _check(request, form, verify=True)
    except service.FieldErrors as exc:
        # An Aadhaar number is not even sent back to the browser.
        values |= {k: "" for k, message in exc.errors.items() if message == AADHAAR_MESSAGE}
        return _page(request, principal, values, errors=exc.errors, status=400)
    if not form.register_anyway:
        found = await _duplicates(request, principal, reg)
        if found:
            return _page(request, principal, values, candidates=found)
    result = await _register(request, principal, reg)
    return RedirectResponse(f"/patients/{result.stored.res_id}?registered=1", status_code=303)
