"""Development identity provider: Keycloak-compatible OpenID endpoints under ``/realms/himhis``.

Embedded default only; it raises RuntimeError when ``HIMHIS_ENVIRONMENT=production``.
"""

from identity.devidp.provider import DevIdentityProvider, OAuthError
from identity.devidp.routes import build_router

__all__ = ["DevIdentityProvider", "OAuthError", "build_router"]
