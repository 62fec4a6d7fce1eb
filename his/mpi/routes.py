"""Patient search, the patient banner page and merging, as pages and as JSON."""

from __future__ import annotations

from dataclasses import asdict
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from pydantic import ValidationError

from himhis.errors import HimHISError, InvalidError
from his import web
from his.mpi import service
from his.registration.schemas import MergeIn
from identity.principal import Principal

router = APIRouter(tags=["patients"])
pages = APIRouter(include_in_schema=False)


async def _search(request: Request, principal: Principal, pairs: list[tuple[str, str]]):
    return await web.audited(
        request, lambda s: service.search_patients(s, scope=web.scope(s, principal, request), pairs=pairs,
                                                   base=web.base(request)),
        web.entry(request, principal, "search-type", resource_type="Patient", query=urlencode(pairs)),
        write=False, details=lambda s, found: {"patient_ids": [c.id for c in found]})


async def _read(request: Request, principal: Principal, patient_id: str) -> service.PatientCard:
    return await web.audited(
        request, lambda s: service.read_patient(s, scope=web.scope(s, principal, request), patient_id=patient_id),
        web.entry(request, principal, "read", resource_type="Patient", resource_id=patient_id), write=False,
        details=lambda s, c: {"patient_ids": [c.id], "version_id": c.version or None})


async def _merge(request: Request, principal: Principal, source_id: str, target: str) -> service.MergeResult:
    entry = web.entry(request, principal, "operation", resource_type="Patient", resource_id=source_id,
                      query=f"$merge target={target}", patient_ids=[source_id])
    return await web.audited(
        request, lambda s: service.merge(s, scope=web.scope(s, principal, request), source_id=source_id,
                                         target_id=target, authorize=web.authorizer(principal), audit=entry,
                                         base_url=web.base(request)),
        entry, write=True, details=lambda s, r: {"patient_ids": r.patient_ids})


# -- JSON API ----------------------------------------------------------------------------------


@router.get("/api/patients")
async def search_json(request: Request, q: str = "",
                      principal: Principal = Depends(web.allow("search", "Patient"))) -> JSONResponse:
    """Patients by name, UHID, mobile or ABHA number, within what the caller may see."""
    found = await _search(request, principal, service.search_terms(q))
    return JSONResponse({"patients": [asdict(c) for c in found]})


@router.get("/api/patients/{patient_id}")
async def read_json(patient_id: str, request: Request,
                    principal: Principal = Depends(web.allow("read", "Patient"))) -> JSONResponse:
    return JSONResponse(asdict(await _read(request, principal, patient_id)))


@router.post("/api/patients/{patient_id}/merge")
async def merge_json(patient_id: str, request: Request,
                     principal: Principal = Depends(web.allow("update", "Patient"))) -> JSONResponse:
    """Merge this patient (the source) into ``target`` (an id or a UHID), which stays the active record."""
    try:
        body = MergeIn.model_validate(await request.json())
    except (ValueError, ValidationError) as exc:
        raise InvalidError("Send a JSON object with 'target': the id or UHID of the record to keep",
                           expression=["target"]) from exc
    result = await _merge(request, principal, patient_id, body.target)
    return JSONResponse({"source": result.source.stored.res_id, "target": result.target.stored.res_id,
                         "moved": [f"{w.stored.res_type}/{w.stored.res_id}/_history/{w.stored.version_id}"
                                   for w in result.moved]})


# -- pages -------------------------------------------------------------------------------------


@pages.get("/patients", response_class=HTMLResponse)
async def search_page(request: Request, q: str = "",
                      principal: Principal = Depends(web.allow("search", "Patient"))) -> HTMLResponse:
    """Find a patient by name (Latin or Devanagari), UHID or mobile number."""
    found, error, status = None, None, 200
    if q.strip():
        try:
            found = await _search(request, principal, service.search_terms(q))
        except InvalidError as exc:
            error, status = exc.message, 400
    return web.templates.TemplateResponse(request, "patients.html", {
        "principal": principal, "q": "" if error else q, "found": found, "error": error}, status_code=status)


@pages.get("/patients/{patient_id}", response_class=HTMLResponse)
async def patient_page(patient_id: str, request: Request, registered: str = "", merged: str = "",
                       principal: Principal = Depends(web.allow("read", "Patient"))) -> HTMLResponse:
    """The patient banner: names, UHID and identifiers, and the merge form."""
    patient = await _read(request, principal, patient_id)
    return web.templates.TemplateResponse(request, "patient.html", {
        "principal": principal, "p": patient, "registered": bool(registered), "merged": merged,
        "can_merge": web.can(principal, "update", "Patient"), "merge_error": None})


@pages.post("/patients/{patient_id}/merge", response_class=HTMLResponse)
async def merge_page(patient_id: str, request: Request,
                     principal: Principal = Depends(web.allow("update", "Patient"))) -> Response:
    """Merge this record into another (by UHID or id); back to the kept record."""
    form = await request.form()
    target = str(form.get("target") or "")
    try:
        result = await _merge(request, principal, patient_id, target)
    except HimHISError as exc:
        if exc.status not in (400, 404, 409):
            raise
        patient = await _read(request, principal, patient_id)
        return web.templates.TemplateResponse(request, "patient.html", {
            "principal": principal, "p": patient, "registered": False, "merged": "", "can_merge": True,
            "merge_error": exc.message}, status_code=exc.status)
    return RedirectResponse(f"/patients/{result.target.stored.res_id}?merged={patient_id}", status_code=303)
