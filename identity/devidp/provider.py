"""The development OpenID provider: Keycloak-shaped tokens for the demo realm, signed with the local key."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

import jwt

from himhis.config import Settings
from himhis.errors import AuthenticationError
from identity.devidp.keys import load_or_create_signing_key
from identity.devidp.realm import Client, DevRealm, User
from identity.oidc import LocalJwks, TokenValidator

CODE_LIFESPAN = 60  # seconds; Keycloak's default "client login timeout"
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
INVALID_CLIENT = "Invalid client or Invalid client credentials"


class OAuthError(Exception):
    """An OAuth 2.0 error response (RFC 6749 §5.2), worded as Keycloak words it."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.error, self.description, self.status = error, description, status

    def body(self) -> dict[str, str]:
        return {"error": self.error, "error_description": self.description}


class OAuthRedirect(Exception):
    """An authorization error returned to the client's redirect URI (RFC 6749 §4.1.2.1)."""

    def __init__(self, location: str) -> None:
        super().__init__(location)
        self.location = location


class AuthorizationRequestError(Exception):
    """A bad authorization request that must not be redirected back to the client (RFC 6749 §4.1.2.1)."""


@dataclass(frozen=True, slots=True)
class AuthorizationRequest:
    """A checked authorization request (OpenID Connect Core §3.1.2.1) with PKCE (RFC 7636 §4.3)."""

    client: Client
    redirect_uri: str
    scope: str
    state: str | None
    nonce: str | None
    code_challenge: str | None

    def form_fields(self) -> dict[str, str]:
        """The request's parameters, to carry through the sign-in form as hidden fields."""
        fields = {"client_id": self.client.client_id, "redirect_uri": self.redirect_uri,
                  "response_type": "code", "scope": self.scope, "state": self.state, "nonce": self.nonce,
                  "code_challenge": self.code_challenge,
                  "code_challenge_method": "S256" if self.code_challenge else None}
        return {k: v for k, v in fields.items() if v is not None}

    def redirect(self, **params: str | None) -> str:
        """The client's redirect URI with response parameters added (RFC 6749 §4.1.2)."""
        query = urlencode({k: v for k, v in {**params, "state": self.state}.items() if v is not None})
        return f"{self.redirect_uri}{'&' if '?' in self.redirect_uri else '?'}{query}"


@dataclass(frozen=True, slots=True)
class _Code:
    client_id: str
    redirect_uri: str
    user_id: str
    session_id: str
    scope: str
    nonce: str | None
    code_challenge: str | None
    expires_at: float


def _s256(verifier: str) -> str:
    """PKCE S256 code challenge of a verifier (RFC 7636 §4.2)."""
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


def _granted_scope(requested: str | None) -> str:
    """Keycloak grants the requested ``openid`` plus the default client scopes ``profile`` and ``email``."""
    return " ".join((["openid"] if "openid" in (requested or "").split() else []) + ["profile", "email"])


