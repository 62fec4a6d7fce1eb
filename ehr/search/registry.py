"""The FHIR R4 search parameters that apply to each resource type, from the official definitions.

The SearchParameter bundle shares one parameter between many types through union expressions
("AllergyIntolerance.code | Condition.code | ..."); here each type gets only its own parts, rewritten
so that they evaluate on a stored resource without a database.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import orjson
from fhirpathpy.models import models

from himhis.config import ROOT

DEFINITIONS = ROOT / "fhir" / "definitions" / "r4"

# Parameters that are never extracted into index tables: _id and _lastUpdated are columns of the
# resource table; the others are evaluated by the query side (https://hl7.org/fhir/R4/search.html#all).
NOT_EXTRACTED = frozenset({"_id", "_lastUpdated", "_text", "_content", "_list", "_query", "_has"})

# Modifiers per parameter type (https://hl7.org/fhir/R4/search.html#modifiers); the R4 bundle lists none.
_MODIFIERS: dict[str, tuple[str, ...]] = {
    "string": ("missing", "exact", "contains"),
    "token": ("missing", "text", "not", "above", "below", "in", "not-in", "of-type"),
    "reference": ("missing", "type", "identifier", "above", "below"),
    "uri": ("missing", "above", "below"),
    "date": ("missing",),
    "number": ("missing",),
    "quantity": ("missing",),
    "composite": ("missing",),
    "special": (),
}

_TYPE_PREFIX = re.compile(r"\(?([A-Z][A-Za-z]*)(?=[.\s)]|$)")
_AS_OPERATOR = re.compile(r"\(([^()]+) as (\w+)\)")
_AS_FUNCTION = re.compile(r"\.as\((\w+)\)")
_RESOLVE_IS = re.compile(r"\.where\(resolve\(\) is (\w+)\)")


@dataclass(frozen=True, slots=True)
class SearchParam:
    """One search parameter as it applies to one resource type (https://hl7.org/fhir/R4/searchparameter.html)."""

    code: str
    type: str
    expression: str  # FHIRPath for this resource type only; "" when the parameter has none
    url: str
    targets: tuple[str, ...] = ()  # SearchParameter.target: allowed target types of a reference
    restricted_to: tuple[str, ...] = ()  # types named by `resolve() is X` in the original expression
    modifiers: tuple[str, ...] = ()
    comparators: tuple[str, ...] = ()
    components: tuple[tuple[str, str], ...] = ()  # composite: (component parameter code, expression)


def split_union(expression: str) -> list[str]:
    """Split a FHIRPath expression on its top-level `|` (not inside parentheses or string literals)."""
    parts: list[str] = []
    depth, start, quoted = 0, 0, False
    for i, ch in enumerate(expression):
        if ch == "'" and (i == 0 or expression[i - 1] != "\\"):
            quoted = not quoted
        elif quoted:
            continue
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "|" and depth == 0:
            parts.append(expression[start:i].strip())
            start = i + 1
    parts.append(expression[start:].strip())
    return [p for p in parts if p]


def rewrite(part: str) -> tuple[str, tuple[str, ...]]:
    """Make one expression part evaluable without a database, returning it and its `resolve() is` types.

    `(x as T)` and `x.as(T)` become `x.ofType(T)` (a filter, as R5 rewrote them, instead of an error on
    repeating elements); `.where(resolve() is T)` becomes `.where(reference.startsWith('T/'))`, the
    form fhirpathpy can run. The fast path applies the restriction to the parsed target type instead,
    so absolute references to a T also pass.
    """
    restricted = tuple(_RESOLVE_IS.findall(part))
    part = _RESOLVE_IS.sub(lambda m: f".where(reference.startsWith('{m[1]}/'))", part)
    part = _AS_OPERATOR.sub(lambda m: f"{m[1]}.ofType({m[2]})", part)
    return _AS_FUNCTION.sub(lambda m: f".ofType({m[1]})", part), restricted


@cache
def resource_types() -> frozenset[str]:
    """Every R4 resource type (the FHIRPath R4 model's descendants of Resource)."""
    parents: dict[str, str] = models["r4"]["type2Parent"]
    return frozenset(
        t for t, p in parents.items() if p in ("Resource", "DomainResource") and t != "DomainResource"
    )


def _load(path: Path) -> Any:
    return orjson.loads(path.read_bytes())


@cache
def _registry() -> dict[str, dict[str, SearchParam]]:
    """All parameters by resource type and code, built once from the SearchParameter bundle."""
    definitions = [entry["resource"] for entry in _load(DEFINITIONS / "search-parameters.json")["entry"]]
    code_by_url = {sp["url"]: sp["code"] for sp in definitions}
    types = resource_types()
    abstract = {"Resource": types, "DomainResource": types - {"Bundle", "Binary", "Parameters"}}
    registry: dict[str, dict[str, SearchParam]] = {t: {} for t in types}
    for sp in definitions:
        bases = set().union(*(abstract.get(base, {base}) for base in sp["base"])) & types
        parts = split_union(sp.get("expression", ""))
        for rtype in sorted(bases):
            mine = [p for p in parts if _part_type(p) in (rtype, None)]
            if parts and not mine:
                continue
            rewritten = [rewrite(_rebase(p, rtype)) for p in mine]
            registry[rtype][sp["code"]] = SearchParam(
                code=sp["code"],
                type=sp["type"],
                expression=" | ".join(expr for expr, _ in rewritten),
                url=sp["url"],
                targets=tuple(sp.get("target", ())),
                restricted_to=tuple(dict.fromkeys(t for _, ts in rewritten for t in ts)),
                modifiers=_MODIFIERS[sp["type"]],
                comparators=tuple(sp.get("comparator", ())),
                components=tuple(
                    (code_by_url[c["definition"]], rewrite(c["expression"])[0])
                    for c in sp.get("component", ())
                ),
            )
    return registry


def _part_type(part: str) -> str | None:
    """The resource type a part starts with; None for a part that applies to every base."""
    m = _TYPE_PREFIX.match(part)
    if m is None or m[1] in ("Resource", "DomainResource"):
        return None
    return m[1]


def _rebase(part: str, rtype: str) -> str:
    """Anchor a part on its resource type: `Resource.meta.tag` → `Patient.meta.tag`, `alias` → `X.alias`."""
    m = _TYPE_PREFIX.match(part)
    if m is None:
        return f"{rtype}.{part}"
    if m[1] in ("Resource", "DomainResource"):
        return f"{part[: m.start(1)]}{rtype}{part[m.end(1) :]}"
    return part


def params_for(resource_type: str) -> dict[str, SearchParam]:
    """The search parameters that apply to a resource type, by code (empty for an unknown type)."""
    return dict(_registry().get(resource_type, {}))


def get_param(resource_type: str, code: str) -> SearchParam | None:
    """One search parameter of a resource type, or None."""
    return _registry().get(resource_type, {}).get(code)


@cache
def _patient_compartment() -> dict[str, tuple[str, ...]]:
    definition = _load(DEFINITIONS / "compartmentdefinition-patient.json")
    return {r["code"]: tuple(r.get("param", ())) for r in definition["resource"]}


def patient_compartment_params(resource_type: str) -> list[str]:
    """Parameters that put a resource in a patient's compartment (https://hl7.org/fhir/R4/compartmentdefinition-patient.html)."""
    return list(_patient_compartment().get(resource_type, ()))
