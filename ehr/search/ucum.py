"""Canonical UCUM units for quantity search (https://hl7.org/fhir/R4/search.html#quantity).

The conversion table is data: `data/ucum.json`, with its source noted there.
"""

from __future__ import annotations

from decimal import Decimal
from functools import cache
from pathlib import Path

import orjson

UCUM = "http://unitsofmeasure.org"
_TABLE = Path(__file__).parent / "data" / "ucum.json"


@cache
def _conversions() -> dict[str, tuple[str, Decimal, Decimal, Decimal]]:
    """Unit code → (canonical code, offset, factor numerator, factor denominator)."""
    units = orjson.loads(_TABLE.read_bytes())["units"]
    table = {}
    for code, unit in units.items():
        numerator, _, denominator = unit["factor"].partition("/")
        table[code] = (
            unit["canonical"],
            Decimal(unit.get("offset", "0")),
            Decimal(numerator),
            Decimal(denominator or "1"),
        )
    return table


def canonical(
    value: Decimal, system: str | None, code: str | None
) -> tuple[Decimal, str] | tuple[None, None]:
    """The value in this index's canonical unit for a UCUM quantity of a known unit, else (None, None)."""
    if system != UCUM or code is None or (conversion := _conversions().get(code)) is None:
        return None, None
    unit, offset, numerator, denominator = conversion
    value = (value + offset) * numerator if offset else value * numerator
    return (value if denominator == 1 else value / denominator), unit
