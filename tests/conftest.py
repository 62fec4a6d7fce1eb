"""Shared fixtures: the real databases (SQLite and PostgreSQL), the app, and tokens from the dev provider.

The schema is built by ``alembic upgrade head`` once per backend; each test starts from empty
tables. PostgreSQL tests run against the server on 127.0.0.1:5432 (``HIMHIS_TEST_POSTGRES_URL``);
they skip when it is absent, except under CI=true where its absence is a failure.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from himhis.config import ROOT, Settings
from himhis.db import Database
from himhis.migrate import upgrade
from himhis.models import Base

PG_ADMIN_URL = os.environ.get("HIMHIS_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
IN_CI = os.environ.get("CI", "").lower() == "true"
SHARED = ROOT.parent / "shared"
CORPORA = SHARED / "corpora"


def _pg_available() -> str | None:
    try:
        import psycopg

        with psycopg.connect(PG_ADMIN_URL, connect_timeout=3):
            return None
    except Exception as exc:
        return f"PostgreSQL is not reachable at {PG_ADMIN_URL}: {exc}"


def require_corpora() -> Path:
    """The external test corpora, or skip (a fresh clone has no ../shared)."""
    if not CORPORA.is_dir():
        if IN_CI:
            pytest.fail(f"CI=true but the test corpora are missing at {CORPORA}")
        pytest.skip(f"test corpora not present at {CORPORA} (they live beside the repository in ../shared)")
    return CORPORA


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, dropped at the end."""
    reason = _pg_available()
    if reason:
        if IN_CI:
            pytest.fail(f"CI=true requires PostgreSQL: {reason}")
        pytest.skip(reason)
    import psycopg

    name = f"himhis_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    yield f"{base}/{name}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('db') / 'himhis-test.db'}"


_migrated: set[str] = set()


def _database(url: str) -> Database:
    if url not in _migrated:
        upgrade(url)
        _migrated.add(url)
    return Database(url)


def _empty(db: Database) -> None:
    from audit.testing import triggers_disabled  # the audit tables refuse DELETE and TRUNCATE otherwise

    with db.engine.begin() as conn, triggers_disabled(conn):
        tables = list(reversed(Base.metadata.sorted_tables))
        if db.dialect == "postgresql":
            conn.execute(text("TRUNCATE " + ", ".join(t.name for t in tables) + " RESTART IDENTITY CASCADE"))
        else:
            for t in tables:
                conn.execute(t.delete())


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request) -> str:
    return request.param


@pytest.fixture
def db(request, backend, tmp_path_factory) -> Iterator[Database]:
    """An empty, migrated database on the backend under test."""
    url = request.getfixturevalue("pg_url" if backend == "postgres" else "sqlite_url")
    database = _database(url)
    _empty(database)
    yield database
    database.dispose()


@pytest.fixture(scope="session")
def var_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("var")


@pytest.fixture
def settings(db, var_dir) -> Settings:
    return Settings(database_url=str(db.engine.url.render_as_string(hide_password=False)), var_dir=var_dir,
                    environment="development")


@pytest.fixture
def app(settings, db):
    from himhis.app import create_app

    return create_app(settings, db=db)


@pytest.fixture
def client(app) -> Iterator[httpx.Client]:
    from fastapi.testclient import TestClient

    with TestClient(app) as c:
        yield c


def get_token(client, username: str, password: str = "demo") -> str:
    r = client.post("/realms/himhis/protocol/openid-connect/token",
                    data={"grant_type": "password", "client_id": "himhis-cli", "username": username,
                          "password": password})
    assert r.status_code == 200, r.text
    return r.json()["access_token"]


@pytest.fixture
def as_user(client):
    """``as_user("doctor.igmc")`` gives a client whose requests carry that user's bearer token."""
    cache: dict[str, str] = {}

    def make(username: str = "doctor.igmc"):
        if username not in cache:
            cache[username] = get_token(client, username)
        client.headers["Authorization"] = f"Bearer {cache[username]}"
        return client

    return make


def mint_token(settings: Settings, *, roles: tuple[str, ...], username: str = "test.steward",
               facility: str | None = None, patient: str | None = None) -> str:
    """A real token from the development provider for a user who is not in the demo realm."""
    from identity.devidp.provider import DevIdentityProvider
    from identity.devidp.realm import DevRealm, User, hash_password

    realm = DevRealm.load()
    realm.users[username] = User(id=str(uuid.uuid5(uuid.NAMESPACE_URL, username)), username=username,
                                 roles=roles, first_name="Test", last_name="Steward", facility=facility,
                                 patient=patient, credential=hash_password("pw", iterations=1000))
    idp = DevIdentityProvider(settings, realm=realm)
    return idp.password_grant(idp.client("himhis-cli"), username, "pw")["access_token"]


def steward_headers(client, settings: Settings, *, roles: tuple[str, ...] = ("doctor", "admin")) -> dict:
    """Headers for a doctor-and-admin who has opened break-glass access to every patient.

    A doctor sees only their facility's patients; store tests work across the whole record, so they
    open break-glass access, as a real user would in an emergency, through the real endpoint.
    """
    headers = {"Authorization": f"Bearer {mint_token(settings, roles=roles)}"}
    r = client.post("/break-glass", json={"reason": "store tests work across every facility", "minutes": 240},
                    headers=headers)
    assert r.status_code == 201, r.text
    return headers


@pytest.fixture
def fhir(client, settings):
    """A client for store tests that are not about authorisation (clinical and infrastructure alike)."""
    client.headers.update(steward_headers(client, settings))
    return client


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def live_server(app) -> Iterator[str]:
    """The app served over real HTTP by uvicorn in a thread, for concurrency tests."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("test server did not start")
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)
