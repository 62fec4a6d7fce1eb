"""The laboratory test catalogue (``data/catalogue.json``, LOINC-keyed) and the v2-to-FHIR code maps."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from pathlib import Path

import orjson

DATA = Path(__file__).parent / "data"
LOINC = "http://loinc.org"


@dataclass(frozen=True, slots=True)
class Test:
    loinc: str
    display: str
    ucum: str = ""
    critical_low: Decimal | None = None
    critical_high: Decimal | None = None
    panel: bool = False


@dataclass(frozen=True)
class Catalogue:
    tests: dict[str, Test]  # LOINC -> test
    panels: dict[str, Test]  # LOINC -> panel
    local_tests: dict[tuple[str, str], str]  # (lab, local code) -> LOINC
    local_panels: dict[tuple[str, str], str]

    def test(self, lab: str, code: str, system: str) -> Test | None:
        """OBX-3: a LOINC code as sent, or the lab's local code mapped to LOINC; None if unknown."""
        if system in ("LN", "LOINC", LOINC):
            return self.tests.get(code) or self.panels.get(code) or Test(code, "")
        loinc = self.local_tests.get((lab, code))
        return self.tests[loinc] if loinc else None

    def panel(self, lab: str, code: str, system: str) -> Test | None:
        """OBR-4: a LOINC panel or test code as sent, or the lab's local panel code mapped to LOINC."""
        if system in ("LN", "LOINC", LOINC):
            return self.panels.get(code) or self.tests.get(code) or Test(code, "", panel=True)
        loinc = self.local_panels.get((lab, code))
        if loinc:
            return self.panels[loinc]
        loinc = self.local_tests.get((lab, code))  # a single test ordered on its own (e.g. RBS)
        return self.tests[loinc] if loinc else None


def _dec(value) -> Decimal | None:
    return None if value is None else Decimal(str(value))


@cache
def catalogue() -> Catalogue:
    data = orjson.loads((DATA / "catalogue.json").read_bytes())
    tests = {t["loinc"]: Test(t["loinc"], t["display"], t.get("ucum", ""), _dec(t.get("critical_low")),
                              _dec(t.get("critical_high"))) for t in data["tests"]}
    panels = {p["loinc"]: Test(p["loinc"], p["display"], panel=True) for p in data["panels"]}
    local_tests = {(lab, code): t["loinc"] for t in data["tests"] for lab, code in t["local"].items()}
    local_panels = {(lab, code): p["loinc"] for p in data["panels"] for lab, code in p["local"].items()}
    return Catalogue(tests, panels, local_tests, local_panels)


@cache
def v2_maps() -> dict:
    return orjson.loads((DATA / "v2_maps.json").read_bytes())
