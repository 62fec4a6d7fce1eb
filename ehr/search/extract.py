"""Search values of a resource, extracted at write time into one index table per parameter type.

Modelled on the HAPI FHIR JPA index tables; the dataclasses below mirror the store's tables. Which
values a parameter indexes is set by its type (https://hl7.org/fhir/R4/search.html#ptypes).
Special parameters and _id/_lastUpdated (columns of the resource table) are not extracted. A composite
parameter whose components come from a repeating element (``component-code-value-quantity`` over
``Observation.component``) is extracted element by element: each component's values are stored under
the composite's code with the element's ordinal as ``group``, so a search matches both halves within
one element (https://hl7.org/fhir/R4/search.html#composite). Composites over the resource itself
(``code-value-quantity``) need no grouping and are matched from their component parameters. A reference
to a contained resource (`#id`) is not indexed; a logical reference (Reference.identifier) is indexed as a
token under `<code>:identifier`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from functools import cache
from typing import Any

from ehr.search.normalize import DATE_MAX, DATE_MIN, normalize_string, parse_fhir_date, parse_reference
from ehr.search.plan import Evaluator, Unsupported, compile_relative, is_a, plan_for
from ehr.search.registry import NOT_EXTRACTED, get_param, params_for, resource_types, split_union
from ehr.search.ucum import canonical

ISO_4217 = "urn:iso:std:iso:4217"


@dataclass(frozen=True, slots=True)
class StringValue:
    param: str
    normalized: str
    exact: str
    group: int | None = None  # composite component: element ordinal * GROUP_STRIDE + component position


@dataclass(frozen=True, slots=True)
class TokenValue:
    param: str
    system: str | None
    code: str | None
    text: str | None
    group: int | None = None  # composite component: element ordinal * GROUP_STRIDE + component position


@dataclass(frozen=True, slots=True)
class DateValue:
    param: str
    low: datetime  # naive UTC, inclusive
    high: datetime  # naive UTC, inclusive
    group: int | None = None  # composite component: element ordinal * GROUP_STRIDE + component position


@dataclass(frozen=True, slots=True)
class NumberValue:
    param: str
    value: Decimal
    group: int | None = None  # composite component: element ordinal * GROUP_STRIDE + component position


@dataclass(frozen=True, slots=True)
class QuantityValue:
    param: str
    value: Decimal
    system: str | None
    code: str | None
    unit: str | None
    canonical_value: Decimal | None
    canonical_code: str | None
    group: int | None = None  # composite component: element ordinal * GROUP_STRIDE + component position


@dataclass(frozen=True, slots=True)
class UriValue:
    param: str
    uri: str
    group: int | None = None  # composite component: element ordinal * GROUP_STRIDE + component position


@dataclass(frozen=True, slots=True)
class ReferenceValue:
    param: str
    target_type: str | None
    target_id: str | None
    url: str
    group: int | None = None  # composite component: element ordinal * GROUP_STRIDE + component position


IndexValue = StringValue | TokenValue | DateValue | NumberValue | QuantityValue | UriValue | ReferenceValue
Converter = Callable[[str, Any, str], Iterable[IndexValue]]

_NAME_PARTS = ("family", "given", "prefix", "suffix", "text")
_ADDRESS_PARTS = ("line", "city", "district", "state", "postalCode", "country", "text")
_CONTACT_SYSTEMS = frozenset({"phone", "fax", "email", "pager", "url", "sms", "other"})
_DATE_TYPES = frozenset({"date", "dateTime", "instant"})


def _texts(value: dict[str, Any], fields: tuple[str, ...]) -> list[str]:
    out: list[str] = []
    for field in fields:
        part = value.get(field)
        if isinstance(part, str):
            out.append(part)
        elif isinstance(part, list):
            out.extend(p for p in part if isinstance(p, str))
    return out


def _strings(code: str, value: Any, ftype: str) -> Iterable[IndexValue]:
    """A string, or every string part of a HumanName or Address (https://hl7.org/fhir/R4/search.html#string)."""
    if isinstance(value, str):
        texts = [value]
    elif ftype == "HumanName":
        texts = _texts(value, _NAME_PARTS)
    elif ftype == "Address":
        texts = _texts(value, _ADDRESS_PARTS)
    else:
        return ()
    return [StringValue(code, normalize_string(t), t) for t in texts if t]


def _tokens(code: str, value: Any, ftype: str) -> Iterable[IndexValue]:
    """Codes, codings, identifiers, contact points and primitives (https://hl7.org/fhir/R4/search.html#token)."""
    if isinstance(value, bool):
        return [TokenValue(code, None, "true" if value else "false", None)]
    if isinstance(value, str):
        return [TokenValue(code, None, value, None)]
    if not isinstance(value, dict):
        return ()
    if ftype == "CodeableConcept":
        text = value.get("text")
        codings = [c for c in value.get("coding", ()) if c.get("system") or c.get("code")]
        if not codings:
            return [TokenValue(code, None, None, text)] if text else ()
        return [TokenValue(code, c.get("system"), c.get("code"), text or c.get("display")) for c in codings]
    if ftype == "Coding":
        if value.get("system") or value.get("code"):
            return [TokenValue(code, value.get("system"), value.get("code"), value.get("display"))]
        return ()
    if ftype == "Identifier":
        if value.get("system") or value.get("value"):
            return [
                TokenValue(code, value.get("system"), value.get("value"), value.get("type", {}).get("text"))
            ]
        return ()
    if ftype == "ContactPoint" and value.get("value"):
        return [TokenValue(code, value.get("system"), value["value"], None)]
    return ()


def _date_range(code: str, start: str | None, end: str | None) -> list[IndexValue]:
    if start is None and end is None:
        return []
    low = parse_fhir_date(start)[0] if start else DATE_MIN
    high = parse_fhir_date(end)[1] if end else DATE_MAX
    return [DateValue(code, low, high)]


def _dates(code: str, value: Any, ftype: str) -> Iterable[IndexValue]:
    """The range a date, dateTime, instant, Period or Timing covers (https://hl7.org/fhir/R4/search.html#date).

    A Period's missing start or end is open: datetime(1, 1, 1) or datetime(9999, 12, 31, 23, 59, 59, 999999).
    """
    if ftype in _DATE_TYPES and isinstance(value, str):
        return [DateValue(code, *parse_fhir_date(value))]
    if not isinstance(value, dict):
        return ()
    if ftype == "Period":
        return _date_range(code, value.get("start"), value.get("end"))
    if ftype == "Timing":
        out = [DateValue(code, *parse_fhir_date(e)) for e in value.get("event", ()) if isinstance(e, str)]
        bounds = value.get("repeat", {}).get("boundsPeriod")
        return out + _date_range(code, bounds.get("start"), bounds.get("end")) if bounds else out
    return ()


def _decimal(value: Any) -> Decimal | None:
    """A JSON number as a Decimal (floats through their shortest repr, so 0.1 stays 0.1)."""
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        return None
    return (
        value if isinstance(value, Decimal) else Decimal(repr(value) if isinstance(value, float) else value)
    )


def _numbers(code: str, value: Any, ftype: str) -> Iterable[IndexValue]:
    """A decimal or integer (https://hl7.org/fhir/R4/search.html#number)."""
    number = _decimal(value)
    return [NumberValue(code, number)] if number is not None else ()


def _quantities(code: str, value: Any, ftype: str) -> Iterable[IndexValue]:
    """A Quantity with its canonical UCUM form, Money, or each end of a Range (https://hl7.org/fhir/R4/search.html#quantity)."""
    if not isinstance(value, dict):
        return ()
    if ftype == "Range":
        return [
            q for end in ("low", "high") if end in value for q in _quantities(code, value[end], "Quantity")
        ]
    number = _decimal(value.get("value"))
    if number is None:
        return ()
    if ftype == "Money":
        currency = value.get("currency")
        return [QuantityValue(code, number, ISO_4217, currency, None, number, currency)]
    if is_a(ftype, "Quantity"):
        system, unit_code = value.get("system"), value.get("code")
        return [
            QuantityValue(
                code, number, system, unit_code, value.get("unit"), *canonical(number, system, unit_code)
            )
        ]
    return ()


def _uris(code: str, value: Any, ftype: str) -> Iterable[IndexValue]:
    """A uri, url, canonical, oid or uuid (https://hl7.org/fhir/R4/search.html#uri)."""
    return [UriValue(code, value)] if isinstance(value, str) else ()


def _references(code: str, value: Any, ftype: str) -> Iterable[IndexValue]:
    """A literal reference as type, id and URL; a canonical as its URL (https://hl7.org/fhir/R4/search.html#reference).

    An absolute URL keeps its type but no id (it names another server's resource); `urn:uuid:` keeps
    the URL and the type from Reference.type if given. Reference.identifier becomes a token under
    `<code>:identifier`.
    """
    if isinstance(value, str):
        return [ReferenceValue(code, None, None, value)]
    if ftype != "Reference" or not isinstance(value, dict):
        return ()
    out: list[IndexValue] = []
    url = value.get("reference")
    if isinstance(url, str) and url and not url.startswith("#"):
        target, target_id = parse_reference(url)
        if url.startswith(("http://", "https://")):
            target_id = None  # another server's resource: never matches a local id, only its URL
        declared = value.get("type")
        if target is None and isinstance(declared, str):
            target = declared.rsplit("/", 1)[-1]
        out.append(ReferenceValue(code, target, target_id, url))
    if isinstance(identifier := value.get("identifier"), dict):
        out.extend(_tokens(f"{code}:identifier", identifier, "Identifier"))
    return out


_CONVERTERS: dict[str, Converter] = {
    "string": _strings,
    "token": _tokens,
    "date": _dates,
    "number": _numbers,
    "quantity": _quantities,
    "uri": _uris,
    "reference": _references,
}


def _infer(value: Any, param_type: str) -> str | None:
    """The FHIR type of a fhirpathpy value (it does not say), from its shape and the parameter type."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float | Decimal):
        return "decimal"
    if isinstance(value, str):
        return {"date": "dateTime", "reference": "canonical", "uri": "uri"}.get(param_type, "string")
    if not isinstance(value, dict) or "resourceType" in value:
        return None
    match param_type:
        case "reference":
            return "Reference"
        case "date":
            return "Timing" if "event" in value or "repeat" in value else "Period"
        case "quantity" if "currency" in value:
            return "Money"
        case "quantity":
            return "Range" if "low" in value or "high" in value else "Quantity"
        case "string":
            return "HumanName" if value.keys() & {"family", "given"} else "Address"
        case "token" if "coding" in value or value.keys() == {"text"}:
            return "CodeableConcept"
        case "token" if "value" in value:
            return "ContactPoint" if value.get("system") in _CONTACT_SYSTEMS else "Identifier"
        case "token":
            return "Coding"
    return None


@cache
def _plans(resource_type: str) -> tuple[tuple[str, str, Converter, Evaluator], ...]:
    """(code, type, converter, plan) of every extracted parameter of a resource type."""
    return tuple(
        (code, param.type, _CONVERTERS[param.type], plan.parts[0] if len(plan.parts) == 1 else plan)
        for code, param in params_for(resource_type).items()
        if param.type in _CONVERTERS and code not in NOT_EXTRACTED and (plan := plan_for(resource_type, code))
    )


def extract(resource: dict[str, Any]) -> list[IndexValue]:
    """Every search value of a resource (a plain JSON dict as stored), deduplicated per parameter.

    Raises ValueError for an unknown resource type or a malformed value, naming the parameter.
    """
    resource_type = resource.get("resourceType")
    if not isinstance(resource_type, str) or resource_type not in resource_types():
        raise ValueError(f"not a FHIR R4 resource type: {resource_type!r}")
    values: list[IndexValue] = []
    for code, param_type, convert, plan in _plans(resource_type):
        try:
            for value, ftype in plan(resource):
                if ftype is None and (ftype := _infer(value, param_type)) is None:
                    continue
                values.extend(convert(code, value, ftype))
        except ValueError as exc:
            raise ValueError(f"{resource_type}.{code}: {exc}") from exc
    for code, base, components in _composite_plans(resource_type):
        group = 0
        for element, tag in base(resource):
            found = _component_values(code, element, tag, components, group)
            if found:
                values.extend(found)
                group += 1
    return list(dict.fromkeys(values))


_OF_TYPE_END = re.compile(r"\.ofType\(\w+\)$")
GROUP_STRIDE = 8  # group = element ordinal * 8 + component position, so two token components stay apart
Component = tuple[str, str, Converter]  # (component parameter type, expression, converter)


@cache
def _composite_plans(resource_type: str) -> tuple[tuple[str, Evaluator, tuple[Component, ...]], ...]:
    """(code, base plan, components) of the composites of a type that are extracted element by element."""
    out = []
    for code, param in params_for(resource_type).items():
        if param.type != "composite" or not param.components or not param.expression:
            continue
        if all(part.strip() == resource_type for part in split_union(param.expression)):
            continue  # over the resource itself: matched from the component parameters
        components = []
        for sub_code, expression in param.components:
            sub = get_param(resource_type, sub_code)
            if sub is None or sub.type not in _CONVERTERS or not _selects_the_same(sub.expression, expression):
                break
            components.append((sub.type, expression, _CONVERTERS[sub.type]))
        else:
            if (plan := plan_for(resource_type, code)) is not None:
                out.append((code, plan, tuple(components)))
    return tuple(out)


def _selects_the_same(sub_expression: str, component_expression: str) -> bool:
    """Whether a component's expression selects what its parameter does (``code`` under ``X.component``
    for ``X.component.code``). R4's DocumentReference-relationship pairs each component with the
    other's expression; such a composite is matched from its component parameters instead."""
    whole = [part.strip() for part in split_union(sub_expression)]
    whole += [_OF_TYPE_END.sub("", w) for w in whole]  # `value` for `X.value.ofType(boolean)`
    return all(any(w.endswith(f".{part.strip()}") for w in whole) for part in split_union(component_expression))


def grouped_composites(resource_type: str) -> frozenset[str]:
    """Codes of the composites of a type whose components are indexed per element (see module doc)."""
    return frozenset(code for code, _, _ in _composite_plans(resource_type))


@cache
def _relative(tag: str, expression: str) -> tuple[Evaluator, ...] | None:
    try:
        return tuple(compile_relative(tag, part.strip()) for part in split_union(expression))
    except Unsupported:
        return None


def _component_values(code: str, element: Any, tag: str | None, components: tuple[Component, ...],
                      group: int) -> list[IndexValue]:
    """The values of every component on one element, or none if a component has no value there."""
    if tag is None or type(element) is not dict:
        return []
    out: list[IndexValue] = []
    for position, (param_type, expression, convert) in enumerate(components):
        plans = _relative(tag, expression)
        if plans is None:
            return []
        found = []
        for plan in plans:
            for value, ftype in plan(element):
                if ftype is None and (ftype := _infer(value, param_type)) is None:
                    continue
                found.extend(replace(v, group=group * GROUP_STRIDE + position)
                             for v in convert(code, value, ftype))
        if not found:
            return []
        out.extend(found)
    return out
