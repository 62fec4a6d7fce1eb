"""Real Celery workers on Redis and on RabbitMQ processing messages sent over MLLP, and the reliability
test: listener and worker killed with SIGKILL at random points, every acknowledged message stored and
processed exactly once after restart, and the sender's retries creating no duplicates."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import func, select

from himhis.config import ROOT, Settings
from himhis.models import Hl7Message, ResourceVersion
from tests.conftest import free_port
from tests.integrations.hl7.conftest import (
    AMQP_URL,
    REDIS_URL,
    MllpClient,
    inbox_rows,
    lab_world,
    msa,
    oru,
    require_broker,
    start_listener,
    wait_for,
)

BROKERS = {"redis": REDIS_URL, "rabbitmq": AMQP_URL}


@pytest.fixture(params=["redis", "rabbitmq"])
def broker(request) -> str:
    url = BROKERS[request.param]
    require_broker(url)
    return url


@pytest.fixture
def env(db, broker, var_dir) -> dict[str, str]:
    """The environment of the worker and listener processes: this test's database, broker and own queue."""
    return {**os.environ, "HIMHIS_DATABASE_URL": db.engine.url.render_as_string(hide_password=False),
            "HIMHIS_BROKER_URL": broker, "HIMHIS_HL7_QUEUE": f"hl7-test-{uuid.uuid4().hex[:12]}",
            "HIMHIS_HL7_REQUEUE_AFTER": "2", "HIMHIS_VAR_DIR": str(var_dir), "HIMHIS_MLLP_FRAME_TIMEOUT": "5"}


def start_worker(env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "integrations.celery_app", "worker", "-Q", env["HIMHIS_HL7_QUEUE"],
         "--pool", "threads", "--concurrency", "4", "--loglevel", "WARNING", "--without-gossip",
         "--without-mingle", "--without-heartbeat", "-n", f"test-{uuid.uuid4().hex[:8]}@%h"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def start_listener_process(env: dict[str, str], port: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "himhis.cli", "mllp", "--port", str(port)], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@pytest.fixture
def worker(env) -> Iterator[subprocess.Popen]:
    proc = start_worker(env)
    yield proc
    stop(proc)


def versions(db, res_type: str) -> int:
    return db.run(lambda s: s.scalar(select(func.count()).select_from(ResourceVersion)
                                     .where(ResourceVersion.res_type == res_type)), write=False)


def test_a_worker_processes_messages_sent_over_mllp(db, env, worker):
    lab_world(db)
    settings = Settings(database_url=env["HIMHIS_DATABASE_URL"], broker_url=env["HIMHIS_BROKER_URL"],
                        hl7_queue=env["HIMHIS_HL7_QUEUE"])
    listener = start_listener(settings, db)
    try:
        c = listener.client()
        for i in range(20):
            assert msa(c.exchange(oru(control=f"W-{i}", filler=f"LAB-{i}")))[1] == "AA"
        c.exchange(oru(control="W-0", filler="LAB-0"))  # a resend: acknowledged, never processed twice
        c.exchange(oru(control="W-HELD", uhid="IGMC-2026-404404", filler="LAB-X"))
        wait_for(lambda: all(r.state != "received" for r in inbox_rows(db)), what="the worker")
    finally:
        listener.stop()
    states = {r.control_id: r.state for r in inbox_rows(db)}
    assert states.pop("W-HELD") == "held"
    assert set(states.values()) == {"processed"} and len(states) == 20
    assert versions(db, "DiagnosticReport") == 20 and versions(db, "Observation") == 60
    assert versions(db, "Provenance") == 20


@pytest.mark.parametrize("seed", [20261125])
def test_sigkill_of_listener_and_worker_loses_and_duplicates_nothing(db, env, seed):
    """N messages, SIGKILL of the listener and of the worker at random points, restarts; the sender
    retries what was not acknowledged with the same control ID (as an LIS does)."""
    lab_world(db)
    rng = random.Random(seed)
    n = 60
    kill_listener_at = set(rng.sample(range(5, n - 5), 4))
    kill_worker_at = set(rng.sample(range(5, n - 5), 4))
    port = free_port()
    listener = start_listener_process(env, port)
    worker = start_worker(env)
    acked: set[str] = set()
    client: MllpClient | None = None
    try:
        for i in range(n):
            control = f"K-{i}"
            if i in kill_worker_at:
                worker.send_signal(signal.SIGKILL)
                worker.wait(10)
                worker = start_worker(env)
            if i in kill_listener_at:  # mid-message: the frame is sent, the reply may never come
                if client is not None:
                    client.send_raw(b"\x0b" + oru(control=control, filler=f"LAB-{i}").encode() + b"\x1c\r")
                listener.send_signal(signal.SIGKILL)
                listener.wait(10)
                listener = start_listener_process(env, port)
                client = None
            while True:  # send until acknowledged, reconnecting while the listener restarts
                try:
                    if client is None:
                        client = wait_for(lambda: _connect(port), timeout=60, what="the listener to restart")
                    reply = client.exchange(oru(control=control, filler=f"LAB-{i}"))
                    if msa(reply)[1] == "AA":
                        acked.add(control)
                        break
                except (OSError, ConnectionError):
                    if client is not None:
                        client.close()
                    client = None
        assert len(acked) == n
        wait_for(lambda: (rows := inbox_rows(db)) and all(r.state != "received" for r in rows), timeout=120,
                 what="every stored message to be processed")
    finally:
        if client is not None:
            client.close()
        stop(listener)
        stop(worker)
    rows = inbox_rows(db)
    assert sorted(r.control_id for r in rows) == sorted(acked), "stored exactly the acknowledged messages"
    assert {r.state for r in rows} == {"processed"}
    # Processed exactly once: one Provenance per message, one DiagnosticReport per filler order.
    assert versions(db, "Provenance") == n
    assert versions(db, "DiagnosticReport") == n and versions(db, "Observation") == 3 * n
    assert db.run(lambda s: s.scalar(select(func.count()).select_from(Hl7Message)), write=False) == n


def _connect(port: int) -> MllpClient | None:
    try:
        return MllpClient(port, timeout=20)
    except OSError:
        return None
