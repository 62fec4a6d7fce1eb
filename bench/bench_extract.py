"""Throughput of search-value extraction (ehr.search.extract) over the Synthea R4 corpus.

    python -m bench.bench_extract [corpus-dir] [--rounds N]     (from the repository root)

Prints resources/s overall and the mean cost per resource type. Bundle-internal `urn:uuid:`
references are first rewritten to `Type/id`, as the store's transaction processing does.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import orjson

from ehr.search import extract
from himhis.config import ROOT


def load(corpus: Path) -> list[dict[str, Any]]:
    """Every resource of every bundle in `corpus`, with urn:uuid references made relative."""
    resources: list[dict[str, Any]] = []
    for path in sorted(corpus.glob("*.json")):
        entries = orjson.loads(path.read_bytes())["entry"]
        targets = {e["fullUrl"]: f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in entries}
        resources.extend(_relink(e["resource"], targets) for e in entries)
    return resources


def _relink(node: Any, targets: dict[str, str]) -> Any:
    if isinstance(node, dict):
        return {k: targets.get(v, v) if k == "reference" else _relink(v, targets) for k, v in node.items()}
    if isinstance(node, list):
        return [_relink(v, targets) for v in node]
    return node


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "corpus", nargs="?", type=Path, default=ROOT.parent / "shared" / "corpora" / "synthea-r4"
    )
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    resources = load(args.corpus)
    if not resources:
        raise SystemExit(f"no bundles in {args.corpus}")
    values = sum(len(extract(r)) for r in resources)  # warm-up: loads the registry, compiles plans

    best = float("inf")
    per_type: dict[str, float] = {}  # the lowest total per type over the rounds
    counts = Counter(r["resourceType"] for r in resources)
    clock = time.perf_counter
    for _ in range(args.rounds):
        spent: dict[str, float] = defaultdict(float)
        for resource in resources:
            started = clock()
            extract(resource)
            spent[resource["resourceType"]] += clock() - started
        best = min(best, sum(spent.values()))
        per_type = {t: min(spent[t], per_type.get(t, spent[t])) for t in spent}

    print(f"{len(resources)} resources, {values} index values, best of {args.rounds} rounds")
    print(
        f"extract(): {len(resources) / best:,.0f} resources/s"
        f" ({best / len(resources) * 1e6:.1f} µs per resource)"
    )
    for resource_type in sorted(per_type, key=lambda t: -per_type[t] / counts[t]):
        mean = per_type[resource_type] / counts[resource_type] * 1e6
        print(f"  {resource_type:<24} {counts[resource_type]:>6}  {mean:7.1f} µs")


if __name__ == "__main__":
    main()
