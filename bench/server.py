"""The API under test: a scratch PostgreSQL database and a uvicorn subprocess serving the real app."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg

from himhis.config import ROOT

PG_ADMIN_URL = os.environ.get("HIMHIS_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
DISCOVERY = "/realms/himhis/.well-known/openid-configuration"
TOKEN = "/realms/himhis/protocol/openid-connect/token"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def postgres_problem() -> str | None:
    """Why PostgreSQL cannot be used, or None when it answers."""
    try:
        with psycopg.connect(PG_ADMIN_URL, connect_timeout=3):
            return None
    except psycopg.Error as exc:
        return f"PostgreSQL is not reachable at {PG_ADMIN_URL}: {exc}".strip()


def create_database() -> str:
    """A fresh database ``himhis_bench_<hex>``; returns its URL."""
    name = f"himhis_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}"


def drop_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of these processes so far (``/proc/<pid>/stat`` fields 14 and 15)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / CLK_TCK


def backend_pids(database: str) -> list[int]:
    """PostgreSQL backends serving ``database`` (their title reads ``postgres: … <user> <database> …``)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                title = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if title.startswith("postgres:") and f" {database} " in title:
                pids.append(int(entry.name))
    return pids


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine spent not idle (``/proc/stat``, all cores)."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values[:8]) - idle) / CLK_TCK


@dataclass
class Server:
    """``uvicorn himhis.app:create_app --factory`` in a subprocess, on its own port, var dir and database."""

    database_url: str
    workers: int = 1
    port: int = field(default_factory=_free_port)
    var_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="himhis_bench_var_")))
    process: subprocess.Popen | None = None
    log: Path | None = None
    factory: str = "himhis.app:create_app"  # bench.unguarded:create_app measures the API without guards

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        return {**os.environ, "HIMHIS_DATABASE_URL": self.database_url, "HIMHIS_VAR_DIR": str(self.var_dir),
                "HIMHIS_ENVIRONMENT": "development", "HIMHIS_BASE_URL": self.base,
                "HIMHIS_OIDC_ISSUER": f"{self.base}/realms/himhis"}

    def upgrade(self) -> None:
        """``himhis db upgrade`` with the server's environment."""
        himhis = Path(sys.executable).with_name("himhis")
        subprocess.run([str(himhis), "db", "upgrade"], env=self.env(), cwd=ROOT, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=120)

    def start(self, *, timeout: float = 60.0) -> None:
        self.log = self.var_dir / "server.log"
        cmd = [sys.executable, "-m", "uvicorn", self.factory, "--factory", "--host", "127.0.0.1",
               "--port", str(self.port), "--workers", str(self.workers), "--no-access-log",
               "--log-level", "warning"]
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(cmd, env=self.env(), cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"uvicorn exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                if httpx.get(self.base + DISCOVERY, timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"uvicorn did not answer within {timeout:.0f} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:]) if self.log else ""

    def token(self, username: str = "doctor.igmc", password: str = "demo") -> str:
        """An access token from the development identity provider (password grant)."""
        r = httpx.post(self.base + TOKEN, data={"grant_type": "password", "client_id": "himhis-cli",
                                                "username": username, "password": password}, timeout=30)
        r.raise_for_status()
        return r.json()["access_token"]

    @property
    def database(self) -> str:
        return self.database_url.rsplit("/", 1)[1]

    def pids(self) -> list[int]:
        """The uvicorn process and, with several workers, its worker processes."""
        if self.process is None:
            return []
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        try:
            kids = [int(p) for p in children.read_text().split()]
        except OSError:
            kids = []
        return [self.process.pid, *kids]

    def worker_pids(self) -> list[int]:
        """The processes that serve requests (uvicorn's own with one worker, its children otherwise)."""
        pids = self.pids()
        return pids[1:] if self.workers > 1 and len(pids) > 1 else pids[:1]

    def peak_rss_mb(self) -> float:
        """The largest VmHWM (peak resident set) among the serving processes, in MB."""
        peak = 0
        for pid in self.worker_pids():
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            for line in status.splitlines():
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]))
        return peak / 1024

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)
