"""Structural validation of incoming resources with the fhir.resources R4B models."""

from __future__ import annotations

from functools import cache

import orjson
from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

from ehr.outcome import Issue
from himhis.errors import InvalidError

# https://hl7.org/fhir/R4/datatypes.html#id
_ID_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-.")


class ResourceInvalid(InvalidError):
    """A resource failed validation; ``issues`` lists each problem with its element path."""

    def __init__(self, issues: list[Issue], *, status: int = 400) -> None:
        self.issues = issues
        first = issues[0]
        super().__init__(first.diagnostics, status=status, code=first.code, expression=first.expression)


def parse_json(body: bytes) -> dict:
    """Parse a request body that must hold one JSON object."""
    if not body.strip():
        raise InvalidError("The request body is empty; a FHIR resource in JSON was expected", code="required")
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidError(f"The request body is not valid JSON: {exc}", code="structure") from exc
    if not isinstance(data, dict):
        raise InvalidError("The request body must be a JSON object (a FHIR resource)", code="structure")
    return data


@cache
def model_class(resource_type: str):
    """The R4B model for a resource type, or None if the type does not exist in FHIR R4."""
    try:
        cls = get_fhir_model_class(resource_type)
    except (KeyError, ValueError, AttributeError):
        return None
    return cls if getattr(cls, "get_resource_type", None) and resource_type[:1].isupper() else None


def is_resource_type(name: str) -> bool:
    return bool(name) and model_class(name) is not None and name not in _NOT_RESOURCES


# Data types that get_fhir_model_class also knows but that are not resources.
_NOT_RESOURCES = frozenset({"Element", "BackboneElement", "Resource", "DomainResource", "Extension", "Meta"})


def check_id(value: str, what: str = "id") -> None:
    if not (1 <= len(value) <= 64) or not set(value) <= _ID_CHARS:
        raise InvalidError(f"'{value}' is not a valid FHIR {what} ([A-Za-z0-9-.], 1 to 64 characters)",
                           code="value", expression=["id"])


def validate_resource(data: dict, *, expected_type: str | None = None, path: str | None = None) -> str:
    """Check ``data`` is a valid R4 resource (of ``expected_type``, if given); return its type."""
    rtype = data.get("resourceType")
    prefix = path or rtype or "Resource"
    if not isinstance(rtype, str) or not rtype:
        raise ResourceInvalid([Issue("required", f"{prefix}: the element 'resourceType' is missing",
                                     [f"{prefix}.resourceType" if path else "resourceType"])])
    if not is_resource_type(rtype):
        raise ResourceInvalid([Issue("not-supported", f"'{rtype}' is not a FHIR R4 resource type",
                                     [f"{path}.resourceType" if path else "resourceType"])])
    if expected_type and rtype != expected_type:
        raise ResourceInvalid([Issue("invalid", f"The resourceType '{rtype}' does not match the URL's type "
                                     f"'{expected_type}'", ["resourceType"])])
    if (rid := data.get("id")) is not None:
        if not isinstance(rid, str):
            raise ResourceInvalid([Issue("value", "The element 'id' must be a string", [f"{rtype}.id"])])
        check_id(rid)
    try:
        model_class(rtype).model_validate(data)
    except ValidationError as exc:
        raise ResourceInvalid([_issue(rtype if path is None else path, err) for err in exc.errors()]) from exc
    return rtype


def _issue(prefix: str, err: dict) -> Issue:
    loc = err.get("loc", ())
    expr = prefix
    for part in loc:
        if isinstance(part, int):
            expr += f"[{part}]"
        elif part not in ("__root__",):
            expr += f".{part}"
    kind = err.get("type", "")
    msg = err.get("msg", "invalid value")
    if kind == "missing" or kind.endswith(".missing"):
        return Issue("required", f"{expr}: required element is missing", [expr])
    if kind == "extra_forbidden":
        return Issue("structure", f"{expr}: unknown element", [expr])
    return Issue("value", f"{expr}: {msg}", [expr])
