"""Run every benchmark on PostgreSQL in one go and print each figure beside its ceiling and target.

1. mixed CRUD through the real API (uvicorn subprocess) from several client processes;
2. ceilings: A, the cheapest public endpoint of the same app with the same clients; B, raw psycopg 3
   on the same documents in a ``resource``-shaped table;
3. Synthea transaction-bundle ingest, beside a raw one-transaction insert of the same resources;
4. the API process's peak resident memory; 5. ``bench.bench_extract``'s extraction throughput;
6. ``bench.overhead``: the CRUD mix and a search mix with and without authorisation and audit;
7. ``bench.search``: search latency at growing numbers of Observations, on its own scratch database.
The API runs one uvicorn worker per core, as deployed; the mixed CRUD is then run once more with
one worker (``--also-workers 0`` skips it).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import os
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from bench import CRUD_PER_CORE, INGEST_PER_CORE, RSS_MB, bench_extract, ceilings, crud, ingest, load, overhead
from bench import search as search_bench
from bench.profile import Profiler, summarise
from bench.server import (
    DISCOVERY,
    Server,
    backend_pids,
    cpu_seconds,
    create_database,
    drop_database,
    machine_busy_seconds,
    postgres_problem,
)

CORES = os.cpu_count() or 1


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    p.add_argument("--processes", type=int, default=3, help="load client processes (default 3)")
    p.add_argument("--threads", type=int, default=4, help="threads per client process, one connection each")
    p.add_argument("--requests", type=int, default=400, help="requests per client thread (default 400)")
    p.add_argument("--bundles", type=int, default=20, help="Synthea patient bundles to ingest, the first one "
                                                           "as an uncounted warm-up (default 20: all 19)")
    p.add_argument("--ingest-clients", type=int, default=4, help="bundles posted at a time (default 4)")
    p.add_argument("--workers", type=int, default=CORES, help=f"uvicorn worker processes (default {CORES}, "
                                                              "one per core, as deployed)")
    p.add_argument("--also-workers", type=int, default=1, help="rerun the CRUD mix with this many workers "
                                                               "(default 1; 0 skips)")
    p.add_argument("--overhead-requests", type=int, default=150,
                   help="requests per client thread in each run of the authorisation-and-audit cost phase "
                        "(default 150; 0 skips)")
    p.add_argument("--search-sizes", default=search_bench.DEFAULT_SIZES,
                   help="Observation counts for the search-latency phase, each a multiple of the first (default "
                        f"{search_bench.DEFAULT_SIZES}; add 1000000 for the 1 M figures, about 20 more minutes; "
                        "'' skips)")
    p.add_argument("--corpus", type=Path, default=ingest.CORPUS)
    p.add_argument("--profile", type=Path, metavar="DIR",
                   help="record py-spy profiles of the server during CRUD and ingest into DIR and summarise them")
    return p.parse_args()


@dataclass
class Results:
    pg_version: str = ""
    database: str = ""
    fixture: crud.Fixture | None = None
    mixed: load.LoadResult | None = None
    bare: load.LoadResult | None = None
    raw: dict[str, load.LoadResult] = field(default_factory=dict)
    corpus: ingest.Corpus | None = None
    references: tuple[int, float] = (0, 0.0)
    warmup_bundle: ingest.IngestResult | None = None
    bundles: ingest.IngestResult | None = None
    raw_ingest: float = 0.0
    rss_mb: float = 0.0
    extract: str = ""
    more_workers: load.LoadResult | None = None
    more_workers_rss: float = 0.0
    overhead: list[overhead.Pair] = field(default_factory=list)
    profiles: list[str] = field(default_factory=list)
    search: search_bench.Report | None = None


def say(message: str) -> None:
    """Progress, on stderr, so stdout holds only the report."""
    print(f"… {message}", file=sys.stderr, flush=True)


def main() -> int:
    args = _args()
    if problem := postgres_problem():
        print(f"bench: cannot run: {problem}", file=sys.stderr)
        return 2
    url = create_database()
    server = Server(url, workers=args.workers)
    try:
        results = measure(args, server)
    finally:
        server.stop()
        drop_database(url)
        shutil.rmtree(server.var_dir, ignore_errors=True)
    report(args, results)
    return 0


def measure(args: argparse.Namespace, server: Server) -> Results:
    res = Results(database=server.database)
    with psycopg.connect(server.database_url) as conn:
        res.pg_version = conn.execute("SHOW server_version").fetchone()[0].split()[0]
    say(f"himhis db upgrade on {server.database_url}")
    server.upgrade()
    server.start()
    clients = args.processes * args.threads

    say("creating the Patients and Observations the CRUD mix works on")
    fx = res.fixture = crud.make_fixture(server.base, server.token(), admin_token=server.token("admin"),
                                         clients=clients)
    _analyze(server.database_url)  # a production database has planner statistics (autovacuum); give them here too
    say(f"mixed CRUD: {args.processes} processes × {args.threads} threads × {args.requests} requests")
    with _profiling(server, args.profile, "crud", res.profiles):
        res.mixed = _drive(args, server, crud.crud_worker, fx)
    say(f"ceiling A: GET {DISCOVERY}")
    res.bare = _drive(args, server, crud.bare_worker, fx)
    if args.overhead_requests:
        say("the cost of authorisation and audit: the same loads with and without them")
        res.overhead = overhead.measure(server, dataclasses.replace(fx, token=server.token()),
                                        processes=args.processes, threads=args.threads,
                                        requests=args.overhead_requests)
    say("ceiling B: raw psycopg 3")
    ceilings.create_raw_table(server.database_url)
    res.raw = {mode: _drive(args, server, ceilings.raw_worker,
                            ceilings.RawConfig(server.database_url, mode, fx.patients, fx.observations, clients))
               for mode in ("mix", "insert", "select")}

    say(f"reading Synthea bundles from {args.corpus}")
    corpus = res.corpus = ingest.load_corpus(args.corpus, bundles=args.bundles)
    res.references = ingest.load_references(server.base, server.token("admin"), corpus)
    token = server.token()
    say("ingest: one bundle to warm up")
    res.warmup_bundle = ingest.ingest(server.base, token, corpus, only=slice(0, 1), clients=1)
    say(f"ingest: {len(corpus.bundles) - 1} transaction bundles, {args.ingest_clients} at a time")
    with _profiling(server, args.profile, "ingest", res.profiles):
        res.bundles = ingest.ingest(server.base, token, corpus, only=slice(1, None), clients=args.ingest_clients,
                                    counters=_counters(server))
    res.raw_ingest = ceilings.raw_ingest(server.database_url, corpus.resources[res.warmup_bundle.resources:])
    res.rss_mb = server.peak_rss_mb()
    server.stop()

    if args.also_workers:
        say(f"mixed CRUD again with --workers {args.also_workers}")
        again = Server(server.database_url, workers=args.also_workers, var_dir=server.var_dir)
        again.start()
        try:
            more_fx = dataclasses.replace(fx, base=again.base, token=again.token())
            res.more_workers = _drive(args, again, crud.crud_worker, more_fx)
            res.more_workers_rss = again.peak_rss_mb()
        finally:
            again.stop()
    say("search-value extraction (bench.bench_extract)")
    res.extract = _extract_figures(args.corpus)
    if sizes := search_bench.sizes_of(args.search_sizes):
        say(f"search latency at {', '.join(f'{n:,}' for n in sizes)} Observations (bench.search)")
        url = create_database()
        try:
            res.search = search_bench.run(url, sizes)
        finally:
            drop_database(url)
    return res


def _counters(server: Server):
    def read() -> dict[str, float]:
        return {"server": cpu_seconds(server.pids()), "postgres": cpu_seconds(backend_pids(server.database)),
                "machine": machine_busy_seconds()}

    return read


def _drive(args: argparse.Namespace, server: Server, factory: load.Factory, config: object) -> load.LoadResult:
    return load.run(factory, config, processes=args.processes, threads=args.threads, steps=args.requests,
                    counters=_counters(server))


@contextlib.contextmanager
def _profiling(server: Server, out: Path | None, phase: str, notes: list[str]) -> Iterator[None]:
    if out is None:
        yield
        return
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{phase}.txt"
    with Profiler(server.pids()[0], path, subprocesses=server.workers > 1):
        time.sleep(0.5)  # py-spy attaches
        yield
    notes.append(f"py-spy profile of the API during {phase}:\n{summarise(path)}")


def _analyze(url: str) -> None:
    """Planner statistics, as autovacuum keeps them on a live database."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("ANALYZE")


