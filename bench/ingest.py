"""Transaction-bundle ingest of Synthea R4 patients through ``POST /fhir``.

Synthea's patient bundles point at Organizations, Locations and Practitioners by conditional
reference (``Organization?identifier=…``), which must match exactly one resource
(https://hl7.org/fhir/R4/http.html#trules). Those come from the two big batch bundles; only the
entries the chosen patient bundles reference are loaded first, as one smaller batch, timed apart
(by ``admin``: infrastructure types are the admin role's to write, clinical ones the doctor's).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson

from bench.crud import FHIR_JSON
from himhis.config import ROOT

CORPUS = ROOT.parent / "shared" / "corpora" / "synthea-r4"
BATCH_PREFIXES = ("hospitalInformation", "practitionerInformation")


@dataclass
class Corpus:
    """The patient transaction bundles (as bytes, ready to send) and the batch of what they reference."""

    bundles: list[bytes]
    resources: list[tuple[str, str, str]]  # (type, id, JSON) of every resource in those bundles
    reference_batch: dict
    batch_total: int  # entries in the two batch bundles altogether

    @property
    def resource_count(self) -> int:
        return len(self.resources)


@dataclass
class IngestResult:
    wall: float
    bundles: int
    resources: int
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    counters: dict[str, float] = field(default_factory=dict)
    client_cpu: float = 0.0

    @property
    def rate(self) -> float:
        return self.resources / self.wall


def _references(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "reference" and isinstance(v, str):
                yield v
            else:
                yield from _references(v)
    elif isinstance(node, list):
        for v in node:
            yield from _references(v)


def load_corpus(corpus: Path = CORPUS, *, bundles: int = 20) -> Corpus:
    """The first ``bundles`` patient bundles by name, and the batch entries their conditional references need."""
    files = sorted(p for p in corpus.glob("*.json") if not p.name.startswith(BATCH_PREFIXES))[:bundles]
    if not files:
        raise FileNotFoundError(f"no Synthea patient bundles in {corpus}")
    wanted: set[tuple[str, str]] = set()
    sent: list[bytes] = []
    resources: list[tuple[str, str, str]] = []
    for path in files:
        raw = path.read_bytes()
        bundle = orjson.loads(raw)
        sent.append(raw)
        for entry in bundle["entry"]:
            res = entry["resource"]
            resources.append((res["resourceType"], res["id"], orjson.dumps(res).decode()))
        for ref in _references(bundle):
            res_type, sep, criteria = ref.partition("?")
            if sep:
                wanted.add((res_type, criteria))
    needed, total = [], 0
    for path in sorted(corpus.glob("*.json")):
        if path.name.startswith(BATCH_PREFIXES):
            entries = orjson.loads(path.read_bytes())["entry"]
            total += len(entries)
            needed += [e for e in entries
                       if (e["resource"]["resourceType"], e["request"].get("ifNoneExist")) in wanted]
    return Corpus(sent, resources, {"resourceType": "Bundle", "type": "batch", "entry": needed}, total)


def load_references(base: str, token: str, corpus: Corpus) -> tuple[int, float]:
    """POST the batch of referenced Organizations, Locations and Practitioners; (entries, seconds)."""
    started = time.perf_counter()
    with httpx.Client(base_url=base, headers={**FHIR_JSON, "Authorization": f"Bearer {token}"}, timeout=300) as c:
        r = c.post("/fhir", content=orjson.dumps(corpus.reference_batch))
    elapsed = time.perf_counter() - started
    r.raise_for_status()
    bad = [e["response"]["status"] for e in r.json()["entry"] if not e["response"]["status"].startswith("2")]
    if bad:
        raise RuntimeError(f"{len(bad)} reference entries failed: {bad[:3]}")
    return len(corpus.reference_batch["entry"]), elapsed


def ingest(base: str, token: str, corpus: Corpus, *, only: slice = slice(None), clients: int = 2,
           counters: Callable[[], dict[str, float]] | None = None) -> IngestResult:
    """POST the bundles ``corpus.bundles[only]``, ``clients`` at a time, each client over one keep-alive connection."""
    headers = {**FHIR_JSON, "Authorization": f"Bearer {token}"}
    bodies = corpus.bundles[only]
    expected = [len(orjson.loads(b)["entry"]) for b in bodies]
    local, opened = threading.local(), []
    result = IngestResult(0.0, len(bodies), sum(expected))

    def post(n: int) -> None:
        if not hasattr(local, "http"):
            local.http = httpx.Client(base_url=base, headers=headers, timeout=300)
            opened.append(local.http)
        t0 = time.perf_counter()
        r = local.http.post("/fhir", content=bodies[n])
        result.latencies.append(time.perf_counter() - t0)
        if r.status_code != 200:
            result.errors.append(f"bundle {n}: {r.status_code} {r.text[:300]}")
        elif len(r.json().get("entry", [])) != expected[n]:
            result.errors.append(f"bundle {n}: {len(r.json().get('entry', []))} of {expected[n]} entries answered")

    before = counters() if counters else {}
    started, cpu = time.perf_counter(), time.process_time()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(post, range(len(bodies))))
    result.wall = time.perf_counter() - started
    result.client_cpu = time.process_time() - cpu
    after = counters() if counters else {}
    result.counters = {k: after[k] - before[k] for k in before}
    for c in opened:
        c.close()
    return result
