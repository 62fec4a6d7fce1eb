"""HimParivar figures: register import rate on PostgreSQL, and linkage at three sizes.

``python -m bench.himparivar [--sizes 20000,60000,180000] [--import-members 200000]``

Import: a synthetic extract loaded by ``himhis himparivar import``'s code into a fresh PostgreSQL
database; members/s beside the rate of reading and checking the same lines without the database
(the ceiling the importer's own Python leaves). Linkage: programme records (one for every 7.5 register
members, the issue's 1 M against 7.5 M) linked to a synthetic register of each size, each size in its
own process so that its peak memory (DuckDB included) is its own; wall time, peak resident memory,
precision and recall on the labels, and the 1 M against 7.5 M time extrapolated from the scaling
(marked as an extrapolation, never as a measurement).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

TODAY = date(2026, 11, 24)
TARGET_SECONDS, TARGET_PRECISION, TARGET_RECALL = 15 * 60, 0.99, 0.97
RECORDS_PER_MEMBER = 1 / 7.5


def link_once(size: int, seed: int = 5) -> dict:
    """One linkage run (called in a child process): figures as a dict."""
    from integrations.himparivar.linkage import LINKED, link
    from integrations.himparivar.records import member_row
    from integrations.himparivar.synthetic import Register, programme_records

    raw = list(Register(size, seed=seed, today=TODAY))
    register = [member_row(r, today=TODAY) for r in raw]
    records = programme_records(raw, max(100, int(size * RECORDS_PER_MEMBER)), seed=seed + 1, today=TODAY)
    started = time.perf_counter()
    links = link(register, records, today=TODAY)
    wall = time.perf_counter() - started
    truth = {r["record_id"]: r["true_member_id"] for r in records}
    linked = [x for x in links if x.state == LINKED]
    correct = sum(1 for x in linked if truth[x.record_id] == x.member_id)
    matchable = sum(1 for t in truth.values() if t)
    return {"register": size, "records": len(records), "seconds": wall,
            "precision": correct / len(linked) if linked else 0.0, "recall": correct / matchable if matchable else 0.0,
            "review": sum(1 for x in links if x.state == "review")}


def _child(size: int) -> dict:
    out = subprocess.run([sys.executable, "-m", "bench.himparivar", "--child", str(size)], capture_output=True,
                         text=True, check=True)
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    return figures


def import_rate(members: int) -> dict:
    from bench.server import create_database, drop_database
    from himhis.db import Database
    from himhis.migrate import upgrade
    from integrations.himparivar import importer
    from integrations.himparivar.records import member_row
    from integrations.himparivar.synthetic import write

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "register.csv"
        write(path, members, seed=3, today=TODAY)
        started = time.perf_counter()
        columns, _ = importer._header(path)
        checked = 0
        for raw, _after in importer._lines(path, 0):
            fields = importer._fields(raw, "csv", columns)
            if fields and fields.get("member_id") != "member_id":
                member_row(fields, today=TODAY)
                checked += 1
        parse_seconds = time.perf_counter() - started
        url = create_database()
        try:
            upgrade(url)
            db = Database(url, pool_size=2, max_overflow=0)
            started = time.perf_counter()
            report = importer.import_extract(db, path, today=TODAY, by="bench@localhost")
            seconds = time.perf_counter() - started
            db.dispose()
        finally:
            drop_database(url)
    return {"members": report.accepted, "seconds": seconds, "rate": report.accepted / seconds,
            "parse_rate": checked / parse_seconds, "size_mb": path_size_mb(members)}


def path_size_mb(members: int) -> float:
    return members * 190 / 1e6  # about 190 bytes a line in the synthetic extract


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.himparivar", description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="20000,60000,180000", help="register sizes for the linkage runs")
    p.add_argument("--import-members", type=int, default=200_000, help="members in the import run (0 skips)")
    p.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        figures = link_once(args.child)
        figures["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(figures))
        return 0

    from bench.server import postgres_problem

    print(f"HimParivar benchmark on {os.cpu_count()} cores (figures from a machine shared with other work vary)")
    if args.import_members:
        if problem := postgres_problem():
            print(f"bench: cannot run the import on PostgreSQL: {problem}", file=sys.stderr)
            return 2
        imp = import_rate(args.import_members)
        print(f"\nRegister import on PostgreSQL: {imp['members']:,} members in {imp['seconds']:.1f} s = "
              f"{imp['rate']:,.0f} members/s; reading and checking the lines alone: {imp['parse_rate']:,.0f}/s "
              f"(the ceiling). 7.5 M members at this rate: {7.5e6 / imp['rate'] / 60:.0f} min (extrapolated).")

    runs = [_child(int(s)) for s in args.sizes.split(",")]
    print("\nLinkage (Splink on DuckDB), records = register / 7.5:")
    print(f"{'register':>10} {'records':>8} {'seconds':>8} {'peak MB':>8} {'precision':>9} {'recall':>7} "
          f"{'review':>6}")
    for r in runs:
        print(f"{r['register']:>10,} {r['records']:>8,} {r['seconds']:>8.1f} {r['peak_mb']:>8.0f} "
              f"{r['precision']:>9.4f} {r['recall']:>7.4f} {r['review']:>6}")
    first, last = runs[0], runs[-1]
    exponent = 1.0
    if last["register"] > first["register"] and first["seconds"] > 0:
        import math

        exponent = math.log(last["seconds"] / first["seconds"]) / math.log(last["register"] / first["register"])
    projected = last["seconds"] * (7.5e6 / last["register"]) ** exponent
    ok = projected <= TARGET_SECONDS
    quality = all(r["precision"] >= TARGET_PRECISION and r["recall"] >= TARGET_RECALL for r in runs)
    print(f"\nTime grows as size^{exponent:.2f}; 1 M records against 7.5 M members: about {projected / 60:.0f} min "
          f"EXTRAPOLATED (target under 15 min: {'met' if ok else 'MISSED'} if the scaling holds).")
    print(f"Precision ≥ {TARGET_PRECISION} and recall ≥ {TARGET_RECALL} at every size: "
          f"{'met' if quality else 'MISSED'}.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