def _extract_figures(corpus: Path) -> str:
    """``bench.bench_extract``'s own measurement and print-out, three rounds."""
    out, argv = io.StringIO(), sys.argv
    sys.argv = ["bench_extract", str(corpus), "--rounds", "3"]
    try:
        with contextlib.redirect_stdout(out):
            bench_extract.main()
    finally:
        sys.argv = argv
    return out.getvalue()


# -- the report -------------------------------------------------------------------------------------------


def _rate(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:,.1f}"


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def _verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def _cpu(counters: dict[str, float], wall: float, client: float = 0.0) -> str:
    """Where the CPU went during a phase; "the rest" is every other process on the machine."""
    rest = max(counters["machine"] - counters["server"] - counters["postgres"] - client, 0.0)
    return (f"CPU (100 % = one of {CORES} cores): API {100 * counters['server'] / wall:.0f} %, its PostgreSQL "
            f"backends {100 * counters['postgres'] / wall:.0f} %, load clients {100 * client / wall:.0f} %, "
            f"the rest of the machine {100 * rest / wall:.0f} %")


def _per_cpu(r: load.LoadResult | ingest.IngestResult, count: int) -> float:
    return count / r.counters["server"] if r.counters.get("server") else float("nan")


def report(args: argparse.Namespace, res: Results) -> None:
    mixed, bare, raw, corpus, bundles = res.mixed, res.bare, res.raw, res.corpus, res.bundles
    assert mixed and bare and corpus and bundles and res.fixture and res.warmup_bundle
    clients = args.processes * args.threads
    print(f"HimHIS bench: PostgreSQL {res.pg_version} at 127.0.0.1:5432, scratch database {res.database} "
          f"(dropped); {CORES} cores shared by the API, PostgreSQL and the load clients")
    print(f"API: uvicorn himhis.app:create_app --factory --workers {args.workers} --no-access-log (uvloop, "
          "httptools), HIMHIS_DATABASE_URL and HIMHIS_VAR_DIR set, after himhis db upgrade; tokens for "
          "doctor.igmc (admin for the reference batch) from the development identity provider")
    print(f"load: {args.processes} client processes × {args.threads} threads = {clients} keep-alive httpx "
          f"connections, {args.requests} requests each ({clients * args.requests:,}) after 5 warm-up requests each")
    print()
    print(f"1. Mixed CRUD: 50 % read, 20 % create, 20 % update, 10 % search by identifier, on "
          f"{len(res.fixture.patients)} Patients and {len(res.fixture.observations)} Observations made first")
    print(f"   {'operation':<10}{'count':>8}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}")
    for op, _ in crud.MIX:
        print(f"   {op:<10}{len(mixed.latencies.get(op, [])):>8}{_ms(mixed.percentile(op, 50)):>9}"
              f"{_ms(mixed.percentile(op, 95)):>9}{_ms(mixed.percentile(op, 99)):>9}")
    print(f"   {mixed.count:,} requests in {mixed.wall:.1f} s = {_rate(mixed.rate)} req/s, "
          f"{_rate(mixed.rate / CORES)} per core; {_rate(_per_cpu(mixed, mixed.count))} per API CPU-second; "
          f"errors: {len(mixed.errors)}")
    print(f"   {_cpu(mixed.counters, mixed.wall, mixed.client_cpu)}")
    if res.more_workers:
        m = res.more_workers
        print(f"   with --workers {args.also_workers}: {_rate(m.rate)} req/s, read p50/p95 "
              f"{_ms(m.percentile('read', 50))}/{_ms(m.percentile('read', 95))} ms; errors: {len(m.errors)}; "
              f"peak RSS per worker {res.more_workers_rss:.0f} MB")
        print(f"   {_cpu(m.counters, m.wall, m.client_cpu)}")
    print("2. Ceilings, same run, same client processes, threads and request counts")
    print(f"   A  GET {DISCOVERY}: the cheapest existing public route (development identity provider; no "
          f"token, no database): {_rate(bare.rate)} req/s, p50 {_ms(bare.percentile(None, 50))} ms, "
          f"{_rate(_per_cpu(bare, bare.count))} per API CPU-second; errors: {len(bare.errors)}")
    print(f"      {_cpu(bare.counters, bare.wall, bare.client_cpu)}")
    print(f"   B  raw psycopg 3, {clients} autocommit connections, a table LIKE resource (the JSON in a text column)")
    for mode, what in (("mix", "the same mix as SQL (search = keyed select)"), ("insert", "insert only"),
                       ("select", "select by (type, id) only")):
        r = raw[mode]
        print(f"      {what:<44}{_rate(r.rate):>8} ops/s, p50 {_ms(r.percentile(None, 50))} ms; "
              f"errors: {len(r.errors)}")
    n_refs, ref_s = res.references
    print(f"3. Transaction-bundle ingest of Synthea R4 patients, POST /fhir, {args.ingest_clients} bundles at a time")
    print(f"   before, not counted: the {n_refs} Organization/Location/Practitioner entries the bundles reference "
          f"(of {corpus.batch_total:,} in the two batch bundles) as one batch: {ref_s:.1f} s = "
          f"{_rate(n_refs / ref_s)} entries/s (a batch commits each entry on its own); then bundle 1 to warm up "
          f"({res.warmup_bundle.resources} resources, {res.warmup_bundle.wall:.2f} s)")
    lat = sorted(bundles.latencies)
    print(f"   {bundles.bundles} bundles, {bundles.resources:,} resources in {bundles.wall:.1f} s = "
          f"{_rate(bundles.rate)} resources/s, {_rate(bundles.rate / CORES)} per core, "
          f"{_rate(_per_cpu(bundles, bundles.resources))} per API CPU-second; per bundle p50 "
          f"{lat[len(lat) // 2]:.2f} s, max {lat[-1]:.2f} s; errors: {len(bundles.errors)}")
    print(f"   {_cpu(bundles.counters, bundles.wall, bundles.client_cpu)}")
    raw_rate = bundles.resources / res.raw_ingest
    print(f"   ceiling: raw psycopg executemany of the same {bundles.resources:,} resources' JSON into a "
          f"resource-shaped table, one transaction: {res.raw_ingest:.2f} s = {_rate(raw_rate)} resources/s")
    print(f"4. API peak resident memory, VmHWM of the uvicorn process after all of the above: {res.rss_mb:.0f} MB")
    print("5. Search-value extraction, bench.bench_extract.main() (in this process, 3 rounds):")
    print("\n".join("   " + line for line in res.extract.rstrip().splitlines()))
    if res.overhead:
        print("6. Cost of authorisation and audit (token check, policy, facility scope, audit log): the same "
              "loads on this API and on bench.unguarded (none of them), same database, runs alternated A-B-A-B")
        for pair in res.overhead:
            print("\n".join(pair.lines()))
    if res.search:
        print("7. Search latency, bench.search (its own scratch database, dropped):")
        out = io.StringIO()
        search_bench.print_report(res.search, out)
        print("\n".join("   " + line for line in out.getvalue().rstrip().splitlines()))
    errors = [*mixed.errors, *bare.errors, *bundles.errors, *(res.more_workers.errors if res.more_workers else [])]
    for msg in errors[:5]:
        print(f"   error: {msg}")
    print()

    crud_cpu, bare_cpu = _per_cpu(mixed, mixed.count), _per_cpu(bare, bare.count)
    rows = [
        ("mixed CRUD", f"{_rate(mixed.rate)} req/s", f"A bare HTTP {_rate(bare.rate)} req/s",
         f"{mixed.rate / bare.rate:.2f}", "", ""),
        ("", "", f"B raw SQL mix {_rate(raw['mix'].rate)} ops/s", f"{mixed.rate / raw['mix'].rate:.3f}", "", ""),
        (f"  per core (÷{CORES})", f"{_rate(mixed.rate / CORES)} req/s", "", "",
         f"≥ {CRUD_PER_CORE.value:,.0f} req/s", _verdict(mixed.rate / CORES >= CRUD_PER_CORE.value)),
        ("  per API CPU-second", f"{_rate(crud_cpu)} req", f"A {_rate(bare_cpu)} req", f"{crud_cpu / bare_cpu:.2f}",
         "", ""),
        ("  read p50 / p95", f"{_ms(mixed.percentile('read', 50))} / {_ms(mixed.percentile('read', 95))} ms",
         f"A {_ms(bare.percentile(None, 50))} / {_ms(bare.percentile(None, 95))} ms", "", "", ""),
    ]
    if res.more_workers:
        m = res.more_workers
        rows.append((f"  --workers {args.also_workers}", f"{_rate(m.rate)} req/s", "", "",
                     f"≥ {CRUD_PER_CORE.value:,.0f} req/s per core", _verdict(m.rate / CORES >= CRUD_PER_CORE.value)))
    rows += [
        ("bundle ingest", f"{_rate(bundles.rate)} res/s", f"raw SQL, 1 tx {_rate(raw_rate)} res/s",
         f"{bundles.rate / raw_rate:.3f}", "", ""),
        (f"  per core (÷{CORES})", f"{_rate(bundles.rate / CORES)} res/s", "", "",
         f"≥ {INGEST_PER_CORE.value:,.0f} res/s", _verdict(bundles.rate / CORES >= INGEST_PER_CORE.value)),
        ("  per API CPU-second", f"{_rate(_per_cpu(bundles, bundles.resources))} res", "", "", "", ""),
        ("API peak RSS", f"{res.rss_mb:.0f} MB", "", "", f"< {RSS_MB.value:.0f} MB",
         _verdict(res.rss_mb < RSS_MB.value)),
    ]
    for pair in res.overhead:
        share = max(pair.cpu_share, pair.time_share)
        rows.append((f"authz + audit, {pair.name}", f"{100 * share:.0f} % of request", "without them", "",
                     f"< {100 * overhead.TARGET:.0f} %", _verdict(share < overhead.TARGET)))
    head = ("figure", "measured", "ceiling (same run)", "API/ceiling", "target", "result")
    widths = [max(len(r[i]) for r in [*rows, head]) for i in range(len(head))]
    for r in (head, tuple("-" * w for w in widths), *rows):
        print("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip())
    print(f"published anchors: {CRUD_PER_CORE.anchors}; {INGEST_PER_CORE.anchors}")
    for note in res.profiles:
        print()
        print(note)


if __name__ == "__main__":
    sys.exit(main())
