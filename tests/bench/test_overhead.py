"""The authorisation-and-audit cost phase: its unguarded server really has no guards, and the shares add up."""

from __future__ import annotations

import shutil

import httpx
import psycopg
import pytest

from bench import load
from bench.overhead import Pair
from bench.server import Server, create_database, drop_database, postgres_problem
from tests.conftest import IN_CI


def _result(count: int, wall: float, cpu: float) -> load.LoadResult:
    return load.LoadResult(wall=wall, latencies={"op": [0.001] * count}, errors=[], client_cpu=0.0,
                           counters={"server": cpu})


def test_the_cost_is_the_share_of_cpu_and_of_time_the_guards_take():
    pair = Pair("mix", guarded=[_result(100, 2.0, 0.5), _result(100, 2.0, 0.5)],
                unguarded=[_result(100, 1.5, 0.4), _result(100, 1.5, 0.4)])
    assert pair.cpu_share == pytest.approx(0.2)  # 5 ms against 4 ms per request
    assert pair.time_share == pytest.approx(0.25)  # 50 against 66.7 requests/s
    assert "MISSED" in "\n".join(pair.lines())


def test_the_unguarded_server_checks_no_token_and_writes_no_audit_record():
    if problem := postgres_problem():
        if IN_CI:
            pytest.fail(f"CI=true requires PostgreSQL: {problem}")
        pytest.skip(problem)
    url = create_database()
    guarded = Server(url)
    try:
        guarded.upgrade()
        bare = Server(url, factory="bench.unguarded:create_app", var_dir=guarded.var_dir)
        bare.start()
        try:
            r = httpx.put(f"{bare.base}/fhir/Patient/p1", json={"resourceType": "Patient", "id": "p1"}, timeout=30)
            assert r.status_code == 201, r.text
            assert httpx.get(f"{bare.base}/fhir/Patient/p1", timeout=30).status_code == 200
        finally:
            bare.stop()
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT count(*) FROM audit_log").fetchone()[0] == 0
        guarded.start()  # the real API on the same database refuses the same request
        assert httpx.get(f"{guarded.base}/fhir/Patient/p1", timeout=30).status_code == 401
    finally:
        guarded.stop()
        drop_database(url)
        shutil.rmtree(guarded.var_dir, ignore_errors=True)
