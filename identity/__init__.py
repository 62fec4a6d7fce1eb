"""Authentication: OIDC bearer tokens checked against the issuer's JWKS (Keycloak or the dev provider)."""