class DevIdentityProvider:
    """Keycloak-compatible OpenID provider for development; refuses to exist in production."""

    def __init__(self, settings: Settings, *, realm: DevRealm | None = None,
                 access_token_lifespan: int | None = None) -> None:
        if settings.is_production:
            raise RuntimeError("The development identity provider is disabled when "
                               "HIMHIS_ENVIRONMENT=production; point HIMHIS_OIDC_ISSUER at Keycloak "
                               "(deploy/keycloak/README.md)")
        self.settings = settings
        self.issuer = settings.oidc_issuer
        self.realm = realm or DevRealm.load()
        self.key = load_or_create_signing_key(settings.var_dir)
        self.access_token_lifespan = access_token_lifespan or self.realm.access_token_lifespan
        self.refresh_token_lifespan = self.realm.refresh_token_lifespan
        self.validator = TokenValidator(issuer=self.issuer, audience=settings.oidc_audience,
                                        jwks=LocalJwks(self.jwks()))
        self._codes: dict[str, _Code] = {}
        self._lock = threading.Lock()

    def endpoint(self, name: str) -> str:
        return f"{self.issuer}/protocol/openid-connect/{name}"

    def discovery(self) -> dict[str, Any]:
        """Provider metadata (OpenID Connect Discovery 1.0 §3), with Keycloak's endpoint paths."""
        return {
            "issuer": self.issuer,
            "authorization_endpoint": self.endpoint("auth"),
            "token_endpoint": self.endpoint("token"),
            "userinfo_endpoint": self.endpoint("userinfo"),
            "jwks_uri": self.endpoint("certs"),
            "grant_types_supported": ["authorization_code", "refresh_token", "password",
                                      "client_credentials"],
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "code_challenge_methods_supported": ["S256"],
            "scopes_supported": ["openid", "profile", "email"],
            "claims_supported": ["iss", "sub", "aud", "exp", "iat", "auth_time", "azp", "name", "given_name",
                                 "family_name", "preferred_username", "email", "email_verified",
                                 "realm_access", "facility", "patient"],
            "authorization_response_iss_parameter_supported": True,
        }

    def jwks(self) -> dict[str, Any]:
        """The public signing key as a JWK Set (RFC 7517 §5)."""
        return {"keys": [self.key.public_jwk]}

    def _sign(self, claims: dict[str, Any]) -> str:
        return jwt.encode(claims, self.key.private_key, algorithm="RS256", headers={"kid": self.key.kid})

    # -- clients -------------------------------------------------------------------------------------------

    def client(self, client_id: str | None, secret: str | None = None) -> Client:
        """Identify and authenticate the client (RFC 6749 §2.3.1); an empty set secret is not checked."""
        client = self.realm.clients.get(client_id or "")
        if client is None:
            raise OAuthError("invalid_client", INVALID_CLIENT, 401)
        expected = getattr(self.settings, client.secret_setting) if client.secret_setting else ""
        if expected and not hmac.compare_digest((secret or "").encode(), expected.encode()):
            raise OAuthError("invalid_client", INVALID_CLIENT, 401)
        return client

    def redirect_allowed(self, client: Client, redirect_uri: str) -> bool:
        """The client's redirect URIs, relative to base_url; loopback ones on any port (RFC 8252 §7.3)."""
        target, base = urlsplit(redirect_uri), urlsplit(self.settings.base_url)
        if target.fragment or target.scheme not in ("http", "https"):
            return False
        if (target.scheme, target.netloc) != (base.scheme, base.netloc) and not (
                target.scheme == "http" and target.hostname in LOOPBACK_HOSTS):
            return False
        prefix = base.path.rstrip("/")
        return any(target.path.startswith(prefix + p[:-1]) if p.endswith("*") else target.path == prefix + p
                   for p in client.redirect_uris)

    # -- grants (RFC 6749 §4, §6) ---------------------------------------------------------------------------

    def token(self, form: Mapping[str, str], *, client_id: str | None = None,
              client_secret: str | None = None) -> dict[str, Any]:
        """The token endpoint (RFC 6749 §3.2): credentials from HTTP Basic or the form, then the grant."""
        client = self.client(client_id or form.get("client_id"), client_secret or form.get("client_secret"))
        grant_type = form.get("grant_type")
        if not grant_type:
            raise OAuthError("invalid_request", "Missing form parameter: grant_type")
        if grant_type == "password":
            return self.password_grant(client, form.get("username", ""), form.get("password", ""),
                                       scope=form.get("scope"))
        if grant_type == "client_credentials":
            return self.client_credentials_grant(client, scope=form.get("scope"))
        if grant_type == "refresh_token":
            return self.refresh_token_grant(client, form.get("refresh_token", ""))
        if grant_type == "authorization_code":
            return self.authorization_code_grant(client, form.get("code", ""), form.get("redirect_uri", ""),
                                                 form.get("code_verifier"))
        raise OAuthError("unsupported_grant_type", "Unsupported grant_type")

    def password_grant(self, client: Client, username: str, password: str, *,
                       scope: str | None = None) -> dict[str, Any]:
        """Resource owner password credentials grant (RFC 6749 §4.3)."""
        if not client.direct_access_grants:
            raise OAuthError("unauthorized_client", "Client not allowed for direct access grants")
        if not username:
            raise OAuthError("invalid_request", "Missing parameter: username")
        user = self.realm.user(username)
        if user is None or not user.check_password(password):
            raise OAuthError("invalid_grant", "Invalid user credentials", 401)
        return self._tokens(user, client, _granted_scope(scope), session_id=str(uuid.uuid4()))

    def client_credentials_grant(self, client: Client, *, scope: str | None = None) -> dict[str, Any]:
        """Client credentials grant for a confidential client's service account (RFC 6749 §4.4)."""
        user = self.realm.service_account(client.client_id)
        if client.public or not client.service_accounts or user is None:
            raise OAuthError("unauthorized_client", "Client not enabled to retrieve service account")
        return self._tokens(user, client, _granted_scope(scope), session_id=None)

    def refresh_token_grant(self, client: Client, refresh_token: str) -> dict[str, Any]:
        """Refreshing an access token (RFC 6749 §6); roles and attributes are read afresh."""
        try:
            claims = self.validator.claims(refresh_token, audience=self.issuer, token_type="Refresh")
        except AuthenticationError:
            raise OAuthError("invalid_grant", "Invalid refresh token") from None
        if claims.get("azp") != client.client_id:
            raise OAuthError("invalid_grant",
                             "Invalid refresh token. Token client and authorized client don't match")
        user = self.realm.user_by_id(claims["sub"])
        if user is None or not user.enabled:
            raise OAuthError("invalid_grant", "Invalid refresh token")
        return self._tokens(user, client, claims.get("scope", ""), session_id=claims.get("sid"))

    def authorization_code_grant(self, client: Client, code: str, redirect_uri: str,
                                 code_verifier: str | None) -> dict[str, Any]:
        """Authorization code grant (RFC 6749 §4.1.3), PKCE verified (RFC 7636 §4.6); codes are single-use."""
        with self._lock:
            grant = self._codes.pop(code, None)
        if grant is None or grant.expires_at < time.time() or grant.client_id != client.client_id:
            raise OAuthError("invalid_grant", "Code not valid")
        if grant.redirect_uri != redirect_uri:
            raise OAuthError("invalid_grant", "Incorrect redirect_uri")
        if grant.code_challenge is not None:
            if not code_verifier:
                raise OAuthError("invalid_grant", "PKCE code verifier not specified")
            if not hmac.compare_digest(_s256(code_verifier), grant.code_challenge):
                raise OAuthError("invalid_grant", "PKCE verification failed: Invalid code verifier")
        user = self.realm.user_by_id(grant.user_id)
        if user is None or not user.enabled:
            raise OAuthError("invalid_grant", "Code not valid")
        return self._tokens(user, client, grant.scope, session_id=grant.session_id, nonce=grant.nonce)

    # -- authorization endpoint (OpenID Connect Core §3.1.2) ---------------------------------------------

    def authorization_request(self, params: Mapping[str, str]) -> AuthorizationRequest:
        """Check an authorization request; errors the client may see are returned to its redirect URI."""
        client = self.realm.clients.get(params.get("client_id", ""))
        if client is None or not client.standard_flow:
            raise AuthorizationRequestError("Client not found or not enabled for the standard flow.")
        redirect_uri = params.get("redirect_uri", "")
        if not self.redirect_allowed(client, redirect_uri):
            raise AuthorizationRequestError("Invalid parameter: redirect_uri")
        challenge, method = params.get("code_challenge") or None, params.get("code_challenge_method") or None
        request = AuthorizationRequest(client, redirect_uri, params.get("scope") or "openid",
                                       params.get("state") or None, params.get("nonce") or None, challenge)
        if params.get("response_type") != "code":
            raise OAuthRedirect(request.redirect(error="unsupported_response_type",
                                                 error_description="Unsupported response_type"))
        if (client.pkce_method and not challenge) or (challenge and method != "S256"):
            raise OAuthRedirect(request.redirect(
                error="invalid_request", error_description="Missing or unsupported code_challenge_method"))
        return request

    def sign_in(self, request: AuthorizationRequest, username: str, password: str) -> str | None:
        """Authenticate the user for an authorization request; the redirect carrying a fresh code, or None."""
        user = self.realm.user(username)
        if user is None or not user.check_password(password):
            return None
        code, session_id = secrets.token_urlsafe(32), str(uuid.uuid4())
        with self._lock:
            now = time.time()
            self._codes = {k: v for k, v in self._codes.items() if v.expires_at >= now}
            self._codes[code] = _Code(request.client.client_id, request.redirect_uri, user.id, session_id,
                                      _granted_scope(request.scope), request.nonce, request.code_challenge,
                                      now + CODE_LIFESPAN)
        return request.redirect(code=code, session_state=session_id, iss=self.issuer)

    # -- tokens ---------------------------------------------------------------------------------------------

    def _identity_claims(self, user: User) -> dict[str, Any]:
        claims = {"name": user.name, "given_name": user.first_name, "family_name": user.last_name,
                  "preferred_username": user.username, "email": user.email,
                  "email_verified": True if user.email else None,
                  "facility": user.facility, "patient": user.patient}
        return {k: v for k, v in claims.items() if v is not None}

    def _tokens(self, user: User, client: Client, scope: str, *, session_id: str | None,
                nonce: str | None = None) -> dict[str, Any]:
        """A Keycloak-shaped token response (RFC 6749 §5.1; ID token per OpenID Connect Core §2)."""
        now = int(time.time())
        common = {"iat": now, "iss": self.issuer, "sub": user.id, "azp": client.client_id}
        if session_id:
            common["sid"] = session_id
        audience = list(dict.fromkeys([self.settings.oidc_audience, "account"]))
        access_claims = {**common, "exp": now + self.access_token_lifespan, "jti": str(uuid.uuid4()),
                         "aud": audience, "typ": "Bearer", "acr": "1",
                         "realm_access": {"roles": list(user.roles)}, "scope": scope,
                         **self._identity_claims(user)}
        if user.service_account_client:
            access_claims["client_id"] = user.service_account_client
        access_token = self._sign(access_claims)
        response: dict[str, Any] = {"access_token": access_token, "expires_in": self.access_token_lifespan,
                                    "refresh_expires_in": 0, "token_type": "Bearer", "not-before-policy": 0,
                                    "scope": scope}
        if session_id:
            response["refresh_token"] = self._sign({
                **common, "exp": now + self.refresh_token_lifespan, "jti": str(uuid.uuid4()),
                "aud": self.issuer, "typ": "Refresh", "scope": scope})
            response["refresh_expires_in"] = self.refresh_token_lifespan
            response["session_state"] = session_id
        if "openid" in scope.split():
            digest = hashlib.sha256(access_token.encode()).digest()
            id_claims = {**common, "exp": now + self.access_token_lifespan, "jti": str(uuid.uuid4()),
                         "aud": client.client_id, "typ": "ID", "acr": "1",
                         "at_hash": base64.urlsafe_b64encode(digest[:16]).rstrip(b"=").decode(),
                         **self._identity_claims(user)}
            if nonce:
                id_claims["nonce"] = nonce
            response["id_token"] = self._sign(id_claims)
        return response

    def userinfo(self, access_token: str) -> dict[str, Any]:
        """Claims about the signed-in user (OpenID Connect Core §5.3.2); the token checked as everywhere."""
        claims = self.validator.claims(access_token)
        user = self.realm.user_by_id(claims["sub"])
        if user is None or not user.enabled:
            raise AuthenticationError("unknown user")
        return {"sub": user.id, **self._identity_claims(user)}
