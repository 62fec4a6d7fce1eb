"""Ceiling B: raw psycopg 3 on the same JSON documents, in a table shaped like ``resource``.

``bench_raw`` is ``CREATE TABLE … (LIKE resource INCLUDING ALL)``: the same columns (the document
in a text column), the same unique (type, id) index. No versions, no search index, no validation.
"""

from __future__ import annotations

import random
import time
import uuid
from dataclasses import dataclass

import orjson
import psycopg

from bench.crud import NAMES, WEIGHTS, observation, patient

RAW = "bench_raw"
INSERT = (f"INSERT INTO {RAW} (res_type, res_id, version_id, last_updated, deleted, content) "
          "VALUES (%s, %s, 1, now(), false, %s)")
SELECT = f"SELECT content FROM {RAW} WHERE res_type = %s AND res_id = %s"
UPDATE = (f"UPDATE {RAW} SET content = %s, version_id = version_id + 1, last_updated = now() "
          "WHERE res_type = %s AND res_id = %s")


def create_raw_table(url: str, name: str = RAW, *, copy_resources: bool = True) -> None:
    """A table shaped like ``resource``, holding a copy of the resources stored so far."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {name}")
        conn.execute(f"CREATE TABLE {name} (LIKE resource INCLUDING ALL)")
        if copy_resources:
            conn.execute(f"INSERT INTO {name} SELECT * FROM resource")
            conn.execute(f"ANALYZE {name}")


@dataclass(frozen=True, slots=True)
class RawConfig:
    url: str
    mode: str  # "mix" (the CRUD mix in SQL), "insert" or "select"
    patients: tuple[str, ...]
    observations: tuple[str, ...]
    clients: int


class RawWorker:
    """One autocommit connection doing what the API does to the ``resource`` row, and nothing else."""

    def __init__(self, cfg: RawConfig, number: int) -> None:
        self.cfg = cfg
        self.rng = random.Random(number)
        self.conn = psycopg.connect(cfg.url, autocommit=True)
        self.own = {"Patient": cfg.patients[number::cfg.clients] or cfg.patients[:1],
                    "Observation": cfg.observations[number::cfg.clients] or cfg.observations[:1]}

    def _doc(self, kind: str, res_id: str) -> str:
        if kind == "Patient":
            return orjson.dumps(patient(f"RAW-{res_id[:8]}", res_id=res_id)).decode()
        return orjson.dumps(observation(self.rng.choice(self.cfg.patients), 72, res_id=res_id)).decode()

    def step(self, i: int) -> str:
        rng, cfg = self.rng, self.cfg
        op = "read" if i < 0 or cfg.mode == "select" else (
            "create" if cfg.mode == "insert" else rng.choices(NAMES, WEIGHTS)[0])
        kind, ids = ("Patient", cfg.patients) if rng.random() < 0.5 else ("Observation", cfg.observations)
        if op in ("read", "search"):  # search by identifier has no cheaper raw form than a keyed read
            if self.conn.execute(SELECT, (kind, rng.choice(ids))).fetchone() is None:
                raise AssertionError(f"raw {op}: no row")
        elif op == "create":
            rid = str(uuid.uuid4())
            self.conn.execute(INSERT, (kind, rid, self._doc(kind, rid)))
        else:  # update, as in the API mix, of a resource this client owns
            rid = rng.choice(self.own[kind])
            self.conn.execute(UPDATE, (self._doc(kind, rid), kind, rid))
        return op

    def close(self) -> None:
        self.conn.close()


def raw_worker(cfg: RawConfig, number: int) -> RawWorker:
    return RawWorker(cfg, number)


def raw_ingest(url: str, resources: list[tuple[str, str, str]]) -> float:
    """Seconds to insert (type, id, JSON) rows into a fresh ``resource``-shaped table in one transaction."""
    create_raw_table(url, "bench_raw_ingest", copy_resources=False)
    with psycopg.connect(url) as conn:
        started = time.perf_counter()
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO bench_raw_ingest (res_type, res_id, version_id, last_updated, deleted, "
                            "content) VALUES (%s, %s, 1, now(), false, %s)", resources)
        conn.commit()
        return time.perf_counter() - started
