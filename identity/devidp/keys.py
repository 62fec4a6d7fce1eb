"""The development identity provider's RS256 signing key, made at first start and kept under var_dir."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa


def _b64url_uint(value: int) -> str:
    """Base64url encoding of an unsigned big-endian integer (RFC 7518 §2, "Base64urlUInt")."""
    raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def jwk_thumbprint(jwk: dict[str, Any]) -> str:
    """JWK thumbprint over the required RSA members, SHA-256, base64url (RFC 7638 §3)."""
    members = json.dumps({k: jwk[k] for k in ("e", "kty", "n")}, separators=(",", ":"), sort_keys=True)
    return base64.urlsafe_b64encode(hashlib.sha256(members.encode()).digest()).rstrip(b"=").decode()


@dataclass(frozen=True, slots=True)
class SigningKey:
    """An RSA private key with its public JWK; ``kid`` is the key's RFC 7638 thumbprint."""

    private_key: rsa.RSAPrivateKey
    kid: str
    public_jwk: dict[str, Any]

    @classmethod
    def from_private_key(cls, private_key: rsa.RSAPrivateKey) -> SigningKey:
        numbers = private_key.public_key().public_numbers()
        jwk = {"kty": "RSA", "n": _b64url_uint(numbers.n), "e": _b64url_uint(numbers.e)}
        kid = jwk_thumbprint(jwk)
        return cls(private_key, kid, {"kid": kid, "kty": "RSA", "alg": "RS256", "use": "sig", **jwk})

    @classmethod
    def generate(cls) -> SigningKey:
        return cls.from_private_key(rsa.generate_private_key(public_exponent=65537, key_size=2048))

    def pem(self) -> bytes:
        return self.private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )


def key_path(var_dir: Path) -> Path:
    return Path(var_dir) / "idp" / "signing-key.pem"


def load_or_create_signing_key(var_dir: Path) -> SigningKey:
    """Load ``<var_dir>/idp/signing-key.pem``, creating it (mode 0600) on first start without races."""
    path = key_path(var_dir)
    if not path.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(SigningKey.generate().pem())
        try:
            os.link(tmp, path)  # atomic and never overwrites: a concurrent first start keeps one key
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    private_key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(private_key, rsa.RSAPrivateKey):
        raise RuntimeError(f"{path} does not hold an RSA private key")
    return SigningKey.from_private_key(private_key)
