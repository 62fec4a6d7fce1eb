"""Ward UI sign-in: a session cookie holding the access token; Keycloak's login page in production."""

from __future__ import annotations

import base64
import hmac
import json
import logging
import secrets
from typing import Annotated, Any
from urllib.parse import quote, urlsplit

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from keycloak.exceptions import KeycloakError
from keycloak.pkce_utils import generate_code_challenge, generate_code_verifier

from audit import requests
from audit.service import AuditEntry, audit_read
from himhis.config import Settings, get_settings
from himhis.errors import AuthenticationError, NotFoundError
from identity.dependencies import REFRESH_COOKIE, SESSION_COOKIE, optional_principal
from identity.devidp.provider import DevIdentityProvider, OAuthError
from identity.oidc import keycloak_openid
from identity.templating import render

log = logging.getLogger(__name__)

OAUTH_COOKIE = "himhis_oauth"  # state, PKCE verifier and return path between /login and /auth/callback
CALLBACK_PATH = "/auth/callback"

router = APIRouter(tags=["sign-in"])


def app_settings(request: Request) -> Settings:
    """The app's Settings (``app.state.settings``, set by the app factory), else the environment's."""
    return getattr(request.app.state, "settings", None) or get_settings()


SettingsDep = Annotated[Settings, Depends(app_settings)]


class DevSignIn:
    """Password sign-in through the development provider's token code, in-process."""

    def __init__(self, settings: Settings) -> None:
        self.provider = DevIdentityProvider(settings)
        self.client = self.provider.realm.clients[settings.oidc_client_id]

    def password(self, username: str, password: str) -> dict[str, Any] | None:
        try:
            return self.provider.password_grant(self.client, username, password, scope="openid")
        except OAuthError:
            return None

    def refresh(self, refresh_token: str) -> dict[str, Any] | None:
        try:
            return self.provider.refresh_token_grant(self.client, refresh_token)
        except OAuthError:
            return None

    def logout(self, refresh_token: str) -> None:
        """Tokens of the development provider are stateless; clearing the cookies is the whole logout."""


class KeycloakSignIn:
    """Authorization code flow with PKCE against Keycloak through python-keycloak (OIDC Core §3.1)."""

    def __init__(self, settings: Settings) -> None:
        self.openid = keycloak_openid(settings)

    def authorization_url(self, redirect_uri: str, state: str, code_challenge: str) -> str:
        # python-keycloak puts redirect_uri into the query as given, so it is percent-encoded here
        return self.openid.auth_url(redirect_uri=quote(redirect_uri, safe=""), scope="openid", state=state,
                                    code_challenge=code_challenge, code_challenge_method="S256")

    def exchange(self, code: str, redirect_uri: str, code_verifier: str) -> dict[str, Any]:
        return self.openid.token(grant_type="authorization_code", code=code, redirect_uri=redirect_uri,
                                 code_verifier=code_verifier)

    def refresh(self, refresh_token: str) -> dict[str, Any] | None:
        try:
            return self.openid.refresh_token(refresh_token)
        except KeycloakError:
            return None

    def logout(self, refresh_token: str) -> None:
        """End the Keycloak session too (back-channel), so the next sign-in asks for the password."""
        try:
            self.openid.logout(refresh_token)
        except KeycloakError:
            log.warning("Keycloak logout failed; the local session is cleared anyway", exc_info=True)


def _backend(request: Request, settings: Settings) -> DevSignIn | KeycloakSignIn:
    backend = getattr(request.app.state, "identity_sign_in", None)
    if backend is None:
        backend = KeycloakSignIn(settings) if settings.is_production else DevSignIn(settings)
        request.app.state.identity_sign_in = backend
    return backend


def safe_next(value: str | None) -> str:
    """A local path to return to after sign-in; anything else (another host, ``//x``, ``/\\x``) is ``/``."""
    if not value or not value.startswith("/") or value.startswith(("//", "/\\")):
        return "/"
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or any(c in value for c in "\\\r\n\t"):
        return "/"
    return value


