"""FastAPI dependencies giving routes the caller's Principal, from a bearer token or the session cookie."""

from __future__ import annotations

from fastapi import Request

from himhis.errors import AuthenticationError
from identity.oidc import TokenValidator
from identity.principal import Principal

SESSION_COOKIE = "himhis_session"  # the access token, for server-rendered pages
REFRESH_COOKIE = "himhis_refresh"  # the refresh token, used only by /login to renew the session


def credentials(request: Request) -> str | None:
    """The access token: ``Authorization: Bearer`` (RFC 6750 §2.1) first, else the session cookie."""
    header = request.headers.get("authorization")
    if header is not None:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthenticationError("unsupported authorization scheme; use 'Authorization: Bearer <token>'")
        return token.strip()
    return request.cookies.get(SESSION_COOKIE) or None


def get_principal(request: Request) -> Principal:
    """The authenticated caller, or AuthenticationError (401) when the token is missing or invalid."""
    token = credentials(request)
    if token is None:
        raise AuthenticationError("Authentication required: no bearer token or session")
    validator: TokenValidator = request.app.state.token_validator
    principal = validator.validate(token)
    request.state.principal = principal
    return principal


def optional_principal(request: Request) -> Principal | None:
    """The authenticated caller, or None when there are no valid credentials."""
    try:
        return get_principal(request)
    except AuthenticationError:
        return None
