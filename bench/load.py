"""A bounded load generator: client processes × threads, a fixed number of steps per thread.

Each thread builds its own worker (one keep-alive connection), warms up, and waits; all threads of
all processes start together, and each records the latency of every step. Throughput is the total
step count over the span from the first start to the last finish (CLOCK_MONOTONIC is system-wide).
"""

from __future__ import annotations

import multiprocessing as mp
import queue
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol


class Worker(Protocol):
    def step(self, i: int) -> str:
        """Do operation ``i``; return its name, or raise to count it as an error."""
        ...

    def close(self) -> None: ...


Factory = Callable[[Any, int], Worker]  # (config, thread number across all processes) -> a worker


@dataclass
class LoadResult:
    wall: float
    latencies: dict[str, list[float]]
    errors: list[str]
    client_cpu: float
    counters: dict[str, float] = field(default_factory=dict)

    @property
    def count(self) -> int:
        return sum(len(v) for v in self.latencies.values())

    @property
    def rate(self) -> float:
        return self.count / self.wall

    def percentile(self, op: str | None, p: float) -> float:
        """The ``p``-th percentile latency in seconds of one operation (or of all with None)."""
        values = sorted(self.latencies.get(op, []) if op else [v for vs in self.latencies.values() for v in vs])
        return values[min(len(values) - 1, int(p / 100 * len(values)))] if values else float("nan")


@dataclass(frozen=True, slots=True)
class _Job:
    factory: Factory
    config: Any
    process: int
    threads: int
    steps: int
    warmup: int


def _client_process(job: _Job, start: Any, results: Any) -> None:
    lats: dict[str, list[float]] = defaultdict(list)
    errors: list[str] = []
    ready = threading.Barrier(job.threads + 1)
    go = threading.Event()
    ends: list[float] = []
    lock = threading.Lock()

    def thread(n: int) -> None:
        number = job.process * job.threads + n
        mine: dict[str, list[float]] = defaultdict(list)
        failed: list[str] = []
        worker = None
        try:
            worker = job.factory(job.config, number)
            for i in range(job.warmup):
                worker.step(-1 - i)
        except Exception as exc:
            failed.append(f"setup of client {number}: {exc!r}")
        ready.wait()
        go.wait()
        clock = time.perf_counter
        if worker is not None:
            for i in range(job.steps):
                t0 = clock()
                try:
                    op = worker.step(i)
                except Exception as exc:
                    failed.append(repr(exc)[:300])
                    continue
                mine[op].append(clock() - t0)
            worker.close()
        with lock:
            ends.append(clock())
            for op, values in mine.items():
                lats[op].extend(values)
            errors.extend(failed)

    threads = [threading.Thread(target=thread, args=(n,), daemon=True) for n in range(job.threads)]
    for t in threads:
        t.start()
    ready.wait()
    start.wait()
    cpu0, began = time.process_time(), time.perf_counter()
    go.set()
    for t in threads:
        t.join()
    results.put((began, max(ends), time.process_time() - cpu0, dict(lats), errors))


def run(factory: Factory, config: Any, *, processes: int, threads: int, steps: int, warmup: int = 5,
        counters: Callable[[], dict[str, float]] | None = None, timeout: float = 600.0) -> LoadResult:
    """Run ``steps`` operations on each of ``processes × threads`` workers and gather the latencies.

    ``counters()`` (e.g. CPU seconds of the server) is read as the load starts and again as it ends;
    the result carries the differences.
    """
    ctx = mp.get_context("spawn")
    start = ctx.Barrier(processes + 1)
    results = ctx.Queue()
    procs = [ctx.Process(target=_client_process, args=(_Job(factory, config, p, threads, steps, warmup),
                                                        start, results), daemon=True) for p in range(processes)]
    for p in procs:
        p.start()
    try:
        start.wait(timeout=min(timeout, 180.0))  # every client connected and warmed up
        before = counters() if counters else {}
        gathered = []
        deadline = time.monotonic() + timeout
        while len(gathered) < processes:
            try:
                gathered.append(results.get(timeout=1.0))
            except queue.Empty:
                if time.monotonic() > deadline or any(p.exitcode not in (None, 0) for p in procs):
                    raise RuntimeError("a load client process failed or timed out") from None
        after = counters() if counters else {}
    finally:
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.terminate()
    lats: dict[str, list[float]] = defaultdict(list)
    errors: list[str] = []
    for _, _, _, proc_lats, proc_errors in gathered:
        for op, values in proc_lats.items():
            lats[op].extend(values)
        errors.extend(proc_errors)
    wall = max(g[1] for g in gathered) - min(g[0] for g in gathered)
    return LoadResult(wall=wall, latencies=dict(lats), errors=errors, client_cpu=sum(g[2] for g in gathered),
                      counters={k: after[k] - before[k] for k in before})
