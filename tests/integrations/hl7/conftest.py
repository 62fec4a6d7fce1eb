"""HL7 interface fixtures: a laboratory, a patient with a UHID and an order, ORU^R01 builders, a live
MLLP listener on a real socket, and a client that speaks MLLP."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import select

from ehr.service import FhirStore
from himhis.config import Settings
from himhis.db import Database
from himhis.models import Hl7Message
from himhis.systems import OIDC_CLIENT, PLACER_ORDER, UHID
from integrations.hl7.mllp import MllpServer
from tests.conftest import IN_CI

FIXTURES = Path(__file__).parent / "fixtures"
UHID_1 = "IGMC-2026-000101"
UHID_2 = "IGMC-2026-000102"
CBC = [("HB", "Haemoglobin", "NM", "13.4", "g/dL", "12-16", "N"),
       ("TLC", "Total leucocyte count", "NM", "8.2", "10*3/uL", "4-11", "N"),
       ("PLT", "Platelets", "NM", "220", "10*3/uL", "150-450", "N")]


def oru(*, control: str = "MSG-1", uhid: str = UHID_1, placer: str = "ORD-1001", filler: str = "LAB-5001",
        panel: str = "CBC^Haemogram^L", status: str = "F", results=CBC, obx_status: str | None = None,
        facility: str = "IGMC", version: str = "2.5.1", sep: str = "\r", ack_types: str = "") -> str:
    """An ORU^R01 from the IGMC laboratory: results are (code, text, type, value, unit, range, flags)."""
    segs = [f"MSH|^~\\&|LIS|{facility}|HIMHIS|{facility}|20261125101500+0530||ORU^R01^ORU_R01|{control}|P|"
            f"{version}{ack_types}",
            f"PID|1||{uhid}^^^{facility}^MR||Thakur^Asha||19800101|F",
            f"ORC|RE|{placer}^HIMHIS|{filler}^{facility}LIS",
            f"OBR|1|{placer}^HIMHIS|{filler}^{facility}LIS|{panel}|||20261125090000+0530|||||||||||||||"
            f"20261125101000+0530|||{status}"]
    for i, (code, text, vtype, value, unit, ref, flags) in enumerate(results, start=1):
        segs.append(f"OBX|{i}|{vtype}|{code}^{text}^L||{value}|{unit}|{ref}|{flags}|||{obx_status or status}")
    segs.append(f"SPM|1|S-{filler}^S-{filler}||BLD^Whole blood^HL70487|||||||||||||20261125090000+0530")
    return sep.join(segs)


def lab_world(db: Database, *, placer: str = "ORD-1001", patient_uhid: str = UHID_1) -> dict[str, str]:
    """The IGMC laboratory (client lab-gateway), two patients with UHIDs, and an order for the first."""

    def work(session) -> dict[str, str]:
        store = FhirStore(session)
        store.update("Organization", "lab-igmc", {
            "resourceType": "Organization", "id": "lab-igmc", "name": "IGMC central laboratory",
            "identifier": [{"system": OIDC_CLIENT, "value": "lab-gateway"}]})
        for pid, uhid in (("p1", UHID_1), ("p2", UHID_2)):
            store.update("Patient", pid, {"resourceType": "Patient", "id": pid, "name": [{"family": pid}],
                                          "identifier": [{"system": UHID, "value": uhid}]})
        store.update("ServiceRequest", "sr-1", {
            "resourceType": "ServiceRequest", "id": "sr-1", "status": "active", "intent": "order",
            "identifier": [{"system": PLACER_ORDER, "value": placer}],
            "code": {"coding": [{"system": "http://loinc.org", "code": "58410-2"}]},
            "subject": {"reference": "Patient/p1"}, "performer": [{"reference": "Organization/lab-igmc"}]})
        return {"patient": "p1", "order": "sr-1", "lab": "lab-igmc"}

    return db.run(work)


def inbox_rows(db: Database) -> list[Hl7Message]:
    return db.run(lambda s: list(s.execute(select(Hl7Message).order_by(Hl7Message.id)).scalars()), write=False)


def wait_for(predicate, *, timeout: float = 60.0, interval: float = 0.05, what: str = "condition"):
    """Poll until ``predicate()`` is truthy (a deadline for hung runs only; nothing is timed)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(interval)


class MllpClient:
    """A blocking MLLP client: ``exchange(text)`` sends one framed message and returns the reply text."""

    def __init__(self, port: int, *, timeout: float = 30.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def reply(self) -> str:
        while b"\x1c\r" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("the listener closed the connection")
            self.buf += chunk
        block, _, self.buf = self.buf.partition(b"\x1c\r")
        assert block.startswith(b"\x0b"), block[:20]
        return block[1:].decode()

    def exchange(self, text: str) -> str:
        self.send_raw(b"\x0b" + text.encode() + b"\x1c\r")
        return self.reply()

    def close(self) -> None:
        self.sock.close()


def msa(reply: str) -> list[str]:
    """The MSA fields of an acknowledgement: [MSA, code, control id, …]."""
    seg = next(s for s in reply.split("\r") if s.startswith("MSA"))
    return seg.split("|")


def err(reply: str) -> str:
    return next((s for s in reply.split("\r") if s.startswith("ERR")), "")


@dataclass
class Listener:
    server: MllpServer
    loop: asyncio.AbstractEventLoop
    thread: threading.Thread
    clients: list[MllpClient] = field(default_factory=list)

    @property
    def port(self) -> int:
        return self.server.port

    def client(self) -> MllpClient:
        c = MllpClient(self.port)
        self.clients.append(c)
        return c

    def stop(self) -> None:
        for c in self.clients:
            c.close()
        asyncio.run_coroutine_threadsafe(self.server.close(), self.loop).result(60)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def start_listener(settings: Settings, db: Database) -> Listener:
    """The MLLP listener on a free loopback port, its event loop in a thread."""
    loop = asyncio.new_event_loop()
    server = MllpServer(settings, db, host="127.0.0.1", port=0)
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(server.start(), loop).result(30)
    return Listener(server, loop, thread)


@pytest.fixture
def hl7_settings(db, var_dir) -> Settings:
    return Settings(database_url=db.engine.url.render_as_string(hide_password=False), var_dir=var_dir,
                    broker_url="memory://", mllp_max_message_bytes=1024 * 1024, mllp_frame_timeout=2.0)


@pytest.fixture
def listener(hl7_settings, db) -> Iterator[Listener]:
    running = start_listener(hl7_settings, db)
    yield running
    running.stop()


def broker_available(url: str) -> str | None:
    """None if the broker at ``url`` answers, else why not."""
    from kombu import Connection

    try:
        with Connection(url, connect_timeout=3) as conn:
            conn.ensure_connection(max_retries=1)
        return None
    except Exception as exc:
        return f"{url} is not reachable: {exc}"


def require_broker(url: str) -> None:
    """Skip without the broker, except under CI=true, where its absence is a failure."""
    reason = broker_available(url)
    if reason:
        if IN_CI:
            pytest.fail(f"CI=true requires the broker: {reason}")
        pytest.skip(reason)


REDIS_URL = os.environ.get("HIMHIS_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
AMQP_URL = os.environ.get("HIMHIS_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")
