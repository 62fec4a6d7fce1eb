"""Evaluating a search parameter's expression on a resource stored as a plain JSON dict.

A parameter's values are what its FHIRPath expression selects
(https://hl7.org/fhir/R4/searchparameter-definitions.html#SearchParameter.expression). The shapes the
R4 parameters use — dotted paths, choice elements (`Observation.value` → `valueQuantity`, ...),
`ofType(T)`, `where(field='literal')` and reference type restrictions — compile at load time into a
plan of dict lookups whose FHIR types are known from the R4 model; any other part runs in fhirpathpy.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

import fhirpathpy
from fhirpathpy.models import models

from ehr.search.normalize import parse_reference
from ehr.search.registry import get_param, split_union

# A selected value and its FHIR type name ("Quantity", "dateTime", ...); a backbone element carries
# its element path ("Observation.component") instead, and a value from fhirpathpy carries None.
Node = tuple[Any, str | None]
Evaluator = Callable[[dict[str, Any]], list[Node]]

_MODEL: dict[str, Any] = models["r4"]
_PATH_TYPES: dict[str, str] = _MODEL["path2Type"]
_CHOICES: dict[str, list[str]] = _MODEL["choiceTypePaths"]
_ELSEWHERE: dict[str, str] = _MODEL["pathsDefinedElsewhere"]
_PARENT: dict[str, str] = _MODEL["type2Parent"]
_BACKBONES = frozenset(
    ".".join(parts[:i])
    for path in _PATH_TYPES
    if len(parts := path.split(".")) > 2
    for i in range(2, len(parts))
)

_ROOT = re.compile(r"[A-Z][A-Za-z]*")
_STEP = re.compile(
    r"\.(?:ofType\((?P<of>\w+)\)"
    r"|where\(reference\.startsWith\('(?P<target>[A-Z][A-Za-z]*)/'\)\)"
    r"|where\((?P<field>[a-z][A-Za-z]*)\s*=\s*'(?P<literal>[^'\\]*)'\)"
    r"|(?P<name>[a-z][A-Za-z0-9]*)(?![A-Za-z0-9(]))"
)

_TRUTHY = re.compile(r"(?P<path>[A-Z][\w.]*)\.exists\(\) and (?P=path) != false")

_CHILD, _OF_TYPE, _WHERE_EQ, _WHERE_TARGET = range(4)


class Unsupported(ValueError):
    """An expression part outside the shapes the fast path compiles."""


def is_a(type_name: str | None, ancestor: str) -> bool:
    """Whether a FHIR type is `ancestor` or derives from it (Age is a Quantity, code is a string)."""
    while type_name is not None:
        if type_name == ancestor:
            return True
        type_name = _PARENT.get(type_name)
    return False


def _element(tag: str, name: str) -> tuple[tuple[str, str], ...]:
    """The JSON keys and types of element `name` under a type or backbone element, expanding choices."""
    owner: str | None = tag
    while owner is not None:
        path = _ELSEWHERE.get(f"{owner}.{name}", f"{owner}.{name}")
        if path in _CHOICES:
            keys = ((name + suffix, _PATH_TYPES[path + suffix]) for suffix in _CHOICES[path])
            return tuple((key, "string" if t == "System.String" else t) for key, t in keys)
        if (element_type := _PATH_TYPES.get(path)) is not None:
            return ((name, "string" if element_type == "System.String" else element_type),)
        if path in _BACKBONES:
            return ((name, path),)
        owner = None if "." in owner else _PARENT.get(owner)
    raise Unsupported(f"unknown element {tag}.{name}")


def _reference_type(reference: Any) -> str | None:
    """The target type of a Reference: from its URL, else from Reference.type."""
    if type(reference) is not dict:
        return None
    if isinstance(url := reference.get("reference"), str) and (target := parse_reference(url)[0]):
        return target
    declared = reference.get("type")
    return declared.rsplit("/", 1)[-1] if isinstance(declared, str) else None


def _children(nodes: list[Node], value: dict[str, Any], keys: tuple[tuple[str, str], ...]) -> None:
    """Append the values of `keys` in `value` to `nodes`, flattening repeating elements."""
    for key, tag in keys:
        if (child := value.get(key)) is not None:
            if type(child) is list:
                nodes.extend((item, tag) for item in child if item is not None)
            else:
                nodes.append((child, tag))


@dataclass(frozen=True, slots=True)
class FastPath:
    """One compiled expression part: the root's element lookups, then steps over (value, type) nodes."""

    root: str
    first: tuple[tuple[str, str], ...] | None  # keys (and types) of the first step, looked up on the root
    steps: tuple[tuple[int, Any, str | None], ...]  # (kind, argument, literal)

    def __call__(self, resource: dict[str, Any]) -> list[Node]:
        if self.first is None:
            nodes: list[Node] = [(resource, self.root)]
        else:
            nodes = []
            _children(nodes, resource, self.first)
        for kind, arg, literal in self.steps:
            if not nodes:
                break
            if kind == _CHILD:
                out: list[Node] = []
                for value, tag in nodes:
                    if type(value) is dict and tag in arg:
                        _children(out, value, arg[tag])
                nodes = out
            elif kind == _OF_TYPE:
                nodes = [node for node in nodes if node[1] in arg]
            elif kind == _WHERE_EQ:
                nodes = [node for node in nodes if type(node[0]) is dict and node[0].get(arg) == literal]
            else:
                nodes = [node for node in nodes if _reference_type(node[0]) == arg]
        return nodes


