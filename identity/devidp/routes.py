"""HTTP endpoints of the development provider, at Keycloak's paths under the issuer (``/realms/himhis``)."""

from __future__ import annotations

import base64
import binascii
from urllib.parse import unquote, urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from himhis.config import Settings
from himhis.errors import AuthenticationError
from identity.devidp.provider import (
    AuthorizationRequestError,
    DevIdentityProvider,
    OAuthError,
    OAuthRedirect,
)
from identity.templating import render

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}  # RFC 6749 §5.1


def _basic_credentials(request: Request) -> tuple[str | None, str | None]:
    """Client id and secret from HTTP Basic authentication, form-urlencoded inside (RFC 6749 §2.3.1)."""
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None, None
    try:
        client_id, _, secret = base64.b64decode(value, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        raise OAuthError("invalid_client", "Invalid client or Invalid client credentials", 401) from None
    return unquote(client_id), unquote(secret)


def _bearer(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def build_router(settings: Settings, *, provider: DevIdentityProvider | None = None) -> APIRouter:
    """The provider's router, mounted at the issuer's path; raises RuntimeError in production."""
    idp = provider or DevIdentityProvider(settings)
    router = APIRouter(prefix=urlsplit(idp.issuer).path.rstrip("/"), tags=["development identity provider"])

    @router.get("/.well-known/openid-configuration")
    def discovery() -> JSONResponse:
        """OpenID Provider Configuration (OpenID Connect Discovery 1.0 §4)."""
        return JSONResponse(idp.discovery())

    @router.get("/protocol/openid-connect/certs")
    def certs() -> JSONResponse:
        """The JWK Set document (RFC 7517 §5)."""
        return JSONResponse(idp.jwks())

    @router.post("/protocol/openid-connect/token")
    async def token(request: Request) -> JSONResponse:
        """Token endpoint (RFC 6749 §3.2); errors per §5.2 as Keycloak sends them."""
        form = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
        try:
            client_id, secret = _basic_credentials(request)
            body = idp.token(form, client_id=client_id, client_secret=secret)
        except OAuthError as exc:
            return JSONResponse(exc.body(), status_code=exc.status, headers=NO_STORE)
        return JSONResponse(body, headers=NO_STORE)

    @router.api_route("/protocol/openid-connect/userinfo", methods=["GET", "POST"])
    def userinfo(request: Request) -> JSONResponse:
        """UserInfo endpoint (OpenID Connect Core §5.3); bearer errors per RFC 6750 §3."""
        try:
            token = _bearer(request)
            if token is None:
                raise AuthenticationError("missing bearer token")
            return JSONResponse(idp.userinfo(token))
        except AuthenticationError as exc:
            challenge = f'Bearer realm="{idp.realm.name}", error="invalid_token", ' \
                        f'error_description="{exc.message}"'
            return JSONResponse({"error": "invalid_token", "error_description": exc.message},
                                status_code=401, headers={"WWW-Authenticate": challenge})

    auth_path = f"{router.prefix}/protocol/openid-connect/auth"

    def _login_page(fields: dict[str, str], *, error: str | None = None, username: str | None = None,
                    status: int = 200) -> HTMLResponse:
        page = render("login.html", title="Sign in to HimHIS", action=auth_path, fields=fields, error=error,
                      username=username, demo_users=idp.realm.demo_logins())
        return HTMLResponse(page, status_code=status)

    @router.api_route("/protocol/openid-connect/auth", methods=["GET", "POST"])
    async def authorize(request: Request) -> Response:
        """Authorization endpoint (OpenID Connect Core §3.1.2): sign-in form, then a code to redirect_uri."""
        params = dict(request.query_params)
        if request.method == "POST":
            params = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
        try:
            auth = idp.authorization_request(params)
        except AuthorizationRequestError as exc:
            return HTMLResponse(render("login.html", title="Sign-in error", error=str(exc)), status_code=400)
        except OAuthRedirect as redirect:
            return RedirectResponse(redirect.location, status_code=302)
        if request.method == "GET":
            return _login_page(auth.form_fields())
        location = idp.sign_in(auth, params.get("username", ""), params.get("password", ""))
        if location is None:
            return _login_page(auth.form_fields(), error="Invalid username or password.",
                               username=params.get("username"), status=401)
        return RedirectResponse(location, status_code=302)

    return router
