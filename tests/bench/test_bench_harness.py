"""Smoke tests of the benchmark harness (no timings asserted: speed lives in ``make bench``)."""

from __future__ import annotations

from pathlib import Path

import orjson

from bench import load
from bench.ingest import _references, load_corpus
from bench.profile import summarise
from tests.conftest import require_corpora


class _Counting:
    """A worker that does nothing, and fails every fifth step."""

    def __init__(self, config: str, number: int) -> None:
        self.config = config

    def step(self, i: int) -> str:
        if i >= 0 and i % 5 == 4:
            raise ValueError(f"step {i}")
        return self.config

    def close(self) -> None:
        pass


def _counting(config: str, number: int) -> _Counting:
    return _Counting(config, number)


def test_load_runs_every_step_of_every_client_and_counts_failures():
    result = load.run(_counting, "noop", processes=2, threads=3, steps=10, warmup=2,
                      counters=lambda: {"calls": 1.0})
    assert len(result.latencies["noop"]) == 2 * 3 * 8
    assert len(result.errors) == 2 * 3 * 2
    assert result.counters == {"calls": 0.0}
    assert result.wall > 0 and result.percentile("noop", 50) >= 0


def test_profile_summary_charges_the_innermost_himhis_frame(tmp_path: Path):
    raw = tmp_path / "p.txt"
    raw.write_text(
        "run (uvicorn/main.py:1);create (ehr/routes.py:10);write (ehr/repository.py:139);"
        "execute (sqlalchemy/engine/base.py:5) 3\n"
        "run (uvicorn/main.py:1);read (ehr/routes.py:20) 1\n")
    text = summarise(raw)
    assert "75.0 %  ehr/repository.py:write" in text
    assert "75.0 %  sqlalchemy" in text
    assert "100.0 %  ehr/routes.py" not in text  # two different route functions


def test_reference_batch_holds_every_entry_the_bundles_point_at():
    corpus = load_corpus(require_corpora() / "synthea-r4", bundles=2)
    wanted = {r for b in corpus.bundles for r in _references(orjson.loads(b)) if "?" in r}
    have = {f"{e['resource']['resourceType']}?{e['request']['ifNoneExist']}" for e in corpus.reference_batch["entry"]}
    assert wanted == have
    assert len(corpus.bundles) == 2 and corpus.resource_count == len(corpus.resources)
