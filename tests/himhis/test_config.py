"""Configuration from HIMHIS_ environment variables, and what production refuses to start with."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from pydantic import ValidationError

from himhis.app import create_app
from himhis.config import Settings, get_settings
from himhis.db import Database, normalise_url
from identity.devidp.keys import key_path
from tests.conftest import free_port


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[pytest.MonkeyPatch]:
    """No HIMHIS_ variable from the caller's environment, no .env file, and a fresh settings cache."""
    for name in list(os.environ):
        if name.upper().startswith("HIMHIS_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    get_settings.cache_clear()
    yield monkeypatch
    get_settings.cache_clear()


def test_defaults_are_the_embedded_development_set_up(clean_env: pytest.MonkeyPatch) -> None:
    s = Settings()
    assert s.environment == "development" and not s.is_production
    assert s.database_url.startswith("sqlite:///") and s.database_url.endswith("/var/himhis.db")
    assert s.broker_url == "memory://" and s.tasks_in_process
    assert s.oidc_issuer == "http://127.0.0.1:8000/realms/himhis"
    assert s.oidc_audience == "himhis-api"
    assert s.max_request_bytes == 32 * 1024 * 1024
    assert s.default_page_size == 50


def test_himhis_variables_are_read(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    values = {
        "HIMHIS_ENVIRONMENT": "production",
        "HIMHIS_DATABASE_URL": "postgresql://himhis:secret@db.internal:5432/himhis",
        "HIMHIS_BROKER_URL": "amqp://himhis:secret@mq.internal:5672/himhis",
        "HIMHIS_OIDC_ISSUER": "https://sso.example.in/realms/himhis",
        "HIMHIS_OIDC_CLIENT_SECRET": "ward-secret",
        "HIMHIS_BASE_URL": "https://his.example.in",
        "HIMHIS_VAR_DIR": str(tmp_path / "state"),
        "HIMHIS_MAX_REQUEST_BYTES": "1048576",
        "HIMHIS_DEFAULT_PAGE_SIZE": "20",
    }
    for name, value in values.items():
        clean_env.setenv(name, value)
    s = get_settings()
    assert s is get_settings()  # read once per process
    assert s.is_production
    assert s.database_url == values["HIMHIS_DATABASE_URL"]
    assert s.broker_url == values["HIMHIS_BROKER_URL"] and not s.tasks_in_process
    assert s.oidc_issuer == values["HIMHIS_OIDC_ISSUER"] and s.oidc_client_secret == "ward-secret"
    assert s.base_url == "https://his.example.in"
    assert s.var_dir == tmp_path / "state"
    assert (s.max_request_bytes, s.default_page_size) == (1048576, 20)


def test_redis_broker_leaves_in_process_tasks(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("HIMHIS_BROKER_URL", "redis://127.0.0.1:6379/0")
    assert not Settings().tasks_in_process


def test_dotenv_file_is_read_and_the_environment_wins(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("HIMHIS_BROKER_URL=redis://127.0.0.1:6379/1\nHIMHIS_DEFAULT_PAGE_SIZE=25\n")
    s = Settings()
    assert s.broker_url == "redis://127.0.0.1:6379/1" and s.default_page_size == 25
    clean_env.setenv("HIMHIS_DEFAULT_PAGE_SIZE", "10")
    assert Settings().default_page_size == 10


@pytest.mark.parametrize(("name", "value"), [("HIMHIS_ENVIRONMENT", "staging"),
                                             ("HIMHIS_MAX_REQUEST_BYTES", "32MB")])
def test_bad_values_are_refused(clean_env: pytest.MonkeyPatch, name: str, value: str) -> None:
    clean_env.setenv(name, value)
    with pytest.raises(ValidationError, match=name.removeprefix("HIMHIS_").lower()):
        Settings()


@pytest.mark.parametrize(("url", "expected"), [
    ("postgres://himhis@db.internal/himhis", "postgresql+psycopg://himhis@db.internal/himhis"),
    ("postgresql://himhis:pw@127.0.0.1:5432/himhis", "postgresql+psycopg://himhis:pw@127.0.0.1:5432/himhis"),
    ("postgresql+psycopg://himhis@db/himhis", "postgresql+psycopg://himhis@db/himhis"),
    ("sqlite:////var/lib/himhis/himhis.db", "sqlite:////var/lib/himhis/himhis.db"),
])
def test_postgres_urls_use_psycopg(url: str, expected: str) -> None:
    assert normalise_url(url) == expected


def test_a_postgres_url_reaches_the_server(pg_url: str) -> None:
    """``postgres://`` as Heroku-style tools write it connects through psycopg 3."""
    db = Database(pg_url.replace("postgresql://", "postgres://", 1))
    try:
        assert db.engine.dialect.driver == "psycopg"
        assert db.run(lambda s: s.connection().exec_driver_sql("select 1").scalar(), write=False) == 1
        assert db.run(lambda s: s.connection().exec_driver_sql("show jit").scalar(), write=False) == "off"
    finally:
        db.dispose()


def test_production_refuses_to_start_without_its_identity_provider(clean_env: pytest.MonkeyPatch,
                                                                    tmp_path: Path) -> None:
    """Production never falls back to the development provider: with Keycloak unreachable the app does not start."""
    settings = Settings(environment="production", oidc_issuer="https://127.0.0.1:1/realms/himhis",
                        var_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'himhis.db'}")
    with pytest.raises(RuntimeError, match=r"OIDC discovery at https://127\.0\.0\.1:1/realms/himhis failed"):
        create_app(settings)
    assert not key_path(tmp_path).exists()  # no development signing key was made


def test_production_refuses_an_issuer_that_is_not_a_keycloak_realm(clean_env: pytest.MonkeyPatch,
                                                                    tmp_path: Path) -> None:
    settings = Settings(environment="production", oidc_issuer="https://sso.example.in/auth",
                        var_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'himhis.db'}")
    with pytest.raises(ValueError, match="not of the form"):
        create_app(settings)


@pytest.mark.parametrize("backend", ["sqlite"])
def test_production_trusts_its_issuer_and_serves_no_development_provider(db: Database, tmp_path: Path) -> None:
    """A development HimHIS served over HTTP stands in for Keycloak; the production app validates its tokens."""
    from fastapi.testclient import TestClient

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    url = db.engine.url.render_as_string(hide_password=False)
    dev = Settings(_env_file=None, environment="development", var_dir=tmp_path, base_url=base,
                   oidc_issuer=f"{base}/realms/himhis", database_url=url)
    server = uvicorn.Server(uvicorn.Config(create_app(dev, db=db), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started:
            assert time.monotonic() < deadline, "the stand-in identity provider did not start"
            time.sleep(0.02)
        token = httpx.post(f"{dev.oidc_issuer}/protocol/openid-connect/token",
                           data={"grant_type": "password", "client_id": "himhis-cli", "username": "doctor.igmc",
                                 "password": "demo"}).json()["access_token"]
        prod = dev.model_copy(update={"environment": "production", "var_dir": tmp_path / "prod"})
        with TestClient(create_app(prod, db=db)) as client:
            assert client.get("/realms/himhis/.well-known/openid-configuration").status_code == 404
            assert client.post("/realms/himhis/protocol/openid-connect/token",
                               data={"grant_type": "password", "client_id": "himhis-cli",
                                     "username": "doctor.igmc", "password": "demo"}).status_code == 404
            r = client.get("/fhir/Patient", headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 200, r.text
        assert not key_path(tmp_path / "prod").exists()
    finally:
        server.should_exit = True
        thread.join(timeout=10)
