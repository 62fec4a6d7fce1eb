"""FHIR over HTTP: JSON bodies in and out, headers and the searchset/history Bundle shape."""

from __future__ import annotations

from urllib.parse import urlencode

import orjson
from fastapi import Request
from fastapi.responses import Response

from ehr.service import Stored, instant
from ehr.validation import parse_json
from himhis.errors import HimHISError, InvalidError, TooLargeError

FHIR_JSON = "application/fhir+json"
_JSON_TYPES = ("application/fhir+json", "application/json", "application/json+fhir", "text/json")


class FhirResponse(Response):
    media_type = f"{FHIR_JSON}; charset=utf-8"

    def render(self, content) -> bytes:
        if content is None:
            return b""
        if isinstance(content, bytes):
            return content
        if isinstance(content, str):
            return content.encode()
        return orjson.dumps(content)


async def read_body(request: Request) -> bytes:
    """The request body, refused with 413 past the configured size and 415 when it is not JSON."""
    limit = request.app.state.settings.max_request_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise TooLargeError(f"The request body of {int(declared)} bytes is over the limit of {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLargeError(f"The request body is over the limit of {limit} bytes")
        chunks.append(chunk)
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype and ctype not in _JSON_TYPES and not ctype.startswith("application/x-www-form-urlencoded"):
        raise HimHISError(f"Content-Type '{ctype}' is not supported; send application/fhir+json",
                          status=415, code="not-supported")
    return b"".join(chunks)


async def json_body(request: Request) -> dict:
    return parse_json(await read_body(request))


async def check_accept(request: Request) -> None:
    """Only JSON is served (https://hl7.org/fhir/R4/http.html#mime-type); XML alone gets 406."""
    fmt = request.query_params.get("_format")
    if fmt and fmt not in ("json", *(_JSON_TYPES)):
        raise HimHISError(f"_format '{fmt}' is not supported; this server speaks JSON", status=406,
                          code="not-supported")
    accept = request.headers.get("accept", "")
    if accept and "xml" in accept and not any(t in accept for t in (*_JSON_TYPES, "*/*", "json")):
        raise HimHISError("This server returns FHIR JSON only (application/fhir+json)", status=406,
                          code="not-supported")


def resource_response(stored: Stored, *, status: int = 200, base: str | None = None,
                      body: bool = True) -> FhirResponse:
    headers = {"ETag": stored.etag, "Last-Modified": _http_date(stored),
               "Content-Location": f"{base}/{stored.location}" if base else stored.location}
    if status == 201:
        headers["Location"] = headers["Content-Location"]
    return FhirResponse(stored.text if body else None, status_code=status, headers=headers)


def prefer_return(request: Request) -> str:
    """``Prefer: return=minimal|representation|OperationOutcome`` (https://hl7.org/fhir/R4/http.html#ops)."""
    for part in request.headers.get("prefer", "").split(";"):
        key, _, value = part.strip().partition("=")
        if key == "return":
            return value.strip('"')
    return "representation"


def prefer_lenient(request: Request) -> bool:
    return "handling=lenient" in request.headers.get("prefer", "").replace(" ", "")


def _http_date(stored: Stored) -> str:
    return stored.last_updated.strftime("%a, %d %b %Y %H:%M:%S GMT")


def base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/") + "/fhir"


def bundle_entry(stored: Stored, base: str, *, search_mode: str | None = None, history: bool = False) -> dict:
    entry: dict = {"fullUrl": f"{base}/{stored.res_type}/{stored.res_id}"}
    if stored.text is not None:
        entry["resource"] = orjson.Fragment(stored.text)
    if search_mode:
        entry["search"] = {"mode": search_mode}
    if history:
        method = stored.method if stored.method in ("POST", "PUT", "DELETE") else "PUT"
        entry["request"] = {"method": method, "url": f"{stored.res_type}/{stored.res_id}" if method != "POST"
                            else stored.res_type}
        entry["response"] = {"status": "410 Gone" if stored.deleted else ("201 Created" if method == "POST"
                                                                            else "200 OK"),
                             "etag": stored.etag, "lastModified": instant(stored.last_updated)}
    return entry


def paged_links(request: Request, *, offset: int, count: int, total: int) -> list[dict]:
    """self/first/previous/next links with ``_offset`` for the history Bundles."""
    params = [(k, v) for k, v in request.query_params.multi_items() if k not in ("_offset",)]
    url = str(request.url).split("?")[0]

    def link(rel: str, off: int) -> dict:
        return {"relation": rel, "url": f"{url}?{urlencode([*params, ('_offset', str(off))])}"}

    links = [link("self", offset)]
    if offset > 0:
        links.append(link("previous", max(0, offset - count)))
    if offset + count < total:
        links.append(link("next", offset + count))
    return links


def int_param(request: Request, name: str, default: int, *, maximum: int = 1000) -> int:
    return int_value(request.query_params.get(name), name, default, maximum=maximum)


def int_value(raw: str | None, name: str, default: int, *, maximum: int = 1000) -> int:
    """A non-negative whole-number parameter (``_count``, ``_offset``), at most ``maximum``; 400 otherwise."""
    if raw is None:
        return default
    if not raw.isdigit():
        raise InvalidError(f"'{name}' must be a non-negative whole number, not '{raw}'", expression=[name])
    return min(int(raw), maximum)
