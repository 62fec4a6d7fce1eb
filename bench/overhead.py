"""What authorisation and audit cost: the CRUD mix and a search mix, with and without them, in one run.

Two servers on the same database: the real API (token check, policy, facility scope, audit log) and
``bench.unguarded`` (none of them). The same load clients drive both, alternating A-B-A-B so that
drift on a shared machine hits both alike; the cost is reported per request, from the API's own CPU
seconds (steadier than wall-clock rates) and from throughput, beside the target of 15 %.
"""

from __future__ import annotations

import argparse
import random
import sys
from dataclasses import dataclass, replace

import httpx

from bench import crud, load
from bench.server import Server, cpu_seconds, create_database, drop_database, postgres_problem

TARGET = 0.15
LOINC_HEART_RATE = "http://loinc.org|8867-4"


class SearchWorker:
    """Searches only: a patient by identifier, and a patient's observations of one code."""

    def __init__(self, fx: crud.Fixture, number: int) -> None:
        self.fx, self.rng = fx, random.Random(1000 + number)
        self.http = httpx.Client(base_url=fx.base, timeout=60, headers={
            **crud.FHIR_JSON, "Authorization": f"Bearer {fx.token}"},
            limits=httpx.Limits(max_connections=1, max_keepalive_connections=1))

    def step(self, i: int) -> str:
        if self.rng.random() < 0.5:
            r = self.http.get("/fhir/Patient", params={"identifier": f"{crud.MRN}|{self.rng.choice(self.fx.mrns)}"})
            op = "patient by identifier"
        else:
            r = self.http.get("/fhir/Observation", params={"patient": self.rng.choice(self.fx.patients),
                                                           "code": LOINC_HEART_RATE})
            op = "observations of a patient, one code"
        if r.status_code != 200 or b'"entry"' not in r.content:
            raise AssertionError(f"{op}: {r.status_code} {r.text[:200]}")
        return op

    def close(self) -> None:
        self.http.close()


def search_worker(fx: crud.Fixture, number: int) -> SearchWorker:
    return SearchWorker(fx, number)


@dataclass
class Pair:
    """One workload measured on both servers, twice each."""

    name: str
    guarded: list[load.LoadResult]
    unguarded: list[load.LoadResult]

    @staticmethod
    def _cpu_per_request(results: list[load.LoadResult]) -> float:
        return sum(r.counters["server"] for r in results) / sum(r.count for r in results)

    @staticmethod
    def _rate(results: list[load.LoadResult]) -> float:
        return sum(r.count for r in results) / sum(r.wall for r in results)

    @property
    def cpu_share(self) -> float:
        """The share of the guarded API's CPU per request that authorisation and audit take."""
        g, u = self._cpu_per_request(self.guarded), self._cpu_per_request(self.unguarded)
        return 1 - u / g

    @property
    def time_share(self) -> float:
        """The share of request time (inverse throughput) that authorisation and audit take."""
        return 1 - self._rate(self.guarded) / self._rate(self.unguarded)

    def lines(self) -> list[str]:
        g_cpu, u_cpu = self._cpu_per_request(self.guarded), self._cpu_per_request(self.unguarded)
        share = max(self.cpu_share, self.time_share)
        errors = sum(len(r.errors) for r in self.guarded + self.unguarded)
        return [
            f"   {self.name}: with {self._rate(self.guarded):,.0f} req/s, {1000 * g_cpu:.2f} API CPU-ms per request; "
            f"without {self._rate(self.unguarded):,.0f} req/s, {1000 * u_cpu:.2f} CPU-ms; errors: {errors}",
            f"      authorisation + audit: {100 * self.cpu_share:.0f} % of the API's CPU per request, "
            f"{100 * self.time_share:.0f} % of request time; target < {100 * TARGET:.0f} %: "
            f"{'met' if share < TARGET else 'MISSED'}",
        ]


def measure(guarded: Server, fx: crud.Fixture, *, processes: int, threads: int, requests: int) -> list[Pair]:
    """Drive the CRUD and search mixes at the real API and at an unguarded one on its database, A-B-A-B."""
    unguarded = Server(guarded.database_url, factory="bench.unguarded:create_app")
    unguarded.start()
    try:
        servers = {"guarded": guarded, "unguarded": unguarded}
        pairs = []
        for name, factory in (("mixed CRUD", crud.crud_worker), ("search", search_worker)):
            runs: dict[str, list[load.LoadResult]] = {"guarded": [], "unguarded": []}
            for _ in range(2):
                for kind, server in servers.items():
                    pids = server.pids()
                    runs[kind].append(load.run(factory, replace(fx, base=server.base), processes=processes,
                                               threads=threads, steps=requests,
                                               counters=lambda p=pids: {"server": cpu_seconds(p)}))
            pairs.append(Pair(name, runs["guarded"], runs["unguarded"]))
        return pairs
    finally:
        unguarded.stop()


def report(pairs: list[Pair]) -> None:
    print("Cost of authorisation and audit (token check, policy, facility scope, audit log): the same load on "
          "the real API and on bench.unguarded, same database, runs alternated A-B-A-B")
    for pair in pairs:
        print("\n".join(pair.lines()))


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m bench.overhead", description=__doc__.splitlines()[0])
    p.add_argument("--processes", type=int, default=3)
    p.add_argument("--threads", type=int, default=4)
    p.add_argument("--requests", type=int, default=200, help="requests per client thread and run")
    args = p.parse_args()
    if problem := postgres_problem():
        print(f"bench: cannot run: {problem}", file=sys.stderr)
        return 2
    url = create_database()
    server = Server(url)
    try:
        server.upgrade()
        server.start()
        fx = crud.make_fixture(server.base, server.token(), admin_token=server.token("admin"),
                               clients=args.processes * args.threads)
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("ANALYZE")
        pairs = measure(server, fx, processes=args.processes, threads=args.threads, requests=args.requests)
    finally:
        server.stop()
        drop_database(url)
    report(pairs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
