"""Every FHIR interaction refuses a caller without a valid access token (401, OperationOutcome, code login).

RFC 6750 §3: a refused bearer request carries ``WWW-Authenticate``; FHIR R4 http.html: errors are
OperationOutcomes. Tokens are the development provider's, or made here with its key and one claim wrong.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from ehr.service import FhirStore
from identity.devidp.keys import load_or_create_signing_key
from tests.conftest import get_token

FHIR = "application/fhir+json"
PID = "auth-pt-1"


def sign(settings, overrides: dict[str, Any] | None = None, *, key: Any = None) -> str:
    """A doctor.igmc access token shaped as the development provider makes it, with claims changed or another key."""
    signing = load_or_create_signing_key(settings.var_dir)
    now = int(time.time())
    claims = {"iss": settings.oidc_issuer, "aud": [settings.oidc_audience, "account"], "sub": str(uuid.uuid4()),
              "iat": now, "exp": now + 300, "typ": "Bearer", "azp": "himhis-cli", "preferred_username": "doctor.igmc",
              "realm_access": {"roles": ["doctor"]}, "facility": "IGMC", **(overrides or {})}
    return jwt.encode(claims, key or signing.private_key, algorithm="RS256", headers={"kid": signing.kid})


def patient(pid: str | None = None) -> dict:
    p: dict = {"resourceType": "Patient", "name": [{"family": "Chauhan", "given": ["Kamla"]}], "gender": "female",
               "identifier": [{"system": "https://himhis.hp.gov.in/fhir/sid/uhid", "value": "AUTH-1"}]}
    return p | ({"id": pid} if pid else {})


def transaction() -> dict:
    return {"resourceType": "Bundle", "type": "transaction",
            "entry": [{"fullUrl": "urn:uuid:0b1d7ac2-5b1e-4c55-9a4e-7d0c7c1f2a10", "resource": patient(),
                       "request": {"method": "POST", "url": "Patient"}}]}


# (interaction, method, path, keyword arguments for the request)
INTERACTIONS: list[tuple[str, str, str, dict]] = [
    ("read", "GET", f"/fhir/Patient/{PID}", {}),
    ("vread", "GET", f"/fhir/Patient/{PID}/_history/1", {}),
    ("create", "POST", "/fhir/Patient", {"json": patient()}),
    ("conditional create", "POST", "/fhir/Patient",
     {"json": patient(), "headers": {"If-None-Exist": "identifier=AUTH-2"}}),
    ("update", "PUT", f"/fhir/Patient/{PID}", {"json": patient(PID) | {"gender": "other"}}),
    ("update as create", "PUT", "/fhir/Patient/auth-pt-new", {"json": patient("auth-pt-new")}),
    ("conditional update", "PUT", "/fhir/Patient?identifier=AUTH-1", {"json": patient()}),
    ("delete", "DELETE", f"/fhir/Patient/{PID}", {}),
    ("conditional delete", "DELETE", "/fhir/Patient?identifier=AUTH-1", {}),
    ("search", "GET", "/fhir/Patient?family=Chauhan", {}),
    ("search by POST", "POST", "/fhir/Patient/_search", {"data": {"family": "Chauhan"}}),
    ("history system", "GET", "/fhir/_history", {}),
    ("history type", "GET", "/fhir/Patient/_history", {}),
    ("history instance", "GET", f"/fhir/Patient/{PID}/_history", {}),
    ("transaction", "POST", "/fhir", {"json": transaction()}),
    ("batch at /fhir/", "POST", "/fhir/", {"json": transaction() | {"type": "batch"}}),
    ("$everything", "GET", f"/fhir/Patient/{PID}/$everything", {}),
    ("$validate type", "POST", "/fhir/Patient/$validate", {"json": patient()}),
    ("$validate instance", "POST", f"/fhir/Patient/{PID}/$validate", {"json": patient(PID)}),
]

CREDENTIALS = ["none", "expired", "wrong issuer", "wrong audience", "bad signature", "garbage"]


def authorization(kind: str, settings) -> dict[str, str]:
    now = int(time.time())
    if kind == "none":
        return {}
    if kind == "garbage":
        return {"Authorization": "Bearer garbage"}
    token = {
        "expired": lambda: sign(settings, {"iat": now - 900, "exp": now - 600}),
        "wrong issuer": lambda: sign(settings, {"iss": "https://sso.example.in/realms/himhis"}),
        "wrong audience": lambda: sign(settings, {"aud": ["account", "himhis-portal"]}),
        # A fresh key, but the development provider's kid: only the signature check can catch it.
        "bad signature": lambda: sign(settings, key=rsa.generate_private_key(public_exponent=65537, key_size=2048)),
    }[kind]()
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def seeded(db) -> None:
    """One patient at version 1, written through the store (no token: this is not what is under test)."""
    db.run(lambda s: FhirStore(s).update("Patient", PID, patient(PID)))


def _patients(db) -> tuple[int, int, str]:
    """(Patient versions in the store, version of the seeded patient, its gender)."""
    def work(session) -> tuple[int, int, str]:
        store = FhirStore(session)
        current = store.read("Patient", PID)
        return store.history("Patient", count=1)[1], current.version_id, current.json()["gender"]

    return db.run(work, write=False)


def test_a_token_made_by_the_helper_passes_authentication(client, settings, seeded) -> None:
    """The control: with nothing wrong, the helper's token gets past authentication (what the role may then
    see is the authorisation policy's business)."""
    for token in (get_token(client, "doctor.igmc"), sign(settings)):
        r = client.get(f"/fhir/Patient/{PID}", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code != 401, r.text
    real = jwt.decode(get_token(client, "doctor.igmc"), options={"verify_signature": False})
    made = jwt.decode(sign(settings), options={"verify_signature": False})
    assert (made["iss"], made["typ"], settings.oidc_audience in made["aud"]) == (
        real["iss"], real["typ"], settings.oidc_audience in real["aud"])


@pytest.mark.parametrize("kind", CREDENTIALS)
def test_every_interaction_refuses_bad_credentials(client, db, settings, seeded, kind: str) -> None:
    headers = authorization(kind, settings)
    wrong = []
    for name, method, path, kw in INTERACTIONS:
        extra = {k: v for k, v in kw.items() if k != "headers"}
        r = client.request(method, path, **extra, headers={**kw.get("headers", {}), **headers})
        body = r.json() if r.headers.get("content-type", "").startswith(FHIR) else None
        issue = (body or {}).get("issue", [{}])[0]
        if (r.status_code != 401 or (body or {}).get("resourceType") != "OperationOutcome"
                or issue.get("code") != "login" or r.headers.get("www-authenticate") != 'Bearer realm="himhis"'):
            wrong.append(f"{name} {method} {path}: {r.status_code} {r.headers.get('www-authenticate')} {r.text[:200]}")
    assert not wrong, "\n".join(wrong)
    # Nothing the refused writes carried reached the store.
    assert _patients(db) == (1, 1, "female")


def test_the_outcome_says_what_is_wrong(client, settings) -> None:
    expected = {"none": "Authentication required: no bearer token or session", "expired": "token expired",
                "wrong issuer": "wrong issuer", "wrong audience": "wrong audience", "bad signature": "bad signature",
                "garbage": "malformed token"}
    said = {kind: client.get("/fhir/Patient", headers=authorization(kind, settings)).json()["issue"][0]["diagnostics"]
            for kind in CREDENTIALS}
    assert said == expected


def test_metadata_stays_public(client, settings) -> None:
    for kind in CREDENTIALS:
        r = client.get("/fhir/metadata", headers=authorization(kind, settings))
        assert r.status_code == 200, kind
        assert r.json()["resourceType"] == "CapabilityStatement"


def test_pages_redirect_a_browser_to_sign_in(client) -> None:
    r = client.get("/", headers={"Accept": "text/html,application/xhtml+xml"}, follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"] == "/login?next=/"
    client.cookies.set("himhis_session", "garbage")
    r = client.get("/", headers={"Accept": "text/html"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/login")


def test_pages_answer_other_clients_with_401_json(client) -> None:
    r = client.get("/", headers={"Accept": "application/json"}, follow_redirects=False)
    assert r.status_code == 401
    assert r.headers["content-type"].startswith("application/json")
    assert r.headers["www-authenticate"] == 'Bearer realm="himhis"'
    assert r.json()["error"] == "login"
