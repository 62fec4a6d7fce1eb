"""The search-latency bench end to end at a tiny size (no timings asserted: speed lives in ``make bench``)."""

from __future__ import annotations

import io

import psycopg
import pytest

from bench import search as search_bench
from bench.server import create_database, drop_database, postgres_problem
from tests.conftest import IN_CI


@pytest.fixture
def scratch_url():
    if problem := postgres_problem():
        if IN_CI:
            pytest.fail(f"CI=true requires PostgreSQL: {problem}")
        pytest.skip(problem)
    url = create_database()
    try:
        yield url
    finally:
        drop_database(url)


def test_the_bench_grows_the_data_answers_every_query_and_prints_figures_and_plans(scratch_url):
    rep = search_bench.run(scratch_url, [200, 400], runs=3, check_sample=50)

    # Every query ran with and without the facility scope at both sizes, and its counts were checked
    # against the generated data inside run(); the copied resources' index rows match extraction.
    names = [q.name for q in search_bench.queries(rep.base)]
    assert {(t.query, t.scoped, t.size) for t in rep.timings} == {
        (n, scoped, size) for n in names for scoped in (False, True) for size in (200, 400)}
    assert all(len(t.seconds) == 3 for t in rep.timings)
    assert rep.checked == 50
    with psycopg.connect(scratch_url) as conn:
        count = dict(conn.execute("SELECT res_type, count(*) FROM resource GROUP BY res_type").fetchall())
        assert count["Observation"] == 400
        assert count["Patient"] == 2 * len(rep.base.patients)
        assert count["Organization"] == 2  # the facilities are not copied
        assert conn.execute("SELECT count(*) FROM resource_version").fetchone()[0] == sum(count.values())
        uhids = conn.execute("SELECT count(DISTINCT code) FROM idx_token WHERE res_type = 'Patient' "
                             "AND param = 'identifier'").fetchone()[0]
        assert uhids == count["Patient"]
    patient_counts = [sum(c.values()) for c in rep.base.per_patient.values()]
    assert all(1 <= n <= 100 for n in patient_counts)

    out = io.StringIO()
    search_bench.print_report(rep, out)
    text = out.getvalue()
    for name in names:
        assert name in text
    assert "p95 400/200" in text and "p95 < 50 ms" in text
    assert "EXPLAIN (ANALYZE, BUFFERS)" in text and "Execution Time" in text
    assert "7th EXECUTE" in text and len(rep.generic) == 8


def test_a_size_that_is_not_a_multiple_of_the_first_is_refused(scratch_url):
    with pytest.raises(ValueError, match="multiple"):
        search_bench.run(scratch_url, [200, 300])
