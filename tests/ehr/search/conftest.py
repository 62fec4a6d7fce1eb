"""The Synthea corpus, with bundle-internal references resolved as the store's transaction does."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from ehr.references import rewrite_references
from himhis.config import ROOT

CORPORA = ROOT.parent / "shared" / "corpora"
SYNTHEA = CORPORA / "synthea-r4"


def _resolve(bundles: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rewrite `urn:uuid:` and conditional (`Type?identifier=s|v`) references to `Type/id`.

    https://hl7.org/fhir/R4/http.html#trules — the store does this when it processes a transaction.
    """
    resources = [entry["resource"] for bundle in bundles for entry in bundle["entry"]]
    targets = {
        entry["fullUrl"]: f"{entry['resource']['resourceType']}/{entry['resource']['id']}"
        for bundle in bundles
        for entry in bundle["entry"]
    }
    for r in resources:
        for identifier in r.get("identifier", ()):
            key = f"{r['resourceType']}?identifier={identifier.get('system')}|{identifier.get('value')}"
            targets.setdefault(key, f"{r['resourceType']}/{r['id']}")

    def walk(node: Any) -> None:  # the store's own reference rewriting
        rewrite_references(node, targets.get)

    walk(resources)
    return resources


@pytest.fixture(scope="session")
def synthea_resources() -> list[dict[str, Any]]:
    """Every resource of the Synthea R4 transaction bundles in /work/shared, references resolved."""
    if not CORPORA.is_dir():
        pytest.skip(f"the shared test corpora are not on this machine ({CORPORA} is absent)")
    files: list[Path] = sorted(SYNTHEA.glob("*.json"))
    if not files:
        pytest.skip(f"no Synthea bundles in {SYNTHEA}")
    return _resolve([orjson.loads(f.read_bytes()) for f in files])