def _pending_sign_in(request: Request) -> dict[str, str] | None:
    """The state, PKCE verifier and return path that GET /login left in the ``himhis_oauth`` cookie."""
    try:
        stored = json.loads(base64.urlsafe_b64decode(request.cookies.get(OAUTH_COOKIE, "")))
    except ValueError:
        return None
    keys = ("state", "verifier", "next")
    ok = isinstance(stored, dict) and all(isinstance(stored.get(k), str) for k in keys)
    return {k: stored[k] for k in keys} if ok else None


def _callback_url(settings: Settings) -> str:
    return settings.base_url.rstrip("/") + CALLBACK_PATH


def _signed_in(response: Response, tokens: dict[str, Any], settings: Settings) -> Response:
    """Keep the access token (and refresh token) in HttpOnly, SameSite=Lax cookies; Secure in production."""
    cookie = {"httponly": True, "samesite": "lax", "secure": settings.is_production, "path": "/"}
    response.set_cookie(SESSION_COOKIE, tokens["access_token"], max_age=int(tokens["expires_in"]), **cookie)
    if tokens.get("refresh_token"):
        response.set_cookie(REFRESH_COOKIE, tokens["refresh_token"],
                            max_age=int(tokens.get("refresh_expires_in") or 1800), **cookie)
    return response


def _audit(request: Request, entry: AuditEntry) -> None:
    """Record a sign-in event where the app keeps an audit log (the full app always does)."""
    db = getattr(request.app.state, "db", None)
    if db is not None:
        audit_read(db, entry)


def _audit_sign_in(request: Request, tokens: dict[str, Any] | None, *, failure: str | None = None,
                   username: str | None = None) -> None:
    """A login, successful (the new session's user) or not (what was tried, and why it failed)."""
    if tokens is not None:
        validator = getattr(request.app.state, "token_validator", None)
        try:
            principal = validator.validate(tokens["access_token"]) if validator is not None else None
        except AuthenticationError:  # signed in at the provider, but the token is not one this API takes
            principal = None
        _audit(request, requests.entry(request, principal, "login"))
        return
    status, _, message = (failure or "401 sign-in failed").partition(" ")
    entry = requests.entry(request, None, "login").failed(int(status), message)
    if username:
        entry.actor_username = username
    _audit(request, entry)


def _page(backend: DevSignIn, target: str, *, error: str | None = None,
          username: str | None = None, status: int = 200) -> HTMLResponse:
    page = render("login.html", title="Sign in to HimHIS", action="/login", fields={"next": target},
                  error=error, username=username, demo_users=backend.provider.realm.demo_logins())
    return HTMLResponse(page, status_code=status)


def _error_page(message: str, target: str, status: int) -> HTMLResponse:
    retry = f"/login?next={quote(target, safe='/')}"
    page = render("login.html", title="Sign-in failed", error=message, retry_url=retry)
    return HTMLResponse(page, status_code=status)


@router.get("/login")
def login_page(request: Request, settings: SettingsDep,
               next_: Annotated[str | None, Query(alias="next")] = None) -> Response:
    """Renew the session from the refresh cookie (RFC 6749 §6); else the form (development) or Keycloak."""
    target, backend = safe_next(next_), _backend(request, settings)
    refresh_token = request.cookies.get(REFRESH_COOKIE)
    if refresh_token and (tokens := backend.refresh(refresh_token)):
        _audit_sign_in(request, tokens)  # the session renewed without a password is a sign-in too
        return _signed_in(RedirectResponse(target, status_code=303), tokens, settings)
    response: Response
    if isinstance(backend, DevSignIn):
        response = _page(backend, target)
    else:
        state, verifier = secrets.token_urlsafe(24), generate_code_verifier(64)
        challenge, _ = generate_code_challenge(verifier)
        response = RedirectResponse(backend.authorization_url(_callback_url(settings), state, challenge),
                                    status_code=302)
        payload = json.dumps({"state": state, "verifier": verifier, "next": target}).encode()
        response.set_cookie(OAUTH_COOKIE, base64.urlsafe_b64encode(payload).decode(), max_age=600,
                            path=CALLBACK_PATH, httponly=True, samesite="lax", secure=True)
    if refresh_token:  # it could not renew the session: drop it
        response.delete_cookie(REFRESH_COOKIE, path="/", httponly=True, samesite="lax",
                               secure=settings.is_production)
    return response


