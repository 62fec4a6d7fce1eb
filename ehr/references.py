"""Finding and rewriting references inside a resource (https://hl7.org/fhir/R4/references.html)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

# https://hl7.org/fhir/R4/references.html#literal : [Type]/[id](/_history/[vid])?
_RELATIVE = re.compile(r"^([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(?:/_history/([A-Za-z0-9\-.]{1,64}))?$")
_ABSOLUTE_TAIL = re.compile(r"/([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(?:/_history/[A-Za-z0-9\-.]{1,64})?$")
_CONDITIONAL = re.compile(r"^([A-Z][A-Za-z]+)\?(.+)$")


@dataclass(frozen=True, slots=True)
class Ref:
    """A literal reference, classified."""

    raw: str
    kind: str  # "relative", "absolute", "urn", "conditional", "contained", "other"
    res_type: str | None = None
    res_id: str | None = None
    criteria: str | None = None


def classify(raw: str, *, base_url: str | None = None) -> Ref:
    if raw.startswith("#"):
        return Ref(raw, "contained")
    if raw.startswith(("urn:uuid:", "urn:oid:")):
        return Ref(raw, "urn")
    if m := _RELATIVE.match(raw):
        return Ref(raw, "relative", m.group(1), m.group(2))
    if m := _CONDITIONAL.match(raw):
        return Ref(raw, "conditional", m.group(1), criteria=m.group(2))
    if base_url and raw.startswith(base_url.rstrip("/") + "/"):
        return classify(raw[len(base_url.rstrip("/")) + 1:])
    if raw.startswith(("http://", "https://")) and (m := _ABSOLUTE_TAIL.search(raw)):
        return Ref(raw, "absolute", m.group(1), m.group(2))
    return Ref(raw, "other")


def iter_references(node: object, path: str = "") -> Iterator[tuple[str, str]]:
    """Yield (FHIRPath-ish location, reference string) of every ``Reference.reference`` in a resource.

    Contained resources are skipped: their references are checked as part of the container. The
    location is spelled out only for the references found (the walk visits every element).
    """
    stack: list[str | int] = []

    def walk(value: object) -> Iterator[tuple[str, str]]:
        if type(value) is dict:
            for key, child in value.items():
                if key == "reference" and type(child) is str:
                    yield path + _spell(stack) + ".reference", child
                elif key != "contained" and type(child) in _CONTAINERS:
                    stack.append(key)
                    yield from walk(child)
                    stack.pop()
        else:
            for i, item in enumerate(value):
                if type(item) in _CONTAINERS:
                    stack.append(i)
                    yield from walk(item)
                    stack.pop()

    if type(node) in _CONTAINERS:
        yield from walk(node)


_CONTAINERS = (dict, list)


def _spell(steps: list[str | int]) -> str:
    return "".join(f"[{s}]" if type(s) is int else f".{s}" for s in steps)


def rewrite_references(node: object, fn: Callable[[str], str | None]) -> None:
    """Replace, in place, every ``reference`` for which ``fn`` returns a new value."""
    if type(node) is dict:
        for key, value in node.items():
            if key == "reference" and type(value) is str:
                new = fn(value)
                if new is not None:
                    node[key] = new
            elif type(value) in _CONTAINERS:
                rewrite_references(value, fn)
    elif type(node) is list:
        for item in node:
            if type(item) in _CONTAINERS:
                rewrite_references(item, fn)