def compile_fast(part: str) -> FastPath:
    """Compile one union part (`Type.a.b`, `.ofType(T)`, `.where(...)`) or raise Unsupported."""
    root = _ROOT.match(part)
    if root is None:
        raise Unsupported(f"expression {part!r} does not start with a type")
    return _compile(root[0], part, root.end())


def compile_relative(tag: str, part: str) -> FastPath:
    """Compile one union part evaluated on an element of type or element path ``tag`` (``code`` or
    ``value.ofType(Quantity)`` on an ``Observation.component``), as a composite's components are
    (https://hl7.org/fhir/R4/searchparameter-definitions.html#SearchParameter.component.expression)."""
    if not part or not (part[0].islower() or part[0] == "("):
        raise Unsupported(f"component expression {part!r} is not a path from the element")
    return _compile(tag, f".{part}", 0)


# FHIRPath's System types as the FHIR primitive types an element has (ofType(DateTime) selects a dateTime).
_SYSTEM_TYPES = {"DateTime": "dateTime", "String": "string", "Boolean": "boolean", "Integer": "integer",
                 "Decimal": "decimal", "Date": "date", "Time": "time"}


def _compile(root: str, part: str, pos: int) -> FastPath:
    tags, steps = [root], list[tuple[int, Any, str | None]]()
    while pos < len(part):
        if (m := _STEP.match(part, pos)) is None:
            raise Unsupported(f"cannot compile {part[pos:]!r} in {part!r}")
        pos = m.end()
        if m["name"]:
            table = {tag: _element(tag, m["name"]) for tag in tags}
            steps.append((_CHILD, table, None))
            tags = list(dict.fromkeys(t for keys in table.values() for _, t in keys))
        elif m["of"]:
            of = _SYSTEM_TYPES.get(m["of"], m["of"])
            tags = [t for t in tags if is_a(t, of)]
            if steps and steps[-1][0] == _CHILD:  # fold the filter into the lookup before it
                table = {tag: tuple(k for k in keys if k[1] in tags) for tag, keys in steps[-1][1].items()}
                steps[-1] = (_CHILD, table, None)
            else:
                steps.append((_OF_TYPE, frozenset(tags), None))
        elif m["target"]:
            steps.append((_WHERE_TARGET, m["target"], None))
        else:
            steps.append((_WHERE_EQ, m["field"], m["literal"]))
    if steps and steps[0][0] == _CHILD:
        return FastPath(root, steps[0][1][root], tuple(steps[1:]))
    return FastPath(root, None, tuple(steps))


@dataclass(frozen=True, slots=True)
class Truthy:
    """`X.exists() and X != false` (as in Patient-deceased): whether X is present and not boolean false."""

    path: FastPath

    def __call__(self, resource: dict[str, Any]) -> list[Node]:
        values = self.path(resource)
        return [(bool(values) and not (len(values) == 1 and values[0][0] is False), "boolean")]


def _fhirpath(part: str) -> Evaluator:
    """A part the fast path does not cover, run by fhirpathpy with the R4 model; types unknown."""
    evaluate = fhirpathpy.compile(part, _MODEL)
    return lambda resource: [(value, None) for value in evaluate(resource)]


@dataclass(frozen=True, slots=True)
class Plan:
    """The compiled union of a parameter's expression parts for one resource type."""

    parts: tuple[Evaluator, ...]

    @property
    def fast(self) -> bool:
        return all(isinstance(p, FastPath | Truthy) for p in self.parts)

    def __call__(self, resource: dict[str, Any]) -> list[Node]:
        if len(self.parts) == 1:
            return self.parts[0](resource)
        return [node for part in self.parts for node in part(resource)]


def compile_plan(expression: str) -> Plan:
    """Compile an expression, part by part, to the fast path or else fhirpathpy."""
    parts: list[Evaluator] = []
    for part in split_union(expression):
        try:
            truthy = _TRUTHY.fullmatch(part)
            parts.append(Truthy(compile_fast(truthy["path"])) if truthy else compile_fast(part))
        except Unsupported:
            parts.append(_fhirpath(part))
    return Plan(tuple(parts))


@cache
def plan_for(resource_type: str, code: str) -> Plan | None:
    """The cached plan of a parameter of a resource type; None if it has no expression."""
    param = get_param(resource_type, code)
    return compile_plan(param.expression) if param and param.expression else None
