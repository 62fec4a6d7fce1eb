"""Access-token validation, one code path for Keycloak and the development provider (RFC 7519 §7.2)."""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

import jwt
from keycloak import KeycloakOpenID
from keycloak.exceptions import KeycloakError

from himhis.errors import AuthenticationError
from identity.principal import ROLES, Principal

if TYPE_CHECKING:
    from himhis.config import Settings

KNOWN_ROLES = frozenset(ROLES)
ALGORITHMS = ["RS256"]
log = logging.getLogger(__name__)


class JwksSource(Protocol):
    """Where the issuer's public signing keys come from (RFC 7517 §5, JWK Set)."""

    def signing_key(self, kid: str) -> jwt.PyJWK | None: ...


def _signing_keys(jwks: dict[str, Any]) -> dict[str, jwt.PyJWK]:
    """The RS256 signature keys of a JWK Set by ``kid``; encryption keys (``use: enc``) are skipped."""
    keys = [k for k in jwks.get("keys", []) if k.get("use", "sig") == "sig" and k.get("kid")]
    try:
        return {str(k.key_id): k for k in jwt.PyJWKSet(keys) if k.key_type == "RSA"}
    except jwt.PyJWKSetError:
        return {}


class LocalJwks:
    """The development provider's key, in-process: no HTTP request to ourselves."""

    def __init__(self, jwks: dict[str, Any]) -> None:
        self._keys = _signing_keys(jwks)

    def signing_key(self, kid: str) -> jwt.PyJWK | None:
        return self._keys.get(kid)