@router.post("/login")
def login_submit(request: Request, settings: SettingsDep, username: Annotated[str, Form()] = "",
                 password: Annotated[str, Form()] = "",
                 next_: Annotated[str | None, Form(alias="next")] = None) -> Response:
    """Development sign-in: a demo user's password, checked by the token endpoint's code (RFC 6749 §4.3)."""
    target, backend = safe_next(next_), _backend(request, settings)
    if not isinstance(backend, DevSignIn):
        raise NotFoundError("Password sign-in is done at Keycloak; open GET /login")
    tokens = backend.password(username, password)
    if tokens is None:
        _audit_sign_in(request, None, failure="401 Invalid username or password", username=username)
        return _page(backend, target, error="Invalid username or password.", username=username,
                     status=401)
    _audit_sign_in(request, tokens)
    return _signed_in(RedirectResponse(target, status_code=303), tokens, settings)


@router.get(CALLBACK_PATH)
def auth_callback(request: Request, settings: SettingsDep, code: str | None = None, state: str | None = None,
                  error: str | None = None, error_description: str | None = None) -> Response:
    """Redirection endpoint (RFC 6749 §3.1.2): check ``state``, exchange the code with its PKCE verifier."""
    backend = _backend(request, settings)
    if not isinstance(backend, KeycloakSignIn):
        raise NotFoundError("The authorization-code callback is used with Keycloak only")
    stored = _pending_sign_in(request)
    target = safe_next(stored["next"]) if stored else "/"
    if error:
        response = _error_page(f"Sign-in was not completed: {error_description or error}", target, 401)
        _audit_sign_in(request, None, failure=f"401 {error_description or error}")
    elif not (stored and code and state and hmac.compare_digest(state.encode(), stored["state"].encode())):
        response = _error_page("The sign-in request expired or did not match; please sign in again.",
                               target, 400)
        _audit_sign_in(request, None, failure="400 the sign-in state did not match")
    else:
        try:
            tokens = backend.exchange(code, _callback_url(settings), stored["verifier"])
        except KeycloakError as exc:
            log.warning("authorization code exchange failed: %s", exc)
            response = _error_page("Keycloak did not accept the sign-in; please sign in again.", target, 401)
            _audit_sign_in(request, None, failure="401 Keycloak refused the authorization code")
        else:
            _audit_sign_in(request, tokens)
            response = _signed_in(RedirectResponse(target, status_code=303), tokens, settings)
    response.delete_cookie(OAUTH_COOKIE, path=CALLBACK_PATH, httponly=True, samesite="lax", secure=True)
    return response


@router.post("/logout")
def logout(request: Request, settings: SettingsDep) -> RedirectResponse:
    """Clear the session cookies (and end the Keycloak session), then back to /login."""
    principal = optional_principal(request)
    if refresh_token := request.cookies.get(REFRESH_COOKIE):
        _backend(request, settings).logout(refresh_token)
    if principal is not None:
        _audit(request, requests.entry(request, principal, "logout"))
    response = RedirectResponse("/login", status_code=303)
    for name in (SESSION_COOKIE, REFRESH_COOKIE):
        response.delete_cookie(name, path="/", httponly=True, samesite="lax", secure=settings.is_production)
    return response
