"""ABHA verification against a contract-based fake of the ABDM gateway, served over HTTP by uvicorn."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn
from fastapi import FastAPI, Header, Request
from fastapi.responses import JSONResponse
from fastapi.testclient import TestClient

from his.registration.abdm import EXISTS_PATH, AbdmClient, GatewayUnavailable
from tests.conftest import free_port, get_token
from tests.his.conftest import registration

KNOWN = {"91-1234-5678-9012"}
TOKEN = "gateway-session-token"


def fake_gateway() -> FastAPI:
    """``POST /v1/search/existsByHealthId`` as ABDM documents it: a bearer session token, a JSON body
    ``{"healthId": ...}``, the answer ``{"status": true|false}``; ``99-…`` numbers make it fail."""
    app = FastAPI()

    @app.post(EXISTS_PATH)
    async def exists(request: Request, authorization: str = Header(default="")) -> JSONResponse:
        if authorization != f"Bearer {TOKEN}":
            return JSONResponse({"code": "HIS-401", "message": "Unauthorized"}, status_code=401)
        body = await request.json()
        health_id = body.get("healthId") if isinstance(body, dict) else None
        if not isinstance(health_id, str):
            return JSONResponse({"code": "HIS-400", "message": "healthId is required"}, status_code=400)
        if health_id.startswith("99-"):
            return JSONResponse({"code": "HIS-500", "message": "internal error"}, status_code=500)
        return JSONResponse({"status": health_id in KNOWN})

    return app


def serve(app: FastAPI) -> Iterator[str]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("fake gateway did not start")
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def gateway() -> Iterator[str]:
    yield from serve(fake_gateway())


def test_client_follows_the_contract(gateway):
    client = AbdmClient(gateway, TOKEN)
    assert client.exists("91-1234-5678-9012") is True
    assert client.exists("91-0000-0000-0000") is False
    with pytest.raises(GatewayUnavailable, match="HTTP 500"):
        client.exists("99-1234-5678-9012")
    with pytest.raises(GatewayUnavailable, match="HTTP 401"):
        AbdmClient(gateway, "wrong").exists("91-1234-5678-9012")
    with pytest.raises(GatewayUnavailable, match="did not answer"):
        AbdmClient(f"http://127.0.0.1:{free_port()}", TOKEN, timeout=2).exists("91-1234-5678-9012")


@pytest.fixture
def verifying(settings, db, gateway, facilities):
    """The app with ``HIMHIS_ABDM_URL`` set to the fake gateway, and a nurse's headers."""
    from himhis.app import create_app

    app = create_app(settings.model_copy(update={"abdm_url": gateway, "abdm_token": TOKEN}), db=db)
    with TestClient(app) as c:
        yield c, {"Authorization": f"Bearer {get_token(c, 'nurse.igmc')}"}


def test_registration_checks_the_abha_number_with_the_gateway(verifying):
    client, headers = verifying
    r = client.post("/api/registration", json={**registration(abha="91-0000-0000-0000"), "register_anyway": True},
                    headers=headers)
    assert r.status_code == 400 and "does not know this ABHA number" in r.json()["fields"]["abha"]
    r = client.post("/api/registration", json={**registration(abha="99-1234-5678-9012"), "register_anyway": True},
                    headers=headers)
    assert r.status_code == 400 and "could not be verified" in r.json()["fields"]["abha"]
    r = client.post("/api/registration", json={**registration(abha="91123456789012"), "register_anyway": True},
                    headers=headers)
    assert r.status_code == 201, r.text


def test_without_a_gateway_the_format_alone_is_checked(client, register):
    assert register(registration(abha="91-0000-0000-0000")).status_code == 201