class KeycloakJwks:
    """Keycloak's certs endpoint via python-keycloak, cached; one rate-limited refresh on an unknown kid."""

    def __init__(self, openid: KeycloakOpenID, *, max_age: float = 3600.0, min_refresh_interval: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._openid = openid
        self._max_age = max_age
        self._min_refresh_interval = min_refresh_interval
        self._clock = clock
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at: float | None = None
        self._lock = threading.Lock()
        self.fetches = 0

    def _refresh(self) -> None:
        self.fetches += 1
        try:
            self._keys = _signing_keys(self._openid.certs())
        except KeycloakError:
            if not self._keys:
                raise
            log.warning("Keycloak certs unreachable; keeping the cached signing keys", exc_info=True)
        self._fetched_at = self._clock()

    def signing_key(self, kid: str) -> jwt.PyJWK | None:
        with self._lock:
            now = self._clock()
            if self._fetched_at is None or now - self._fetched_at >= self._max_age:
                self._refresh()
            elif kid not in self._keys and now - self._fetched_at >= self._min_refresh_interval:
                self._refresh()  # the realm's keys were rotated since we last looked
            return self._keys.get(kid)


_CLAIM_ERRORS: list[tuple[type[Exception], str]] = [
    (jwt.ExpiredSignatureError, "token expired"),
    (jwt.InvalidIssuerError, "wrong issuer"),
    (jwt.InvalidAudienceError, "wrong audience"),
    (jwt.InvalidSignatureError, "bad signature"),
    (jwt.ImmatureSignatureError, "token not yet valid"),
    (jwt.InvalidAlgorithmError, "unsupported signing algorithm"),
]


class TokenValidator:
    """Checks an RS256 token's signature against the JWKS, then iss, aud, exp, nbf, iat (RFC 7519 §4.1)."""

    def __init__(self, *, issuer: str, audience: str, jwks: JwksSource, leeway: float = 10.0,
                 cache_size: int = 4096, clock: Callable[[], float] = time.time) -> None:
        self.issuer = issuer
        self.audience = audience
        self.jwks = jwks
        self.leeway = leeway
        # Tokens whose signature and claims were verified, until they expire: a ward terminal sends
        # the same token with every request, and an RS256 check costs more than the rest of a read.
        self._verified: OrderedDict[str, tuple[Principal, float]] = OrderedDict()
        self._cache_size = cache_size
        self._clock = clock
        self._lock = threading.Lock()

    def claims(self, token: str, *, audience: str | None = None,
               token_type: str = "Bearer") -> dict[str, Any]:
        """The verified claims of ``token``, or AuthenticationError naming what is wrong (RFC 7519 §7.2)."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.DecodeError:
            raise AuthenticationError("malformed token") from None
        if header.get("alg") not in ALGORITHMS:
            raise AuthenticationError("unsupported signing algorithm")
        kid = header.get("kid")
        key = self.jwks.signing_key(kid) if isinstance(kid, str) else None
        if key is None:
            raise AuthenticationError("unknown signing key")
        try:
            claims = jwt.decode(token, key, algorithms=ALGORITHMS, issuer=self.issuer,
                                audience=audience or self.audience, leeway=self.leeway,
                                options={"require": ["exp", "iat", "iss", "aud", "sub"]})
        except jwt.MissingRequiredClaimError as exc:
            raise AuthenticationError(f"malformed token: no {exc.claim} claim") from None
        except jwt.PyJWTError as exc:
            message = next((m for cls, m in _CLAIM_ERRORS if isinstance(exc, cls)), "malformed token")
            raise AuthenticationError(message) from None
        if claims.get("typ", token_type) != token_type:  # Keycloak: Bearer, Refresh, ID
            raise AuthenticationError(f"not a {token_type} token")
        return claims

    def validate(self, token: str) -> Principal:
        """The Principal of a valid access token (verified once, then remembered until it expires)."""
        now = self._clock()
        with self._lock:
            hit = self._verified.get(token)
            if hit is not None:
                if now < hit[1] + self.leeway:
                    self._verified.move_to_end(token)
                    return hit[0]
                del self._verified[token]
        claims = self.claims(token)
        principal = principal_from_claims(claims)
        if isinstance(claims.get("exp"), int | float) and not isinstance(claims.get("nbf"), int | float):
            with self._lock:
                self._verified[token] = (principal, float(claims["exp"]))
                while len(self._verified) > self._cache_size:
                    self._verified.popitem(last=False)
        return principal


def _single(value: Any) -> str | None:
    """A user attribute mapped to a claim may be multivalued in Keycloak; HimHIS uses the first value."""
    if isinstance(value, list):
        value = value[0] if value else None
    return value if isinstance(value, str) and value else None


def principal_from_claims(claims: dict[str, Any]) -> Principal:
    """Map Keycloak access-token claims to a Principal; roles are ``realm_access.roles`` ∩ HimHIS roles."""
    realm_roles = (claims.get("realm_access") or {}).get("roles") or []
    return Principal(subject=claims["sub"], username=claims.get("preferred_username"),
                     roles=frozenset(r for r in realm_roles if r in KNOWN_ROLES),
                     facility=_single(claims.get("facility")), patient_id=_single(claims.get("patient")),
                     client_id=claims.get("azp"), name=claims.get("name"))


def split_issuer(issuer: str) -> tuple[str, str]:
    """Keycloak's issuer ``https://host[/ctx]/realms/<realm>`` → (``https://host[/ctx]/``, ``<realm>``)."""
    base, sep, realm = issuer.rstrip("/").rpartition("/realms/")
    if not sep or not realm or "/" in realm or not urlsplit(base).netloc:
        raise ValueError(f"OIDC issuer {issuer!r} is not of the form https://host/realms/<realm>")
    return base + "/", realm


def keycloak_openid(settings: Settings) -> KeycloakOpenID:
    """A python-keycloak client for the ward client in the realm named by ``settings.oidc_issuer``."""
    server_url, realm = split_issuer(settings.oidc_issuer)
    return KeycloakOpenID(server_url=server_url, realm_name=realm, client_id=settings.oidc_client_id,
                          client_secret_key=settings.oidc_client_secret or None, timeout=10)


def build_validator(settings: Settings) -> TokenValidator:
    """Production: Keycloak's JWKS (issuer checked against its discovery document); development: LocalJwks."""
    if settings.is_production:
        openid = keycloak_openid(settings)
        try:
            discovered = openid.well_known()["issuer"]
        except KeycloakError as exc:
            raise RuntimeError(f"OIDC discovery at {settings.oidc_issuer} failed: {exc}") from exc
        if discovered != settings.oidc_issuer:
            raise RuntimeError(f"Keycloak reports issuer {discovered!r}, HIMHIS_OIDC_ISSUER is "
                               f"{settings.oidc_issuer!r}")
        jwks: JwksSource = KeycloakJwks(openid)
    else:
        # imported here: the development provider is never loaded in production
        from identity.devidp.keys import load_or_create_signing_key

        jwks = LocalJwks({"keys": [load_or_create_signing_key(settings.var_dir).public_jwk]})
    return TokenValidator(issuer=settings.oidc_issuer, audience=settings.oidc_audience, jwks=jwks)
