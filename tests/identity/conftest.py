"""Identity test fixtures: a small app from the identity routers, served for real by uvicorn on 127.0.0.1."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import uvicorn
from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse

from himhis.config import Settings
from himhis.errors import HimHISError
from identity import web
from identity.dependencies import get_principal, optional_principal
from identity.devidp import build_router
from identity.devidp.keys import load_or_create_signing_key
from identity.oidc import build_validator
from identity.principal import Principal

REALM_PATH = "/realms/himhis"
SSL_CONTEXT = httpx.create_ssl_context()  # made once: building one per client dominates these tests' time


def make_settings(var_dir: Path, port: int, **overrides: Any) -> Settings:
    base = f"http://127.0.0.1:{port}"
    values: dict[str, Any] = {"var_dir": var_dir, "base_url": base, "oidc_issuer": base + REALM_PATH,
                              "environment": "development", **overrides}
    return Settings(_env_file=None, **values)


def build_app(settings: Settings) -> FastAPI:
    """What the app factory does for identity, plus one protected route and the error model's 401s."""
    app = FastAPI()
    app.state.settings = settings
    app.state.token_validator = build_validator(settings)
    if not settings.is_production:
        app.include_router(build_router(settings))
    app.include_router(web.router)

    @app.exception_handler(HimHISError)
    def himhis_error(request: Request, exc: HimHISError) -> JSONResponse:
        return JSONResponse({"message": exc.message}, status_code=exc.status, headers=exc.headers)

    @app.get("/protected")
    def protected(principal: Principal = Depends(get_principal)) -> dict[str, Any]:
        return {**asdict(principal), "roles": sorted(principal.roles)}

    @app.get("/maybe")
    def maybe(principal: Principal | None = Depends(optional_principal)) -> dict[str, Any]:
        return {"username": principal.username if principal else None}

    return app


def free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@contextmanager
def serve(app: FastAPI, sock: socket.socket) -> Iterator[str]:
    """Run ``app`` with uvicorn in a thread on an already bound socket; yields its base URL."""
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@dataclass
class Live:
    """An identity app served over HTTP."""

    url: str
    settings: Settings
    app: FastAPI

    @property
    def issuer(self) -> str:
        return self.settings.oidc_issuer

    def client(self, **kw: Any) -> httpx.Client:
        """A browser-like client of the app, with its own cookie jar."""
        return httpx.Client(base_url=self.url, timeout=10, verify=SSL_CONTEXT, **kw)

    @cached_property
    def http(self) -> httpx.Client:
        """A client for absolute URLs."""
        return httpx.Client(timeout=10, verify=SSL_CONTEXT)

    def token(self, username: str, *, client_id: str = "himhis-cli",
              password: str = "demo") -> dict[str, Any]:
        """A password-grant token response from the development provider."""
        form = {"grant_type": "password", "client_id": client_id, "username": username, "password": password,
                "scope": "openid"}
        response = self.http.post(f"{self.issuer}/protocol/openid-connect/token", data=form)
        response.raise_for_status()
        return response.json()

    def sign(self, overrides: dict[str, Any] | None = None, *, key: Any = None, kid: str | None = None,
             drop: tuple[str, ...] = ()) -> str:
        """A doctor.igmc token as the provider makes it, with claims changed or dropped, or another key."""
        signing = load_or_create_signing_key(self.settings.var_dir)
        now = int(time.time())
        claims = {"iss": self.issuer, "aud": ["himhis-api", "account"], "sub": str(uuid.uuid4()), "iat": now,
                  "exp": now + 300, "typ": "Bearer", "azp": "himhis-cli", "preferred_username": "doctor.igmc",
                  "realm_access": {"roles": ["doctor"]}, "facility": "IGMC", **(overrides or {})}
        for name in drop:
            claims.pop(name, None)
        return jwt.encode(claims, key or signing.private_key, algorithm="RS256",
                          headers={"kid": kid or signing.kid})


def start_live(stack: ExitStack, var_root: Path, **overrides: Any) -> Live:
    """Serve a fresh identity app (its own var_dir under ``var_root``) until ``stack`` closes."""
    sock = free_socket()
    port = sock.getsockname()[1]
    settings = make_settings(var_root / f"var-{port}", port, **overrides)
    app = build_app(settings)
    return Live(stack.enter_context(serve(app, sock)), settings, app)


@pytest.fixture
def live_app(tmp_path: Path) -> Iterator[Callable[..., Live]]:
    """Factory: ``live_app(**settings_overrides)`` serves a fresh identity app; all are stopped afterwards."""
    with ExitStack() as stack:
        yield lambda **overrides: start_live(stack, tmp_path, **overrides)


@pytest.fixture
def serve_app() -> Iterator[Callable[[FastAPI], str]]:
    """Factory: ``serve_app(app)`` serves any ASGI app on 127.0.0.1 and returns its base URL."""
    with ExitStack() as stack:
        yield lambda app: stack.enter_context(serve(app, free_socket()))


@pytest.fixture(scope="module")
def idp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """The development set-up served over HTTP: provider, sign-in pages and a protected route.

    Shared by a module's tests: the provider keeps no state between requests but single-use codes.
    """
    with ExitStack() as stack:
        yield start_live(stack, tmp_path_factory.mktemp("idp"))
